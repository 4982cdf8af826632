//! QUIC client Initial packets (RFC 9000 §17.2.2): removing the header protection and
//! decrypting the payload with the Initial keys every observer can derive (RFC 9001 §5.2 for
//! version 1, RFC 9369 §3.3 for version 2), then reading the CRYPTO frames, which carry the
//! ClientHello.
//!
//! The ciphers (HKDF-SHA256, AES-128-GCM, the AES header-protection mask) come from an
//! [`InitialCrypto`] the caller brings, the way rustls takes a `CryptoProvider`: nothing here
//! implements a cipher, and the core stays free of a C library and of the OS's randomness
//! source, which ring pulls in. With the `ring` feature (the probe turns it on)
//! [`default_crypto`] is ring's, the same library rustls uses for the exporter's TLS.
//!
//! Only the client's Initial packets are read: the server's are protected with keys derived
//! from the client's first Destination Connection ID, which the server's packets do not carry.

/// QUIC version 1 (RFC 9000) and version 2 (RFC 9369).
pub const V1: u32 = 0x0000_0001;
pub const V2: u32 = 0x6b33_43cf;

/// RFC 9001 §5.2.
pub const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1.
pub const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// RFC 9000 §14.1: a client's datagrams carrying Initial packets are at least 1200 bytes; a
/// shorter UDP payload is not looked at.
pub const MIN_CLIENT_DATAGRAM: usize = 1200;

/// Largest Initial packet decrypted (a datagram on a 9000-byte jumbo path is cut here).
pub const MAX_PACKET: usize = 4096;

/// A QUIC variable-length integer (RFC 9000 §16) at the start of `b`: its value and length.
pub fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = (first & 0x3f) as u64;
    for &x in &bytes[1..] {
        v = (v << 8) | x as u64;
    }
    Some((v, len))
}

/// The long header of a client Initial packet at the start of `d`.
#[derive(Debug, PartialEq, Eq)]
struct Header<'a> {
    version: u32,
    dcid: &'a [u8],
    /// Offset of the (protected) packet number.
    pn_offset: usize,
    /// Offset just past the packet (the Length field's end): the next coalesced packet.
    end: usize,
}

/// Whether `d` starts like a client Initial of a version we read (long header, version 1 or
/// 2, the Initial type): five bytes, before any key is derived.
#[inline]
pub fn may_be_initial(d: &[u8]) -> bool {
    match d.get(..5) {
        Some(h) => {
            let version = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
            let initial = match version {
                V1 => 0,
                V2 => 1,
                _ => return false,
            };
            h[0] & 0xc0 == 0xc0 && (h[0] >> 4) & 3 == initial
        }
        None => false,
    }
}

fn header(d: &[u8]) -> Option<Header<'_>> {
    let first = *d.first()?;
    // Long header, fixed bit.
    if first & 0xc0 != 0xc0 {
        return None;
    }
    let version = u32::from_be_bytes(d.get(1..5)?.try_into().ok()?);
    // The Initial type: 0b00 in version 1, 0b01 in version 2 (RFC 9369 §3.2).
    let initial = match version {
        V1 => 0,
        V2 => 1,
        _ => return None,
    };
    if (first >> 4) & 3 != initial {
        return None;
    }
    let mut at = 5;
    let dcid_len = *d.get(at)? as usize;
    if dcid_len > 20 {
        return None;
    }
    let dcid = d.get(at + 1..at + 1 + dcid_len)?;
    at += 1 + dcid_len;
    let scid_len = *d.get(at)? as usize;
    if scid_len > 20 {
        return None;
    }
    at += 1 + scid_len;
    let (token_len, n) = varint(d.get(at..)?)?;
    at = at
        .checked_add(n)?
        .checked_add(usize::try_from(token_len).ok()?)?;
    let (length, n) = varint(d.get(at..)?)?;
    at += n;
    let end = at.checked_add(usize::try_from(length).ok()?)?;
    // The packet number (1-4 bytes) and the 16-byte tag at least; the sample needs 20.
    if end > d.len() || length < 20 {
        return None;
    }
    Some(Header {
        version,
        dcid,
        pn_offset: at,
        end,
    })
}

/// The primitives a client Initial needs (RFC 9001 §5), from whatever crypto library the
/// caller uses. Each returns `None` on a length it cannot take; none keeps state between calls.
pub trait InitialCrypto: Send + Sync {
    /// HKDF-Extract (RFC 5869 §2.2) of `ikm` with `salt`, then HKDF-Expand of the result with
    /// the concatenation of `info` into `out`; SHA-256 throughout.
    fn hkdf_sha256(&self, salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Option<()>;
    /// HKDF-Expand (RFC 5869 §2.3) with SHA-256 of the pseudorandom key `prk`, once for each
    /// (info, out) pair: `infos[i]` concatenated into `outs[i]`.
    fn hkdf_expand_sha256(
        &self,
        prk: &[u8],
        infos: &[&[&[u8]]],
        outs: &mut [&mut [u8]],
    ) -> Option<()>;
    /// The header-protection mask (RFC 9001 §5.4.3): the first five bytes of AES-128 of the
    /// 16-byte `sample` under `hp`.
    fn header_mask(&self, hp: &[u8; 16], sample: &[u8]) -> Option<[u8; 5]>;
    /// Opens AES-128-GCM in place: `in_out` is ciphertext then the 16-byte tag; the
    /// plaintext's length when the tag holds.
    fn aes128_gcm_open(
        &self,
        key: &[u8; 16],
        nonce: [u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Option<usize>;
    /// Seals `in_out` with AES-128-GCM and appends the tag (to build test traffic).
    fn aes128_gcm_seal(&self, key: &[u8; 16], nonce: [u8; 12], aad: &[u8], in_out: &mut Vec<u8>);
}

/// The built-in [`InitialCrypto`]: ring's with the `ring` feature, none without it (then a
/// caller that wants QUIC's fields passes its own to [`super::Inspector::with_crypto`]).
pub fn default_crypto() -> Option<&'static dyn InitialCrypto> {
    #[cfg(feature = "ring")]
    {
        Some(ring_crypto::provider())
    }
    #[cfg(not(feature = "ring"))]
    {
        None
    }
}

/// HKDF-Expand-Label's `info` (RFC 8446 §7.1) with an empty context, as its five parts.
fn label_info<'a>(len: &'a [u8; 2], label_len: &'a [u8; 1], label: &'a [u8]) -> [&'a [u8]; 5] {
    [len, label_len, b"tls13 ", label, &[0]]
}

/// The client's Initial key, IV and header-protection key for `dcid`.
fn client_keys(
    crypto: &dyn InitialCrypto,
    version: u32,
    dcid: &[u8],
) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
    let (key_label, iv_label, hp_label): (&[u8], &[u8], &[u8]) = match version {
        V1 => (b"quic key", b"quic iv", b"quic hp"),
        _ => (b"quicv2 key", b"quicv2 iv", b"quicv2 hp"),
    };
    let salt: &[u8] = if version == V1 { &SALT_V1 } else { &SALT_V2 };
    let mut secret = [0u8; 32];
    let (l32, l16, l12) = (
        32u16.to_be_bytes(),
        16u16.to_be_bytes(),
        12u16.to_be_bytes(),
    );
    let client_in = b"client in";
    crypto.hkdf_sha256(
        salt,
        dcid,
        &label_info(&l32, &[6 + client_in.len() as u8], client_in),
        &mut secret,
    )?;
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    let (kl, il, hl) = (
        [6 + key_label.len() as u8],
        [6 + iv_label.len() as u8],
        [6 + hp_label.len() as u8],
    );
    crypto.hkdf_expand_sha256(
        &secret,
        &[
            &label_info(&l16, &kl, key_label),
            &label_info(&l12, &il, iv_label),
            &label_info(&l16, &hl, hp_label),
        ],
        &mut [&mut key, &mut iv, &mut hp],
    )?;
    Some((key, iv, hp))
}

/// One decrypted client Initial: its frames are in the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// Where the plaintext frames are in the buffer.
    pub frames: std::ops::Range<usize>,
    /// Bytes of the datagram this packet took (the next coalesced packet starts there).
    pub packet_len: usize,
}

/// Decrypts the client Initial packet at the start of `d` into `buf` (at least
/// [`MAX_PACKET`] bytes). `None`: not a client Initial of a version we know, or it does not
/// decrypt with the client's keys (a server's Initial, or not QUIC at all).
pub fn open_initial(crypto: &dyn InitialCrypto, d: &[u8], buf: &mut [u8]) -> Option<Opened> {
    let h = header(d)?;
    if h.end > MAX_PACKET || buf.len() < h.end {
        return None;
    }
    let (key, iv, hp) = client_keys(crypto, h.version, h.dcid)?;
    let sample = d.get(h.pn_offset + 4..h.pn_offset + 20)?;
    let mask = crypto.header_mask(&hp, sample)?;
    let pkt = &mut buf[..h.end];
    pkt.copy_from_slice(&d[..h.end]);
    pkt[0] ^= mask[0] & 0x0f;
    let pn_len = (pkt[0] & 3) as usize + 1;
    let mut pn = 0u64;
    for i in 0..pn_len {
        pkt[h.pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | pkt[h.pn_offset + i] as u64;
    }
    let mut nonce = iv;
    for (i, b) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let body_at = h.pn_offset + pn_len;
    let (head, body) = pkt.split_at_mut(body_at);
    let plain = crypto.aes128_gcm_open(&key, nonce, head, body)?;
    let frames = body_at..body_at + plain;
    Some(Opened {
        frames,
        packet_len: h.end,
    })
}

/// How many zero bytes `b` starts with, 16 at a time (a client's first Initial is mostly
/// PADDING, 900 bytes and more).
fn zeros(b: &[u8]) -> usize {
    let mut n = 0;
    for chunk in b.chunks_exact(16) {
        if u128::from_ne_bytes(chunk.try_into().expect("16 bytes")) != 0 {
            break;
        }
        n += 16;
    }
    n + b[n..].iter().position(|&x| x != 0).unwrap_or(b.len() - n)
}

/// Calls `f(offset, data)` for each CRYPTO frame among an Initial packet's frames; stops at
/// the first frame an Initial may not carry, or a cut one.
pub fn crypto_frames(mut b: &[u8], mut f: impl FnMut(u64, &[u8])) {
    let skip = |b: &[u8], n: usize| -> Option<usize> {
        let mut at = 0;
        for _ in 0..n {
            at += varint(b.get(at..)?)?.1;
        }
        Some(at)
    };
    while let Some(&ty) = b.first() {
        if ty == 0 {
            // PADDING fills most of a client's first Initial: skip the run at once.
            b = &b[zeros(b)..];
            continue;
        }
        b = &b[1..];
        let used = match ty {
            0x01 => Some(0), // PING
            0x02 | 0x03 => (|| {
                // ACK: largest, delay, range count, first range, ranges, ECN counts.
                let mut at = skip(b, 2)?;
                let (count, n) = varint(b.get(at..)?)?;
                at += n;
                at += skip(b.get(at..)?, 1)?;
                at += skip(b.get(at..)?, 2 * usize::try_from(count.min(64)).ok()?)?;
                if ty == 0x03 {
                    at += skip(b.get(at..)?, 3)?;
                }
                Some(at)
            })(),
            0x06 => (|| {
                let (offset, n1) = varint(b)?;
                let (len, n2) = varint(b.get(n1..)?)?;
                let start = n1 + n2;
                let data = b.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
                f(offset, data);
                Some(start + data.len())
            })(),
            _ => None, // CONNECTION_CLOSE and anything else end the walk.
        };
        match used {
            Some(n) => b = &b[n..],
            None => return,
        }
    }
}

/// Builds a client Initial packet as a client protects one (RFC 9001 §5): `payload` is its
/// frames, `pn` a 4-byte packet number. For crafting traffic in tests and benchmarks; tshark,
/// which decrypts Initials with its own code, is the check that it is right. Uses
/// [`default_crypto`]: it needs the `ring` feature.
pub fn protect_initial(version: u32, dcid: &[u8], pn: u32, payload: &[u8]) -> Vec<u8> {
    let crypto = default_crypto().expect("protect_initial needs probe-core's `ring` feature");
    let (key, iv, hp) = client_keys(crypto, version, dcid).expect("valid key lengths");
    let first = if version == V1 { 0xc3 } else { 0xd3 }; // 4-byte packet number
    let mut p = vec![first];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(0); // no source connection id
    p.push(0); // no token
    let length = 4 + payload.len() + 16;
    p.extend_from_slice(&(0x4000u16 | length as u16).to_be_bytes());
    let pn_at = p.len();
    p.extend_from_slice(&pn.to_be_bytes());
    let mut nonce = iv;
    for (i, b) in (pn as u64).to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let mut body = payload.to_vec();
    crypto.aes128_gcm_seal(&key, nonce, &p, &mut body);
    p.extend_from_slice(&body);
    let mask = crypto
        .header_mask(&hp, &p[pn_at + 4..pn_at + 20])
        .expect("valid key lengths");
    p[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        p[pn_at + i] ^= mask[1 + i];
    }
    p
}

/// ring's implementation of [`InitialCrypto`] (the `ring` feature).
#[cfg(feature = "ring")]
mod ring_crypto {
    use super::{InitialCrypto, SALT_V1, SALT_V2};
    use ring::{aead, hkdf, hmac};

    struct Ring {
        /// The two versions' salts as HMAC keys, made once rather than per packet.
        salts: [hmac::Key; 2],
    }

    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    pub(super) fn provider() -> &'static dyn InitialCrypto {
        static RING: std::sync::OnceLock<Ring> = std::sync::OnceLock::new();
        RING.get_or_init(|| Ring {
            salts: [
                hmac::Key::new(hmac::HMAC_SHA256, &SALT_V1),
                hmac::Key::new(hmac::HMAC_SHA256, &SALT_V2),
            ],
        })
    }

    fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8]) -> Option<()> {
        prk.expand(info, Len(out.len())).ok()?.fill(out).ok()
    }

    impl InitialCrypto for Ring {
        fn hkdf_sha256(
            &self,
            salt: &[u8],
            ikm: &[u8],
            info: &[&[u8]],
            out: &mut [u8],
        ) -> Option<()> {
            let made;
            let key = match salt {
                s if s == SALT_V1 => &self.salts[0],
                s if s == SALT_V2 => &self.salts[1],
                s => {
                    made = hmac::Key::new(hmac::HMAC_SHA256, s);
                    &made
                }
            };
            let prk = hmac::sign(key, ikm);
            expand(
                &hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk.as_ref()),
                info,
                out,
            )
        }

        fn hkdf_expand_sha256(
            &self,
            prk: &[u8],
            infos: &[&[&[u8]]],
            outs: &mut [&mut [u8]],
        ) -> Option<()> {
            let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk);
            infos
                .iter()
                .zip(outs.iter_mut())
                .try_for_each(|(info, out)| expand(&prk, info, out))
        }

        fn header_mask(&self, hp: &[u8; 16], sample: &[u8]) -> Option<[u8; 5]> {
            let hp = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, hp).ok()?;
            hp.new_mask(sample).ok()
        }

        fn aes128_gcm_open(
            &self,
            key: &[u8; 16],
            nonce: [u8; 12],
            aad: &[u8],
            in_out: &mut [u8],
        ) -> Option<usize> {
            let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, key).ok()?);
            let plain = key
                .open_in_place(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(aad),
                    in_out,
                )
                .ok()?;
            Some(plain.len())
        }

        fn aes128_gcm_seal(
            &self,
            key: &[u8; 16],
            nonce: [u8; 12],
            aad: &[u8],
            in_out: &mut Vec<u8>,
        ) {
            let key = aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::AES_128_GCM, key).expect("a 16-byte key"),
            );
            key.seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                in_out,
            )
            .expect("a message shorter than GCM's limit");
        }
    }
}

#[cfg(all(test, feature = "ring"))]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn zeros_counts_the_leading_run() {
        for (len, at) in [
            (0, 0),
            (5, 5),
            (16, 16),
            (40, 17),
            (40, 33),
            (40, 40),
            (1000, 999),
        ] {
            let mut b = vec![0u8; len];
            if at < len {
                b[at] = 1;
            }
            assert_eq!(zeros(&b), at.min(len), "{len} {at}");
        }
    }

    #[test]
    fn initial_keys_are_rfc_9001_appendix_a1s() {
        let dcid = unhex("8394c8f03e515708");
        let (key, iv, hp) = client_keys(default_crypto().unwrap(), V1, &dcid).unwrap();
        assert_eq!(key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn initial_keys_are_rfc_9369_appendix_a1s() {
        let dcid = unhex("8394c8f03e515708");
        let (key, iv, hp) = client_keys(default_crypto().unwrap(), V2, &dcid).unwrap();
        assert_eq!(key.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(iv.to_vec(), unhex("91f73e2351d8fa91660e909f"));
        assert_eq!(hp.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    /// The CRYPTO frame of RFC 9001 Appendix A.2 and RFC 9369 Appendix A.2: a 241-byte
    /// ClientHello for example.com.
    const RFC_CRYPTO_FRAME: &str = "
        060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
        04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
        616d706c652e636f6dff01000100000a00080006001d00170018001000070005
        04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
        baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
        0d0010000e0403050306030203080408050806002d00020101001c0002400100
        3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
        75300901100f088394c8f03e51570806048000ffff";

    /// The client Initials of both RFCs, protected with packet number 2 as their appendices
    /// do, begin with exactly the bytes the RFCs publish (header protection, packet type,
    /// keys, IV and the first 42 bytes of AES-GCM), and open back to their ClientHello.
    #[test]
    fn rfc_9001_and_9369_client_initials() {
        let frame = unhex(RFC_CRYPTO_FRAME);
        let mut payload = frame.clone();
        payload.resize(1162, 0);
        for (version, prefix) in [
            (
                V1,
                "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11
                 d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399",
            ),
            (
                V2,
                "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485
                 dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04",
            ),
        ] {
            let pkt = protect_initial(version, &unhex("8394c8f03e515708"), 2, &payload);
            assert_eq!(pkt.len(), 1200);
            assert_eq!(&pkt[..64], &unhex(prefix)[..], "version {version:#x}");
            let mut buf = vec![0u8; MAX_PACKET];
            let o = open_initial(default_crypto().unwrap(), &pkt, &mut buf).expect("decrypts");
            assert_eq!(o.packet_len, 1200);
            let mut got = vec![];
            crypto_frames(&buf[o.frames], |off, d| got.push((off, d.to_vec())));
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].0, &got[0].1[..]), (0, &frame[4..]));
            let hello = super::super::tls::client_hello(&got[0].1[4..], true).unwrap();
            assert_eq!(hello.sni.unwrap().as_bytes(), b"example.com");
            assert!(
                hello.ja4.as_str().starts_with("q13d0211an"),
                "{:?}",
                hello.ja4
            );
        }
    }

    #[test]
    fn garbage_never_panics_and_never_decrypts() {
        let mut buf = vec![0u8; MAX_PACKET];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let base = protect_initial(V2, b"abcdefgh", 0, &[6, 0, 4, 1, 0, 0, 0]);
        assert!(open_initial(default_crypto().unwrap(), &base, &mut buf).is_some());
        for _ in 0..20_000 {
            let mut p = base.clone();
            for _ in 0..1 + state % 4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state % p.len() as u64) as usize;
                p[i] ^= (state >> 32) as u8 | 1;
            }
            let cut = (state >> 40) as usize % (p.len() + 1);
            // Any change is caught by the tag (or makes the header unreadable).
            assert!(
                open_initial(default_crypto().unwrap(), &p[..cut.max(1)], &mut buf).is_none()
                    || cut == p.len() && p == base
            );
            crypto_frames(&p, |_, _| {});
        }
    }
}
