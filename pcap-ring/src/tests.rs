use super::*;

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pcap-ring-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const T0: u64 = 1_795_388_820_000_000_000;

fn frame(i: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..4].copy_from_slice(&i.to_be_bytes());
    f
}

/// (timestamps, frames) of every record in a file we wrote.
fn read_back(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[0..4], &0xa1b2_3c4du32.to_le_bytes());
    let mut out = vec![];
    let mut pos = 24;
    while pos < data.len() {
        let h = &data[pos..pos + 16];
        let secs = u32::from_le_bytes(h[0..4].try_into().unwrap()) as u64;
        let ns = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
        let cap = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        out.push((
            secs * 1_000_000_000 + ns,
            data[pos + 16..pos + 16 + cap].to_vec(),
        ));
        pos += 16 + cap;
    }
    assert_eq!(pos, data.len(), "no trailing bytes");
    out
}

/// The ring's files (its journal is metadata, not a ring file).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".journal"))
        .collect();
    v.sort();
    v
}

#[test]
fn rolls_by_size_and_keeps_every_frame_in_order() {
    let d = Dir::new("size");
    let mut cfg = RingConfig::new(&d.0);
    cfg.file_size = 10_000;
    let mut w = RingWriter::open(cfg).unwrap();
    for i in 0..500u32 {
        assert!(matches!(
            w.write(T0 + i as u64 * 1000, &frame(i, 100), 100),
            WriteOutcome::Written
        ));
    }
    w.close().unwrap();
    let names = listing(&d.0);
    assert!(names.len() >= 5, "{names:?}");
    let mut all = vec![];
    for n in &names {
        let p = d.0.join(n);
        assert!(std::fs::metadata(&p).unwrap().len() <= 10_000);
        all.extend(read_back(&p));
    }
    assert_eq!(all.len(), 500);
    for (i, (ts, f)) in all.iter().enumerate() {
        assert_eq!(*ts, T0 + i as u64 * 1000);
        assert_eq!(&f[..4], &(i as u32).to_be_bytes());
    }
    assert_eq!(w.stats().frames_written, 500);
    assert_eq!(w.stats().files_completed as usize, names.len());
}

#[test]
fn rolls_by_duration_and_names_say_the_first_frame() {
    let d = Dir::new("age");
    let mut cfg = RingConfig::new(&d.0);
    cfg.file_duration_ns = 1_000_000_000;
    let mut w = RingWriter::open(cfg).unwrap();
    for i in 0..10u64 {
        w.write(T0 + i * 400_000_000, &frame(i as u32, 60), 60);
    }
    w.close().unwrap();
    let names = listing(&d.0);
    // Frames at 0, 0.4, 0.8 | 1.2, 1.6, 2.0 | 2.4, 2.8, 3.2 | 3.6 s.
    assert_eq!(names.len(), 4, "{names:?}");
    for n in &names {
        let recs = read_back(&d.0.join(n));
        let range = (recs[0].0, recs.last().unwrap().0);
        assert_eq!(parse_file_name("probe", n), Some(range));
    }
}

#[test]
fn retention_deletes_oldest_first_and_holds_its_bounds() {
    let d = Dir::new("keep");
    let mut cfg = RingConfig::new(&d.0);
    cfg.file_size = 4_000;
    cfg.max_total_bytes = Some(20_000);
    cfg.max_files = Some(4);
    let mut w = RingWriter::open(cfg).unwrap();
    for i in 0..2000u32 {
        w.write(T0 + i as u64, &frame(i, 200), 200);
        let complete: u64 = w.files().map(|f| f.bytes).sum();
        assert!(complete <= 20_000 && w.files().count() <= 4);
        let on_disk: u64 = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".journal"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 20_000 + 4_000, "{on_disk} bytes on disk");
    }
    w.close().unwrap();
    let names = listing(&d.0);
    assert_eq!(names.len(), 4);
    // The newest frames survive.
    let last = read_back(&d.0.join(names.last().unwrap()));
    assert_eq!(&last.last().unwrap().1[..4], &1999u32.to_be_bytes());
    assert!(w.stats().files_deleted > 0);
}

#[test]
fn files_are_0640_and_snaplen_cuts_frames() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new("mode");
    let mut cfg = RingConfig::new(&d.0);
    cfg.snaplen = 64;
    let mut w = RingWriter::open(cfg).unwrap();
    w.write(T0, &frame(1, 1500), 1500);
    // While open, the file is hidden under its temporary name.
    assert!(listing(&d.0)[0].ends_with(".pcap.part"));
    w.close().unwrap();
    let names = listing(&d.0);
    let p = d.0.join(&names[0]);
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let recs = read_back(&p);
    assert_eq!(recs[0].1.len(), 64);
    let data = std::fs::read(&p).unwrap();
    assert_eq!(
        u32::from_le_bytes(data[24 + 12..24 + 16].try_into().unwrap()),
        1500
    );
}

#[test]
fn a_killed_writer_leaves_a_file_the_next_start_completes() {
    let d = Dir::new("kill");
    let cfg = RingConfig::new(&d.0);
    let mut w = RingWriter::open(cfg.clone()).unwrap();
    for i in 0..10u32 {
        w.write(T0 + i as u64, &frame(i, 100), 100);
    }
    // Flush what the buffer holds, then "die" without completing, and tear the last record.
    w.current.as_mut().unwrap().out.flush().unwrap();
    let tmp = w.current.as_ref().unwrap().tmp.clone();
    std::mem::forget(w);
    let mut f = OpenOptions::new().append(true).open(&tmp).unwrap();
    f.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
    drop(f);
    // And an empty leftover from another death.
    std::fs::write(d.0.join(partial_name("probe", T0 + 999, "pcap")), [0u8; 10]).unwrap();

    let w = RingWriter::open(cfg).unwrap();
    assert_eq!((w.stats().recovered, w.stats().discarded), (1, 1));
    let names = listing(&d.0);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(read_back(&d.0.join(&names[0])).len(), 10);
    assert_eq!(w.files().count(), 1);
}

#[test]
fn a_vanished_directory_counts_losses_once_and_recovers() {
    let d = Dir::new("gone");
    let mut cfg = RingConfig::new(&d.0);
    cfg.file_size = 2_000;
    cfg.retry_interval_ns = 1_000;
    let mut w = RingWriter::open(cfg).unwrap();
    w.write(T0, &frame(0, 100), 100);
    w.close().unwrap();
    std::fs::remove_dir_all(&d.0).unwrap();
    let mut reported = 0;
    for i in 1..=50u64 {
        if let WriteOutcome::Unwritten {
            first_error: Some(e),
        } = w.write(T0 + i * 10_000, &frame(i as u32, 100), 100)
        {
            assert!(e.contains("counted as unwritten"), "{e}");
            reported += 1;
        }
    }
    assert_eq!(reported, 1, "one report per episode");
    assert_eq!(w.stats().frames_unwritten, 50);
    std::fs::create_dir_all(&d.0).unwrap();
    assert!(matches!(
        w.write(T0 + 10_000_000, &frame(99, 100), 100),
        WriteOutcome::Written
    ));
    w.close().unwrap();
    assert_eq!(w.stats().frames_written, 2);
    assert_eq!(w.stats().error_episodes, 1);
}

#[test]
fn pcapng_files_roll_and_recover_too() {
    let d = Dir::new("ng");
    let mut cfg = RingConfig::new(&d.0);
    cfg.file_size = 4_000;
    cfg.format = FileFormat::Pcapng {
        interface: "eth1".into(),
    };
    let mut w = RingWriter::open(cfg.clone()).unwrap();
    for i in 0..100u32 {
        w.write(T0 + i as u64, &frame(i, 101), 101);
    }
    // Die mid-file with a torn block.
    w.current.as_mut().unwrap().out.flush().unwrap();
    let tmp = w.current.as_ref().unwrap().tmp.clone();
    assert!(tmp.to_string_lossy().ends_with(".pcapng.part"));
    std::mem::forget(w);
    let mut f = OpenOptions::new().append(true).open(&tmp).unwrap();
    f.write_all(&[6, 0, 0, 0, 200, 0]).unwrap();
    drop(f);
    let w = RingWriter::open(cfg).unwrap();
    assert_eq!(w.stats().recovered, 1);
    let names = listing(&d.0);
    assert!(
        names.len() > 2 && names.iter().all(|n| n.ends_with(".pcapng")),
        "{names:?}"
    );
    let mut frames = 0;
    for n in &names {
        let data = std::fs::read(d.0.join(n)).unwrap();
        let (len, first, last, count) = format::whole_records(&data).unwrap();
        assert_eq!(len as usize, data.len(), "{n}: whole blocks only");
        assert_eq!(parse_file_name("probe", n), Some((first, last)));
        frames += count;
    }
    assert_eq!(frames, 100);
}
