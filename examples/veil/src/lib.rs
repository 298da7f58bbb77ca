//! The `veil` command: `veil server` (an edge), `veil client` (local SOCKS5 and HTTP proxy
//! listeners and UDP port forwards whose flows become tunnels through the edge) and
//! `veil demo`.
//!
//! The modules are public so that tests can run an edge and a client in-process.

pub mod audit_log;
pub mod bench;
pub mod body;
pub mod config;
pub mod config_cmd;
pub mod demo;
pub mod fetch;
mod http_proxy;
pub mod limits;
mod metrics;
mod notify;
pub mod origin;
pub mod refusal;
mod route;
pub mod run;
mod socks;
mod socks_udp;
mod udp_flows;
mod udp_forward;
pub mod upgrade;

use config::{Cli, ClientSettings, Command, FileConfig, ServerSettings};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    match cli.command {
        Command::Server(flags) => {
            let mut settings = ServerSettings::merge(flags, file.server, file.quic)?;
            if !file.listeners.is_empty() {
                let tenants = settings.for_listeners(&file.rules, file.listeners)?;
                return run::server_tenants(settings, tenants).await;
            }
            settings.rules = file.rules;
            run::server(settings).await
        }
        Command::Client(flags) => {
            run::client(ClientSettings::merge(flags, file.client, file.quic)?).await
        }
        Command::Demo(args) => demo::run(&args).await,
        Command::Bench(args) => bench::run(&args, file.quic, cli.config.as_deref()).await,
        Command::Config(command) => config_cmd::run(&command),
    }
}
