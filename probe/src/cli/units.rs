//! The units and lists options are written in: durations with a unit, sizes, index lists,
//! IP prefixes. Shared by every subcommand's options and by the config file's checks.

use crate::live::config::{Cidr, QueueSelection};
use std::time::Duration;

/// Parses a duration with a unit: `500ms`, `15s`, `2m`, `1h`. A bare number is refused (but `0`),
/// so nobody is left guessing whether 30 meant seconds or minutes.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad =
        || format!("'{s}' is not a duration: write a number and a unit, e.g. 500ms, 15s, 2m, 1h");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        // A bare number is refused, not read as seconds: tools disagree (nfcapd's -t is
        // seconds, softflowd's timeouts too, nfdump's -T minutes), so the unit is written out.
        "" if n != 0.0 => {
            return Err(format!(
                "'{s}' needs a unit: write {num}s for seconds (or {num}ms, {num}m, {num}h)"
            ))
        }
        "" => 0.0,
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: `4096`, `500KB`, `128MiB`, `2GiB` (KB/MB/GB are powers of 1000, KiB/MiB/GiB
/// of 1024; a bare number is bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || format!("'{s}' is not a size: write e.g. 4096, 500KB, 128MiB or 2GiB");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// A whole number greater than zero.
pub fn parse_nonzero(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' must be a whole number greater than 0")),
    }
}

/// Parses an IP prefix: `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host).
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let s = s.trim();
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = a.parse().map_err(|_| {
        format!("'{s}' is not an IP prefix: write e.g. 192.0.2.0/24, 2001:db8::/32 or 10.0.0.1")
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match l {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("'{s}': the prefix length must be 0 to {max}")),
        },
    };
    Ok(Cidr { addr, len })
}

/// Parses `all`, `0,1,3` or ranges like `0-3`.
pub fn parse_queues(s: &str) -> Result<QueueSelection, String> {
    if s.trim() == "all" {
        return Ok(QueueSelection::All);
    }
    parse_index_list(s)
        .map(QueueSelection::List)
        .map_err(|e| format!("{e}, or 'all'"))
}

/// Parses `0,2,4-7` into a sorted list without duplicates.
pub fn parse_index_list(s: &str) -> Result<Vec<u32>, String> {
    let bad = || format!("'{s}' is not a list of numbers: write e.g. 0,1 or 0-3");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A UMEM frame size: 2048 or 4096.
pub fn parse_frame_size(s: &str) -> Result<u32, String> {
    match s.trim() {
        "2048" => Ok(2048),
        "4096" => Ok(4096),
        _ => Err(format!("'{s}': the frame size must be 2048 or 4096")),
    }
}

/// A ring size: a power of two from 64 to 65536.
pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n.is_power_of_two() && (64..=65536).contains(&n) => Ok(n),
        _ => Err(format!(
            "'{s}': ring sizes must be a power of two from 64 to 65536"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("30").unwrap_err().contains("write 30s"));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("15x").unwrap_err().contains("e.g. 500ms"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_size("500KB").unwrap(), 500_000);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2gib").unwrap(), 2 << 30);
        assert!(parse_size("12XB").unwrap_err().contains("128MiB"));
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn cidrs_queues_cpus() {
        let c = parse_cidr("192.0.2.0/24").unwrap();
        assert_eq!((c.addr.to_string(), c.len), ("192.0.2.0".into(), 24));
        assert_eq!(parse_cidr("2001:db8::1").unwrap().len, 128);
        assert!(parse_cidr("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(parse_cidr("nope")
            .unwrap_err()
            .contains("e.g. 192.0.2.0/24"));
        assert_eq!(parse_queues("all").unwrap(), QueueSelection::All);
        assert_eq!(
            parse_queues("3,0-1,1").unwrap(),
            QueueSelection::List(vec![0, 1, 3])
        );
        assert!(parse_queues("x").unwrap_err().contains("'all'"));
        assert!(parse_index_list("3-1").is_err());
    }
}
