//! TLS handshakes (RFC 8446, RFC 5246): the ClientHello's server name, ALPN list, highest
//! offered version and JA4 fingerprint; the ServerHello's selected version and cipher suite.
//!
//! JA4 (FoxIO, BSD-3; `technical_details/JA4.md`) is computed here from the spec: `t` or `q`,
//! the highest version (supported_versions, else the hello's own), `d`/`i` for SNI present or
//! not, counts of cipher suites and extensions (GREASE left out, at most 99), the first and last
//! character of the first ALPN value, then the first 12 hex digits of the SHA-256 of the sorted
//! cipher list, and of the sorted extension list (SNI and ALPN left out) followed by `_` and the
//! signature algorithms in their order. Only the TLS client method: the other JA4+ methods are
//! under another licence.
//!
//! Bounds: a handshake message is read only when whole within [`MAX_HELLO`] bytes of records
//! (a ClientHello with post-quantum key shares is about 1.8 KB; 16 KiB is TLS's largest
//! record); lists beyond [`MAX_LIST`] entries are cut for the hashes (the counts say 99 long
//! before that).

use super::{is_grease, BoundedText, Reader};
use sha2::{Digest, Sha256};

/// Most bytes of TLS records gathered to find one handshake message.
pub const MAX_HELLO: usize = 16 * 1024;
/// Most cipher suites, extensions or signature algorithms taken into the JA4 hashes.
pub const MAX_LIST: usize = 256;

pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub const HANDSHAKE_SERVER_HELLO: u8 = 2;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// The hello's own version field (0x0303 in TLS 1.3 hellos).
    pub legacy_version: u16,
    /// The highest version offered: supported_versions' highest (GREASE left out), else the
    /// hello's own.
    pub version: u16,
    /// The server name (SNI host_name), when the extension is there.
    pub sni: Option<BoundedText<255>>,
    /// The ALPN protocols offered, comma-separated (tshark's `extensions_alpn_str`).
    pub alpn: BoundedText<128>,
    pub ja4: Ja4,
}

/// A JA4 fingerprint: 36 ASCII characters, e.g. `t13d1516h2_8daaf6152771_e5627efa2ab1`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ja4(pub [u8; 36]);

impl Default for Ja4 {
    fn default() -> Self {
        Ja4([b'0'; 36])
    }
}

impl Ja4 {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    /// The version the server selected (supported_versions, else the hello's own).
    pub version: u16,
    pub cipher: u16,
}

/// What a stream's first bytes hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake<'a> {
    /// A whole handshake message: its type and body.
    Message(u8, &'a [u8]),
    /// TLS records whose first handshake message is not whole yet: `need` bytes of the stream
    /// would hold it (more than [`MAX_HELLO`]: it never will be read).
    Incomplete { need: usize },
    /// Not a TLS handshake.
    NotTls,
}

/// The first handshake message in a stream that starts with TLS records. Its fragments are
/// copied into `scratch` when the message spans records; a message within one record is
/// returned in place.
pub fn first_handshake<'a>(stream: &'a [u8], scratch: &'a mut [u8]) -> Handshake<'a> {
    // A handshake record: type 22, version 3.x, a length no longer than TLS allows.
    let looks_tls = |r: &[u8]| {
        r.len() >= 5
            && r[0] == 22
            && r[1] == 3
            && r[2] <= 4
            && u16::from_be_bytes([r[3], r[4]]) <= 16384 + 2048
    };
    if !looks_tls(stream) {
        return Handshake::NotTls;
    }
    let first_len = u16::from_be_bytes([stream[3], stream[4]]) as usize;
    let frag = &stream[5..stream.len().min(5 + first_len)];
    if frag.len() >= 4 {
        let need = 4 + u32::from_be_bytes([0, frag[1], frag[2], frag[3]]) as usize;
        if frag.len() >= need {
            return Handshake::Message(frag[0], &frag[4..need]);
        }
    }
    // The message spans records: gather the fragments.
    let mut have = 0;
    let mut at = 0;
    let mut need = usize::MAX;
    while at < stream.len() {
        let rec = &stream[at..];
        if !looks_tls(rec) {
            return if at == 0 {
                Handshake::NotTls
            } else {
                Handshake::Incomplete { need: at + 5 }
            };
        }
        let len = u16::from_be_bytes([rec[3], rec[4]]) as usize;
        let frag = &rec[5..rec.len().min(5 + len)];
        let n = frag.len().min(scratch.len() - have);
        scratch[have..have + n].copy_from_slice(&frag[..n]);
        have += n;
        if have >= 4 {
            need = 4 + u32::from_be_bytes([0, scratch[1], scratch[2], scratch[3]]) as usize;
            if have >= need {
                let t = scratch[0];
                return Handshake::Message(t, &scratch[4..need]);
            }
        }
        if frag.len() < len || have == scratch.len() {
            break;
        }
        at += 5 + len;
    }
    Handshake::Incomplete {
        need: if need == usize::MAX {
            stream.len() + 1
        } else {
            need
        },
    }
}

/// Parses a ClientHello's body (after the 4-byte handshake header). `quic`: the hello came in
/// a QUIC Initial (JA4's first character `q`).
pub fn client_hello(body: &[u8], quic: bool) -> Option<ClientHello> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16()?;
    r.take(32)?; // random
    r.vec(1)?; // legacy_session_id
    let mut suites = r.vec(2)?;
    r.vec(1)?; // legacy_compression_methods
    let mut ciphers = List::default();
    while let Some(c) = suites.u16() {
        ciphers.push(c);
    }
    let mut exts = List::default();
    let mut sig_algs = List::default();
    let mut hello = ClientHello {
        legacy_version,
        version: legacy_version,
        ..Default::default()
    };
    let mut first_alpn: Option<&[u8]> = None;
    let mut highest: Option<u16> = None;
    // A hello without extensions (SSL 3.0, old TLS) ends here.
    if let Some(mut list) = r.vec(2) {
        while list.remaining() > 0 {
            let ty = list.u16()?;
            let mut data = list.vec(2)?;
            exts.push(ty);
            match ty {
                EXT_SERVER_NAME => {
                    let mut names = data.vec(2).unwrap_or(Reader::new(&[]));
                    let mut sni = BoundedText::default();
                    while names.remaining() > 0 {
                        let kind = names.u8()?;
                        let name = names.vec(2)?;
                        if kind == 0 {
                            sni.push(name.rest());
                            break;
                        }
                    }
                    hello.sni = Some(sni);
                }
                EXT_ALPN => {
                    let mut protos = data.vec(2).unwrap_or(Reader::new(&[]));
                    while protos.remaining() > 0 {
                        let p = protos.vec(1)?.rest();
                        if first_alpn.is_none() {
                            first_alpn = Some(p);
                        } else {
                            hello.alpn.push(b",");
                        }
                        hello.alpn.push(p);
                    }
                }
                EXT_SUPPORTED_VERSIONS => {
                    let mut versions = data.vec(1).unwrap_or(Reader::new(&[]));
                    while let Some(v) = versions.u16() {
                        if !is_grease(v) {
                            highest = Some(highest.map_or(v, |h| h.max(v)));
                        }
                    }
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    let mut algs = data.vec(2).unwrap_or(Reader::new(&[]));
                    while let Some(a) = algs.u16() {
                        sig_algs.push(a);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(v) = highest {
        hello.version = v;
    }
    hello.ja4 = ja4(
        quic,
        hello.version,
        hello.sni.is_some(),
        &ciphers,
        &exts,
        &sig_algs,
        first_alpn,
    );
    Some(hello)
}

/// Parses a ServerHello's body.
pub fn server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Reader::new(body);
    let legacy = r.u16()?;
    r.take(32)?;
    r.vec(1)?;
    let cipher = r.u16()?;
    r.u8()?; // compression
    let mut version = legacy;
    if let Some(mut list) = r.vec(2) {
        while list.remaining() > 0 {
            let ty = list.u16()?;
            let mut data = list.vec(2)?;
            if ty == EXT_SUPPORTED_VERSIONS {
                version = data.u16()?;
            }
        }
    }
    Some(ServerHello { version, cipher })
}

/// Up to [`MAX_LIST`] values with GREASE left out, and how many there were in all.
struct List {
    v: [u16; MAX_LIST],
    n: usize,
    count: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            v: [0; MAX_LIST],
            n: 0,
            count: 0,
        }
    }
}

impl List {
    fn push(&mut self, x: u16) {
        if is_grease(x) {
            return;
        }
        self.count += 1;
        if self.n < MAX_LIST {
            self.v[self.n] = x;
            self.n += 1;
        }
    }
    fn values(&self) -> &[u16] {
        &self.v[..self.n]
    }
}

fn hex4(x: u16) -> [u8; 4] {
    let h = b"0123456789abcdef";
    [
        h[(x >> 12) as usize & 15],
        h[(x >> 8) as usize & 15],
        h[(x >> 4) as usize & 15],
        h[x as usize & 15],
    ]
}

/// Feeds `values` to `hasher` as 4-digit lower-case hex, comma-separated.
fn hash_list(hasher: &mut Sha256, values: &[u16]) {
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            hasher.update(b",");
        }
        hasher.update(hex4(v));
    }
}

/// The first 12 hex digits of a SHA-256 digest.
fn hex12(d: &[u8]) -> [u8; 12] {
    let h = b"0123456789abcdef";
    let mut out = [0u8; 12];
    for i in 0..6 {
        out[2 * i] = h[(d[i] >> 4) as usize];
        out[2 * i + 1] = h[(d[i] & 15) as usize];
    }
    out
}

/// One end character of the first ALPN value: itself when printable ASCII, `9` for a byte
/// of 0x80 or more; `None` for a control byte (the value is then `99`).
fn alpn_char(b: u8) -> Option<u8> {
    match b {
        0x20..=0x7e => Some(b),
        0x80..=0xff => Some(b'9'),
        _ => None,
    }
}

fn ja4(
    quic: bool,
    version: u16,
    sni: bool,
    ciphers: &List,
    exts: &List,
    sig_algs: &List,
    first_alpn: Option<&[u8]>,
) -> Ja4 {
    let mut out = [0u8; 36];
    out[0] = if quic { b'q' } else { b't' };
    let v: &[u8; 2] = match version {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
        0x0002 => b"s2",
        0xfeff => b"d1",
        0xfefd => b"d2",
        0xfefc => b"d3",
        _ => b"00",
    };
    out[1..3].copy_from_slice(v);
    out[3] = if sni { b'd' } else { b'i' };
    let two = |n: usize| [b'0' + (n.min(99) / 10) as u8, b'0' + (n.min(99) % 10) as u8];
    out[4..6].copy_from_slice(&two(ciphers.count));
    out[6..8].copy_from_slice(&two(exts.count));
    let alpn = match first_alpn {
        Some(p) if !p.is_empty() => match (alpn_char(p[0]), alpn_char(p[p.len() - 1])) {
            (Some(a), Some(b)) => [a, b],
            _ => *b"99",
        },
        _ => *b"00",
    };
    out[8..10].copy_from_slice(&alpn);
    out[10] = b'_';
    let mut sorted = [0u16; MAX_LIST];
    let c = ciphers.values();
    if c.is_empty() {
        out[11..23].copy_from_slice(b"000000000000");
    } else {
        let s = &mut sorted[..c.len()];
        s.copy_from_slice(c);
        s.sort_unstable();
        let mut h = Sha256::new();
        hash_list(&mut h, s);
        out[11..23].copy_from_slice(&hex12(&h.finalize()));
    }
    out[23] = b'_';
    let mut n = 0;
    for &e in exts.values() {
        if e != EXT_SERVER_NAME && e != EXT_ALPN {
            sorted[n] = e;
            n += 1;
        }
    }
    if n == 0 {
        out[24..36].copy_from_slice(b"000000000000");
    } else {
        let s = &mut sorted[..n];
        s.sort_unstable();
        let mut h = Sha256::new();
        hash_list(&mut h, s);
        if !sig_algs.values().is_empty() {
            h.update(b"_");
            hash_list(&mut h, sig_algs.values());
        }
        out[24..36].copy_from_slice(&hex12(&h.finalize()));
    }
    Ja4(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello with the cipher suites, extensions (in this order) and signature
    /// algorithms of FoxIO's example in `technical_details/JA4.md`, plus GREASE values that
    /// must not count. Returns the handshake message (header included).
    pub(crate) fn foxio_example_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let ciphers = [
            0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let exts: [u16; 17] = [
            0x2a2a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
            0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let sig = [
            0x0403u16, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[7; 32]);
        b.push(0);
        b.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            b.extend_from_slice(&(c as u16).to_be_bytes());
        }
        b.extend_from_slice(&[1, 0]);
        let mut e = vec![];
        for ty in exts {
            let data: Vec<u8> = match ty {
                0x0000 => {
                    let mut d = ((sni.len() + 3) as u16).to_be_bytes().to_vec();
                    d.push(0);
                    d.extend_from_slice(&(sni.len() as u16).to_be_bytes());
                    d.extend_from_slice(sni.as_bytes());
                    d
                }
                0x0010 => {
                    let mut l = vec![];
                    for p in alpn {
                        l.push(p.len() as u8);
                        l.extend_from_slice(p.as_bytes());
                    }
                    let mut d = (l.len() as u16).to_be_bytes().to_vec();
                    d.extend(l);
                    d
                }
                0x002b => vec![6, 0x5a, 0x5a, 0x03, 0x04, 0x03, 0x03],
                0x000d => {
                    let mut d = ((sig.len() * 2) as u16).to_be_bytes().to_vec();
                    for s in sig {
                        d.extend_from_slice(&s.to_be_bytes());
                    }
                    d
                }
                _ => vec![],
            };
            e.extend_from_slice(&ty.to_be_bytes());
            e.extend_from_slice(&(data.len() as u16).to_be_bytes());
            e.extend(data);
        }
        b.extend_from_slice(&(e.len() as u16).to_be_bytes());
        b.extend(e);
        let mut m = vec![1];
        m.extend_from_slice(&(b.len() as u32).to_be_bytes()[1..]);
        m.extend(b);
        m
    }

    fn records(msg: &[u8], max: usize) -> Vec<u8> {
        let mut out = vec![];
        for chunk in msg.chunks(max) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn foxio_published_vector() {
        let m = foxio_example_hello("example.com", &["h2", "http/1.1"]);
        let h = client_hello(&m[4..], false).unwrap();
        assert_eq!(h.ja4.as_str(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(h.sni.unwrap().as_str(), "example.com");
        assert_eq!(h.alpn.as_str(), "h2,http/1.1");
        assert_eq!((h.legacy_version, h.version), (0x0303, 0x0304));
        let q = client_hello(&m[4..], true).unwrap();
        assert!(q.ja4.as_str().starts_with("q13d1516h2_"));
    }

    #[test]
    fn a_hello_over_several_records_and_a_cut_one() {
        let m = foxio_example_hello("example.com", &["h2"]);
        let mut scratch = vec![0u8; MAX_HELLO];
        let one = records(&m, 16384);
        assert_eq!(
            first_handshake(&one, &mut scratch),
            Handshake::Message(1, &m[4..])
        );
        let many = records(&m, 40);
        match first_handshake(&many, &mut scratch) {
            Handshake::Message(1, body) => {
                assert_eq!(
                    client_hello(body, false).unwrap().ja4.as_str(),
                    "t13d1516h2_8daaf6152771_e5627efa2ab1"
                )
            }
            other => panic!("{other:?}"),
        }
        let cut = &many[..many.len() - 10];
        assert!(matches!(
            first_handshake(cut, &mut scratch),
            Handshake::Incomplete { .. }
        ));
        assert_eq!(
            first_handshake(b"GET / HTTP/1.1\r\n", &mut scratch),
            Handshake::NotTls
        );
    }

    #[test]
    fn alpn_ends_and_absent_parts() {
        let m = foxio_example_hello("a", &["http/1.1"]);
        assert_eq!(
            &client_hello(&m[4..], false).unwrap().ja4.as_str()[8..10],
            "h1"
        );
        let m = foxio_example_hello("a", &["\u{7f}x"]);
        assert_eq!(
            &client_hello(&m[4..], false).unwrap().ja4.as_str()[8..10],
            "99"
        );
        let m = foxio_example_hello("a", &[]);
        assert_eq!(
            &client_hello(&m[4..], false).unwrap().ja4.as_str()[8..10],
            "00"
        );
    }

    #[test]
    fn server_hello_reads_the_selected_version() {
        let mut b = vec![0x03, 0x03];
        b.extend_from_slice(&[1; 32]);
        b.push(0);
        b.extend_from_slice(&[0x13, 0x01, 0]);
        b.extend_from_slice(&[0, 6, 0x00, 0x2b, 0, 2, 0x03, 0x04]);
        assert_eq!(
            server_hello(&b),
            Some(ServerHello {
                version: 0x0304,
                cipher: 0x1301
            })
        );
    }

    #[test]
    fn garbage_never_panics() {
        let m = foxio_example_hello("example.com", &["h2"]);
        let mut scratch = vec![0u8; MAX_HELLO];
        let mut state = 11u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut b = m.clone();
            // Flip a few bytes, cut somewhere.
            for k in 0..4 {
                let at = (state >> (k * 13)) as usize % b.len();
                b[at] ^= (state >> (k * 7 + 3)) as u8;
            }
            b.truncate(4 + (state >> 40) as usize % (b.len() - 4));
            let _ = client_hello(&b[4..], false);
            let _ = server_hello(&b[4..]);
            let rec = records(&b, 1 + (state >> 20) as usize % 300);
            let _ = first_handshake(&rec, &mut scratch);
        }
    }
}
