//! `probe extract --flows`: flow records as an analyst has them (the probe's own `--print json`
//! lines, or `nfdump -o json` output), turned into what to pull from the ring: each flow's
//! addresses, ports and protocol, and its time span.
//!
//! Both inputs are read by their keys, whatever their layout: JSON lines, one array, or an
//! array printed over many lines (nfdump). The probe's records carry IANA names
//! (`sourceIPv4Address`, `flowStartMilliseconds`...); nfdump's carry `src4_addr`, `first`
//! ("2023-11-14T22:13:20.000", which nfdump prints in its local time zone: run it with TZ=UTC,
//! as the probe's machines are). ICMP flows are matched by addresses only (ports hold type and
//! code in both formats).

use std::net::IpAddr;

/// One flow to extract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedFlow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl WantedFlow {
    /// Whether a frame with these fields belongs to the flow's forward direction (or, with
    /// `both`, its reverse).
    pub fn matches(
        &self,
        protocol: u8,
        src: &[u8; 16],
        dst: &[u8; 16],
        sport: u16,
        dport: u16,
        both: bool,
    ) -> bool {
        if protocol != self.protocol {
            return false;
        }
        let icmp = matches!(protocol, 1 | 58);
        let (a, b) = (octets(self.src), octets(self.dst));
        let fwd =
            *src == a && *dst == b && (icmp || (sport == self.src_port && dport == self.dst_port));
        let rev = both
            && *src == b
            && *dst == a
            && (icmp || (sport == self.dst_port && dport == self.src_port));
        fwd || rev
    }

    /// "10.1.0.5:40000 -> 10.2.0.80:443 tcp" for the summary.
    pub fn describe(&self) -> String {
        let proto = match self.protocol {
            6 => "tcp".to_string(),
            17 => "udp".to_string(),
            1 => "icmp".to_string(),
            58 => "icmp6".to_string(),
            p => format!("proto {p}"),
        };
        let at = |a: IpAddr, p: u16| match a {
            IpAddr::V4(a) => format!("{a}:{p}"),
            IpAddr::V6(a) => format!("[{a}]:{p}"),
        };
        format!(
            "{} -> {} {proto}",
            at(self.src, self.src_port),
            at(self.dst, self.dst_port)
        )
    }
}

/// The summary's address layout: IPv4 in the first four bytes, the rest zero.
pub fn octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            o
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// Parses flow records; an error names the record (1-based) and what is missing.
pub fn parse(text: &str) -> Result<Vec<WantedFlow>, String> {
    let t = text.trim().trim_end_matches(',');
    let values: Vec<serde_json::Value> = if t.starts_with('[') {
        match serde_json::from_str::<serde_json::Value>(t) {
            Ok(serde_json::Value::Array(v)) => v,
            Ok(_) => unreachable!("starts with ["),
            Err(e) => return Err(format!("not a JSON array of flow records: {e}")),
        }
    } else {
        // JSON lines (or any whitespace between objects); else nfdump's objects separated by
        // commas without the brackets (`nfdump -q -o json`).
        let stream: Result<Vec<serde_json::Value>, _> =
            serde_json::Deserializer::from_str(t).into_iter().collect();
        match stream {
            Ok(v) => v,
            Err(first) => match serde_json::from_str::<Vec<serde_json::Value>>(&format!("[{t}]")) {
                Ok(v) => v,
                Err(_) => {
                    return Err(format!(
                        "line {}: not a JSON flow record ({first})",
                        first.line()
                    ))
                }
            },
        }
    };
    let mut flows = Vec::new();
    for (i, v) in values.iter().enumerate() {
        // nfdump also prints non-flow records (e.g. its "type": "EXPORTER"): skip those.
        if v.get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t != "FLOW")
        {
            continue;
        }
        flows.push(one(v).map_err(|e| format!("record {}: {e}", i + 1))?);
    }
    Ok(flows)
}

fn one(v: &serde_json::Value) -> Result<WantedFlow, String> {
    let s = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k)?.as_str().map(String::from))
    };
    let n = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k)?.as_u64());
    let addr = |keys: &[&str], what: &str| -> Result<IpAddr, String> {
        let a = s(keys).ok_or_else(|| format!("no {what} address ({})", keys.join(" or ")))?;
        a.parse().map_err(|_| format!("'{a}' is not an IP address"))
    };
    let src = addr(
        &[
            "sourceIPv4Address",
            "sourceIPv6Address",
            "src4_addr",
            "src6_addr",
        ],
        "source",
    )?;
    let dst = addr(
        &[
            "destinationIPv4Address",
            "destinationIPv6Address",
            "dst4_addr",
            "dst6_addr",
        ],
        "destination",
    )?;
    let protocol = n(&["protocolIdentifier", "proto"])
        .ok_or("no protocol (protocolIdentifier or proto)")? as u8;
    let src_port = n(&["sourceTransportPort", "src_port"]).unwrap_or(0) as u16;
    let dst_port = n(&["destinationTransportPort", "dst_port"]).unwrap_or(0) as u16;
    let ms = |k_ms: &str, k_ns: &str, k_nfdump: &str| -> Result<u64, String> {
        if let Some(ns) = n(&[k_ns]) {
            return Ok(ns);
        }
        if let Some(ms) = n(&[k_ms]) {
            return Ok(ms * 1_000_000);
        }
        let t = s(&[k_nfdump]).ok_or_else(|| format!("no time ({k_ms} or {k_nfdump})"))?;
        nfdump_time(&t).ok_or_else(|| format!("'{t}' is not a time nfdump writes"))
    };
    let start_ns = ms("flowStartMilliseconds", "flowStartNanoseconds", "first")?;
    let end_ns = ms("flowEndMilliseconds", "flowEndNanoseconds", "last")?;
    Ok(WantedFlow {
        src,
        dst,
        src_port,
        dst_port,
        protocol,
        start_ns,
        end_ns: end_ns.max(start_ns),
    })
}

/// "2023-11-14T22:13:20.123" (UTC) as nanoseconds since the epoch.
fn nfdump_time(t: &str) -> Option<u64> {
    let with_zone = if t.ends_with('Z') {
        t.to_string()
    } else {
        format!("{t}Z")
    };
    pcap_ring::parse_utc(&with_zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_json_and_nfdumps_read_alike() {
        let probe = r#"{"sourceIPv4Address":"10.1.0.5","destinationIPv4Address":"10.2.0.80","sourceTransportPort":40000,"destinationTransportPort":443,"protocolIdentifier":6,"flowStartMilliseconds":1700000000000,"flowEndMilliseconds":1700000000039}"#;
        let nfdump = r#"[
{
	"type" : "FLOW",
	"proto" : 6,
	"src4_addr" : "10.1.0.5",
	"dst4_addr" : "10.2.0.80",
	"src_port" : 40000,
	"dst_port" : 443,
	"first" : "2023-11-14T22:13:20.000",
	"last" : "2023-11-14T22:13:20.039"
}
]"#;
        let a = parse(probe).unwrap();
        let b = parse(nfdump).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0].start_ns, 1_700_000_000_000_000_000);
        assert_eq!(a[0].describe(), "10.1.0.5:40000 -> 10.2.0.80:443 tcp");
        let e = parse("{\"sourceIPv4Address\":\"10.0.0.1\"}\n").unwrap_err();
        assert!(e.contains("record 1") && e.contains("destination"), "{e}");
    }

    #[test]
    fn directions_and_icmp() {
        let f = parse(r#"{"sourceIPv4Address":"10.0.0.1","destinationIPv4Address":"10.0.0.2","sourceTransportPort":1,"destinationTransportPort":2,"protocolIdentifier":17,"flowStartMilliseconds":1,"flowEndMilliseconds":2}"#).unwrap().remove(0);
        let (a, b) = (octets(f.src), octets(f.dst));
        assert!(f.matches(17, &a, &b, 1, 2, false));
        assert!(!f.matches(17, &b, &a, 2, 1, false));
        assert!(f.matches(17, &b, &a, 2, 1, true));
        assert!(!f.matches(6, &a, &b, 1, 2, true));
        let mut icmp = f.clone();
        icmp.protocol = 1;
        assert!(icmp.matches(1, &a, &b, 0, 0, false));
    }
}
