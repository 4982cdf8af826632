//! The pcap/pcapng reader: any file. It must end cleanly or with an error, never panic, never
//! hand out more bytes than the file holds.

use probe::files::capture_file::CaptureFile;
use std::io::Write;

fn main() {
    let path = std::env::temp_dir().join(format!("probe-fuzz-{}.cap", std::process::id()));
    afl::fuzz!(|data: &[u8]| {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(data).unwrap();
        drop(f);
        if let Ok(mut cf) = CaptureFile::open(&path) {
            let mut total = 0usize;
            while let Ok(Some(p)) = cf.next_packet() {
                total += p.data.len();
                assert!(total <= data.len());
            }
        }
    });
}
