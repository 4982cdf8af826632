//! What `probe capture` is asked to do, as plain data: `cli` builds a [`CaptureConfig`] from
//! the command line and the config file (and again on SIGHUP); a library user or a test can
//! build one directly. Each choice an option offers is listed here with its name and meaning
//! (the `CHOICES` tables), so that the names live with the values and only `cli` knows clap.

pub use crate::live::xsk::ZeroCopy;
use crate::pipeline::exporter::ExportConfig;
use crate::pipeline::ring_keeper::PcapConfig;
use crate::pipeline::topology::MeterConfig;
use bpf::{Stamp, XdpMode};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `probe capture`'s settings.
#[derive(Clone)]
pub struct CaptureConfig {
    /// The capture interfaces (the ports of a passive tap feed the same flow caches).
    pub interface: Vec<String>,
    pub queues: QueueSelection,
    /// `None`: native where the driver supports it, else generic.
    pub xdp_mode: Option<XdpMode>,
    pub zero_copy: ZeroCopy,
    /// `None`: the best this kernel loads; a named one that does not load is an error.
    pub timestamps: Option<Stamp>,
    /// Pin RX thread i to the i-th of these CPUs.
    pub rx_cpus: Option<Vec<u32>>,
    pub rss: RssMode,
    /// 1-in-N sampling in the kernel (1: every frame).
    pub sample: u32,
    pub sample_mode: SampleMode,
    /// The key of `--sample-mode flow`'s pair hash, drawn once at start (a reload keeps it, so
    /// the same pairs stay sampled).
    pub sample_key: u32,
    /// Prefixes the XDP program passes to the kernel instead of capturing.
    pub ignore: Vec<Cidr>,
    pub umem_frames: u32,
    pub frame_size: u32,
    pub rx_ring: u32,
    pub batch: u32,
    /// Give up root for this user (and group) once capture is set up.
    pub user: Option<String>,
    pub group: Option<String>,
    pub no_promisc: bool,
    pub busy_poll: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    pub export: ExportConfig,
    pub meter: MeterConfig,
    pub pcap: PcapConfig,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    /// Print a statistics line this often (zero: never).
    pub stats_interval: Duration,
}

/// Which RX queues to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueSelection {
    All,
    List(Vec<u32>),
}

/// An IP prefix: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

/// What the NIC's RSS does with the two directions of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RssMode {
    Symmetric,
    Asymmetric,
}

impl RssMode {
    pub const CHOICES: [(&'static str, RssMode, &'static str); 2] = [
        (
            "symmetric",
            RssMode::Symmetric,
            "Both directions reach the same queue.",
        ),
        (
            "asymmetric",
            RssMode::Asymmetric,
            "Not known to: the directions may land on different queues (the safe default).",
        ),
    ];
}

/// How 1-in-N sampling picks frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleMode {
    Deterministic,
    Random,
    /// Every frame of 1 in N address pairs (see `probe_core::sample`).
    Flow,
}

impl SampleMode {
    pub const CHOICES: [(&'static str, SampleMode, &'static str); 3] = [
        (
            "deterministic",
            SampleMode::Deterministic,
            "Every Nth frame of each RX queue (systematic count-based sampling).",
        ),
        (
            "random",
            SampleMode::Random,
            "Each frame with probability 1/N.",
        ),
        (
            "flow",
            SampleMode::Flow,
            "Every frame of 1 in N address pairs of the innermost packet (one tunnel deep in \
             the kernel, deeper in user space), chosen by a hash keyed at start: whole \
             conversations, both directions.",
        ),
    ];

    /// The mode's name, as `--sample-mode` takes it.
    pub fn name(self) -> &'static str {
        SampleMode::CHOICES
            .iter()
            .find(|c| c.1 == self)
            .map_or("", |c| c.0)
    }
}

impl CaptureConfig {
    /// The decoders' share of `--sample-mode flow` (`None` for the other modes, which the
    /// kernel does alone).
    pub fn pair_sampler(&self) -> Option<probe_core::sample::PairSampler> {
        (self.sample > 1 && self.sample_mode == SampleMode::Flow).then_some(
            probe_core::sample::PairSampler {
                every: self.sample,
                key: self.sample_key,
            },
        )
    }
}

/// Where the XDP program runs (`None`: native when the driver supports it).
pub const XDP_MODES: [(&str, Option<XdpMode>, &str); 3] = [
    (
        "auto",
        None,
        "Native when the driver supports it, generic otherwise.",
    ),
    (
        "native",
        Some(XdpMode::Native),
        "In the driver (fails if the driver has no XDP support).",
    ),
    (
        "generic",
        Some(XdpMode::Generic),
        "The kernel's generic hook: every device, more CPU per frame.",
    ),
];

/// Where each frame's arrival time comes from (`None`: the best this kernel allows).
pub const TIMESTAMPS: [(&str, Option<Stamp>, &str); 4] = [
    (
        "auto",
        None,
        "The best this kernel allows: xdp-metadata, else xdp-prefix, else userspace.",
    ),
    (
        "xdp-metadata",
        Some(Stamp::Metadata),
        "Kernel time in the XDP metadata area (needs bpf_xdp_adjust_meta).",
    ),
    (
        "xdp-prefix",
        Some(Stamp::Prefix),
        "Kernel time in a 16-byte prefix the RX thread strips (needs bpf_xdp_adjust_head).",
    ),
    (
        "userspace",
        Some(Stamp::UserSpace),
        "The RX thread's clock when it reads a batch (least precise).",
    ),
];
