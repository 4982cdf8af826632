//! File names that sort by time: `PREFIX-YYYYmmddTHHMMSS.nnnnnnnnnZ.pcap`, the UTC time of a
//! file's first frame to the nanosecond, so `ls`, globs and the extractor see files in order
//! and can skip a file by its name alone.

/// The name of a file whose first frame is at `ts_ns` (nanoseconds since the Unix epoch).
pub fn file_name(prefix: &str, ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let nanos = ts_ns % 1_000_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{prefix}-{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{nanos:09}Z.pcap",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// The first-frame time a ring file's name states, or `None` for any other name.
pub fn parse_file_name(prefix: &str, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let rest = rest.strip_suffix("Z.pcap")?;
    // YYYYmmddTHHMMSS.nnnnnnnnn
    if rest.len() != 25 || rest.as_bytes()[8] != b'T' || rest.as_bytes()[15] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = rest.get(r)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let nanos = num(16..25)?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + s;
    Some(secs * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let t = 1_795_388_820_123_456_789; // 2026-11-22T23:07:00.123456789Z
        let n = file_name("probe", t);
        assert_eq!(n, "probe-20261122T230700.123456789Z.pcap");
        assert_eq!(parse_file_name("probe", &n), Some(t));
        let mut names: Vec<String> = [t + 5, 0, t, 951_782_400_000_000_000]
            .iter()
            .map(|&x| file_name("p", x))
            .collect();
        let by_name = {
            let mut v = names.clone();
            v.sort();
            v
        };
        names.sort_by_key(|n| parse_file_name("p", n).unwrap());
        assert_eq!(names, by_name);
        assert_eq!(
            parse_file_name("probe", "other-20261122T230700.123456789Z.pcap"),
            None
        );
        assert_eq!(
            parse_file_name("probe", "probe-20261322T230700.123456789Z.pcap"),
            None
        );
        assert_eq!(
            parse_file_name("probe", ".probe-20261122T230700.123456789Z.pcap.part"),
            None
        );
    }
}
