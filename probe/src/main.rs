//! `probe`: meter packets into IPFIX flow records.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use probe::cli::{CaptureArgs, ReadArgs};
use probe::pipeline::books::RunReport;
use std::path::Path;

#[derive(Parser)]
#[command(
    name = "probe",
    version,
    about = "Meter packets into IPFIX flow records; keep a rolling PCAP window of chosen traffic",
    after_help = "The three jobs:\n\n  \
        Incident, on a SPAN or tap port: flows in seconds, a look without a collector\n    \
        probe capture -i eth1 --print table\n    \
        probe capture -i eth1 --ipfix udp://192.0.2.10:4739 --ignore 192.0.2.10 --stats-interval 10s\n\n  \
        Permanent exporter, to several collectors, as a service (see dist/probe.service)\n    \
        probe capture --config /etc/probe/probe.toml\n    \
        probe capture -i eth1 --ipfix udp://192.0.2.10:4739 --ipfix tcp://[2001:db8::9]:4739 \\\n      \
          --ipfix 'file:///var/lib/probe/flows.ipfix?rotate=5m' --metrics 127.0.0.1:9464\n\n  \
        PCAP ring for a critical segment, and pulling one flow's packets out later\n    \
        probe capture -i eth1 --ipfix udp://192.0.2.10:4739 --pcap-dir /var/lib/probe/ring \\\n      \
          --pcap-select 'net 10.20.0.0/16 and port 445' --pcap-ring-size 20GiB\n    \
        probe extract --pcap-dir /var/lib/probe/ring --from 2026-11-22T23:00:00Z \\\n      \
          -w flow.pcap src host 10.20.1.5 and src port 50123 and dst port 445 and tcp\n\n  \
        Files: replays, tests, forensic conversion\n    \
        probe read capture.pcap --ipfix udp://127.0.0.1:4739\n    \
        probe read a.pcapng b.pcap --print json --stats-json books.json\n\n\
        Durations take a unit (500ms, 15s, 2m, 1h); sizes too (4096, 500KB, 128MiB, 2GiB)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Meter live traffic of an interface (XDP + AF_XDP, one RX thread per queue, flows metered per core) until
    /// SIGINT/SIGTERM or --duration, and export the flows.
    Capture(Box<CaptureArgs>),
    /// Preflight: what capture on an interface would use (XDP mode, zero-copy, timestamps,
    /// queues) and what stands in its way, each with its fix. Changes nothing. Exit status 0:
    /// capture can start; 1: it cannot.
    Doctor(probe::cli::DoctorArgs),
    /// Write the packets of a flow, a selection or a time window from a PCAP ring to one file.
    Extract(Box<probe::cli::tools::ExtractArgs>),
    /// Meter pcap/pcapng files (packet timestamps are the clock) and export the flows.
    Read(Box<ReadArgs>),
    /// The PCAP ring during an incident: its coverage, and holds that keep files as evidence.
    #[command(subcommand)]
    Ring(probe::cli::tools::RingArgs),
    /// A collector's spool (the spool= of its URL): what it holds, and its messages sent again
    /// by hand, to a file or a collector.
    #[command(subcommand)]
    Spool(probe::cli::tools::SpoolArgs),
    /// Check a --config file: every setting, its value and where it comes from; exit 1 with
    /// the line and the fix when something is wrong.
    CheckConfig {
        /// The TOML file.
        file: std::path::PathBuf,
        /// The subcommand the file is for.
        #[arg(long = "for", value_name = "COMMAND", default_value = "capture", value_parser = ["capture", "read"])]
        for_command: String,
    },
}

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let original = argv.clone();
    let config = argv
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| argv.get(i + 1))
        .map(|p| p.to_string_lossy().into_owned());
    let argv = match expand_config(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("probe: error: {e}");
            if let (Some(c), false) = (
                &config,
                matches!(e, probe::cli::config::ConfigError::Read { .. }),
            ) {
                eprintln!("probe: `probe check-config {c}` checks every setting of the file");
            }
            std::process::exit(2);
        }
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            if let (Some(c), true) = (config, e.use_stderr()) {
                eprintln!("probe: the settings of {c} are read as options before the command line's; `probe check-config {c}` shows each");
            }
            std::process::exit(e.exit_code());
        }
    };
    match run(cli, original) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("probe: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// `--config FILE` becomes the options the file holds, ahead of the command line's own.
fn expand_config(
    argv: Vec<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, probe::cli::config::ConfigError> {
    use clap::CommandFactory;
    let Some(name) = argv.get(1).map(|a| a.to_string_lossy().into_owned()) else {
        return Ok(argv);
    };
    let cmd = Cli::command();
    match cmd.find_subcommand(&name) {
        Some(sub) if name == "capture" || name == "read" => probe::cli::config::expand(argv, sub),
        _ => Ok(argv),
    }
}

/// `probe check-config`: parses the file as the command line would, checks what can be checked
/// on this machine, and prints every setting with its source.
fn check_config(file: &Path, for_command: &str) -> Result<i32> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let sub = cmd
        .find_subcommand(for_command)
        .context("unknown subcommand")?
        .clone();
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read config {}", file.display()))?;
    let args = match probe::cli::config::to_args(&text, file, &sub, &[]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("probe: {e}");
            return Ok(1);
        }
    };
    let mut argv: Vec<std::ffi::OsString> = vec!["probe".into(), for_command.into()];
    argv.extend(args);
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "probe: config {}: {}",
                file.display(),
                e.to_string().trim_end()
            );
            return Ok(1);
        }
    };
    let problems = match &cli.command {
        Command::Capture(a) => probe::cli::config::check_capture(a),
        Command::Read(a) => probe::cli::config::check_export(&a.export),
        _ => Vec::new(),
    };
    let matches = sub
        .clone()
        .no_binary_name(true)
        .try_get_matches_from(&argv[2..])?;
    println!("# probe {for_command}, settings from {}", file.display());
    for arg in sub.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id()) else {
            continue;
        };
        if long == "config" || long == "help" {
            continue;
        }
        let Some(values) = matches.get_raw(id.as_str()) else {
            println!("# {long}: not set");
            continue;
        };
        let values: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
        let source = match matches.value_source(id.as_str()) {
            Some(clap::parser::ValueSource::DefaultValue) => "default",
            _ => "file",
        };
        let shown = if values.len() == 1 {
            format!("{:?}", values[0])
        } else {
            format!("{values:?}")
        };
        println!("{long} = {shown}  # {source}");
    }
    for p in &problems {
        eprintln!("probe: config {}: {p}", file.display());
    }
    if problems.is_empty() {
        eprintln!("probe: config {} is valid", file.display());
        Ok(0)
    } else {
        Ok(1)
    }
}

/// The effective settings of `probe capture` in `argv` (config file expanded), each option by
/// long name with its values as text, defaults included; and the parsed arguments.
fn capture_settings(
    argv: &[std::ffi::OsString],
) -> std::result::Result<(CaptureArgs, probe::live::reload::Settings), String> {
    use clap::{CommandFactory, FromArgMatches};
    let expanded = expand_config(argv.to_vec()).map_err(|e| e.to_string())?;
    let matches = Cli::command()
        .try_get_matches_from(&expanded)
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    let Command::Capture(args) = cli.command else {
        return Err("not a capture command".into());
    };
    let sub = matches
        .subcommand_matches("capture")
        .ok_or("not a capture command")?;
    let cmd = Cli::command();
    let capture = cmd.find_subcommand("capture").ok_or("no capture command")?;
    let mut settings = probe::live::reload::Settings::new();
    for arg in capture.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let values: Vec<String> = sub
            .get_raw(arg.get_id().as_str())
            .map(|v| v.map(|x| x.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        settings.insert(long.to_string(), values);
    }
    Ok((*args, settings))
}

fn run(cli: Cli, argv: Vec<std::ffi::OsString>) -> Result<i32> {
    probe::sys::signals::install().context("cannot install signal handlers")?;
    match cli.command {
        Command::CheckConfig { file, for_command } => check_config(&file, &for_command),
        Command::Doctor(a) => {
            let d = probe::live::doctor::examine(&a.interface, a.frame_size, a.umem_frames);
            print!("{}", d.render());
            Ok(if d.can_capture() { 0 } else { 1 })
        }
        Command::Ring(cmd) => {
            probe::tools::ring::run(&cmd.command())?;
            Ok(0)
        }
        Command::Spool(cmd) => {
            probe::tools::spool::run(&cmd.command())?;
            Ok(0)
        }
        Command::Extract(args) => {
            refuse_root("extract", args.allow_root)?;
            let r = probe::tools::extract::run(&args.config()?)?;
            eprintln!(
                "probe: {} packets written to {} ({} of {} ring files read, {} packets in them)",
                r.frames_written,
                args.out.display(),
                r.files_read,
                r.files_in_ring,
                r.frames_read
            );
            if let Some(n) = r.flows_marked {
                eprintln!(
                    "probe: {n} flows carry a matching name in the ring's packets; all their packets the ring holds were written"
                );
                if n == 0 || r.frames_cut > 0 {
                    eprintln!(
                        "probe: note: a name is found only in the packet that carries it (a DNS query, a ClientHello, an HTTP request): the ring holds it only if the writing run's --pcap-select kept it{}",
                        if r.frames_cut > 0 {
                            format!(", and {} of the frames read were cut at the ring's --pcap-snaplen, which can cut a name off", r.frames_cut)
                        } else {
                            String::new()
                        }
                    );
                }
            }
            if r.runs_spilled > 0 {
                eprintln!(
                    "probe: the matches outgrew --max-memory {}: sorted in {} runs on disk and merged",
                    args.max_memory, r.runs_spilled
                );
            }
            for (i, f) in r.flows.iter().enumerate() {
                eprintln!(
                    "probe: flow {}: {}: {} packets{}",
                    i + 1,
                    f.flow.describe(),
                    f.packets,
                    if f.not_covered {
                        " (the ring does not cover all of its time: older packets were deleted, or it outlasted the ring)"
                    } else {
                        ""
                    }
                );
            }
            if !r.flows.is_empty() {
                let missing = r.flows.iter().filter(|f| f.not_covered).count();
                eprintln!(
                    "probe: {} flows, {} with packets, {missing} not wholly covered by the ring",
                    r.flows.len(),
                    r.flows.iter().filter(|f| f.packets > 0).count()
                );
            }
            Ok(0)
        }
        Command::Capture(args) => {
            warn_no_output(&args.export);
            // SIGHUP re-reads the config file with the same command line (the command line
            // still wins over the file).
            let has_config = argv.iter().any(|a| {
                let a = a.to_string_lossy();
                a == "--config" || a.starts_with("--config=")
            });
            let reload = match has_config {
                true => {
                    let (_, settings) = capture_settings(&argv).map_err(anyhow::Error::msg)?;
                    let reader: probe::live::reload::Reloader = Box::new(move || {
                        let (args, settings) = capture_settings(&argv)?;
                        let cfg = args.config().map_err(|e| format!("{e:#}"))?;
                        Ok((cfg, settings))
                    });
                    Some((settings, reader))
                }
                false => None,
            };
            let report = probe::live::run(&args.config()?, reload)?;
            finish(&report, args.stats_json.as_deref())?;
            Ok(0)
        }
        Command::Read(args) => {
            refuse_root("read", args.allow_root)?;
            warn_no_output(&args.export);
            let report = probe::files::read::run(&args.config()?)?;
            finish(&report, args.stats_json.as_deref())?;
            // Exit 2 when some input could not be read completely, like tshark; the books say which.
            Ok(if report.files.iter().any(|f| f.error.is_some()) {
                2
            } else {
                0
            })
        }
    }
}

/// `probe read` and `probe extract` need no privileges: as root they run only when told, so a
/// parser bug met in a hostile capture cannot become root's.
fn refuse_root(command: &str, allowed: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let told = allowed || std::env::var_os("PROBE_ALLOW_ROOT").is_some_and(|v| v == "1");
    if root && !told {
        anyhow::bail!(
            "probe {command} needs no privileges and will not run as root: run it as a normal \
             user, or pass --allow-root (or set PROBE_ALLOW_ROOT=1)"
        );
    }
    Ok(())
}

fn warn_no_output(export: &probe::cli::ExportArgs) {
    if export.ipfix.is_empty() && export.print.is_none() {
        eprintln!("probe: no --ipfix collector and no --print: only the books are shown");
    }
}

/// Prints the books and writes `--stats-json`.
fn finish(report: &RunReport, stats_json: Option<&Path>) -> Result<()> {
    eprint!("{}", report.summary());
    if let Some(path) = stats_json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(path)
            .and_then(|mut f| f.write_all((text + "\n").as_bytes()))
            .with_context(|| format!("cannot write --stats-json {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
