//! `--ipfix URL`: where flow records go, as the user writes it.
//!
//! - `udp://HOST:PORT`, `tcp://HOST:PORT`, `sctp://HOST:PORT`, `tls://HOST:PORT`: IPFIX to a
//!   collector (TLS over TCP, the certificate checked against HOST);
//! - `netflow9://HOST:PORT`, `netflow5://HOST:PORT`: the legacy formats over UDP;
//! - `file:///PATH[?rotate=DURATION][&max-size=SIZE]`: IPFIX files (RFC 5655).
//!
//! HOST is a name, an IPv4 address or a bracketed IPv6 address.

use super::units::{parse_duration, parse_size};
use ipfix_export::{Destination, FileSpec};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

const FORMS: &str =
    "udp://HOST:PORT, tcp://HOST:PORT, sctp://HOST:PORT, tls://HOST:PORT, netflow9://HOST:PORT, \
                     netflow5://HOST:PORT or file:///PATH[?rotate=5m&max-size=64MiB]";

/// Parses one `--ipfix` value; the error says what is wrong and how to write it.
pub fn parse(url: &str) -> Result<Destination, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a collector URL: write {FORMS}"))?;
    let addr = || socket_addr(url, rest);
    Ok(match scheme {
        "udp" => Destination::Udp(addr()?),
        "tcp" => Destination::Tcp(addr()?),
        "sctp" => Destination::Sctp(addr()?),
        "tls" => Destination::Tls {
            addr: addr()?,
            host: host_of(rest),
        },
        "netflow9" | "nfv9" => Destination::NetflowV9(addr()?),
        "netflow5" | "nfv5" => Destination::NetflowV5(addr()?),
        "file" => Destination::File(file_spec(url, rest)?),
        _ => return Err(format!("'{url}': unknown scheme '{scheme}': write {FORMS}")),
    })
}

/// The host as written (brackets off an IPv6 address): what a TLS certificate must name.
fn host_of(rest: &str) -> String {
    let rest = rest.trim_end_matches('/');
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn socket_addr(url: &str, rest: &str) -> Result<SocketAddr, String> {
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
        format!("'{url}': no port: write e.g. udp://127.0.0.1:4739 or udp://[::1]:4739")
    })?;
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("'{url}': port must be a number from 1 to 65535")),
    };
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "'{url}': put an IPv6 address in brackets, e.g. udp://[2001:db8::1]:4739"
        ));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{url}': no host: write e.g. udp://127.0.0.1:4739"));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("'{url}': cannot resolve host '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{url}': cannot resolve host '{host}': no address"))
}

fn file_spec(url: &str, rest: &str) -> Result<FileSpec, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return Err(format!(
            "'{url}': a file URL needs an absolute path: file:///var/lib/probe/flows.ipfix"
        ));
    }
    if path.ends_with('/') {
        return Err(format!("'{url}': name the file, not only its directory"));
    }
    let mut spec = FileSpec {
        path: PathBuf::from(path),
        rotate_bytes: None,
        rotate_every: None,
    };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "rotate" => {
                let d = parse_duration(v).map_err(|e| format!("'{url}': rotate: {e}"))?;
                if d.as_secs() == 0 {
                    return Err(format!("'{url}': rotate must be at least 1s"));
                }
                spec.rotate_every = Some(d);
            }
            "max-size" => {
                let n = parse_size(v).map_err(|e| format!("'{url}': max-size: {e}"))?;
                if n < 4096 {
                    return Err(format!("'{url}': max-size must be at least 4096 bytes"));
                }
                spec.rotate_bytes = Some(n);
            }
            _ => {
                return Err(format!(
                "'{url}': unknown option '{k}': file URLs take rotate=DURATION and max-size=SIZE"
            ))
            }
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!(
            parse("udp://127.0.0.1:4739").unwrap(),
            Destination::Udp("127.0.0.1:4739".parse().unwrap())
        );
        assert_eq!(
            parse("tcp://[::1]:4739").unwrap(),
            Destination::Tcp("[::1]:4739".parse().unwrap())
        );
        assert_eq!(
            parse("netflow5://127.0.0.1:2055").unwrap(),
            Destination::NetflowV5("127.0.0.1:2055".parse().unwrap())
        );
        assert_eq!(
            parse("file:///tmp/f.ipfix?rotate=5m&max-size=64MiB").unwrap(),
            Destination::File(FileSpec {
                path: "/tmp/f.ipfix".into(),
                rotate_bytes: Some(64 << 20),
                rotate_every: Some(std::time::Duration::from_secs(300)),
            })
        );
    }

    #[test]
    fn errors_say_how_to_write_it() {
        assert!(parse("127.0.0.1:4739")
            .unwrap_err()
            .contains("udp://HOST:PORT"));
        assert!(parse("udp://127.0.0.1:0")
            .unwrap_err()
            .contains("1 to 65535"));
        assert!(parse("udp://::1:4739").unwrap_err().contains("brackets"));
        assert!(parse("http://x:1").unwrap_err().contains("unknown scheme"));
        assert!(parse("file://relative/f").unwrap_err().contains("absolute"));
        assert!(parse("file:///tmp/f?size=1")
            .unwrap_err()
            .contains("unknown option"));
    }
}
