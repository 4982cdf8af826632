//! Helpers for the end-to-end tests: writing captures, crafting traffic with etherparse (an
//! implementation independent of ours), running the probe, and reading the results back
//! through real tools: nfcapd/nfdump, tshark and ipfixrw.

pub mod capture;
pub mod certs;
pub mod collector;
pub mod craft;
pub mod encap;
pub mod hello;
pub mod lab;
pub mod pmacct;
pub mod scapy;
pub mod tools;
pub mod uml;

use std::path::PathBuf;

/// The probe binary under test: `$PROBE_BIN`, or the workspace's release/debug build.
pub fn probe_bin() -> PathBuf {
    // The tests run as root (for the live lab) and read files: allow `probe read` and
    // `probe extract` to run as root in every process they start. (The refusal itself is
    // tested with this variable removed.)
    std::env::set_var("PROBE_ALLOW_ROOT", "1");
    if let Ok(p) = std::env::var("PROBE_BIN") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    for profile in ["release", "debug"] {
        let p = root.join("target").join(profile).join("probe");
        if p.exists() {
            return p;
        }
    }
    panic!("no probe binary: run `cargo build --release -p probe` or set PROBE_BIN (cargo xtask test does both)");
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shared real-world captures, when this machine has them (`$PROBE_SHARED_PCAPS` or
/// `../shared/pcaps` beside the workspace).
pub fn shared_pcaps() -> Option<PathBuf> {
    let p = std::env::var("PROBE_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("../shared/pcaps"));
    p.join("INDEX.md").exists().then_some(p)
}

/// The shared captures for a corpus test, or `None` after printing why the test skips.
/// Under CI (`CI` set) a missing corpus fails the test instead: no test may pass by skipping.
pub fn shared_pcaps_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(p) = shared_pcaps() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: the shared captures are missing (set PROBE_SHARED_PCAPS or place them at ../shared/pcaps); under CI corpus tests must run"
    );
    eprintln!("SKIP {test}: no shared captures here (set PROBE_SHARED_PCAPS or place them at ../shared/pcaps)");
    None
}

/// Sends a signal to a process (without /bin/kill, which minimal Debian images lack).
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we spawned.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// A scratch directory removed on drop, unique per test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("probe-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The entries of a directory, sorted by name (ring files sort by time). A ring's own records
/// (its journal `.PREFIX.journal`, and `held/`) are left out; temporary files are not.
pub fn sorted_dir(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.ends_with(".journal") && name != "held"
        })
        .collect();
    v.sort();
    v
}

/// A small tmpfs (for a disk that fills up or turns read-only), unmounted on drop. Needs root.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(path: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&path).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&path)
            .status()
            .ok()?;
        st.success().then_some(Tmpfs(path))
    }

    /// Remounts it read-only (`true`) or read-write.
    pub fn set_read_only(&self, ro: bool) -> bool {
        std::process::Command::new("mount")
            .args(["-o", if ro { "remount,ro" } else { "remount,rw" }])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
