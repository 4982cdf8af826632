//! The probe as a library: a job built from its own configuration structs, with no clap type
//! anywhere (issue #26: the command line knows the jobs' configurations, not the other way
//! round). `probe read`'s pipeline meters a crafted capture into a real nfcapd, and the flows
//! nfdump reads back are tshark's for the same file.

use e2e::capture::{write_pcap, LINKTYPE_ETHERNET};
use e2e::craft::mixed_traffic;
use e2e::tools::{assert_balanced, assert_same_flows, nfdump_flows, tshark_flows, Nfcapd};
use e2e::TempDir;
use ipfix_export::{EncoderConfig, ExporterConfig, Target};
use probe::files::read::{run, ReadConfig};
use probe::pipeline::exporter::ExportConfig;
use probe::pipeline::ring_keeper::PcapConfig;
use probe::pipeline::topology::MeterConfig;
use std::time::Duration;

const BASE: u64 = 1_700_000_000_000_000_000;

#[test]
fn a_file_is_metered_end_to_end_from_plain_configuration() {
    let tmp = TempDir::new("library");
    let frames = mixed_traffic(BASE);
    let pcap = tmp.path().join("mix.pcap");
    write_pcap(&pcap, LINKTYPE_ETHERNET, false, &frames);
    let truth = tshark_flows(&pcap);

    let nf = Nfcapd::start(tmp.path());
    let collector = nf
        .url()
        .strip_prefix("udp://")
        .and_then(|a| a.parse().ok())
        .expect("nfcapd listens on udp://ADDR:PORT");
    let meter = MeterConfig {
        workers: Some(2),
        ..MeterConfig::default()
    };
    let config = ReadConfig {
        files: vec![pcap.clone()],
        export: ExportConfig {
            exporter: ExporterConfig {
                encoder: EncoderConfig {
                    tunnels: !meter.decap.is_none(),
                    ..EncoderConfig::default()
                },
                ..ExporterConfig::default()
            },
            destinations: vec![Target::Udp(collector).into()],
            print: None,
            options_interval: Duration::from_secs(60),
            drain: Duration::from_secs(2),
            anonymize: None,
            community_id: None,
        },
        meter,
        pcap: PcapConfig::default(),
    };
    let report = run(&config).expect("probe read's pipeline runs");
    let records = nf.finish();

    assert_same_flows(&truth, &nfdump_flows(&records), "nfdump");
    let books = report.to_json();
    assert_balanced(&books);
    assert_eq!(books["frames"]["read"], frames.len() as u64);
    assert_eq!(books["frames"]["metered"], frames.len() as u64);
    assert_eq!(
        books["export"]["records"].as_u64().unwrap(),
        records.len() as u64
    );
}
