//! The selection-expression parser: any text. It parses or fails with a message; what parses
//! is matched against a decoded frame.

use probe_core::flow::CacheConfig;
use probe_core::meter::{FragmentConfig, Meter};
use probe_core::select::Selection;
use probe_core::wire::link::LinkType;

fn main() {
    // A TCP frame to match parsed expressions against.
    let frame: Vec<u8> = [
        &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00][..],
        &[
            0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ],
        &[
            0xd4, 0x31, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0x20, 0, 0, 0, 0, 0,
        ],
    ]
    .concat();
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        match Selection::parse(&text) {
            Ok(sel) => {
                let mut m = Meter::new(CacheConfig::default(), FragmentConfig::default());
                let s = m
                    .process(Some(LinkType::Ethernet), &frame, 1)
                    .expect("valid frame");
                let _ = sel.matches(s);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    });
}
