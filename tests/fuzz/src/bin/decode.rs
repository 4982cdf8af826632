//! The frame decoder and meter: any bytes as a frame of any link type, with every application
//! parser on when the selector's bit 4 is set. The books must balance and every metered frame
//! must be in exactly one record.

use probe_core::flow::CacheConfig;
use probe_core::meter::{FragmentConfig, Meter};
use probe_core::wire::link::LinkType;

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

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&sel, rest)) = data.split_first() else {
            return;
        };
        let mut m = Meter::new(
            CacheConfig {
                max_flows: 16,
                ..Default::default()
            },
            FragmentConfig {
                capacity: 4,
                timeout_ns: 1_000_000_000,
            },
        );
        if sel & 16 != 0 {
            m.set_app(probe_core::app::AppSet::ALL, probe_core::app::AppSet::default());
        }
        // The input is one frame, or (selector bit 3) several frames split on 0xff 0xff.
        let frames: Vec<&[u8]> = if sel & 8 != 0 {
            rest.split(|&b| b == 0xff).collect()
        } else {
            vec![rest]
        };
        let mut packets = 0;
        for (i, f) in frames.iter().enumerate() {
            m.process(Some(LINKS[(sel & 7) as usize]), f, 1_000_000_000 * i as u64);
            packets += m.take_records().iter().map(|r| r.packets).sum::<u64>();
        }
        m.finish();
        packets += m.take_records().iter().map(|r| r.packets).sum::<u64>();
        let b = m.books();
        assert!(b.balanced());
        assert_eq!(packets, b.metered);
    });
}
