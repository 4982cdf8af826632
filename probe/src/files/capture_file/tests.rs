//! Reader tests over files built byte by byte from pcap-savefile(5) and the pcapng draft.

use super::*;
use std::io::Write;

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tmp(name: &str, bytes: &[u8]) -> Tmp {
    let p = std::env::temp_dir().join(format!("probe-cf-{}-{name}", std::process::id()));
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    Tmp(p)
}

/// A 16-bit field in the file's byte order.
fn bytes16(big: bool, v: u16) -> [u8; 2] {
    if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

/// A 32-bit field in the file's byte order.
fn bytes32(big: bool, v: u32) -> [u8; 4] {
    if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    }
}

fn pcap(big: bool, nanos: bool, linktype: u32, pkts: &[(u32, u32, &[u8], u32)]) -> Vec<u8> {
    let (w16, w32) = (|v: u16| bytes16(big, v), |v: u32| bytes32(big, v));
    let mut f = vec![];
    f.extend_from_slice(&w32(if nanos {
        PCAP_MAGIC_NANOS
    } else {
        PCAP_MAGIC_MICROS
    }));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&w32(96)); // snaplen: original lengths below exceed it
    f.extend_from_slice(&w32(linktype));
    for (s, frac, data, orig) in pkts {
        f.extend_from_slice(&w32(*s));
        f.extend_from_slice(&w32(*frac));
        f.extend_from_slice(&w32(data.len() as u32));
        f.extend_from_slice(&w32(*orig));
        f.extend_from_slice(data);
    }
    f
}

/// (timestamp, bytes, link) of each packet read.
type Read = Vec<(u64, Vec<u8>, Option<LinkType>)>;

fn read_all(path: &Path) -> (Read, Option<ReadError>) {
    let mut cf = CaptureFile::open(path).unwrap();
    let mut v = vec![];
    loop {
        match cf.next_packet() {
            Ok(Some(p)) => v.push((p.ts_ns, p.data.to_vec(), p.link)),
            Ok(None) => return (v, None),
            Err(e) => return (v, Some(e)),
        }
    }
}

#[test]
fn pcap_all_magics_and_byte_orders() {
    for big in [false, true] {
        for nanos in [false, true] {
            let frac = if nanos { 123_456_789 } else { 123_456 };
            let bytes = pcap(big, nanos, 1, &[(1_700_000_000, frac, &[1, 2, 3], 1500)]);
            let t = tmp(&format!("m{big}{nanos}"), &bytes);
            let (pkts, err) = read_all(&t.0);
            assert!(err.is_none());
            let want = 1_700_000_000_000_000_000 + if nanos { 123_456_789 } else { 123_456_000 };
            assert_eq!(pkts, vec![(want, vec![1, 2, 3], Some(LinkType::Ethernet))]);
            let cf = CaptureFile::open(&t.0).unwrap();
            assert_eq!(cf.time_precision() == TimePrecision::Nanos, nanos);
        }
    }
}

#[test]
fn truncated_pcap_returns_complete_records_then_the_error() {
    let mut bytes = pcap(
        false,
        false,
        1,
        &[(1, 0, &[1; 10], 10), (2, 0, &[2; 10], 10)],
    );
    bytes.truncate(bytes.len() - 3);
    let t = tmp("trunc", &bytes);
    let (pkts, err) = read_all(&t.0);
    assert_eq!(pkts.len(), 1);
    assert!(
        matches!(err, Some(ReadError::Truncated { offset: 50 })),
        "{err:?}"
    );
}

#[test]
fn unsupported_link_type_and_garbage_are_refused_at_open() {
    let t = tmp("wpan", &pcap(false, false, 195, &[]));
    assert!(matches!(
        CaptureFile::open(&t.0),
        Err(ReadError::UnsupportedLinkType(195))
    ));
    let t = tmp("junk", b"hello world, not a capture");
    assert!(matches!(
        CaptureFile::open(&t.0),
        Err(ReadError::NotACapture(_))
    ));
    let mut huge = pcap(false, false, 1, &[]);
    huge.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    let t = tmp("huge", &huge);
    let (_, err) = read_all(&t.0);
    assert!(matches!(err, Some(ReadError::Corrupt { .. })));
}

fn block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
    let w32 = |v: u32| bytes32(big, v);
    let mut padded = body.to_vec();
    while !padded.len().is_multiple_of(4) {
        padded.push(0);
    }
    let total = 12 + padded.len() as u32;
    let mut b = w32(ty).to_vec();
    b.extend_from_slice(&w32(total));
    b.extend_from_slice(&padded);
    b.extend_from_slice(&w32(total));
    b
}

fn pcapng(big: bool, tsresol: Option<u8>, linktype: u16, ts_units: u64, data: &[u8]) -> Vec<u8> {
    let (w16, w32) = (|v: u16| bytes16(big, v), |v: u32| bytes32(big, v));
    let mut shb = w32(PCAPNG_BYTE_ORDER_MAGIC).to_vec();
    shb.extend_from_slice(&w16(1));
    shb.extend_from_slice(&w16(0));
    shb.extend_from_slice(&[0xff; 8]);
    let mut f = block(big, PCAPNG_SHB, &shb);
    let mut idb = w16(linktype).to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&w32(0));
    if let Some(r) = tsresol {
        idb.extend_from_slice(&w16(OPT_IF_TSRESOL));
        idb.extend_from_slice(&w16(1));
        idb.extend_from_slice(&[r, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]);
    }
    f.extend(block(big, PCAPNG_IDB, &idb));
    f.extend(block(big, 4, &[0; 8])); // a name resolution block to skip
    let mut epb = w32(0).to_vec();
    epb.extend_from_slice(&w32((ts_units >> 32) as u32));
    epb.extend_from_slice(&w32(ts_units as u32));
    epb.extend_from_slice(&w32(data.len() as u32));
    epb.extend_from_slice(&w32(data.len() as u32 + 100));
    epb.extend_from_slice(data);
    f.extend(block(big, PCAPNG_EPB, &epb));
    let mut spb = w32(data.len() as u32).to_vec();
    spb.extend_from_slice(data);
    f.extend(block(big, PCAPNG_SPB, &spb));
    f
}

#[test]
fn pcapng_resolutions_byte_orders_and_blocks() {
    let cases = [
        (
            None,
            1_700_000_000_123_456u64,
            1_700_000_000_123_456_000u64,
            TimePrecision::Micros,
        ),
        (
            Some(9),
            1_700_000_000_123_456_789,
            1_700_000_000_123_456_789,
            TimePrecision::Nanos,
        ),
        (
            Some(3),
            1_700_000_000_123,
            1_700_000_000_123_000_000,
            TimePrecision::Micros,
        ),
        (
            Some(0x80 | 10),
            1_700_000_000u64 << 10 | 512,
            1_700_000_000_500_000_000,
            TimePrecision::Micros,
        ),
    ];
    for big in [false, true] {
        for (res, units, want, precision) in cases {
            let t = tmp(
                &format!("ng{big}{res:?}"),
                &pcapng(big, res, 101, units, &[0x45, 0, 0]),
            );
            let (pkts, err) = read_all(&t.0);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(pkts.len(), 2);
            assert_eq!(pkts[0], (want, vec![0x45, 0, 0], Some(LinkType::RawIp)));
            assert_eq!(
                pkts[1].0, want,
                "simple packet block inherits the last time"
            );
            // Interfaces are learned as their blocks are read, so ask after the first packet.
            let mut cf = CaptureFile::open(&t.0).unwrap();
            cf.next_packet().unwrap();
            assert_eq!(cf.time_precision(), precision);
        }
    }
}

#[test]
fn pcapng_unsupported_interface_yields_packets_without_link() {
    let t = tmp("ngwpan", &pcapng(false, None, 195, 1, &[1, 2]));
    let (pkts, err) = read_all(&t.0);
    assert!(err.is_none());
    assert_eq!(pkts[0].2, None);
}

#[test]
fn pcapng_truncated_block() {
    let mut f = pcapng(false, None, 1, 1, &[1; 40]);
    f.truncate(f.len() - 30);
    let t = tmp("ngtrunc", &f);
    let (pkts, err) = read_all(&t.0);
    assert_eq!(pkts.len(), 1);
    assert!(matches!(err, Some(ReadError::Truncated { .. })), "{err:?}");
}

/// Thousands of mutated pcap and pcapng files (bit flips, overwritten length fields, cuts,
/// inserted bytes): the reader returns packets or an error for each, never panics, never
/// loops, and never hands out more data than the file holds.
#[test]
fn mutated_files_never_panic_or_hang() {
    let mut seeds = vec![
        pcap(
            false,
            false,
            1,
            &[(1, 2, &[0x45; 60], 60), (3, 4, &[1; 20], 1500)],
        ),
        pcap(true, true, 113, &[(1, 2, &[7; 40], 40)]),
    ];
    for big in [false, true] {
        seeds.push(pcapng(big, Some(9), 1, 12345, &[0x45; 44]));
        seeds.push(pcapng(big, Some(0x80 | 20), 101, u64::MAX, &[0x60; 48]));
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3000 {
        let mut f = seeds[round % seeds.len()].clone();
        for _ in 0..1 + rnd() % 4 {
            let at = (rnd() as usize) % f.len();
            match rnd() % 5 {
                0 => f[at] ^= 1 << (rnd() % 8),
                1 => f[at] = rnd() as u8,
                2 => {
                    // Overwrite a 32-bit field with an extreme length.
                    let v = [
                        0u32,
                        1,
                        3,
                        0x7fff_ffff,
                        0xffff_ffff,
                        16 << 20,
                        (16 << 20) + 4,
                    ][(rnd() % 7) as usize];
                    let end = (at + 4).min(f.len());
                    f[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
                3 => f.truncate(at.max(1)),
                _ => f.insert(at, rnd() as u8),
            }
        }
        let t = tmp(&format!("fuzz{round}"), &f);
        let Ok(mut cf) = CaptureFile::open(&t.0) else {
            continue;
        };
        let mut packets = 0usize;
        let mut bytes = 0usize;
        while let Ok(Some(p)) = cf.next_packet() {
            packets += 1;
            bytes += p.data.len();
            assert!(packets <= f.len(), "more packets than bytes: a loop");
        }
        assert!(bytes <= f.len());
    }
}

#[test]
fn a_file_truncated_while_it_is_read_stops_with_an_error_not_a_crash() {
    // 1,000 packets of 1,000 bytes: about 250 pages, mapped.
    let data = vec![0x5au8; 1000];
    let pkts: Vec<(u32, u32, &[u8], u32)> = (0..1000).map(|i| (i, 0, &data[..], 1000)).collect();
    let t = tmp("shrinks", &pcap(false, false, 1, &pkts));
    let mut cf = CaptureFile::open(&t.0).unwrap();
    assert!(cf.input.map.is_some(), "a regular file is mapped");
    for _ in 0..10 {
        assert_eq!(cf.next_packet().unwrap().unwrap().data, &data[..]);
    }
    // Another program cuts the file to its first 100 KB.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&t.0)
        .unwrap()
        .set_len(100_000)
        .unwrap();
    let mut read = 10;
    let err = loop {
        match cf.next_packet() {
            Ok(Some(p)) => {
                // Bytes past the new end read as zeros until the reader notices.
                assert!(p.data.iter().all(|&b| b == 0x5a || b == 0));
                read += 1;
            }
            Ok(None) => panic!("the end of the original file was reached"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("shrank"), "{err}");
    // 99 whole packets fit in 100 KB. The rest of the last page reads as zeros without a fault
    // (the kernel zero-fills a file's last page), so up to a page of empty records can come
    // before the first page past the end faults and stops the file.
    assert!((108..=109 + 4096 / 16).contains(&read), "{read}");
}

#[test]
fn a_long_file_keeps_only_a_window_of_itself_resident() {
    let data = vec![7u8; 1400];
    let n = (3 * crate::files::mapped::RELEASE_EVERY / 1416) as u32;
    let pkts: Vec<(u32, u32, &[u8], u32)> = (0..n).map(|i| (i, 0, &data[..], 1400)).collect();
    let t = tmp("long", &pcap(false, false, 1, &pkts));
    let (read, err) = read_all(&t.0);
    assert!(err.is_none());
    assert_eq!(read.len() as u32, n);
    let mut cf = CaptureFile::open(&t.0).unwrap();
    while cf.next_packet().unwrap().is_some() {}
    let m = cf.input.map.as_ref().unwrap();
    assert!(m.bytes().len() - m.released() <= 2 * crate::files::mapped::RELEASE_EVERY);
}
