//! The command line: the subcommands' options ([`args`]), the config file whose keys are the
//! long option names ([`config`]), collector URLs ([`collector_url`]), units ([`units`]), and
//! the one place they become the jobs' configurations ([`jobs`]).
//!
//! The top room: it may use every room below (jobs, pipeline, `sys`) and the core, and none of
//! them uses it. It is the only room that knows clap.

pub mod args;
pub mod collector_url;
pub mod config;
pub mod jobs;
pub mod tools;
pub mod units;

pub use args::{
    CaptureArgs, CpuList, DecapArgs, DoctorArgs, ExportArgs, MeterArgs, PcapArgs, ReadArgs,
};

/// A clap parser for a lower room's enum from its table of (name, value, meaning): the names
/// and what they mean stay with the type (`RssMode::CHOICES`, `PrintFormat::CHOICES`, ...),
/// and `--help` lists them with their meanings as a `ValueEnum` would (one sentence, its
/// period dropped, as clap does with a doc comment).
pub fn one_of<T: Clone + Send + Sync + 'static>(
    table: &'static [(&'static str, T, &'static str)],
) -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(
        table
            .iter()
            .map(|(name, _, help)| PossibleValue::new(*name).help(help.trim_end_matches('.'))),
    )
    .map(move |s| {
        table
            .iter()
            .find(|(name, ..)| *name == s)
            .map(|(_, v, _)| v.clone())
            .expect("clap passes only the listed names")
    })
}
