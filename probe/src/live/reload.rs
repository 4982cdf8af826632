//! SIGHUP (`systemctl reload probe`): the config file is read again and what can change while
//! capturing changes, with no frame lost and no flow cut: the program, the sockets and the
//! flow caches stay.
//!
//! The settings are compared as clap sees them (every option's effective values, defaults
//! included), so a change is named by its option. Applied in place:
//! - `pcap-select`: each worker's keeper takes the new selection on its next tick; the ring's
//!   journal records the change (later files are listed under it);
//! - `ignore`, `sample`, `sample-mode`: written into the running XDP program's maps; the
//!   exporter's selector reports follow;
//! - `ipfix`: collectors added are opened, collectors removed are drained and closed;
//! - `idle-timeout`, `active-timeout`, `tcp-end-grace`: each worker's cache, from its next
//!   expiry scan;
//! - `stats-interval`, `duration`, `metrics` (the listener is rebound; a port below 1024
//!   after `--user` dropped privileges cannot be).
//!
//! Everything else needs a restart (interface, queues, workers' CPUs, frame and ring sizes, the
//! ring directory and its bounds, the export encoding, the metering options): named in one line,
//! left as it runs, while the rest applies. A file that does not parse or check is refused
//! with the reason, and the settings in force stay.

use super::worker::WorkerUpdate;
use crate::cli::CaptureArgs;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every option of `probe capture` by long name, with its effective values as text.
pub type Settings = BTreeMap<String, Vec<String>>;

/// Reads the config file (and the command line the probe started with) again.
pub type Reloader = Box<dyn Fn() -> Result<(CaptureArgs, Settings), String>>;

/// The options a reload applies; any other change needs a restart.
const APPLIED: &[&str] = &[
    "pcap-select",
    "ignore",
    "sample",
    "sample-mode",
    "ipfix",
    "idle-timeout",
    "active-timeout",
    "tcp-end-grace",
    "stats-interval",
    "duration",
    "metrics",
];

/// One changed option: name, old and new values as the user writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub old: String,
    pub new: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.name, self.old, self.new)
    }
}

fn shown(v: Option<&Vec<String>>) -> String {
    match v.map(|v| v.as_slice()) {
        None | Some([]) => "(unset)".into(),
        Some([one]) => format!("'{one}'"),
        Some(many) => format!("[{}]", many.join(", ")),
    }
}

/// The options whose values differ, split into those a reload applies and those it cannot.
pub fn diff(old: &Settings, new: &Settings) -> (Vec<Change>, Vec<Change>) {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut apply = vec![];
    let mut restart = vec![];
    for n in names {
        if n == "config" || old.get(n) == new.get(n) {
            continue;
        }
        let c = Change {
            name: n.clone(),
            old: shown(old.get(n)),
            new: shown(new.get(n)),
        };
        if APPLIED.contains(&n.as_str()) {
            apply.push(c);
        } else {
            restart.push(c);
        }
    }
    (apply, restart)
}

/// Hands `u` to every worker, merged with an update a worker has not taken yet.
pub fn to_workers(workers: &[Arc<Mutex<Option<WorkerUpdate>>>], u: &WorkerUpdate) {
    for w in workers {
        if let Ok(mut slot) = w.lock() {
            let merged = match slot.take() {
                Some(mut old) => {
                    if u.selection.is_some() {
                        old.selection = u.selection.clone();
                    }
                    if u.timeouts.is_some() {
                        old.timeouts = u.timeouts;
                    }
                    old
                }
                None => u.clone(),
            };
            *slot = Some(merged);
        }
    }
}

/// Keeps the settings that were not applied at their running values, so the next reload still
/// reports them.
pub fn in_force(old: &Settings, new: &Settings, not_applied: &[Change]) -> Settings {
    let mut s = new.clone();
    for c in not_applied {
        match old.get(&c.name) {
            Some(v) => s.insert(c.name.clone(), v.clone()),
            None => s.remove(&c.name),
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &[&str])]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn changes_are_named_and_split_by_what_a_reload_can_apply() {
        let old = settings(&[
            ("interface", &["veth0"]),
            ("idle-timeout", &["15s"]),
            ("ipfix", &["udp://127.0.0.1:1"]),
            ("pcap-select", &[]),
        ]);
        let new = settings(&[
            ("interface", &["veth1"]),
            ("idle-timeout", &["30s"]),
            ("ipfix", &["udp://127.0.0.1:1", "tcp://127.0.0.1:2"]),
            ("pcap-select", &["tcp port 445"]),
        ]);
        let (apply, restart) = diff(&old, &new);
        let shown: Vec<String> = apply.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            shown,
            [
                "idle-timeout '15s' -> '30s'",
                "ipfix 'udp://127.0.0.1:1' -> [udp://127.0.0.1:1, tcp://127.0.0.1:2]",
                "pcap-select (unset) -> 'tcp port 445'"
            ]
        );
        assert_eq!(restart.len(), 1);
        assert_eq!(restart[0].to_string(), "interface 'veth0' -> 'veth1'");
        let kept = in_force(&old, &new, &restart);
        assert_eq!(kept["interface"], ["veth0"]);
        assert_eq!(kept["idle-timeout"], ["30s"]);
    }
}
