//! Command line and configuration file: clap flags, an optional TOML file with the same
//! settings, and the merge of the two (a flag given on the command line wins).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use veil_engine::rules::{ClientAction, EdgeAction, RuleSpec};
use veil_engine::{QuicConfig, Secret, Token, TunnelTarget};

/// Default UDP address of `veil server`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4433";
/// Default SOCKS5 listener of `veil client`.
pub const DEFAULT_SOCKS: &str = "127.0.0.1:1080";
/// Default HTTP proxy listener of `veil client`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";

/// veil: TCP over HTTP/3 CONNECT and UDP over CONNECT-UDP tunnels (MASQUE), with an edge
/// and a local proxy.
#[derive(Debug, Parser)]
#[command(name = "veil", version)]
pub struct Cli {
    /// TOML file giving any of the settings below (sections `[server]`, `[client]`,
    /// `[quic]`) and routing rules (`[[rule]]` for the edge, `[[client.rule]]` for the
    /// client; see docs/CONFIG.md); flags on the command line override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an edge: accept QUIC connections and CONNECT tunnels, dial targets.
    Server(ServerArgs),
    /// Run the local side: SOCKS5 (CONNECT and UDP ASSOCIATE) and HTTP proxy listeners, and
    /// UDP port forwards, whose flows become tunnels through the edge.
    Client(ClientArgs),
    /// Start an origin, an edge and a client on loopback, move data through both proxies,
    /// verify it and print the throughput.
    Demo(DemoArgs),
    /// Measure: goodput, added latency and memory of tunnels against direct TCP and raw
    /// QUIC, on loopback (figures, not a test).
    Bench(crate::bench::BenchArgs),
    /// Print a documented configuration file with every default, or check one.
    #[command(subcommand)]
    Config(crate::config_cmd::ConfigCommand),
}

/// Flags of `veil server`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerArgs {
    /// UDP address to listen on [default: 0.0.0.0:4433]. Port 0 picks a free port; the
    /// bound address is printed as `veil: edge listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Also take clients over TCP on ADDR (TLS with ALPN h2: HTTP/2 CONNECT and extended
    /// CONNECT; or http/1.1: CONNECT and `Upgrade: connect-udp`, an HTTPS proxy for curl
    /// and its kind), for networks that block UDP: same certificate, tokens, rules, hooks
    /// and egress as the QUIC listener. Off by default. Usually the same address as
    /// --listen (TCP and UDP ports are separate). Printed as `veil: edge listening on tcp
    /// ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub listen_tcp: Option<SocketAddr>,
    /// Every connection on --listen-tcp starts with a PROXY protocol header (v1 or v2),
    /// sent by a load balancer in front of the edge: the client address it names is the
    /// one tokens, hooks, rules, the audit log and logs see. Connections without one are
    /// closed. Only behind such a balancer: a client could otherwise claim any address.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Send a PROXY protocol header (`v1` or `v2`) at the start of every TCP connection
    /// the edge dials for a tunnel, naming the client's address and the edge address it
    /// reached, for origins that take one (nginx `proxy_protocol`, `HAProxy` `accept-proxy`)
    /// [default: none]
    #[arg(long, value_name = "v1|v2", value_parser = parse_proxy_version)]
    pub proxy_protocol_egress: Option<veil_engine::ProxyProtocolVersion>,
    /// Certificate chain in PEM, leaf first. Without --cert and --key the edge makes a
    /// self-signed certificate and prints its fingerprint as `sha256:HEX` for clients'
    /// --pin.
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// Private key of --cert, in PEM.
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate that chains to a CA in this PEM
    /// file, or their handshake fails. The certificate's first URI or DNS name (else its
    /// common name) is the identity rules (`identity = [...]`) and logs use.
    #[arg(long, value_name = "PEM")]
    pub client_ca: Option<PathBuf>,
    /// A bearer token clients must present, as NAME:SECRET (the name is what logs show:
    /// letters, digits, `_`, `-`, `.`) or a bare SECRET (named token-N by its place);
    /// repeat for several. None given: no authentication.
    #[arg(long = "token", value_name = "NAME:SECRET")]
    pub tokens: Vec<String>,
    /// An IP prefix targets may be in even though egress policy forbids it by default
    /// (loopback, private and link-local ranges, ...); repeatable.
    #[arg(long = "allow-target", value_name = "CIDR")]
    pub allow_targets: Vec<String>,
    /// Time allowed to resolve a target and, separately, to connect to it, in
    /// milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<u64>,
    /// The longest a request waits for its answer (resolving and dialling included)
    /// before the edge refuses it with 504 `connection_timeout`, in milliseconds [default:
    /// 30000].
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// On SIGINT/SIGTERM, how long open tunnels may go on before they are reset, in
    /// milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
    /// On SIGHUP the edge upgrades in place: it starts the program at its own path again
    /// (a new binary, once replaced) with the same arguments, hands it the listening
    /// sockets, and once that successor is ready sends GOAWAY and lets its open tunnels
    /// go on for this long, in milliseconds, before it exits [default: 600000].
    #[arg(long, value_name = "MS")]
    pub upgrade_drain_timeout_ms: Option<u64>,
    /// This edge's number among the edges behind one QUIC-LB load balancer: written in
    /// every connection ID it issues (the QUIC-LB server ID's first byte, 0-255), so the
    /// balancer can send each packet to the edge that owns its connection [default: 0].
    #[arg(long, value_name = "N")]
    pub edge_id: Option<u8>,
    /// Path template of the CONNECT-UDP requests the edge serves (RFC 9298 URI template
    /// path, with `{target_host}` and `{target_port}`) [default:
    /// /.well-known/masque/udp/{target_host}/{target_port}/]. Clients must use the same.
    #[arg(long, value_name = "TEMPLATE")]
    pub udp_template: Option<String>,
    /// The runtime that drives the edge [default: tokio]. `glommio` (Linux): one pinned
    /// `io_uring` executor per core, each with its own socket and engine.
    #[arg(long, value_enum, value_name = "RUNTIME")]
    pub runtime: Option<Runtime>,
    /// With --runtime glommio: how many cores to run on [default: all available].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// Serve the edge's counters in the Prometheus text format at `http://ADDR/metrics`
    /// (glommio: every core's, summed); printed as `veil: metrics listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Append one JSON line per finished tunnel (and per refused request) to FILE, or
    /// write them to standard output with `-`: client, token name, target, address
    /// dialled, bytes each way, duration, outcome. Written off the data path; dropped,
    /// counted, when the writer falls behind.
    #[arg(long, value_name = "FILE|-")]
    pub audit_log: Option<PathBuf>,
    /// CONNECT-IP (RFC 9484): a CIDR prefix whose addresses clients' IP tunnels get, one
    /// of each family per tunnel (the first address is the edge's own); repeatable, one
    /// IPv4 and one IPv6 prefix in practice. Without it CONNECT-IP requests are answered
    /// 501.
    #[arg(long = "ip-pool", value_name = "CIDR")]
    pub ip_pool: Vec<String>,
    /// Where CONNECT-IP packets leave the edge. `tun:NAME`: a TUN device the edge creates,
    /// routing the pools through it; the kernel routes the packets on (turn on forwarding,
    /// and NAT if the pools are private); carries every protocol; needs root or
    /// `CAP_NET_ADMIN`. `decap`: the edge takes packets apart into UDP and ICMP echo flows,
    /// each sent from an ordinary socket (no privileges; ping needs the edge's group in
    /// `net.ipv4.ping_group_range`, or root for raw sockets); TCP is refused with ICMP "administratively
    /// prohibited" (use the L4 proxies for TCP). Either way each packet's destination is
    /// checked against egress policy and rules. [default with --ip-pool: decap]
    #[arg(long, value_name = "tun:NAME|decap")]
    pub ip_egress: Option<String>,
    /// With --ip-egress tun:NAME: the kernel's segmentation offloads on the device
    /// (`IFF_VNET_HDR` with TSO/USO: one read or write moves up to 64 KiB of a flow)
    /// [default: on; off where a kernel or a tool mishandles them]
    #[arg(long, value_name = "on|off", value_parser = clap::builder::BoolishValueParser::new())]
    pub tun_offload: Option<bool>,
    /// When new clients must first prove their address with a QUIC Retry (RFC 9000
    /// §8.1.2), which costs them a round trip and a flood of spoofed Initials its
    /// handshakes: `always`, `never`, or `above:N` new handshakes a second on each engine
    /// [default: above:1000]
    #[arg(long, value_name = "always|never|above:N")]
    pub retry: Option<String>,
    /// With the tokio runtime: worker threads [default: 1]. One thread runs the engine
    /// and every relay without a cross-thread wake-up per hand-over, which is both faster
    /// and cheaper on a loaded machine; more threads spread the TCP relays' copying over
    /// cores. For one engine per core, see --runtime glommio.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// With the tokio runtime: QUIC drivers, each an endpoint with its own UDP socket (in
    /// one `SO_REUSEPORT` group on --listen) and its own thread, connections spread over
    /// them and kept each on its own by a kernel steering program; a client's lanes
    /// (`veil client --lanes`) land on different drivers, so that its small tunnels do not
    /// wait behind its download at the edge either (docs/CONFIG.md) [default: 1, at most
    /// 16]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=16))]
    pub drivers: Option<u8>,
    /// Receive and send buffer of the QUIC socket, in bytes, asked of the kernel (capped
    /// at `net.core.rmem_max` / `wmem_max`; the granted sizes are logged); 0 keeps the
    /// kernel's [default: the kernel's while every path is short, 1048576 while one is
    /// longer than a LAN]
    #[arg(long, value_name = "BYTES")]
    pub udp_buffer_bytes: Option<usize>,
    /// After each message the QUIC driver polls for this long, in microseconds, before it
    /// sleeps, so that an answer due soon finds its CPU awake (tokio runtime only). Trades
    /// CPU for round trips where cores are to spare; where processes share few CPUs it
    /// slows everything (docs/PERFORMANCE.md, "Busy polling") [default: 0, sleep at once]
    #[arg(long, value_name = "US")]
    pub busy_poll_us: Option<u64>,
}

/// The runtime of `veil server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// tokio, one socket (veil-tokio); one thread unless --threads says more.
    #[default]
    Tokio,
    /// glommio, thread-per-core, one socket per core (veil-glommio, Linux only).
    Glommio,
}

/// Which runtime `veil server` runs on, and on how many cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeChoice {
    /// The runtime.
    pub runtime: Runtime,
    /// glommio: cores to run on (`None`: all available).
    pub cores: Option<usize>,
}

impl RuntimeChoice {
    /// Merges the flags over the file; `--cores` only goes with glommio, `--threads` only
    /// with tokio.
    pub fn merge(flags: &ServerArgs, file: &ServerFile) -> anyhow::Result<Self> {
        let runtime = flags.runtime.or(file.runtime).unwrap_or_default();
        let cores = flags.cores.or(file.cores);
        if cores.is_some() && runtime != Runtime::Glommio {
            bail!("--cores goes with --runtime glommio");
        }
        if cores == Some(0) {
            bail!("--cores must be at least 1");
        }
        if flags.threads.or(file.threads).is_some() && runtime != Runtime::Tokio {
            bail!("--threads goes with the tokio runtime (glommio takes --cores)");
        }
        if flags.drivers.or(file.drivers).is_some() && runtime != Runtime::Tokio {
            bail!("--drivers goes with the tokio runtime (glommio runs one per core: --cores)");
        }
        Ok(Self { runtime, cores })
    }
}

/// Worker threads of the tokio runtime a command runs on: `--threads` or the file's
/// `threads` for `veil server` and `veil client` (1 by default: see `--threads`); every
/// available core for the commands that run several parts in one process (`demo`,
/// `bench`).
pub fn tokio_threads(cli: &Cli) -> anyhow::Result<usize> {
    let file = || match &cli.config {
        Some(path) => FileConfig::load(path),
        None => Ok(FileConfig::default()),
    };
    let threads = match &cli.command {
        Command::Server(flags) => flags.threads.or(file()?.server.threads),
        Command::Client(flags) => flags.threads.or(file()?.client.threads),
        _ => {
            return Ok(std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
        }
    };
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(threads) => Ok(threads),
        None => Ok(1),
    }
}

/// Flags of `veil client`.
#[derive(Debug, Default, Args)]
pub struct ClientArgs {
    /// The edge's address, HOST:PORT (its UDP port; with --transport h2 its TCP port).
    #[arg(long, value_name = "HOST:PORT")]
    pub edge: Option<String>,
    /// How to reach the edge: `auto` (HTTP/3, and HTTP/2 over TLS over TCP when HTTP/3 is
    /// not established within 300 ms or fails; HTTP/3 again after --h3-retry-ms), `h3`
    /// (QUIC only) or `h2` (TCP only, for networks that block UDP). The edge needs
    /// `--listen-tcp` on the same port for h2. Every front (SOCKS5 TCP and UDP, the HTTP
    /// proxy, UDP forwards) works over both; over h2, UDP rides capsules on the tunnel's
    /// stream [default: auto]
    #[arg(long, value_name = "auto|h3|h2", value_parser = parse_transport)]
    pub transport: Option<veil_engine::Transport>,
    /// With --transport auto: how long a client that fell back to HTTP/2 stays there
    /// before it tries HTTP/3 again, in milliseconds [default: 300000]
    #[arg(long, value_name = "MS")]
    pub h3_retry_ms: Option<u64>,
    /// Optimistic TCP tunnels: answer the local application (SOCKS5 success, HTTP `200
    /// Connection established`) before asking for the tunnel, and send its first bytes
    /// behind the request, saving a round trip to the edge on every new tunnel. A
    /// refusal, the edge's or a request this client could not send, then resets the application's connection instead of answering
    /// it with a SOCKS5 error code or an HTTP status (docs/CONFIG.md)
    #[arg(long)]
    pub optimistic: bool,
    /// Lanes to the edge: this many client endpoints, each with its own UDP socket,
    /// driver and QUIC connection; each new tunnel goes to the lane that has moved the
    /// fewest bytes lately, so that small requests do not queue behind a download on a
    /// shared one (docs/CONFIG.md) [default: 1, at most 8]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=8))]
    pub lanes: Option<u8>,
    /// TLS server name to ask for and, with --ca, to verify [default: the --edge host].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Trust the edge whose certificate has this SHA-256 fingerprint (`sha256:HEX`, as
    /// `veil server` prints it).
    #[arg(long, value_name = "sha256:HEX", conflicts_with_all = ["ca", "insecure"])]
    pub pin: Option<String>,
    /// Trust edges whose certificate chains to this CA certificate (PEM).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// Do not verify the edge's certificate at all. Anyone on the path can then read and
    /// change the traffic: for labs only.
    #[arg(long)]
    pub insecure: bool,
    /// Bearer token to present to the edge.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// A client certificate chain (PEM, leaf first) for an edge that asks for one
    /// (its --client-ca); with --key.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// SOCKS5 listener address [default: 127.0.0.1:1080]; printed as `veil: socks5
    /// listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub socks: Option<SocketAddr>,
    /// HTTP proxy listener address (CONNECT and plain-HTTP forwarding) [default:
    /// 127.0.0.1:8080]; printed as `veil: http listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Require this username:password from SOCKS5 clients (RFC 1929). This is the local
    /// listener's own check, separate from the edge token.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub socks_user: Option<String>,
    /// Forward UDP: datagrams to `LOCAL_ADDR` go through a CONNECT-UDP tunnel to
    /// `TARGET_HOST:PORT`, and its answers come back to the sender (one tunnel per sender
    /// address, closed when idle). Repeatable. Printed as `veil: udp forward listening on
    /// ADDR to TARGET`. Example: 127.0.0.1:5353=dns.example:53.
    #[arg(long = "udp-forward", value_name = "LOCAL_ADDR=TARGET_HOST:PORT")]
    pub udp_forwards: Vec<String>,
    /// Path template of CONNECT-UDP requests, as the edge's --udp-template [default:
    /// /.well-known/masque/udp/{target_host}/{target_port}/].
    #[arg(long, value_name = "TEMPLATE")]
    pub udp_template: Option<String>,
    /// On SIGINT/SIGTERM, how long open tunnels may go on before they are reset, in
    /// milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Worker threads of the runtime [default: 1: the engine, the listeners and every
    /// relay on one thread, without a cross-thread wake-up per hand-over].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Receive and send buffer of the QUIC socket, in bytes, asked of the kernel (capped
    /// at `net.core.rmem_max` / `wmem_max`; the granted sizes are logged); 0 keeps the
    /// kernel's [default: the kernel's while every path is short, 1048576 while one is
    /// longer than a LAN]
    #[arg(long, value_name = "BYTES")]
    pub udp_buffer_bytes: Option<usize>,
    /// After each message the QUIC driver polls for this long, in microseconds, before it
    /// sleeps, so that an answer due soon finds its CPU awake (tokio runtime only). Trades
    /// CPU for round trips where cores are to spare; where processes share few CPUs it
    /// slows everything (docs/PERFORMANCE.md, "Busy polling") [default: 0, sleep at once]
    #[arg(long, value_name = "US")]
    pub busy_poll_us: Option<u64>,
    /// Resolve and connect timeout of flows that `[[client.rule]]` sends direct, in
    /// milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<u64>,
    /// The local address direct flows leave from (say, the physical interface's address
    /// beside a VPN) [default: the kernel's choice].
    #[arg(long, value_name = "IP")]
    pub direct_source: Option<IpAddr>,
    /// Serve the client's counters in the Prometheus text format at
    /// `http://ADDR/metrics`; printed as `veil: metrics listening on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Carry IP over CONNECT-IP (RFC 9484) through TUN device NAME, created with the
    /// addresses the edge assigns and the routes it advertises (or --tun-route); printed
    /// as `tun NAME ready: ADDRESSES` once configured. TCP applications can still use the
    /// SOCKS5 and HTTP listeners (one stream per connection) when they are named. Needs
    /// root or `CAP_NET_ADMIN`. Keep the edge's own address reachable outside the tunnel.
    #[arg(long, value_name = "NAME")]
    pub tun: Option<String>,
    /// With --tun: route this CIDR prefix into the tunnel instead of the advertised
    /// routes; repeatable.
    #[arg(long = "tun-route", value_name = "CIDR", requires = "tun")]
    pub tun_route: Vec<String>,
    /// With --tun: the kernel's segmentation offloads on the device (`IFF_VNET_HDR` with
    /// TSO/USO: one read or write moves up to 64 KiB of a flow) [default: on]
    #[arg(long, value_name = "on|off", value_parser = clap::builder::BoolishValueParser::new())]
    pub tun_offload: Option<bool>,
}

/// Flags of `veil demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// MiB moved on each path.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub size_mib: u64,
}

/// The TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerFile,
    /// `[client]`.
    #[serde(default)]
    pub client: ClientFile,
    /// `[quic]`: the engine's QUIC settings (`max_idle_timeout_ms`, `pacing`, ...).
    #[serde(default)]
    pub quic: QuicConfig,
    /// `[[rule]]`: the edge's routing rules, first match wins (`veil_engine::rules`).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec<EdgeAction>>,
    /// `[[listener]]`: tenants, each an edge of its own in this process.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerFile>,
}

/// `[server]` of the TOML file: the flags of `veil server`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Each field is the flag of the same name.
pub struct ServerFile {
    pub listen: Option<SocketAddr>,
    pub listen_tcp: Option<SocketAddr>,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub proxy_protocol_egress: Option<veil_engine::ProxyProtocolVersion>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub tokens: Vec<Secret>,
    #[serde(default)]
    pub allow_targets: Vec<String>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub upgrade_drain_timeout_ms: Option<u64>,
    pub edge_id: Option<u8>,
    pub udp_template: Option<String>,
    pub runtime: Option<Runtime>,
    pub cores: Option<usize>,
    pub threads: Option<usize>,
    pub drivers: Option<u8>,
    pub udp_buffer_bytes: Option<usize>,
    pub busy_poll_us: Option<u64>,
    pub metrics: Option<SocketAddr>,
    pub audit_log: Option<PathBuf>,
    #[serde(default)]
    pub ip_pool: Vec<String>,
    pub ip_egress: Option<String>,
    pub tun_offload: Option<bool>,
    pub retry: Option<String>,
}

/// `[[listener]]` of the TOML file: one tenant of a `veil server` that serves several from
/// one process. Each has its own addresses, certificate, tokens, egress allowlist and
/// `[[listener.rule]]`s, and its name labels its metrics (`tenant="NAME"`) and audit
/// records; everything else (timeouts, drain, `[quic]`, `metrics`, `audit_log`) comes
/// from `[server]` and is shared. Nothing security-relevant is inherited: a listener
/// without `tokens` takes no client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Each field is the `[server]` key of the same name.
pub struct ListenerFile {
    /// The tenant's name: letters, digits, `-` and `_`.
    pub name: String,
    pub listen: Option<SocketAddr>,
    pub listen_tcp: Option<SocketAddr>,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub proxy_protocol_egress: Option<veil_engine::ProxyProtocolVersion>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub tokens: Vec<Secret>,
    #[serde(default)]
    pub allow_targets: Vec<String>,
    pub udp_template: Option<String>,
    pub retry: Option<String>,
    pub edge_id: Option<u8>,
    /// `[[listener.rule]]`: this tenant's rules.
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec<EdgeAction>>,
}

/// `[client]` of the TOML file: the flags of `veil client`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // Each field is the flag of the same name.
pub struct ClientFile {
    pub edge: Option<String>,
    pub transport: Option<veil_engine::Transport>,
    pub h3_retry_ms: Option<u64>,
    #[serde(default)]
    pub optimistic: bool,
    pub lanes: Option<u8>,
    pub server_name: Option<String>,
    pub pin: Option<String>,
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    pub token: Option<Secret>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub socks: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub socks_user: Option<Secret>,
    #[serde(default)]
    pub udp_forward: Vec<String>,
    pub udp_template: Option<String>,
    pub drain_timeout_ms: Option<u64>,
    pub threads: Option<usize>,
    pub udp_buffer_bytes: Option<usize>,
    pub busy_poll_us: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub direct_source: Option<IpAddr>,
    pub metrics: Option<SocketAddr>,
    pub tun: Option<String>,
    #[serde(default)]
    pub tun_route: Vec<String>,
    pub tun_offload: Option<bool>,
    /// `[[client.rule]]`: where each new flow goes (tunnel, direct, block).
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleSpec<ClientAction>>,
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

/// Everything `veil server` runs with.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// UDP address to bind.
    pub listen: SocketAddr,
    /// TCP address of the TCP on-ramp (TLS, HTTP/2); `None`: no TCP listener.
    pub listen_tcp: Option<SocketAddr>,
    /// TCP connections start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The PROXY header sent to origins, if any.
    pub proxy_protocol_egress: Option<veil_engine::ProxyProtocolVersion>,
    /// Certificate and key files; `None`: self-signed.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// CA file client certificates must chain to (mutual TLS); `None`: none asked.
    pub client_ca: Option<PathBuf>,
    /// Accepted tokens, each with its name.
    pub tokens: Vec<Token>,
    /// Egress allowlist prefixes.
    pub allow_targets: Vec<String>,
    /// Resolve and connect timeout.
    pub connect_timeout: Duration,
    /// How long a request may wait for its answer.
    pub request_timeout: Duration,
    /// Drain time at shutdown.
    pub drain: Duration,
    /// Drain time of the old process after an upgrade in place.
    pub upgrade_drain: Duration,
    /// The QUIC-LB server ID byte naming this edge.
    pub edge_id: u8,
    /// CONNECT-UDP path template; `None`: the engine's default.
    pub udp_template: Option<String>,
    /// QUIC settings.
    pub quic: QuicConfig,
    /// Routing rules (`[[rule]]`).
    pub rules: Vec<RuleSpec<EdgeAction>>,
    /// Where to serve metrics; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// Where audit records go; `None`: not kept.
    pub audit_log: Option<crate::audit_log::AuditTarget>,
    /// CONNECT-IP address pools (CIDR).
    pub ip_pools: Vec<String>,
    /// CONNECT-IP: where packets leave; set exactly when pools are.
    pub ip_egress: Option<IpEgressSpec>,
    /// With a `tun:` egress: open it with the kernel's segmentation offloads.
    pub tun_offload: bool,
    /// When new clients must prove their address with a Retry.
    pub retry: veil_engine::RetryPolicy,
    /// The tenant (`[[listener]]` name) this edge serves, when the process serves several.
    pub tenant: Option<String>,
    /// The QUIC socket's buffers ([`udp_buffer`]).
    pub udp_buffer: UdpBuffers,
    /// How long the QUIC drivers poll before sleeping; `None`: not at all.
    pub busy_poll: Option<Duration>,
    /// QUIC drivers (tokio): endpoints, each with its socket and thread.
    pub drivers: NonZeroUsize,
}

/// How `veil client` checks the edge's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// SHA-256 of the edge certificate.
    Pin([u8; 32]),
    /// CA certificate file.
    Ca(PathBuf),
    /// No check.
    Insecure,
}

/// Username and password a SOCKS5 client must give the local listener.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalCredentials {
    /// The username.
    pub user: String,
    /// The password; never printed.
    pub password: Secret,
}

impl fmt::Debug for LocalCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCredentials")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl LocalCredentials {
    /// Parses `USER:PASSWORD` (the password may contain colons).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some((user, password)) = text.split_once(':') else {
            bail!("--socks-user wants USER:PASSWORD");
        };
        if user.is_empty() || user.len() > 255 || password.len() > 255 {
            bail!("--socks-user: user and password must be 1 to 255 bytes");
        }
        Ok(Self {
            user: user.to_owned(),
            password: Secret::new(password),
        })
    }
}

/// Everything `veil client` runs with.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The edge, `HOST:PORT`, resolved at start.
    pub edge: String,
    /// HTTP/3 over QUIC, HTTP/2 over TCP, or both raced.
    pub transport: veil_engine::Transport,
    /// Auto: how long a fallback to HTTP/2 lasts before HTTP/3 is tried again; `None`: the
    /// engine's default.
    pub h3_retry: Option<Duration>,
    /// Optimistic TCP tunnels (`ClientConfig::optimistic`).
    pub optimistic: bool,
    /// Client endpoints to the edge, each with its own socket, driver and connection
    /// (`veil_engine::lanes`).
    pub lanes: NonZeroUsize,
    /// TLS server name; `None`: the host of `edge`.
    pub server_name: Option<String>,
    /// How the edge is trusted.
    pub trust: Trust,
    /// Token for the edge.
    pub token: Option<Secret>,
    /// Client certificate and key files (mutual TLS).
    pub certificate: Option<(PathBuf, PathBuf)>,
    /// SOCKS5 listener; `None`: not opened.
    pub socks: Option<SocketAddr>,
    /// HTTP proxy listener; `None`: not opened.
    pub http: Option<SocketAddr>,
    /// Local SOCKS5 credentials, if required.
    pub socks_user: Option<LocalCredentials>,
    /// UDP port forwards.
    pub udp_forwards: Vec<UdpForward>,
    /// CONNECT-UDP path template; `None`: the engine's default.
    pub udp_template: Option<String>,
    /// Drain time at shutdown.
    pub drain: Duration,
    /// QUIC settings.
    pub quic: QuicConfig,
    /// Split tunnelling (`[[client.rule]]`).
    pub rules: Vec<RuleSpec<ClientAction>>,
    /// Where direct flows leave from.
    pub direct_source: Option<IpAddr>,
    /// Resolve and connect timeout of direct flows.
    pub connect_timeout: Duration,
    /// The QUIC socket's buffers ([`udp_buffer`]).
    pub udp_buffer: UdpBuffers,
    /// How long the QUIC drivers poll before sleeping; `None`: not at all.
    pub busy_poll: Option<Duration>,
    /// Where to serve metrics; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// CONNECT-IP through this TUN device; `None`: no IP tunnel.
    pub tun: Option<String>,
    /// With `tun`: routes instead of the advertised ones.
    pub tun_routes: Vec<(IpAddr, u8)>,
    /// With `tun`: open it with the kernel's segmentation offloads.
    pub tun_offload: bool,
}

/// One `--udp-forward`: a local UDP address whose datagrams go to a fixed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpForward {
    /// Where to listen.
    pub local: SocketAddr,
    /// Where the datagrams go, through the edge.
    pub target: TunnelTarget,
}

impl UdpForward {
    /// Parses `LOCAL_ADDR=TARGET_HOST:PORT`; the host is a DNS name, an IPv4 address or a
    /// bracketed IPv6 address.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let Some((local, target)) = text.split_once('=') else {
            bail!("--udp-forward wants LOCAL_ADDR=TARGET_HOST:PORT, not {text:?}");
        };
        let local = local
            .parse()
            .with_context(|| format!("--udp-forward: {local:?} is not a local ADDR:PORT"))?;
        let target = parse_target(target)
            .with_context(|| format!("--udp-forward: {target:?} is not a HOST:PORT target"))?;
        Ok(Self { local, target })
    }
}

/// The edge's tokens from `NAME:SECRET` or bare `SECRET` texts (named `token-N`); names
/// must be unique, since logs and identities tell tokens apart by them.
fn named_tokens(texts: &[Secret]) -> anyhow::Result<Vec<Token>> {
    let mut tokens: Vec<Token> = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let token = Token::parse(text.expose(), index + 1).context("a token must not be empty")?;
        if tokens.iter().any(|seen| seen.name() == token.name()) {
            bail!("two tokens are named {:?}", token.name());
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// Parses `HOST:PORT` into a tunnel target, as the engine parses a CONNECT authority.
fn parse_target(text: &str) -> anyhow::Result<TunnelTarget> {
    Ok(text.parse::<TunnelTarget>()?)
}

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// The engine's own default (`EdgeConfig::request_timeout`).
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_DRAIN_MS: u64 = 5_000;
/// How long an upgraded edge's old process lets tunnels go on, by default: long transfers
/// finish, and nothing hurries an old process that serves only what it had.
const DEFAULT_UPGRADE_DRAIN_MS: u64 = 600_000;

/// Flags over file: a flag given wins; list flags given replace the file's list.
fn pick_list<T>(flags: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flags.is_empty() { file } else { flags }
}

fn default_addr(text: &str) -> SocketAddr {
    // The defaults are literals that parse.
    text.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl ServerSettings {
    /// Merges the flags over the file.
    pub fn merge(flags: ServerArgs, file: ServerFile, quic: QuicConfig) -> anyhow::Result<Self> {
        let cert = flags.cert.or(file.cert);
        let key = flags.key.or(file.key);
        let cert_key = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--cert and --key go together"),
        };
        let texts = pick_list(
            flags.tokens.into_iter().map(Secret::new).collect(),
            file.tokens,
        );
        let tokens = named_tokens(&texts)?;
        let ip_pools = pick_list(flags.ip_pool, file.ip_pool);
        for pool in &ip_pools {
            parse_prefix(pool).context("--ip-pool")?;
        }
        let ip_egress = flags
            .ip_egress
            .or(file.ip_egress)
            .map(|text| parse_ip_egress(&text))
            .transpose()?;
        if (flags.proxy_protocol || file.proxy_protocol)
            && flags.listen_tcp.or(file.listen_tcp).is_none()
        {
            bail!("--proxy-protocol applies to the TCP listener: give --listen-tcp too");
        }
        // Pools without an egress: `decap`, the off-ramp that needs no privileges.
        let ip_egress = match (ip_pools.is_empty(), ip_egress) {
            (false, None) => Some(IpEgressSpec::Decap),
            (true, Some(_)) => bail!("--ip-egress needs at least one --ip-pool"),
            (_, egress) => egress,
        };
        Ok(Self {
            listen: flags
                .listen
                .or(file.listen)
                .unwrap_or_else(|| default_addr(DEFAULT_LISTEN)),
            listen_tcp: flags.listen_tcp.or(file.listen_tcp),
            proxy_protocol: flags.proxy_protocol || file.proxy_protocol,
            proxy_protocol_egress: flags.proxy_protocol_egress.or(file.proxy_protocol_egress),
            cert_key,
            client_ca: flags.client_ca.or(file.client_ca),
            tokens,
            allow_targets: pick_list(flags.allow_targets, file.allow_targets),
            connect_timeout: Duration::from_millis(
                flags
                    .connect_timeout_ms
                    .or(file.connect_timeout_ms)
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
            ),
            request_timeout: Duration::from_millis(
                flags
                    .request_timeout_ms
                    .or(file.request_timeout_ms)
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS),
            ),
            drain: Duration::from_millis(
                flags
                    .drain_timeout_ms
                    .or(file.drain_timeout_ms)
                    .unwrap_or(DEFAULT_DRAIN_MS),
            ),
            upgrade_drain: Duration::from_millis(
                flags
                    .upgrade_drain_timeout_ms
                    .or(file.upgrade_drain_timeout_ms)
                    .unwrap_or(DEFAULT_UPGRADE_DRAIN_MS),
            ),
            edge_id: flags.edge_id.or(file.edge_id).unwrap_or(0),
            udp_template: flags.udp_template.or(file.udp_template),
            quic,
            rules: Vec::new(),
            metrics: flags.metrics.or(file.metrics),
            audit_log: flags
                .audit_log
                .or(file.audit_log)
                .map(|path| crate::audit_log::AuditTarget::parse(&path)),
            ip_pools,
            ip_egress,
            tun_offload: flags.tun_offload.or(file.tun_offload).unwrap_or(true),
            retry: flags
                .retry
                .or(file.retry)
                .map(|text| parse_retry(&text))
                .transpose()?
                .unwrap_or(veil_engine::EdgeConfig::default().retry),
            tenant: None,
            udp_buffer: udp_buffer(flags.udp_buffer_bytes.or(file.udp_buffer_bytes)),
            busy_poll: busy_poll(flags.busy_poll_us.or(file.busy_poll_us)),
            drivers: drivers(flags.drivers.or(file.drivers))?,
        })
        .and_then(Self::checked_drivers)
    }
}

/// Where CONNECT-IP packets leave an edge (`--ip-egress`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpEgressSpec {
    /// `tun:NAME`: through a TUN device of that name.
    Tun(String),
    /// `decap`: taken apart into flows, each with a socket.
    Decap,
}

impl ServerSettings {
    /// Refuses what several drivers cannot serve: a TUN device for CONNECT-IP, whose
    /// packets one driver reads.
    fn checked_drivers(self) -> anyhow::Result<Self> {
        if self.drivers.get() > 1 && matches!(self.ip_egress, Some(IpEgressSpec::Tun(_))) {
            bail!(
                "--drivers above 1 carries CONNECT-IP through the decap off-ramp only; a TUN device (--ip-egress tun:NAME) serves one driver"
            );
        }
        Ok(self)
    }

    /// The settings of each `[[listener]]`: its own keys over the shared ones of `self`
    /// (from `[server]` and the flags). The shared settings must not give what belongs to
    /// a listener (addresses, certificate, tokens, allowlist, rules): it would be unclear
    /// which tenant they were meant for.
    pub fn for_listeners(
        &self,
        shared_rules: &[RuleSpec<EdgeAction>],
        listeners: Vec<ListenerFile>,
    ) -> anyhow::Result<Vec<Self>> {
        if !self.tokens.is_empty()
            || !self.allow_targets.is_empty()
            || self.cert_key.is_some()
            || self.client_ca.is_some()
            || self.listen_tcp.is_some()
            || !shared_rules.is_empty()
            || !self.ip_pools.is_empty()
        {
            bail!(
                "with [[listener]] tables, give tokens, allow_targets, cert/key, client_ca, listen_tcp and rules in each listener ([[listener.rule]]), not in [server] or the flags; CONNECT-IP pools are not per listener yet"
            );
        }
        let mut names = std::collections::HashSet::new();
        listeners
            .into_iter()
            .map(|listener| {
                let name = listener.name.clone();
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    bail!("listener name {name:?}: letters, digits, - and _ only");
                }
                if !names.insert(name.clone()) {
                    bail!("two listeners are named {name:?}");
                }
                self.for_listener(listener)
                    .with_context(|| format!("in [[listener]] {name:?}"))
            })
            .collect()
    }

    fn for_listener(&self, listener: ListenerFile) -> anyhow::Result<Self> {
        let cert_key = match (listener.cert, listener.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("cert and key go together"),
        };
        if listener.proxy_protocol && listener.listen_tcp.is_none() {
            bail!("proxy_protocol applies to the TCP listener: give listen_tcp too");
        }
        Ok(Self {
            listen: listener.listen.context("no listen address")?,
            listen_tcp: listener.listen_tcp,
            proxy_protocol: listener.proxy_protocol,
            proxy_protocol_egress: listener
                .proxy_protocol_egress
                .or(self.proxy_protocol_egress),
            cert_key,
            client_ca: listener.client_ca,
            tokens: named_tokens(&listener.tokens)?,
            allow_targets: listener.allow_targets,
            udp_template: listener.udp_template.or_else(|| self.udp_template.clone()),
            rules: listener.rules,
            retry: listener
                .retry
                .map(|text| parse_retry(&text))
                .transpose()?
                .unwrap_or(self.retry),
            edge_id: listener.edge_id.unwrap_or(self.edge_id),
            tenant: Some(listener.name),
            // Served once by the process for every tenant (the audit log's records say
            // which).
            metrics: None,
            ..self.clone()
        })
    }
}

/// Reads `--retry`: `always`, `never` or `above:N`.
fn parse_retry(text: &str) -> anyhow::Result<veil_engine::RetryPolicy> {
    use veil_engine::RetryPolicy;
    match text {
        "always" => Ok(RetryPolicy::Always),
        "never" => Ok(RetryPolicy::Never),
        _ => match text.strip_prefix("above:").map(str::parse) {
            Some(Ok(per_second)) => Ok(RetryPolicy::AboveRate { per_second }),
            _ => bail!("--retry {text:?}: expected always, never or above:N (handshakes a second)"),
        },
    }
}

/// Reads `--ip-egress`: `tun:NAME` or `decap`.
fn parse_ip_egress(text: &str) -> anyhow::Result<IpEgressSpec> {
    match text.split_once(':') {
        Some(("tun", name)) if !name.is_empty() => Ok(IpEgressSpec::Tun(name.to_owned())),
        _ if text == "decap" => Ok(IpEgressSpec::Decap),
        _ => bail!("--ip-egress {text:?}: expected tun:NAME or decap"),
    }
}

/// Reads a CIDR prefix (`10.0.0.0/8`, `fd00::/64`; host bits must be zero).
pub fn parse_prefix(text: &str) -> anyhow::Result<(IpAddr, u8)> {
    let net: veil_engine::egress::IpNet = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a CIDR prefix: {e}"))?;
    Ok((net.addr(), net.prefix_len()))
}

/// `--proxy-protocol-egress`: `v1` or `v2`.
fn parse_proxy_version(text: &str) -> Result<veil_engine::ProxyProtocolVersion, String> {
    match text {
        "v1" => Ok(veil_engine::ProxyProtocolVersion::V1),
        "v2" => Ok(veil_engine::ProxyProtocolVersion::V2),
        other => Err(format!("{other:?}: want v1 or v2")),
    }
}

/// `--transport`: `auto`, `h3` or `h2`.
fn parse_transport(text: &str) -> Result<veil_engine::Transport, String> {
    match text {
        "auto" => Ok(veil_engine::Transport::Auto),
        "h3" => Ok(veil_engine::Transport::H3),
        "h2" => Ok(veil_engine::Transport::H2),
        other => Err(format!("{other:?}: want auto, h3 or h2")),
    }
}

/// The most lanes a client runs (`--lanes`): each costs a socket, a driver and a QUIC
/// connection, and two already give small tunnels a lane apart from one download.
pub const MAX_LANES: u8 = 8;

/// The most QUIC drivers an edge runs on tokio (`--drivers`): each costs a socket and a
/// thread; more than the machine's cores only take turns on them.
pub const MAX_DRIVERS: u8 = 16;

/// What the QUIC socket's buffers are asked to be, when nothing says, while the endpoint
/// has a connection on a path longer than a LAN ([`udp_buffer`]). Linux doubles it for its
/// bookkeeping: 2 MiB of queue each way.
pub const LONG_PATH_UDP_BUFFER: usize = veil_engine::socket_buffers::LONG_PATH_BUFFER_MIN;

/// How the QUIC socket's buffers are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBuffers {
    /// Asked for at start; `None`: the kernel's default.
    pub fixed: Option<usize>,
    /// Asked for while the endpoint has a connection on a path longer than a LAN
    /// (`veil_engine::Endpoint::long_paths`), the start's sizes otherwise; `None`: never
    /// changed.
    pub long_path: Option<usize>,
}

impl UdpBuffers {
    /// The default: the kernel's sizes, [`LONG_PATH_UDP_BUFFER`] while a path is long.
    pub const AUTO: Self = Self {
        fixed: None,
        long_path: Some(LONG_PATH_UDP_BUFFER),
    };

    /// The kernel's sizes, always (`udp_buffer_bytes = 0`).
    pub const KERNEL: Self = Self {
        fixed: None,
        long_path: None,
    };
}

/// `--busy-poll-us` or `busy_poll_us`: 0 or absent, no polling.
fn busy_poll(micros: Option<u64>) -> Option<Duration> {
    micros.filter(|&us| us > 0).map(Duration::from_micros)
}

/// `--udp-buffer-bytes` or `udp_buffer_bytes`: when not given, the kernel's sizes (208 KiB
/// on Debian) while every connection's path is short, and [`LONG_PATH_UDP_BUFFER`] while
/// one is longer than a LAN; 0 keeps the kernel's sizes always; any other value is asked
/// for always.
///
/// Why it depends on the path: across a path longer than a LAN whose link does not cap
/// the rate below what the endpoints move, the receiving socket is the only queue, and
/// 208 KiB is a small part of the bandwidth-delay product. Over a 20 ms path a tunnel
/// moved 12 MiB/s at the kernel's sizes and 90 at 1 MiB, as much as shadowsocks-rust over
/// TCP. Where every path is short (loopback, a LAN) and a receiver is held by its CPU,
/// the larger queue only adds delay: CUBIC fills it, and small exchanges beside a
/// saturating transfer on the same connection waited about 10 ms at the median instead
/// of 1.2-1.4, for 11-20% more bulk. docs/PERFORMANCE.md, "The default socket buffers".
fn udp_buffer(asked: Option<usize>) -> UdpBuffers {
    match asked {
        None => UdpBuffers::AUTO,
        Some(0) => UdpBuffers::KERNEL,
        Some(bytes) => UdpBuffers {
            fixed: Some(bytes),
            long_path: None,
        },
    }
}

/// `--drivers` or `[server] drivers`, checked: 1 when not given.
fn drivers(asked: Option<u8>) -> anyhow::Result<NonZeroUsize> {
    bounded_count("drivers", asked, MAX_DRIVERS)
}

/// A count of endpoints (`name`) asked for, 1 when not given, from 1 to `max`.
fn bounded_count(name: &str, asked: Option<u8>, max: u8) -> anyhow::Result<NonZeroUsize> {
    let count = asked.unwrap_or(1);
    if count > max {
        bail!("{name}: at most {max}, not {count}");
    }
    NonZeroUsize::new(usize::from(count)).with_context(|| format!("{name}: at least 1"))
}

/// `--lanes` or `[client] lanes`, checked: 1 when not given.
fn lanes(asked: Option<u8>) -> anyhow::Result<NonZeroUsize> {
    bounded_count("lanes", asked, MAX_LANES)
}

impl ClientSettings {
    /// Merges the flags over the file. A trust flag (--pin, --ca, --insecure) replaces
    /// whatever trust the file gives.
    pub fn merge(flags: ClientArgs, file: ClientFile, quic: QuicConfig) -> anyhow::Result<Self> {
        let flag_trust = trust_of(flags.pin.as_deref(), flags.ca, flags.insecure)?;
        let trust = match flag_trust {
            Some(trust) => trust,
            None => trust_of(file.pin.as_deref(), file.ca, file.insecure)?
                .context("say how to trust the edge: --pin sha256:HEX, --ca PEM or --insecure")?,
        };
        let edge = flags
            .edge
            .or(file.edge)
            .context("--edge HOST:PORT is required")?;
        let socks_user = match flags.socks_user {
            Some(text) => Some(LocalCredentials::parse(&text)?),
            None => file
                .socks_user
                .map(|secret| LocalCredentials::parse(secret.expose()))
                .transpose()?,
        };
        let tun = flags.tun.or(file.tun);
        // The listeners that were named open; both defaults only when no front was (a TUN
        // device is one), so that a second client with `--socks` alone does not collide on
        // the default HTTP port.
        let (socks, http) = match (flags.socks.or(file.socks), flags.http.or(file.http)) {
            (None, None) if tun.is_some() => (None, None),
            (None, None) => (
                Some(default_addr(DEFAULT_SOCKS)),
                Some(default_addr(DEFAULT_HTTP)),
            ),
            named => named,
        };
        Ok(Self {
            edge,
            transport: flags.transport.or(file.transport).unwrap_or_default(),
            h3_retry: flags
                .h3_retry_ms
                .or(file.h3_retry_ms)
                .map(Duration::from_millis),
            optimistic: flags.optimistic || file.optimistic,
            lanes: lanes(flags.lanes.or(file.lanes))?,
            server_name: flags.server_name.or(file.server_name),
            trust,
            token: flags.token.map(Secret::new).or(file.token),
            certificate: match (flags.cert.or(file.cert), flags.key.or(file.key)) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => bail!("--cert and --key go together"),
            },
            socks,
            http,
            socks_user,
            udp_forwards: pick_list(flags.udp_forwards, file.udp_forward)
                .iter()
                .map(|text| UdpForward::parse(text))
                .collect::<anyhow::Result<_>>()?,
            udp_template: flags.udp_template.or(file.udp_template),
            drain: Duration::from_millis(
                flags
                    .drain_timeout_ms
                    .or(file.drain_timeout_ms)
                    .unwrap_or(DEFAULT_DRAIN_MS),
            ),
            quic,
            rules: file.rules,
            direct_source: flags.direct_source.or(file.direct_source),
            udp_buffer: udp_buffer(flags.udp_buffer_bytes.or(file.udp_buffer_bytes)),
            busy_poll: busy_poll(flags.busy_poll_us.or(file.busy_poll_us)),
            metrics: flags.metrics.or(file.metrics),
            tun_routes: pick_list(flags.tun_route, file.tun_route)
                .iter()
                .map(|text| parse_prefix(text).context("--tun-route"))
                .collect::<anyhow::Result<_>>()?,
            tun,
            tun_offload: flags.tun_offload.or(file.tun_offload).unwrap_or(true),
            connect_timeout: Duration::from_millis(
                flags
                    .connect_timeout_ms
                    .or(file.connect_timeout_ms)
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
            ),
        })
    }
}

/// The trust one source (flags, or the file) gives, if any; more than one is an error.
fn trust_of(
    pin: Option<&str>,
    ca: Option<PathBuf>,
    insecure: bool,
) -> anyhow::Result<Option<Trust>> {
    let pin = pin.map(parse_pin).transpose()?;
    match (pin, ca, insecure) {
        (Some(pin), None, false) => Ok(Some(Trust::Pin(pin))),
        (None, Some(ca), false) => Ok(Some(Trust::Ca(ca))),
        (None, None, true) => Ok(Some(Trust::Insecure)),
        (None, None, false) => Ok(None),
        _ => bail!("give only one of pin, ca and insecure"),
    }
}

/// Parses `sha256:HEX` (colons between bytes allowed, the prefix optional).
pub fn parse_pin(text: &str) -> anyhow::Result<[u8; 32]> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    veil_engine::parse_fingerprint(hex)
        .with_context(|| format!("{text:?} is not a SHA-256 fingerprint (sha256:64 hex digits)"))
}

/// Formats a fingerprint the way `--pin` reads it: `sha256:` and 64 lowercase hex digits.
pub fn format_pin(fingerprint: &[u8; 32]) -> String {
    format!("sha256:{}", crate::body::hex(fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_engine::Host;

    const PIN: &str = "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn client_flags() -> ClientArgs {
        ClientArgs {
            edge: Some("edge.example:4433".into()),
            insecure: true,
            ..ClientArgs::default()
        }
    }

    #[test]
    fn the_file_gives_what_the_flags_do_not() {
        let file = FileConfig::parse(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            tokens = ["from-file"]
            allow_targets = ["127.0.0.0/8"]
            connect_timeout_ms = 1500
            [quic]
            max_idle_timeout_ms = 5000
            ack_delay_paths = "long"
            "#,
        )
        .expect("valid file");
        let settings =
            ServerSettings::merge(ServerArgs::default(), file.server, file.quic).expect("merges");
        assert_eq!(settings.listen, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(settings.tokens.len(), 1);
        assert_eq!(settings.tokens[0].name(), "token-1");
        assert!(settings.tokens[0].matches(b"from-file"));
        assert_eq!(settings.allow_targets, ["127.0.0.0/8"]);
        assert_eq!(settings.connect_timeout, Duration::from_millis(1500));
        assert_eq!(settings.drain, Duration::from_millis(DEFAULT_DRAIN_MS));
        assert_eq!(settings.quic.max_idle_timeout, Duration::from_secs(5));
        assert_eq!(
            settings.quic.ack_delay_paths,
            veil_engine::AckDelayPaths::Long
        );
        assert_eq!(settings.cert_key, None);
    }

    #[test]
    fn flags_override_the_file_and_lists_replace_it() {
        let file = FileConfig::parse(
            "[server]\nlisten = \"127.0.0.1:9000\"\ntokens = [\"a\", \"b\"]\nallow_targets = [\"10.0.0.0/8\"]\n",
        )
        .expect("valid file");
        let flags = ServerArgs {
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            tokens: vec!["c".into()],
            ..ServerArgs::default()
        };
        let settings = ServerSettings::merge(flags, file.server, file.quic).expect("merges");
        assert_eq!(settings.listen.port(), 0);
        assert_eq!(settings.tokens.len(), 1);
        assert!(settings.tokens[0].matches(b"c"));
        // No --allow-target flag: the file's list stays.
        assert_eq!(settings.allow_targets, ["10.0.0.0/8"]);
    }

    #[test]
    fn server_defaults_apply_without_flags_or_file() {
        let settings = ServerSettings::merge(
            ServerArgs::default(),
            ServerFile::default(),
            QuicConfig::default(),
        )
        .expect("merges");
        assert_eq!(settings.listen, default_addr(DEFAULT_LISTEN));
        assert_eq!(settings.listen.port(), 4433);
        assert!(settings.tokens.is_empty());
        assert_eq!(settings.connect_timeout, Duration::from_secs(10));
    }

    #[test]
    fn several_drivers_refuse_a_tun_egress_and_take_decap() {
        let merge = |drivers: u8, egress: &str| {
            let flags = ServerArgs {
                drivers: Some(drivers),
                ip_pool: vec!["10.89.0.0/24".to_owned()],
                ip_egress: Some(egress.to_owned()),
                ..ServerArgs::default()
            };
            ServerSettings::merge(flags, ServerFile::default(), QuicConfig::default())
        };
        let error = merge(2, "tun:veil-edge").expect_err("a TUN device serves one driver");
        assert!(error.to_string().contains("--drivers"), "{error}");
        assert_eq!(merge(2, "decap").expect("decap").drivers.get(), 2);
        assert_eq!(
            merge(1, "tun:veil-edge").expect("one driver").drivers.get(),
            1
        );
    }

    #[test]
    fn a_cert_needs_its_key() {
        let flags = ServerArgs {
            cert: Some("cert.pem".into()),
            ..ServerArgs::default()
        };
        let error = ServerSettings::merge(flags, ServerFile::default(), QuicConfig::default())
            .expect_err("no key");
        assert!(error.to_string().contains("--cert and --key"));
        // The key may come from the file.
        let file = ServerFile {
            key: Some("key.pem".into()),
            ..ServerFile::default()
        };
        let flags = ServerArgs {
            cert: Some("cert.pem".into()),
            ..ServerArgs::default()
        };
        let settings = ServerSettings::merge(flags, file, QuicConfig::default()).expect("merges");
        assert_eq!(
            settings.cert_key,
            Some((PathBuf::from("cert.pem"), PathBuf::from("key.pem")))
        );
    }

    #[test]
    fn client_defaults_listen_on_loopback() {
        let settings =
            ClientSettings::merge(client_flags(), ClientFile::default(), QuicConfig::default())
                .expect("merges");
        assert_eq!(
            settings.socks,
            Some("127.0.0.1:1080".parse().expect("addr"))
        );
        assert_eq!(settings.http, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(settings.trust, Trust::Insecure);
        assert_eq!(settings.socks_user, None);
    }

    #[test]
    fn only_the_named_listeners_open() {
        let socks: SocketAddr = "127.0.0.1:1081".parse().expect("addr");
        let flags = ClientArgs {
            socks: Some(socks),
            ..client_flags()
        };
        let settings = ClientSettings::merge(flags, ClientFile::default(), QuicConfig::default())
            .expect("merges");
        assert_eq!((settings.socks, settings.http), (Some(socks), None));
        let file = FileConfig::parse("[client]\nhttp = \"127.0.0.1:8081\"\n").expect("valid");
        let settings = ClientSettings::merge(client_flags(), file.client, QuicConfig::default())
            .expect("merges");
        assert_eq!(settings.socks, None);
        assert_eq!(settings.http, Some("127.0.0.1:8081".parse().expect("addr")));
    }

    #[test]
    fn a_trust_flag_replaces_the_file_trust() {
        let file = FileConfig::parse(&format!(
            "[client]\nedge = \"127.0.0.1:4433\"\npin = \"{PIN}\"\ntoken = \"t\"\nsocks_user = \"me:p:w\"\n"
        ))
        .expect("valid file");
        let settings =
            ClientSettings::merge(ClientArgs::default(), file.client, file.quic).expect("merges");
        assert_eq!(settings.trust, Trust::Pin(parse_pin(PIN).expect("pin")));
        assert_eq!(settings.token, Some(Secret::new("t")));
        assert_eq!(settings.edge, "127.0.0.1:4433");
        let user = settings.socks_user.expect("credentials");
        assert_eq!(user.user, "me");
        assert_eq!(user.password, Secret::new("p:w"));

        let file = FileConfig::parse(&format!("[client]\npin = \"{PIN}\"\n")).expect("valid");
        let settings =
            ClientSettings::merge(client_flags(), file.client, file.quic).expect("merges");
        assert_eq!(settings.trust, Trust::Insecure);
    }

    #[test]
    fn the_client_needs_an_edge_and_one_trust() {
        let no_trust = ClientArgs {
            edge: Some("127.0.0.1:1".into()),
            ..ClientArgs::default()
        };
        let error = ClientSettings::merge(no_trust, ClientFile::default(), QuicConfig::default())
            .expect_err("no trust");
        assert!(error.to_string().contains("--pin"));
        let no_edge = ClientArgs {
            insecure: true,
            ..ClientArgs::default()
        };
        assert!(
            ClientSettings::merge(no_edge, ClientFile::default(), QuicConfig::default()).is_err()
        );
        let file = ClientFile {
            pin: Some(PIN.into()),
            insecure: true,
            ..ClientFile::default()
        };
        let error = ClientSettings::merge(
            ClientArgs {
                edge: Some("127.0.0.1:1".into()),
                ..ClientArgs::default()
            },
            file,
            QuicConfig::default(),
        )
        .expect_err("two trusts");
        assert!(error.to_string().contains("only one"));
    }

    #[test]
    fn pins_round_trip_and_reject_garbage() {
        let pin = parse_pin(PIN).expect("valid pin");
        assert_eq!(pin[1], 0x11);
        assert_eq!(format_pin(&pin), PIN);
        assert!(parse_pin("sha256:abcd").is_err());
        assert!(parse_pin(&format!("{PIN}00")).is_err());
    }

    #[test]
    fn tokens_get_names_and_a_name_is_used_once() {
        let tokens = named_tokens(&[Secret::new("ops:k1"), Secret::new("k2")]).expect("valid");
        let names: Vec<&str> = tokens.iter().map(Token::name).collect();
        assert_eq!(names, ["ops", "token-2"]);
        let twice = named_tokens(&[Secret::new("ops:k1"), Secret::new("ops:k2")]);
        assert!(twice.is_err_and(|e| e.to_string().contains("\"ops\"")));
        assert!(named_tokens(&[Secret::new("")]).is_err());
    }

    #[test]
    fn local_credentials_split_at_the_first_colon_and_hide_the_password() {
        let credentials = LocalCredentials::parse("alice:s3:cret").expect("valid");
        assert_eq!(credentials.user, "alice");
        assert!(credentials.password.matches(b"s3:cret"));
        assert!(!format!("{credentials:?}").contains("s3"));
        assert!(LocalCredentials::parse("nocolon").is_err());
        assert!(LocalCredentials::parse(":pw").is_err());
    }

    #[test]
    fn udp_forwards_parse_and_come_from_flags_or_file() {
        let forward = UdpForward::parse("127.0.0.1:5353=dns.example:53").expect("valid");
        assert_eq!(forward.local, "127.0.0.1:5353".parse().expect("addr"));
        assert_eq!(forward.target.to_string(), "dns.example:53");
        let v6 = UdpForward::parse("[::1]:0=[2001:db8::1]:443").expect("valid");
        assert_eq!(v6.target.host, Host::Ip("2001:db8::1".parse().expect("ip")));
        let v4 = UdpForward::parse("127.0.0.1:0=192.0.2.7:53").expect("valid");
        assert_eq!(v4.target.host, Host::Ip([192, 0, 2, 7].into()));
        for bad in [
            "127.0.0.1:53",
            "127.0.0.1:53=host",
            "127.0.0.1:53=host:0",
            "127.0.0.1:53=host:70000",
            "localhost:53=host:53",
            "127.0.0.1:53=bad host:53",
            "127.0.0.1:53=host:053",
        ] {
            assert!(UdpForward::parse(bad).is_err(), "{bad}");
        }
        // One authority parser, the engine's: an address in any spelling a resolver reads
        // is that address, as the edge reads it (`010` is octal).
        let octal = UdpForward::parse("127.0.0.1:53=10.0.0.010:53").expect("an address");
        assert_eq!(octal.target.host, Host::Ip([10, 0, 0, 8].into()));

        let file = FileConfig::parse(
            "[client]\nudp_forward = [\"127.0.0.1:0=a.example:53\"]\nudp_template = \"/u/{target_host}/{target_port}/\"\n",
        )
        .expect("valid file");
        let settings =
            ClientSettings::merge(client_flags(), file.client, file.quic).expect("merges");
        assert_eq!(settings.udp_forwards.len(), 1);
        assert_eq!(settings.udp_forwards[0].target.to_string(), "a.example:53");
        assert_eq!(
            settings.udp_template.as_deref(),
            Some("/u/{target_host}/{target_port}/")
        );
        let flags = ClientArgs {
            udp_forwards: vec!["127.0.0.1:0=b.example:53".into()],
            ..client_flags()
        };
        let settings = ClientSettings::merge(flags, ClientFile::default(), QuicConfig::default())
            .expect("merges");
        assert_eq!(settings.udp_forwards[0].target.to_string(), "b.example:53");
        let flags = ClientArgs {
            udp_forwards: vec!["nonsense".into()],
            ..client_flags()
        };
        assert!(
            ClientSettings::merge(flags, ClientFile::default(), QuicConfig::default()).is_err()
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        assert!(FileConfig::parse("[server]\nlisten_on = \"x\"\n").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from([
            "veil",
            "client",
            "--edge",
            "127.0.0.1:4433",
            "--pin",
            PIN,
            "--socks",
            "127.0.0.1:0",
            "--socks-user",
            "u:p",
            "--udp-forward",
            "127.0.0.1:5353=dns.example:53",
            "--udp-forward",
            "127.0.0.1:5354=192.0.2.1:53",
        ])
        .expect("parses");
        let Command::Client(args) = cli.command else {
            panic!("client subcommand expected");
        };
        assert_eq!(args.pin.as_deref(), Some(PIN));
        assert_eq!(args.udp_forwards.len(), 2);
        assert!(
            Cli::try_parse_from(["veil", "client", "--pin", PIN, "--insecure"]).is_err(),
            "--pin and --insecure conflict"
        );
        let cli = Cli::try_parse_from([
            "veil",
            "server",
            "--token",
            "a",
            "--token",
            "b",
            "--allow-target",
            "127.0.0.0/8",
            "--config",
            "veil.toml",
        ])
        .expect("parses");
        assert_eq!(cli.config, Some(PathBuf::from("veil.toml")));
        let Command::Server(args) = cli.command else {
            panic!("server subcommand expected");
        };
        assert_eq!(args.tokens, ["a", "b"]);
    }

    #[test]
    fn the_runtime_comes_from_flags_or_file_and_cores_need_glommio() {
        let cli = Cli::try_parse_from(["veil", "server", "--runtime", "glommio", "--cores", "2"])
            .expect("parses");
        let Command::Server(flags) = cli.command else {
            panic!("server subcommand expected");
        };
        let choice = RuntimeChoice::merge(&flags, &ServerFile::default()).expect("valid");
        assert_eq!(
            choice,
            RuntimeChoice {
                runtime: Runtime::Glommio,
                cores: Some(2)
            }
        );
        let file = FileConfig::parse("[server]\nruntime = \"glommio\"\ncores = 1\n").expect("toml");
        let choice = RuntimeChoice::merge(&ServerArgs::default(), &file.server).expect("valid");
        assert_eq!(choice.runtime, Runtime::Glommio);
        assert_eq!(choice.cores, Some(1));
        let default = RuntimeChoice::merge(&ServerArgs::default(), &ServerFile::default());
        assert_eq!(default.expect("valid").runtime, Runtime::Tokio);
        let flags = ServerArgs {
            cores: Some(2),
            ..ServerArgs::default()
        };
        let error = RuntimeChoice::merge(&flags, &ServerFile::default()).expect_err("tokio");
        assert!(error.to_string().contains("--runtime glommio"));
    }

    #[test]
    fn retry_is_always_never_or_above_a_rate() {
        use veil_engine::RetryPolicy;
        assert_eq!(parse_retry("always").expect("always"), RetryPolicy::Always);
        assert_eq!(parse_retry("never").expect("never"), RetryPolicy::Never);
        assert_eq!(
            parse_retry("above:250").expect("a rate"),
            RetryPolicy::AboveRate { per_second: 250 }
        );
        for bad in ["", "sometimes", "above:", "above:-1", "above:x"] {
            assert!(parse_retry(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_ip_egress_is_a_device_or_decap() {
        assert_eq!(
            parse_ip_egress("tun:veil0").expect("a device"),
            IpEgressSpec::Tun("veil0".into())
        );
        assert_eq!(
            parse_ip_egress("decap").expect("decap"),
            IpEgressSpec::Decap
        );
        for bad in ["tun:", "tun", "decap:x", "eth0", ""] {
            assert!(parse_ip_egress(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pools_without_an_egress_are_decapsulated() {
        let with_pools = |egress: Option<&str>| ServerArgs {
            ip_pool: vec!["10.89.0.0/24".into()],
            ip_egress: egress.map(str::to_owned),
            ..ServerArgs::default()
        };
        let merge =
            |flags| ServerSettings::merge(flags, ServerFile::default(), QuicConfig::default());
        let settings = merge(with_pools(None)).expect("merges");
        assert_eq!(settings.ip_egress, Some(IpEgressSpec::Decap));
        let settings = merge(with_pools(Some("tun:veil0"))).expect("merges");
        assert_eq!(settings.ip_egress, Some(IpEgressSpec::Tun("veil0".into())));
        let no_pools = ServerArgs {
            ip_egress: Some("decap".into()),
            ..ServerArgs::default()
        };
        assert!(merge(no_pools).is_err(), "an egress without pools");
        let settings = merge(ServerArgs::default()).expect("merges");
        assert_eq!(settings.ip_egress, None, "no pools, no CONNECT-IP");
    }

    #[test]
    fn busy_polling_is_off_unless_asked_and_a_flag_overrides_the_file() {
        let file = || {
            FileConfig::parse("[server]\nbusy_poll_us = 150\n")
                .expect("parses")
                .server
        };
        let merge = |flags, file| ServerSettings::merge(flags, file, QuicConfig::default());
        let settings = merge(ServerArgs::default(), file()).expect("merges");
        assert_eq!(settings.busy_poll, Some(Duration::from_micros(150)));
        let off = ServerArgs {
            busy_poll_us: Some(0),
            ..ServerArgs::default()
        };
        let settings = merge(off, file()).expect("merges");
        assert_eq!(settings.busy_poll, None, "0 turns it off");
        let settings = merge(ServerArgs::default(), ServerFile::default()).expect("merges");
        assert_eq!(settings.busy_poll, None, "off by default");
        let Ok(Cli {
            command: Command::Client(flags),
            ..
        }) = Cli::try_parse_from(["veil", "client", "--busy-poll-us", "200"])
        else {
            panic!("the client takes --busy-poll-us");
        };
        assert_eq!(flags.busy_poll_us, Some(200));
    }

    #[test]
    fn udp_buffers_grow_on_long_paths_by_default_and_zero_keeps_the_kernels() {
        assert_eq!(udp_buffer(None), UdpBuffers::AUTO);
        assert_eq!(
            UdpBuffers::AUTO.fixed,
            None,
            "the kernel's while paths are short"
        );
        assert_eq!(UdpBuffers::AUTO.long_path, Some(1024 * 1024));
        let kernel = udp_buffer(Some(0));
        assert_eq!((kernel.fixed, kernel.long_path), (None, None));
        let fixed = udp_buffer(Some(4096));
        assert_eq!((fixed.fixed, fixed.long_path), (Some(4096), None));
    }

    #[test]
    fn drivers_default_to_one_stay_within_the_bound_and_go_with_tokio() {
        assert_eq!(drivers(None).expect("default").get(), 1);
        assert_eq!(drivers(Some(MAX_DRIVERS)).expect("the most").get(), 16);
        assert!(drivers(Some(0)).is_err(), "no driver");
        assert!(drivers(Some(MAX_DRIVERS + 1)).is_err(), "too many");
        let parse = |extra: &[&str]| {
            let args = [&["veil", "server"][..], extra].concat();
            Cli::try_parse_from(args)
        };
        assert!(parse(&["--drivers", "2"]).is_ok());
        assert!(parse(&["--drivers", "0"]).is_err());
        assert!(parse(&["--drivers", "17"]).is_err());
        let Ok(Cli {
            command: Command::Server(flags),
            ..
        }) = parse(&["--drivers", "2", "--runtime", "glommio"])
        else {
            panic!("parses");
        };
        assert!(RuntimeChoice::merge(&flags, &ServerFile::default()).is_err());
    }

    #[test]
    fn lanes_default_to_one_and_stay_within_the_bound() {
        use clap::Parser;
        assert_eq!(lanes(None).expect("default").get(), 1);
        assert_eq!(lanes(Some(2)).expect("two").get(), 2);
        assert_eq!(lanes(Some(MAX_LANES)).expect("the most").get(), 8);
        assert!(lanes(Some(0)).is_err(), "no lane");
        assert!(lanes(Some(MAX_LANES + 1)).is_err(), "too many");
        // The flag's parser refuses the same, before any file is read.
        let parsed =
            |n: &str| Cli::try_parse_from(["veil", "client", "--edge", "e:1", "--lanes", n]);
        assert!(parsed("0").is_err() && parsed("9").is_err());
        assert!(parsed("8").is_ok());
    }

    #[test]
    fn clap_configuration_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
