//! Command-line options shared by the probe's subcommands, and their parsers.

use crate::export::ExportConfig;
use crate::flow::CacheConfig;
use crate::meter::{Decoder, DedupConfig, FlowMeter, FragmentConfig, Meter};
use crate::wire::Decap;
use clap::Args;
use ipfix_export::{Destination, EncoderConfig, ExporterConfig};
use std::path::PathBuf;
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

fn parse_selection(s: &str) -> Result<crate::select::Selection, String> {
    crate::select::Selection::parse(s).map_err(|e| e.to_string())
}

fn parse_destination(s: &str) -> Result<Destination, String> {
    crate::collector_url::parse(s)
}

pub(crate) fn parse_nonzero(s: &str) -> Result<usize, String> {
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
    /// One aligned line per flow record, for people reading a terminal.
    Table,
}

/// Where flow records go and how they are encoded.
#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// Where flow records go; repeat for several (each receives every record):
    /// udp://HOST:PORT, tcp://HOST:PORT, sctp://HOST:PORT, tls://HOST:PORT (IPFIX), netflow9://HOST:PORT,
    /// netflow5://HOST:PORT (legacy, over UDP), file:///PATH[?rotate=5m&max-size=64MiB]
    /// (IPFIX files). IPv6 hosts in brackets: udp://[2001:db8::1]:4739.
    #[arg(long = "ipfix", value_name = "URL", value_parser = parse_destination)]
    pub ipfix: Vec<Destination>,
    /// Also print flow records on stdout as they are exported.
    #[arg(long, value_name = "FORMAT")]
    pub print: Option<PrintFormat>,
    /// IPFIX observation domain id of this probe (NetFlow v9 source id; v5 engine id).
    #[arg(long, value_name = "ID", default_value_t = 1)]
    pub observation_domain: u32,
    /// Largest IPFIX message in bytes (keep it under the path MTU minus IP/UDP headers).
    #[arg(long, value_name = "BYTES", default_value_t = 1400)]
    pub mtu: usize,
    /// Re-send templates over UDP this often, so a collector started late can decode.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub template_refresh: Duration,
    /// Also re-send templates over UDP every N messages (0: by time only).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub template_refresh_messages: u32,
    /// Send the statistics options records (metered, not metered, dropped, not sent) this often;
    /// also at start and at the end.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub options_interval: Duration,
    /// Most messages per second to each UDP collector (0: unlimited). UDP collectors lose what
    /// arrives faster than they read; reading a file is far faster than any collector.
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = 10_000)]
    pub max_export_rate: u32,
    /// Messages held for each TCP/SCTP collector while it is away or slow; beyond this the
    /// newest are dropped and counted.
    #[arg(long, value_name = "MESSAGES", default_value_t = 65_536, value_parser = parse_nonzero)]
    pub stream_backlog: usize,
    /// Anonymize exported addresses with Crypto-PAn (prefix-preserving) under the 32-byte key
    /// in this file, and clear MAC addresses. Applies to every collector, file and --print; the
    /// PCAP ring keeps the real packets.
    #[arg(long, value_name = "KEYFILE")]
    pub anonymize: Option<PathBuf>,
    /// At the end, how long TCP/SCTP collectors get to take what is still queued.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub export_drain: Duration,
    /// Give every record its Community ID (v1): in IPFIX as communityId (PEN 32473, element
    /// 30), in --print as communityId. It is a hash of the addresses, ports and protocol the
    /// record already exports, so it adds no personal data; with --anonymize it is the ID of
    /// the anonymized addresses.
    #[arg(long)]
    pub community_id: bool,
    /// The seed of those Community IDs: 0, as Zeek, Suricata and Arkime use unless configured
    /// otherwise; set it to what they use.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "community_id")]
    pub community_id_seed: u16,
    /// tls:// collectors: PEM file of the CA certificates that may sign a collector's
    /// certificate (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// tls:// collectors: the name their certificate must carry (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// tls:// collectors: a client certificate chain (PEM) for mutual authentication; with
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; refused when group or others may read it.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ExportArgs {
    /// The exporter's configuration for what `meter` produces (biflows, tunnelled flows).
    pub fn export_config(&self, meter: &MeterArgs) -> ExportConfig {
        let biflow = meter.biflow;
        ExportConfig {
            exporter: ExporterConfig {
                encoder: EncoderConfig {
                    observation_domain: self.observation_domain,
                    mtu: self.mtu,
                    inline_templates: true,
                    template_refresh_secs: Some(self.template_refresh.as_secs().max(1) as u32),
                    template_refresh_messages: Some(self.template_refresh_messages)
                        .filter(|&n| n > 0),
                    sampling: None,
                    biflow,
                    tunnels: !meter.decap.decap.is_none(),
                    active_timeout_secs: meter.active_timeout.as_secs().min(u32::MAX as u64) as u32,
                },
                max_udp_messages_per_sec: Some(self.max_export_rate).filter(|&r| r > 0),
                stream_backlog_messages: self.stream_backlog,
                tls: ipfix_export::TlsSettings {
                    ca_file: self.tls_ca.clone(),
                    server_name: self.tls_server_name.clone(),
                    client_cert: self.tls_cert.clone(),
                    client_key: self.tls_key.clone(),
                },
                ..ExporterConfig::default()
            },
            destinations: self.ipfix.clone(),
            print: self.print,
            options_interval: self.options_interval.max(Duration::from_secs(1)),
            drain: self.export_drain,
            anonymize: self.anonymize.clone(),
            community_id: self.community_id.then_some(self.community_id_seed),
        }
    }
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
    /// Most flows held at once, shared out between the metering workers; beyond a worker's
    /// share the least recently seen is exported (lackOfResources).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = parse_nonzero)]
    pub max_flows: usize,
    /// Leave VLAN ids out of the flow key (both directions of a routed VLAN pair become one key).
    #[arg(long)]
    pub no_vlan_key: bool,
    /// Export biflows (RFC 5103): each flow with its reverse direction in one record, the
    /// initiator (bare SYN, else first packet) forward. Both directions meet in one cache by
    /// the fan-out's symmetric hash (with --rss symmetric, the NIC must keep them together). NetFlow v9/v5 receive the two directions as two
    /// records.
    #[arg(long)]
    pub biflow: bool,
    /// IP datagrams whose fragments are tracked at once.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = parse_nonzero)]
    pub fragment_table_size: usize,
    /// Forget a fragmented datagram whose last fragment has not come after this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub fragment_timeout: Duration,
    #[command(flatten)]
    pub decap: DecapArgs,
    /// Count packets that repeat one seen within this window (same inner IP packet apart from
    /// TTL and checksum: overlapping mirror sessions) and drop them before metering, e.g.
    /// '--dedup 2ms'. Off by default: a feed without overlaps loses nothing to it.
    #[arg(long, value_name = "WINDOW", value_parser = parse_duration)]
    pub dedup: Option<Duration>,
    /// With --dedup: only count the duplicates, meter them as usual.
    #[arg(long, requires = "dedup")]
    pub dedup_keep: bool,
    /// Metering workers, each with its own flow cache; a symmetric hash of the inner flow key
    /// gives both directions of a connection to the same one. capture: default, the CPUs the
    /// probe may run on; read: default 1 (the reading thread meters), more to meter a large
    /// capture on several cores (the records are the same).
    #[arg(long, value_name = "N", value_parser = parse_nonzero)]
    pub workers: Option<usize>,
    /// Pin metering worker i to the i-th CPU of this list (e.g. 2,3 or 2-3).
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    pub worker_cpus: Option<CpuList>,
    /// Read what each flow is from its first packets: 'dns' (the question's name, type and
    /// class; the response code and answer count), 'tls' (server name, ALPN, versions, JA4,
    /// the server's cipher suite), 'http' (method, Host, target, User-Agent, status), a list,
    /// or 'all'. Off by default: names, paths and User-Agents are personal data.
    #[arg(long, value_name = "LIST", default_value = "none", value_parser = parse_app)]
    pub app: crate::app::AppSet,
    /// The parsers the PCAP selection's name primitives need (set from --pcap-select, not a
    /// flag): they run, but their fields stay out of the records unless --app asks.
    #[arg(skip)]
    pub select_app: crate::app::AppSet,
}

fn parse_app(s: &str) -> Result<crate::app::AppSet, String> {
    crate::app::AppSet::parse(s)
}

/// Which tunnels are removed before metering and selection.
#[derive(Args, Clone, Debug)]
pub struct DecapArgs {
    /// Encapsulations to remove: 'all', 'none' (meter outer headers), or a list of erspan,
    /// gre (with NVGRE), vxlan, geneve, gtpu, ipip, pppoe.
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = parse_decap)]
    pub decap: Decap,
    /// Another UDP port that carries VXLAN or VXLAN-GPE (4789, Linux's 8472 and GPE's 4790
    /// always do); repeatable.
    #[arg(long, value_name = "PORT")]
    pub vxlan_port: Vec<u16>,
    /// Another UDP port that carries Geneve (6081 always does); repeatable.
    #[arg(long, value_name = "PORT")]
    pub geneve_port: Vec<u16>,
}

fn parse_decap(s: &str) -> Result<Decap, String> {
    Decap::parse(s)
}

impl DecapArgs {
    /// The decoder's configuration; fails naming the flag when there are too many ports.
    pub fn decap(&self) -> anyhow::Result<Decap> {
        let mut d = self.decap;
        for p in &self.vxlan_port {
            d.add_vxlan_port(*p).map_err(anyhow::Error::msg)?;
        }
        for p in &self.geneve_port {
            d.add_geneve_port(*p).map_err(anyhow::Error::msg)?;
        }
        Ok(d)
    }
}

impl MeterArgs {
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig {
            idle_timeout_ns: self.idle_timeout.as_nanos() as u64,
            active_timeout_ns: self.active_timeout.as_nanos() as u64,
            tcp_end_grace_ns: self.tcp_end_grace.as_nanos() as u64,
            max_flows: self.max_flows,
            vlan_in_key: !self.no_vlan_key,
            biflow: self.biflow,
        }
    }

    pub fn dedup_config(&self) -> Option<DedupConfig> {
        self.dedup.map(|w| DedupConfig {
            window_ns: w.as_nanos() as u64,
            drop: !self.dedup_keep,
        })
    }

    /// The first stage with every setting of these options: what each RX thread (or the file
    /// reader) of the fan-out runs.
    pub fn decoder(&self) -> anyhow::Result<Decoder> {
        let mut d = Decoder::new(self.fragment_config());
        d.set_decap(self.decap.decap()?);
        d.set_dedup(self.dedup_config());
        d.set_app(self.app, self.select_app);
        Ok(d)
    }

    /// A meter with every setting of these options, holding the whole flow budget.
    pub fn meter(&self) -> anyhow::Result<Meter> {
        self.meter_sharing(1)
    }

    /// A meter holding one of `parts` shares of the flow budget (one-hop queues).
    pub fn meter_sharing(&self, parts: usize) -> anyhow::Result<Meter> {
        Ok(Meter::from_stages(
            self.decoder()?,
            FlowMeter::new(self.cache_config().share(parts)),
        ))
    }

    pub fn fragment_config(&self) -> FragmentConfig {
        FragmentConfig {
            capacity: self.fragment_table_size,
            timeout_ns: self.fragment_timeout.as_nanos() as u64,
        }
    }
}

/// The rolling PCAP ring of selected packets.
#[derive(Args, Clone, Debug)]
pub struct PcapArgs {
    /// Keep selected packets as rolling pcap files in this directory (created if missing).
    #[arg(long, value_name = "DIR", requires = "pcap_select")]
    pub pcap_dir: Option<PathBuf>,
    /// Which packets to keep, tcpdump-like: 'net 10.1.0.0/16 and port 445', 'host 2001:db8::1',
    /// 'src net 192.0.2.0/24 or vlan 100', 'tcp dst port 22', 'all'. Nothing is kept unless
    /// selected.
    #[arg(long, value_name = "EXPR", value_parser = parse_selection, requires = "pcap_dir")]
    pub pcap_select: Option<crate::select::Selection>,
    /// Start a new file at this size.
    #[arg(long, value_name = "SIZE", default_value = "128MiB", value_parser = parse_size)]
    pub pcap_file_size: u64,
    /// Start a new file when the current one is this old.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub pcap_file_duration: Duration,
    /// Keep at most this many bytes of files; the oldest are deleted first.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub pcap_ring_size: Option<u64>,
    /// Keep at most this many files; the oldest are deleted first.
    #[arg(long, value_name = "N", value_parser = parse_nonzero)]
    pub pcap_max_files: Option<usize>,
    /// File format: pcap with nanosecond timestamps, or pcapng carrying the interface's name.
    #[arg(long, value_name = "FORMAT", default_value = "pcap")]
    pub pcap_format: PcapFormat,
    /// Store only the first N bytes of each packet (privacy); the original length is kept.
    #[arg(long, value_name = "BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(14..))]
    pub pcap_snaplen: u32,
    /// Hold the first N packets of every flow (in a bounded buffer per capture thread) so that
    /// a flow a name primitive (sni, dns name, http host, ja4) marks later is kept from its
    /// first packet, its SYN. 0: from the marking packet on.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub pcap_lookback: u16,
}

/// The ring's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PcapFormat {
    Pcap,
    Pcapng,
}

impl PcapArgs {
    /// The parsers the selection's name primitives need.
    pub fn app_needs(&self) -> crate::app::AppSet {
        self.pcap_select
            .as_ref()
            .map_or(crate::app::AppSet::default(), |s| s.app_needs())
    }

    /// The ring's configuration and selection, when a ring was asked for; `interface` names the
    /// source in pcapng files.
    pub fn ring(
        &self,
        interface: &str,
    ) -> Option<(pcap_ring::RingConfig, crate::select::Selection)> {
        let dir = self.pcap_dir.as_ref()?;
        let select = self.pcap_select.clone()?;
        let mut cfg = pcap_ring::RingConfig::new(dir);
        cfg.file_size = self.pcap_file_size;
        cfg.file_duration_ns = self.pcap_file_duration.as_nanos() as u64;
        cfg.max_total_bytes = self.pcap_ring_size;
        cfg.max_files = self.pcap_max_files;
        cfg.snaplen = self.pcap_snaplen;
        cfg.selection = select.text().to_string();
        if self.pcap_format == PcapFormat::Pcapng {
            cfg.format = pcap_ring::FileFormat::Pcapng {
                interface: interface.to_string(),
            };
        }
        Some((cfg, select))
    }
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
    #[command(flatten)]
    pub pcap: PcapArgs,
    /// Write the run's books (frames, flows, export) as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Run even as root. Reading files needs no privileges, so as root the probe refuses
    /// unless told (this flag, or PROBE_ALLOW_ROOT=1 in the environment).
    #[arg(long)]
    pub allow_root: bool,
    /// Read settings from a TOML file whose keys are these long option names
    /// (idle-timeout = "30s", ipfix = ["udp://..."]); the command line overrides it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// An IP prefix: `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub len: u8,
}

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

/// Which RX queues to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueSelection {
    All,
    List(Vec<u32>),
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

/// CPUs to pin threads to, in order (a newtype so clap takes the list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<u32>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    parse_index_list(s).map(CpuList)
}

/// What the NIC's RSS does with the two directions of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RssMode {
    /// Both directions reach the same queue.
    Symmetric,
    /// Not known to: the directions may land on different queues (the safe default).
    Asymmetric,
}

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeArg {
    /// Native when the driver supports it, generic otherwise.
    Auto,
    /// In the driver (fails if the driver has no XDP support).
    Native,
    /// The kernel's generic hook: every device, more CPU per frame.
    Generic,
}

/// Where each frame's arrival time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TimestampArg {
    /// The best this kernel allows: xdp-metadata, else xdp-prefix, else userspace.
    Auto,
    /// Kernel time in the XDP metadata area (needs bpf_xdp_adjust_meta).
    XdpMetadata,
    /// Kernel time in a 16-byte prefix the RX thread strips (needs bpf_xdp_adjust_head).
    XdpPrefix,
    /// The RX thread's clock when it reads a batch (least precise).
    Userspace,
}

impl TimestampArg {
    /// The stamp asked for; `None`: the best that loads.
    pub fn stamp(self) -> Option<bpf::Stamp> {
        match self {
            TimestampArg::Auto => None,
            TimestampArg::XdpMetadata => Some(bpf::Stamp::Metadata),
            TimestampArg::XdpPrefix => Some(bpf::Stamp::Prefix),
            TimestampArg::Userspace => Some(bpf::Stamp::UserSpace),
        }
    }
}

/// How 1-in-N sampling picks frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleMode {
    /// Every Nth frame of each RX queue (systematic count-based sampling).
    Deterministic,
    /// Each frame with probability 1/N.
    Random,
}

/// `probe doctor`: a preflight of one interface.
#[derive(Args, Clone, Debug)]
pub struct DoctorArgs {
    /// The interface capture would run on.
    #[arg(short = 'i', long, value_name = "IF")]
    pub interface: String,
    /// The UMEM frame size capture would use (as `probe capture --frame-size`).
    #[arg(long, value_name = "BYTES", default_value_t = 2048, value_parser = parse_frame_size)]
    pub frame_size: u32,
    /// UMEM frames per queue (as `probe capture --umem-frames`).
    #[arg(long, value_name = "N", default_value_t = 32768)]
    pub umem_frames: u32,
}

/// `probe capture`.
#[derive(Args, Clone, Debug)]
pub struct CaptureArgs {
    /// The capture interface (a SPAN or tap port). Repeat it for the ports of a passive tap
    /// (-i tapA -i tapB, one direction each): every interface feeds the same flow caches, so
    /// both directions of a connection meet; records carry the ingressInterface of each.
    #[arg(short = 'i', long, value_name = "IF", required = true)]
    pub interface: Vec<String>,
    /// RX queues to capture on each interface, one RX thread each: 'all' or a list such as
    /// 0,1 or 0-3.
    #[arg(long, value_name = "all|LIST", default_value = "all", value_parser = parse_queues)]
    pub queues: QueueSelection,
    /// Where the XDP program runs.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub xdp_mode: XdpModeArg,
    /// AF_XDP zero-copy (needs driver support); auto falls back to copy mode.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub zero_copy: crate::live::xsk::ZeroCopy,
    /// Where each frame's arrival time comes from. 'auto' takes the best this kernel loads
    /// and says at start which one and why; naming one makes its refusal an error.
    #[arg(long, value_name = "SOURCE", default_value = "auto")]
    pub timestamps: TimestampArg,
    /// Pin RX thread i (queues in order, interface by interface) to the i-th CPU of this list
    /// (e.g. 2,3 or 2-3). --cpus is the old name.
    #[arg(long, visible_alias = "cpus", value_name = "LIST", value_parser = parse_cpus)]
    pub rx_cpus: Option<CpuList>,
    /// Whether the NIC's RSS sends both directions of a connection to the same queue.
    /// 'symmetric' (a symmetric Toeplitz key, or one queue) lets each RX thread meter its own
    /// frames when there are at least as many queues as workers (no hand-off); otherwise RX
    /// threads hand each frame's summary to the worker that owns its flow.
    #[arg(long, value_name = "MODE", default_value = "asymmetric")]
    pub rss: RssMode,
    /// Meter 1 in N frames, chosen in the kernel; the rest go to the kernel stack. Flow counts
    /// are then of sampled packets (the books and stats say N).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// How sampling picks frames.
    #[arg(long, value_name = "MODE", default_value = "deterministic")]
    pub sample_mode: SampleMode,
    /// Leave traffic from or to these prefixes unmetered (comma-separated or repeated), e.g.
    /// the collector's address so the probe does not meter its own export.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',', value_parser = parse_cidr)]
    pub ignore: Vec<Cidr>,
    /// UMEM frames per queue (the kernel-to-RX-thread buffer; with the default frame size,
    /// 64 MiB of locked memory per queue).
    #[arg(long, value_name = "N", default_value_t = 32768, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub umem_frames: u32,
    /// Bytes per UMEM frame: 2048 or 4096. A frame holds 256 bytes of headroom, so frames
    /// longer than 1792 bytes need 4096 (jumbo frames); longer ones are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = 2048, value_parser = parse_frame_size)]
    pub frame_size: u32,
    /// RX ring entries per queue (a power of two). The ring absorbs the moments the worker is
    /// not running (on a VM, a descheduled vCPU): 16384 covers 25 ms at 650 kpps.
    #[arg(long, value_name = "N", default_value_t = 16384, value_parser = parse_ring_size)]
    pub rx_ring: u32,
    /// Most descriptors taken from the RX ring per poll (32 to 4096: fewer would spend more on
    /// ring bookkeeping than on frames).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(32..=4096))]
    pub batch: u32,
    /// After attaching XDP and opening every socket and file, run as this user (name or
    /// number), keeping only CAP_BPF in the main thread (for the program's counters). The PCAP
    /// ring directory is given to the user; IPFIX file directories must be writable by it.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// The group for --user (default: the user's primary group).
    #[arg(long, value_name = "GROUP", requires = "user")]
    pub group: Option<String>,
    /// Leave the interface's promiscuous mode alone (by default the probe holds it promiscuous
    /// while it runs, as tcpdump does, so a SPAN or tap port's frames for other hosts are seen).
    #[arg(long)]
    pub no_promisc: bool,
    /// Busy-poll the driver from the RX threads (SO_PREFER_BUSY_POLL): lower latency and fewer
    /// interrupts, at the price of a spinning core per RX thread.
    #[arg(long)]
    pub busy_poll: bool,
    /// Stop after this long (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub export: ExportArgs,
    #[command(flatten)]
    pub meter: MeterArgs,
    #[command(flatten)]
    pub pcap: PcapArgs,
    /// Write the run's books (per queue and in total) as JSON to this file at the end.
    #[arg(long, value_name = "PATH")]
    pub stats_json: Option<PathBuf>,
    /// Read settings from a TOML file whose keys are these long option names
    /// (interface = "eth1", ipfix = ["udp://..."]); the command line overrides it. Check one
    /// with `probe check-config FILE`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve the live counters in Prometheus text format at http://ADDR/metrics (keep it on
    /// loopback or a management network, e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Print a one-line summary on stderr this often (0: only at the end).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub stats_interval: Duration,
}

fn parse_frame_size(s: &str) -> Result<u32, String> {
    match s.trim() {
        "2048" => Ok(2048),
        "4096" => Ok(4096),
        _ => Err(format!("'{s}': the frame size must be 2048 or 4096")),
    }
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
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

    #[derive(clap::Parser)]
    struct Capture {
        #[command(flatten)]
        args: CaptureArgs,
    }

    #[test]
    fn capture_flags_parse() {
        use clap::Parser;
        let c = Capture::try_parse_from([
            "capture",
            "-i",
            "eth1",
            "--cpus",
            "2-3",
            "--rss",
            "symmetric",
            "--queues",
            "0,1",
            "--ignore",
            "192.0.2.0/24,2001:db8::/32",
            "--sample",
            "8",
            "--sample-mode",
            "random",
        ])
        .unwrap()
        .args;
        assert_eq!(c.rx_cpus, Some(CpuList(vec![2, 3])));
        assert_eq!(c.rss, RssMode::Symmetric);
        assert_eq!(c.interface, ["eth1"]);
        assert_eq!(c.queues, QueueSelection::List(vec![0, 1]));
        assert_eq!(c.ignore.len(), 2);
        assert_eq!((c.sample, c.sample_mode), (8, SampleMode::Random));
        assert!(Capture::try_parse_from(["capture", "-i", "x", "--sample", "0"]).is_err());
    }
}
