//! Transport headers: the few fields a flow key and record need from TCP, UDP, SCTP, ICMP and
//! ICMPv6. Other protocols are keyed by protocol number alone.

use super::{FrameSummary, MalformedReason, NotMetered};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
/// UDP-Lite and DCCP carry ports at the same offsets as UDP.
pub const PROTO_DCCP: u8 = 33;
pub const PROTO_UDPLITE: u8 = 136;

mod field {
    /// Source and destination ports: the first four octets of TCP, UDP, SCTP, DCCP, UDP-Lite.
    pub const PORTS_LEN: usize = 4;
    /// TCP data offset/NS octet and flags octet.
    pub const TCP_FLAGS: std::ops::Range<usize> = 12..14;
    /// NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN (RFC 7125 tcpControlBits layout).
    pub const TCP_FLAGS_MASK: u16 = 0x01ff;
    pub const ICMP_TYPE_CODE_LEN: usize = 2;
}

/// Decodes the transport header in `captured` (the bytes we have) of a datagram whose transport
/// part is `stated_len` long according to the IP header.
///
/// The ports (or ICMP type and code) must be captured: without them the flow key is unknown.
/// TCP flags are taken when captured; a capture cut short by its snap length still meters.
#[inline]
pub fn decode(
    protocol: u8,
    ipv6: bool,
    captured: &[u8],
    stated_len: usize,
    out: &mut FrameSummary,
) -> Result<(), NotMetered> {
    match protocol {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_DCCP | PROTO_UDPLITE => {
            if captured.len() < field::PORTS_LEN || stated_len < field::PORTS_LEN {
                return Err(MalformedReason::TruncatedTransport.into());
            }
            out.src_port = u16::from_be_bytes([captured[0], captured[1]]);
            out.dst_port = u16::from_be_bytes([captured[2], captured[3]]);
            if protocol == PROTO_TCP && captured.len() >= field::TCP_FLAGS.end {
                let f = u16::from_be_bytes([captured[12], captured[13]]);
                out.tcp_flags = f & field::TCP_FLAGS_MASK;
            }
            Ok(())
        }
        PROTO_ICMP | PROTO_ICMPV6 if (protocol == PROTO_ICMPV6) == ipv6 => {
            if captured.len() < field::ICMP_TYPE_CODE_LEN || stated_len < field::ICMP_TYPE_CODE_LEN
            {
                return Err(MalformedReason::TruncatedTransport.into());
            }
            let type_code = u16::from_be_bytes([captured[0], captured[1]]);
            out.icmp_type_code = type_code;
            out.dst_port = type_code;
            Ok(())
        }
        _ => Ok(()),
    }
}
