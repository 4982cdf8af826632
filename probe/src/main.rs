//! `probe`: meter packets into IPFIX flow records.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use probe::cli::ReadArgs;

#[derive(Parser)]
#[command(
    name = "probe",
    version,
    about = "Meter packets into IPFIX flow records",
    after_help = "Examples:\n  \
        probe read capture.pcap --ipfix udp://127.0.0.1:4739\n  \
        probe read a.pcapng b.pcap --print json --stats-json books.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    match cli.command {
        Command::Read(args) => {
            probe::signals::install().context("cannot install signal handlers")?;
            if args.export.ipfix.is_empty() && args.export.print.is_none() {
                eprintln!("probe: no --ipfix collector and no --print: only the books are shown");
            }
            let report = probe::offline::run(&args)?;
            eprint!("{}", report.summary());
            if let Some(path) = &args.stats_json {
                let text = serde_json::to_string_pretty(&report.to_json())?;
                std::fs::write(path, text + "\n")
                    .with_context(|| format!("cannot write --stats-json {}", path.display()))?;
            }
            // Exit 2 when some input could not be read completely, like tshark; the books say which.
            Ok(if report.files.iter().any(|f| f.error.is_some()) {
                2
            } else {
                0
            })
        }
    }
}
