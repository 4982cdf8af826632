//! What reading a flow's application fields costs, per message (issue #15), against parsers
//! someone else wrote, in the same run:
//!
//! - `app_parse`: one DNS query, one HTTP/1.1 request, one TLS ClientHello (its record, as the
//!   first TCP segment carries it), parsed by ours and by `simple-dns`, `httparse` and
//!   `tls-parser` (rusticata's, the one Suricata ships). Each side extracts what the record
//!   needs: the DNS question's name and type; the method, target, Host and User-Agent; the
//!   server name and ALPN list. Ours also computes the JA4 fingerprint (sorted lists and two
//!   SHA-256), which the peer does not: its figure is a lower bound of what the same fields
//!   would cost with it.
//! - `app_inspect`: the decoder's whole per-packet step (`Inspector::inspect`) on a frame of
//!   each kind: the four that make a fact (a QUIC v1 client Initial is decrypted first: key
//!   derivation with HKDF, header protection, AES-128-GCM of 1,200 bytes) and a TCP segment of
//!   application data (what most packets are), which makes none. The peer is decoding the
//!   same frame's headers, what every packet costs anyway.
//!
//! Run: `cargo bench -p e2e --bench app` (or `cargo xtask bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use e2e::hello::{client_hello, crypto_frame, record};
use probe_core::app::{dns, http, quic, tls, AppSet, Inspector};
use probe_core::wire::{decode_frame, Decap, FrameSummary, LinkType};
use std::hint::black_box;

const SITE: &str = "www.example.com";

fn dns_query() -> Vec<u8> {
    e2e::craft::dns_message(0x1234, SITE, 1, None)
}

fn http_request() -> Vec<u8> {
    format!(
        "GET /index.html?q=1 HTTP/1.1\r\nHost: {SITE}\r\nUser-Agent: Mozilla/5.0 (X11; Linux \
         x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,*/*\r\n\
         Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
         Connection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

fn tls_record() -> Vec<u8> {
    record(&client_hello(SITE, &["h2", "http/1.1"], 0, false))
}

/// A QUIC v1 client Initial of 1,200 bytes carrying a ClientHello, with its own DCID.
fn quic_initial(i: u32) -> Vec<u8> {
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]
        .iter()
        .zip(i.to_be_bytes().iter().cycle())
        .map(|(a, b)| a ^ b)
        .collect::<Vec<u8>>();
    let mut payload = crypto_frame(0, &client_hello(SITE, &["h3"], 0, true));
    payload.resize(1200 - 14 - dcid.len() - 16, 0);
    quic::protect_initial(quic::V1, &dcid, 0, &payload)
}

/// A frame from 10.0.0.1 to 10.0.0.2: a UDP datagram, or a TCP segment with data.
fn frame(udp: bool, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    if udp {
        return e2e::craft::udp4(a, sport, b, dport, payload);
    }
    let mut v = vec![];
    etherparse::PacketBuilder::ethernet2(e2e::craft::MAC_A, e2e::craft::MAC_B)
        .ipv4(a, b, 64)
        .tcp(sport, dport, 1000, 64240)
        .ack(1)
        .psh()
        .write(&mut v, payload)
        .unwrap();
    v
}

fn summary(f: &[u8]) -> FrameSummary {
    let mut s = FrameSummary::default();
    decode_frame(LinkType::Ethernet, f, &Decap::all(), &mut s).unwrap();
    s
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("app_parse");
    g.throughput(Throughput::Elements(1));

    let q = dns_query();
    g.bench_function("dns_query/ours", |b| {
        b.iter(|| {
            let m = dns::parse(black_box(&q)).unwrap();
            let q = m.question.unwrap();
            (q.name.as_bytes().len(), q.qtype)
        })
    });
    g.bench_function("dns_query/simple-dns", |b| {
        b.iter(|| {
            let p = simple_dns::Packet::parse(black_box(&q)).unwrap();
            let q = &p.questions[0];
            (q.qname.to_string().len(), u16::from(q.qtype))
        })
    });

    let r = http_request();
    g.bench_function("http_request/ours", |b| {
        b.iter(|| {
            let q = http::parse_request(black_box(&r)).unwrap();
            q.host.as_bytes().len() + q.user_agent.as_bytes().len() + q.target.as_bytes().len()
        })
    });
    g.bench_function("http_request/httparse", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            req.parse(black_box(&r)).unwrap();
            let mut n = req.path.unwrap().len() + req.method.unwrap().len();
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("host") || h.name.eq_ignore_ascii_case("user-agent")
                {
                    n += h.value.len();
                }
            }
            n
        })
    });

    let t = tls_record();
    let mut scratch = vec![0u8; tls::MAX_HELLO];
    g.bench_function("tls_client_hello/ours_with_ja4", |b| {
        b.iter(|| match tls::first_handshake(black_box(&t), &mut scratch) {
            tls::Handshake::Message(_, body) => {
                let h = tls::client_hello(body, false).unwrap();
                h.sni.map_or(0, |s| s.as_bytes().len())
                    + h.alpn.as_bytes().len()
                    + h.ja4.0[0] as usize
            }
            _ => unreachable!(),
        })
    });
    g.bench_function("tls_client_hello/tls-parser", |b| {
        use tls_parser::{
            parse_tls_extensions, parse_tls_plaintext, TlsExtension, TlsMessage,
            TlsMessageHandshake,
        };
        b.iter(|| {
            let (_, rec) = parse_tls_plaintext(black_box(&t)).unwrap();
            let mut n = 0;
            if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = &rec.msg[0] {
                let (_, exts) = parse_tls_extensions(ch.ext.unwrap()).unwrap();
                for e in &exts {
                    match e {
                        TlsExtension::SNI(names) => n += names[0].1.len(),
                        TlsExtension::ALPN(protos) => {
                            n += protos.iter().map(|p| p.len()).sum::<usize>()
                        }
                        _ => {}
                    }
                }
            }
            n
        })
    });
    let initials: Vec<Vec<u8>> = (0..64).map(quic_initial).collect();
    let mut buf = vec![0u8; quic::MAX_PACKET];
    let mut i = 0;
    let crypto = quic::default_crypto().expect("probe-core's ring feature");
    g.bench_function("quic_initial/open_initial", |b| {
        b.iter(|| {
            i = (i + 1) % initials.len();
            quic::open_initial(crypto, black_box(&initials[i]), &mut buf)
                .unwrap()
                .frames
                .len()
        })
    });
    g.finish();
}

fn inspect(c: &mut Criterion) {
    let mut g = c.benchmark_group("app_inspect");
    g.throughput(Throughput::Elements(1));
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("dns_query", vec![frame(true, 40000, 53, &dns_query())]),
        (
            "http_request",
            vec![frame(false, 40001, 80, &http_request())],
        ),
        (
            "tls_client_hello",
            vec![frame(false, 40002, 443, &tls_record())],
        ),
        // A fresh connection each time: the inspector skips flows whose hello it just read.
        (
            "quic_initial",
            (0..1024u32)
                .map(|i| frame(true, 20000 + i as u16, 443, &quic_initial(i)))
                .collect(),
        ),
        (
            "tcp_data_no_fact",
            vec![frame(false, 40003, 443, &[0x17; 1200])],
        ),
    ];
    for (name, frames) in &cases {
        let sums: Vec<FrameSummary> = frames.iter().map(|f| summary(f)).collect();
        let mut insp = Inspector::new(AppSet::ALL);
        let facts = insp.inspect(&frames[0], &sums[0], 0).is_some();
        assert_eq!(facts, *name != "tcp_data_no_fact", "{name}");
        let mut i = 0;
        let mut ts = 0u64;
        g.bench_function(format!("{name}/inspect"), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                // Two seconds apart: past the bound's memory (`app::looks::LOOK_AGAIN_NS`), so
                // each message is parsed, as a new flow's would be.
                ts += 2_000_000_000;
                insp.inspect(black_box(&frames[i]), &sums[i], ts).is_some()
            })
        });
        g.bench_function(format!("{name}/decode_only"), |b| {
            b.iter(|| {
                let mut s = FrameSummary::default();
                decode_frame(
                    LinkType::Ethernet,
                    black_box(&frames[0]),
                    &Decap::all(),
                    &mut s,
                )
                .is_ok()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, inspect);
criterion_main!(benches);
