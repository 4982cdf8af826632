//! The collectors and files an exporter sends to, as typed values. Parsing the user's URLs is
//! the probe's business (it owns units and error wording); this is what it parses them into.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One place flow records go, with what its URL asked for beyond the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub target: Target,
    /// Keep messages on disk: a stream collector's are delivered from there in order (and
    /// after a restart); a UDP collector's are kept for `probe spool replay`.
    pub spool: Option<crate::spool::SpoolSpec>,
    /// Most messages per second to this UDP collector (instead of the exporter's default).
    pub rate: Option<u32>,
}

impl From<Target> for Destination {
    fn from(target: Target) -> Destination {
        Destination {
            target,
            spool: None,
            rate: None,
        }
    }
}

impl std::fmt::Display for Destination {
    /// The URL without its options: how books and logs name the destination.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.target.fmt(f)
    }
}

/// The transport and address of a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// IPFIX over UDP (RFC 7011 §10.3): templates re-sent on an interval.
    Udp(SocketAddr),
    /// IPFIX over TCP (RFC 7011 §10.4): templates at the start of each connection.
    Tcp(SocketAddr),
    /// IPFIX over SCTP (RFC 7011 §10.2).
    Sctp(SocketAddr),
    /// IPFIX over TLS over TCP (RFC 7011 §11): `host` is the name in the URL, which the
    /// collector's certificate must carry (unless the TLS settings name another).
    Tls { addr: SocketAddr, host: String },
    /// IPFIX files (RFC 5655).
    File(FileSpec),
    /// NetFlow version 9 over UDP (RFC 3954).
    NetflowV9(SocketAddr),
    /// NetFlow version 5 over UDP: IPv4 only, 32-bit counters.
    NetflowV5(SocketAddr),
}

/// Where IPFIX files are written and when a new one is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    /// Without rotation, the file itself; with rotation, each file's name is this path with the
    /// UTC start time inserted before the extension.
    pub path: PathBuf,
    /// Start a new file when the current one would grow past this size.
    pub rotate_bytes: Option<u64>,
    /// Start a new file at each multiple of this interval (aligned to the UNIX epoch, like
    /// nfcapd's 5-minute files).
    pub rotate_every: Option<Duration>,
}

impl FileSpec {
    pub fn rotates(&self) -> bool {
        self.rotate_bytes.is_some() || self.rotate_every.is_some()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Sctp(a) => write!(f, "sctp://{a}"),
            Target::Tls { addr, .. } => write!(f, "tls://{addr}"),
            Target::File(s) => write!(f, "file://{}", s.path.display()),
            Target::NetflowV9(a) => write!(f, "netflow9://{a}"),
            Target::NetflowV5(a) => write!(f, "netflow5://{a}"),
        }
    }
}
