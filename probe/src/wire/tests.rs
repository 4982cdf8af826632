//! Decoder tests. Frames are built by etherparse (an independent implementation) where it can
//! build them, and by hand from the RFC layouts where it cannot (MPLS, IPv6 extension chains,
//! fragments, broken headers).

use super::*;
use etherparse::{PacketBuilder, VlanId};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

fn decode(link: LinkType, frame: &[u8]) -> Result<FrameSummary, NotMetered> {
    let mut s = FrameSummary::default();
    decode_frame(link, frame, &mut s).map(|_| s)
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
