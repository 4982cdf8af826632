//! What the kernel says about a network interface, read without changing it: the driver's
//! XDP features (generic netlink, the `netdev` family of Linux 6.3+), its name and offloads
//! (the ethtool ioctls), and its counters and sizes (sysfs). Used by `probe doctor` and by
//! the capture's books (the interface's own receive counter against what XDP saw).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The driver's XDP features (`NETDEV_A_DEV_XDP_FEATURES`, enum netdev_xdp_act).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpFeatures {
    pub bits: u64,
    /// Fragments a zero-copy socket takes per frame (`NETDEV_A_DEV_XDP_ZC_MAX_SEGS`).
    pub zc_max_segs: u32,
    /// XDP metadata the driver can give (`NETDEV_A_DEV_XDP_RX_METADATA_FEATURES`).
    pub rx_metadata: u64,
}

impl XdpFeatures {
    pub const BASIC: u64 = 1;
    pub const REDIRECT: u64 = 2;
    pub const NDO_XMIT: u64 = 4;
    pub const XSK_ZEROCOPY: u64 = 8;
    pub const HW_OFFLOAD: u64 = 16;
    pub const RX_SG: u64 = 32;
    pub const NDO_XMIT_SG: u64 = 64;

    /// Native XDP that can redirect into AF_XDP sockets.
    pub fn native(&self) -> bool {
        self.bits & (Self::BASIC | Self::REDIRECT) == Self::BASIC | Self::REDIRECT
    }

    pub fn zero_copy(&self) -> bool {
        self.bits & Self::XSK_ZEROCOPY != 0
    }

    /// Multi-buffer XDP on receive (frames larger than a page).
    pub fn multi_buffer(&self) -> bool {
        self.bits & Self::RX_SG != 0
    }

    /// The feature names, as `ynl` and `ip link` print them.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (Self::BASIC, "basic"),
            (Self::REDIRECT, "redirect"),
            (Self::NDO_XMIT, "ndo-xmit"),
            (Self::XSK_ZEROCOPY, "xsk-zerocopy"),
            (Self::HW_OFFLOAD, "hw-offload"),
            (Self::RX_SG, "rx-sg"),
            (Self::NDO_XMIT_SG, "ndo-xmit-sg"),
        ]
        .iter()
        .filter(|(b, _)| self.bits & b != 0)
        .map(|&(_, n)| n)
        .collect()
    }
}

const NETLINK_GENERIC: i32 = 16;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NETDEV_A_DEV_XDP_ZC_MAX_SEGS: u16 = 4;
const NETDEV_A_DEV_XDP_RX_METADATA_FEATURES: u16 = 5;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;

/// The XDP features the driver of `ifindex` declares; `Ok(None)` when this kernel has no
/// `netdev` netlink family (before Linux 6.3), so nothing can be said without trying.
pub fn xdp_features(ifindex: u32) -> io::Result<Option<XdpFeatures>> {
    let sock = GenlSocket::open()?;
    let Some(family) = sock.family_id("netdev")? else {
        return Ok(None);
    };
    let mut attrs = Vec::new();
    put_attr(&mut attrs, NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes());
    let reply = sock.request(family, NETDEV_CMD_DEV_GET, 1, &attrs)?;
    let mut f = XdpFeatures::default();
    for (kind, value) in attributes(&reply) {
        match kind {
            NETDEV_A_DEV_XDP_FEATURES => f.bits = read_uint(value),
            NETDEV_A_DEV_XDP_ZC_MAX_SEGS => f.zc_max_segs = read_uint(value) as u32,
            NETDEV_A_DEV_XDP_RX_METADATA_FEATURES => f.rx_metadata = read_uint(value),
            _ => {}
        }
    }
    Ok(Some(f))
}

/// A generic netlink socket, for one request and its reply at a time.
struct GenlSocket {
    fd: OwnedFd,
    seq: std::cell::Cell<u32>,
}

impl GenlSocket {
    fn open() -> io::Result<GenlSocket> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: a valid timeval of the size passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(GenlSocket {
            fd,
            seq: std::cell::Cell::new(1),
        })
    }

    /// The id of generic netlink family `name`, or `None` when the kernel has none.
    fn family_id(&self, name: &str) -> io::Result<Option<u16>> {
        let mut attrs = Vec::new();
        let mut z = name.as_bytes().to_vec();
        z.push(0);
        put_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, &z);
        match self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, &attrs) {
            Ok(reply) => Ok(attributes(&reply)
                .find(|(k, _)| *k == CTRL_ATTR_FAMILY_ID)
                .map(|(_, v)| read_uint(v) as u16)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one request and returns the attributes of its reply (after the genl header).
    fn request(&self, family: u16, cmd: u8, version: u8, attrs: &[u8]) -> io::Result<Vec<u8>> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let len = 16 + 4 + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&family.to_ne_bytes());
        msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(attrs);
        // SAFETY: a valid buffer; the socket is unconnected, the kernel is the default peer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 16384];
        loop {
            // SAFETY: a valid buffer of the length passed.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let b = &buf[..n as usize];
            let mut off = 0;
            while off + 16 <= b.len() {
                let mlen = u32::from_ne_bytes(b[off..off + 4].try_into().expect("4")) as usize;
                let mtype = u16::from_ne_bytes(b[off + 4..off + 6].try_into().expect("2"));
                let mseq = u32::from_ne_bytes(b[off + 8..off + 12].try_into().expect("4"));
                if mlen < 16 || off + mlen > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a netlink reply shorter than its header says",
                    ));
                }
                let body = &b[off + 16..off + mlen];
                off += (mlen + 3) & !3;
                if mseq != seq {
                    continue;
                }
                if mtype == NLMSG_ERROR {
                    let code = body
                        .get(..4)
                        .map(|c| i32::from_ne_bytes(c.try_into().expect("4")))
                        .unwrap_or(-libc::EIO);
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(body.get(4..).unwrap_or_default().to_vec());
            }
        }
    }
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize((buf.len() + 3) & !3, 0);
}

/// The (type, value) of each netlink attribute in `b`.
fn attributes(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let h = b.get(off..off + 4)?;
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        let kind = u16::from_ne_bytes([h[2], h[3]]) & 0x3fff;
        let value = b.get(off + 4..off + len.max(4))?;
        off += (len.max(4) + 3) & !3;
        Some((kind, value))
    })
}

fn read_uint(v: &[u8]) -> u64 {
    match v.len() {
        1 => v[0] as u64,
        2 => u16::from_ne_bytes([v[0], v[1]]) as u64,
        4 => u32::from_ne_bytes(v.try_into().expect("4")) as u64,
        8 => u64::from_ne_bytes(v.try_into().expect("8")),
        _ => 0,
    }
}

/// What `ethtool -i` and `ethtool -k` say of an interface, by the legacy ioctls every
/// kernel has.
#[derive(Clone, Debug, Default)]
pub struct Ethtool {
    /// The driver's name; `None` when the device answers no ethtool request (`lo`).
    pub driver: Option<String>,
    /// Offloads that change what the probe sees; `None`: the device does not say.
    pub gro: Option<bool>,
    pub lro: Option<bool>,
    pub rxvlan: Option<bool>,
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETH_FLAG_RXVLAN: u32 = 1 << 8;
const ETH_FLAG_LRO: u32 = 1 << 15;

#[repr(C)]
struct Ifreq {
    name: [u8; 16],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// The ethtool view of `iface`.
pub fn ethtool(iface: &str) -> io::Result<Ethtool> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ioctl = |buf: &mut [u8]| -> bool {
        let mut req = Ifreq {
            name: [0; 16],
            data: buf.as_mut_ptr().cast(),
            _pad: [0; 16],
        };
        let n = iface.len().min(15);
        req.name[..n].copy_from_slice(&iface.as_bytes()[..n]);
        // SAFETY: `req` names the interface and points at a buffer as large as the command
        // needs (the caller sizes it per command).
        unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL as _, &mut req) == 0 }
    };
    let mut out = Ethtool::default();
    // struct ethtool_drvinfo: cmd, then driver[32], ... (196 bytes in all).
    let mut drv = [0u8; 196];
    drv[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    if ioctl(&mut drv) {
        let name = &drv[4..36];
        let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
        out.driver = Some(String::from_utf8_lossy(&name[..end]).into_owned());
    }
    // struct ethtool_value: cmd, data.
    let value = |cmd: u32| -> Option<u32> {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&cmd.to_ne_bytes());
        ioctl(&mut v).then(|| u32::from_ne_bytes(v[4..8].try_into().expect("4")))
    };
    out.gro = value(ETHTOOL_GGRO).map(|v| v != 0);
    if let Some(flags) = value(ETHTOOL_GFLAGS) {
        out.lro = Some(flags & ETH_FLAG_LRO != 0);
        out.rxvlan = Some(flags & ETH_FLAG_RXVLAN != 0);
    }
    Ok(out)
}

/// A number from `/sys/class/net/IFACE/<file>`.
pub fn sysfs_u64(iface: &str, file: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The interface's own receive counters (`statistics/rx_packets`, `rx_dropped`): what the
/// driver counted, whatever XDP did with the frames afterwards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    pub packets: u64,
    pub dropped: u64,
}

pub fn rx_counters(iface: &str) -> Option<RxCounters> {
    Some(RxCounters {
        packets: sysfs_u64(iface, "statistics/rx_packets")?,
        dropped: sysfs_u64(iface, "statistics/rx_dropped").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_walked_with_padding() {
        let mut b = Vec::new();
        put_attr(&mut b, 1, &7u32.to_ne_bytes());
        put_attr(&mut b, 2, b"netdev\0");
        put_attr(&mut b, 3, &0x21u64.to_ne_bytes());
        let got: Vec<(u16, u64)> = attributes(&b)
            .map(|(k, v)| (k, if k == 2 { v.len() as u64 } else { read_uint(v) }))
            .collect();
        assert_eq!(got, [(1, 7), (2, 7), (3, 0x21)]);
        // A truncated attribute ends the walk instead of reading past the buffer.
        assert_eq!(attributes(&b[..b.len() - 3]).count(), 2);
    }

    #[test]
    fn feature_names() {
        let f = XdpFeatures {
            bits: XdpFeatures::BASIC | XdpFeatures::REDIRECT | XdpFeatures::RX_SG,
            ..Default::default()
        };
        assert!(f.native() && f.multi_buffer() && !f.zero_copy());
        assert_eq!(f.names(), ["basic", "redirect", "rx-sg"]);
    }
}
