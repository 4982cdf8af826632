//! A plain UDP socket that keeps every datagram the probe sends, so tests can hand the exact
//! messages to tshark and ipfixrw.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Recorder {
    pub port: u16,
    url: String,
    stop: Arc<AtomicBool>,
    /// Each datagram with how long after the recorder started it arrived.
    handle: std::thread::JoinHandle<Vec<(Duration, Vec<u8>)>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        Recorder::start_on("127.0.0.1:0")
    }

    /// A recorder on 127.0.0.1 inside network namespace `ns` (a socket belongs to the
    /// namespace of the thread that creates it, so a short-lived thread enters `ns` for that).
    pub fn start_in_netns(ns: &str) -> Recorder {
        let path = format!("/run/netns/{ns}");
        let sock = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let f = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on this short-lived thread only.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            UdpSocket::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap();
        Recorder::with_socket(sock)
    }

    /// A recorder on another local address, e.g. `[::1]:0` for an IPv6 collector.
    pub fn start_on(bind: &str) -> Recorder {
        Recorder::with_socket(UdpSocket::bind(bind).unwrap())
    }

    fn with_socket(sock: UdpSocket) -> Recorder {
        // A collector that can fall behind for a while without losing what it was sent: the
        // tests count records, and parallel tests on two cores can starve this thread.
        set_receive_buffer(&sock, 16 << 20);
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let port = local.port();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let started = std::time::Instant::now();
        let handle = std::thread::spawn(move || {
            let mut got = vec![];
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => got.push((started.elapsed(), buf[..n].to_vec())),
                    Err(_) if s2.load(Ordering::Relaxed) => return got,
                    Err(_) => {}
                }
            }
        });
        let url = match local {
            std::net::SocketAddr::V4(a) => format!("udp://{a}"),
            std::net::SocketAddr::V6(a) => format!("udp://[{}]:{}", a.ip(), a.port()),
        };
        Recorder {
            port,
            url,
            stop,
            handle,
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn finish(self) -> Vec<Vec<u8>> {
        self.finish_timed().into_iter().map(|(_, d)| d).collect()
    }

    /// The datagrams, each with how long after the recorder started it arrived.
    pub fn finish_timed(self) -> Vec<(Duration, Vec<u8>)> {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Raises the socket's receive buffer: SO_RCVBUFFORCE as root (past net.core.rmem_max), else
/// SO_RCVBUF up to the system limit.
fn set_receive_buffer(sock: &UdpSocket, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    let set = |opt| unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            &bytes as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set(libc::SO_RCVBUFFORCE) != 0 {
        set(libc::SO_RCVBUF);
    }
}

/// Wraps each datagram in IPv4/UDP headers towards port 4739 and writes a raw-IPv4 pcap, so
/// tshark dissects the messages as IPFIX.
pub fn write_datagrams_pcap(datagrams: &[Vec<u8>], path: &Path) {
    let frames: Vec<crate::capture::Frame> = datagrams
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut v = vec![];
            etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
                .udp(40000, 4739)
                .write(&mut v, d)
                .unwrap();
            crate::capture::Frame {
                ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1000,
                data: v,
            }
        })
        .collect();
    crate::capture::write_pcap(path, crate::capture::LINKTYPE_IPV4, false, &frames);
}

/// What tshark made of the messages.
#[derive(Debug)]
pub struct TsharkVerdict {
    pub messages: usize,
    pub data_records: usize,
    pub template_ids: Vec<u16>,
    /// Lines of warnings, errors and malformed packets tshark's expert system reported.
    pub problems: Vec<String>,
}

pub fn tshark_decode(pcap: &Path) -> TsharkVerdict {
    let run = |args: &[&str]| {
        crate::tools::stdout_of(
            Command::new("tshark")
                .arg("-r")
                .arg(pcap)
                .arg("-n")
                .args(args),
        )
    };
    let per_msg = run(&[
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
        "-e",
        "cflow.version",
        "-e",
        "cflow.packets",
        "-e",
        "cflow.template_id",
    ]);
    let mut messages = 0;
    let mut data_records = 0;
    let mut template_ids = vec![];
    for line in per_msg.lines() {
        let c: Vec<&str> = line.split('\t').collect();
        // A TCP segment can finish several messages: count each version field.
        messages += c[0].split(',').filter(|v| *v == "10").count();
        data_records += c
            .get(1)
            .map(|s| s.split(',').filter(|x| !x.is_empty()).count())
            .unwrap_or(0);
        if let Some(ids) = c.get(2) {
            template_ids.extend(ids.split(',').filter_map(|x| x.parse::<u16>().ok()));
        }
    }
    let expert = run(&[
        "-Y",
        "_ws.malformed || _ws.expert.severity >= \"warning\"",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "_ws.expert.message",
    ]);
    template_ids.sort();
    template_ids.dedup();
    TsharkVerdict {
        messages,
        data_records,
        template_ids,
        problems: expert.lines().map(String::from).collect(),
    }
}

/// Flow records (as [`ipfixrw_decode`] gives them) as comparable rows, element name to value
/// sorted within a row and the rows sorted: two exports of the same records compare equal
/// whatever order the records arrived in.
pub fn record_rows(records: Vec<std::collections::HashMap<String, String>>) -> Vec<String> {
    let mut v: Vec<String> = records
        .into_iter()
        .map(|r| {
            format!(
                "{:?}",
                r.into_iter().collect::<std::collections::BTreeMap<_, _>>()
            )
        })
        .collect();
    v.sort();
    v
}

/// Decodes the messages with ipfixrw, in order, and returns the flow records in the messages, element name to value.
pub fn ipfixrw_decode(datagrams: &[Vec<u8>]) -> Vec<std::collections::HashMap<String, String>> {
    use ipfixrw::parser::DataRecordKey;
    let templates: ipfixrw::template_store::TemplateStore =
        std::rc::Rc::new(std::cell::RefCell::new(std::collections::HashMap::new()));
    let formatter = std::rc::Rc::new(ipfixrw::information_elements::get_default_formatter());
    let mut records = vec![];
    for d in datagrams {
        let msg = ipfixrw::parse_ipfix_message(d, templates.clone(), formatter.clone())
            .expect("ipfixrw decodes the message");
        // Flow records only: options records (statistics, selector) have no packet count.
        for r in msg.iter_data_records().filter(|r| {
            r.values
                .contains_key(&DataRecordKey::Str("packetDeltaCount"))
        }) {
            records.push(
                r.values
                    .iter()
                    .map(|(k, v)| {
                        let name = match k {
                            DataRecordKey::Str(s) => s.to_string(),
                            other => format!("{other:?}"),
                        };
                        (name, format!("{v:?}"))
                    })
                    .collect(),
            );
        }
    }
    records
}

/// The selector reports (RFC 5477) in the messages: (algorithm, packet interval, packet space)
/// as tshark decodes them.
pub fn tshark_selector_reports(pcap: &Path) -> Vec<(u64, u64, u64)> {
    crate::tools::tshark_frames(
        pcap,
        "cflow.selector_algorithm",
        &[
            "cflow.selector_algorithm",
            "cflow.sampling_packet_interval",
            "cflow.sampling_packet_space",
        ],
    )
    .iter()
    .map(|l| {
        let v: Vec<u64> = l
            .split('\t')
            // The first occurrence of each field in the frame.
            .map(|x| {
                x.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .parse()
                    .unwrap_or(0)
            })
            .collect();
        (
            v[0],
            v.get(1).copied().unwrap_or(0),
            v.get(2).copied().unwrap_or(0),
        )
    })
    .collect()
}

/// A TCP collector for tests: accepts one connection and keeps every byte it reads, so a test
/// can watch the stream grow, then close the connection (a collector restart) or read to EOF.
pub struct TcpCollector {
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpCollector {
    /// Listens on `addr` (port 0: any free port); returns the collector and its address.
    pub fn start(addr: &str) -> (TcpCollector, std::net::SocketAddr) {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind(addr).unwrap();
        let local = l.local_addr().unwrap();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            l.set_nonblocking(true).unwrap();
            let conn = loop {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                match l.accept() {
                    Ok((c, _)) => break c,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            drop(l);
            read_connection(conn, &s, |b| r.lock().unwrap().extend_from_slice(b));
        });
        (
            TcpCollector {
                received,
                stop,
                thread: Some(thread),
            },
            local,
        )
    }

    /// The bytes so far.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done(bytes)` holds (or panics after `timeout`).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[u8]) -> bool) {
        let t = std::time::Instant::now();
        while !done(&self.received()) {
            assert!(
                t.elapsed() < timeout,
                "the TCP collector did not get what was expected in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes the connection now (a collector going away) and returns what it read.
    pub fn close(mut self) -> Vec<u8> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.received()
    }

    /// Reads until the exporter closes the connection, then returns everything.
    pub fn finish(mut self, timeout: Duration) -> Vec<u8> {
        let t = std::time::Instant::now();
        while !self.thread.as_ref().unwrap().is_finished() {
            assert!(
                t.elapsed() < timeout,
                "the exporter did not close the connection"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.thread.take().unwrap().join().unwrap();
        self.received()
    }
}

impl Drop for TcpCollector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a collector's connection into `keep` until the peer closes it, it fails, or `stop`.
fn read_connection(
    mut conn: std::net::TcpStream,
    stop: &std::sync::atomic::AtomicBool,
    mut keep: impl FnMut(&[u8]),
) {
    use std::io::Read;
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 65536];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => keep(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A TCP collector that takes one connection after another (the exporter's sessions) and
/// keeps each session's bytes apart, until stopped; it can be taken down and brought back on
/// the same port.
pub struct TcpSessions {
    sessions: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpSessions {
    /// Listens on `addr` (port 0: any free port).
    pub fn start(addr: &str) -> (TcpSessions, std::net::SocketAddr) {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind(addr).unwrap();
        let local = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        let sessions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r, s) = (sessions.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let conn = match l.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let i = {
                    let mut v = r.lock().unwrap();
                    v.push(Vec::new());
                    v.len() - 1
                };
                read_connection(conn, &s, |b| r.lock().unwrap()[i].extend_from_slice(b));
            }
        });
        (
            TcpSessions {
                sessions,
                stop,
                thread: Some(thread),
            },
            local,
        )
    }

    /// Every session's bytes so far.
    pub fn sessions(&self) -> Vec<Vec<u8>> {
        self.sessions.lock().unwrap().clone()
    }

    /// Waits until `done(sessions)` holds (or panics after `timeout`).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Vec<u8>]) -> bool) {
        let t = std::time::Instant::now();
        while !done(&self.sessions()) {
            assert!(
                t.elapsed() < timeout,
                "the TCP collector did not get what was expected in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops listening and closes any connection (the collector goes away); returns every
    /// session's bytes.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.sessions()
    }
}

impl Drop for TcpSessions {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a byte stream ends on an IPFIX message boundary.
pub fn whole_messages(mut b: &[u8]) -> bool {
    while b.len() >= 16 {
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        if len < 16 || len > b.len() {
            return false;
        }
        b = &b[len..];
    }
    b.is_empty()
}

/// Splits an IPFIX byte stream (a TCP session or a file) into messages.
pub fn split_messages(mut stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    while stream.len() >= 16 {
        let len = u16::from_be_bytes([stream[2], stream[3]]) as usize;
        assert!(len >= 16 && len <= stream.len(), "a cut or corrupt message");
        out.push(stream[..len].to_vec());
        stream = &stream[len..];
    }
    assert!(stream.is_empty(), "{} trailing bytes", stream.len());
    out
}

/// Writes byte streams as TCP sessions towards port 4739 (handshake, then the bytes in
/// 1000-byte segments that ignore message boundaries), so tshark must reassemble IPFIX over TCP.
pub fn write_tcp_streams_pcap(streams: &[Vec<u8>], path: &Path) {
    let mut frames = vec![];
    let mut t = 1_700_000_000_000_000_000u64;
    for (i, s) in streams.iter().enumerate() {
        let sport = 40000 + i as u16;
        let mut seg =
            |seq: u32, ack: u32, syn: bool, acked: bool, from_client: bool, data: &[u8]| {
                let (src, dst, sp, dp) = if from_client {
                    ([127, 0, 0, 1], [127, 0, 0, 2], sport, 4739)
                } else {
                    ([127, 0, 0, 2], [127, 0, 0, 1], 4739, sport)
                };
                let mut b = etherparse::PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
                if syn {
                    b = b.syn();
                }
                if acked {
                    b = b.ack(ack);
                }
                let mut v = vec![];
                b.write(&mut v, data).unwrap();
                t += 1000;
                frames.push(crate::capture::Frame { ts_ns: t, data: v });
            };
        seg(100, 0, true, false, true, &[]);
        seg(900, 101, true, true, false, &[]);
        seg(101, 901, false, true, true, &[]);
        let mut seq = 101u32;
        for chunk in s.chunks(1000) {
            seg(seq, 901, false, true, true, chunk);
            seq += chunk.len() as u32;
            seg(901, seq, false, true, false, &[]);
        }
    }
    crate::capture::write_pcap(path, crate::capture::LINKTYPE_IPV4, false, &frames);
}
