//! `veil`: see `veil --help`.

use std::process::ExitCode;

use clap::Parser;
use std::path::Path;
use tracing_subscriber::EnvFilter;

use veil_cli::config::{
    Cli, Command, FileConfig, Runtime, RuntimeChoice, ServerArgs, ServerSettings,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; stdout carries the `veil: ... listening on` lines.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some((before, after)) = veil_cli::limits::raise_open_files() {
        tracing::debug!(before, after, "raised the limit on open files");
    }
    if let Command::Server(flags) = &cli.command {
        match glommio_server(flags, cli.config.as_deref()) {
            Ok(None) => {}
            Ok(Some(result)) => return exit(result),
            Err(e) => return exit(Err(e)),
        }
    }
    let threads = match veil_cli::config::tokio_threads(&cli) {
        Ok(threads) => threads,
        Err(e) => return exit(Err(e)),
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("veil: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    exit(runtime.block_on(veil_cli::run(cli)))
}

/// `veil server --runtime glommio` (flag or `[server] runtime`) runs without the tokio
/// runtime: its cores are glommio executors of their own. `None`: not asked for.
fn glommio_server(
    flags: &ServerArgs,
    config: Option<&Path>,
) -> anyhow::Result<Option<anyhow::Result<()>>> {
    let file = match config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let choice = RuntimeChoice::merge(flags, &file.server)?;
    if choice.runtime != Runtime::Glommio {
        return Ok(None);
    }
    anyhow::ensure!(
        file.listeners.is_empty(),
        "[[listener]] tables (tenants) run on the tokio runtime only"
    );
    let settings = ServerSettings::merge(flags.clone(), file.server, file.quic)?;
    Ok(Some(veil_cli::run::server_glommio(&settings, choice.cores)))
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("veil: {e:#}");
            ExitCode::FAILURE
        }
    }
}
