//! Crafting traffic with etherparse's PacketBuilder.

use crate::capture::Frame;
use etherparse::{PacketBuilder, VlanId};
use std::net::IpAddr;

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// Transport of a crafted packet.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    /// TCP with explicit sequence and acknowledgement numbers (a coherent session).
    TcpSeq {
        sport: u16,
        dport: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6 echo request (type 8 / 128) or reply (0 / 129).
    Echo {
        reply: bool,
    },
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;

/// Builds one Ethernet frame (optionally tagged) carrying `payload_len` bytes of payload.
pub fn ethernet(
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    payload_len: usize,
    vlans: &[u16],
    ttl: u8,
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let payload = vec![0x5a; payload_len];
    let mut out = Vec::with_capacity(payload_len + 100);
    macro_rules! finish {
        ($ip:expr) => {{
            let ip = $ip;
            let tcp = match l4 {
                L4::Tcp {
                    sport,
                    dport,
                    flags,
                } => Some((sport, dport, flags, 1000, 1)),
                L4::TcpSeq {
                    sport,
                    dport,
                    flags,
                    seq,
                    ack,
                } => Some((sport, dport, flags, seq, ack)),
                _ => None,
            };
            match l4 {
                L4::Tcp { .. } | L4::TcpSeq { .. } => {
                    let (sport, dport, flags, seq, ack) = tcp.expect("a TCP variant");
                    let mut b = ip.tcp(sport, dport, seq, 65535);
                    if flags & SYN != 0 {
                        b = b.syn();
                    }
                    if flags & ACK != 0 {
                        b = b.ack(ack);
                    }
                    if flags & FIN != 0 {
                        b = b.fin();
                    }
                    if flags & RST != 0 {
                        b = b.rst();
                    }
                    if flags & PSH != 0 {
                        b = b.psh();
                    }
                    b.write(&mut out, &payload).unwrap();
                }
                L4::Udp { sport, dport } => ip.udp(sport, dport).write(&mut out, &payload).unwrap(),
                L4::Echo { reply } => match (src, reply) {
                    (IpAddr::V4(_), false) => ip
                        .icmpv4_echo_request(1, 1)
                        .write(&mut out, &payload)
                        .unwrap(),
                    (IpAddr::V4(_), true) => ip
                        .icmpv4_echo_reply(1, 1)
                        .write(&mut out, &payload)
                        .unwrap(),
                    (IpAddr::V6(_), false) => ip
                        .icmpv6_echo_request(1, 1)
                        .write(&mut out, &payload)
                        .unwrap(),
                    (IpAddr::V6(_), true) => ip
                        .icmpv6_echo_reply(1, 1)
                        .write(&mut out, &payload)
                        .unwrap(),
                },
            }
        }};
    }
    macro_rules! with_ip {
        ($b:expr) => {
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => finish!($b.ipv4(s.octets(), d.octets(), ttl)),
                (IpAddr::V6(s), IpAddr::V6(d)) => finish!($b.ipv6(s.octets(), d.octets(), ttl)),
                _ => panic!("mixed address families"),
            }
        };
    }
    match vlans {
        [] => with_ip!(eth),
        [v] => with_ip!(eth.single_vlan(VlanId::try_new(*v).unwrap())),
        [o, i] => {
            with_ip!(eth.double_vlan(VlanId::try_new(*o).unwrap(), VlanId::try_new(*i).unwrap()))
        }
        _ => panic!("at most two tags"),
    }
    out
}

/// A TCP connection: handshake, `data` segments each way, FIN from both ends, last ACK.
pub fn tcp_session(
    (client, cport): (IpAddr, u16),
    (server, sport): (IpAddr, u16),
    start_ns: u64,
    step_ns: u64,
    data: usize,
    vlans: &[u16],
) -> Vec<Frame> {
    let mut t = start_ns;
    let mut v = vec![];
    // Next sequence number of each side (client, server); SYN and FIN count one.
    let mut next = [1000u32, 5000u32];
    let mut push = |from_client: bool, flags: u8, len: usize, t: &mut u64| {
        let (s, d, sp, dp) = if from_client {
            (client, server, cport, sport)
        } else {
            (server, client, sport, cport)
        };
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let seq = next[me];
        next[me] = seq.wrapping_add(len as u32 + u32::from(flags & (SYN | FIN) != 0));
        v.push(Frame {
            ts_ns: *t,
            data: ethernet(
                s,
                d,
                L4::TcpSeq {
                    sport: sp,
                    dport: dp,
                    flags,
                    seq,
                    ack: next[peer],
                },
                len,
                vlans,
                if from_client { 64 } else { 57 },
            ),
        });
        *t += step_ns;
    };
    push(true, SYN, 0, &mut t);
    push(false, SYN | ACK, 0, &mut t);
    push(true, ACK, 0, &mut t);
    for i in 0..data {
        push(true, PSH | ACK, 100 + i * 7 % 900, &mut t);
        push(false, ACK, 1200 + i * 13 % 200, &mut t);
    }
    push(true, FIN | ACK, 0, &mut t);
    push(false, FIN | ACK, 0, &mut t);
    push(true, ACK, 0, &mut t);
    v
}

/// A realistic small mix: TCP over IPv4 and IPv6, DNS over UDP, ICMP echo both families,
/// 802.1Q and QinQ tagged flows, frames from 60 to 1514 bytes, over a few seconds.
pub fn mixed_traffic(base_ns: u64) -> Vec<Frame> {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let ms = 1_000_000u64;
    let mut f = vec![];
    for i in 0..5u16 {
        f.extend(tcp_session(
            (ip("10.1.0.5"), 40000 + i),
            (ip("10.2.0.80"), 443),
            base_ns + i as u64 * 100 * ms,
            3 * ms,
            4 + i as usize,
            &[],
        ));
    }
    f.extend(tcp_session(
        (ip("fd00::5"), 50000),
        (ip("fd00::80"), 80),
        base_ns + 50 * ms,
        7 * ms,
        6,
        &[],
    ));
    f.extend(tcp_session(
        (ip("10.3.0.5"), 33000),
        (ip("10.3.0.6"), 22),
        base_ns + 70 * ms,
        5 * ms,
        3,
        &[100],
    ));
    f.extend(tcp_session(
        (ip("10.4.0.5"), 33001),
        (ip("10.4.0.6"), 25),
        base_ns + 90 * ms,
        5 * ms,
        2,
        &[200, 30],
    ));
    for i in 0..20u64 {
        let q = L4::Udp {
            sport: 5000 + i as u16,
            dport: 53,
        };
        let r = L4::Udp {
            sport: 53,
            dport: 5000 + i as u16,
        };
        f.push(Frame {
            ts_ns: base_ns + i * 37 * ms,
            data: ethernet(ip("10.1.0.5"), ip("10.9.9.9"), q, 40, &[], 64),
        });
        f.push(Frame {
            ts_ns: base_ns + i * 37 * ms + 900_123,
            data: ethernet(ip("10.9.9.9"), ip("10.1.0.5"), r, 180, &[], 60),
        });
    }
    for (s, d) in [("10.1.0.5", "10.2.0.1"), ("fd00::5", "fd00::1")] {
        for i in 0..4u64 {
            let t = base_ns + 1_000 * ms + i * 250 * ms;
            f.push(Frame {
                ts_ns: t,
                data: ethernet(ip(s), ip(d), L4::Echo { reply: false }, 56, &[], 64),
            });
            f.push(Frame {
                ts_ns: t + 300_017,
                data: ethernet(ip(d), ip(s), L4::Echo { reply: true }, 56, &[], 63),
            });
        }
    }
    // One large UDP transfer of maximum-size frames.
    for i in 0..50u64 {
        f.push(Frame {
            ts_ns: base_ns + 2_000 * ms + i * 113_000,
            data: ethernet(
                ip("fd00::5"),
                ip("fd00::99"),
                L4::Udp {
                    sport: 9000,
                    dport: 9001,
                },
                1514 - 14 - 40 - 8,
                &[],
                64,
            ),
        });
    }
    f.sort_by_key(|x| x.ts_ns);
    f
}

/// `n` one-packet UDP flows from 10.9.`tag`.x to 10.8.0.1:9000 (source ports from 1024, a new
/// one every 250 sources), 1 µs apart from `t_ns`, frames of 60 to 259 bytes of payload.
pub fn udp_flows(n: u32, tag: u8, t_ns: u64) -> Vec<crate::capture::Frame> {
    (0..n)
        .map(|i| crate::capture::Frame {
            ts_ns: t_ns + i as u64 * 1000,
            data: ethernet(
                std::net::Ipv4Addr::new(10, 9, tag, (i % 250) as u8 + 1).into(),
                "10.8.0.1".parse().unwrap(),
                L4::Udp {
                    sport: 1024 + (i / 250) as u16,
                    dport: 9000,
                },
                60 + (i % 200) as usize,
                &[],
                64,
            ),
        })
        .collect()
}

/// A TCP conversation over IPv4 with coherent sequence numbers: handshake, the client's
/// `request`, the server's `reply`, 300 and 900 more bytes each way, FINs, last ACK (ten
/// frames, 3 ms apart from `t0`).
pub fn tcp_exchange(
    client: (&str, u16),
    server: (&str, u16),
    request: &[u8],
    reply: &[u8],
    t0: u64,
) -> Vec<Frame> {
    let ip4 = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let (c, s) = (ip4(client.0), ip4(server.0));
    let mut seq = [1000u32, 9000u32];
    let mut out = vec![];
    let mut t = t0;
    let mut push = |from_client: bool, flags: &str, data: &[u8]| {
        let (src, dst, sp, dp, me, peer) = if from_client {
            (c, s, client.1, server.1, 0, 1)
        } else {
            (s, c, server.1, client.1, 1, 0)
        };
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq[me], 64240);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') {
            b = b.ack(seq[peer]);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        if !data.is_empty() {
            b = b.psh();
        }
        let mut f = vec![];
        b.write(&mut f, data).unwrap();
        seq[me] = seq[me].wrapping_add(data.len() as u32 + flags.contains(['S', 'F']) as u32);
        out.push(Frame { ts_ns: t, data: f });
        t += 3_000_000;
    };
    push(true, "S", b"");
    push(false, "SA", b"");
    push(true, "A", b"");
    push(true, "A", request);
    push(false, "A", reply);
    push(true, "A", &[0x17; 300]);
    push(false, "A", &[0x17; 900]);
    push(true, "FA", b"");
    push(false, "FA", b"");
    push(true, "A", b"");
    out
}

/// An Ethernet frame with IPv4 and UDP carrying `payload`.
pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 42);
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("a valid UDP packet");
    out
}

/// A DNS message with one question (`name`, `qtype`, class IN): a query when `response` is
/// `None`, else a response with that RCODE and an A record per address (the question's name
/// by pointer, TTL 60).
pub fn dns_message(id: u16, name: &str, qtype: u16, response: Option<(u8, &[[u8; 4]])>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let answers = response.map_or(&[][..], |(_, a)| a);
    match response {
        Some((rcode, _)) => m.extend_from_slice(&[0x81, 0x80 | (rcode & 0xf)]),
        None => m.extend_from_slice(&[0x01, 0x00]),
    }
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for a in answers {
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(a);
    }
    m
}

/// A random-source SYN flood against one server (10.9.0.1:80) with `conversations` real
/// conversations beside it (10.1.x.y:40000+i <-> 10.9.0.1:443): in each of `rounds` rounds,
/// every client sends one 100-byte segment and gets one back, then `flood_per_round` SYNs
/// follow from sources all over 172.16.0.0/12. Rounds are `round_ns` apart. Returns every
/// frame in time order, and the conversations' frames alone (for tshark's truth).
pub fn syn_flood_with_conversations(
    base_ns: u64,
    conversations: u16,
    rounds: u64,
    flood_per_round: u64,
    round_ns: u64,
) -> (Vec<Frame>, Vec<Frame>) {
    let server: IpAddr = "10.9.0.1".parse().unwrap();
    let mut all = Vec::new();
    let mut talk = Vec::new();
    // xorshift64: random sources and ports, the same on every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for r in 0..rounds {
        let t0 = base_ns + r * round_ns;
        for c in 0..conversations {
            let client: IpAddr = format!("10.1.{}.{}", c / 250, 1 + c % 250).parse().unwrap();
            let t = t0 + c as u64 * 1_000;
            let seg = |sport, dport| L4::Tcp {
                sport,
                dport,
                flags: PSH | ACK,
            };
            for f in [
                Frame {
                    ts_ns: t,
                    data: ethernet(client, server, seg(40_000 + c, 443), 100, &[], 64),
                },
                Frame {
                    ts_ns: t + 500,
                    data: ethernet(server, client, seg(443, 40_000 + c), 100, &[], 64),
                },
            ] {
                talk.push(f.clone());
                all.push(f);
            }
        }
        let flood_start = t0 + conversations as u64 * 1_000;
        let step = (round_ns - conversations as u64 * 1_000) / flood_per_round.max(1);
        for i in 0..flood_per_round {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let src = IpAddr::from((0xac10_0000u32 | (x as u32 & 0x000f_ffff)).to_be_bytes());
            let syn = L4::Tcp {
                sport: 1024 + (x >> 32) as u16 % 60_000,
                dport: 80,
                flags: SYN,
            };
            all.push(Frame {
                ts_ns: flood_start + i * step,
                data: ethernet(src, server, syn, 0, &[], 64),
            });
        }
    }
    (all, talk)
}

/// The nfdump records of [`syn_flood_with_conversations`]'s conversations (port 443), checked
/// to be one per conversation direction: the flood must not have cut any of them up.
pub fn conversation_records(records: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let talk: Vec<serde_json::Value> = records
        .iter()
        .filter(|r| r["type"] == "FLOW" && (r["dst_port"] == 443 || r["src_port"] == 443))
        .cloned()
        .collect();
    let directions = 2 * talk
        .iter()
        .filter(|r| r["dst_port"] == 443)
        .map(|r| r["src4_addr"].to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(
        talk.len(),
        directions,
        "one record per conversation direction"
    );
    talk
}
