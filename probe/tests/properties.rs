//! Property tests of the code that reads hostile input: the frame decoder and meter, the
//! pcap/pcapng reader and the selection parser. Each runs a few hundred generated cases in the
//! normal test suite (`PROPTEST_CASES` raises it); the fuzz targets (`cargo xtask fuzz`) go
//! further.
//!
//! Inputs start from valid frames and files and are then cut and flipped, so the cases reach
//! the deep paths (extension headers, tags, fragments) and not only "too short".

use probe::files::capture_file::CaptureFile;
use probe_core::flow::CacheConfig;
use probe_core::meter::{FragmentConfig, Meter};
use probe_core::select::Selection;
use probe_core::wire::link::LinkType;
use proptest::prelude::*;

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
];

/// Valid frames to mutate: Ethernet with VLAN, MPLS, IPv4 options and a fragment, IPv6 with
/// extension headers, TCP/UDP/ICMP/SCTP.
fn seeds() -> Vec<Vec<u8>> {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    vec![
        // Ethernet, 802.1Q 100, IPv4 TCP SYN.
        hex(
            "020000000002020000000001810000640800450000280001000040060000\
             0a0000010a000002d43100500000000000000000500220000000000000",
        ),
        // Ethernet, QinQ, IPv4 with options, UDP.
        hex(
            "02000000000202000000000188a800c8810000640800460000200002000040110000\
             0a0000010a00000201010100d43100350008000000",
        ),
        // Ethernet, MPLS 2 labels, IPv4 first fragment of UDP.
        hex("02000000000202000000000188470006404000065140\
             4500002000032000401100000a0000010a000002d431003500100000"),
        // Ethernet, IPv6, hop-by-hop, fragment header, TCP.
        hex("02000000000202000000000186dd6000000000200040\
             20010db8000000000000000000000001 20010db8000000000000000000000002\
             2c00000000000000 0600000000000001 d431005000000000000000005010200000000000"
            .replace(' ', "")
            .as_str()),
        // Ethernet, IPv6 ICMPv6 echo.
        hex("02000000000202000000000186dd60000000000a3a40\
             20010db8000000000000000000000001 20010db8000000000000000000000002\
             8000000000010001aaaa"
            .replace(' ', "")
            .as_str()),
        // Raw IPv4 SCTP.
        hex("450000300004000040840000c0000201c0000202d43100500000000100000000"),
    ]
}

/// A seed frame, cut and with bytes overwritten.
fn mutated() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let seeds = seeds();
    (
        0..seeds.len(),
        0usize..8,
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        any::<usize>(),
    )
        .prop_map(move |(i, link, flips, cut)| {
            let mut f = seeds[i].clone();
            for (at, b) in flips {
                let n = f.len();
                f[at % n] = b;
            }
            let keep = if cut % 3 == 0 {
                cut % (f.len() + 1)
            } else {
                f.len()
            };
            f.truncate(keep);
            (link, f)
        })
}

fn meter() -> Meter {
    Meter::new(
        CacheConfig {
            max_flows: 64,
            ..Default::default()
        },
        FragmentConfig {
            capacity: 8,
            timeout_ns: 1_000_000_000,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the frames, nothing panics, the books balance, and every metered frame is in
    /// exactly one record.
    #[test]
    fn the_meter_accounts_for_every_frame(
        frames in proptest::collection::vec(
            prop_oneof![
                mutated(),
                (0usize..8, proptest::collection::vec(any::<u8>(), 0..200)),
            ],
            1..64,
        ),
        step in 0u64..3_000_000_000,
    ) {
        let mut m = meter();
        let mut records = Vec::new();
        for (i, (link, f)) in frames.iter().enumerate() {
            m.process(Some(LINKS[*link]), f, 1_700_000_000_000_000_000 + i as u64 * step);
            records.extend(m.take_records());
        }
        m.finish();
        records.extend(m.take_records());
        let b = m.books();
        prop_assert!(b.balanced());
        prop_assert_eq!(b.read, frames.len() as u64);
        prop_assert_eq!(records.iter().map(|r| r.packets).sum::<u64>(), b.metered);
    }

    /// Any bytes after a valid pcap or pcapng header: the reader ends cleanly or with an
    /// error, never a panic, and never reads past the file.
    #[test]
    fn the_reader_survives_any_file(
        pcapng in any::<bool>(),
        big_endian in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let dir = std::env::temp_dir().join(format!("probe-prop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("case-{}.cap", body.len() ^ (pcapng as usize) << 10));
        let mut bytes: Vec<u8> = if pcapng {
            // A section header block, then an interface description block for Ethernet.
            let mut shb = vec![0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28];
            shb.extend(if big_endian { [0x1a, 0x2b, 0x3c, 0x4d] } else { [0x4d, 0x3c, 0x2b, 0x1a] });
            shb.extend([0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28]);
            if !big_endian {
                shb[4..8].reverse();
                shb[12..16].copy_from_slice(&[1, 0, 0, 0]);
                shb[24..28].reverse();
            }
            shb
        } else {
            let mut h = if big_endian { vec![0xa1, 0xb2, 0xc3, 0xd4] } else { vec![0xd4, 0xc3, 0xb2, 0xa1] };
            h.extend([0u8; 12]);
            h.extend(if big_endian { [0, 0, 0xff, 0xff, 0, 0, 0, 1] } else { [0xff, 0xff, 0, 0, 1, 0, 0, 0] });
            h
        };
        bytes.extend(&body);
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut cf) = CaptureFile::open(&path) {
            let mut n = 0;
            while let Ok(Some(p)) = cf.next_packet() {
                prop_assert!(p.data.len() <= bytes.len());
                n += 1;
                prop_assert!(n <= bytes.len());
            }
        }
        let _ = std::fs::remove_file(&path);
    }

    /// Any sequence of selection tokens parses or fails with a column, never panics; what
    /// parses can be matched against any decoded frame.
    #[test]
    fn the_selection_parser_survives_any_expression(
        tokens in proptest::collection::vec(
            prop_oneof![
                Just("host"), Just("net"), Just("port"), Just("src"), Just("dst"),
                Just("and"), Just("or"), Just("not"), Just("("), Just(")"), Just("tcp"),
                Just("udp"), Just("icmp"), Just("ip6"), Just("vlan"), Just("proto"),
                Just("all"), Just("10.0.0.1"), Just("10.0.0.0/8"), Just("2001:db8::/32"),
                Just("80"), Just("65536"), Just("/"), Just("&&"), Just("!"), Just("x"),
            ],
            0..12,
        ),
        frame in mutated(),
    ) {
        let text = tokens.join(" ");
        match Selection::parse(&text) {
            Ok(sel) => {
                let mut m = meter();
                if let Some(s) = m.process(Some(LINKS[frame.0]), &frame.1, 1) {
                    let _ = sel.matches(s);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

/// The seeds are frames the meter accepts, so mutations start deep in the decoder.
#[test]
fn the_seeds_are_valid_frames() {
    let mut m = meter();
    for (i, f) in seeds().iter().enumerate() {
        let link = if i == 5 {
            LinkType::RawIp
        } else {
            LinkType::Ethernet
        };
        assert!(
            m.process(Some(link), f, 1).is_some(),
            "seed {i} was not metered"
        );
    }
}
