//! DNS (RFC 1035) and mDNS (RFC 6762) messages: the header and the first question.
//!
//! Names are read label by label; compression pointers are followed at most
//! [`MAX_POINTERS`] times and the name is cut at 255 bytes, so a loop or an overlong name in a
//! hostile packet costs a bounded amount of work. The name is written as tshark's
//! `dns.qry.name` shows it: labels joined by dots, `<Root>` for the root.

use super::{BoundedText, Reader};

/// Compression pointers followed in one name.
pub const MAX_POINTERS: usize = 16;

/// A DNS message's header and first question.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsMessage {
    pub id: u16,
    pub response: bool,
    pub opcode: u8,
    /// The response code (RCODE, 4 bits; 0 in queries).
    pub rcode: u8,
    pub questions: u16,
    pub answers: u16,
    /// The first question, when there is one.
    pub question: Option<Question>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Question {
    pub name: BoundedText<255>,
    pub qtype: u16,
    /// The class without mDNS's unicast-response bit (as tshark's `dns.qry.class`).
    pub qclass: u16,
}

/// A DNS message over UDP (the whole datagram payload).
pub fn parse(msg: &[u8]) -> Option<DnsMessage> {
    let mut r = Reader::new(msg);
    let id = r.u16()?;
    let flags = r.u16()?;
    let questions = r.u16()?;
    let answers = r.u16()?;
    let _authority = r.u16()?;
    let _additional = r.u16()?;
    let opcode = ((flags >> 11) & 0xf) as u8;
    // Opcodes beyond UPDATE (5) and DSO (6) are unassigned: most likely not DNS at all.
    if opcode > 6 || (questions == 0 && flags & 0x8000 == 0) {
        return None;
    }
    let question = if questions > 0 {
        let mut name = BoundedText::default();
        let after = read_name(msg, msg.len() - r.remaining(), &mut name)?;
        let mut q = Reader::new(msg.get(after..)?);
        let qtype = q.u16()?;
        let qclass = q.u16()? & 0x7fff;
        Some(Question {
            name,
            qtype,
            qclass,
        })
    } else {
        None
    };
    Some(DnsMessage {
        id,
        response: flags & 0x8000 != 0,
        opcode,
        rcode: (flags & 0xf) as u8,
        questions,
        answers,
        question,
    })
}

/// The first DNS message of a TCP stream's payload (RFC 1035 §4.2.2: a 2-byte length first).
pub fn parse_tcp(seg: &[u8]) -> Option<DnsMessage> {
    let len = u16::from_be_bytes([*seg.first()?, *seg.get(1)?]) as usize;
    let msg = seg.get(2..)?;
    parse(&msg[..len.min(msg.len())])
}

/// Reads the name at `at` into `out`; returns the offset just past the name where it started
/// (after its first pointer, if any).
fn read_name(msg: &[u8], mut at: usize, out: &mut BoundedText<255>) -> Option<usize> {
    let mut end = None;
    let mut pointers = 0;
    let mut labels = 0;
    loop {
        let len = *msg.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                if labels == 0 {
                    out.push(b"<Root>");
                }
                return Some(end.unwrap_or(at + 1));
            }
            0x00 => {
                let label = msg.get(at + 1..at + 1 + len as usize)?;
                if labels > 0 {
                    out.push(b".");
                }
                push_label(out, label);
                labels += 1;
                at += 1 + len as usize;
            }
            0xc0 => {
                let lo = *msg.get(at + 1)?;
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return None;
                }
                end.get_or_insert(at + 2);
                at = (((len & 0x3f) as usize) << 8) | lo as usize;
            }
            // 0x40 and 0x80: extended label types, obsolete; not a name we can read.
            _ => return None,
        }
    }
}

/// A label as tshark writes it: printable ASCII as is, other bytes as a backslash and three
/// octal digits.
fn push_label(out: &mut BoundedText<255>, label: &[u8]) {
    for &b in label {
        if (0x20..0x7f).contains(&b) {
            out.push(&[b]);
        } else {
            out.push(&[
                b'\\',
                b'0' + (b >> 6),
                b'0' + ((b >> 3) & 7),
                b'0' + (b & 7),
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for www.example.com A IN, and its response with a compressed answer.
    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in ["www", "example", "com"] {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn query_and_response() {
        let q = parse(&query()).unwrap();
        assert!(!q.response);
        let qq = q.question.unwrap();
        assert_eq!(qq.name.as_str(), "www.example.com");
        assert_eq!((qq.qtype, qq.qclass), (1, 1));
        let mut r = query();
        r[2] = 0x81;
        r[3] = 0x83; // response, NXDOMAIN
        r[7] = 1; // one answer
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let a = parse(&r).unwrap();
        assert!(a.response);
        assert_eq!((a.rcode, a.answers), (3, 1));
        assert_eq!(a.question.unwrap().name.as_str(), "www.example.com");
        let mut tcp = vec![0, r.len() as u8];
        tcp.extend_from_slice(&r);
        assert_eq!(parse_tcp(&tcp), Some(a));
    }

    #[test]
    fn pointer_loops_and_garbage_end_cleanly() {
        // A question whose name points at itself.
        let mut m = vec![0, 1, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
        assert_eq!(parse(&m), None);
        m.truncate(13);
        assert_eq!(parse(&m), None);
        let mut state = 7u64;
        for n in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 56) as usize % 80;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (state.rotate_left(i as u32 * 7) >> 3) as u8)
                .collect();
            let _ = parse(&bytes);
            let _ = parse_tcp(&bytes);
            // Valid headers with random bodies, too.
            let mut q = query();
            q.truncate(12 + n % 10);
            q.extend_from_slice(&bytes);
            let _ = parse(&q);
        }
    }

    #[test]
    fn mdns_unicast_bit_and_root() {
        let m = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x80, 1];
        let q = parse(&m).unwrap().question.unwrap();
        assert_eq!(q.name.as_str(), "<Root>");
        assert_eq!((q.qtype, q.qclass), (2, 1));
    }
}
