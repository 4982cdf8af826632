//! Link layers of capture files: Ethernet, Linux cooked (SLL, SLL2), raw IP, BSD loopback.
//!
//! Each decoder finds the ethertype of what follows and, where the link layer has them, the MAC
//! addresses. Link-type numbers are the LINKTYPE_ values of <https://www.tcpdump.org/linktypes.html>.

use super::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{FilterReason, FrameSummary, MalformedReason, NotMetered};

/// A link layer the probe decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 113).
    LinuxSll,
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 276).
    LinuxSll2,
    /// Raw IP, version from the first nibble (LINKTYPE_RAW 101; DLT_RAW 12 and 14 in old files).
    RawIp,
    /// Raw IPv4 only (LINKTYPE_IPV4, 228).
    Ipv4,
    /// Raw IPv6 only (LINKTYPE_IPV6, 229).
    Ipv6,
    /// BSD loopback, address family in the capturing host's byte order (LINKTYPE_NULL, 0).
    Null,
    /// OpenBSD loopback, address family in network byte order (LINKTYPE_LOOP, 108).
    Loop,
}

impl LinkType {
    /// Maps a pcap/pcapng link-type number; `None` for link types the probe does not decode.
    pub fn from_linktype(value: u32) -> Option<LinkType> {
        Some(match value {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            _ => return None,
        })
    }
}

mod sll {
    pub const ARPHRD: std::ops::Range<usize> = 2..4;
    pub const ADDR_LEN: std::ops::Range<usize> = 4..6;
    pub const ADDR: std::ops::Range<usize> = 6..14;
    pub const PROTOCOL: std::ops::Range<usize> = 14..16;
    pub const HEADER_LEN: usize = 16;
}

mod sll2 {
    pub const PROTOCOL: std::ops::Range<usize> = 0..2;
    pub const ARPHRD: std::ops::Range<usize> = 8..10;
    pub const ADDR_LEN: usize = 11;
    pub const ADDR: std::ops::Range<usize> = 12..20;
    pub const HEADER_LEN: usize = 20;
}

/// ARPHRD_ETHER: the cooked header's address is a MAC address.
const ARPHRD_ETHER: u16 = 1;

/// BSD address families that mean IPv6 (FreeBSD, OpenBSD/NetBSD, Darwin).
const AF_INET: u32 = 2;
const AF_INET6: [u32; 3] = [24, 28, 30];

fn be16(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

/// Decodes the link header; returns the ethertype of the payload and the payload.
pub fn decode_link<'a>(
    link: LinkType,
    frame: &'a [u8],
    out: &mut FrameSummary,
) -> Result<(u16, &'a [u8]), NotMetered> {
    match link {
        LinkType::Ethernet => {
            let eth = ethernet::EthernetFrame::new_checked(frame)?;
            out.dst_mac = eth.dst_mac();
            out.src_mac = eth.src_mac();
            Ok((eth.ethertype(), eth.payload()))
        }
        LinkType::LinuxSll => {
            if frame.len() < sll::HEADER_LEN {
                return Err(MalformedReason::TruncatedLink.into());
            }
            if be16(frame, sll::ARPHRD) == ARPHRD_ETHER && be16(frame, sll::ADDR_LEN) == 6 {
                out.src_mac.copy_from_slice(&frame[sll::ADDR][..6]);
            }
            Ok((be16(frame, sll::PROTOCOL), &frame[sll::HEADER_LEN..]))
        }
        LinkType::LinuxSll2 => {
            if frame.len() < sll2::HEADER_LEN {
                return Err(MalformedReason::TruncatedLink.into());
            }
            if be16(frame, sll2::ARPHRD) == ARPHRD_ETHER && frame[sll2::ADDR_LEN] == 6 {
                out.src_mac.copy_from_slice(&frame[sll2::ADDR][..6]);
            }
            Ok((be16(frame, sll2::PROTOCOL), &frame[sll2::HEADER_LEN..]))
        }
        LinkType::RawIp => match frame.first().map(|b| b >> 4) {
            Some(4) => Ok((ETHERTYPE_IPV4, frame)),
            Some(6) => Ok((ETHERTYPE_IPV6, frame)),
            Some(_) => Err(MalformedReason::BadIpVersion.into()),
            None => Err(MalformedReason::TruncatedIp.into()),
        },
        LinkType::Ipv4 => Ok((ETHERTYPE_IPV4, frame)),
        LinkType::Ipv6 => Ok((ETHERTYPE_IPV6, frame)),
        LinkType::Null | LinkType::Loop => {
            if frame.len() < 4 {
                return Err(MalformedReason::TruncatedLink.into());
            }
            let raw = [frame[0], frame[1], frame[2], frame[3]];
            // LINKTYPE_NULL is in the byte order of the host that captured, which the file
            // does not record; an address family is small, so either order reads unambiguously.
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                let le = u32::from_le_bytes(raw);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            let payload = &frame[4..];
            if family == AF_INET {
                Ok((ETHERTYPE_IPV4, payload))
            } else if AF_INET6.contains(&family) {
                Ok((ETHERTYPE_IPV6, payload))
            } else {
                Err(FilterReason::NonIp.into())
            }
        }
    }
}
