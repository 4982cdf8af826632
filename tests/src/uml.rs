//! An SCTP lab: the host kernel has no SCTP, so tests run the probe and its collector inside
//! Debian's `user-mode-linux` kernel (Linux 6.1 as an ordinary process, no KVM), booted with the
//! host's root filesystem (hostfs) and a shell script as init.
//!
//! Inside, the script finds the probe binary, the test's files and the host's tools at their
//! usual paths; what it writes under the test's directory is there for the host afterwards. The
//! UML kernel's modules live in `/usr/lib/uml/modules/VERSION` with no `/lib/modules` tree, so
//! the init mounts a tmpfs inside the test directory (in the UML kernel's own mount table, never
//! the host's) holding a `lib/modules/VERSION` link to them, and `modprobe -d` loads sctp with
//! its dependencies from `modules.dep`. A listening SCTP socket needs the cookie HMAC
//! (`net.sctp.cookie_hmac_alg`, md5 by default), which this UML build may lack (listen then
//! fails with ENOSYS): the init picks sha1, md5, or else none (no cookie authentication, on a
//! loopback nobody else can reach).
//!
//! **Hosts with AMX** (Sapphire Rapids and later): UML 6.1 restores each guest process's FPU
//! state with `PTRACE_SETREGSET(NT_X86_XSTATE)` from an 832-byte buffer, and such a host kernel
//! refuses any size but its full XSAVE area (about 11 KiB): the first process dies ("ptrace set
//! fp regs failed, errno = 14"). Hiding XSTATE from UML is no cure: it then keeps only the
//! legacy 512 bytes, AVX registers are lost across guest context switches, and glibc's AVX
//! string functions corrupt data (insmod failed with EINVAL, python crashed). So the lab
//! preloads a small shim (`LD_PRELOAD`, compiled here with `cc`) that does the XSTATE get and
//! set with a full-size buffer, passing UML the first part it knows and keeping the rest of the
//! process's live state. On hosts where UML works unaided the shim changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The UML kernel, from Debian's `user-mode-linux` package.
pub const UML: &str = "/usr/bin/linux.uml";

const SHIM_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#define GETREGSET 0x4204
#define SETREGSET 0x4205
#define NT_X86_XSTATE 0x202
static unsigned char full[64 * 1024] __attribute__((aligned(64)));
long ptrace(int req, ...) {
    va_list ap;
    va_start(ap, req);
    long pid = va_arg(ap, long);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);
    if (req >= 1 && req <= 3) { /* PEEKTEXT, PEEKDATA, PEEKUSER return the word */
        long out;
        if (syscall(SYS_ptrace, req, pid, addr, &out) < 0) return -1;
        errno = 0;
        return out;
    }
    if ((req == GETREGSET || req == SETREGSET) && (long)addr == NT_X86_XSTATE) {
        struct iovec *iov = data;
        struct iovec big = { full, sizeof full };
        if (syscall(SYS_ptrace, GETREGSET, pid, addr, &big) < 0) return -1;
        size_t n = iov->iov_len < big.iov_len ? iov->iov_len : big.iov_len;
        if (req == GETREGSET) {
            memcpy(iov->iov_base, full, n);
            iov->iov_len = n;
            return 0;
        }
        memcpy(full, iov->iov_base, n);
        return syscall(SYS_ptrace, SETREGSET, pid, addr, &big);
    }
    return syscall(SYS_ptrace, req, pid, addr, data);
}
"#;

/// Why the lab cannot start on this machine, if it cannot (the test then skips, saying so).
pub fn unavailable() -> Option<String> {
    if !Path::new(UML).exists() {
        return Some(format!(
            "{UML} is missing: apt-get install user-mode-linux kmod (.ci/run and `cargo xtask deps` do)"
        ));
    }
    if modules_dir().is_none() {
        return Some("no UML modules under /usr/lib/uml/modules".into());
    }
    if Command::new("cc").arg("--version").output().is_err() {
        return Some("no C compiler for the UML ptrace shim (build-essential)".into());
    }
    None
}

/// `/usr/lib/uml/modules/VERSION` of the installed UML kernel.
fn modules_dir() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/uml/modules")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("kernel/net/sctp/sctp.ko").exists())
}

/// What a UML run left: its console (boot messages and the script's stderr).
pub struct UmlRun {
    pub console: String,
}

/// Boots UML with `script` (POSIX sh, run as root in `dir` once SCTP is loaded and `lo` is up),
/// waits for it to power off, at most `timeout`. `dir` must be an absolute path the script may
/// write to; the probe binary is `$PROBE` inside.
pub fn run(dir: &Path, script: &str, timeout: Duration) -> UmlRun {
    let shim_c = dir.join("uml-shim.c");
    let shim = dir.join("uml-shim.so");
    std::fs::write(&shim_c, SHIM_C).unwrap();
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&shim)
        .arg(&shim_c)
        .output()
        .expect("cc");
    assert!(
        cc.status.success(),
        "compiling the UML shim: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let mods = dir.join("uml-modules");
    std::fs::create_dir_all(&mods).unwrap();
    let version = modules_dir()
        .expect("UML modules")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let init = dir.join("uml-init.sh");
    let d = dir.display();
    std::fs::write(
        &init,
        format!(
            "#!/bin/sh\n\
             export PATH=/usr/sbin:/usr/bin:/sbin:/bin PROBE_ALLOW_ROOT=1 PROBE={probe} HOME=/root\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sys /sys\n\
             mount -t tmpfs none {d}/uml-modules\n\
             mkdir -p {d}/uml-modules/lib/modules\n\
             ln -s /usr/lib/uml/modules/{version} {d}/uml-modules/lib/modules/{version}\n\
             modprobe -d {d}/uml-modules sctp || echo 'UML: modprobe sctp failed' >&2\n\
             modprobe -d {d}/uml-modules hmac 2>/dev/null\n\
             for alg in sha1 md5 none; do echo $alg > /proc/sys/net/sctp/cookie_hmac_alg 2>/dev/null && break; done\n\
             ip link set lo up\n\
             cd {d}\n\
             ( {script}\n ) > {d}/uml-script.log 2>&1\n\
             echo $? > {d}/uml-script.status\n\
             echo o > /proc/sysrq-trigger\n\
             sleep 30\n",
            probe = crate::probe_bin().display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = Command::new(UML)
        .args([
            "mem=768M",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            &format!("init={}", init.display()),
            "con=null",
            "con0=fd:0,fd:1",
        ])
        .env("LD_PRELOAD", &shim)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start UML");
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "UML did not power off within {timeout:?}; script log:\n{}",
                std::fs::read_to_string(dir.join("uml-script.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let console = reader.join().unwrap();
    UmlRun { console }
}

impl UmlRun {
    /// The script's output and exit status; panics with the console when it did not finish.
    pub fn script(&self, dir: &Path) -> (i32, String) {
        let log = std::fs::read_to_string(dir.join("uml-script.log")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("uml-script.status")).unwrap_or_else(|_| {
            panic!("the UML script did not finish; console:\n{}", self.console)
        });
        (status.trim().parse().unwrap_or(-1), log)
    }
}
