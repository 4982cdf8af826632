//! The one place the command line becomes the jobs' configurations: each `*Args` here turns
//! into the plain struct its job takes ([`CaptureConfig`], [`ReadConfig`], [`MeterConfig`],
//! [`ExportConfig`], [`PcapConfig`], the tools'), checking what clap cannot (several options
//! together) and naming the flag when something is wrong. Nothing below `cli` sees clap.

use super::args::{CaptureArgs, DecapArgs, ExportArgs, MeterArgs, PcapArgs, ReadArgs};
use crate::files::read::ReadConfig;
use crate::live::config::CaptureConfig;
use crate::pipeline::exporter::ExportConfig;
use crate::pipeline::ring_keeper::PcapConfig;
use crate::pipeline::topology::MeterConfig;
use ipfix_export::{EncoderConfig, ExporterConfig};
use probe_core::flow::{CacheConfig, RollupConfig};
use probe_core::meter::{DedupConfig, FragmentConfig};
use probe_core::wire::Decap;
use std::time::Duration;

impl ExportArgs {
    /// The exporter's configuration for what `meter` produces (biflows, tunnelled flows).
    /// `live`: never wait on a collector (queue in each destination's backlog, drop by
    /// priority); reading files waits for the UDP pace instead.
    pub fn export_config(&self, meter: &MeterArgs, live: bool) -> ExportConfig {
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
                backlog_records: self.export_backlog,
                wait_for_pace: !live,
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
    /// The meter's configuration; `pcap` adds the parsers its selection needs. Fails naming
    /// the flag when a port list is too long.
    pub fn config(&self, pcap: &PcapConfig) -> anyhow::Result<MeterConfig> {
        Ok(MeterConfig {
            cache: CacheConfig {
                idle_timeout_ns: self.idle_timeout.as_nanos() as u64,
                active_timeout_ns: self.active_timeout.as_nanos() as u64,
                tcp_end_grace_ns: self.tcp_end_grace.as_nanos() as u64,
                max_flows: self.max_flows,
                vlan_in_key: !self.no_vlan_key,
                biflow: self.biflow,
                advise: Some(crate::sys::memory::huge_pages),
                hash_seed: Some(crate::sys::random::seed()),
                rollup: (!self.no_aggregate).then_some(RollupConfig {
                    interval_ns: self.aggregate_interval.as_nanos() as u64,
                    on_per_sec: None,
                }),
            },
            fragments: FragmentConfig {
                capacity: self.fragment_table_size,
                timeout_ns: self.fragment_timeout.as_nanos() as u64,
            },
            decap: self.decap.decap()?,
            dedup: self.dedup.map(|w| DedupConfig {
                window_ns: w.as_nanos() as u64,
                drop: !self.dedup_keep,
            }),
            app: self.app,
            select_app: pcap.app_needs(),
            workers: self.workers,
            worker_cpus: self.worker_cpus.as_ref().map(|c| c.0.clone()),
        })
    }
}

impl PcapArgs {
    pub fn config(&self) -> PcapConfig {
        PcapConfig {
            pcap_dir: self.pcap_dir.clone(),
            pcap_select: self.pcap_select.clone(),
            pcap_file_size: self.pcap_file_size,
            pcap_file_duration: self.pcap_file_duration,
            pcap_ring_size: self.pcap_ring_size,
            pcap_max_files: self.pcap_max_files,
            pcap_format: self.pcap_format,
            pcap_snaplen: self.pcap_snaplen,
            pcap_lookback: self.pcap_lookback,
            pcap_flow_packets: self.pcap_flow_packets,
        }
    }
}

impl ReadArgs {
    /// `probe read`'s configuration.
    pub fn config(&self) -> anyhow::Result<ReadConfig> {
        let pcap = self.pcap.config();
        Ok(ReadConfig {
            files: self.files.clone(),
            export: self.export.export_config(&self.meter, false),
            meter: self.meter.config(&pcap)?,
            pcap,
        })
    }
}

impl CaptureArgs {
    /// `probe capture`'s configuration.
    pub fn config(&self) -> anyhow::Result<CaptureConfig> {
        let pcap = self.pcap.config();
        Ok(CaptureConfig {
            interface: self.interface.clone(),
            queues: self.queues.clone(),
            xdp_mode: self.xdp_mode.0,
            zero_copy: self.zero_copy,
            timestamps: self.timestamps.0,
            rx_cpus: self.rx_cpus.as_ref().map(|c| c.0.clone()),
            rss: self.rss,
            sample: self.sample,
            sample_mode: self.sample_mode,
            sample_key: crate::sys::random::seed() as u32,
            ignore: self.ignore.clone(),
            umem_frames: self.umem_frames,
            frame_size: self.frame_size,
            rx_ring: self.rx_ring,
            batch: self.batch,
            user: self.user.clone(),
            group: self.group.clone(),
            no_promisc: self.no_promisc,
            busy_poll: self.busy_poll,
            duration: self.duration,
            export: self.export.export_config(&self.meter, true),
            meter: self.meter.config(&pcap)?,
            pcap,
            metrics: self.metrics,
            stats_interval: self.stats_interval,
        })
    }
}
