//! A bounded on-disk queue of IPFIX messages for one destination (issue #29): what a stream
//! collector has not acknowledged survives its absence and the probe's own restart, and what a
//! UDP collector may have missed is kept for `probe spool replay`.
//!
//! The shape is a log of segment files, as Kafka's and Vector's disk buffers are:
//! - **Segments.** `r<RUN>-s<SEQ>.seg`, written in order, each starting with a 16-byte header
//!   and then entries. `RUN` is the exporting run (its start time in microseconds), so the
//!   messages of different runs, whose late template IDs and sequence numbers are their own,
//!   are never mixed in one segment; `SEQ` counts the run's segments.
//! - **Entries.** `len u32, crc32 u32, kind u8, flags u8, 2 reserved, flows u64, packets u64,
//!   octets u64` (36 bytes, big-endian), then the message. The CRC covers everything after
//!   itself, so a torn write (a crash mid-entry) or a damaged block is detected; opening the
//!   spool cuts a segment back to its last whole entry and counts what it cut.
//! - **Templates.** Every segment starts with a prelude entry: every template the run had
//!   announced when the segment began. A segment can therefore be replayed (or the ones before
//!   it deleted) without losing the templates its data needs.
//! - **Acknowledgement.** `ack` holds the position after the last entry the collector's transport
//!   acknowledged; it and the segments are synced to disk every `sync_every`. After `kill -9`
//!   nothing written is lost (the kernel holds it); what was acknowledged after the last sync is
//!   delivered once more. After a power loss, at most `sync_every` of messages are lost.
//! - **Bounds.** The segment files never exceed `max_bytes` together: the policy drops the
//!   oldest segment or refuses the newest message; segments older than `max_age` are deleted.
//!   Every message dropped is counted, with the flows, packets and octets it carried.
//!
//! This module does file I/O only; threads and sockets belong to [`crate::stream`] (which reads
//! and acknowledges) and [`ArchiveWriter`] (a UDP destination's copy).

use crate::encoder::TemplatePrelude;
use crate::options::FlowTotals;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SEGMENT_MAGIC: &[u8; 8] = b"PRBSPOOL";
const SEGMENT_VERSION: u32 = 1;
/// The segment file header: magic, version, reserved.
pub const SEGMENT_HEADER: u64 = 16;
/// An entry's header before the message.
const ENTRY_HEADER: usize = 36;
const ACK_MAGIC: &[u8; 8] = b"PRBSPACK";
/// No IPFIX message is longer than its 16-bit length field says.
const MAX_ENTRY: usize = 65_535;

/// What should happen when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SpoolPolicy {
    /// Delete the oldest segment (the records most likely to be stale).
    #[default]
    DropOldest,
    /// Keep what is there and refuse new messages (the start of an outage is kept).
    DropNewest,
}

impl SpoolPolicy {
    pub const CHOICES: [(&'static str, SpoolPolicy); 2] = [
        ("drop-oldest", SpoolPolicy::DropOldest),
        ("drop-newest", SpoolPolicy::DropNewest),
    ];

    pub fn name(self) -> &'static str {
        Self::CHOICES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("?", |(n, _)| n)
    }
}

/// Where a destination's spool lives and how much it may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolSpec {
    /// The directory the user named; each destination keeps its own subdirectory in it
    /// ([`SpoolSpec::dir_for`]).
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Segments older than this are deleted (`None`: kept until the size limit).
    pub max_age: Option<Duration>,
    pub policy: SpoolPolicy,
    /// How often segments and the acknowledged position are synced to disk.
    pub sync_every: Duration,
}

impl SpoolSpec {
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
    pub const DEFAULT_SYNC: Duration = Duration::from_secs(1);

    /// A spool in `dir` with the defaults: 1 GiB, no age limit, the oldest dropped first,
    /// synced every second.
    pub fn new(dir: PathBuf) -> SpoolSpec {
        SpoolSpec {
            dir,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age: None,
            policy: SpoolPolicy::DropOldest,
            sync_every: Self::DEFAULT_SYNC,
        }
    }

    /// A destination's own directory under the one named: `tcp_192.0.2.1_4739`, so several
    /// destinations can share a spool directory.
    pub fn dir_for(&self, url: &str) -> PathBuf {
        let name: String = url
            .replace("://", "_")
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '_',
            })
            .collect();
        self.dir.join(name.trim_matches('_'))
    }

    /// Segment size: an eighth of the limit (so dropping one frees an eighth), 64 KiB to 64 MiB.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(64 << 10, 64 << 20)
    }
}

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A message with data (or options) records.
    Data = 1,
    /// A template message announced during the run (a layout used the first time).
    Templates = 2,
    /// The templates in force when the segment began (not sent as is; see the module doc).
    Prelude = 3,
}

impl EntryKind {
    /// The entry kind of an exporter's message: a template message or one with records.
    pub fn of_message(templates: bool) -> EntryKind {
        if templates {
            EntryKind::Templates
        } else {
            EntryKind::Data
        }
    }

    fn from_u8(b: u8) -> Option<EntryKind> {
        match b {
            1 => Some(EntryKind::Data),
            2 => Some(EntryKind::Templates),
            3 => Some(EntryKind::Prelude),
            _ => None,
        }
    }
}

/// Entry flag: appended while the collector was away or behind (so its delivery is a replay).
const FLAG_HELD: u8 = 1;

/// A segment: the run that wrote it and its number in that run. Ordered as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    pub run: u64,
    pub seq: u32,
}

impl SegmentId {
    fn file_name(self) -> String {
        format!("r{:020}-s{:08}.seg", self.run, self.seq)
    }

    fn parse(name: &str) -> Option<SegmentId> {
        let rest = name.strip_prefix('r')?.strip_suffix(".seg")?;
        let (run, seq) = rest.split_once("-s")?;
        Some(SegmentId {
            run: run.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub segment: SegmentId,
    pub offset: u64,
}

/// One message read back.
#[derive(Clone, Debug)]
pub struct Entry {
    pub kind: EntryKind,
    pub bytes: Vec<u8>,
    pub flows: FlowTotals,
    /// It waited in the spool (the collector was away or behind, or an earlier run wrote it).
    pub held: bool,
    pub start: Pos,
    pub end: Pos,
}

/// Messages and what they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub messages: u64,
    pub flows: FlowTotals,
}

impl Tally {
    pub fn add(&mut self, flows: FlowTotals) {
        self.messages += 1;
        self.flows += flows;
    }

    pub fn sub(&mut self, flows: FlowTotals) {
        *self -= Tally { messages: 1, flows };
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.messages += o.messages;
        self.flows += o.flows;
    }
}

/// Saturating: a count taken down twice for the same messages stays at zero instead of
/// wrapping into a huge number in the books.
impl std::ops::SubAssign for Tally {
    fn sub_assign(&mut self, o: Tally) {
        self.messages = self.messages.saturating_sub(o.messages);
        let f = &mut self.flows;
        f.flows = f.flows.saturating_sub(o.flows.flows);
        f.packets = f.packets.saturating_sub(o.flows.packets);
        f.octets = f.octets.saturating_sub(o.flows.octets);
    }
}

/// What one destination's spool did. Counts are of data messages (and the records in them);
/// templates are not counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub dir: PathBuf,
    /// Written to the spool by this run.
    pub spooled: Tally,
    /// Delivered after waiting in the spool (while the collector was away or behind), or
    /// written by an earlier run.
    pub replayed: Tally,
    /// Found unacknowledged at start, written by earlier runs.
    pub from_earlier_runs: Tally,
    /// Not yet acknowledged (at the end: left for the next run).
    pub pending: Tally,
    /// Dropped because the spool was full (by the policy).
    pub dropped_full: Tally,
    /// Deleted for being older than the age limit.
    pub dropped_expired: Tally,
    /// Not written: the disk failed (full, read-only, removed) and memory had no room either.
    pub dropped_disk: Tally,
    /// Segments found torn at start (cut back to their last whole entry), and the bytes cut.
    pub torn_segments: u64,
    pub torn_bytes: u64,
    /// Writes or syncs that failed.
    pub disk_errors: u64,
    pub bytes: u64,
    pub peak_bytes: u64,
    pub segments: u64,
}

impl SpoolStats {
    /// Everything the spool lost.
    pub fn dropped(&self) -> Tally {
        let mut t = self.dropped_full;
        t += self.dropped_expired;
        t += self.dropped_disk;
        t
    }
}

/// Why a message was not appended.
#[derive(Debug)]
pub enum AppendError {
    /// The spool is full and the policy keeps what it holds.
    Full,
    /// The disk refused (counted in `disk_errors`; the message was not written).
    Disk(io::Error),
}

#[derive(Debug)]
struct Segment {
    id: SegmentId,
    /// Bytes of whole entries.
    size: u64,
    /// When the last entry was written (UNIX seconds).
    last_write: u64,
    /// When it was started (UNIX seconds).
    created: u64,
    /// The data messages in it.
    data: Tally,
}

/// The spool of one destination. Single-threaded: its owner appends, reads and acknowledges.
pub struct Spool {
    spec: SpoolSpec,
    dir: PathBuf,
    run: u64,
    /// Kept for delivery (stream destinations) or only for replay by hand (UDP: `archive`).
    archive: bool,
    segments: VecDeque<Segment>,
    writer: Option<(SegmentId, File)>,
    reader: Option<(SegmentId, File)>,
    read: Pos,
    ack: Pos,
    ack_file: File,
    _lock: File,
    last_sync: std::time::Instant,
    dirty: bool,
    stats: SpoolStats,
    entry: Vec<u8>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads one entry at `offset` of a segment file of `len` bytes: `None` at the end or where
/// the rest is not a whole, intact entry.
fn read_entry(f: &File, offset: u64, len: u64) -> Option<(EntryKind, u8, FlowTotals, Vec<u8>)> {
    if offset + ENTRY_HEADER as u64 > len {
        return None;
    }
    let mut h = [0u8; ENTRY_HEADER];
    f.read_exact_at(&mut h, offset).ok()?;
    let n = u32::from_be_bytes(h[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_be_bytes(h[4..8].try_into().unwrap());
    if n > MAX_ENTRY || offset + (ENTRY_HEADER + n) as u64 > len {
        return None;
    }
    let mut body = vec![0u8; n];
    f.read_exact_at(&mut body, offset + ENTRY_HEADER as u64)
        .ok()?;
    let mut c = crc32fast::Hasher::new();
    c.update(&h[8..]);
    c.update(&body);
    if c.finalize() != crc {
        return None;
    }
    let kind = EntryKind::from_u8(h[8])?;
    let u = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().unwrap());
    let flows = FlowTotals {
        flows: u(12),
        packets: u(20),
        octets: u(28),
    };
    Some((kind, h[9], flows, body))
}

/// Walks a segment's entries from `from`: the length of its whole entries, and the data
/// messages from `from` on.
fn scan(f: &File, from: u64) -> io::Result<(u64, Tally)> {
    let len = f.metadata()?.len();
    let mut at = from.max(SEGMENT_HEADER);
    let mut t = Tally::default();
    while let Some((kind, _, flows, body)) = read_entry(f, at, len) {
        if kind == EntryKind::Data {
            t.add(flows);
        }
        at += (ENTRY_HEADER + body.len()) as u64;
    }
    Ok((at, t))
}

fn check_header(f: &File) -> bool {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    f.read_exact_at(&mut h, 0).is_ok()
        && &h[..8] == SEGMENT_MAGIC
        && u32::from_be_bytes(h[8..12].try_into().unwrap()) == SEGMENT_VERSION
}

/// Creates (or opens) a file in the spool directory, owned by the directory's owner.
///
/// A probe started as root with `--user` makes its spools as root and hands each directory
/// and its files to the user just before it switches. A writer thread may create a segment
/// or a summary in between, as root, which a later run as that user (without root) could not
/// open for writing to check its tail; so while the probe is still root, every new file takes
/// the directory's owner.
fn create_in(dir: &Path, path: &Path, truncate: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(truncate)
        .read(true)
        .write(true)
        .open(path)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(dir)?;
        if owner.uid() != 0 && f.metadata()?.uid() != owner.uid() {
            std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
        }
    }
    Ok(f)
}

const SUM_MAGIC: &[u8; 8] = b"PRBSPSUM";

/// A sealed segment's summary file (`…seg.sum`): its length and data messages, so opening a
/// large spool reads a file per segment rather than every entry. Only a segment's last writer
/// could tear it, and a summary is written when the segment is sealed, so a summary whose
/// length matches the segment's is the truth.
fn sum_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{}.sum", id.file_name()))
}

fn write_sum(dir: &Path, id: SegmentId, size: u64, data: Tally) -> io::Result<()> {
    let mut b = Vec::with_capacity(52);
    b.extend_from_slice(SUM_MAGIC);
    for v in [
        size,
        data.messages,
        data.flows.flows,
        data.flows.packets,
        data.flows.octets,
    ] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    create_in(dir, &sum_path(dir, id), true)?.write_all(&b)
}

fn read_sum(dir: &Path, id: SegmentId) -> Option<(u64, Tally)> {
    let b = std::fs::read(sum_path(dir, id)).ok()?;
    if b.len() != 52 || &b[..8] != SUM_MAGIC {
        return None;
    }
    if crc32fast::hash(&b[..48]) != u32::from_be_bytes(b[48..52].try_into().unwrap()) {
        return None;
    }
    let u = |i: usize| u64::from_be_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap());
    Some((
        u(0),
        Tally {
            messages: u(1),
            flows: FlowTotals {
                flows: u(2),
                packets: u(3),
                octets: u(4),
            },
        },
    ))
}

/// Deletes a segment and its summary.
fn remove_segment(dir: &Path, id: SegmentId) -> io::Result<()> {
    let _ = std::fs::remove_file(sum_path(dir, id));
    std::fs::remove_file(dir.join(id.file_name()))
}

/// The segments in a destination's spool directory, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<SegmentId>> {
    let mut ids: Vec<SegmentId> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| SegmentId::parse(&e.file_name().to_string_lossy()))
        .collect();
    ids.sort();
    Ok(ids)
}

fn read_ack(f: &mut File) -> Option<Pos> {
    let mut b = [0u8; 36];
    f.read_exact_at(&mut b, 0).ok()?;
    if &b[..8] != ACK_MAGIC
        || crc32fast::hash(&b[..32]) != u32::from_be_bytes(b[32..36].try_into().unwrap())
    {
        return None;
    }
    Some(Pos {
        segment: SegmentId {
            run: u64::from_be_bytes(b[8..16].try_into().unwrap()),
            seq: u32::from_be_bytes(b[16..20].try_into().unwrap()),
        },
        offset: u64::from_be_bytes(b[24..32].try_into().unwrap()),
    })
}

impl Spool {
    /// Opens (creating) the spool in `dir` for a run starting now. Earlier runs' segments are
    /// checked: torn tails are cut and counted; what was not acknowledged is counted in
    /// `from_earlier_runs` and will be read first. `archive`: nothing is ever read back
    /// automatically (a UDP destination's copy); earlier runs' segments are kept within the
    /// limits. Fails when the directory cannot be made or another probe holds it.
    pub fn open(spec: SpoolSpec, dir: PathBuf, archive: bool) -> io::Result<Spool> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("spool {}: {e}", dir.display())))?;
        let lock = create_in(&dir, &dir.join("lock"), false)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("spool {} is in use by another probe", dir.display()),
            ));
        }
        let mut ack_file = create_in(&dir, &dir.join("ack"), false)?;
        let mut stats = SpoolStats {
            dir: dir.clone(),
            ..Default::default()
        };
        let ids = list_segments(&dir)?;
        let saved_ack = read_ack(&mut ack_file);
        let mut segments = VecDeque::new();
        for (i, id) in ids.iter().enumerate() {
            let path = dir.join(id.file_name());
            let f = OpenOptions::new().read(true).write(true).open(&path)?;
            if !check_header(&f) {
                // Not ours, or torn before its header was whole: nothing in it can be read.
                stats.torn_segments += 1;
                stats.torn_bytes += f.metadata()?.len();
                drop(f);
                remove_segment(&dir, *id)?;
                continue;
            }
            let len = f.metadata()?.len();
            let last_of_run = ids.get(i + 1).is_none_or(|n| n.run != id.run);
            let summed = read_sum(&dir, *id).filter(|(size, _)| !last_of_run && *size == len);
            let (good, data) = match summed {
                Some(x) => x,
                None => scan(&f, SEGMENT_HEADER)?,
            };
            if good < len {
                // Only the last segment a run wrote can be torn by a crash; any is cut.
                stats.torn_segments += 1;
                stats.torn_bytes += len - good;
                f.set_len(good)?;
                f.sync_data()?;
            }
            let mtime = f
                .metadata()?
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            segments.push_back(Segment {
                id: *id,
                size: good,
                last_write: mtime,
                created: mtime,
                data,
            });
        }
        // Start where the collector's transport last acknowledged (or at the oldest segment).
        let first = segments.front().map(|s| Pos {
            segment: s.id,
            offset: SEGMENT_HEADER,
        });
        let start = match (saved_ack, first) {
            (Some(a), Some(f)) if a >= f && segments.iter().any(|s| s.id == a.segment) => {
                let s = segments
                    .iter()
                    .find(|s| s.id == a.segment)
                    .expect("checked");
                Pos {
                    segment: a.segment,
                    offset: a.offset.clamp(SEGMENT_HEADER, s.size),
                }
            }
            (Some(a), Some(f)) if a > f => {
                // Its segment was deleted (acknowledged, then the ack not yet synced): the
                // first segment after it.
                segments
                    .iter()
                    .find(|s| s.id > a.segment)
                    .map(|s| Pos {
                        segment: s.id,
                        offset: SEGMENT_HEADER,
                    })
                    .unwrap_or(f)
            }
            (_, Some(f)) => f,
            (_, None) => Pos {
                segment: SegmentId { run: 0, seq: 0 },
                offset: SEGMENT_HEADER,
            },
        };
        // Acknowledged segments are no longer needed.
        if !archive {
            while segments.front().is_some_and(|s| s.id < start.segment) {
                let s = segments.pop_front().expect("checked");
                remove_segment(&dir, s.id)?;
            }
            for s in &segments {
                stats.from_earlier_runs += if s.id == start.segment && start.offset > SEGMENT_HEADER
                {
                    let f = File::open(dir.join(s.id.file_name()))?;
                    scan(&f, start.offset)?.1
                } else {
                    s.data
                };
            }
            stats.pending = stats.from_earlier_runs;
        }
        let newest_run = segments.back().map_or(0, |s| s.id.run);
        let run = (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64))
        .max(newest_run + 1);
        let mut spool = Spool {
            spec,
            dir,
            run,
            archive,
            segments,
            writer: None,
            reader: None,
            read: start,
            ack: start,
            ack_file,
            _lock: lock,
            last_sync: std::time::Instant::now(),
            dirty: true,
            stats,
            entry: Vec::with_capacity(ENTRY_HEADER + 1500),
        };
        spool.update_size();
        Ok(spool)
    }

    /// This run's ID (the segments it writes carry it).
    pub fn run(&self) -> u64 {
        self.run
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: SegmentId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    fn update_size(&mut self) {
        self.stats.bytes = self.segments.iter().map(|s| s.size).sum();
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.bytes);
        self.stats.segments = self.segments.len() as u64;
    }

    /// Appends one message. `prelude` is what a new segment starts with. `held`: the collector
    /// is away or behind, so this message's delivery will be a replay.
    pub fn append(
        &mut self,
        kind: EntryKind,
        bytes: &[u8],
        flows: FlowTotals,
        held: bool,
        prelude: &TemplatePrelude,
    ) -> Result<(), AppendError> {
        let need = (ENTRY_HEADER + bytes.len()) as u64;
        let now = unix_now();
        let rotate = match (&self.writer, self.segments.back()) {
            (Some((id, _)), Some(s)) if s.id == *id => {
                s.size + need > self.spec.segment_bytes()
                    || self
                        .spec
                        .max_age
                        .is_some_and(|a| now.saturating_sub(s.created) >= (a.as_secs() / 8).max(1))
            }
            _ => true,
        };
        let extra = if rotate {
            SEGMENT_HEADER + (ENTRY_HEADER + prelude.bytes().len()) as u64
        } else {
            0
        };
        // Make room, or refuse.
        while self.stats.bytes + need + extra > self.spec.max_bytes {
            let can_drop = self.spec.policy == SpoolPolicy::DropOldest
                && self.segments.len() > usize::from(!rotate);
            if !can_drop {
                if kind == EntryKind::Data {
                    self.stats.dropped_full.add(flows);
                }
                return Err(AppendError::Full);
            }
            self.drop_oldest(false).map_err(|e| {
                self.stats.disk_errors += 1;
                AppendError::Disk(e)
            })?;
        }
        if rotate {
            self.start_segment(prelude).map_err(|e| {
                self.stats.disk_errors += 1;
                AppendError::Disk(e)
            })?;
        }
        self.write_entry(kind, bytes, flows, held).map_err(|e| {
            self.stats.disk_errors += 1;
            AppendError::Disk(e)
        })?;
        if kind == EntryKind::Data {
            self.stats.spooled.add(flows);
            if !self.archive {
                self.stats.pending.add(flows);
            }
        }
        Ok(())
    }

    fn start_segment(&mut self, prelude: &TemplatePrelude) -> io::Result<()> {
        let seq = match self.segments.back() {
            Some(s) if s.id.run == self.run => s.id.seq + 1,
            _ => 0,
        };
        let id = SegmentId { run: self.run, seq };
        if let Some((old, f)) = self.writer.take() {
            let _ = f.sync_data();
            // Sealed: its summary spares the next start a read of every entry.
            if let Some(s) = self.segments.iter().find(|s| s.id == old) {
                if write_sum(&self.dir, old, s.size, s.data).is_err() {
                    self.stats.disk_errors += 1;
                }
            }
        }
        let path = self.path(id);
        let mut f = create_in(&self.dir, &path, true)?;
        let mut h = [0u8; SEGMENT_HEADER as usize];
        h[..8].copy_from_slice(SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&SEGMENT_VERSION.to_be_bytes());
        if let Err(e) = f.write_all(&h) {
            drop(f);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let now = unix_now();
        self.segments.push_back(Segment {
            id,
            size: SEGMENT_HEADER,
            last_write: now,
            created: now,
            data: Tally::default(),
        });
        self.writer = Some((id, f));
        if self.read.segment.run == 0 {
            self.read = Pos {
                segment: id,
                offset: SEGMENT_HEADER,
            };
            self.ack = self.read;
        }
        if let Err(e) = self.write_entry(
            EntryKind::Prelude,
            prelude.bytes(),
            FlowTotals::default(),
            false,
        ) {
            // A segment without its templates is useless: take it back.
            self.segments.pop_back();
            self.writer = None;
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.update_size();
        Ok(())
    }

    /// Writes one entry at the writer's end, all or nothing: a failed write is cut off again.
    fn write_entry(
        &mut self,
        kind: EntryKind,
        bytes: &[u8],
        flows: FlowTotals,
        held: bool,
    ) -> io::Result<()> {
        let Some((_, f)) = self.writer.as_mut() else {
            return Err(io::Error::other("no segment open"));
        };
        let e = &mut self.entry;
        e.clear();
        e.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        e.extend_from_slice(&[0; 4]);
        e.push(kind as u8);
        e.push(if held { FLAG_HELD } else { 0 });
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&flows.flows.to_be_bytes());
        e.extend_from_slice(&flows.packets.to_be_bytes());
        e.extend_from_slice(&flows.octets.to_be_bytes());
        e.extend_from_slice(bytes);
        let crc = crc32fast::hash(&e[8..]);
        e[4..8].copy_from_slice(&crc.to_be_bytes());
        let seg = self.segments.back_mut().expect("the writer's segment");
        if let Err(err) = f.write_all_at(e, seg.size) {
            // ENOSPC mid-entry leaves a torn tail: cut it so the segment stays whole.
            let _ = f.set_len(seg.size);
            return Err(err);
        }
        seg.size += e.len() as u64;
        seg.last_write = unix_now();
        if kind == EntryKind::Data {
            seg.data.add(flows);
        }
        self.dirty = true;
        self.stats.bytes += e.len() as u64;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.bytes);
        Ok(())
    }

    /// Deletes the oldest segment, counting its messages not yet sent as dropped (`expired`:
    /// for age, else for size). Messages of it in flight are the reader's to account for
    /// ([`Spool::lost_in_flight`]) if they are never acknowledged.
    fn drop_oldest(&mut self, expired: bool) -> io::Result<()> {
        let Some(s) = self.segments.pop_front() else {
            return Ok(());
        };
        let path = self.path(s.id);
        if self.writer.as_ref().is_some_and(|(id, _)| *id == s.id) {
            self.writer = None;
        }
        if self.reader.as_ref().is_some_and(|(id, _)| *id == s.id) {
            self.reader = None;
        }
        if !self.archive {
            // Unsent: from the read position if it is in this segment, nothing if the reader
            // is past it.
            let from = if self.read.segment == s.id {
                Some(self.read.offset)
            } else if self.read.segment < s.id {
                Some(SEGMENT_HEADER)
            } else {
                None
            };
            let lost = match from {
                Some(SEGMENT_HEADER) => s.data,
                Some(from) => File::open(&path)
                    .and_then(|f| scan(&f, from))
                    .map(|x| x.1)
                    .unwrap_or_default(),
                None => Tally::default(),
            };
            if expired {
                self.stats.dropped_expired += lost;
            } else {
                self.stats.dropped_full += lost;
            }
            self.stats.pending -= lost;
        }
        remove_segment(&self.dir, s.id)?;
        if let Some(next) = self.segments.front() {
            let first = Pos {
                segment: next.id,
                offset: SEGMENT_HEADER,
            };
            self.read = self.read.max(first);
            self.ack = self.ack.max(first);
        } else {
            self.read.offset = SEGMENT_HEADER;
            self.read.segment.run = 0;
            self.ack = self.read;
        }
        self.dirty = true;
        self.update_size();
        Ok(())
    }

    /// Whether a segment still exists.
    pub fn holds(&self, id: SegmentId) -> bool {
        self.segments.iter().any(|s| s.id == id)
    }

    /// Whether there is something not yet read.
    pub fn has_unread(&self) -> bool {
        self.segments
            .iter()
            .find(|s| s.id == self.read.segment)
            .is_some_and(|s| self.read.offset < s.size)
            || self.segments.iter().any(|s| s.id > self.read.segment)
    }

    /// The run of the next entry to read.
    pub fn next_run(&self) -> Option<u64> {
        self.has_unread().then(|| {
            self.segments
                .iter()
                .find(|s| {
                    s.id >= self.read.segment
                        && (s.id > self.read.segment || self.read.offset < s.size)
                })
                .map_or(self.read.segment.run, |s| s.id.run)
        })
    }

    /// Reads the next entry (preludes included: a segment's first), or `None` when everything
    /// written has been read. An entry that does not read back whole ends its segment there.
    pub fn read_next(&mut self) -> Option<Entry> {
        loop {
            let i = self
                .segments
                .iter()
                .position(|s| s.id >= self.read.segment)?;
            let s = &self.segments[i];
            if s.id > self.read.segment {
                self.read = Pos {
                    segment: s.id,
                    offset: SEGMENT_HEADER,
                };
            }
            let (id, size) = (s.id, s.size);
            if self.read.offset >= size {
                if i + 1 >= self.segments.len() {
                    return None;
                }
                self.read = Pos {
                    segment: self.segments[i + 1].id,
                    offset: SEGMENT_HEADER,
                };
                continue;
            }
            if self.reader.as_ref().is_none_or(|(r, _)| *r != id) {
                match File::open(self.path(id)) {
                    Ok(f) => self.reader = Some((id, f)),
                    Err(_) => {
                        self.read.offset = size;
                        continue;
                    }
                }
            }
            let f = &self.reader.as_ref().expect("opened").1;
            let start = self.read;
            match read_entry(f, self.read.offset, size) {
                Some((kind, flags, flows, bytes)) => {
                    self.read.offset += (ENTRY_HEADER + bytes.len()) as u64;
                    return Some(Entry {
                        kind,
                        held: flags & FLAG_HELD != 0 || id.run != self.run,
                        bytes,
                        flows,
                        start,
                        end: self.read,
                    });
                }
                None => {
                    // Damaged after it was written: the rest of the segment is lost.
                    self.stats.torn_segments += 1;
                    self.stats.torn_bytes += size - self.read.offset;
                    self.read.offset = size;
                }
            }
        }
    }

    /// The prelude of the segment the next entry comes from (for a session that starts in the
    /// middle of a segment).
    pub fn prelude_of_next(&mut self) -> Option<TemplatePrelude> {
        let s = self.segments.iter().find(|s| s.id >= self.read.segment)?;
        let f = File::open(self.path(s.id)).ok()?;
        match read_entry(&f, SEGMENT_HEADER, s.size)? {
            (EntryKind::Prelude, _, _, b) => Some(TemplatePrelude::from_bytes(b)),
            _ => None,
        }
    }

    /// Reads again from `start` (a connection died before the entries from there on were
    /// acknowledged). A start in a deleted segment reads from the oldest kept one.
    pub fn rewind(&mut self, start: Pos) {
        let first = self.segments.front().map(|s| Pos {
            segment: s.id,
            offset: SEGMENT_HEADER,
        });
        self.read = match first {
            Some(f) if start < f => f,
            _ => start,
        };
    }

    /// The collector's transport acknowledged everything up to `end`; `data`: the entry carried
    /// records (`flows`), `replayed`: it had waited. Segments wholly acknowledged are deleted.
    pub fn acknowledge(&mut self, end: Pos, flows: Option<FlowTotals>, replayed: bool) {
        if let Some(f) = flows {
            self.stats.pending.sub(f);
            if replayed {
                self.stats.replayed.add(f);
            }
        }
        if end > self.ack {
            self.ack = end;
            self.dirty = true;
        }
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.id < self.ack.segment)
        {
            let s = self.segments.pop_front().expect("checked");
            if self.reader.as_ref().is_some_and(|(id, _)| *id == s.id) {
                self.reader = None;
            }
            let _ = remove_segment(&self.dir, s.id);
            self.update_size();
        }
    }

    /// An entry that was in flight when its segment was dropped for room, and then never
    /// acknowledged: lost after all.
    pub fn lost_in_flight(&mut self, flows: FlowTotals) {
        self.stats.pending.sub(flows);
        self.stats.dropped_full.add(flows);
    }

    /// Counts a message that neither the disk nor memory could take.
    pub fn lost_to_disk(&mut self, flows: FlowTotals) {
        self.stats.dropped_disk.add(flows);
    }

    /// Syncs the segment being written and the acknowledged position, at most every
    /// `sync_every` (`force`: now), and deletes segments past the age limit.
    pub fn tick(&mut self, force: bool) {
        if let Some(age) = self.spec.max_age {
            let now = unix_now();
            while self.segments.len() > 1
                && self
                    .segments
                    .front()
                    .is_some_and(|s| now.saturating_sub(s.last_write) > age.as_secs())
            {
                if self.drop_oldest(true).is_err() {
                    self.stats.disk_errors += 1;
                    break;
                }
            }
        }
        if !(force || self.last_sync.elapsed() >= self.spec.sync_every) || !self.dirty {
            return;
        }
        self.last_sync = std::time::Instant::now();
        self.dirty = false;
        if let Some((_, f)) = &self.writer {
            if f.sync_data().is_err() {
                self.stats.disk_errors += 1;
            }
        }
        if self.archive {
            return;
        }
        let mut b = [0u8; 36];
        b[..8].copy_from_slice(ACK_MAGIC);
        b[8..16].copy_from_slice(&self.ack.segment.run.to_be_bytes());
        b[16..20].copy_from_slice(&self.ack.segment.seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.ack.offset.to_be_bytes());
        let crc = crc32fast::hash(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_be_bytes());
        if self
            .ack_file
            .write_all_at(&b, 0)
            .and_then(|_| self.ack_file.sync_data())
            .is_err()
        {
            self.stats.disk_errors += 1;
        }
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats.clone()
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.tick(true);
    }
}

/// One message of a spool read for replay by hand.
#[derive(Clone, Debug)]
pub struct Replayed {
    /// Where it starts: before the spool's saved acknowledged position, it was delivered.
    pub start: Pos,
    pub run: u64,
    pub kind: EntryKind,
    pub bytes: Vec<u8>,
    pub flows: FlowTotals,
}

/// Reads every entry of a destination's spool directory, oldest first, without taking it
/// over (a running probe may be writing it): for `probe spool replay` and `probe spool info`.
/// Segments deleted while reading are skipped; a torn tail ends its segment.
pub fn read_all(dir: &Path, mut each: impl FnMut(Replayed)) -> io::Result<usize> {
    let ids = list_segments(dir)?;
    if ids.is_empty() && !dir.join("ack").exists() {
        return Err(bad(format!(
            "{} holds no spool (no segment files, no ack file)",
            dir.display()
        )));
    }
    for id in &ids {
        let Ok(f) = File::open(dir.join(id.file_name())) else {
            continue;
        };
        // Its length now: what a running probe appends later is left for the next read.
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            continue;
        };
        if !check_header(&f) {
            continue;
        }
        let mut at = SEGMENT_HEADER;
        while let Some((kind, _, flows, bytes)) = read_entry(&f, at, len) {
            let start = Pos {
                segment: *id,
                offset: at,
            };
            at += (ENTRY_HEADER + bytes.len()) as u64;
            each(Replayed {
                start,
                run: id.run,
                kind,
                bytes,
                flows,
            });
        }
    }
    Ok(ids.len())
}

/// The acknowledged position saved in a spool directory, if any: entries before it were
/// delivered.
pub fn saved_ack(dir: &Path) -> Option<Pos> {
    let mut f = File::open(dir.join("ack")).ok()?;
    read_ack(&mut f)
}

/// A UDP destination's spool: every message sent is also kept on disk, from a thread of its
/// own so a slow disk never holds up the exporter, for `probe spool replay`.
pub struct ArchiveWriter {
    tx: Option<crossbeam_channel::Sender<(Vec<u8>, FlowTotals, bool)>>,
    stats: std::sync::Arc<std::sync::Mutex<SpoolStats>>,
    /// Messages the thread could not take (its queue was full): counted as lost to the disk.
    queue_full: Tally,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArchiveWriter {
    /// Queue length between the exporter and the writer thread.
    const QUEUE: usize = 16_384;

    pub fn start(
        mut spool: Spool,
        mut prelude: TemplatePrelude,
        log: std::sync::Arc<dyn Fn(&str) + Send + Sync>,
    ) -> io::Result<ArchiveWriter> {
        let (tx, rx) = crossbeam_channel::bounded::<(Vec<u8>, FlowTotals, bool)>(Self::QUEUE);
        let stats = std::sync::Arc::new(std::sync::Mutex::new(spool.stats()));
        let shared = stats.clone();
        let thread = std::thread::Builder::new()
            .name("spool-archive".into())
            .spawn(move || {
                let mut failing = false;
                let publish = |s: &Spool| *shared.lock().unwrap_or_else(|e| e.into_inner()) = s.stats();
                loop {
                    let got = rx.recv_timeout(Duration::from_millis(200));
                    let (bytes, flows, templates) = match got {
                        Ok(m) => m,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            spool.tick(false);
                            publish(&spool);
                            continue;
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    };
                    // A UDP encoder repeats its templates; the spool keeps each once (and
                    // every segment starts with all of them).
                    if templates && !prelude.learn(&bytes) {
                        continue;
                    }
                    let kind = EntryKind::of_message(templates);
                    match spool.append(kind, &bytes, flows, false, &prelude) {
                        Ok(()) => failing = false,
                        Err(AppendError::Full) => {}
                        Err(AppendError::Disk(e)) => {
                            if kind == EntryKind::Data {
                                spool.lost_to_disk(flows);
                            }
                            if !failing {
                                log(&format!(
                                    "spool {}: {e}; messages are still sent, but not kept, until the disk recovers",
                                    spool.dir().display()
                                ));
                                failing = true;
                            }
                        }
                    }
                    spool.tick(false);
                    if rx.is_empty() {
                        publish(&spool);
                    }
                }
                spool.tick(true);
                publish(&spool);
            })?;
        Ok(ArchiveWriter {
            tx: Some(tx),
            stats,
            queue_full: Tally::default(),
            thread: Some(thread),
        })
    }

    /// Keeps a copy of a message sent; never waits.
    pub fn keep(&mut self, bytes: &[u8], flows: FlowTotals, templates: bool) {
        if let Some(tx) = &self.tx {
            if tx.try_send((bytes.to_vec(), flows, templates)).is_err() && !templates {
                self.queue_full.add(flows);
            }
        }
    }

    pub fn stats(&self) -> SpoolStats {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.dropped_disk += self.queue_full;
        s
    }

    /// Writes what is queued and closes the spool.
    pub fn finish(&mut self) -> SpoolStats {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for ArchiveWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("spoolunit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn spec(d: &Path, max_bytes: u64, policy: SpoolPolicy) -> SpoolSpec {
        SpoolSpec {
            dir: d.to_path_buf(),
            max_bytes,
            max_age: None,
            policy,
            sync_every: Duration::ZERO,
        }
    }

    fn prelude() -> TemplatePrelude {
        let mut m = vec![0u8; 20];
        m[0..2].copy_from_slice(&10u16.to_be_bytes());
        m[2..4].copy_from_slice(&20u16.to_be_bytes());
        TemplatePrelude::from_bytes(m)
    }

    /// A message of `len` bytes whose payload names `i`.
    fn msg(i: u32, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0..2].copy_from_slice(&10u16.to_be_bytes());
        m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        m[16..20].copy_from_slice(&i.to_be_bytes());
        m
    }

    fn one(i: u32) -> FlowTotals {
        FlowTotals {
            flows: 1,
            packets: i as u64,
            octets: 100,
        }
    }

    fn read_ids(sp: &mut Spool) -> Vec<u32> {
        std::iter::from_fn(|| sp.read_next())
            .filter(|e| e.kind == EntryKind::Data)
            .map(|e| u32::from_be_bytes(e.bytes[16..20].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn files_made_while_still_root_take_the_owner_of_a_directory_handed_over() {
        // `--user`: the probe hands the spool directory over before it switches; a segment
        // or summary made by a writer thread in between must belong to the user too.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to give files away");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let d = dir("owner");
        let s = spec(&d, 256 << 10, SpoolPolicy::DropOldest);
        let mut sp = Spool::open(s, d.clone(), false).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
        // Enough to seal segments (an eighth of the limit each), so summaries are written.
        for i in 0..2000 {
            sp.append(EntryKind::Data, &msg(i, 100), one(i), false, &prelude())
                .unwrap();
        }
        let segs = list_segments(&d).unwrap();
        assert!(segs.len() > 2, "{segs:?}");
        assert!(sum_path(&d, segs[0]).exists());
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "lock" || name == "ack" {
                continue; // made before the handover, which chowns them
            }
            assert_eq!(e.metadata().unwrap().uid(), 65534, "{name}");
        }
        drop(sp);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_entry_and_counted() {
        let d = dir("torn");
        let s = spec(&d, 1 << 20, SpoolPolicy::DropOldest);
        {
            let mut sp = Spool::open(s.clone(), d.clone(), false).unwrap();
            for i in 0..10 {
                sp.append(EntryKind::Data, &msg(i, 100), one(i), false, &prelude())
                    .unwrap();
            }
        }
        // A crash in the middle of the 11th entry: half of it on disk.
        let seg = d.join(list_segments(&d).unwrap()[0].file_name());
        let whole = std::fs::metadata(&seg).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0, 0, 0, 100, 1, 2, 3, 4, 1, 0, 0, 0, 9, 9])
            .unwrap();
        drop(f);
        let mut sp = Spool::open(s, d.clone(), false).unwrap();
        let st = sp.stats();
        assert_eq!((st.torn_segments, st.torn_bytes), (1, 14));
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), whole);
        assert_eq!(st.from_earlier_runs.messages, 10);
        assert_eq!(read_ids(&mut sp), (0..10).collect::<Vec<_>>());
        // A flipped bit in an entry is caught by its CRC: the segment ends before it.
        drop(sp);
        let mut b = std::fs::read(&seg).unwrap();
        let n = b.len();
        b[n - 50] ^= 0x40;
        std::fs::write(&seg, b).unwrap();
        let mut sp =
            Spool::open(spec(&d, 1 << 20, SpoolPolicy::DropOldest), d.clone(), false).unwrap();
        assert_eq!(read_ids(&mut sp), (0..9).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_acknowledged_position_survives_a_restart() {
        let d = dir("ack");
        let s = spec(&d, 1 << 20, SpoolPolicy::DropOldest);
        {
            let mut sp = Spool::open(s.clone(), d.clone(), false).unwrap();
            for i in 0..10 {
                sp.append(EntryKind::Data, &msg(i, 100), one(i), false, &prelude())
                    .unwrap();
            }
            let mut end = None;
            for _ in 0..5 {
                let e = sp.read_next().unwrap();
                if e.kind == EntryKind::Data {
                    end = Some(e.end);
                    sp.acknowledge(e.end, Some(e.flows), false);
                } else {
                    assert_eq!(e.kind, EntryKind::Prelude);
                }
            }
            assert!(end.is_some());
            sp.tick(true);
        }
        let mut sp = Spool::open(s, d.clone(), false).unwrap();
        // The prelude and 4 data entries were acknowledged; 6 remain.
        assert_eq!(sp.stats().from_earlier_runs.messages, 6);
        assert!(sp.prelude_of_next().is_some());
        assert_eq!(read_ids(&mut sp), (4..10).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_spool_drops_by_its_policy_and_counts() {
        for policy in [SpoolPolicy::DropOldest, SpoolPolicy::DropNewest] {
            let d = dir(policy.name());
            // 1 MiB in 128 KiB segments; 2,000 messages of 1,000 bytes do not fit.
            let mut sp = Spool::open(spec(&d, 1 << 20, policy), d.clone(), false).unwrap();
            let mut refused = 0;
            for i in 0..2000 {
                if let Err(AppendError::Full) =
                    sp.append(EntryKind::Data, &msg(i, 1000), one(i), false, &prelude())
                {
                    refused += 1;
                }
            }
            let st = sp.stats();
            assert!(st.bytes <= 1 << 20, "{st:?}");
            assert_eq!(
                st.pending.messages + st.dropped_full.messages,
                2000,
                "{st:?}"
            );
            let kept = read_ids(&mut sp);
            assert_eq!(kept.len() as u64, st.pending.messages);
            match policy {
                SpoolPolicy::DropOldest => {
                    assert_eq!(refused, 0);
                    assert_eq!(*kept.last().unwrap(), 1999, "the newest are kept");
                }
                SpoolPolicy::DropNewest => {
                    assert_eq!(refused, st.dropped_full.messages);
                    assert_eq!(kept[0], 0, "the oldest are kept");
                }
            }
            // Every kept message is in order with no gap inside a segment's run of them.
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn a_second_probe_cannot_take_a_spool_in_use() {
        let d = dir("lock");
        let s = spec(&d, 1 << 20, SpoolPolicy::DropOldest);
        let _a = Spool::open(s.clone(), d.clone(), false).unwrap();
        let e = Spool::open(s, d.clone(), false).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn segments_past_the_age_limit_are_deleted_and_counted() {
        let d = dir("age");
        let mut s = spec(&d, 1 << 20, SpoolPolicy::DropOldest);
        s.max_age = Some(Duration::from_secs(1));
        let mut sp = Spool::open(s, d.clone(), false).unwrap();
        for i in 0..5 {
            sp.append(EntryKind::Data, &msg(i, 100), one(i), false, &prelude())
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(2100));
        // The segment began over max_age/8 ago: the next message starts a new one.
        sp.append(EntryKind::Data, &msg(5, 100), one(5), false, &prelude())
            .unwrap();
        sp.tick(false);
        let st = sp.stats();
        assert_eq!(st.dropped_expired.messages, 5, "{st:?}");
        assert_eq!(st.pending.messages, 1);
        assert_eq!(read_ids(&mut sp), vec![5]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn sealed_segments_are_summed_so_a_restart_counts_without_reading_them() {
        let d = dir("sums");
        let s = spec(&d, 1 << 20, SpoolPolicy::DropOldest);
        {
            let mut sp = Spool::open(s.clone(), d.clone(), false).unwrap();
            for i in 0..500 {
                sp.append(EntryKind::Data, &msg(i, 1000), one(i), false, &prelude())
                    .unwrap();
            }
            assert!(sp.stats().segments >= 3);
        }
        let ids = list_segments(&d).unwrap();
        let sums = ids.iter().filter(|id| sum_path(&d, **id).exists()).count();
        assert_eq!(
            sums,
            ids.len() - 1,
            "every segment but the one being written"
        );
        let mut sp = Spool::open(s, d.clone(), false).unwrap();
        let st = sp.stats();
        assert_eq!(st.from_earlier_runs, st.pending);
        let kept = read_ids(&mut sp);
        assert_eq!(st.pending.messages, kept.len() as u64);
        assert_eq!(
            st.pending.flows.packets,
            kept.iter().map(|&i| i as u64).sum::<u64>()
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
