//! Decoder tests. Frames are built by etherparse (an independent implementation) where it can
//! build them, and by hand from the RFC layouts where it cannot (MPLS, IPv6 extension chains,
//! fragments, broken headers).

use super::*;
use etherparse::{PacketBuilder, VlanId};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn decode(link: LinkType, frame: &[u8]) -> Result<FrameSummary, NotMetered> {
    let mut s = FrameSummary::default();
    decode_frame(link, frame, &Decap::all(), &mut s).map(|_| s)
}

fn tcp_v4(flags_syn: bool, payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 61)
        .tcp(40000, 443, 1, 1024);
    let b = if flags_syn { b.syn() } else { b.ack(7).psh() };
    let mut v = vec![];
    b.write(&mut v, &vec![0u8; payload]).unwrap();
    v
}

#[test]
fn ethernet_ipv4_tcp() {
    let s = decode(LinkType::Ethernet, &tcp_v4(true, 100)).unwrap();
    assert_eq!(s.src_mac, SRC_MAC);
    assert_eq!(s.dst_mac, DST_MAC);
    assert_eq!(s.ip_version, 4);
    assert_eq!(&s.src_addr[..4], &[10, 0, 0, 1]);
    assert_eq!(&s.src_addr[4..], &[0; 12]);
    assert_eq!(
        (s.src_port, s.dst_port, s.protocol, s.ttl),
        (40000, 443, 6, 61)
    );
    assert_eq!(s.tcp_flags, 0x02);
    assert_eq!(s.ip_octets, 20 + 20 + 100);
    assert_eq!(s.fragment, None);
}

#[test]
fn ethernet_padding_does_not_count_as_ip_octets() {
    let mut f = tcp_v4(false, 0);
    f.extend_from_slice(&[0; 6]); // padded to the 60-byte Ethernet minimum
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_eq!(s.ip_octets, 40);
    assert_eq!(s.tcp_flags, 0x18);
}

#[test]
fn qinq_and_single_vlan() {
    let mut v = vec![];
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(7).unwrap())
        .ipv6(
            [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe; 16],
            9,
        )
        .udp(5353, 53)
        .write(&mut v, &[1, 2, 3])
        .unwrap();
    let s = decode(LinkType::Ethernet, &v).unwrap();
    assert_eq!((s.vlan_id, s.customer_vlan_id), (100, 7));
    assert_eq!(
        (s.ip_version, s.protocol, s.src_port, s.dst_port),
        (6, 17, 5353, 53)
    );
    assert_eq!(s.ip_octets, 40 + 8 + 3);

    let mut v = vec![];
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .single_vlan(VlanId::try_new(42).unwrap())
        .ipv4([1, 2, 3, 4], [5, 6, 7, 8], 1)
        .icmpv4_echo_request(1, 2)
        .write(&mut v, &[])
        .unwrap();
    let s = decode(LinkType::Ethernet, &v).unwrap();
    assert_eq!((s.vlan_id, s.customer_vlan_id), (42, 0));
    assert_eq!(
        (s.protocol, s.icmp_type_code, s.dst_port, s.src_port),
        (1, 0x0800, 0x0800, 0)
    );
}

#[test]
fn old_qinq_tpid_and_too_many_tags() {
    // 0x9100 outer tag, 0x8100 inner, then IPv4 from a built frame.
    let inner = tcp_v4(true, 0);
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&[0x91, 0x00, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x0b]);
    f.extend_from_slice(&inner[12..]);
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_eq!((s.vlan_id, s.customer_vlan_id), (10, 11));

    let mut f = inner[..12].to_vec();
    for _ in 0..5 {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
    }
    f.extend_from_slice(&inner[12..]);
    assert_eq!(
        decode(LinkType::Ethernet, &f),
        Err(MalformedReason::TooManyVlanTags.into())
    );
}

#[test]
fn mpls_stack_to_ipv4() {
    let inner = tcp_v4(true, 0);
    let mut f = inner[..12].to_vec();
    f.extend_from_slice(&[0x88, 0x47]);
    // label 16, tc 0, not bottom, ttl 64; label 17, bottom.
    f.extend_from_slice(&[0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x11, 0x40]);
    f.extend_from_slice(&inner[14..]);
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_eq!(s.mpls_top, [0x00, 0x01, 0x00]);
    assert_eq!(s.dst_port, 443);

    // A pseudowire control word after the stack is not IP.
    let mut pw = inner[..12].to_vec();
    pw.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x01, 0x40, 0x00, 0x00, 0x00, 0x00]);
    assert_eq!(
        decode(LinkType::Ethernet, &pw),
        Err(FilterReason::MplsNonIp.into())
    );
}

#[test]
fn non_ip_is_filtered_not_malformed() {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&SRC_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(
        decode(LinkType::Ethernet, &arp),
        Err(FilterReason::NonIp.into())
    );
    // 802.3 length field (LLC, spanning tree)
    arp[12..14].copy_from_slice(&[0x00, 0x26]);
    assert_eq!(
        decode(LinkType::Ethernet, &arp),
        Err(FilterReason::NonIp.into())
    );
}

fn ipv4_header(total_len: u16, ihl: u8, proto: u8, id: u16, flags_frag: u16) -> Vec<u8> {
    let mut h = vec![0x40 | ihl, 0x10];
    h.extend_from_slice(&total_len.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&flags_frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
    h.resize(ihl as usize * 4, 1); // options (NOPs)
    h
}

#[test]
fn ipv4_options_fragments_and_bad_headers() {
    // IHL 6 (one option word), UDP.
    let mut p = ipv4_header(24 + 8 + 4, 6, 17, 9, 0);
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
    let s = decode(LinkType::RawIp, &p).unwrap();
    assert_eq!(
        (s.src_port, s.dst_port, s.ip_octets, s.class_of_service),
        (12345, 53, 36, 0x10)
    );

    // First fragment: MF set, offset 0, ports present.
    let mut first = ipv4_header(20 + 16, 5, 17, 77, 0x2000);
    first.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let s = decode(LinkType::Ipv4, &first).unwrap();
    assert_eq!(
        s.fragment,
        Some(Fragment {
            id: 77,
            first: true,
            more: true
        })
    );
    assert_eq!(s.dst_port, 53);
    // Later fragment: no ports decoded (its bytes are payload).
    let mut later = ipv4_header(20 + 16, 5, 17, 77, 2);
    later.extend_from_slice(&[0xaa; 16]);
    let s = decode(LinkType::Ipv4, &later).unwrap();
    assert_eq!(
        s.fragment,
        Some(Fragment {
            id: 77,
            first: false,
            more: false
        })
    );
    assert_eq!((s.src_port, s.dst_port), (0, 0));

    let mut short_ihl = ipv4_header(20, 5, 6, 0, 0);
    short_ihl[0] = 0x44;
    assert_eq!(
        decode(LinkType::Ipv4, &short_ihl),
        Err(MalformedReason::BadIpHeaderLength.into())
    );
    assert_eq!(
        decode(LinkType::Ipv4, &ipv4_header(10, 5, 6, 0, 0)),
        Err(MalformedReason::BadIpTotalLength.into())
    );
    assert_eq!(
        decode(LinkType::Ipv4, &ipv4_header(40, 5, 6, 0, 0)),
        Err(MalformedReason::TruncatedTransport.into())
    );
    let mut bad = ipv4_header(40, 5, 6, 0, 0);
    bad[0] = 0x65;
    assert_eq!(
        decode(LinkType::Ipv4, &bad),
        Err(MalformedReason::BadIpVersion.into())
    );
}

fn ipv6_header(payload_len: u16, next: u8) -> Vec<u8> {
    let mut h = vec![0x60, 0x00, 0x00, 0x00];
    h.extend_from_slice(&payload_len.to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h
}

#[test]
fn ipv6_extension_chain() {
    // Hop-by-hop (8) -> destination options (16) -> AH (len 4 => 24 bytes) -> TCP
    let tcp: [u8; 20] = [
        0x01, 0xbb, 0x9c, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x11, 0, 0, 0, 0, 0, 0,
    ];
    let mut p = ipv6_header(8 + 16 + 24 + 20, 0);
    p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    p.extend_from_slice(&[51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&[6, 4, 0, 0]);
    p.extend_from_slice(&[0; 20]);
    p.extend_from_slice(&tcp);
    let s = decode(LinkType::Ipv6, &p).unwrap();
    assert_eq!(
        (s.protocol, s.src_port, s.dst_port, s.tcp_flags),
        (6, 443, 40000, 0x11)
    );
    assert_eq!(s.ip_octets, 40 + 68);

    // A chain longer than we follow.
    let mut long = ipv6_header(8 * 10, 60);
    for _ in 0..10 {
        long.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    assert_eq!(
        decode(LinkType::Ipv6, &long),
        Err(MalformedReason::BadIpv6ExtensionChain.into())
    );

    // An extension header that claims more bytes than the packet has.
    let mut over = ipv6_header(8, 0);
    over.extend_from_slice(&[6, 200, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        decode(LinkType::Ipv6, &over),
        Err(MalformedReason::BadIpv6ExtensionChain.into())
    );
}

#[test]
fn ipv6_fragments_and_atomic_fragment() {
    let udp = [0x00, 0x35, 0x30, 0x39, 0, 8, 0, 0];
    // First fragment: offset 0, M=1, id 0xdeadbeef.
    let mut p = ipv6_header(8 + 8, 44);
    p.extend_from_slice(&[17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
    p.extend_from_slice(&udp);
    let s = decode(LinkType::Ipv6, &p).unwrap();
    assert_eq!(
        s.fragment,
        Some(Fragment {
            id: 0xdeadbeef,
            first: true,
            more: true
        })
    );
    assert_eq!((s.protocol, s.src_port, s.dst_port), (17, 53, 12345));
    // Later fragment: offset 8 octets.
    let mut p = ipv6_header(8 + 8, 44);
    p.extend_from_slice(&[17, 0, 0x00, 0x08, 0xde, 0xad, 0xbe, 0xef]);
    p.extend_from_slice(&[0xaa; 8]);
    let s = decode(LinkType::Ipv6, &p).unwrap();
    assert_eq!(
        s.fragment,
        Some(Fragment {
            id: 0xdeadbeef,
            first: false,
            more: false
        })
    );
    assert_eq!((s.protocol, s.src_port), (17, 0));
    // Atomic fragment: a whole datagram.
    let mut p = ipv6_header(8 + 8, 44);
    p.extend_from_slice(&[17, 0, 0x00, 0x00, 0, 0, 0, 1]);
    p.extend_from_slice(&udp);
    let s = decode(LinkType::Ipv6, &p).unwrap();
    assert_eq!((s.fragment, s.dst_port), (None, 12345));
}

#[test]
fn cooked_and_loopback_link_types() {
    let eth = tcp_v4(true, 0);
    let ip = &eth[14..];
    // SLL: packet type, ARPHRD_ETHER, addr len 6, addr (8), protocol.
    let mut sll = vec![0, 0, 0, 1, 0, 6];
    sll.extend_from_slice(&SRC_MAC);
    sll.extend_from_slice(&[0, 0, 0x08, 0x00]);
    sll.extend_from_slice(ip);
    let s = decode(LinkType::LinuxSll, &sll).unwrap();
    assert_eq!((s.src_mac, s.dst_port), (SRC_MAC, 443));
    // SLL2: protocol, reserved, ifindex, ARPHRD, pkttype, addrlen, addr.
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
    sll2.extend_from_slice(&SRC_MAC);
    sll2.extend_from_slice(&[0, 0]);
    sll2.extend_from_slice(ip);
    assert_eq!(decode(LinkType::LinuxSll2, &sll2).unwrap().src_mac, SRC_MAC);
    // NULL in either byte order, LOOP in network order.
    for fam in [[2u8, 0, 0, 0], [0, 0, 0, 2]] {
        let mut f = fam.to_vec();
        f.extend_from_slice(ip);
        assert_eq!(decode(LinkType::Null, &f).unwrap().dst_port, 443);
    }
    let mut lo = vec![0, 0, 0, 2];
    lo.extend_from_slice(ip);
    assert_eq!(decode(LinkType::Loop, &lo).unwrap().dst_port, 443);
    let mut other = vec![0, 0, 0, 7];
    other.extend_from_slice(ip);
    assert_eq!(
        decode(LinkType::Loop, &other),
        Err(FilterReason::NonIp.into())
    );
}

/// Every prefix of valid frames, and pseudo-random garbage, decodes to a value or a reason:
/// never a panic.
#[test]
fn no_panic_on_truncation_or_garbage() {
    let mut frames = vec![tcp_v4(true, 30)];
    let mut p = ipv6_header(8 + 8, 44);
    p.extend_from_slice(&[
        17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0, 53, 0, 53, 0, 8, 0, 0,
    ]);
    frames.push(p);
    let links = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::RawIp,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Null,
        LinkType::Loop,
    ];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|i| (x.rotate_left(i as u32 % 64) >> 3) as u8)
            .collect();
        frames.push(bytes);
    }
    for f in &frames {
        for end in 0..=f.len().min(120) {
            for link in links {
                let _ = decode(link, &f[..end]);
            }
        }
    }
}

// ---- Tunnels. Outer headers by etherparse where it can (UDP), by hand from the RFC and
// draft layouts otherwise (GRE, ERSPAN, GTP-U extensions, PPPoE).

const OUTER_SRC: [u8; 4] = [192, 0, 2, 10];
const OUTER_DST: [u8; 4] = [192, 0, 2, 20];

/// An inner TCP frame between 10.1.0.1:40000 and 10.1.0.2:443 (Ethernet, optionally tagged).
fn inner_frame(vlan: Option<u16>) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
    let ip = match vlan {
        Some(id) => {
            eth.single_vlan(VlanId::try_new(id).unwrap())
                .ipv4([10, 1, 0, 1], [10, 1, 0, 2], 55)
        }
        None => eth.ipv4([10, 1, 0, 1], [10, 1, 0, 2], 55),
    };
    let mut v = vec![];
    ip.tcp(40000, 443, 9, 1000)
        .ack(1)
        .write(&mut v, &[7; 33])
        .unwrap();
    v
}

/// The IP packet of an inner frame (Ethernet header stripped).
fn inner_ip() -> Vec<u8> {
    inner_frame(None)[14..].to_vec()
}

fn udp_outer(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![];
    PacketBuilder::ethernet2(SRC_MAC, DST_MAC)
        .ipv4(OUTER_SRC, OUTER_DST, 64)
        .udp(51000, dst_port)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Ethernet + IPv4 (protocol `proto`) around `payload`.
fn ip_outer(proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![];
    v.extend_from_slice(&DST_MAC);
    v.extend_from_slice(&SRC_MAC);
    v.extend_from_slice(&[0x08, 0x00]);
    let mut h = ipv4_header((20 + payload.len()) as u16, 5, proto, 1, 0);
    h[12..16].copy_from_slice(&OUTER_SRC);
    h[16..20].copy_from_slice(&OUTER_DST);
    v.extend_from_slice(&h);
    v.extend_from_slice(payload);
    v
}

/// A GRE header: flags octet, protocol, then checksum/key/sequence as the flags say.
fn gre(flags: u8, proto: u16, key: u32, payload: &[u8]) -> Vec<u8> {
    let mut g = vec![flags, 0];
    g.extend_from_slice(&proto.to_be_bytes());
    if flags & 0x80 != 0 {
        g.extend_from_slice(&[0xbe, 0xef, 0, 0]);
    }
    if flags & 0x20 != 0 {
        g.extend_from_slice(&key.to_be_bytes());
    }
    if flags & 0x10 != 0 {
        g.extend_from_slice(&77u32.to_be_bytes());
    }
    g.extend_from_slice(payload);
    g
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend_from_slice(&(vni << 8).to_be_bytes());
    h.extend_from_slice(inner);
    h
}

fn erspan2(session: u16, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x10, 0x64]; // version 1, VLAN 100
    h.extend_from_slice(&(session & 0x3ff).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 5]);
    h.extend_from_slice(inner);
    h
}

fn erspan3(session: u16, frame_type: u16, optional: bool, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x20, 0x00];
    h.extend_from_slice(&(session & 0x3ff).to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0, 0]);
    h.extend_from_slice(&((frame_type << 10) | optional as u16).to_be_bytes());
    if optional {
        h.extend_from_slice(&[0x0c, 0, 0, 0, 0, 0, 0, 0]);
    }
    h.extend_from_slice(inner);
    h
}

fn assert_inner(s: &FrameSummary) {
    assert_eq!(&s.src_addr[..4], &[10, 1, 0, 1]);
    assert_eq!(&s.dst_addr[..4], &[10, 1, 0, 2]);
    assert_eq!((s.protocol, s.src_port, s.dst_port), (6, 40000, 443));
    assert_eq!(s.ip_octets, 20 + 20 + 33);
    assert_eq!(s.ttl, 55);
}

fn assert_outer_endpoints(s: &FrameSummary) {
    assert_eq!(s.tunnel.outer_version, 4);
    assert_eq!(&s.tunnel.outer_src[..4], &OUTER_SRC);
    assert_eq!(&s.tunnel.outer_dst[..4], &OUTER_DST);
}

#[test]
fn vxlan_and_geneve_carry_the_inner_flow_and_its_vni() {
    let f = udp_outer(4789, &vxlan(5001, &inner_frame(Some(30))));
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_inner(&s);
    assert_outer_endpoints(&s);
    assert_eq!(
        (s.tunnel.kind, s.tunnel.id, s.tunnel.depth),
        (TunnelKind::Vxlan, 5001, 1)
    );
    assert_eq!(
        (s.tunnel.segment_kind, s.tunnel.segment),
        (TunnelKind::Vxlan, 5001)
    );
    assert_eq!(s.vlan_id, 30, "the inner frame's VLAN");
    assert_eq!(s.src_mac, [2, 0, 0, 0, 0, 0xa], "the inner frame's MAC");
    assert_eq!(&f[s.ip_offset as usize..], &inner_frame(Some(30))[18..]);
    // Linux's port too, and an added one only when asked.
    assert!(
        decode(
            LinkType::Ethernet,
            &udp_outer(8472, &vxlan(1, &inner_frame(None)))
        )
        .unwrap()
        .tunnel
        .depth
            == 1
    );
    // VXLAN-GPE's port is decoded by default; others only when asked.
    let on_4790 = udp_outer(4790, &vxlan(1, &inner_frame(None)));
    assert_eq!(
        decode(LinkType::Ethernet, &on_4790).unwrap().tunnel.depth,
        1
    );
    let on_4791 = udp_outer(4791, &vxlan(1, &inner_frame(None)));
    assert_eq!(
        decode(LinkType::Ethernet, &on_4791).unwrap().tunnel.depth,
        0
    );
    let mut d = Decap::all();
    d.add_vxlan_port(4791).unwrap();
    let mut s = FrameSummary::default();
    decode_frame(LinkType::Ethernet, &on_4791, &d, &mut s).unwrap();
    assert_eq!(s.tunnel.kind, TunnelKind::Vxlan);
    // --decap none: the outer UDP flow, as before.
    decode_frame(LinkType::Ethernet, &f, &Decap::none(), &mut s).unwrap();
    assert_eq!((s.protocol, s.dst_port, s.tunnel.depth), (17, 4789, 0));

    // Geneve with 8 bytes of options, carrying Ethernet (0x6558) and IPv4 (0x0800).
    for (proto, inner) in [(0x6558u16, inner_frame(None)), (0x0800, inner_ip())] {
        let mut g = vec![0x02, 0x00];
        g.extend_from_slice(&proto.to_be_bytes());
        g.extend_from_slice(&[0x00, 0x01, 0x02, 0x00]);
        g.extend_from_slice(&[0x01, 0x02, 0x03, 0x01, 0xaa, 0xbb, 0xcc, 0xdd]);
        g.extend_from_slice(&inner);
        let s = decode(LinkType::Ethernet, &udp_outer(6081, &g)).unwrap();
        assert_inner(&s);
        assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::Geneve, 0x102));
    }
}

#[test]
fn a_tunnel_port_without_a_tunnel_is_ordinary_udp() {
    let mut not_vxlan = vxlan(7, &inner_frame(None));
    not_vxlan[0] = 0; // I flag clear
    let s = decode(LinkType::Ethernet, &udp_outer(4789, &not_vxlan)).unwrap();
    assert_eq!((s.protocol, s.dst_port, s.tunnel.depth), (17, 4789, 0));
    assert_eq!(s.ip_octets as usize, 20 + 8 + not_vxlan.len());
    // A GTP-U echo request is GTP but carries nobody's packet.
    let echo = [0x32, 0x01, 0, 4, 0, 0, 0, 0, 0, 1, 0, 0];
    let s = decode(LinkType::Ethernet, &udp_outer(2152, &echo)).unwrap();
    assert_eq!((s.dst_port, s.tunnel.depth), (2152, 0));
}

#[test]
fn erspan_types_one_two_and_three() {
    let inner = inner_frame(Some(12));
    // Type I: GRE 0x88BE without a sequence number, Ethernet right after.
    let s = decode(
        LinkType::Ethernet,
        &ip_outer(47, &gre(0, 0x88be, 0, &inner)),
    )
    .unwrap();
    assert_inner(&s);
    assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::ErspanI, 0));
    // Type II: with a sequence number and the 8-byte header.
    let f = ip_outer(47, &gre(0x10, 0x88be, 0, &erspan2(345, &inner)));
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_inner(&s);
    assert_outer_endpoints(&s);
    assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::ErspanII, 345));
    assert_eq!(s.vlan_id, 12);
    assert_eq!(
        s.tunnel.segment_kind,
        TunnelKind::None,
        "a session is not keyed"
    );
    // Type III, with and without the platform sub-header, Ethernet or IP frames.
    for optional in [false, true] {
        let f = ip_outer(
            47,
            &gre(0x10, 0x22eb, 0, &erspan3(1000, 0, optional, &inner)),
        );
        let s = decode(LinkType::Ethernet, &f).unwrap();
        assert_inner(&s);
        assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::ErspanIII, 1000));
    }
    let f = ip_outer(
        47,
        &gre(0x10, 0x22eb, 0, &erspan3(3, 2, false, &inner_ip())),
    );
    assert_inner(&decode(LinkType::Ethernet, &f).unwrap());
    // Broken: wrong version, unknown frame type, truncated header.
    let mut bad = erspan2(1, &inner);
    bad[0] = 0x20;
    let f = ip_outer(47, &gre(0x10, 0x88be, 0, &bad));
    assert_eq!(
        decode(LinkType::Ethernet, &f),
        Err(MalformedReason::BadTunnelHeader.into())
    );
    let f = ip_outer(47, &gre(0x10, 0x22eb, 0, &erspan3(3, 7, false, &inner)));
    assert_eq!(
        decode(LinkType::Ethernet, &f),
        Err(MalformedReason::BadTunnelHeader.into())
    );
    let f = ip_outer(47, &gre(0x10, 0x22eb, 0, &erspan3(3, 0, true, &[])[..14]));
    assert_eq!(
        decode(LinkType::Ethernet, &f),
        Err(MalformedReason::TruncatedTunnelHeader.into())
    );
}

#[test]
fn gre_with_every_option_nvgre_and_ip_in_ip() {
    // GRE with checksum, key and sequence, carrying IPv4: the key is the segment.
    let f = ip_outer(47, &gre(0xb0, 0x0800, 0xdead_beef, &inner_ip()));
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_inner(&s);
    assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::Gre, 0xdead_beef));
    assert_eq!(
        (s.tunnel.segment_kind, s.tunnel.segment),
        (TunnelKind::Gre, 0xdead_beef)
    );
    // Transparent Ethernet with a key: NVGRE, VSID in the upper 24 bits.
    let f = ip_outer(47, &gre(0x20, 0x6558, 0x0012_3401, &inner_frame(None)));
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_inner(&s);
    assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::Nvgre, 0x1234));
    // Truncated GRE options are broken; GRE version 1 (PPTP) is metered by its outer header.
    let f = ip_outer(47, &gre(0x20, 0x0800, 1, &[])[..6]);
    assert_eq!(
        decode(LinkType::Ethernet, &f),
        Err(MalformedReason::TruncatedTunnelHeader.into())
    );
    let mut pptp = gre(0x30, 0x880b, 1, &[0xff, 0x03]);
    pptp[1] = 0x01;
    let s = decode(LinkType::Ethernet, &ip_outer(47, &pptp)).unwrap();
    assert_eq!((s.protocol, s.tunnel.depth), (47, 0));
    // IPv4 in IPv4, IPv6 in IPv4.
    let s = decode(LinkType::Ethernet, &ip_outer(4, &inner_ip())).unwrap();
    assert_inner(&s);
    assert_eq!(s.tunnel.kind, TunnelKind::IpInIp);
    let mut v6 = ipv6_header(8, 17);
    v6.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
    let s = decode(LinkType::Ethernet, &ip_outer(41, &v6)).unwrap();
    assert_eq!(
        (s.ip_version, s.protocol, s.tunnel.kind),
        (6, 17, TunnelKind::IpInIp)
    );
}

#[test]
fn gtpu_with_extension_headers_and_pppoe() {
    let mut g = vec![0x34, 0xff];
    let ip = inner_ip();
    g.extend_from_slice(&((ip.len() + 8) as u16).to_be_bytes());
    g.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    g.extend_from_slice(&[0, 0, 0, 0x85, 1, 0x10, 0x09, 0]);
    g.extend_from_slice(&ip);
    let s = decode(LinkType::Ethernet, &udp_outer(2152, &g)).unwrap();
    assert_inner(&s);
    assert_eq!(
        (s.tunnel.kind, s.tunnel.id),
        (TunnelKind::GtpU, 0x0102_0304)
    );
    assert_eq!(
        s.tunnel.segment_kind,
        TunnelKind::None,
        "a TEID differs per direction"
    );

    let mut p = vec![];
    p.extend_from_slice(&DST_MAC);
    p.extend_from_slice(&SRC_MAC);
    p.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x12, 0x34]);
    p.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    p.extend_from_slice(&[0x00, 0x21]);
    p.extend_from_slice(&ip);
    let s = decode(LinkType::Ethernet, &p).unwrap();
    assert_inner(&s);
    assert_eq!(s.pppoe_session, 0x1234);
    assert_eq!(s.tunnel.kinds, 1 << TunnelKind::Pppoe as u16);
    p[20..22].copy_from_slice(&[0xc0, 0x21]); // LCP
    assert_eq!(
        decode(LinkType::Ethernet, &p),
        Err(FilterReason::NonIp.into())
    );
}

#[test]
fn nested_tunnels_up_to_the_bound() {
    // VLAN inside VXLAN inside GRE inside VLAN: the GRE key stays the identity exported (the
    // outermost tunnel), the VNI the segment keyed (the innermost address space).
    let vx = udp_outer(4789, &vxlan(77, &inner_frame(Some(300))));
    let g = gre(0x20, 0x0800, 9, &vx[14..]);
    let mut f = ip_outer(47, &g);
    // Tag the outer frame with VLAN 5.
    f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_inner(&s);
    assert_eq!(s.vlan_id, 300);
    assert_eq!(
        (s.tunnel.kind, s.tunnel.id, s.tunnel.depth),
        (TunnelKind::Gre, 9, 2)
    );
    assert_eq!(
        (s.tunnel.inner_kind, s.tunnel.inner_id),
        (TunnelKind::Vxlan, 77)
    );
    assert_eq!(
        (s.tunnel.segment_kind, s.tunnel.segment),
        (TunnelKind::Vxlan, 77)
    );
    assert_outer_endpoints(&s);

    // IP-in-IP five deep: the fifth tunnel is one too many.
    let mut ip = inner_ip();
    for depth in 1..=5 {
        let mut h = ipv4_header((20 + ip.len()) as u16, 5, 4, depth, 0);
        h.extend_from_slice(&ip);
        ip = h;
        let mut f = vec![0; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
        let r = decode(LinkType::Ethernet, &f);
        if depth as u8 <= tunnel::MAX_TUNNEL_DEPTH {
            assert_eq!(r.unwrap().tunnel.depth, depth as u8);
        } else {
            assert_eq!(r, Err(MalformedReason::TunnelTooDeep.into()));
        }
    }
}

/// Every prefix of every tunnelled frame decodes to a value or a reason, never a panic.
#[test]
fn no_panic_on_truncated_tunnels() {
    let inner = inner_frame(Some(4));
    let frames = [
        udp_outer(4789, &vxlan(5, &inner)),
        ip_outer(47, &gre(0x10, 0x22eb, 0, &erspan3(3, 0, true, &inner))),
        ip_outer(47, &gre(0xb0, 0x88be, 0, &erspan2(3, &inner))),
        ip_outer(4, &inner_ip()),
    ];
    for f in &frames {
        for end in 0..=f.len() {
            let _ = decode(LinkType::Ethernet, &f[..end]);
        }
    }
}

#[test]
fn vxlan_is_read_by_rfc_7348s_receive_rule_and_gpe_by_its_next_protocol() {
    // Reserved flag bits and both reserved fields set (group policy, vendor uses): still VXLAN.
    let mut h = vxlan(77, &inner_frame(None));
    h[0] |= 0x80 | 0x01;
    h[1..4].copy_from_slice(&[0x12, 0x34, 0x56]);
    h[7] = 0xff;
    let s = decode(LinkType::Ethernet, &udp_outer(4789, &h)).unwrap();
    assert_inner(&s);
    assert_eq!((s.tunnel.kind, s.tunnel.id), (TunnelKind::Vxlan, 77));
    assert!(!s.tunnel.port_not_tunnel);
    // VXLAN-GPE on 4789 and 4790: IPv4 (1) and Ethernet (3) inside.
    for port in [4789u16, 4790] {
        let mut ip = vxlan(5, &inner_ip());
        ip[0] = 0x0c;
        ip[3] = 1;
        let s = decode(LinkType::Ethernet, &udp_outer(port, &ip)).unwrap();
        assert_inner(&s);
        assert_eq!(s.tunnel.depth, 1, "port {port}");
        let mut eth = vxlan(5, &inner_frame(None));
        eth[0] = 0x0c;
        eth[3] = 3;
        assert_inner(&decode(LinkType::Ethernet, &udp_outer(port, &eth)).unwrap());
    }
    // NSH (4): filtered by that name, not metered as something it is not.
    let mut base = vec![0x0f, 0xc6, 0x02, 0x01]; // version 0, 6 words, MD type 2, IPv4
    base.resize(40, 0);
    let mut nsh = vxlan(5, &base);
    nsh[0] = 0x0c;
    nsh[3] = 4;
    assert_eq!(
        decode(LinkType::Ethernet, &udp_outer(4790, &nsh)).err(),
        Some(NotMetered::Filtered(FilterReason::VxlanGpeNsh))
    );
}

#[test]
fn udp_to_a_tunnel_port_whose_inside_does_not_decode_is_metered_as_udp() {
    // The I flag set and an Ethernet header that looks right, then a broken IPv4 header.
    let mut inner = inner_frame(None);
    inner[14] = 0x42; // IHL 2
    let f = udp_outer(4789, &vxlan(9, &inner));
    let s = decode(LinkType::Ethernet, &f).unwrap();
    assert_eq!((s.protocol, s.dst_port, s.tunnel.depth), (17, 4789, 0));
    assert!(s.tunnel.port_not_tunnel);
    assert_eq!(&s.src_addr[..4], &OUTER_SRC);
    // GPE saying IPv4 over something that is not: the same.
    let mut gpe = vxlan(9, &[0x99; 30]);
    gpe[0] = 0x0c;
    gpe[3] = 1;
    let s = decode(LinkType::Ethernet, &udp_outer(4790, &gpe)).unwrap();
    assert_eq!((s.dst_port, s.tunnel.depth), (4790, 0));
    assert!(s.tunnel.port_not_tunnel);
    // ARP inside VXLAN is VXLAN's (filtered as non_ip, as on the wire), not UDP.
    let mut arp = inner_frame(None);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        decode(LinkType::Ethernet, &udp_outer(4789, &vxlan(9, &arp))).err(),
        Some(NotMetered::Filtered(FilterReason::NonIp))
    );
    // Random payloads to 4789: each is metered (as VXLAN or as UDP) or, when it happens to
    // start like a LAN frame that is not IP, filtered as such; none is malformed.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let payload: Vec<u8> = (0..60)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        match decode(LinkType::Ethernet, &udp_outer(4789, &payload)) {
            Ok(_) | Err(NotMetered::Filtered(FilterReason::NonIp)) => {}
            Err(e) => panic!("random UDP to 4789 not metered: {e:?}"),
        }
    }
}
