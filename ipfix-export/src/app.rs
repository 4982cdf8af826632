//! Application-layer elements (issue #15): what a flow's DNS, TLS/QUIC and HTTP said, and its
//! Community ID, appended to a record as variable-length fields (RFC 7011 §7).
//!
//! A record carries only the groups it has, so the set of layouts in use depends on the
//! traffic: the encoder announces each one the first time a record needs it (see
//! `MessageEncoder`), never the hundreds that could exist.
//!
//! Which elements, and why:
//! - HTTP: IANA's own (httpRequestMethod 459, httpRequestHost 460, httpRequestTarget 461,
//!   httpUserAgent 468, httpStatusCode 457); Wireshark names them.
//! - DNS and the TLS server name: CESNET's elements (PEN 8057), exported by ipfixprobe and
//!   named by ipfixcol2; their meaning is exactly ours (DNSName is the first question's name,
//!   DNSQType/DNSClass its type and class, DNSRCode and DNSAnswers the response's rcode and
//!   answer count, TLSSNI the ClientHello's server_name).
//! - The rest have no element with exactly our meaning, so they are the probe's own under
//!   [`crate::ie::PROBE_PEN`], listed in README ("IPFIX elements"): tlsAlpn, tlsClientVersion,
//!   tlsJa4, tlsServerVersion, tlsCipherSuite, communityId.
//!
//! Strings are sent as they were read (printable ASCII; other bytes escaped by the parsers).
//! A record whose fields would not fit one message has its longest strings cut (at a
//! character boundary) until it does; no field is dropped.

use crate::ie::{f as iana, probe_element as own, FieldSpec};
use crate::record::{AppRecord, FlowRecord, Text};

/// RFC 7011 §7: the field length of a variable-length element in a template.
pub const VARIABLE: u16 = 65535;

/// CESNET's enterprise number (ipfixprobe, ipfixcol2).
pub const CESNET_PEN: u32 = 8057;

const fn cesnet(id: u16, length: u16) -> FieldSpec {
    FieldSpec {
        id,
        length,
        pen: CESNET_PEN,
    }
}

pub const DNS_NAME: FieldSpec = cesnet(2, VARIABLE);
pub const DNS_QTYPE: FieldSpec = cesnet(3, 2);
pub const DNS_CLASS: FieldSpec = cesnet(4, 2);
pub const DNS_RCODE: FieldSpec = cesnet(1, 1);
pub const DNS_ANSWERS: FieldSpec = cesnet(14, 2);
pub const TLS_SNI: FieldSpec = cesnet(808, VARIABLE);
/// The probe's own: the ALPN protocols the client offered, comma-separated.
pub const TLS_ALPN: FieldSpec = own(20, VARIABLE);
/// The probe's own: the highest TLS version the client offered (0x0304 for TLS 1.3).
pub const TLS_CLIENT_VERSION: FieldSpec = own(21, 2);
/// The probe's own: the JA4 fingerprint of the ClientHello (TLS over TCP or QUIC).
pub const TLS_JA4: FieldSpec = own(22, VARIABLE);
/// The probe's own: the version and cipher suite the server selected.
pub const TLS_SERVER_VERSION: FieldSpec = own(23, 2);
pub const TLS_CIPHER_SUITE: FieldSpec = own(24, 2);
pub const HTTP_REQUEST_METHOD: FieldSpec = iana(459, VARIABLE);
pub const HTTP_REQUEST_HOST: FieldSpec = iana(460, VARIABLE);
pub const HTTP_REQUEST_TARGET: FieldSpec = iana(461, VARIABLE);
pub const HTTP_USER_AGENT: FieldSpec = iana(468, VARIABLE);
pub const HTTP_STATUS_CODE: FieldSpec = iana(457, 2);
/// The probe's own: the flow's Community ID (v1, "1:" and base64), as Zeek and Suricata log
/// it.
pub const COMMUNITY_ID: FieldSpec = own(30, VARIABLE);

/// The groups of application fields a record can carry, one bit each; a layout's `app` mask.
pub mod group {
    pub const COMMUNITY_ID: u8 = 1;
    /// The first question: name, type, class.
    pub const DNS_QUESTION: u8 = 2;
    /// A response's rcode and answer count.
    pub const DNS_RESPONSE: u8 = 4;
    /// The ClientHello: server name, ALPN, highest version, JA4.
    pub const TLS_CLIENT: u8 = 8;
    /// The ServerHello: selected version and cipher suite.
    pub const TLS_SERVER: u8 = 16;
    /// The request: method, host, target, User-Agent.
    pub const HTTP_REQUEST: u8 = 32;
    pub const HTTP_RESPONSE: u8 = 64;
    pub const ALL: u8 = 127;
}

/// Each group's elements, in wire order, indexed by bit.
const GROUPS: [&[FieldSpec]; 7] = [
    &[COMMUNITY_ID],
    &[DNS_NAME, DNS_QTYPE, DNS_CLASS],
    &[DNS_RCODE, DNS_ANSWERS],
    &[TLS_SNI, TLS_ALPN, TLS_CLIENT_VERSION, TLS_JA4],
    &[TLS_SERVER_VERSION, TLS_CIPHER_SUITE],
    &[
        HTTP_REQUEST_METHOD,
        HTTP_REQUEST_HOST,
        HTTP_REQUEST_TARGET,
        HTTP_USER_AGENT,
    ],
    &[HTTP_STATUS_CODE],
];

/// The groups a record has something for.
pub fn groups_of(rec: &FlowRecord) -> u8 {
    let mut g = 0;
    if rec.community_id.is_some() {
        g |= group::COMMUNITY_ID;
    }
    let Some(a) = rec.app.as_deref() else {
        return g;
    };
    if a.dns_query_name().is_some() {
        g |= group::DNS_QUESTION;
    }
    if a.dns_rcode.is_some() {
        g |= group::DNS_RESPONSE;
    }
    if a.tls_client_version.is_some() || a.tls_server_name().is_some() || a.tls_ja4().is_some() {
        g |= group::TLS_CLIENT;
    }
    if a.tls_server_version.is_some() || a.tls_cipher_suite.is_some() {
        g |= group::TLS_SERVER;
    }
    if a.http_method().is_some() {
        g |= group::HTTP_REQUEST;
    }
    if a.http_status.is_some() {
        g |= group::HTTP_RESPONSE;
    }
    g
}

/// The elements of the groups in `mask`, in wire order.
pub fn fields(mask: u8) -> impl Iterator<Item = &'static FieldSpec> + Clone {
    GROUPS
        .iter()
        .enumerate()
        .filter(move |(bit, _)| mask & (1 << bit) != 0)
        .flat_map(|(_, g)| g.iter())
}

/// The strings of `mask`'s groups, in wire order (absent ones empty).
fn strings(rec: &FlowRecord, mask: u8) -> ([&str; 9], usize) {
    let mut out = [""; 9];
    let mut n = 0;
    if mask & group::COMMUNITY_ID != 0 {
        out[0] = rec.community_id.as_ref().map_or("", |c| c.as_str());
        n = 1;
    }
    let Some(a) = rec.app.as_deref() else {
        return (out, n);
    };
    const GROUPS: [(u8, &[Text]); 3] = [
        (group::DNS_QUESTION, &[Text::DnsQueryName]),
        (
            group::TLS_CLIENT,
            &[Text::TlsServerName, Text::TlsAlpn, Text::TlsJa4],
        ),
        (
            group::HTTP_REQUEST,
            &[
                Text::HttpMethod,
                Text::HttpHost,
                Text::HttpTarget,
                Text::HttpUserAgent,
            ],
        ),
    ];
    for (bit, texts) in GROUPS {
        if mask & bit != 0 {
            for &t in texts {
                out[n] = a.text(t).unwrap_or("");
                n += 1;
            }
        }
    }
    (out, n)
}

/// Bytes of the fixed-length fields of `mask`'s groups.
fn fixed_len(mask: u8) -> usize {
    (0..GROUP_FIXED.len())
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| GROUP_FIXED[bit])
        .sum()
}

/// Bytes of each group's fixed-length fields, by bit (a test checks them against `GROUPS`).
const GROUP_FIXED: [usize; 7] = [0, 4, 3, 2, 4, 0, 2];

/// Bytes of a variable-length field holding `n` bytes (RFC 7011 §7: one length octet below
/// 255, else 255 and two octets).
fn var_len(n: usize) -> usize {
    n + if n < 255 { 1 } else { 3 }
}

/// The fewest bytes the groups in `mask` take (every string empty).
pub fn min_len(mask: u8) -> usize {
    fixed_len(mask) + fields(mask).filter(|f| f.length == VARIABLE).count()
}

/// The longest each string may be so that the fields take at most `budget` bytes, and the
/// bytes they then take (`None`: they cannot fit even empty). Usually no string is cut: the
/// cap is the longest one.
pub fn fit(rec: &FlowRecord, mask: u8, budget: usize) -> Option<(usize, usize)> {
    let (s, n) = strings(rec, mask);
    let s = &s[..n];
    let fixed = fixed_len(mask);
    let whole = fixed + s.iter().map(|x| var_len(x.len())).sum::<usize>();
    if whole <= budget {
        return Some((usize::MAX, whole));
    }
    let cap = cap_for(rec, mask, budget)?;
    Some((cap, encoded_len(rec, mask, cap)))
}

/// The longest each string may be so that the fields take at most `budget` bytes (`None`:
/// they cannot fit even empty). Usually no string is cut: the cap is the longest one.
pub fn cap_for(rec: &FlowRecord, mask: u8, budget: usize) -> Option<usize> {
    let (s, n) = strings(rec, mask);
    let s = &s[..n];
    let total = |cap: usize| -> usize {
        fixed_len(mask) + s.iter().map(|x| var_len(cut(x, cap).len())).sum::<usize>()
    };
    let longest = s.iter().map(|x| x.len()).max().unwrap_or(0);
    if total(longest) <= budget {
        return Some(longest);
    }
    if total(0) > budget {
        return None;
    }
    // The largest cap that fits, by bisection (total is monotonic in the cap).
    let (mut lo, mut hi) = (0, longest);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if total(mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// Bytes [`encode`] writes for `a` in `mask` with strings cut at `cap`.
pub fn encoded_len(rec: &FlowRecord, mask: u8, cap: usize) -> usize {
    let (s, n) = strings(rec, mask);
    fixed_len(mask)
        + s[..n]
            .iter()
            .map(|x| var_len(cut(x, cap).len()))
            .sum::<usize>()
}

/// `s` cut to at most `cap` bytes at a character boundary.
fn cut(s: &str, cap: usize) -> &str {
    if s.len() <= cap {
        return s;
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes the fields of `mask`'s groups; returns the bytes written ([`encoded_len`]).
pub fn encode(rec: &FlowRecord, mask: u8, cap: usize, out: &mut [u8]) -> usize {
    let none = AppRecord::default();
    let a = rec.app.as_deref().unwrap_or(&none);
    let mut pos = 0;
    let mut put = |b: &[u8]| {
        out[pos..pos + b.len()].copy_from_slice(b);
        pos += b.len();
    };
    let text = |put: &mut dyn FnMut(&[u8]), o: Option<&str>| {
        let s = cut(o.unwrap_or(""), cap).as_bytes();
        if s.len() < 255 {
            put(&[s.len() as u8]);
        } else {
            put(&[255]);
            put(&(s.len() as u16).to_be_bytes());
        }
        put(s);
    };
    let u16_of = |v: Option<u16>| v.unwrap_or(0).to_be_bytes();
    if mask & group::COMMUNITY_ID != 0 {
        text(&mut put, rec.community_id.as_ref().map(|c| c.as_str()));
    }
    if mask & group::DNS_QUESTION != 0 {
        text(&mut put, a.text(Text::DnsQueryName));
        put(&u16_of(a.dns_query_type));
        put(&u16_of(a.dns_query_class));
    }
    if mask & group::DNS_RESPONSE != 0 {
        put(&[a.dns_rcode.unwrap_or(0)]);
        put(&u16_of(a.dns_answers));
    }
    if mask & group::TLS_CLIENT != 0 {
        text(&mut put, a.text(Text::TlsServerName));
        text(&mut put, a.text(Text::TlsAlpn));
        put(&u16_of(a.tls_client_version));
        text(&mut put, a.text(Text::TlsJa4));
    }
    if mask & group::TLS_SERVER != 0 {
        put(&u16_of(a.tls_server_version));
        put(&u16_of(a.tls_cipher_suite));
    }
    if mask & group::HTTP_REQUEST != 0 {
        text(&mut put, a.text(Text::HttpMethod));
        text(&mut put, a.text(Text::HttpHost));
        text(&mut put, a.text(Text::HttpTarget));
        text(&mut put, a.text(Text::HttpUserAgent));
    }
    if mask & group::HTTP_RESPONSE != 0 {
        put(&u16_of(a.http_status));
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> FlowRecord {
        let mut rec = crate::template::tests::sample(false, crate::TimePrecision::Micros);
        rec.community_id = Some(crate::CommunityId(*b"1:LQU9qZlK+B5F3KDmev6m5PMibrg="));
        rec.app = Some(Box::new(full_app()));
        rec
    }

    fn full_app() -> AppRecord {
        let mut a = AppRecord::default();
        a.dns_query_type = Some(1);
        a.dns_query_class = Some(1);
        a.dns_rcode = Some(3);
        a.dns_answers = Some(0);
        a.tls_client_version = Some(0x0304);
        a.tls_server_version = Some(0x0304);
        a.tls_cipher_suite = Some(0x1301);
        a.http_status = Some(200);
        a.set_text(Text::DnsQueryName, "www.example.com");
        a.set_text(Text::TlsServerName, &"x".repeat(300));
        a.set_text(Text::TlsAlpn, "h2,http/1.1");
        a.set_text(Text::TlsJa4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        a.set_text(Text::HttpMethod, "GET");
        a.set_text(Text::HttpHost, "example.com");
        a.set_text(Text::HttpTarget, &"/é".repeat(200));
        a.set_text(Text::HttpUserAgent, "curl/8");
        a
    }

    /// Walks the fields as a collector would: fixed ones by the template's length, variable
    /// ones by their length prefix.
    fn walk(mask: u8, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = 0;
        for f in fields(mask) {
            let n = if f.length == VARIABLE {
                let mut n = bytes[p] as usize;
                p += 1;
                if n == 255 {
                    n = u16::from_be_bytes([bytes[p], bytes[p + 1]]) as usize;
                    p += 2;
                }
                n
            } else {
                f.length as usize
            };
            out.push(bytes[p..p + n].to_vec());
            p += n;
        }
        assert_eq!(p, bytes.len());
        out
    }

    #[test]
    fn every_group_encodes_what_its_template_announces() {
        let a = full();
        assert_eq!(groups_of(&a), group::ALL);
        for mask in 1..=group::ALL {
            let cap = cap_for(&a, mask, 4000).unwrap();
            let mut buf = vec![0u8; 4000];
            let n = encode(&a, mask, cap, &mut buf);
            assert_eq!(n, encoded_len(&a, mask, cap));
            let got = walk(mask, &buf[..n]);
            for (f, v) in fields(mask).zip(&got) {
                if *f == TLS_SNI {
                    assert_eq!(v.len(), 300, "a 300-byte string takes the 3-octet length");
                }
                if *f == HTTP_STATUS_CODE {
                    assert_eq!(v, &200u16.to_be_bytes());
                }
                if *f == DNS_NAME {
                    assert_eq!(v, b"www.example.com");
                }
            }
        }
    }

    #[test]
    fn fixed_lengths_are_the_groups_fields() {
        for (bit, g) in GROUPS.iter().enumerate() {
            let sum: usize = g
                .iter()
                .filter(|f| f.length != VARIABLE)
                .map(|f| f.length as usize)
                .sum();
            assert_eq!(GROUP_FIXED[bit], sum, "group bit {bit}");
        }
        let a = full();
        for mask in 1..=group::ALL {
            let (cap, len) = fit(&a, mask, 4000).unwrap();
            assert_eq!(len, encoded_len(&a, mask, cap));
        }
    }

    #[test]
    fn long_strings_are_cut_to_fit_at_character_boundaries() {
        let a = full();
        for budget in [min_len(group::ALL), 200, 400, 700, 1000] {
            let cap = cap_for(&a, group::ALL, budget).unwrap();
            let n = encoded_len(&a, group::ALL, cap);
            assert!(n <= budget, "{budget}: {n}");
            let mut buf = vec![0u8; budget];
            assert_eq!(encode(&a, group::ALL, cap, &mut buf), n);
            for v in walk(group::ALL, &buf[..n]) {
                assert!(v.len() <= cap.max(2));
            }
            // The target is "/é" repeated: every cut leaves valid UTF-8.
            let values = walk(group::ALL, &buf[..n]);
            let target_at = fields(group::ALL)
                .position(|f| *f == HTTP_REQUEST_TARGET)
                .unwrap();
            assert!(std::str::from_utf8(&values[target_at]).is_ok());
        }
        assert_eq!(cap_for(&a, group::ALL, min_len(group::ALL) - 1), None);
    }
}
