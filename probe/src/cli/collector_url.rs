//! `--ipfix URL`: where flow records go, as the user writes it.
//!
//! - `udp://HOST:PORT`, `tcp://HOST:PORT`, `sctp://HOST:PORT`, `tls://HOST:PORT`: IPFIX to a
//!   collector (TLS over TCP, the certificate checked against HOST);
//! - `netflow9://HOST:PORT`, `netflow5://HOST:PORT`: the legacy formats over UDP;
//! - `file:///PATH[?rotate=DURATION][&max-size=SIZE]`: IPFIX files (RFC 5655).
//!
//! HOST is a name, an IPv4 address or a bracketed IPv6 address. Collector URLs take options:
//! - `spool=DIR` (with `spool-size=SIZE`, `spool-age=DURATION`,
//!   `spool-policy=drop-oldest|drop-newest`, `spool-sync=DURATION`): keep messages on disk. A
//!   stream collector's are delivered from there in order, also after a restart; a UDP
//!   collector's are kept for `probe spool replay`.
//! - `rate=N` (UDP, NetFlow): at most N messages a second to this collector.

use super::units::{parse_duration, parse_size};
use ipfix_export::{Destination, FileSpec, SpoolPolicy, SpoolSpec, Target};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

const FORMS: &str =
    "udp://HOST:PORT, tcp://HOST:PORT, sctp://HOST:PORT, tls://HOST:PORT, netflow9://HOST:PORT, \
                     netflow5://HOST:PORT or file:///PATH[?rotate=5m&max-size=64MiB]";

/// Parses one `--ipfix` value; the error says what is wrong and how to write it.
pub fn parse(url: &str) -> Result<Destination, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a collector URL: write {FORMS}"))?;
    if scheme == "file" {
        return Ok(Target::File(file_spec(url, rest)?).into());
    }
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let addr = || socket_addr(url, rest);
    let target = match scheme {
        "udp" => Target::Udp(addr()?),
        "tcp" => Target::Tcp(addr()?),
        "sctp" => Target::Sctp(addr()?),
        "tls" => Target::Tls {
            addr: addr()?,
            host: host_of(rest),
        },
        "netflow9" | "nfv9" => Target::NetflowV9(addr()?),
        "netflow5" | "nfv5" => Target::NetflowV5(addr()?),
        _ => return Err(format!("'{url}': unknown scheme '{scheme}': write {FORMS}")),
    };
    options(url, target, query)
}

/// The options of a collector URL (see the module doc).
fn options(url: &str, target: Target, query: &str) -> Result<Destination, String> {
    let udp = matches!(
        target,
        Target::Udp(_) | Target::NetflowV9(_) | Target::NetflowV5(_)
    );
    let netflow = matches!(target, Target::NetflowV9(_) | Target::NetflowV5(_));
    let mut d = Destination::from(target);
    for (k, v) in query_pairs(query) {
        match k {
            "rate" if udp => {
                d.rate = Some(match v.parse::<u32>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("'{url}': rate is messages per second, a number from 1")),
                })
            }
            "rate" => {
                return Err(format!(
                    "'{url}': rate= is for UDP collectors; a stream collector is paced by its own acknowledgements"
                ))
            }
            "spool" if netflow => {
                return Err(format!(
                    "'{url}': spool= is for IPFIX collectors (udp, tcp, tls, sctp)"
                ))
            }
            "spool" => {
                if !v.starts_with('/') {
                    return Err(format!(
                        "'{url}': spool needs an absolute directory: spool=/var/lib/probe/spool"
                    ));
                }
                d.spool = Some(SpoolSpec::new(v.into()));
            }
            // Applied below, once the spool is known wherever it stands in the URL.
            "spool-size" | "spool-age" | "spool-policy" | "spool-sync" => {}
            _ => {
                return Err(format!(
                    "'{url}': unknown option '{k}': collector URLs take spool=DIR, spool-size=SIZE, \
                     spool-age=DURATION, spool-policy=drop-oldest|drop-newest, spool-sync=DURATION{}",
                    if udp { " and rate=MSGS_PER_SEC" } else { "" }
                ))
            }
        }
    }
    for (k, v) in query_pairs(query).filter(|(k, _)| k.starts_with("spool-")) {
        let Some(s) = d.spool.as_mut() else {
            return Err(format!("'{url}': {k} needs spool=DIR as well"));
        };
        match k {
            "spool-size" => s.max_bytes = at_least(url, k, parse_size(v), 1 << 20, "1MiB")?,
            "spool-age" => {
                s.max_age = Some(at_least(
                    url,
                    k,
                    parse_duration(v),
                    Duration::from_secs(1),
                    "1s",
                )?)
            }
            "spool-sync" => {
                s.sync_every = at_least(url, k, parse_duration(v), Duration::ZERO, "0s")?
            }
            _ => {
                s.policy = SpoolPolicy::CHOICES
                    .iter()
                    .find(|(n, _)| *n == v)
                    .map(|(_, p)| *p)
                    .ok_or_else(|| {
                        format!("'{url}': spool-policy is drop-oldest or drop-newest, not '{v}'")
                    })?;
            }
        }
    }
    Ok(d)
}

/// The `key=value` pairs after a URL's `?` (a bare key has an empty value).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

/// A URL option's parsed value, refused below its least (`least` as the user writes it).
fn at_least<T: PartialOrd>(
    url: &str,
    key: &str,
    value: Result<T, String>,
    min: T,
    least: &str,
) -> Result<T, String> {
    let v = value.map_err(|e| format!("'{url}': {key}: {e}"))?;
    if v < min {
        return Err(format!("'{url}': {key} must be at least {least}"));
    }
    Ok(v)
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
    for (k, v) in query_pairs(query) {
        match k {
            "rotate" => {
                spec.rotate_every = Some(at_least(
                    url,
                    k,
                    parse_duration(v),
                    Duration::from_secs(1),
                    "1s",
                )?)
            }
            "max-size" => {
                spec.rotate_bytes = Some(at_least(url, k, parse_size(v), 4096, "4096 bytes")?)
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
            Target::Udp("127.0.0.1:4739".parse().unwrap()).into()
        );
        assert_eq!(
            parse("tcp://[::1]:4739").unwrap(),
            Target::Tcp("[::1]:4739".parse().unwrap()).into()
        );
        assert_eq!(
            parse("netflow5://127.0.0.1:2055").unwrap(),
            Target::NetflowV5("127.0.0.1:2055".parse().unwrap()).into()
        );
        assert_eq!(
            parse("file:///tmp/f.ipfix?rotate=5m&max-size=64MiB").unwrap(),
            Target::File(FileSpec {
                path: "/tmp/f.ipfix".into(),
                rotate_bytes: Some(64 << 20),
                rotate_every: Some(std::time::Duration::from_secs(300)),
            })
            .into()
        );
    }

    #[test]
    fn spool_and_rate_options() {
        let d = parse("tcp://127.0.0.1:4739?spool=/var/lib/probe/spool&spool-size=2GiB&spool-age=1h&spool-policy=drop-newest").unwrap();
        let s = d.spool.unwrap();
        assert_eq!(s.dir, std::path::Path::new("/var/lib/probe/spool"));
        assert_eq!(s.max_bytes, 2 << 30);
        assert_eq!(s.max_age, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(s.policy, SpoolPolicy::DropNewest);
        assert_eq!(d.target, Target::Tcp("127.0.0.1:4739".parse().unwrap()));
        assert_eq!(
            parse("udp://127.0.0.1:4739?rate=500").unwrap().rate,
            Some(500)
        );
        assert!(parse("tcp://127.0.0.1:4739?rate=5")
            .unwrap_err()
            .contains("UDP"));
        assert!(parse("tcp://127.0.0.1:4739?spool-size=1GiB")
            .unwrap_err()
            .contains("needs spool=DIR"));
        assert!(parse("tcp://127.0.0.1:4739?spool=rel")
            .unwrap_err()
            .contains("absolute"));
        assert!(parse("tcp://127.0.0.1:4739?spool=/x&spool-policy=lifo")
            .unwrap_err()
            .contains("drop-oldest"));
        assert!(parse("netflow5://127.0.0.1:2055?spool=/x")
            .unwrap_err()
            .contains("IPFIX"));
        assert!(parse("tcp://127.0.0.1:4739?x=1")
            .unwrap_err()
            .contains("unknown option"));
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
