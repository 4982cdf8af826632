//! Promiscuous mode for the capture interface, the way libpcap does it.
//!
//! A SPAN or tap port delivers frames addressed to other hosts; without promiscuous mode the NIC
//! filters them out before XDP sees them. Joining `PACKET_MR_PROMISC` on a packet socket raises
//! the interface's promiscuity count for as long as the socket is open, so the kernel undoes it
//! when the probe exits, however it exits (SIGKILL included), and other users' settings stay.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Holds the interface promiscuous until dropped.
pub struct Promiscuous {
    _fd: OwnedFd,
}

impl Promiscuous {
    pub fn enable(ifindex: u32) -> io::Result<Promiscuous> {
        // Protocol 0: the socket receives nothing; it exists only to hold the membership.
        // SAFETY: plain socket(2); checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as i32,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: PACKET_ADD_MEMBERSHIP reads one packet_mreq.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Promiscuous { _fd: fd })
    }
}
