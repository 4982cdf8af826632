//! The tools' options (`probe extract`, `probe ring`, `probe spool`) and their configurations.

use super::args::DecapArgs;
use super::units::{parse_duration, parse_size};
use crate::tools::extract::{parse_time, ExtractConfig};
use crate::tools::ring::RingCmd;
use crate::tools::spool::SpoolCmd;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// `probe extract`.
#[derive(Args, Clone, Debug)]
pub struct ExtractArgs {
    /// Run even as root (reading a ring needs no privileges; better as a user in its group).
    #[arg(long)]
    pub allow_root: bool,
    /// The ring directory (the --pcap-dir of the run that wrote it).
    #[arg(long, value_name = "DIR")]
    pub pcap_dir: PathBuf,
    /// Only packets at or after this time: RFC 3339 UTC (2026-11-22T23:07:00.5Z) or seconds
    /// since the epoch (1795388820.5).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<u64>,
    /// Only packets at or before this time (same forms as --from).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<u64>,
    /// Write the packets here (pcap, nanosecond timestamps).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub out: PathBuf,
    /// Matching packets held in memory before they are sorted into run files next to the
    /// output and merged (a wide window then needs disk, not RAM).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_memory: u64,
    /// The ring's file-name prefix.
    #[arg(long, value_name = "PREFIX", default_value = "probe")]
    pub prefix: String,
    /// Which packets, in the --pcap-select language (default: all), e.g.
    /// 'src host 10.1.0.5 and src port 40000 and dst host 10.2.0.80 and dst port 443 and tcp'.
    #[arg(value_name = "EXPR", trailing_var_arg = true)]
    pub expr: Vec<String>,
    /// Tunnels removed before matching: the same as the writing run's, so the expression sees
    /// the inner packets it saw.
    #[command(flatten)]
    pub decap: DecapArgs,
    /// Extract the packets of these flow records instead of an expression: JSON lines of the
    /// probe's `--print json`, or `nfdump -o json` output (run nfdump with TZ=UTC); '-' reads
    /// standard input. Each flow's packets within its start and end, plus --margin.
    #[arg(long, value_name = "FILE|-", conflicts_with = "expr")]
    pub flows: Option<PathBuf>,
    /// With --flows: also the packets of each flow's reverse direction.
    #[arg(long, requires = "flows")]
    pub both_directions: bool,
    /// With --flows: how far before a flow's start and after its end packets still count
    /// (flow times are milliseconds; clocks of a feed and its probe differ a little).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, requires = "flows")]
    pub margin: std::time::Duration,
}

#[derive(Subcommand, Clone, Debug)]
pub enum RingArgs {
    /// How far back the ring reaches: time span, files, bytes, the selection each file was
    /// written under, gaps (writer behind, disk full, probe stopped) and holds.
    Status {
        /// The ring directory (the --pcap-dir of the run that writes or wrote it).
        #[arg(long, value_name = "DIR")]
        pcap_dir: PathBuf,
        /// The ring's file-name prefix.
        #[arg(long, value_name = "PREFIX", default_value = "probe")]
        prefix: String,
        /// Print it as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Keep the ring files covering a window out of retention, as evidence: hard links into
    /// DIR/held/UTC-TIME-REASON/ with a manifest (span, selection, SHA-256 of every file).
    Hold {
        #[arg(long, value_name = "DIR")]
        pcap_dir: PathBuf,
        #[arg(long, value_name = "PREFIX", default_value = "probe")]
        prefix: String,
        /// Why (recorded in the manifest and the hold's name).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Only the last DURATION of the ring (ending at its newest packet, or now while a file
        /// is being written); default: everything it holds.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        last: Option<Duration>,
        /// Most bytes all holds together may keep; a hold beyond it is refused (nothing held is
        /// ever deleted but by `probe ring release`).
        #[arg(long, value_name = "SIZE", default_value = "10GiB", value_parser = parse_size)]
        pcap_held_size: u64,
    },
    /// Remove a hold (its links and manifest; files still in the ring stay until retention).
    Release {
        #[arg(long, value_name = "DIR")]
        pcap_dir: PathBuf,
        /// The hold's name, as `probe ring status` lists it.
        #[arg(value_name = "NAME", required_unless_present = "all")]
        name: Option<String>,
        /// Release every hold.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

#[derive(Subcommand, Clone, Debug)]
pub enum SpoolArgs {
    /// What a destination's spool holds: segments, bytes, runs, records, the export times they
    /// span, and how many the collector has not acknowledged.
    Info {
        /// The spool= directory of the collector URL (or the destination's directory in it).
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        /// Print it as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Send a spool's messages again, each run with its own templates: to an IPFIX file
    /// (-w; tshark and Wireshark read it) or to a collector (--ipfix udp://, tcp://,
    /// tls://, sctp://). By default only what the collector did not acknowledge; everything with --all.
    Replay {
        /// The spool= directory of the collector URL (or the destination's directory in it).
        #[arg(long, value_name = "DIR")]
        spool: PathBuf,
        /// Only messages exported at or after this time: RFC 3339 UTC (2026-11-22T23:07:00Z)
        /// or seconds since the epoch.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<u64>,
        /// Only messages exported at or before this time (same forms as --from).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<u64>,
        /// Write an IPFIX file.
        #[arg(
            short = 'w',
            long = "write",
            value_name = "FILE",
            conflicts_with = "ipfix"
        )]
        out: Option<PathBuf>,
        /// Send to this collector.
        #[arg(long, value_name = "URL", value_parser = boxed_collector)]
        ipfix: Option<Box<ipfix_export::Destination>>,
        /// Messages per second to a UDP collector.
        #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        rate: u32,
        /// Also the messages the collector already acknowledged (for a UDP destination's
        /// spool, which keeps everything sent, this changes nothing).
        #[arg(long)]
        all: bool,
        /// For a tls:// collector: the CA that signs its certificate (default: the system's).
        #[arg(long, value_name = "FILE")]
        tls_ca: Option<PathBuf>,
        /// For a tls:// collector: the name its certificate carries, if not the URL's host.
        #[arg(long, value_name = "NAME")]
        tls_server_name: Option<String>,
        /// For a tls:// collector that wants one: the client certificate (with --tls-key).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The client certificate's private key (readable by its owner only).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

fn boxed_collector(url: &str) -> Result<Box<ipfix_export::Destination>, String> {
    super::collector_url::parse(url).map(Box::new)
}

impl SpoolArgs {
    pub fn command(&self) -> SpoolCmd {
        match self.clone() {
            SpoolArgs::Info { spool, json } => SpoolCmd::Info { spool, json },
            SpoolArgs::Replay {
                spool,
                from,
                to,
                out,
                ipfix,
                rate,
                all,
                tls_ca,
                tls_server_name,
                tls_cert,
                tls_key,
            } => SpoolCmd::Replay {
                spool,
                from,
                to,
                to_file: out,
                to_collector: ipfix.map(|d| d.target),
                rate,
                all,
                tls: Box::new(ipfix_export::TlsSettings {
                    ca_file: tls_ca,
                    server_name: tls_server_name,
                    client_cert: tls_cert,
                    client_key: tls_key,
                }),
            },
        }
    }
}

impl ExtractArgs {
    pub fn config(&self) -> anyhow::Result<ExtractConfig> {
        Ok(ExtractConfig {
            pcap_dir: self.pcap_dir.clone(),
            from: self.from,
            to: self.to,
            out: self.out.clone(),
            max_memory: self.max_memory,
            prefix: self.prefix.clone(),
            expr: self.expr.clone(),
            decap: self.decap.decap()?,
            flows: self.flows.clone(),
            both_directions: self.both_directions,
            margin: self.margin,
        })
    }
}

impl RingArgs {
    pub fn command(&self) -> RingCmd {
        match self.clone() {
            RingArgs::Status {
                pcap_dir,
                prefix,
                json,
            } => RingCmd::Status {
                pcap_dir,
                prefix,
                json,
            },
            RingArgs::Hold {
                pcap_dir,
                prefix,
                reason,
                last,
                pcap_held_size,
            } => RingCmd::Hold {
                pcap_dir,
                prefix,
                reason,
                last,
                pcap_held_size,
            },
            RingArgs::Release {
                pcap_dir,
                name,
                all,
            } => RingCmd::Release {
                pcap_dir,
                name,
                all,
            },
        }
    }
}
