//! IPv4 (with options) and IPv6 (with its extension-header chain).

use super::transport;
use super::{Fragment, FrameSummary, MalformedReason, NotMetered};

/// Most IPv6 extension headers we follow before calling the chain hostile.
pub const MAX_IPV6_EXTENSION_HEADERS: usize = 8;

mod v4 {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: std::ops::Range<usize> = 12..16;
    pub const DST: std::ops::Range<usize> = 16..20;
    pub const MIN_HEADER_LEN: usize = 20;
    pub const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

mod v6 {
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: std::ops::Range<usize> = 8..24;
    pub const DST: std::ops::Range<usize> = 24..40;
    pub const HEADER_LEN: usize = 40;
}

/// IPv6 next-header values that are extension headers we walk through.
mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTHENTICATION: u8 = 51;
    pub const DESTINATION_OPTIONS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A view over an IPv4 packet whose header (options included) is present and consistent.
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
    header_len: usize,
}

impl<'a> Ipv4Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, MalformedReason> {
        if buf.len() < v4::MIN_HEADER_LEN {
            return Err(MalformedReason::TruncatedIp);
        }
        if buf[v4::VER_IHL] >> 4 != 4 {
            return Err(MalformedReason::BadIpVersion);
        }
        let header_len = ((buf[v4::VER_IHL] & 0x0f) as usize) * 4;
        if header_len < v4::MIN_HEADER_LEN {
            return Err(MalformedReason::BadIpHeaderLength);
        }
        if buf.len() < header_len {
            return Err(MalformedReason::TruncatedIp);
        }
        if (be16(buf, v4::TOTAL_LEN) as usize) < header_len {
            return Err(MalformedReason::BadIpTotalLength);
        }
        Ok(Ipv4Packet { buf, header_len })
    }
    pub fn total_len(&self) -> u16 {
        be16(self.buf, v4::TOTAL_LEN)
    }
    pub fn fragment_offset(&self) -> u16 {
        be16(self.buf, v4::FLAGS_FRAG) & v4::OFFSET_MASK
    }
    pub fn more_fragments(&self) -> bool {
        be16(self.buf, v4::FLAGS_FRAG) & v4::FLAG_MORE_FRAGMENTS != 0
    }
    /// The transport bytes that are both captured and inside the stated total length.
    pub fn payload(&self) -> &'a [u8] {
        let end = (self.total_len() as usize).min(self.buf.len());
        &self.buf[self.header_len..end]
    }
}

/// Decodes an IPv4 packet and its transport header into `out`; returns the transport bytes
/// captured (empty for a fragment after the first), where a tunnel may start.
#[inline]
pub fn decode_ipv4<'a>(buf: &'a [u8], out: &mut FrameSummary) -> Result<&'a [u8], NotMetered> {
    let ip = Ipv4Packet::new_checked(buf)?;
    out.ip_version = 4;
    out.src_addr[..4].copy_from_slice(&buf[v4::SRC]);
    out.dst_addr[..4].copy_from_slice(&buf[v4::DST]);
    out.protocol = buf[v4::PROTOCOL];
    out.class_of_service = buf[v4::TOS];
    out.ttl = buf[v4::TTL];
    out.ip_octets = ip.total_len() as u32;
    let offset = ip.fragment_offset();
    let more = ip.more_fragments();
    if offset != 0 || more {
        out.fragment = Some(Fragment {
            id: be16(buf, v4::IDENT) as u32,
            first: offset == 0,
            more,
        });
        if offset != 0 {
            // Only the first fragment carries the transport header.
            return Ok(&[]);
        }
    }
    let stated_payload = (ip.total_len() as usize) - ip.header_len;
    let payload = ip.payload();
    transport::decode(out.protocol, false, payload, stated_payload, out)?;
    Ok(payload)
}

/// Decodes an IPv6 packet, its extension headers and its transport header into `out`; returns
/// the transport bytes captured (empty for a fragment after the first).
#[inline]
pub fn decode_ipv6<'a>(buf: &'a [u8], out: &mut FrameSummary) -> Result<&'a [u8], NotMetered> {
    if buf.len() < v6::HEADER_LEN {
        return Err(MalformedReason::TruncatedIp.into());
    }
    if buf[v6::VER_TC_FLOW] >> 4 != 6 {
        return Err(MalformedReason::BadIpVersion.into());
    }
    out.ip_version = 6;
    out.src_addr.copy_from_slice(&buf[v6::SRC]);
    out.dst_addr.copy_from_slice(&buf[v6::DST]);
    out.class_of_service = (be16(buf, v6::VER_TC_FLOW) >> 4) as u8;
    out.ttl = buf[v6::HOP_LIMIT];
    let payload_len = be16(buf, v6::PAYLOAD_LEN) as usize;
    // A zero payload length is a jumbogram (RFC 2675) or a lie; count what was captured.
    let stated = if payload_len == 0 {
        buf.len() - v6::HEADER_LEN
    } else {
        payload_len
    };
    out.ip_octets = (v6::HEADER_LEN + stated) as u32;

    let end = (v6::HEADER_LEN + stated).min(buf.len());
    let mut rest = &buf[v6::HEADER_LEN..end];
    let mut remaining_stated = stated;
    let mut next = buf[v6::NEXT_HEADER];
    for _ in 0..=MAX_IPV6_EXTENSION_HEADERS {
        let ext_len = match next {
            next_header::FRAGMENT => 8,
            next_header::HOP_BY_HOP
            | next_header::ROUTING
            | next_header::DESTINATION_OPTIONS
            | next_header::MOBILITY
            | next_header::HIP
            | next_header::SHIM6 => {
                if rest.len() < 2 {
                    return Err(MalformedReason::BadIpv6ExtensionChain.into());
                }
                (rest[1] as usize + 1) * 8
            }
            // AH counts its length in 4-octet units, minus 2 (RFC 4302).
            next_header::AUTHENTICATION => {
                if rest.len() < 2 {
                    return Err(MalformedReason::BadIpv6ExtensionChain.into());
                }
                (rest[1] as usize + 2) * 4
            }
            upper => {
                out.protocol = upper;
                transport::decode(upper, true, rest, remaining_stated, out)?;
                return Ok(rest);
            }
        };
        if rest.len() < ext_len {
            return Err(MalformedReason::BadIpv6ExtensionChain.into());
        }
        let this = next;
        next = rest[0];
        if this == next_header::FRAGMENT {
            let off_flags = be16(rest, 2);
            let offset = off_flags >> 3;
            let more = off_flags & 1 != 0;
            // An atomic fragment (offset 0, no more) is a whole datagram: meter it normally.
            if offset != 0 || more {
                let id = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                out.fragment = Some(Fragment {
                    id,
                    first: offset == 0,
                    more,
                });
                if offset != 0 {
                    out.protocol = next;
                    return Ok(&[]);
                }
            }
        }
        rest = &rest[ext_len..];
        remaining_stated = remaining_stated.saturating_sub(ext_len);
    }
    Err(MalformedReason::BadIpv6ExtensionChain.into())
}
