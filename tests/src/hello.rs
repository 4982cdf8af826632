//! Crafted TLS handshake messages (RFC 8446 §4.1.2) for tests: what a client or server sends,
//! built field by field so tshark and ja4plus can read them.

fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn message(kind: u8, body: Vec<u8>) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend(body);
    m
}

/// A TLS 1.3 ClientHello handshake message naming `sni`, offering the `alpn` protocols and
/// carrying a padding extension of `pad` bytes (to make a hello that one packet cannot hold,
/// as post-quantum key shares do). `quic`: with QUIC transport parameters.
pub fn client_hello(sni: &str, alpn: &[&str], pad: usize, quic: bool) -> Vec<u8> {
    let mut exts = Vec::new();
    let mut sn = ((sni.len() + 3) as u16).to_be_bytes().to_vec();
    sn.push(0);
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni.as_bytes());
    ext(&mut exts, 0x0000, &sn);
    let mut list = Vec::new();
    for p in alpn {
        list.push(p.len() as u8);
        list.extend_from_slice(p.as_bytes());
    }
    let mut al = (list.len() as u16).to_be_bytes().to_vec();
    al.extend(list);
    ext(&mut exts, 0x0010, &al);
    ext(&mut exts, 0x002b, &[2, 0x03, 0x04]);
    ext(&mut exts, 0x000d, &[0, 4, 0x04, 0x03, 0x08, 0x04]);
    ext(&mut exts, 0x000a, &[0, 2, 0x00, 0x1d]);
    let mut share = vec![0, 36, 0x00, 0x1d, 0, 32];
    share.extend_from_slice(&[0x42; 32]);
    ext(&mut exts, 0x0033, &share);
    if quic {
        // initial_max_data (4) = 1 MB, as a one-entry transport parameter list.
        ext(&mut exts, 0x0039, &[0x04, 0x04, 0x80, 0x10, 0x00, 0x00]);
    }
    if pad > 0 {
        ext(&mut exts, 0x0015, &vec![0; pad]);
    }
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7u8; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    message(1, body)
}

/// A TLS 1.3 ServerHello handshake message selecting TLS_AES_128_GCM_SHA256.
pub fn server_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[9u8; 32]);
    body.extend_from_slice(&[0, 0x13, 0x01, 0]);
    let mut exts = Vec::new();
    ext(&mut exts, 0x002b, &[0x03, 0x04]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    message(2, body)
}

/// `msg` in one TLS handshake record.
pub fn record(msg: &[u8]) -> Vec<u8> {
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    rec.extend_from_slice(msg);
    rec
}

/// A CRYPTO frame (RFC 9000 §19.6) carrying `data` at stream offset `offset`.
pub fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}
