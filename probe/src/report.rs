//! The books of a run: what was read, metered, filtered, malformed and exported. Printed on
//! stderr at the end of a run and written as JSON with `--stats-json`.

use crate::flow::{CacheStats, FragmentStats};
use crate::meter::FrameBooks;
use crate::wire::{FilterReason, MalformedReason};
use ipfix_export::encoder::EncoderStats;
use ipfix_export::transport::SendStats;
use serde_json::{json, Value};

/// What one collector received.
#[derive(Clone, Debug)]
pub struct DestinationReport {
    pub url: String,
    pub stats: SendStats,
}

/// What the exporter produced.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    pub encoder: EncoderStats,
    pub destinations: Vec<DestinationReport>,
    pub json_records: u64,
    /// Records not printed after stdout failed.
    pub json_records_lost: u64,
}

/// One input file's outcome.
#[derive(Clone, Debug)]
pub struct FileReport {
    pub path: String,
    pub frames: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub files: Vec<FileReport>,
    pub frames: FrameBooks,
    pub fragments: FragmentStats,
    pub flows: CacheStats,
    pub export: ExportReport,
}

impl RunReport {
    pub fn to_json(&self) -> Value {
        let f = &self.frames;
        let filtered: serde_json::Map<String, Value> = FilterReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(f.filtered_by(*r))))
            .collect();
        let malformed: serde_json::Map<String, Value> = MalformedReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(f.malformed_by(*r))))
            .collect();
        let e = &self.export;
        json!({
            "files": self.files.iter().map(|x| json!({"path": x.path, "frames": x.frames, "error": x.error})).collect::<Vec<_>>(),
            "frames": {
                "read": f.read,
                "metered": f.metered,
                "filtered": f.filtered_total(),
                "filtered_by_reason": filtered,
                "malformed": f.malformed_total(),
                "malformed_by_reason": malformed,
                "balanced": f.balanced(),
            },
            "fragments": self.fragments,
            "flows": {
                "created": self.flows.flows_created,
                "peak_active": self.flows.peak_flows,
                "exported": self.flows.records_exported(),
                "by_end_reason": {
                    "idleTimeout": self.flows.idle_timeout,
                    "activeTimeout": self.flows.active_timeout,
                    "endOfFlowDetected": self.flows.end_of_flow,
                    "forcedEnd": self.flows.forced_end,
                    "lackOfResources": self.flows.lack_of_resources,
                },
            },
            "export": {
                "records": e.encoder.records,
                "messages": e.encoder.messages,
                "octets": e.encoder.octets,
                "template_sets": e.encoder.template_sets,
                "json_records": e.json_records,
                "json_records_lost": e.json_records_lost,
                "collectors": e.destinations.iter().map(|d| json!({
                    "url": d.url,
                    "messages_sent": d.stats.messages_sent,
                    "octets_sent": d.stats.octets_sent,
                    "messages_lost": d.stats.messages_lost,
                })).collect::<Vec<_>>(),
            },
        })
    }

    /// The human summary printed on stderr.
    pub fn summary(&self) -> String {
        let f = &self.frames;
        let mut s = format!(
            "frames: {} read = {} metered + {} filtered + {} malformed{}\n",
            f.read,
            f.metered,
            f.filtered_total(),
            f.malformed_total(),
            if f.balanced() {
                ""
            } else {
                "  (BOOKS DO NOT BALANCE: please report a bug)"
            }
        );
        let reasons: Vec<String> = FilterReason::ALL
            .iter()
            .filter(|r| f.filtered_by(**r) > 0)
            .map(|r| format!("{} {}", r.name(), f.filtered_by(*r)))
            .chain(
                MalformedReason::ALL
                    .iter()
                    .filter(|r| f.malformed_by(**r) > 0)
                    .map(|r| format!("{} {}", r.name(), f.malformed_by(*r))),
            )
            .collect();
        if !reasons.is_empty() {
            s += &format!("  not metered: {}\n", reasons.join(", "));
        }
        let fr = &self.fragments;
        if fr.fragments > 0 {
            s += &format!(
                "fragments: {} metered, {} unmatched (ports unknown), {} table full, {} expired incomplete\n",
                fr.fragments, fr.unmatched, fr.table_full, fr.expired
            );
        }
        let fl = &self.flows;
        s += &format!(
            "flows: {} created, {} exported (idle {}, active {}, end {}, forced {}, lack of resources {}), peak {} active\n",
            fl.flows_created,
            fl.records_exported(),
            fl.idle_timeout,
            fl.active_timeout,
            fl.end_of_flow,
            fl.forced_end,
            fl.lack_of_resources,
            fl.peak_flows
        );
        let e = &self.export;
        if e.destinations.is_empty() {
            s += "export: no --ipfix collector";
        } else {
            s += &format!(
                "export: {} records in {} IPFIX messages ({} octets)",
                e.encoder.records, e.encoder.messages, e.encoder.octets
            );
        }
        for d in &e.destinations {
            s += &format!(
                "; {}: {} sent, {} lost",
                d.url, d.stats.messages_sent, d.stats.messages_lost
            );
        }
        if e.json_records > 0 || e.json_records_lost > 0 {
            s += &format!("; {} JSON lines", e.json_records);
        }
        if e.json_records_lost > 0 {
            s += &format!(" ({} not printed: stdout failed)", e.json_records_lost);
        }
        s.push('\n');
        s
    }
}
