//! SIGHUP (`systemctl reload probe`): the config file is read again and what can change while
//! capturing changes, with no frame lost and no flow cut: the program, the sockets and the
//! flow caches stay.
//!
//! The settings are compared as clap sees them (every option's effective values, defaults
//! included), so a change is named by its option. Applied in place:
//! - `pcap-select`: each RX thread's keeper takes the new selection on its next tick; the ring's
//!   journal records the change (later files are listed under it);
//! - `ignore`, `sample`, `sample-mode`: written into the running XDP program's maps; the
//!   exporter's selector reports follow;
//! - `ipfix`: collectors added are opened, collectors removed are drained and closed;
//! - `idle-timeout`, `active-timeout`, `tcp-end-grace`: each flow cache (metering workers', or
//!   one-hop RX threads'), from its next
//!   expiry scan;
//! - `stats-interval`, `duration`, `metrics` (the listener is rebound; a port below 1024
//!   after `--user` dropped privileges cannot be).
//!
//! Everything else needs a restart (interfaces, queues, workers and CPUs, frame and ring sizes, the
//! ring directory and its bounds, the export encoding, the metering options): named in one line,
//! left as it runs, while the rest applies. A file that does not parse or check is refused
//! with the reason, and the settings in force stay.

use super::CaptureConfig;
use crate::pipeline::exporter;
use crate::pipeline::worker::{Updates, WorkerUpdate};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every option of `probe capture` by long name, with its effective values as text.
pub type Settings = BTreeMap<String, Vec<String>>;

/// Reads the config file (and the command line the probe started with) again.
pub type Reloader = Box<dyn Fn() -> Result<(CaptureConfig, Settings), String>>;

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

/// Hands `u` to every stage (RX thread, metering worker), merged with an update it has not
/// taken yet.
pub fn to_workers(workers: &[Updates], u: &WorkerUpdate) {
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

/// Reloads applied and refused in this run.
#[derive(Default)]
pub struct ReloadBooks {
    pub applied: u64,
    pub rejected: u64,
}

/// What a reload may change in the running probe.
pub struct ReloadContext<'a> {
    /// Every capture interface: each runs its own copy of the XDP program.
    pub captures: &'a mut [super::Capture],
    /// RX threads (a new PCAP selection; one hop: timeouts) and metering workers (timeouts).
    pub stages: &'a [Updates],
    pub export: &'a crossbeam_channel::Sender<exporter::ExportControl>,
    pub ring: Option<&'a crossbeam_channel::Sender<crate::pipeline::ring_keeper::Batch>>,
    pub metrics: &'a mut Option<super::metrics::Metrics>,
    pub ticker: &'a mut super::watch::StatsLine,
    pub duration: &'a mut Option<Duration>,
    pub iface: &'a str,
}

/// SIGHUP: reads the settings again and applies what can change (see the module doc); logs
/// one line with what changed and what needs a restart.
pub fn apply(
    reload: &mut Option<(Settings, Reloader)>,
    current: &mut CaptureConfig,
    ctx: ReloadContext<'_>,
    books: &mut ReloadBooks,
) {
    let n = books.applied + books.rejected + 1;
    let Some((in_force, reader)) = reload.as_mut() else {
        eprintln!("probe: reload {n}: nothing to re-read: the probe was started without --config");
        books.rejected += 1;
        return;
    };
    let (mut new, settings) = match reader() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("probe: reload {n} refused, the settings in force stay: {e}");
            books.rejected += 1;
            return;
        }
    };
    // The pair sampling's key is the run's: the same pairs stay sampled across reloads.
    new.sample_key = current.sample_key;
    let (changes, restart) = diff(in_force, &settings);
    let mut applied: Vec<String> = vec![];
    let mut not_applied = restart.clone();
    let mut refused: Vec<String> = vec![];
    let mut update = WorkerUpdate::default();
    for c in &changes {
        match c.name.as_str() {
            "ignore" | "sample" | "sample-mode" => {}
            "pcap-select" => match (&new.pcap.pcap_select, ctx.ring) {
                (Some(sel), Some(_))
                    if !current
                        .meter
                        .app
                        .with(current.meter.select_app)
                        .has(sel.app_needs()) =>
                {
                    refused.push(format!(
                        "{c}: its name primitives need application parsers this run did not \
                         start; restart the probe with this selection (or add them to --app)"
                    ));
                }
                (Some(sel), Some(ring)) => {
                    update.selection = Some(sel.clone());
                    let _ = ring.send(crate::pipeline::ring_keeper::Batch::selection_changed(
                        sel.text(),
                    ));
                    current.pcap.pcap_select = Some(sel.clone());
                    applied.push(c.to_string());
                }
                _ => not_applied.push(c.clone()),
            },
            "ipfix" => {
                // A destination whose options changed (its spool, its rate) is closed and
                // opened again: removals first, so a spool directory is free when reopened.
                let (old, now) = (&current.export.destinations, &new.export.destinations);
                for d in old.iter().filter(|d| !now.contains(d)) {
                    let _ = ctx
                        .export
                        .send(exporter::ExportControl::Remove(d.to_string()));
                }
                for d in now.iter().filter(|d| !old.contains(d)) {
                    let _ = ctx.export.send(exporter::ExportControl::Add(d.clone()));
                }
                current.export.destinations = new.export.destinations.clone();
                applied.push(c.to_string());
            }
            "idle-timeout" | "active-timeout" | "tcp-end-grace" => {
                let (now, cache) = (&new.meter.cache, &mut current.meter.cache);
                cache.idle_timeout_ns = now.idle_timeout_ns;
                cache.active_timeout_ns = now.active_timeout_ns;
                cache.tcp_end_grace_ns = now.tcp_end_grace_ns;
                update.timeouts = Some((
                    now.idle_timeout_ns,
                    now.active_timeout_ns,
                    now.tcp_end_grace_ns,
                ));
                applied.push(c.to_string());
            }
            "stats-interval" => {
                *ctx.ticker = super::watch::StatsLine::new(new.stats_interval);
                applied.push(c.to_string());
            }
            "duration" => {
                *ctx.duration = new.duration;
                applied.push(c.to_string());
            }
            "metrics" => match new.metrics {
                None => {
                    *ctx.metrics = None;
                    applied.push(c.to_string());
                }
                Some(addr) => match super::metrics::Metrics::bind(addr, ctx.iface) {
                    Ok(m) => {
                        *ctx.metrics = Some(m);
                        applied.push(c.to_string());
                    }
                    Err(e) => {
                        refused.push(format!("{c}: cannot listen: {e}"));
                        not_applied.push(c.clone());
                    }
                },
            },
            _ => not_applied.push(c.clone()),
        }
    }
    // The XDP program's settings change together, in one update.
    let kernel: Vec<&Change> = changes
        .iter()
        .filter(|c| matches!(c.name.as_str(), "ignore" | "sample" | "sample-mode"))
        .collect();
    if !kernel.is_empty() {
        let updated = ctx
            .captures
            .iter_mut()
            .try_for_each(|c| c.steering.update(&super::steer_config(&new)));
        match updated {
            Ok(()) => {
                let _ = ctx
                    .export
                    .send(exporter::ExportControl::Sampling(super::sampling_of(&new)));
                if kernel.iter().any(|c| c.name == "ignore") {
                    update.ignore = Some(super::ignore_prefixes(&new));
                }
                if kernel.iter().any(|c| c.name != "ignore") {
                    update.pair_sampler = Some(new.pair_sampler());
                }
                current.ignore = new.ignore.clone();
                current.sample = new.sample;
                current.sample_mode = new.sample_mode;
                applied.extend(kernel.iter().map(|c| c.to_string()));
            }
            Err(e) => {
                // Back to what was in force (the ignore-list may be half written).
                for c in ctx.captures.iter_mut() {
                    let _ = c.steering.update(&super::steer_config(current));
                }
                refused.extend(kernel.iter().map(|c| format!("{c}: {e}")));
                not_applied.extend(kernel.into_iter().cloned());
            }
        }
    }

    if update.selection.is_some()
        || update.timeouts.is_some()
        || update.ignore.is_some()
        || update.pair_sampler.is_some()
    {
        to_workers(ctx.stages, &update);
    }
    let needs_restart: Vec<String> = restart.iter().map(|c| c.to_string()).collect();
    *in_force = self::in_force(in_force, &settings, &not_applied);
    books.applied += 1;
    let mut line = format!("probe: reload {n}: ");
    line += &if applied.is_empty() {
        "nothing to apply".to_string()
    } else {
        format!("applied {}", applied.join("; "))
    };
    if !needs_restart.is_empty() {
        line += &format!(
            "; needs a restart, not applied: {}",
            needs_restart.join("; ")
        );
    }
    if !refused.is_empty() {
        line += &format!("; refused: {}", refused.join("; "));
    }
    eprintln!("{line}");
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
