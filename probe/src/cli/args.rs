//! The subcommands' options, as clap reads them: one struct per option group (export, meter,
//! PCAP ring) flattened into each subcommand that takes it. [`super::jobs`] turns them into
//! the jobs' own configurations.

use super::one_of;
use super::units::{
    parse_cidr, parse_duration, parse_frame_size, parse_index_list, parse_nonzero, parse_queues,
    parse_ring_size, parse_size,
};
use crate::live::config::{
    Cidr, QueueSelection, RssMode, SampleMode, ZeroCopy, TIMESTAMPS, XDP_MODES,
};
use crate::pipeline::exporter::PrintFormat;
use crate::pipeline::ring_keeper::PcapFormat;
use bpf::{Stamp, XdpMode};
use clap::builder::TypedValueParser;
use clap::Args;
use ipfix_export::Destination;
use probe_core::wire::Decap;
use std::path::PathBuf;
use std::time::Duration;

/// A choice whose `auto` is `None` (a newtype: clap reads an `Option` field as an optional
/// flag, not as an optional value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrAuto<T>(pub Option<T>);

/// CPUs to pin threads to, in order (a newtype so clap takes the list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<u32>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    parse_index_list(s).map(CpuList)
}

fn parse_selection(s: &str) -> Result<probe_core::select::Selection, String> {
    probe_core::select::Selection::parse(s).map_err(|e| e.to_string())
}

fn parse_destination(s: &str) -> Result<Destination, String> {
    super::collector_url::parse(s)
}

/// Where flow records go and how they are encoded.
#[derive(Args, Clone, Debug)]
pub struct ExportArgs {
    /// Where flow records go; repeat for several (each receives every record):
    /// udp://HOST:PORT, tcp://HOST:PORT, sctp://HOST:PORT, tls://HOST:PORT (IPFIX), netflow9://HOST:PORT,
    /// netflow5://HOST:PORT (legacy, over UDP), file:///PATH[?rotate=5m&max-size=64MiB]
    /// (IPFIX files). IPv6 hosts in brackets: udp://[2001:db8::1]:4739. Collector URLs take
    /// ?spool=DIR (a bounded on-disk queue: spool-size=SIZE, spool-age=DURATION,
    /// spool-policy=drop-oldest|drop-newest, spool-sync=DURATION) and, over UDP, rate=N.
    #[arg(long = "ipfix", value_name = "URL", value_parser = parse_destination)]
    pub ipfix: Vec<Destination>,
    /// Also print flow records on stdout as they are exported.
    #[arg(long, value_name = "FORMAT", value_parser = one_of(&PrintFormat::CHOICES))]
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
    /// Live capture: flow records held for each collector while it cannot take them (its
    /// --max-export-rate is spent, its --stream-backlog full). They leave conversations
    /// first, then flood aggregates, then one-packet flows; when it is full the one-packet
    /// flows are dropped first. Every drop is counted per collector.
    #[arg(long, value_name = "RECORDS", default_value_t = 262_144, value_parser = parse_nonzero)]
    pub export_backlog: usize,
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
    /// share a one-packet flow is evicted first, then the least recently seen
    /// (lackOfResources).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = parse_nonzero)]
    pub max_flows: usize,
    /// Under a flood, export each evicted one-packet flow as its own record instead of
    /// rolling them up into aggregate records per destination (RFC 7015).
    #[arg(long)]
    pub no_aggregate: bool,
    /// How long an aggregate record of a flood collects flows before it is exported.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub aggregate_interval: Duration,
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
    pub app: probe_core::app::AppSet,
}

fn parse_app(s: &str) -> Result<probe_core::app::AppSet, String> {
    probe_core::app::AppSet::parse(s)
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
    pub pcap_select: Option<probe_core::select::Selection>,
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
    #[arg(long, value_name = "FORMAT", default_value = "pcap", value_parser = one_of(&PcapFormat::CHOICES))]
    pub pcap_format: PcapFormat,
    /// Store only the first N bytes of each packet (privacy); the original length is kept.
    #[arg(long, value_name = "BYTES", default_value_t = 262_144, value_parser = clap::value_parser!(u32).range(14..))]
    pub pcap_snaplen: u32,
    /// Hold the first N packets of every flow (in a bounded buffer per capture thread) so that
    /// a flow a name primitive (sni, dns name, http host, ja4) marks later is kept from its
    /// first packet, its SYN. 0: from the marking packet on.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub pcap_lookback: u16,
    /// Keep at most the first N selected packets of each flow, then only count the rest
    /// (0: keep all): one heavy flow, or a flood from a few sources, matching the selection
    /// cannot push the minutes before it out of the ring. The default is Arkime's
    /// maxPacketsToSave; README says why.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub pcap_flow_packets: u32,
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
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = one_of(&XDP_MODES).map(OrAuto))]
    pub xdp_mode: OrAuto<XdpMode>,
    /// AF_XDP zero-copy (needs driver support); auto falls back to copy mode.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = one_of(&ZeroCopy::CHOICES))]
    pub zero_copy: ZeroCopy,
    /// Where each frame's arrival time comes from. 'auto' takes the best this kernel loads
    /// and says at start which one and why; naming one makes its refusal an error.
    #[arg(long, value_name = "SOURCE", default_value = "auto", value_parser = one_of(&TIMESTAMPS).map(OrAuto))]
    pub timestamps: OrAuto<Stamp>,
    /// Pin RX thread i (queues in order, interface by interface) to the i-th CPU of this list
    /// (e.g. 2,3 or 2-3). --cpus is the old name.
    #[arg(long, visible_alias = "cpus", value_name = "LIST", value_parser = parse_cpus)]
    pub rx_cpus: Option<CpuList>,
    /// Whether the NIC's RSS sends both directions of a connection to the same queue.
    /// 'symmetric' (a symmetric Toeplitz key, or one queue) lets each RX thread meter its own
    /// frames when there are at least as many queues as workers (no hand-off); otherwise RX
    /// threads hand each frame's summary to the worker that owns its flow.
    #[arg(long, value_name = "MODE", default_value = "asymmetric", value_parser = one_of(&RssMode::CHOICES))]
    pub rss: RssMode,
    /// Meter 1 in N frames, chosen in the kernel; the rest go to the kernel stack. Flow counts
    /// are then of sampled packets (the books and stats say N).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub sample: u32,
    /// How sampling picks frames.
    #[arg(long, value_name = "MODE", default_value = "deterministic", value_parser = one_of(&SampleMode::CHOICES))]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::config::{QueueSelection, RssMode, SampleMode};

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
