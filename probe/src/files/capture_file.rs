//! Reading pcap and pcapng files.
//!
//! Our own reader rather than `pcap-file` 2.0, for two correctness reasons: that crate refuses
//! pcap records whose original length exceeds the snap length (what `tcpdump -s 96` writes on
//! every long packet), and it reads pcapng timestamps as nanoseconds whatever the interface's
//! `if_tsresol` says (the default is microseconds), which puts flows 1000 times too early.
//!
//! This reader handles pcap (microsecond and nanosecond magic, both byte orders) and pcapng
//! (sections of either byte order, several interfaces, `if_tsresol`, `if_tsoffset`, enhanced,
//! simple and obsolete packet blocks). Every length read from the file is bounded before it is
//! used, so a hostile file costs at most one bounded buffer. A file that ends inside a record
//! reports [`ReadError::Truncated`] after every complete record has been returned.
//!
//! Captures travel compressed: a gzip (`.pcap.gz`, also concatenated members) or zstd stream is
//! recognised by its magic bytes, from files and pipes alike, and decompressed as it is read
//! (flate2, zstd). Other compressions (xz, bzip2, lz4) are named in the error.
//!
//! Above 700 lines on purpose: the two formats share the bounded reads, the record type and the
//! error type, and splitting them would make those internals public to a second module for no
//! reader's benefit (its tests are already apart, in `capture_file/tests.rs`).

use ipfix_export::TimePrecision;
use probe_core::wire::LinkType;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest pcap record we accept (BIG TCP and GRO frames stay well below it).
pub const MAX_RECORD_LEN: u32 = 1 << 20;
/// Largest pcapng block we accept.
pub const MAX_BLOCK_LEN: u32 = 16 << 20;

const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_PB_OBSOLETE: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// A gzip decoder whose errors name gzip (a corrupt member, a stream cut short).
struct Gzip<R>(flate2::read::MultiGzDecoder<R>);

impl<R: Read> Read for Gzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("gzip: {e}")))
    }
}

/// A zstd decoder whose errors name zstd.
struct Zstd<R: io::BufRead>(zstd::stream::read::Decoder<'static, R>);

impl<R: io::BufRead> Read for Zstd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::new(e.kind(), format!("zstd: {e}")))
    }
}

/// Why a capture file could not be read (further).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] io::Error),
    #[error("empty file: not a pcap or pcapng file")]
    Empty,
    #[error("not a pcap or pcapng file (first bytes {0:08x})")]
    NotACapture(u32),
    #[error("compressed with {0}, which the probe does not read (it reads gzip and zstd): decompress it first, e.g. `{1} -dc FILE | probe read /dev/stdin`")]
    UnsupportedCompression(&'static str, &'static str),
    #[error("cannot decompress ({0}): {1}")]
    Decompress(&'static str, io::Error),
    #[error("unsupported link type {0} ({name}); the probe reads Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback", name = linktype_name(*.0))]
    UnsupportedLinkType(u32),
    #[error("file is truncated: it ends inside the record at byte offset {offset}")]
    Truncated { offset: u64 },
    #[error("corrupt at byte offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },
}

fn linktype_name(v: u32) -> &'static str {
    match v {
        104 => "Cisco HDLC",
        105 => "IEEE 802.11",
        107 => "Frame Relay",
        127 => "802.11 radiotap",
        143 => "DOCSIS",
        195 | 215 | 230 | 283 => "IEEE 802.15.4",
        258 => "PKTAP",
        _ => "see tcpdump.org/linktypes.html",
    }
}

/// One packet, borrowed from the reader's buffer until the next call.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Nanoseconds since the UNIX epoch.
    pub ts_ns: u64,
    /// `None` for a pcapng interface whose link type the probe does not decode.
    pub link: Option<LinkType>,
    pub linktype: u32,
    pub data: &'a [u8],
    pub orig_len: u32,
    /// The resolution of this packet's timestamp (its file's, or its pcapng interface's).
    pub precision: TimePrecision,
}

#[derive(Clone, Copy, Debug)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
}

/// Timestamp resolution of a pcapng interface.
#[derive(Clone, Copy, Debug)]
enum TsResolution {
    /// Units of 10^-n seconds.
    Decimal(u32),
    /// Units of 2^-n seconds.
    Binary(u32),
}

impl TsResolution {
    fn to_ns(self, units: u64) -> u64 {
        match self {
            TsResolution::Decimal(n) if n <= 9 => units.saturating_mul(10u64.pow(9 - n)),
            TsResolution::Decimal(n) => units / 10u64.pow((n - 9).min(19)),
            TsResolution::Binary(n) => ((units as u128 * 1_000_000_000u128) >> n.min(127)) as u64,
        }
    }
    fn finer_than_micros(self) -> bool {
        match self {
            TsResolution::Decimal(n) => n > 6,
            TsResolution::Binary(n) => n > 20,
        }
    }
}

#[derive(Clone, Debug)]
struct Interface {
    linktype: u32,
    link: Option<LinkType>,
    snaplen: u32,
    resolution: TsResolution,
    offset_secs: i64,
}

enum Format {
    Pcap {
        endian: Endian,
        nanos: bool,
        linktype: u32,
        link: LinkType,
    },
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
        last_ts_ns: u64,
    },
}

/// Bytes read from the file per refill. Small enough that what the kernel copies in is still
/// in L2 when it is parsed: 256 KiB took 7–14% less CPU than 1 MiB on the benchmark file
/// (five alternating runs each); 64 and 128 KiB were no better.
const CHUNK: usize = 1 << 18;

/// A chunked view of the file: records are parsed in place from a large buffer and handed out
/// as slices of it, so a packet costs no copy and no system call of its own.
struct Input {
    /// The bytes of the capture: the file itself, or a decompressor reading it.
    source: Box<dyn Read>,
    buf: Vec<u8>,
    /// The whole file, when it is a regular file that could be mapped; `buf` is then unused.
    map: Option<crate::files::mapped::MappedFile>,
    start: usize,
    end: usize,
    /// Bytes consumed so far, for error messages.
    offset: u64,
}

/// How a capture's bytes are packed, told by their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression of a regular file, from its first bytes (`None` when it cannot be read
    /// or is not compressed); for progress, which cannot count compressed bytes.
    pub fn of_file(path: &Path) -> Compression {
        let mut head = Vec::with_capacity(8);
        match File::open(path).and_then(|f| f.take(6).read_to_end(&mut head)) {
            Ok(_) => Compression::of(&head).unwrap_or(Compression::None),
            Err(_) => Compression::None,
        }
    }

    /// The compression whose magic `head` starts with; `Err` for ones we do not read.
    fn of(head: &[u8]) -> Result<Compression, ReadError> {
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', ..] => {
                return Err(ReadError::UnsupportedCompression("xz", "xz"))
            }
            [b'B', b'Z', b'h', ..] => {
                return Err(ReadError::UnsupportedCompression("bzip2", "bzip2"))
            }
            [0x04, 0x22, 0x4d, 0x18, ..] => {
                return Err(ReadError::UnsupportedCompression("lz4", "lz4"))
            }
            _ => Compression::None,
        })
    }
}

impl Input {
    /// Reads `file`: mapped when it is a plain regular file, else through a buffer, and through
    /// a decompressor when its first bytes say gzip or zstd.
    fn new(mut file: File) -> Result<Input, ReadError> {
        // The first bytes, read and put back in front (a pipe cannot seek).
        let mut head = Vec::with_capacity(8);
        (&mut file).take(6).read_to_end(&mut head)?;
        let compression = Compression::of(&head)?;
        let map = match compression {
            Compression::None => crate::files::mapped::MappedFile::map(&file),
            _ => None,
        };
        let end = map.as_ref().map_or(0, |m| m.bytes().len());
        let raw = std::io::Cursor::new(head).chain(file);
        let source: Box<dyn Read> = match compression {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(Gzip(flate2::read::MultiGzDecoder::new(raw))),
            Compression::Zstd => Box::new(Zstd(
                zstd::stream::read::Decoder::new(raw)
                    .map_err(|e| ReadError::Decompress("zstd", e))?,
            )),
        };
        Ok(Input {
            source,
            buf: Vec::new(),
            map,
            start: 0,
            end,
            offset: 0,
        })
    }

    /// What `start`, `end` and the ranges handed out index into.
    #[inline]
    fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(m) => m.bytes(),
            None => &self.buf,
        }
    }

    /// Makes `n` bytes available at `start`; `Ok(false)` if the file ends before that.
    #[inline]
    fn ensure(&mut self, n: usize) -> io::Result<bool> {
        if let Some(m) = &mut self.map {
            if m.shrank() {
                return Err(io::Error::other(
                    "the file shrank while it was being read (another program truncated or rewrote it)",
                ));
            }
            // Nothing before `start` is borrowed any more: the last packet's slice ended there.
            m.passed(self.start);
            return Ok(self.end - self.start >= n);
        }
        while self.end - self.start < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < n.max(CHUNK) {
                self.buf.resize(n.max(CHUNK), 0);
            }
            // EINTR is returned, not retried: the caller decides whether a signal means stop.
            let got = self.source.read(&mut self.buf[self.end..])?;
            if got == 0 {
                return Ok(false);
            }
            self.end += got;
        }
        Ok(true)
    }

    /// Consumes `n` available bytes, returning their position in `buf`.
    #[inline]
    fn consume(&mut self, n: usize) -> std::ops::Range<usize> {
        let r = self.start..self.start + n;
        self.start += n;
        self.offset += n as u64;
        if let Some(m) = &self.map {
            // The next record's header and first bytes: a mapped file is read from memory,
            // not from a buffer the kernel has just filled, so ask for it a packet early.
            m.prefetch(self.start);
        }
        r
    }

    /// Reads exactly `n` bytes: `Ok(None)` at a clean end of file (nothing left),
    /// [`ReadError::Truncated`] when the file ends inside them.
    fn record(
        &mut self,
        n: usize,
        record_start: u64,
    ) -> Result<Option<std::ops::Range<usize>>, ReadError> {
        if self.ensure(n)? {
            return Ok(Some(self.consume(n)));
        }
        if self.end == self.start && self.offset == record_start {
            return Ok(None);
        }
        Err(ReadError::Truncated {
            offset: record_start,
        })
    }
}

/// An open capture file.
pub struct CaptureFile {
    path: PathBuf,
    input: Input,
    format: Format,
    precision: TimePrecision,
}

impl CaptureFile {
    /// Bytes of the file consumed so far (for progress reports).
    pub fn bytes_read(&self) -> u64 {
        self.input.offset
    }

    pub fn open(path: &Path) -> Result<CaptureFile, ReadError> {
        let file = File::open(path)?;
        let input = Input::new(file)?;
        let mut cf = CaptureFile {
            path: path.to_path_buf(),
            input,
            format: Format::PcapNg {
                endian: Endian::Little,
                interfaces: vec![],
                last_ts_ns: 0,
            },
            precision: TimePrecision::Micros,
        };
        let head = match cf.input.record(4, 0)? {
            Some(r) => &cf.input.bytes()[r],
            None => return Err(ReadError::Empty),
        };
        let magic_le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let (endian, nanos) = match magic_le {
            PCAP_MAGIC_MICROS => (Endian::Little, false),
            PCAP_MAGIC_NANOS => (Endian::Little, true),
            m if m.swap_bytes() == PCAP_MAGIC_MICROS => (Endian::Big, false),
            m if m.swap_bytes() == PCAP_MAGIC_NANOS => (Endian::Big, true),
            PCAPNG_SHB => {
                cf.read_section_header()?;
                return Ok(cf);
            }
            m => return Err(ReadError::NotACapture(m.swap_bytes())),
        };
        let rest = cf
            .input
            .record(20, 0)?
            .ok_or(ReadError::Truncated { offset: 0 })?;
        let rest = &cf.input.bytes()[rest];
        // The upper bits of the link-type field carry FCS information (pcap-savefile(5)).
        let linktype = endian.u32(&rest[16..20]) & 0x0fff_ffff;
        let link =
            LinkType::from_linktype(linktype).ok_or(ReadError::UnsupportedLinkType(linktype))?;
        cf.format = Format::Pcap {
            endian,
            nanos,
            linktype,
            link,
        };
        if nanos {
            cf.precision = TimePrecision::Nanos;
        }
        Ok(cf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file's clock is finer than a microsecond (for any interface seen so far).
    pub fn time_precision(&self) -> TimePrecision {
        self.precision
    }

    /// Whether the next record is already in memory, so reading it cannot wait for the source
    /// (always, for a mapped file). A pipe's reader checks this to ship its records before a
    /// read that may block.
    pub fn next_is_buffered(&self) -> bool {
        let i = &self.input;
        if i.map.is_some() {
            return true;
        }
        let b = &i.bytes()[i.start..i.end];
        match &self.format {
            Format::Pcap { endian, .. } => {
                b.len() >= 16 && b.len() - 16 >= endian.u32(&b[8..12]) as usize
            }
            Format::PcapNg { endian, .. } => {
                b.len() >= 8 && b.len() >= endian.u32(&b[4..8]) as usize
            }
        }
    }

    /// The next packet; `Ok(None)` at a clean end of file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, ReadError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Packet<'_>>, ReadError> {
        let Format::Pcap {
            endian,
            nanos,
            linktype,
            link,
        } = self.format
        else {
            unreachable!()
        };
        let start = self.input.offset;
        let Some(h) = self.input.record(16, start)? else {
            return Ok(None);
        };
        let h = &self.input.bytes()[h];
        let secs = endian.u32(&h[0..4]) as u64;
        let frac = endian.u32(&h[4..8]) as u64;
        let incl_len = endian.u32(&h[8..12]);
        let orig_len = endian.u32(&h[12..16]);
        if incl_len > MAX_RECORD_LEN {
            return Err(ReadError::Corrupt {
                offset: start,
                what: format!("record length {incl_len} exceeds {MAX_RECORD_LEN}"),
            });
        }
        if !self.input.ensure(incl_len as usize)? {
            return Err(ReadError::Truncated { offset: start });
        }
        let data = self.input.consume(incl_len as usize);
        let ts_ns = secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        Ok(Some(Packet {
            ts_ns,
            link: Some(link),
            linktype,
            data: &self.input.bytes()[data],
            orig_len,
            precision: self.precision,
        }))
    }

    /// Reads a section header block whose type has already been consumed.
    fn read_section_header(&mut self) -> Result<(), ReadError> {
        let start = self.input.offset - 4;
        let h = self
            .input
            .record(8, start)?
            .ok_or(ReadError::Truncated { offset: start })?;
        let h = &self.input.bytes()[h];
        let endian = match u32::from_le_bytes([h[4], h[5], h[6], h[7]]) {
            PCAPNG_BYTE_ORDER_MAGIC => Endian::Little,
            m if m.swap_bytes() == PCAPNG_BYTE_ORDER_MAGIC => Endian::Big,
            _ => {
                return Err(ReadError::Corrupt {
                    offset: start,
                    what: "bad pcapng byte-order magic".into(),
                })
            }
        };
        let total = endian.u32(&h[0..4]);
        check_block_len(total, 28, start)?;
        // Skip the rest of the header (versions, section length, options, trailer).
        self.input
            .record(total as usize - 12, start)?
            .ok_or(ReadError::Truncated { offset: start })?;
        self.format = Format::PcapNg {
            endian,
            interfaces: vec![],
            last_ts_ns: 0,
        };
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, ReadError> {
        loop {
            let start = self.input.offset;
            let Some(h) = self.input.record(4, start)? else {
                return Ok(None);
            };
            let Format::PcapNg { endian, .. } = self.format else {
                unreachable!()
            };
            let block_type = endian.u32(&self.input.bytes()[h]);
            if block_type == PCAPNG_SHB {
                self.read_section_header()?;
                continue;
            }
            let len = self
                .input
                .record(4, start)?
                .ok_or(ReadError::Truncated { offset: start })?;
            let total = endian.u32(&self.input.bytes()[len]);
            check_block_len(total, 12, start)?;
            // Body plus the trailing copy of the length.
            let body = self
                .input
                .record(total as usize - 8, start)?
                .ok_or(ReadError::Truncated { offset: start })?;
            let body_len = total as usize - 12;
            if endian.u32(&self.input.bytes()[body.start + body_len..]) != total {
                return Err(ReadError::Corrupt {
                    offset: start,
                    what: "block length trailer does not match".into(),
                });
            }
            let body = body.start..body.start + body_len;
            match block_type {
                PCAPNG_IDB => self.add_interface(endian, body, start)?,
                PCAPNG_EPB | PCAPNG_PB_OBSOLETE | PCAPNG_SPB => {
                    return self
                        .pcapng_packet(block_type, endian, body, start)
                        .map(Some);
                }
                _ => {} // statistics, name resolution, custom blocks: nothing to meter
            }
        }
    }

    fn add_interface(
        &mut self,
        endian: Endian,
        body: std::ops::Range<usize>,
        start: u64,
    ) -> Result<(), ReadError> {
        let body = &self.input.bytes()[body];
        if body.len() < 8 {
            return Err(ReadError::Corrupt {
                offset: start,
                what: "interface description block too short".into(),
            });
        }
        let linktype = endian.u16(&body[0..2]) as u32;
        let snaplen = endian.u32(&body[4..8]);
        let mut resolution = TsResolution::Decimal(6);
        let mut offset_secs = 0i64;
        let mut opts = &body[8..];
        while opts.len() >= 4 {
            let code = endian.u16(&opts[0..2]);
            let len = endian.u16(&opts[2..4]) as usize;
            let padded = (len + 3) & !3;
            if code == OPT_END || opts.len() < 4 + padded {
                break;
            }
            let val = &opts[4..4 + len];
            match code {
                OPT_IF_TSRESOL if len >= 1 => {
                    resolution = if val[0] & 0x80 == 0 {
                        TsResolution::Decimal((val[0] & 0x7f) as u32)
                    } else {
                        TsResolution::Binary((val[0] & 0x7f) as u32)
                    }
                }
                OPT_IF_TSOFFSET if len >= 8 => {
                    let raw = match endian {
                        Endian::Little => u64::from_le_bytes(val[..8].try_into().unwrap()),
                        Endian::Big => u64::from_be_bytes(val[..8].try_into().unwrap()),
                    };
                    offset_secs = raw as i64;
                }
                _ => {}
            }
            opts = &opts[4 + padded..];
        }
        if resolution.finer_than_micros() {
            self.precision = TimePrecision::Nanos;
        }
        let Format::PcapNg { interfaces, .. } = &mut self.format else {
            unreachable!()
        };
        interfaces.push(Interface {
            linktype,
            link: LinkType::from_linktype(linktype),
            snaplen,
            resolution,
            offset_secs,
        });
        Ok(())
    }

    fn pcapng_packet(
        &mut self,
        block_type: u32,
        endian: Endian,
        body: std::ops::Range<usize>,
        start: u64,
    ) -> Result<Packet<'_>, ReadError> {
        let precision = self.precision;
        let Format::PcapNg {
            interfaces,
            last_ts_ns,
            ..
        } = &mut self.format
        else {
            unreachable!()
        };
        let body = &self.input.bytes()[body];
        let corrupt = |what: &str| ReadError::Corrupt {
            offset: start,
            what: what.into(),
        };
        let (iface_id, ts_units, data_at, caplen, orig_len) = match block_type {
            PCAPNG_EPB | PCAPNG_PB_OBSOLETE => {
                if body.len() < 20 {
                    return Err(corrupt("packet block too short"));
                }
                let iface = if block_type == PCAPNG_EPB {
                    endian.u32(&body[0..4])
                } else {
                    endian.u16(&body[0..2]) as u32
                };
                let ts = ((endian.u32(&body[4..8]) as u64) << 32) | endian.u32(&body[8..12]) as u64;
                (
                    iface,
                    Some(ts),
                    20,
                    endian.u32(&body[12..16]) as usize,
                    endian.u32(&body[16..20]),
                )
            }
            _ => {
                if body.len() < 4 {
                    return Err(corrupt("simple packet block too short"));
                }
                let orig = endian.u32(&body[0..4]);
                let snap = interfaces
                    .first()
                    .map(|i| i.snaplen)
                    .filter(|&s| s > 0)
                    .unwrap_or(u32::MAX);
                let cap = (orig.min(snap) as usize).min(body.len() - 4);
                (0, None, 4, cap, orig)
            }
        };
        let iface = interfaces
            .get(iface_id as usize)
            .ok_or_else(|| corrupt(&format!("packet refers to undeclared interface {iface_id}")))?;
        if data_at + caplen > body.len() {
            return Err(corrupt("captured length exceeds the block"));
        }
        let ts_ns = match ts_units {
            Some(units) => {
                let ns = iface.resolution.to_ns(units) as i128
                    + iface.offset_secs as i128 * 1_000_000_000;
                ns.clamp(0, u64::MAX as i128) as u64
            }
            // Simple packet blocks carry no time: they inherit the previous packet's.
            None => *last_ts_ns,
        };
        *last_ts_ns = ts_ns;
        Ok(Packet {
            ts_ns,
            link: iface.link,
            linktype: iface.linktype,
            data: &body[data_at..data_at + caplen],
            orig_len,
            precision,
        })
    }
}

fn check_block_len(total: u32, min: u32, offset: u64) -> Result<(), ReadError> {
    if total < min || !total.is_multiple_of(4) || total > MAX_BLOCK_LEN {
        return Err(ReadError::Corrupt {
            offset,
            what: format!("bad block length {total}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
