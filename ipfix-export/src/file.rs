//! IPFIX files (RFC 5655): the message stream written to disk, each file self-contained.
//!
//! Every file starts with the template prelude, so any file can be read on its own (by nfdump's
//! IPFIX readers, Wireshark, or `ipfixrw`). Files rotate by size and/or on aligned time
//! boundaries. Writes are buffered; a write error (full disk, removed directory) never stops
//! the exporter: the file is cut back to its last whole message, the messages lost are counted
//! with their flows, and the next message tries again, in a new file if need be.

use crate::destination::FileSpec;
use crate::encoder::{Message, TemplatePrelude};
use crate::options::FlowTotals;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Names a rotated file from the configured path and its creation time (UNIX nanoseconds).
pub type Namer = Box<dyn Fn(&Path, u64) -> PathBuf + Send>;

/// What the file writer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub files: u64,
    pub messages_written: u64,
    pub octets_written: u64,
    /// Flow records in the messages written.
    pub records_written: u64,
    pub messages_lost: u64,
    pub not_sent: FlowTotals,
}

struct Open {
    out: BufWriter<File>,
    path: PathBuf,
    /// Bytes known to be on disk (the file's length after the last good flush).
    durable: u64,
    /// Bytes written into the buffer since.
    buffered: u64,
    /// Messages in the buffer since the last good flush, and what they held.
    pending_messages: u64,
    pending_flows: FlowTotals,
    /// The rotation slot (start time / interval) this file belongs to.
    slot: u64,
}

pub struct FileSender {
    spec: FileSpec,
    prelude: TemplatePrelude,
    namer: Namer,
    open: Option<Open>,
    stats: FileStats,
    failing: Option<io::ErrorKind>,
}

impl FileSender {
    /// Checks that the file (or, with rotation, the directory) can be written, so a bad path
    /// fails at start rather than at the first flow.
    pub fn new(spec: FileSpec, prelude: TemplatePrelude, namer: Namer) -> io::Result<FileSender> {
        let dir = match spec.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("directory {} does not exist", dir.display()),
            ));
        }
        if !spec.rotates() {
            open_append(&spec.path)?;
        }
        Ok(FileSender {
            spec,
            prelude,
            namer,
            open: None,
            stats: FileStats::default(),
            failing: None,
        })
    }

    pub fn stats(&self) -> FileStats {
        self.stats
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.spec.path.display())
    }

    /// The file being written, if any.
    pub fn current_path(&self) -> Option<&Path> {
        self.open.as_ref().map(|o| o.path.as_path())
    }

    /// The rotated name for a file started now; should the name exist, `-1`, `-2`, ... follow.
    fn fresh_name(&self) -> PathBuf {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let base = (self.namer)(&self.spec.path, now_ns);
        let mut candidate = base.clone();
        let mut n = 0;
        while candidate.exists() {
            n += 1;
            let stem = base.file_stem().map_or("".into(), |s| s.to_string_lossy());
            candidate = base.with_file_name(match base.extension() {
                Some(e) => format!("{stem}-{n}.{}", e.to_string_lossy()),
                None => format!("{stem}-{n}"),
            });
        }
        candidate
    }

    fn slot(&self, now_secs: u64) -> u64 {
        self.spec
            .rotate_every
            .map(|d| now_secs / d.as_secs().max(1))
            .unwrap_or(0)
    }

    /// Writes one message; returns an error only at the start of a failure episode.
    pub fn send(&mut self, msg: &Message<'_>, now_secs: u64) -> Option<io::Error> {
        if !msg.templates {
            return self.write_message(msg, now_secs);
        }
        // A template every file already starts with is not written twice; a new one is
        // written, and every later file starts with it (even when this write failed).
        if self.prelude.knows(msg.bytes) {
            return None;
        }
        let e = self.write_message(msg, now_secs);
        self.prelude.learn(msg.bytes);
        e
    }

    fn write_message(&mut self, msg: &Message<'_>, now_secs: u64) -> Option<io::Error> {
        let slot = self.slot(now_secs);
        let too_big = |o: &Open| {
            self.spec
                .rotate_bytes
                .is_some_and(|max| o.durable + o.buffered + msg.bytes.len() as u64 > max)
                && o.durable + o.buffered > 0
        };
        // A failed close loses only what it buffered; this message goes to the next file.
        let mut closing_error = None;
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.slot != slot || too_big(o))
        {
            closing_error = self.close();
        }
        if self.open.is_none() {
            let path = if self.spec.rotates() {
                self.fresh_name()
            } else {
                self.spec.path.clone()
            };
            let file = match open_append(&path) {
                Ok(f) => f,
                Err(e) => {
                    self.lose(1, msg.flows);
                    return self.failed(e);
                }
            };
            let durable = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.stats.files += 1;
            let mut open = Open {
                out: BufWriter::with_capacity(256 << 10, file),
                path,
                durable,
                buffered: 0,
                pending_messages: 0,
                pending_flows: FlowTotals::default(),
                slot,
            };
            let prelude = self.prelude.stamp_for(msg.bytes);
            if let Err(e) = open.out.write_all(prelude) {
                self.open = Some(open);
                let e2 = self.abandon(e);
                self.lose(1, msg.flows);
                return e2;
            }
            open.buffered += prelude.len() as u64;
            self.open = Some(open);
        }
        let o = self.open.as_mut().expect("opened above");
        match o.out.write_all(msg.bytes) {
            Ok(()) => {
                o.buffered += msg.bytes.len() as u64;
                o.pending_messages += 1;
                o.pending_flows += msg.flows;
                closing_error
            }
            Err(e) => {
                self.lose(1, msg.flows);
                self.abandon(e)
            }
        }
    }

    /// Pushes buffered messages to the file; on a time boundary, closes it.
    pub fn flush(&mut self, now_secs: u64) -> Option<io::Error> {
        let slot = self.slot(now_secs);
        if self.open.as_ref().is_some_and(|o| o.slot != slot) {
            return self.close();
        }
        self.commit()
    }

    /// Flushes and closes the current file.
    pub fn close(&mut self) -> Option<io::Error> {
        let e = self.commit();
        self.open = None;
        e
    }

    fn commit(&mut self) -> Option<io::Error> {
        let o = self.open.as_mut()?;
        match o.out.flush() {
            Ok(()) => {
                let b = std::mem::take(&mut o.buffered);
                o.durable += b;
                self.stats.octets_written += b;
                self.stats.messages_written += std::mem::take(&mut o.pending_messages);
                self.stats.records_written += std::mem::take(&mut o.pending_flows).flows;
                self.failing = None;
                None
            }
            Err(e) => self.abandon(e),
        }
    }

    /// A write failed: cut the file back to its last whole message, count the buffered
    /// messages as lost, and forget the file (the next message opens it, or a new one, again).
    fn abandon(&mut self, e: io::Error) -> Option<io::Error> {
        if let Some(o) = self.open.take() {
            let (file, _lost_buffer) = o.out.into_parts();
            let _ = file.set_len(o.durable);
            self.lose(o.pending_messages, o.pending_flows);
            if o.durable == 0 {
                let _ = std::fs::remove_file(&o.path);
            }
        }
        self.failed(e)
    }

    fn lose(&mut self, messages: u64, flows: FlowTotals) {
        self.stats.messages_lost += messages;
        self.stats.not_sent += flows;
    }

    fn failed(&mut self, e: io::Error) -> Option<io::Error> {
        let new = self.failing != Some(e.kind());
        self.failing = Some(e.kind());
        new.then_some(e)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncoderConfig, MessageEncoder, TimePrecision};

    fn namer() -> Namer {
        Box::new(|p: &Path, t: u64| p.with_extension(format!("{t}.ipfix")))
    }

    fn write_records(f: &mut FileSender, enc: &mut MessageEncoder, n: u32, now: u64) {
        for i in 0..n {
            let r = crate::template::tests::sample(i % 2 == 0, TimePrecision::Micros);
            enc.push(&r, now as u32, |m| {
                f.send(&m, now);
            });
        }
        enc.flush(now as u32, |m| {
            f.send(&m, now);
        });
        f.flush(now);
    }

    fn decode_all(path: &Path) -> usize {
        let bytes = std::fs::read(path).unwrap();
        let templates: ipfixrw::template_store::TemplateStore =
            std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
        let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
        let mut rest = &bytes[..];
        let mut records = 0;
        while !rest.is_empty() {
            let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            let m = ipfixrw::parse_ipfix_message(
                &rest[..len].to_vec(),
                templates.clone(),
                formatter.clone(),
            )
            .expect("each file decodes on its own");
            records += m.iter_data_records().count();
            rest = &rest[len..];
        }
        records
    }

    #[test]
    fn files_rotate_on_time_and_each_decodes_alone() {
        let dir = std::env::temp_dir().join(format!("ipfix-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut enc = MessageEncoder::new(EncoderConfig {
            inline_templates: false,
            ..Default::default()
        })
        .unwrap();
        let spec = FileSpec {
            path: dir.join("flows.ipfix"),
            rotate_bytes: None,
            rotate_every: Some(std::time::Duration::from_secs(60)),
        };
        let mut f = FileSender::new(spec, enc.template_prelude(), namer()).unwrap();
        write_records(&mut f, &mut enc, 100, 6000);
        write_records(&mut f, &mut enc, 50, 6030);
        write_records(&mut f, &mut enc, 70, 6060);
        f.close();
        assert_eq!(f.stats().files, 2);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        // Named by creation time: the first file holds the first slot's records.
        let counts: Vec<usize> = files.iter().map(|p| decode_all(p)).collect();
        assert_eq!(counts, vec![150, 70]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_rotate_on_size() {
        let dir = std::env::temp_dir().join(format!("ipfix-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut enc = MessageEncoder::new(EncoderConfig {
            inline_templates: false,
            ..Default::default()
        })
        .unwrap();
        let spec = FileSpec {
            path: dir.join("f.ipfix"),
            rotate_bytes: Some(20_000),
            rotate_every: None,
        };
        let mut f = FileSender::new(spec, enc.template_prelude(), namer()).unwrap();
        for t in 0..10 {
            write_records(&mut f, &mut enc, 100, 1000 + t);
        }
        f.close();
        let mut total = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            assert!(std::fs::metadata(&p).unwrap().len() <= 20_000);
            total += decode_all(&p);
        }
        assert_eq!(total, 1000);
        assert!(f.stats().files >= 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
