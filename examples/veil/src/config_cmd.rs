//! `veil config defaults` and `veil config check FILE`.
//!
//! `defaults` prints a configuration file with every flag of `veil server` and `veil
//! client` as a key of `[server]` and `[client]`, documented with the same text `--help`
//! shows (clap's, from the flags' doc comments: one source of truth), set to its default
//! when it has one and commented out when it has none. `check` reads a file as `veil
//! server` and `veil client` would, and says what is wrong and where (the TOML parser
//! names the line and column of a bad key or value; a rule is named by its place).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use clap::{Args, CommandFactory, Subcommand};

use crate::config::{Cli, ClientArgs, ClientSettings, FileConfig, ServerArgs, ServerSettings};

/// What `veil config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a configuration file with every setting, its documentation and its default.
    Defaults,
    /// Check a configuration file: keys, values, rules.
    Check(CheckArgs),
}

/// `veil config check FILE`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check.
    pub file: std::path::PathBuf,
}

/// Runs `veil config ...`.
pub fn run(command: &ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Defaults => {
            print!("{}", defaults_text());
            Ok(())
        }
        ConfigCommand::Check(args) => {
            check(&args.file)?;
            println!("veil: {} is a valid configuration", args.file.display());
            Ok(())
        }
    }
}

/// The defaults that a key has in the file, as TOML values; keys without one are
/// commented out. `defaults_round_trip` below checks them against what `veil server` and
/// `veil client` really use.
const DEFAULTS: &[(&str, &str, &str)] = &[
    ("server", "listen", "\"0.0.0.0:4433\""),
    ("server", "connect_timeout_ms", "10000"),
    ("server", "request_timeout_ms", "30000"),
    ("server", "drain_timeout_ms", "5000"),
    ("server", "upgrade_drain_timeout_ms", "600000"),
    ("server", "edge_id", "0"),
    ("server", "runtime", "\"tokio\""),
    ("server", "threads", "1"),
    ("client", "transport", "\"auto\""),
    ("client", "h3_retry_ms", "300000"),
    ("client", "drain_timeout_ms", "5000"),
    ("client", "threads", "1"),
    ("client", "connect_timeout_ms", "10000"),
];

/// The file key of a flag: `--allow-target` is `allow_targets`, a list (as `--token` is
/// `tokens`); the others are the flag with `_` for `-`.
fn file_key(section: &str, long: &str) -> String {
    match (section, long) {
        ("server", "token") => "tokens".to_owned(),
        ("server", "allow-target") => "allow_targets".to_owned(),
        _ => long.replace('-', "_"),
    }
}

/// The text of `veil config defaults`.
pub fn defaults_text() -> String {
    let mut out = String::from(
        "# veil configuration: every setting of `veil server` ([server]) and `veil client`\n\
         # ([client]), documented as `--help` documents its flag. Give it with --config FILE;\n\
         # flags on the command line win. Routing rules are [[rule]] and [[client.rule]]\n\
         # tables, the engine's QUIC settings a [quic] table, tenants [[listener]] tables\n\
         # (docs/CONFIG.md).\n",
    );
    let cli = Cli::command();
    for section in ["server", "client"] {
        let _ = write!(out, "\n[{section}]\n");
        let Some(command) = cli.find_subcommand(section) else {
            continue;
        };
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if long == "config" || long == "help" {
                continue;
            }
            let key = file_key(section, long);
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            out.push('\n');
            for line in wrap(&help, 86) {
                let _ = writeln!(out, "# {line}");
            }
            let default = DEFAULTS
                .iter()
                .find(|(s, k, _)| *s == section && *k == key)
                .map(|(_, _, value)| *value);
            match default {
                Some(value) => {
                    let _ = writeln!(out, "{key} = {value}");
                }
                None => {
                    let _ = writeln!(out, "# {key} = {}", example(arg));
                }
            }
        }
    }
    out
}

/// A TOML value of the flag's type, to fill in: `true` for a switch (or an `on|off`), a number for a count
/// or a duration, a string otherwise, in a list for a flag that repeats.
fn example(arg: &clap::Arg) -> String {
    let name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map_or_else(|| "VALUE".to_owned(), ToString::to_string);
    let value = match (arg.get_action(), name.as_str()) {
        (clap::ArgAction::SetTrue, _) | (_, "on|off") => return "true".to_owned(),
        (_, "MS" | "US" | "N" | "MIB" | "BYTES") => return "0".to_owned(),
        (_, "ADDR") => "127.0.0.1:0",
        (_, "IP") => "192.0.2.1",
        (_, "HOST:PORT") => "edge.example:4433",
        (_, "PEM") => "file.pem",
        (_, "RUNTIME") => "tokio",
        (_, "v1|v2") => "v2",
        (_, "LOCAL_ADDR=TARGET_HOST:PORT") => "127.0.0.1:5353=dns.example:53",
        (_, "CIDR") => "10.0.0.0/8",
        (_, "FILE|-") => "-",
        (_, "NAME:SECRET") => "name:secret",
        (_, "USER:PASSWORD") => "user:password",
        (_, "NAME") => "edge.example",
        (_, "sha256:HEX") => "sha256:…",
        _ => name.as_str(),
    };
    let value = format!("{value:?}");
    if matches!(arg.get_action(), clap::ArgAction::Append) {
        format!("[{value}]")
    } else {
        value
    }
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// Reads `path` as both commands would and reports the first problem.
pub fn check(path: &Path) -> anyhow::Result<()> {
    let file = FileConfig::load(path)?;
    veil_engine::rules::compile(&file.rules).context("in [[rule]]")?;
    veil_engine::rules::compile(&file.client.rules).context("in [[client.rule]]")?;
    let quic = file.quic.clone();
    let server = ServerSettings::merge(ServerArgs::default(), file.server, quic.clone())
        .context("in [server]")?;
    for listener in &file.listeners {
        veil_engine::rules::compile(&listener.rules)
            .with_context(|| format!("in [[listener.rule]] of {:?}", listener.name))?;
    }
    if !file.listeners.is_empty() {
        server.for_listeners(&file.rules, file.listeners)?;
    }
    // A [client] section must be complete (an edge and a way to trust it) to be used;
    // only one that says something is checked.
    if file.client.edge.is_some() {
        ClientSettings::merge(ClientArgs::default(), file.client, quic).context("in [client]")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip() {
        let text = defaults_text();
        let file = FileConfig::parse(&text).expect("the defaults parse");
        let from_file =
            ServerSettings::merge(ServerArgs::default(), file.server, file.quic).expect("merge");
        let plain = ServerSettings::merge(
            ServerArgs::default(),
            crate::config::ServerFile::default(),
            veil_engine::QuicConfig::default(),
        )
        .expect("merge");
        assert_eq!(format!("{from_file:?}"), format!("{plain:?}"));
        // Every flag of both commands is documented in the text.
        for section in ["server", "client"] {
            let cli = Cli::command();
            let command = cli.find_subcommand(section).expect("subcommand");
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if long == "config" || long == "help" {
                    continue;
                }
                let key = file_key(section, long);
                assert!(
                    text.contains(&format!("\n{key} = ")) || text.contains(&format!("# {key} = ")),
                    "{section}.{key} missing"
                );
            }
        }
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_line() {
        let dir = std::env::temp_dir().join(format!("veil-config-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = \"127.0.0.1:4433\"\nconect_timeout_ms = 5\n",
        )
        .expect("write");
        let error = format!("{:#}", check(&path).expect_err("a misspelt key"));
        assert!(
            error.contains("line 3") && error.contains("conect_timeout_ms"),
            "{error}"
        );
        std::fs::write(
            &path,
            "[[rule]]\nhost = [\"*.x.test\"]\naction = \"maybe\"\n",
        )
        .expect("write");
        assert!(check(&path).is_err());
        std::fs::write(&path, defaults_text()).expect("write");
        check(&path).expect("the defaults are a valid file");
        // Every commented-out example is a value of the right type: uncommented, the
        // file still parses.
        let uncommented: String = defaults_text()
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(key, _)| {
                        !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    format!("{rest}\n")
                }
                _ => format!("{line}\n"),
            })
            .collect();
        FileConfig::parse(&uncommented).expect("the examples are well typed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
