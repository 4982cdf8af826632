//! `--user`/`--group`: once the XDP program is attached and every socket, file and listener is
//! open, the probe gives up root.
//!
//! What is kept: CAP_BPF in the main thread only, because reading the program's counters and
//! unregistering the sockets at stop are bpf() calls, which an unprivileged process may not make
//! on hosts with `kernel.unprivileged_bpf_disabled`. Everything else goes: the other threads
//! (workers, exporter, ring writer) keep no capability at all, the bounding set is cut to
//! CAP_BPF so nothing can be regained, and no-new-privileges is set.

use std::ffi::CString;
use std::io;

/// Linux capability numbers used here and by `probe doctor`.
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_IPC_LOCK: u32 = 14;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_BPF: u32 = 39;

/// The process's effective capabilities, a bit per capability number (`CapEff` of
/// /proc/self/status). CAP_SYS_ADMIN counts as CAP_BPF, as the kernel lets it.
pub fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let caps = u64::from_str_radix(hex, 16).ok()?;
    Some(if caps & (1 << CAP_SYS_ADMIN) != 0 {
        caps | (1 << CAP_BPF)
    } else {
        caps
    })
}
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;

/// The identity to switch to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// Looks up a user (name or number) and, optionally, a group (name or number; default the
/// user's primary group).
pub fn lookup(user: &str, group: Option<&str>) -> Result<Identity, String> {
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, passwd_by_uid(uid).map(|p| p.1).unwrap_or(uid)),
        Err(_) => passwd_by_name(user).ok_or_else(|| {
            format!("--user {user}: no such user (create one: useradd --system --no-create-home --shell /usr/sbin/nologin {user})")
        })?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_by_name(g).ok_or_else(|| format!("--group {g}: no such group"))?,
        },
    };
    Ok(Identity {
        user: user.to_string(),
        uid,
        gid,
    })
}

fn passwd_by_name(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam_r with a caller-owned buffer; the result points into it.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out);
        (r == 0 && !out.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
    }
}

fn passwd_by_uid(uid: u32) -> Option<(u32, u32)> {
    // SAFETY: as above, getpwuid_r.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out);
        (r == 0 && !out.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
    }
}

fn group_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getgrnam_r with a caller-owned buffer.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut out: *mut libc::group = std::ptr::null_mut();
        let r = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out);
        (r == 0 && !out.is_null()).then_some(grp.gr_gid)
    }
}

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Switches every thread to `id` and leaves only `keep` (capability numbers) in the calling
/// thread. Must be called by root (or with CAP_SETUID, CAP_SETGID and CAP_SETPCAP).
pub fn drop_to(id: &Identity, keep: &[u32]) -> io::Result<()> {
    let keep_mask: u64 = keep.iter().fold(0, |m, c| m | 1u64 << c);
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // SAFETY: prctl, setgroups, setgid, setuid and capset with valid arguments; each result is
    // checked. glibc applies setgroups/setgid/setuid to every thread of the process.
    unsafe {
        // The bounding set first, while CAP_SETPCAP is still held.
        for cap in 0..=last {
            if keep_mask & (1u64 << cap) == 0 {
                check(
                    libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0),
                    "dropping the capability bounding set",
                )?;
            }
        }
        check(
            libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0),
            "clearing ambient capabilities",
        )?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0),
            "PR_SET_KEEPCAPS",
        )?;
        let gid = id.gid as libc::gid_t;
        check(libc::setgroups(1, &gid), "setgroups")?;
        check(libc::setgid(gid), "setgid")?;
        check(libc::setuid(id.uid as libc::uid_t), "setuid")?;
        // Capabilities are per thread: this one keeps `keep`, as effective and permitted.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let half = |shift: u32| Data {
            effective: (keep_mask >> shift) as u32,
            permitted: (keep_mask >> shift) as u32,
            inheritable: 0,
        };
        let data = [half(0), half(32)];
        check(
            libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int,
            "capset",
        )?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0),
            "PR_SET_KEEPCAPS",
        )?;
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            "PR_SET_NO_NEW_PRIVS",
        )?;
    }
    Ok(())
}

/// Drops every capability of the calling thread (a thread started after [`drop_to`] inherits
/// the main thread's CAP_BPF; workers need none).
pub fn clear_thread_caps() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [0u32; 6];
    // SAFETY: capset(2) with a v3 header and two zeroed data structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } as libc::c_int;
    check(r, "capset")
}

/// Whether `id` may create files in `dir` (by its mode bits; ACLs are not consulted).
pub fn can_write(id: &Identity, dir: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = m.mode();
    if id.uid == 0 {
        return true;
    }
    if m.uid() == id.uid {
        mode & 0o300 == 0o300
    } else if m.gid() == id.gid {
        mode & 0o030 == 0o030
    } else {
        mode & 0o003 == 0o003
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_resolve_by_name_and_number() {
        let root = lookup("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup("65534", Some("0")).unwrap().gid, 0);
        let e = lookup("no-such-user-here", None).unwrap_err();
        assert!(e.contains("useradd"), "{e}");
        assert!(lookup("root", Some("no-such-group-here"))
            .unwrap_err()
            .contains("--group"));
    }
}
