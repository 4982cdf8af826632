//! Minimal pcap and pcapng writers, written from pcap-savefile(5) and the pcapng draft, for
//! crafting test captures.

use std::io::Write;

pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;

/// One frame and its capture time (nanoseconds since the epoch).
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

/// Writes a pcap file; `nanos` selects the nanosecond magic.
pub fn write_pcap(path: &std::path::Path, linktype: u32, nanos: bool, frames: &[Frame]) {
    let mut w = PcapWriter::create(path, linktype, nanos).unwrap();
    for f in frames {
        w.write(f.ts_ns, &f.data).unwrap();
    }
    w.finish().unwrap();
}

/// Reads the frames of a little-endian pcap file (microsecond or nanosecond magic), as
/// another program wrote it (scapy), so a test can send them into the live lab.
pub fn read_pcap(path: &std::path::Path) -> Vec<Frame> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let nanos = match u32_at(0) {
        0xa1b2_c3d4 => false,
        0xa1b2_3c4d => true,
        m => panic!(
            "{}: not a little-endian pcap (magic {m:#x})",
            path.display()
        ),
    };
    let mut frames = vec![];
    let mut pos = 24;
    while pos + 16 <= b.len() {
        let (secs, frac, len) = (u32_at(pos) as u64, u32_at(pos + 4) as u64, u32_at(pos + 8));
        let start = pos + 16;
        let data = b[start..start + len as usize].to_vec();
        frames.push(Frame {
            ts_ns: secs * 1_000_000_000 + if nanos { frac } else { frac * 1000 },
            data,
        });
        pos = start + len as usize;
    }
    frames
}

/// A streaming little-endian pcap writer, for captures too large to hold in memory.
pub struct PcapWriter {
    w: std::io::BufWriter<std::fs::File>,
    nanos: bool,
}

impl PcapWriter {
    pub fn create(
        path: &std::path::Path,
        linktype: u32,
        nanos: bool,
    ) -> std::io::Result<PcapWriter> {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        w.write_all(&magic.to_le_bytes())?;
        w.write_all(&2u16.to_le_bytes())?;
        w.write_all(&4u16.to_le_bytes())?;
        w.write_all(&[0; 8])?;
        w.write_all(&262_144u32.to_le_bytes())?;
        w.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { w, nanos })
    }

    pub fn write(&mut self, ts_ns: u64, data: &[u8]) -> std::io::Result<()> {
        let secs = (ts_ns / 1_000_000_000) as u32;
        let frac = ts_ns % 1_000_000_000;
        let frac = if self.nanos { frac } else { frac / 1000 } as u32;
        self.w.write_all(&secs.to_le_bytes())?;
        self.w.write_all(&frac.to_le_bytes())?;
        self.w.write_all(&(data.len() as u32).to_le_bytes())?;
        self.w.write_all(&(data.len() as u32).to_le_bytes())?;
        self.w.write_all(data)
    }

    /// Pushes what was written to the file (or pipe) without closing it.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Writes a big-endian pcapng file with one interface at nanosecond resolution.
pub fn write_pcapng_be_nanos(path: &std::path::Path, linktype: u16, frames: &[Frame]) {
    fn block(w: &mut impl Write, ty: u32, body: &[u8]) {
        let mut b = body.to_vec();
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        let total = 12 + b.len() as u32;
        w.write_all(&ty.to_be_bytes()).unwrap();
        w.write_all(&total.to_be_bytes()).unwrap();
        w.write_all(&b).unwrap();
        w.write_all(&total.to_be_bytes()).unwrap();
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut shb = 0x1a2b_3c4du32.to_be_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_be_bytes());
    shb.extend_from_slice(&0u16.to_be_bytes());
    shb.extend_from_slice(&(-1i64).to_be_bytes());
    block(&mut w, 0x0a0d_0d0a, &shb);
    let mut idb = linktype.to_be_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&0u32.to_be_bytes());
    idb.extend_from_slice(&9u16.to_be_bytes()); // if_tsresol
    idb.extend_from_slice(&1u16.to_be_bytes());
    idb.extend_from_slice(&[9, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
    block(&mut w, 1, &idb);
    for f in frames {
        let mut epb = 0u32.to_be_bytes().to_vec();
        epb.extend_from_slice(&((f.ts_ns >> 32) as u32).to_be_bytes());
        epb.extend_from_slice(&(f.ts_ns as u32).to_be_bytes());
        epb.extend_from_slice(&(f.data.len() as u32).to_be_bytes());
        epb.extend_from_slice(&(f.data.len() as u32).to_be_bytes());
        epb.extend_from_slice(&f.data);
        block(&mut w, 6, &epb);
    }
    w.flush().unwrap();
}
