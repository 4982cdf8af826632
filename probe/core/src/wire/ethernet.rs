//! Ethernet II, 802.1Q/802.1ad VLAN tags and MPLS label stacks.

use super::decap::{Decap, TunnelKind};
use super::{FilterReason, FrameSummary, MalformedReason, NotMetered};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ service tag, still seen on older switches.
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
pub const ETHERTYPE_MPLS_UNICAST: u16 = 0x8847;
pub const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
/// PPPoE session stage (RFC 2516); the discovery stage (0x8863) is not IP.
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;

/// Most VLAN tags we follow; more is almost certainly hostile.
pub const MAX_VLAN_TAGS: usize = 4;
/// Most MPLS label stack entries we follow.
pub const MAX_MPLS_LABELS: usize = 8;

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
    /// A VLAN tag: TCI, then the next ethertype.
    pub const TAG_TCI: Range<usize> = 0..2;
    pub const TAG_ETHERTYPE: Range<usize> = 2..4;
    pub const TAG_LEN: usize = 4;
    pub const MPLS_ENTRY_LEN: usize = 4;
}

/// PPPoE session header and the PPP protocol field after it.
mod pppoe {
    pub const VER_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION: std::ops::Range<usize> = 2..4;
    pub const PPP_PROTOCOL: std::ops::Range<usize> = 6..8;
    pub const HEADER_LEN: usize = 8;
    /// Version 1, type 1.
    pub const VER_TYPE_1_1: u8 = 0x11;
    pub const PPP_IPV4: u16 = 0x0021;
    pub const PPP_IPV6: u16 = 0x0057;
}

/// A view over an Ethernet II frame whose header is known to be present.
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, MalformedReason> {
        if buf.len() < field::HEADER_LEN {
            return Err(MalformedReason::TruncatedLink);
        }
        Ok(EthernetFrame { buf })
    }
    pub fn dst_mac(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf[field::DST]);
        m
    }
    pub fn src_mac(&self) -> [u8; 6] {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf[field::SRC]);
        m
    }
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([
            self.buf[field::ETHERTYPE.start],
            self.buf[field::ETHERTYPE.start + 1],
        ])
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[field::HEADER_LEN..]
    }
}

/// The network-layer packet found under the link layer.
pub enum Network<'a> {
    Ipv4(&'a [u8]),
    Ipv6(&'a [u8]),
}

/// Follows VLAN tags, MPLS labels and (when `decap` enables it) a PPPoE session header from
/// `ethertype` down to an IP packet, recording the VLAN ids and the top label in `out`.
#[inline]
pub fn decode_ethertype_chain<'a>(
    mut ethertype: u16,
    mut payload: &'a [u8],
    decap: &Decap,
    out: &mut FrameSummary,
) -> Result<Network<'a>, NotMetered> {
    let mut tags = 0;
    loop {
        match ethertype {
            ETHERTYPE_IPV4 => return Ok(Network::Ipv4(payload)),
            ETHERTYPE_IPV6 => return Ok(Network::Ipv6(payload)),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                if tags == MAX_VLAN_TAGS {
                    return Err(MalformedReason::TooManyVlanTags.into());
                }
                if payload.len() < field::TAG_LEN {
                    return Err(MalformedReason::TruncatedLink.into());
                }
                let vid = u16::from_be_bytes([payload[field::TAG_TCI.start], payload[1]]) & 0x0fff;
                match tags {
                    0 => out.vlan_id = vid,
                    1 => out.customer_vlan_id = vid,
                    _ => {}
                }
                tags += 1;
                ethertype = u16::from_be_bytes([payload[field::TAG_ETHERTYPE.start], payload[3]]);
                payload = &payload[field::TAG_LEN..];
            }
            ETHERTYPE_MPLS_UNICAST | ETHERTYPE_MPLS_MULTICAST => return decode_mpls(payload, out),
            ETHERTYPE_PPPOE_SESSION if decap.is_enabled(TunnelKind::Pppoe) => {
                return decode_pppoe(payload, out)
            }
            _ => return Err(FilterReason::NonIp.into()),
        }
    }
}

/// Whether an Ethernet frame inside a tunnel named only by a UDP port starts like one: an
/// ethertype the probe follows or one a LAN carries (ARP, LLDP, 802.1X, LACP, PTP, CFM,
/// MACsec, FCoE), or an 802.3 length no longer than what follows. Random bytes pass about
/// one time in 40; what passes and is not IP is filtered as `non_ip`, as on the wire.
pub fn plausible_inner_ethernet(frame: &[u8]) -> bool {
    let Some(t) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return false;
    };
    const LAN: [u16; 10] = [
        0x0806, 0x8035, 0x88cc, 0x888e, 0x8809, 0x88f7, 0x8902, 0x88e5, 0x8906, 0x8914,
    ];
    matches!(
        t,
        ETHERTYPE_IPV4
            | ETHERTYPE_IPV6
            | ETHERTYPE_VLAN
            | ETHERTYPE_QINQ
            | ETHERTYPE_QINQ_OLD
            | ETHERTYPE_MPLS_UNICAST
            | ETHERTYPE_MPLS_MULTICAST
            | ETHERTYPE_PPPOE_SESSION
    ) || LAN.contains(&t)
        || (t as usize) <= frame.len().saturating_sub(14).min(1500)
}

/// A PPPoE session frame: IP when the PPP protocol says so, else not IP (LCP, IPCP, ...).
fn decode_pppoe<'a>(payload: &'a [u8], out: &mut FrameSummary) -> Result<Network<'a>, NotMetered> {
    if payload.len() < pppoe::HEADER_LEN {
        return Err(MalformedReason::TruncatedTunnelHeader.into());
    }
    if payload[pppoe::VER_TYPE] != pppoe::VER_TYPE_1_1 || payload[pppoe::CODE] != 0 {
        return Err(MalformedReason::BadTunnelHeader.into());
    }
    out.tunnel.kinds |= 1 << TunnelKind::Pppoe as u16;
    out.pppoe_session = u16::from_be_bytes([payload[pppoe::SESSION.start], payload[3]]);
    let inner = &payload[pppoe::HEADER_LEN..];
    match u16::from_be_bytes([payload[pppoe::PPP_PROTOCOL.start], payload[7]]) {
        pppoe::PPP_IPV4 => Ok(Network::Ipv4(inner)),
        pppoe::PPP_IPV6 => Ok(Network::Ipv6(inner)),
        _ => Err(FilterReason::NonIp.into()),
    }
}

/// Walks an MPLS label stack to its bottom entry and guesses the payload from its first nibble,
/// as every MPLS-aware probe must (the stack does not say what it carries).
fn decode_mpls<'a>(
    mut payload: &'a [u8],
    out: &mut FrameSummary,
) -> Result<Network<'a>, NotMetered> {
    for depth in 0..MAX_MPLS_LABELS {
        if payload.len() < field::MPLS_ENTRY_LEN {
            return Err(MalformedReason::TruncatedLink.into());
        }
        if depth == 0 {
            out.mpls_top = [payload[0], payload[1], payload[2]];
        }
        let bottom = payload[2] & 0x01 != 0;
        payload = &payload[field::MPLS_ENTRY_LEN..];
        if bottom {
            return match payload.first().map(|b| b >> 4) {
                Some(4) => Ok(Network::Ipv4(payload)),
                Some(6) => Ok(Network::Ipv6(payload)),
                _ => Err(FilterReason::MplsNonIp.into()),
            };
        }
    }
    Err(MalformedReason::TooManyMplsLabels.into())
}
