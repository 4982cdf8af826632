//! Community ID v1 (the published spec, corelight/community-id-spec): one string per
//! conversation that Zeek, Suricata, Arkime and Elastic compute alike, so a flow record pivots
//! to their logs in one search. Both directions of a conversation get the same ID.
//!
//! The hash is SHA-1 over: the 16-bit seed, the two addresses and ports ordered so the smaller
//! (address, port) comes first, the protocol and a zero byte; base64 of it follows "1:". ICMP and
//! ICMPv6 use type and code as ports, with a request and its reply mapped onto one pair (echo
//! 8/0, router solicitation/advertisement, ...); other ICMP messages keep their direction.
//! Protocols without ports (GRE, ESP, ...) hash the addresses only.

use base64::Engine;
use ipfix_export::{CommunityId, FlowRecord};
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// ICMP types with a counterpart (request and reply).
fn icmp_counterpart(v6: bool, t: u8) -> Option<u8> {
    Some(match (v6, t) {
        (false, 8) => 0,
        (false, 0) => 8,
        (false, 13) => 14,
        (false, 14) => 13,
        (false, 15) => 16,
        (false, 16) => 15,
        (false, 10) => 9,
        (false, 9) => 10,
        (false, 17) => 18,
        (false, 18) => 17,
        (true, 128) => 129,
        (true, 129) => 128,
        (true, 130) => 131,
        (true, 131) => 130,
        (true, 133) => 134,
        (true, 134) => 133,
        (true, 135) => 136,
        (true, 136) => 135,
        (true, 139) => 140,
        (true, 140) => 139,
        (true, 144) => 145,
        (true, 145) => 144,
        _ => return None,
    })
}

/// An address's bytes (4 or 16) in a fixed buffer: no allocation per record.
fn octets(a: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// The Community ID of a conversation. `ports` is (source, destination) for TCP, UDP and SCTP,
/// (type, code) for ICMP and ICMPv6, and ignored for other protocols.
pub fn community_id_v1(
    seed: u16,
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
) -> CommunityId {
    let ((sb, sn), (db, dn)) = (octets(src), octets(dst));
    let (mut s, mut d) = (&sb[..sn], &db[..dn]);
    // (ports to hash, whether the endpoints may be reordered)
    let (mut ports, symmetric) = match protocol {
        6 | 17 | 132 => (Some(ports), true),
        1 | 58 => {
            let (t, c) = (ports.0 as u8, ports.1 as u8);
            match icmp_counterpart(protocol == 58, t) {
                Some(other) => (Some((t as u16, other as u16)), true),
                // One-way messages keep their direction.
                None => (Some((t as u16, c as u16)), false),
            }
        }
        _ => (None, true),
    };
    let swap = symmetric
        && match ports {
            Some((sp, dp)) => (d, dp) < (s, sp),
            None => d < s,
        };
    if swap {
        std::mem::swap(&mut s, &mut d);
        ports = ports.map(|(a, b)| (b, a));
    }
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(s);
    h.update(d);
    h.update([protocol, 0]);
    if let Some((a, b)) = ports {
        h.update(a.to_be_bytes());
        h.update(b.to_be_bytes());
    }
    let mut out = *b"1:0000000000000000000000000000";
    base64::engine::general_purpose::STANDARD
        .encode_slice(h.finalize(), &mut out[2..])
        .expect("20 bytes are 28 base64 characters");
    CommunityId(out)
}

/// The Community ID of a flow record (its forward direction: a biflow's reverse has the same).
pub fn of_record(seed: u16, r: &FlowRecord) -> CommunityId {
    let ports = if matches!(r.protocol, 1 | 58) {
        (r.icmp_type_code >> 8, r.icmp_type_code & 0xff)
    } else {
        (r.src_port, r.dst_port)
    };
    community_id_v1(seed, r.protocol, r.src_addr, r.dst_addr, ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values computed by the spec authors' Python implementation (`communityid`
    /// 1.5.0 from PyPI), not by this code.
    #[test]
    fn the_reference_implementation_agrees() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        /// Seed, protocol, source, destination, ports (or ICMP type and code), expected ID.
        type Case = (
            u16,
            u8,
            &'static str,
            &'static str,
            (u16, u16),
            &'static str,
        );
        let cases: [Case; 12] = [
            (
                0,
                6,
                "128.232.110.120",
                "66.35.250.204",
                (34855, 80),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                0,
                6,
                "66.35.250.204",
                "128.232.110.120",
                (80, 34855),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                0,
                17,
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                (5353, 53),
                "1:jgAEJbScjyLOXirx1d5CQFx/7tU=",
            ),
            (
                0,
                132,
                "192.168.170.8",
                "192.168.170.56",
                (7, 80),
                "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=",
            ),
            (
                1,
                17,
                "192.168.1.52",
                "8.8.8.8",
                (54585, 53),
                "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
            ),
            (
                0,
                6,
                "10.0.0.1",
                "10.0.0.1",
                (443, 1024),
                "1:cKm4zoS7/lctULI9n6XqLSsKsS8=",
            ),
            (
                0,
                47,
                "10.0.0.1",
                "10.0.0.2",
                (0, 0),
                "1:+KlEHDT0vJgzs/eNmzHq0aSpRYw=",
            ),
            (
                0,
                1,
                "192.168.0.89",
                "192.168.0.1",
                (8, 0),
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                0,
                1,
                "192.168.0.1",
                "192.168.0.89",
                (0, 0),
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                0,
                1,
                "192.168.0.1",
                "192.168.0.89",
                (3, 1),
                "1:o3zT92uTgnRWv/YrDVeXcWumpC4=",
            ),
            (
                0,
                58,
                "fe80::1",
                "ff02::1:ff00:2",
                (135, 0),
                "1:6GkV4Q23CW9hmt4IlBap+Dis6uk=",
            ),
            (
                0,
                58,
                "ff02::1:ff00:2",
                "fe80::1",
                (136, 0),
                "1:6GkV4Q23CW9hmt4IlBap+Dis6uk=",
            ),
        ];
        for (seed, proto, s, d, ports, want) in cases {
            assert_eq!(
                community_id_v1(seed, proto, ip(s), ip(d), ports).as_str(),
                want,
                "{proto} {s} {d} {ports:?} seed {seed}"
            );
        }
    }
}
