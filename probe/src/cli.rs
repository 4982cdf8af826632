//! Command-line options shared by the probe's subcommands, and their parsers.

use clap::Args;
use ipfix_export::Destination;
use std::path::PathBuf;
use std::time::Duration;

/// Parses a duration with a unit: `500ms`, `15s`, `2m`, `1h`; a bare number means seconds.
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
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_destination(s: &str) -> Result<Destination, String> {
    Destination::parse(s).map_err(|e| e.to_string())
}

fn parse_nonzero(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{s}' must be a whole number greater than 0")),
    }
}

/// Output formats for people without a collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintFormat {
    /// One JSON object per flow record, keyed by IANA element names.
    Json,
}

/// Where flow records go and how they are encoded.
#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// Send IPFIX to a collector; repeat for several (each receives every record).
    #[arg(long = "ipfix", value_name = "URL", value_parser = parse_destination)]
    pub ipfix: Vec<Destination>,
    /// Also print flow records on stdout as they are exported.
    #[arg(long, value_name = "FORMAT")]
    pub print: Option<PrintFormat>,
    /// IPFIX observation domain id of this probe.
    #[arg(long, value_name = "ID", default_value_t = 1)]
    pub observation_domain: u32,
    /// Largest IPFIX message in bytes (keep it under the path MTU minus IP/UDP headers).
    #[arg(long, value_name = "BYTES", default_value_t = 1400)]
    pub mtu: usize,
    /// Re-send templates over UDP this often, so a collector started late can decode.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub template_refresh: Duration,
    /// Also re-send templates every N messages (0: by time only).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub template_refresh_messages: u32,
    /// Most IPFIX messages per second (0: unlimited). UDP collectors lose what arrives faster
    /// than they read; reading a file is far faster than any collector.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 10_000)]
    pub max_export_rate: u32,
}

/// How packets become flows.
#[derive(Args, Clone, Debug)]
pub struct MeterArgs {
    /// Export a flow after this long without packets.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Export a long-lived flow this often (records are deltas).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub active_timeout: Duration,
    /// After RST, or FIN from both ends, export the TCP flow once it has been quiet this long.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub tcp_end_grace: Duration,
    /// Most flows held at once; beyond it the least recently seen is exported (lackOfResources).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = parse_nonzero)]
    pub max_flows: usize,
    /// Leave VLAN ids out of the flow key (both directions of a routed VLAN pair become one key).
    #[arg(long)]
    pub no_vlan_key: bool,
    /// IP datagrams whose fragments are tracked at once.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = parse_nonzero)]
    pub fragment_table_size: usize,
    /// Forget a fragmented datagram whose last fragment has not come after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub fragment_timeout: Duration,
}

/// `probe read`.
#[derive(Args, Clone, Debug)]
pub struct ReadArgs {
    /// pcap or pcapng files, metered in the order given as one continuous capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub export: ExportArgs,
    #[command(flatten)]
    pub meter: MeterArgs,
    /// Write the run's books (frames, flows, export) as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
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
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("15x").unwrap_err().contains("e.g. 500ms"));
        assert!(parse_duration("").is_err());
    }
}
