//! The PCAP ring's files read by tools someone else wrote: capinfos and tshark must open every
//! file with no error, count every frame, and show each timestamp to the nanosecond.

use e2e::craft::mixed_traffic;
use e2e::TempDir;
use pcap_ring::{RingConfig, RingWriter, WriteOutcome};
use std::process::Command;

#[test]
fn capinfos_and_tshark_read_every_ring_file_to_the_nanosecond() {
    let tmp = TempDir::new("ring");
    let dir = tmp.path().join("ring");
    let mut cfg = RingConfig::new(&dir);
    cfg.file_size = 16_000;
    cfg.max_files = Some(1000);
    let mut w = RingWriter::open(cfg).unwrap();
    // The crafted mix, with odd nanoseconds so truncation to µs would show.
    let frames: Vec<_> = mixed_traffic(1_795_388_820_000_000_000)
        .into_iter()
        .enumerate()
        .map(|(i, mut f)| {
            f.ts_ns += i as u64 * 7 + 1;
            f
        })
        .collect();
    for f in &frames {
        assert!(matches!(
            w.write(f.ts_ns, &f.data, f.data.len() as u32),
            WriteOutcome::Written
        ));
    }
    w.close().unwrap();
    let files: Vec<_> = w.files().map(|f| f.path.clone()).collect();
    assert!(files.len() > 3, "{} files", files.len());

    let mut seen = Vec::new();
    for path in &files {
        let out = Command::new("capinfos")
            .args(["-M", "-c", "-T"])
            .arg(path)
            .output()
            .expect("capinfos is installed (wireshark-common, with tshark)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "capinfos {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("tshark")
            .arg("-r")
            .arg(path)
            .args([
                "-n",
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.len",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let warnings: Vec<_> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("Running as user"))
            .map(String::from)
            .collect();
        assert!(warnings.is_empty(), "tshark warns: {warnings:?}");
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        // capinfos' table row: file name, then the packet count.
        let count: usize = text
            .lines()
            .nth(1)
            .and_then(|l| l.split('\t').nth(1))
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or_else(|| panic!("capinfos count in {text}"));
        assert_eq!(count, lines.len(), "{}", path.display());
        seen.extend(lines);
    }
    assert_eq!(seen.len(), frames.len());
    for (line, f) in seen.iter().zip(&frames) {
        let (ts, len) = line.split_once('\t').unwrap();
        let (secs, frac) = ts.split_once('.').unwrap();
        let ns = secs.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap();
        assert_eq!(frac.len(), 9, "nanosecond resolution: {ts}");
        assert_eq!(ns, f.ts_ns);
        assert_eq!(len.parse::<usize>().unwrap(), f.data.len());
    }
}
