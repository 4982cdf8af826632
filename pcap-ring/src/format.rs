//! The two file formats the ring writes, byte for byte: pcap with nanosecond timestamps
//! (magic `a1b23c4d`, little-endian) and pcapng (one section, one interface with its name and
//! `if_tsresol` = 9, Enhanced Packet Blocks).

/// Which format, and for pcapng the interface name written into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Pcap,
    Pcapng { interface: String },
}

pub const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
pub const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 1;
pub const PCAPNG_EPB: u32 = 6;
const LINKTYPE_ETHERNET: u32 = 1;
/// Longest record header (pcapng EPB) and trailer (3 pad bytes + the repeated length).
pub const MAX_RECORD_HEADER: usize = 28;
pub const MAX_RECORD_TRAILER: usize = 7;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

impl FileFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            FileFormat::Pcap => "pcap",
            FileFormat::Pcapng { .. } => "pcapng",
        }
    }

    /// The bytes that open a file.
    pub fn file_header(&self, snaplen: u32) -> Vec<u8> {
        let mut h = Vec::with_capacity(64);
        match self {
            FileFormat::Pcap => {
                h.extend_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
                h.extend_from_slice(&2u16.to_le_bytes());
                h.extend_from_slice(&4u16.to_le_bytes());
                h.extend_from_slice(&[0; 8]);
                h.extend_from_slice(&snaplen.to_le_bytes());
                h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
            }
            FileFormat::Pcapng { interface } => {
                // Section Header Block: no options, section length unknown (-1).
                h.extend_from_slice(&PCAPNG_SHB.to_le_bytes());
                h.extend_from_slice(&28u32.to_le_bytes());
                h.extend_from_slice(&PCAPNG_BOM.to_le_bytes());
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes());
                h.extend_from_slice(&u64::MAX.to_le_bytes());
                h.extend_from_slice(&28u32.to_le_bytes());
                // Interface Description Block: if_name, if_tsresol = 9 (nanoseconds).
                let name = interface.as_bytes();
                let name = &name[..name.len().min(255)];
                let opts = 4 + name.len() + pad4(name.len()) + 4 + 4 + 4;
                let len = (20 + opts) as u32;
                h.extend_from_slice(&PCAPNG_IDB.to_le_bytes());
                h.extend_from_slice(&len.to_le_bytes());
                h.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
                h.extend_from_slice(&0u16.to_le_bytes());
                h.extend_from_slice(&snaplen.to_le_bytes());
                h.extend_from_slice(&2u16.to_le_bytes());
                h.extend_from_slice(&(name.len() as u16).to_le_bytes());
                h.extend_from_slice(name);
                h.extend(std::iter::repeat_n(0u8, pad4(name.len())));
                h.extend_from_slice(&9u16.to_le_bytes());
                h.extend_from_slice(&1u16.to_le_bytes());
                h.extend_from_slice(&[9, 0, 0, 0]);
                h.extend_from_slice(&[0, 0, 0, 0]); // opt_endofopt
                h.extend_from_slice(&len.to_le_bytes());
            }
        }
        h
    }

    /// A record's header and trailer for a frame of `caplen` stored bytes; returns their
    /// lengths. The record is `header + frame + trailer`.
    #[inline]
    pub fn record(
        &self,
        ts_ns: u64,
        caplen: u32,
        orig_len: u32,
        hdr: &mut [u8; MAX_RECORD_HEADER],
        trailer: &mut [u8; MAX_RECORD_TRAILER],
    ) -> (usize, usize) {
        let orig = orig_len.max(caplen);
        match self {
            FileFormat::Pcap => {
                hdr[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
                hdr[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
                hdr[8..12].copy_from_slice(&caplen.to_le_bytes());
                hdr[12..16].copy_from_slice(&orig.to_le_bytes());
                (16, 0)
            }
            FileFormat::Pcapng { .. } => {
                let pad = pad4(caplen as usize);
                let total = (32 + caplen as usize + pad) as u32;
                hdr[0..4].copy_from_slice(&PCAPNG_EPB.to_le_bytes());
                hdr[4..8].copy_from_slice(&total.to_le_bytes());
                hdr[8..12].copy_from_slice(&0u32.to_le_bytes());
                hdr[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
                hdr[16..20].copy_from_slice(&(ts_ns as u32).to_le_bytes());
                hdr[20..24].copy_from_slice(&caplen.to_le_bytes());
                hdr[24..28].copy_from_slice(&orig.to_le_bytes());
                trailer[..pad].fill(0);
                trailer[pad..pad + 4].copy_from_slice(&total.to_le_bytes());
                (28, pad + 4)
            }
        }
    }
}

/// The whole-record prefix of a file in either format: (length, first ts, last ts, frames);
/// `None` when it holds no whole record or is not one of ours.
pub fn whole_records(data: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    let (mut first, mut last, mut count) = (u64::MAX, 0u64, 0u64);
    let mut pos;
    if data.len() >= 24 && word(data, 0) == PCAP_MAGIC_NS {
        pos = 24;
        while let Some(h) = data.get(pos..pos + 16) {
            let caplen = word(h, 8) as usize;
            if pos + 16 + caplen > data.len() {
                break;
            }
            let ts = word(h, 0) as u64 * 1_000_000_000 + word(h, 4) as u64;
            first = first.min(ts);
            last = last.max(ts);
            count += 1;
            pos += 16 + caplen;
        }
    } else if data.len() >= 12 && word(data, 0) == PCAPNG_SHB {
        pos = 0;
        while let Some(h) = data.get(pos..pos + 8) {
            let len = word(h, 4) as usize;
            if len < 12 || !len.is_multiple_of(4) || pos + len > data.len() {
                break;
            }
            if word(h, 0) == PCAPNG_EPB && len >= 32 {
                let b = &data[pos..pos + len];
                let ts = ((word(b, 12) as u64) << 32) | word(b, 16) as u64;
                first = first.min(ts);
                last = last.max(ts);
                count += 1;
            }
            pos += len;
        }
    } else {
        return None;
    }
    (count > 0).then_some((pos as u64, first, last, count))
}
