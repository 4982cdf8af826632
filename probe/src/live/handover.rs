//! Giving up root once capture is set up (`--user`, `--group`): who the probe becomes, whether
//! that user can write what the probe will write, and handing it the files root created.

use super::CaptureConfig;
use anyhow::{anyhow, bail, Context, Result};

/// `--user`: checked before anything is attached.
pub(super) fn identity_of(
    args: &CaptureConfig,
) -> Result<Option<crate::sys::privileges::Identity>> {
    let Some(u) = &args.user else {
        return Ok(None);
    };
    let id = crate::sys::privileges::lookup(u, args.group.as_deref()).map_err(|e| anyhow!(e))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("--user {u}: switching users needs root; run as root, or drop --user");
    }
    check_writable_for(&id, args)?;
    Ok(Some(id))
}

/// Before switching users: the directories the probe will write after the switch must be
/// writable by the new user (the PCAP ring's is given to it, see [`give_files_to`]).
pub(super) fn check_writable_for(
    id: &crate::sys::privileges::Identity,
    args: &CaptureConfig,
) -> Result<()> {
    for d in &args.export.destinations {
        // A spool needs no check: it is opened (and made) as root at start and given to the
        // user with its files in `give_files_to`.
        if let ipfix_export::Target::File(f) = &d.target {
            let dir = f.path.parent().unwrap_or(std::path::Path::new("."));
            if !crate::sys::privileges::can_write(id, dir) {
                bail!(
                    "--ipfix {d}: user {} cannot write {} (chown {} {} or pick another directory)",
                    id.user,
                    dir.display(),
                    id.user,
                    dir.display()
                );
            }
        }
    }
    Ok(())
}

/// Hands the PCAP ring directory and the collectors' spools (created by root) and a single
/// IPFIX file (created at start) to the user the probe switches to.
pub(super) fn give_files_to(
    id: &crate::sys::privileges::Identity,
    args: &CaptureConfig,
) -> Result<()> {
    let chown = |p: &std::path::Path| -> Result<()> {
        std::os::unix::fs::chown(p, Some(id.uid), Some(id.gid))
            .with_context(|| format!("--user {}: cannot give {} to it", id.user, p.display()))
    };
    // A directory the probe made as root, and the files in it.
    let give_dir = |dir: &std::path::Path| -> Result<()> {
        chown(dir)?;
        for e in std::fs::read_dir(dir)?.flatten() {
            chown(&e.path())?;
        }
        Ok(())
    };
    if let Some(dir) = &args.pcap.pcap_dir {
        give_dir(dir)?;
    }
    for d in &args.export.destinations {
        if let Some(s) = &d.spool {
            // Opened (and made) by root at start; the probe keeps writing it afterwards.
            let dir = s.dir_for(&d.to_string());
            if dir.exists() {
                give_dir(&dir)?;
            }
        }
        if let ipfix_export::Target::File(f) = &d.target {
            if !f.rotates() && f.path.exists() {
                chown(&f.path)?;
            }
        }
    }
    Ok(())
}
