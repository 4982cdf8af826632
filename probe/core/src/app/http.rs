//! HTTP/1.x (RFC 9112): a request's method, target, Host and User-Agent, a response's status,
//! from the first payload of each direction. Only the bytes of that payload are looked at
//! (a header cut by the segment's end is left out, not waited for); values are cut at their
//! bounds and marked truncated.

use super::BoundedText;

/// Most bytes of the request target kept.
pub const MAX_TARGET: usize = 256;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: BoundedText<16>,
    pub target: BoundedText<MAX_TARGET>,
    pub host: BoundedText<255>,
    pub user_agent: BoundedText<256>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
}

/// Methods a request line may start with (RFC 9110 §9 and WebDAV's common ones): anything
/// else is not taken for HTTP.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"CONNECT",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
];

/// Splits off one line (without CRLF or LF); `None` when no line end is in `b`.
fn line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let nl = memchr::memchr(b'\n', b)?;
    let l = &b[..nl];
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    Some((l, &b[nl + 1..]))
}

/// Whether `payload` may start an HTTP/1.x request: a method token and a space within its
/// first 21 bytes. Most segments (encrypted, binary, the middle of a body) fail it on their
/// first byte, and the rest within a few.
#[inline]
pub fn may_be_request(payload: &[u8]) -> bool {
    if !payload.first().is_some_and(is_token) {
        return false;
    }
    let head = &payload[..payload.len().min(21)];
    match head.iter().position(|&c| c == b' ') {
        Some(sp) => sp > 0 && head[..sp].iter().all(is_token),
        None => false,
    }
}

/// A byte of a request method (RFC 9110's token, as requests use it: upper-case letters,
/// digits, '_' and '-').
fn is_token(c: &u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-'
}

/// An HTTP/1.x request at the start of `payload`. As Wireshark reads one: the method, the
/// target up to the next space, the version last (`HTTP/0.9` requests have none); a request
/// line cut by the end of the captured bytes still gives its method and target.
pub fn parse_request(payload: &[u8]) -> Option<Request> {
    // Most payloads are not a request: that is decided from their first bytes, before
    // anything looks for a line end.
    if !may_be_request(payload) {
        return None;
    }
    let (first, mut rest) = line(payload).unwrap_or((payload, &[]));
    let mut parts = first.split(|&c| c == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = first.rsplit(|&c| c == b' ').next().unwrap_or_default();
    // With an HTTP version the method may be any token (extension methods such as
    // CCM_POST); without one only a known method makes it HTTP.
    let token = !method.is_empty() && method.len() <= 20 && method.iter().all(is_token);
    let versioned = version != target && version.starts_with(b"HTTP/");
    if !(METHODS.contains(&method) || versioned && token) || target.is_empty() {
        return None;
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        // Another or a malformed version ("HTTP/1."): still a request line.
        v if v != target && v.starts_with(b"HTTP/") => 9,
        // HTTP/0.9: "GET /path" and nothing more.
        v if v == target => 9,
        // The line was cut inside the version by the end of the captured bytes.
        v if rest.is_empty() && b"HTTP/1.1".starts_with(v) => 9,
        _ => return None,
    };
    let mut r = Request {
        method: BoundedText::new(method),
        target: BoundedText::new(target),
        minor,
        ..Default::default()
    };
    // The header lines, until both wanted ones are found (the first non-empty of each wins).
    while r.host.is_empty() || r.user_agent.is_empty() {
        let Some((l, next)) = line(rest) else {
            break;
        };
        if l.is_empty() {
            break;
        }
        rest = next;
        let Some(colon) = memchr::memchr(b':', l) else {
            continue;
        };
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.len() == 4 && name.eq_ignore_ascii_case(b"host") && r.host.is_empty() {
            r.host.push(trim(value));
        } else if name.len() == 10
            && name.eq_ignore_ascii_case(b"user-agent")
            && r.user_agent.is_empty()
        {
            r.user_agent.push(trim(value));
        }
    }
    Some(r)
}

/// The status code of an HTTP/1.x response at the start of `payload`.
pub fn parse_response(payload: &[u8]) -> Option<u16> {
    let rest = payload
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| payload.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit)
        || rest
            .get(3)
            .is_some_and(|&c| c != b' ' && c != b'\r' && c != b'\n')
    {
        return None;
    }
    let n = code.iter().fold(0u16, |n, &d| n * 10 + (d - b'0') as u16);
    (100..1000).contains(&n).then_some(n)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response() {
        let r = parse_request(
            b"GET /index.html?q=1 HTTP/1.1\r\nhost: www.example.com\r\nUser-Agent:  curl/8.0 \r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(r.method.as_str(), "GET");
        assert_eq!(r.target.as_str(), "/index.html?q=1");
        assert_eq!(r.host.as_str(), "www.example.com");
        assert_eq!(r.user_agent.as_str(), "curl/8.0");
        assert_eq!(parse_response(b"HTTP/1.1 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_response(b"HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(parse_response(b"HTTP/1.1 20x OK"), None);
        // An extension method with a version is a request; a lower-case word is not.
        assert_eq!(
            parse_request(b"BREW /pot HTTP/1.1\r\n")
                .unwrap()
                .method
                .as_str(),
            "BREW"
        );
        assert_eq!(parse_request(b"brew /pot HTTP/1.1\r\n"), None);
        assert_eq!(parse_request(b"GET / HTTP/2\r\n").unwrap().minor, 9);
        assert_eq!(parse_request(b"get / whatever\r\n"), None);
        // HTTP/0.9, a CONNECT with a stray token, a line cut by the snap length.
        assert_eq!(parse_request(b"GET /\r\n").unwrap().minor, 9);
        let c = parse_request(b"CONNECT mail.example:25 / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(c.target.as_str(), "mail.example:25");
        assert_eq!(
            parse_request(b"GET /a.gif HTT").unwrap().target.as_str(),
            "/a.gif"
        );
        // A target longer than kept is cut and marked.
        let long = format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(400));
        let r = parse_request(long.as_bytes()).unwrap();
        assert_eq!(r.target.as_bytes().len(), MAX_TARGET);
        assert!(r.target.truncated);
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 3u64;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (state >> 58) as usize;
            let mut b = b"GET / HTTP/1.1\r\nHost:".to_vec();
            b.extend((0..len).map(|i| (state >> (i % 56)) as u8));
            let _ = parse_request(&b);
            let _ = parse_response(&b[..len.min(b.len())]);
        }
    }
}
