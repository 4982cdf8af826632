//! Wrapping crafted frames in the tunnels mirror feeds use, for the decapsulation tests.
//!
//! Outer IP and UDP headers come from etherparse (lengths and checksums computed by it); the
//! tunnel headers are written from their specifications (RFC 2784/2890 GRE, RFC 7348 VXLAN,
//! RFC 8926 Geneve, 3GPP TS 29.281 GTP-U, RFC 2516 PPPoE, draft-foschiano-erspan). The truth
//! the tests compare with is tshark's reading of the result, never ours.

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, PacketBuilder};
use std::net::IpAddr;

/// One encapsulation around a frame.
#[derive(Clone, Copy, Debug)]
pub enum Encap {
    Vxlan {
        vni: u32,
    },
    Geneve {
        vni: u32,
    },
    /// GRE carrying the inner IP packet, with a key when given.
    Gre {
        key: Option<u32>,
    },
    /// GRE transparent Ethernet with a key whose upper 24 bits are the VSID.
    Nvgre {
        vsid: u32,
    },
    ErspanI,
    ErspanII {
        session: u16,
    },
    /// With the 8-byte platform-specific sub-header when `subheader`.
    ErspanIII {
        session: u16,
        subheader: bool,
    },
    /// GTP-U G-PDU with one PDU-session extension header.
    GtpU {
        teid: u32,
    },
    IpInIp,
    Pppoe {
        session: u16,
    },
}

/// Outer endpoints used by [`wrap`].
pub const OUTER_V4: ([u8; 4], [u8; 4]) = ([192, 0, 2, 1], [192, 0, 2, 2]);

/// Wraps an Ethernet frame `inner` (its IP packet for encapsulations that carry IP) in
/// `encap` between `outer` endpoints, as an Ethernet frame.
pub fn wrap(encap: Encap, inner: &[u8], outer: (IpAddr, IpAddr)) -> Vec<u8> {
    let ip_of = |f: &[u8]| ip_packet(f).to_vec();
    match encap {
        Encap::Vxlan { vni } => {
            let mut h = vec![0x08, 0, 0, 0];
            h.extend_from_slice(&(vni << 8).to_be_bytes());
            h.extend_from_slice(inner);
            udp(outer, 4789, &h)
        }
        Encap::Geneve { vni } => {
            // One 8-byte option (class 0x0102, type 3), carried to be skipped.
            let mut h = vec![0x02, 0x00, 0x65, 0x58];
            h.extend_from_slice(&(vni << 8).to_be_bytes());
            h.extend_from_slice(&[0x01, 0x02, 0x03, 0x01, 0xca, 0xfe, 0xf0, 0x0d]);
            h.extend_from_slice(inner);
            udp(outer, 6081, &h)
        }
        Encap::Gre { key } => {
            let ip = ip_of(inner);
            let proto = if ip[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
            ip_proto(outer, 47, &gre(key, false, proto, &ip))
        }
        Encap::Nvgre { vsid } => ip_proto(outer, 47, &gre(Some(vsid << 8), false, 0x6558, inner)),
        Encap::ErspanI => ip_proto(outer, 47, &gre(None, false, 0x88be, inner)),
        Encap::ErspanII { session } => {
            let mut e = vec![0x10, 0x00];
            e.extend_from_slice(&(session & 0x3ff).to_be_bytes());
            e.extend_from_slice(&[0, 0, 0, 1]);
            e.extend_from_slice(inner);
            ip_proto(outer, 47, &gre(None, true, 0x88be, &e))
        }
        Encap::ErspanIII { session, subheader } => {
            let mut e = vec![0x20, 0x00];
            e.extend_from_slice(&(session & 0x3ff).to_be_bytes());
            e.extend_from_slice(&[0x00, 0x0f, 0x42, 0x40, 0x00, 0x00]);
            e.extend_from_slice(&(subheader as u16).to_be_bytes());
            if subheader {
                // Platform ID 3: port ID and timestamp seconds.
                e.extend_from_slice(&[0x0c, 0x00, 0x00, 0x05, 0x5f, 0x00, 0x00, 0x01]);
            }
            e.extend_from_slice(inner);
            ip_proto(outer, 47, &gre(None, true, 0x22eb, &e))
        }
        Encap::GtpU { teid } => {
            let ip = ip_of(inner);
            let mut g = vec![0x34, 0xff];
            g.extend_from_slice(&((ip.len() + 8) as u16).to_be_bytes());
            g.extend_from_slice(&teid.to_be_bytes());
            g.extend_from_slice(&[0x00, 0x00, 0x00, 0x85, 0x01, 0x10, 0x09, 0x00]);
            g.extend_from_slice(&ip);
            udp(outer, 2152, &g)
        }
        Encap::IpInIp => {
            let ip = ip_of(inner);
            ip_proto(outer, if ip[0] >> 4 == 6 { 41 } else { 4 }, &ip)
        }
        Encap::Pppoe { session } => {
            let ip = ip_of(inner);
            let mut f = inner[..12].to_vec();
            f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00]);
            f.extend_from_slice(&session.to_be_bytes());
            f.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
            f.extend_from_slice(if ip[0] >> 4 == 6 {
                &[0x00, 0x57]
            } else {
                &[0x00, 0x21]
            });
            f.extend_from_slice(&ip);
            f
        }
    }
}

/// The IP packet of an Ethernet frame, behind any 802.1Q tags.
pub fn ip_packet(frame: &[u8]) -> &[u8] {
    let mut at = 12;
    while frame[at..at + 2] == [0x81, 0x00] {
        at += 4;
    }
    &frame[at + 2..]
}

fn gre(key: Option<u32>, sequence: bool, proto: u16, payload: &[u8]) -> Vec<u8> {
    let flags = if key.is_some() { 0x20 } else { 0 } | if sequence { 0x10 } else { 0 };
    let mut g = vec![flags, 0];
    g.extend_from_slice(&proto.to_be_bytes());
    if let Some(k) = key {
        g.extend_from_slice(&k.to_be_bytes());
    }
    if sequence {
        g.extend_from_slice(&1u32.to_be_bytes());
    }
    g.extend_from_slice(payload);
    g
}

const OUTER_MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];
const OUTER_MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x02];

fn udp(outer: (IpAddr, IpAddr), dport: u16, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(OUTER_MAC_A, OUTER_MAC_B);
    let b = match outer {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("outer endpoints of one family"),
    };
    let mut v = vec![];
    b.udp(49152 + (payload.len() % 1000) as u16, dport)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn ip_proto(outer: (IpAddr, IpAddr), proto: u8, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = outer else {
        panic!("IP-protocol tunnels are crafted over IPv4 here");
    };
    let mut v = vec![];
    Ethernet2Header {
        source: OUTER_MAC_A,
        destination: OUTER_MAC_B,
        ether_type: EtherType::IPV4,
    }
    .write(&mut v)
    .unwrap();
    let mut h = Ipv4Header::new(
        payload.len() as u16,
        64,
        IpNumber(proto),
        s.octets(),
        d.octets(),
    )
    .unwrap();
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut v).unwrap();
    v.extend_from_slice(payload);
    v
}
