//! File names that say when their frames are and sort by time:
//! `PREFIX-FIRST_LAST.pcap`, where FIRST and LAST are the UTC times of the file's earliest and
//! latest frames to the nanosecond (`YYYYmmddTHHMMSS.nnnnnnnnnZ`). `ls` and globs list files in
//! order, and the extractor skips a file by its name alone. A file being written is
//! `.PREFIX-OPENED.pcap.part`: hidden, and not a `*.pcap`.

/// The name of a complete file whose frames lie in `[first_ns, last_ns]`; `ext` is `pcap` or
/// `pcapng`.
pub fn file_name(prefix: &str, first_ns: u64, last_ns: u64, ext: &str) -> String {
    format!("{prefix}-{}_{}.{ext}", stamp(first_ns), stamp(last_ns))
}

/// The temporary name of a file opened at `ts_ns`.
pub fn partial_name(prefix: &str, ts_ns: u64, ext: &str) -> String {
    format!(".{prefix}-{}.{ext}.part", stamp(ts_ns))
}

fn strip_ext(name: &str) -> Option<(&str, &'static str)> {
    if let Some(n) = name.strip_suffix(".pcapng") {
        Some((n, "pcapng"))
    } else {
        name.strip_suffix(".pcap").map(|n| (n, "pcap"))
    }
}

/// If `name` is a temporary file of this ring, the extension it will have.
pub fn partial_ext(prefix: &str, name: &str) -> Option<&'static str> {
    let n = name
        .strip_prefix('.')?
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".part")?;
    let (stamp_part, ext) = strip_ext(n)?;
    parse_stamp(stamp_part).map(|_| ext)
}

/// Is `name` a temporary file of this ring?
pub fn is_partial_name(prefix: &str, name: &str) -> bool {
    partial_ext(prefix, name).is_some()
}

/// The time range a complete file's name states, or `None` for any other name.
pub fn parse_file_name(prefix: &str, name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (first, last) = strip_ext(rest)?.0.split_once('_')?;
    let (first, last) = (parse_stamp(first)?, parse_stamp(last)?);
    (first <= last).then_some((first, last))
}

/// RFC 3339 UTC with nanoseconds (`2026-11-22T23:07:00.123456789Z`).
pub fn format_utc(ts_ns: u64) -> String {
    let s = stamp(ts_ns);
    format!(
        "{}-{}-{}T{}:{}:{}",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..]
    )
}

/// Parses RFC 3339 UTC (`2026-11-22T23:07:00Z`, with up to nine fraction digits).
pub fn parse_utc(s: &str) -> Option<u64> {
    let body = s.strip_suffix('Z')?;
    let (date, time) = body.split_once('T')?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = hms.split(':').collect();
    if d.len() != 3
        || t.len() != 3
        || d[0].len() != 4
        || d.iter().chain(&t).skip(1).any(|x| x.len() != 2)
    {
        return None;
    }
    let compact = format!(
        "{}{}{}T{}{}{}.000000000Z",
        d[0], d[1], d[2], t[0], t[1], t[2]
    );
    let secs_ns = parse_stamp(&compact)?;
    let frac_ns = if frac.is_empty() {
        0
    } else {
        frac.parse::<u64>().ok()? * 10u64.pow(9 - frac.len() as u32)
    };
    Some(secs_ns + frac_ns)
}

/// `YYYYmmddTHHMMSS.nnnnnnnnnZ` for nanoseconds since the Unix epoch.
fn stamp(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let nanos = ts_ns % 1_000_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}.{nanos:09}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

fn parse_stamp(s: &str) -> Option<u64> {
    let rest = s.strip_suffix('Z')?;
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
        let n = file_name("probe", t, t + 60_000_000_000, "pcap");
        assert_eq!(
            n,
            "probe-20261122T230700.123456789Z_20261122T230800.123456789Z.pcap"
        );
        assert_eq!(parse_file_name("probe", &n), Some((t, t + 60_000_000_000)));
        let mut names: Vec<String> = [t + 5, 0, t, 951_782_400_000_000_000]
            .iter()
            .map(|&x| file_name("p", x, x + 1, "pcapng"))
            .collect();
        let mut by_name = names.clone();
        by_name.sort();
        names.sort_by_key(|n| parse_file_name("p", n).unwrap());
        assert_eq!(names, by_name);
        assert_eq!(
            parse_file_name("probe", &file_name("other", t, t, "pcap")),
            None
        );
        let bad_month = file_name("probe", t, t, "pcap").replace("202611", "202613");
        assert_eq!(parse_file_name("probe", &bad_month), None);
        assert_eq!(
            parse_file_name("probe", &file_name("probe", t + 1, t, "pcap")),
            None
        );
        let part = partial_name("probe", t, "pcapng");
        assert!(is_partial_name("probe", &part));
        assert_eq!(parse_file_name("probe", &part), None);
        assert!(!is_partial_name("probe", &n));
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = 1_795_388_820_123_456_789;
        assert_eq!(format_utc(t), "2026-11-22T23:07:00.123456789Z");
        assert_eq!(parse_utc("2026-11-22T23:07:00.123456789Z"), Some(t));
        assert_eq!(
            parse_utc("2026-11-22T23:07:00Z"),
            Some(1_795_388_820_000_000_000)
        );
        assert_eq!(
            parse_utc("2026-11-22T23:07:00.5Z"),
            Some(1_795_388_820_500_000_000)
        );
        assert_eq!(parse_utc("2026-11-22 23:07:00Z"), None);
        assert_eq!(parse_utc("2026-13-22T23:07:00Z"), None);
    }
}
