//! `probe`: meter packets into IPFIX flow records.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use probe::cli::{CaptureArgs, ReadArgs};
use probe::report::RunReport;
use std::path::Path;

#[derive(Parser)]
#[command(
    name = "probe",
    version,
    about = "Meter packets into IPFIX flow records",
    after_help = "Examples:\n  \
        probe capture -i eth1 --ipfix udp://192.0.2.10:4739 --ignore 192.0.2.10\n  \
        probe read capture.pcap --ipfix udp://127.0.0.1:4739\n  \
        probe read a.pcapng b.pcap --print json --stats-json books.json\n  \
        probe capture -i eth1 --ipfix udp://192.0.2.10:4739 --pcap-dir /var/lib/probe/ring \\\n      \
          --pcap-select 'net 10.20.0.0/16 and port 445' --pcap-ring-size 20GiB\n  \
        probe extract --pcap-dir /var/lib/probe/ring --from 2026-11-22T23:00:00Z \\\n      \
          -w flow.pcap src host 10.20.1.5 and src port 50123 and dst port 445 and tcp"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Meter live traffic of an interface (XDP + AF_XDP, one worker per RX queue) until
    /// SIGINT/SIGTERM or --duration, and export the flows.
    Capture(CaptureArgs),
    /// Write the packets of a flow, a selection or a time window from a PCAP ring to one file.
    Extract(probe::extract::ExtractArgs),
    /// Meter pcap/pcapng files (packet timestamps are the clock) and export the flows.
    Read(ReadArgs),
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("probe: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    probe::signals::install().context("cannot install signal handlers")?;
    match cli.command {
        Command::Extract(args) => {
            let r = probe::extract::run(&args)?;
            eprintln!(
                "probe: {} packets written to {} ({} of {} ring files read, {} packets in them)",
                r.frames_written,
                args.out.display(),
                r.files_read,
                r.files_in_ring,
                r.frames_read
            );
            Ok(0)
        }
        Command::Capture(args) => {
            warn_no_output(&args.export);
            let report = probe::live::run(&args)?;
            finish(&report, args.stats_json.as_deref())?;
            Ok(0)
        }
        Command::Read(args) => {
            warn_no_output(&args.export);
            let report = probe::offline::run(&args)?;
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
        std::fs::write(path, text + "\n")
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
