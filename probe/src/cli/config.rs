//! `--config FILE`: settings from a TOML file, for a probe that runs as a service.
//!
//! The file's keys are the long option names of the subcommand (`idle-timeout = "15s"`,
//! `ipfix = ["udp://192.0.2.10:4739", "tcp://[2001:db8::9]:4739"]`, `biflow = true`), so every
//! option can live in the file and the `--help` text documents both. The file is turned into
//! options placed before the command line's own; an option given on the command line replaces
//! the file's setting entirely (for lists too). Values are checked by the same parsers as the
//! command line, so units (`128MiB`, `90s`) and error messages are the same.

use clap::ArgAction;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A problem with a config file, worded for the person editing it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config {path}, line {line}: unknown setting '{key}' for `probe {command}`; settings are its long option names{hint}")]
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        command: String,
        hint: String,
    },
    #[error("config {path}, line {line}: '{key}' {message}")]
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

/// Where `--config` is in `argv` (after the subcommand), and the file it names.
fn find_config(argv: &[OsString]) -> Option<(usize, usize, PathBuf)> {
    for (i, a) in argv.iter().enumerate().skip(2) {
        let s = a.to_string_lossy();
        if s == "--" {
            return None;
        }
        if s == "--config" {
            return argv.get(i + 1).map(|p| (i, 2, PathBuf::from(p)));
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some((i, 1, PathBuf::from(p)));
        }
    }
    None
}

/// Replaces `--config FILE` in `argv` with the options the file holds, before the command
/// line's own. `sub` is the subcommand's definition. Without `--config`, `argv` is returned.
pub fn expand(argv: Vec<OsString>, sub: &clap::Command) -> Result<Vec<OsString>, ConfigError> {
    let Some((at, n, path)) = find_config(&argv) else {
        return Ok(argv);
    };
    let mut rest: Vec<OsString> = argv[2..].to_vec();
    rest.drain(at - 2..at - 2 + n);
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let from_file = to_args(&text, &path, sub, &rest)?;
    let mut out = argv[..2].to_vec();
    out.extend(from_file);
    out.extend(rest);
    Ok(out)
}

/// The options a config file holds, leaving out those `cli` sets itself.
pub fn to_args(
    text: &str,
    path: &Path,
    sub: &clap::Command,
    cli: &[OsString],
) -> Result<Vec<OsString>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let line = line_of(text, key);
        let name = key.replace('_', "-");
        let bad = |message: String| ConfigError::BadValue {
            path: path.to_path_buf(),
            line,
            key: key.clone(),
            message,
        };
        if name == "config" {
            return Err(bad(
                "cannot be set in a config file: `--config FILE` is a command-line option, and \
                 one file cannot name another; put these settings in this file"
                    .into(),
            ));
        }
        if let toml::Value::Table(_) = value {
            return Err(bad(format!(
                "is a section ([{key}]): the file has no sections; write every setting at the \
                 top, before any [header], e.g. {}",
                example_of(sub, "idle-timeout").unwrap_or_default()
            )));
        }
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()) && name != "help");
        let Some(arg) = arg else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                line,
                key: key.clone(),
                command: sub.get_name().to_string(),
                hint: closest(&name, sub)
                    .map(|c| format!(" (did you mean '{c}'?)"))
                    .unwrap_or_default(),
            });
        };
        if given_on_command_line(arg, cli) {
            continue;
        }
        let flag = matches!(arg.get_action(), ArgAction::SetTrue);
        // What to write instead, for every message about this setting's value.
        let fix = match example_of(sub, &name) {
            Some(e) => format!("; write e.g. {e}"),
            None => format!("; see `probe {} --help`", sub.get_name()),
        };
        // Each value goes through the option's own parser here, so a wrong one is reported
        // with this file's line (and `--name=value` below never reads "-5" as an option).
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => {
                    return Err(bad(format!("takes a value, not {b}{fix}")));
                }
                other => {
                    return Err(bad(format!(
                        "takes a value, not {} {}{fix}",
                        article(other.type_str()),
                        other.type_str()
                    )))
                }
            };
            check_value(arg, &text)
                .map_err(|e| bad(format!("= {v}: {}{fix}", parser_message(&e, arg, &text))))?;
            Ok(text)
        };
        match value {
            toml::Value::Boolean(b) if flag => {
                if *b {
                    out.push(format!("--{name}").into());
                }
            }
            other if flag => {
                return Err(bad(format!(
                    "is a switch: write {name} = true or {name} = false, not {other}"
                )))
            }
            toml::Value::Array(items) => {
                let many = matches!(arg.get_action(), ArgAction::Append);
                if !many && items.len() != 1 {
                    return Err(bad(format!("takes one value, not a list{fix}")));
                }
                for v in items {
                    out.push(format!("--{name}={}", scalar(v)?).into());
                }
            }
            v => out.push(format!("--{name}={}", scalar(v)?).into()),
        }
    }
    Ok(out)
}

/// Runs `text` through `arg`'s value parser alone (clap offers no direct call: a one-option
/// command built with the same parser does it, free of the option's relations to others).
fn check_value(arg: &clap::Arg, text: &str) -> Result<(), clap::Error> {
    clap::Command::new("probe")
        .no_binary_name(true)
        .arg(
            clap::Arg::new("value")
                .long("value")
                .value_parser(arg.get_value_parser().clone()),
        )
        .try_get_matches_from([format!("--value={text}")])
        .map(|_| ())
}

/// "a" or "an" before a TOML type name.
fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A setting written out with its default value, as a config file line (`idle-timeout =
/// "15s"`), when the option has a default.
fn example_of(sub: &clap::Command, name: &str) -> Option<String> {
    let arg = sub.get_arguments().find(|a| a.get_long() == Some(name))?;
    let default = arg.get_default_values().first()?.to_string_lossy();
    let quoted = default.parse::<i64>().is_err();
    Some(if quoted {
        format!("{name} = \"{default}\" (the default)")
    } else {
        format!("{name} = {default} (the default)")
    })
}

/// The reason inside a clap error from a value parser ("'-5' must be a whole number greater
/// than 0"), without clap's "error: invalid value ... for ..." framing.
fn parser_message(e: &clap::Error, arg: &clap::Arg, text: &str) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let choices: Vec<String> = arg
        .get_possible_values()
        .iter()
        .map(|v| v.get_name().to_string())
        .collect();
    if !choices.is_empty() {
        return format!("'{text}' is not one of {}", choices.join(", "));
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Whether the command line sets this option itself (long or short form).
fn given_on_command_line(arg: &clap::Arg, cli: &[OsString]) -> bool {
    let long = arg.get_long().map(|l| format!("--{l}"));
    let short = arg.get_short().map(|c| format!("-{c}"));
    cli.iter().map(|a| a.to_string_lossy()).any(|a| {
        long.as_ref()
            .is_some_and(|l| a == *l || a.starts_with(&format!("{l}=")))
            || short.as_ref().is_some_and(|s| a.starts_with(s.as_str()))
    })
}

/// The 1-based line where `key` is set (`key = ...`, `key.sub = ...`) or opened as a section
/// (`[key]`, `[key.sub]`, `[[key]]`), for messages; 0 when it cannot be told.
fn line_of(text: &str, key: &str) -> usize {
    let quoted = format!("\"{key}\"");
    let names_key = |l: &str, ends: &[char]| {
        [key, quoted.as_str()].iter().any(|k| {
            l.strip_prefix(k)
                .is_some_and(|r| r.trim_start().starts_with(ends))
        })
    };
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            match l.strip_prefix('[') {
                Some(h) => names_key(h.trim_start_matches('[').trim_start(), &[']', '.']),
                None => names_key(l, &['=', '.']),
            }
        })
        .map_or(0, |i| i + 1)
}

/// The option name nearest to a misspelt key, when one is near.
fn closest(name: &str, sub: &clap::Command) -> Option<String> {
    sub.get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config" && *l != "help")
        .map(|l| (distance(name, l), l))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, l)| l.to_string())
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// What `probe check-config` can check for `probe capture` beyond the parsers: things of this
/// machine (the interface, directories).
pub fn check_capture(a: &crate::cli::CaptureArgs) -> Vec<String> {
    let mut problems = check_export(&a.export);
    for iface in &a.interface {
        let name = std::ffi::CString::new(iface.as_str()).unwrap_or_default();
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
            problems.push(format!(
                "interface: '{iface}' does not exist on this machine (see `ip link`)"
            ));
        }
    }
    if let Some(u) = &a.user {
        if let Err(e) = crate::sys::privileges::lookup(u, a.group.as_deref()) {
            problems.push(e);
        }
    }
    if let Some(dir) = &a.pcap.pcap_dir {
        if let Some(p) = not_writable(dir) {
            problems.push(format!("pcap-dir: {p}"));
        }
    }
    problems
}

/// Checks of the export settings: directories of IPFIX files, NetFlow v5's 8-bit engine id.
pub fn check_export(e: &crate::cli::ExportArgs) -> Vec<String> {
    e.ipfix
        .iter()
        .filter_map(|d| match &d.target {
            ipfix_export::Target::File(f) => f
                .path
                .parent()
                .and_then(not_writable)
                .map(|p| format!("ipfix {d}: {p}")),
            ipfix_export::Target::Tls { .. } => {
                let s = ipfix_export::TlsSettings {
                    ca_file: e.tls_ca.clone(),
                    server_name: e.tls_server_name.clone(),
                    client_cert: e.tls_cert.clone(),
                    client_key: e.tls_key.clone(),
                };
                ipfix_export::TlsClient::new(&s)
                    .err()
                    .map(|err| format!("ipfix {d}: {err}"))
            }
            ipfix_export::Target::NetflowV5(_) if e.observation_domain > 255 => Some(format!(
                "ipfix {d}: observation-domain {} does not fit NetFlow v5's 8-bit engine \
                     id: use 0-255, or NetFlow v9 or IPFIX (32-bit ids)",
                e.observation_domain
            )),
            _ => d
                .spool
                .as_ref()
                .and_then(|s| not_writable(&s.dir))
                .map(|p| format!("ipfix {d}: spool: {p}")),
        })
        .collect()
}

/// Why a directory cannot be written (or made), if it cannot.
fn not_writable(dir: &Path) -> Option<String> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    if !existing.is_dir() {
        return Some(format!("{} is not a directory", existing.display()));
    }
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: access(2) on a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Some(format!(
            "{} cannot be written by this user ({})",
            existing.display(),
            std::io::Error::last_os_error()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn sub() -> Command {
        Command::new("capture")
            .arg(Arg::new("interface").short('i').long("interface"))
            .arg(
                Arg::new("idle-timeout")
                    .long("idle-timeout")
                    .default_value("15s")
                    .value_parser(crate::cli::units::parse_duration),
            )
            .arg(
                Arg::new("max-flows")
                    .long("max-flows")
                    .default_value("1000000")
                    .value_parser(crate::cli::units::parse_nonzero),
            )
            .arg(Arg::new("config").long("config"))
            .arg(Arg::new("ipfix").long("ipfix").action(ArgAction::Append))
            .arg(Arg::new("biflow").long("biflow").action(ArgAction::SetTrue))
    }

    fn args(text: &str, cli: &[&str]) -> Result<Vec<String>, ConfigError> {
        let cli: Vec<OsString> = cli.iter().map(OsString::from).collect();
        to_args(text, Path::new("p.toml"), &sub(), &cli)
            .map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn settings_become_options_and_the_command_line_wins() {
        let text = "interface = \"eth1\"\nidle_timeout = \"90s\"\nbiflow = true\n\
                    ipfix = [\"udp://a:1\", \"tcp://b:2\"]\n";
        assert_eq!(
            args(text, &[]).unwrap(),
            [
                "--biflow",
                "--idle-timeout=90s",
                "--interface=eth1",
                "--ipfix=udp://a:1",
                "--ipfix=tcp://b:2"
            ]
        );
        // -i and --ipfix on the command line replace the file's settings.
        assert_eq!(
            args(text, &["-ieth2", "--ipfix=udp://c:3"]).unwrap(),
            ["--biflow", "--idle-timeout=90s"]
        );
    }

    #[test]
    fn mistakes_name_the_line_and_the_fix() {
        let e = args("interface = \"eth1\"\nidle-timout = \"9s\"\n", &[]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("line 2") && m.contains("did you mean 'idle-timeout'"),
            "{m}"
        );
        let e = args("biflow = \"yes\"\n", &[]).unwrap_err().to_string();
        assert!(e.contains("switch"), "{e}");
        let e = args("interface = [\"a\", \"b\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("one value"), "{e}");
        let e = args("interface = \n", &[]).unwrap_err().to_string();
        assert!(e.contains("p.toml") && e.contains("line 1"), "{e}");
    }

    /// The messages a new user met (issue #18): each names the setting, its line and the fix.
    #[test]
    fn every_setting_says_what_to_write() {
        let e = args("interface = \"a\"\nmax-flows = -5\n", &[]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("line 2")
                && m.contains("'max-flows' = -5")
                && m.contains("greater than 0")
                && m.contains("max-flows = 1000000 (the default)"),
            "{m}"
        );
        let m = args("config = \"other.toml\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("line 1") && m.contains("command-line option") && !m.contains("mean"),
            "{m}"
        );
        let m = args("biflow = true\n\n[capture]\ninterface = \"a\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("line 3")
                && m.contains("no sections")
                && m.contains("idle-timeout = \"15s\""),
            "{m}"
        );
        let m = args("idle-timeout = \"30\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("line 1") && m.contains("unit"), "{m}");
        let m = args("idle-timeout = 30\n", &[]).unwrap_err().to_string();
        assert!(
            m.contains("unit") && m.contains("idle-timeout = \"15s\""),
            "{m}"
        );
        let m = args("idle-timeout = true\n", &[]).unwrap_err().to_string();
        assert!(
            m.contains("not true") && m.contains("idle-timeout = \"15s\""),
            "{m}"
        );
        let m = args("max-flows = [1, 2]\n", &[]).unwrap_err().to_string();
        assert!(
            m.contains("one value") && m.contains("max-flows = 1000000"),
            "{m}"
        );
        let m = args("biflow = 1\n", &[]).unwrap_err().to_string();
        assert!(m.contains("biflow = true or biflow = false"), "{m}");
        let m = args("idle-timeout = { a = 1 }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(m.contains("line 1") && m.contains("no sections"), "{m}");
    }
}
