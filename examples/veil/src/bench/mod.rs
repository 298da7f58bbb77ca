//! `veil bench`: figures, not tests. Nothing here fails on a timing.
//!
//! `veil bench tcp` starts, on loopback, a TCP sink, an echo server and a holder of idle
//! connections (in the bench process), an edge (`veil server`) and a client
//! (`veil client`) as child processes of this same executable, and a raw-quiche client and
//! server pair (threads of the bench process, see [`raw`]). Then, in one run:
//!
//! - **goodput**: each round moves `--bytes` over direct TCP to the sink, over a raw quiche
//!   stream, and through SOCKS5 → veil client → QUIC → veil edge → TCP to the same sink,
//!   back to back; the table gives the median of the rounds and the median of the
//!   per-round ratios;
//! - **latency**: `--requests` request/responses of `--message` bytes to the echo server,
//!   alternating between a direct connection and a tunnel; with `raw` among the paths,
//!   also one QUIC hop's round trip alone ([`raw_rtt`]) beside the direct TCP one;
//! - **loaded**: the same, while another tunnel on the same QUIC connection carries a bulk
//!   transfer to the sink paced at `--load-rate` MiB/s (head-of-line blocking between
//!   tunnels, and the cost of sharing one congestion window, would show here); then the
//!   same through each peer among the paths, its bulk tunnel through the same local proxy;
//!   with `raw` among the paths, one QUIC hop beside a bulk stream on its connection, on
//!   another connection of the same sockets, and from another client ([`raw_rtt::Bulk`]);
//! - **memory**: the client's and the edge's `VmRSS` before and after opening `--tunnels`
//!   idle tunnels;
//! - **connect**: `--connects` new tunnels, each a SOCKS5 handshake, a CONNECT to the echo
//!   server and a 1-byte round trip, alternating between the routes (and a direct TCP
//!   connection with the same round trip);
//! - **share**: `--busy-tunnels` downloads at once through each route for `--share-secs`,
//!   and how evenly they were served ([`share`]).
//!
//! `floor` among the paths adds the floor of a proxy on quiche ([`floor`]): two more child
//! processes that relay each tunnel on a raw quiche stream, one loop per side, nothing
//! else, to weigh veil's own costs against the QUIC hop's.
//!
//! Peers ([`peers`]) are routes too: `--paths direct,proxied,shadowsocks,
//! shadowsocks-2022,tuic` measures shadowsocks-rust and TUIC beside veil in the same run,
//! interleaved, through the same SOCKS5 client path, in every part that takes routes
//! (goodput, latency, loaded, connect, share), and prints every proxy process's RSS at the end.
//!
//! `veil bench udp` ([`udp_bench`]) measures UDP through a CONNECT-UDP tunnel against
//! direct UDP and raw QUIC DATAGRAM frames: echo rate, loss and round trips at rising
//! offered loads.

mod delay_line;
mod floor;
mod handshakes;
mod ip_load;
mod load;
mod loss;
mod peers;
mod pin;
mod procs;
mod raw;
mod raw_dgram;
mod raw_rtt;
mod share;
mod step_thread;
mod tcp;
mod udp;
mod udp_bench;
mod veth;

pub use delay_line::DelayLineArgs;
pub use floor::{FloorArgs, FloorSide};
pub use udp_bench::{UdpArgs, UdpRoute};

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{Args, Subcommand, ValueEnum};
use veil_engine::QuicConfig;

use raw_rtt::Bulk;

const MIB: u64 = 1024 * 1024;
/// Bytes moved before the timed rounds, on each path.
const WARMUP_BYTES: u64 = 16 * MIB;
/// Request/responses before the timed ones.
const WARMUP_REQUESTS: usize = 100;
/// New tunnels before the timed ones, on each route.
const WARMUP_CONNECTS: usize = 20;
/// Time given to the processes to settle before memory is read.
const SETTLE: Duration = Duration::from_millis(500);

/// Flags of `veil bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub which: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// TCP over HTTP/3 CONNECT: goodput against direct TCP and a raw quiche stream, added
    /// latency, memory per idle tunnel.
    Tcp(TcpArgs),
    /// UDP over CONNECT-UDP: echo rate, loss and round trips at rising offered loads,
    /// against direct UDP and raw QUIC DATAGRAM frames.
    Udp(UdpArgs),
    /// The middle of `veil bench tcp --delay-ms`'s link (started by it, in the link's
    /// router namespace): holds every packet routed through a TUN device for the delay,
    /// drops a share of them.
    #[command(hide = true)]
    DelayLine(DelayLineArgs),
    /// One side of the floor of a proxy on quiche (started by `veil bench tcp --paths
    /// floor`): SOCKS5 → raw quiche stream → TCP, one loop per side.
    #[command(hide = true)]
    Floor(FloorArgs),
}

/// Flags of `veil bench tcp`.
#[derive(Debug, Args)]
pub struct TcpArgs {
    /// Bytes per goodput transfer.
    #[arg(long, default_value_t = 256 * MIB)]
    pub bytes: u64,
    /// Goodput rounds (each measures every path once, back to back).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Timed request/responses on each of the direct and the proxied connection.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Bytes of each request and of each response.
    #[arg(long, default_value_t = 64)]
    pub message: usize,
    /// Idle tunnels opened for the memory figure.
    #[arg(long, default_value_t = 1000)]
    pub tunnels: usize,
    /// Rate of the bulk transfer that runs beside the round trips of `--parts loaded`, in
    /// MiB/s (paced, so that it shares the QUIC connection without taking every CPU; at
    /// most 125); 0: as fast as the tunnel takes it (a saturating transfer).
    #[arg(long, default_value_t = 32)]
    pub load_rate: u64,
    /// The route that carries the bulk transfer of `--parts loaded` (one of `--paths`),
    /// instead of the route whose round trips it loads: with `--paths direct,proxied,
    /// optimistic --load-route proxied`, the optimistic client's round trips run on a QUIC
    /// connection of their own while the plain client's connection carries the bulk.
    #[arg(long)]
    pub load_route: Option<Route>,
    /// Parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "goodput,latency,loaded,memory"
    )]
    pub parts: Vec<Part>,
    /// Paths to measure (goodput; and latency and connect through each proxy named).
    #[arg(long, value_delimiter = ',', default_value = "direct,raw,proxied")]
    pub paths: Vec<Route>,
    /// New tunnels timed by `--parts connect`, on each route.
    #[arg(long, default_value_t = 300)]
    pub connects: usize,
    /// The latency and connect parts time one route at a time (each taking turns with
    /// direct TCP only), rather than every route taking turns: what each proxy does when
    /// it is the only one running, without the others' work between its round trips.
    #[arg(long)]
    pub one_at_a_time: bool,
    /// Pins the bench's threads (application, echo server, sink, raw quiche pair), every
    /// proxy's local side and every proxy's server side to these CPUs, so that each proxy
    /// is measured with the same placement (`bench::pin`). Left to the scheduler, the
    /// placement of three processes on a few CPUs changes between runs and moves round
    /// trips by a fifth.
    #[arg(long, value_name = "BENCH,CLIENT,EDGE")]
    pub pin: Option<pin::Placement>,
    /// Downloads run at once by `--parts share`, on each route.
    #[arg(long, default_value_t = 100)]
    pub busy_tunnels: usize,
    /// How long `--parts share` reads them, in seconds.
    #[arg(long, default_value_t = 5)]
    pub share_secs: u64,
    /// How long `--parts handshakes` makes new connections, in seconds.
    #[arg(long, default_value_t = 5)]
    pub handshake_secs: u64,
    /// Where the peers' programs are (`sslocal`, `ssserver`, `ssservice`, `tuic-client`,
    /// `tuic-server`); otherwise `PATH`, then `~/.cargo/bin`.
    #[arg(long, value_name = "DIR")]
    pub peer_dir: Option<std::path::PathBuf>,
    /// Drop this share of the packets between the clients and the edge, both ways, both
    /// transports (its UDP and TCP ports), with an nftables rule (`numgen random`) for the
    /// run: needs root and `nft`. On loopback a dropped packet is a whole GSO/TSO batch
    /// (up to 64 KiB) for either transport. With `--delay-ms`, the link's delay line drops
    /// them instead, one 1,500-byte packet at a time, on every path across the link (the
    /// edge's dials and the peers' too).
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub loss_percent: f64,
    /// Put the edge behind a link with this one-way delay, in milliseconds (implies
    /// `--veth`; this kernel has no netem): a router namespace in the middle of the veth
    /// link routes every packet, TCP and UDP alike, through a delay line of veil's own (a
    /// TUN device and a thread) that holds it this long. Every proxy's tunnel crosses the
    /// link twice each way (client → edge → target); the direct path, whose targets are in
    /// the clients' namespace, not at all. The line's queue is deep (20,000 packets): give
    /// `--link-mbit` for a bottleneck with a router's queue.
    #[arg(long, value_name = "MS")]
    pub delay_ms: Option<u64>,
    /// With `--delay-ms`: cap each direction of the link at this rate, with the kernel's
    /// token bucket (`tbf`, 25 ms of queue) on the router's way out; otherwise the link
    /// carries what the delay line moves.
    #[arg(long, value_name = "MBIT", requires = "delay_ms")]
    pub link_mbit: Option<u64>,
    /// Run the edge in a network namespace of its own behind a veth pair with a 1,500-byte
    /// MTU (root and `ip` needed): tunnels and the edge's dials cross a link sized as real
    /// ones are, instead of loopback's 64 KiB MTU. The targets listen at the clients' end
    /// of the link, so the proxied paths cross it twice (client → edge → target) and the
    /// direct path does not cross it.
    #[arg(long)]
    pub veth: bool,
}

/// A part of `veil bench tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Bulk transfer rates.
    Goodput,
    /// Request/response round trips.
    Latency,
    /// The same round trips while another tunnel on the same QUIC connection carries a
    /// paced bulk transfer (`--load-rate`).
    Loaded,
    /// Memory per idle tunnel.
    Memory,
    /// New-tunnel latency: SOCKS5 handshake + CONNECT + a 1-byte round trip.
    Connect,
    /// Many busy tunnels at once: the smallest one's share of what they moved.
    Share,
    /// New connections per second at the edge, per core of its CPU: handshake, one
    /// CONNECT, the 200, close (raw quiche clients in this process).
    Handshakes,
}

/// A path: direct, veil's, or a peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Route {
    /// Direct TCP to the sink.
    Direct,
    /// A raw quiche stream (no HTTP/3, no proxying).
    Raw,
    /// SOCKS5 → veil client → QUIC → veil edge → TCP to the sink.
    Proxied,
    /// The same over HTTP/2 on TCP+TLS (`veil client --transport h2` to the edge's TCP
    /// on-ramp).
    ProxiedH2,
    /// Proxied through a second client with optimistic tunnels (`veil client
    /// --optimistic`): the SOCKS5 reply and the first bytes do not wait for the edge.
    Optimistic,
    /// Proxied through a second edge and a client of its own (`veil server` + `veil
    /// client`): with `--load-route proxied`, round trips that share nothing with the bulk
    /// tunnel's proxy processes but the CPUs (and the targets), the floor any sharing
    /// inside veil is measured against.
    Apart,
    /// SOCKS5 → sslocal → TCP → ssserver → TCP (shadowsocks-rust, `aes-128-gcm`).
    Shadowsocks,
    /// The same with the 2022 cipher (`2022-blake3-aes-128-gcm`).
    #[value(name = "shadowsocks-2022")]
    Shadowsocks2022,
    /// SOCKS5 → tuic-client → QUIC → tuic-server → TCP (TUIC v5).
    Tuic,
    /// SOCKS5 → floor local → raw quiche stream → floor far → TCP: the least a proxy on
    /// quiche does ([`floor`]).
    Floor,
}

impl Route {
    /// The peer that carries this route, if a peer does.
    fn peer(self) -> Option<peers::PeerKind> {
        match self {
            Self::Shadowsocks => Some(peers::PeerKind::Shadowsocks),
            Self::Shadowsocks2022 => Some(peers::PeerKind::Shadowsocks2022),
            Self::Tuic => Some(peers::PeerKind::Tuic),
            Self::Direct
            | Self::Raw
            | Self::Proxied
            | Self::ProxiedH2
            | Self::Optimistic
            | Self::Apart
            | Self::Floor => None,
        }
    }

    /// What the tables call it.
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct TCP (app → sink)",
            Self::Raw => "raw quiche stream (no HTTP/3, no proxy)",
            Self::Proxied => "proxied: SOCKS5 → veil client → QUIC → veil edge → TCP",
            Self::ProxiedH2 => {
                "proxied over HTTP/2: SOCKS5 → veil client → TCP+TLS → veil edge → TCP"
            }
            Self::Optimistic => "proxied, optimistic tunnels (veil client --optimistic)",
            Self::Apart => "proxied through an edge and a client of its own (shares only the CPUs)",
            Self::Floor => {
                "floor: SOCKS5 → one-loop relay → raw quiche stream → one-loop relay → TCP"
            }
            Self::Shadowsocks | Self::Shadowsocks2022 | Self::Tuic => {
                self.peer().map_or("", peers::PeerKind::label)
            }
        }
    }
}

/// Runs `veil bench`. `quic` is the QUIC configuration of the `--config` file (or the
/// defaults), used by the raw baseline; the child processes read the same file.
///
/// SIGINT or SIGTERM stops a run the way its end does: what it started is dropped, so its
/// child processes are stopped and its network changes (a veth link, a loss rule) undone.
/// Without that, a bench stopped by `kill` or `timeout(1)` left its edge and clients
/// running and, with `--loss-percent`, loopback dropping packets.
pub async fn run(args: &BenchArgs, quic: QuicConfig, config: Option<&Path>) -> anyhow::Result<()> {
    let bench = async {
        match &args.which {
            BenchCommand::Tcp(tcp) => bench_tcp(tcp, &quic, config).await,
            BenchCommand::Udp(udp) => udp_bench::run(udp, &quic, config).await,
            BenchCommand::DelayLine(line) => delay_line::run(line).await,
            BenchCommand::Floor(floor) => {
                let (floor, quic) = (floor.clone(), quic.clone());
                tokio::task::spawn_blocking(move || floor::run(&floor, &quic)).await?
            }
        }
    };
    if matches!(args.which, BenchCommand::Floor(_)) {
        // The floor's side runs until its parent kills it; it holds nothing to undo.
        return bench.await;
    }
    let mut signals = veil_tokio::ShutdownSignals::new()?;
    tokio::select! {
        result = bench => result,
        received = signals.recv() => {
            received?;
            anyhow::bail!("stopped by a signal; its child processes were stopped")
        }
    }
}

/// A proxy's process, as the bench names and places it.
struct ProxyProcess {
    name: String,
    pid: u32,
    side: pin::Side,
}

/// What `veil bench tcp` runs against: the targets, the edge and its clients, and, when
/// asked for, the veth link and the loss rule (each removed when dropped).
struct Stage {
    targets: tcp::Targets,
    procs: Children,
    loss: Option<loss::Loss>,
    link: Option<veth::Link>,
}

/// The child processes of a run: veil's, and those of the peers and the floor that
/// `--paths` names.
struct Children {
    edge: procs::Edge,
    client: procs::Client,
    client_h2: Option<procs::Client>,
    client_optimistic: Option<procs::Client>,
    apart: Option<(procs::Edge, procs::Client)>,
    peers: Vec<peers::Peer>,
    floor: Option<procs::Floor>,
}

impl Children {
    /// Starts them (blocking: each is waited for until it prints that it is ready).
    fn start(
        paths: &[Route],
        peer_dir: Option<&Path>,
        config: Option<&Path>,
        place: procs::EdgePlace,
    ) -> anyhow::Result<Self> {
        let edge = procs::start_edge_in(config, place)?;
        let client = procs::start_client(config, &edge, None)?;
        let client_h2 = if paths.contains(&Route::ProxiedH2) {
            Some(procs::start_client_over(config, &edge, None, "h2", &[])?)
        } else {
            None
        };
        let client_optimistic = if paths.contains(&Route::Optimistic) {
            let optimistic = ["--optimistic"];
            Some(procs::start_client_over(
                config,
                &edge,
                None,
                "h3",
                &optimistic,
            )?)
        } else {
            None
        };
        let apart = if paths.contains(&Route::Apart) {
            let edge = procs::start_edge_in(config, place)?;
            let client = procs::start_client(config, &edge, None)?;
            Some((edge, client))
        } else {
            None
        };
        // A peer's server stands where the edge does (in the namespace under --veth).
        let (server_ip, wrapper) = match place {
            procs::EdgePlace::Veth(edge) => (edge, Some(veth::Link::exec_prefix())),
            procs::EdgePlace::Loopback => (std::net::IpAddr::from([127, 0, 0, 1]), None),
        };
        let peers = paths
            .iter()
            .filter_map(|route| route.peer())
            .map(|kind| peers::Peer::start(kind, peer_dir, server_ip, wrapper))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let floor = if paths.contains(&Route::Floor) {
            ensure!(
                place == procs::EdgePlace::Loopback,
                "the floor runs on loopback only (not with --veth or --delay-ms)"
            );
            Some(procs::start_floor(config)?)
        } else {
            None
        };
        Ok(Self {
            edge,
            client,
            client_h2,
            client_optimistic,
            apart,
            peers,
            floor,
        })
    }

    /// Stops them (blocking), clients first, so that the edge sees their connections close.
    fn stop(self) {
        drop(self.floor);
        drop(self.peers);
        drop(self.apart);
        drop(self.client_optimistic);
        drop(self.client_h2);
        drop(self.client);
        drop(self.edge);
    }
}

impl Stage {
    async fn set_up(args: &TcpArgs, config: Option<&Path>) -> anyhow::Result<Self> {
        let impairment = args.delay_ms.map(|delay_ms| veth::Impairment {
            delay_ms,
            loss_percent: args.loss_percent,
            link_mbit: args.link_mbit,
        });
        let link = if args.veth || impairment.is_some() {
            Some(veth::Link::create(impairment)?)
        } else {
            None
        };
        let (place, targets_ip) = match &link {
            Some(link) => (procs::EdgePlace::Veth(link.edge()), veth::HOST),
            None => (
                procs::EdgePlace::Loopback,
                std::net::IpAddr::from([127, 0, 0, 1]),
            ),
        };
        let targets = tcp::Targets::start(targets_ip).await?;
        let config_owned = config.map(Path::to_path_buf);
        let paths = args.paths.clone();
        let peer_dir = args.peer_dir.clone();
        let procs = tokio::task::spawn_blocking(move || {
            Children::start(&paths, peer_dir.as_deref(), config_owned.as_deref(), place)
        })
        .await??;
        for peer in &procs.peers {
            peer_ready(peer, targets.echo).await?;
        }
        // With a delay line, the line drops the packets (see `--loss-percent`).
        let loss = if args.loss_percent > 0.0 && impairment.is_none() {
            let hooks: &[&str] = if link.is_some() {
                &["output", "input"]
            } else {
                &["output"]
            };
            Some(loss::Loss::install(
                args.loss_percent,
                procs.edge.addr.port(),
                procs.edge.tcp_addr.port(),
                hooks,
            )?)
        } else {
            None
        };
        Ok(Self {
            targets,
            procs,
            loss,
            link,
        })
    }

    /// The SOCKS5 listener that carries `route`, if a proxy does.
    fn socks_of(&self, route: Route) -> Option<std::net::SocketAddr> {
        match route {
            Route::Direct | Route::Raw => None,
            Route::Proxied => Some(self.procs.client.socks),
            Route::ProxiedH2 => self.procs.client_h2.as_ref().map(|c| c.socks),
            Route::Optimistic => self.procs.client_optimistic.as_ref().map(|c| c.socks),
            Route::Apart => self.procs.apart.as_ref().map(|(_, client)| client.socks),
            Route::Floor => self.procs.floor.as_ref().map(|floor| floor.socks),
            Route::Shadowsocks | Route::Shadowsocks2022 | Route::Tuic => self
                .procs
                .peers
                .iter()
                .find(|peer| Some(peer.kind) == route.peer())
                .map(|peer| peer.socks),
        }
    }

    /// Every proxy process: its name, pid and side. veil's client(s) and edge, the peers'
    /// processes, the floor's.
    fn proxy_processes(&self) -> Vec<ProxyProcess> {
        use pin::Side::{Client, Edge};
        let one = |name: &str, pid: u32, side| ProxyProcess {
            name: name.to_owned(),
            pid,
            side,
        };
        let mut named = vec![
            one("veil client", self.procs.client.process.pid(), Client),
            one("veil edge", self.procs.edge.process.pid(), Edge),
        ];
        if let Some(client) = &self.procs.client_h2 {
            named.push(one("veil client (HTTP/2)", client.process.pid(), Client));
        }
        if let Some(client) = &self.procs.client_optimistic {
            named.push(one(
                "veil client (--optimistic)",
                client.process.pid(),
                Client,
            ));
        }
        if let Some((edge, client)) = &self.procs.apart {
            named.push(one("veil client (apart)", client.process.pid(), Client));
            named.push(one("veil edge (apart)", edge.process.pid(), Edge));
        }
        if let Some(floor) = &self.procs.floor {
            named.push(one("floor: local", floor.local.pid(), Client));
            named.push(one("floor: far", floor.far.pid(), Edge));
        }
        for peer in &self.procs.peers {
            let [local, server] = peer.pids();
            named.push(one(&format!("{}: local", peer.kind.label()), local, Client));
            named.push(one(&format!("{}: server", peer.kind.label()), server, Edge));
        }
        named
    }

    /// `--pin`: the bench's threads, and every proxy process by its side.
    fn pin(&self, placement: pin::Placement) -> anyhow::Result<()> {
        pin::pin_process(std::process::id(), placement.bench)?;
        for process in self.proxy_processes() {
            let cpu = match process.side {
                pin::Side::Client => placement.client,
                pin::Side::Edge => placement.edge,
            };
            pin::pin_process(process.pid, cpu)
                .with_context(|| format!("pinning {}", process.name))?;
        }
        Ok(())
    }

    /// Stops the processes (clients first, so that the edge sees their connections
    /// close), then removes the loss rule and the link.
    async fn tear_down(self) -> anyhow::Result<()> {
        let Self {
            procs, loss, link, ..
        } = self;
        tokio::task::spawn_blocking(move || {
            procs.stop();
            drop(loss);
            drop(link);
        })
        .await?;
        Ok(())
    }
}

/// Waits until `peer` carries a byte to `echo` and back: its two processes start at their
/// own pace, and a listening SOCKS5 port says nothing of the server behind it (TUIC's
/// listens on UDP).
async fn peer_ready(peer: &peers::Peer, echo: std::net::SocketAddr) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tcp::one_byte_round_trip(Some(peer.socks), echo).await {
            Ok(_) => return Ok(()),
            Err(error) if std::time::Instant::now() > deadline => {
                return Err(error.context(format!("{} never carried a byte", peer.kind.label())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn bench_tcp(args: &TcpArgs, quic: &QuicConfig, config: Option<&Path>) -> anyhow::Result<()> {
    ensure!(
        args.bytes > 0 && args.rounds > 0,
        "--bytes and --rounds must be positive"
    );
    ensure!(args.message > 0, "--message must be positive");
    if let Some(placement) = args.pin {
        // Before any process starts: a CPU the run may not use is a usage error.
        placement.check()?;
    }
    println!("veil bench tcp: {}", machine());
    let mut stage = Stage::set_up(args, config).await?;
    let report = measure(args, quic, &mut stage).await;
    stage.tear_down().await?;
    println!("\n{}", report?);
    Ok(())
}

/// Runs the parts `args` names against `stage`; returns the report.
async fn measure(args: &TcpArgs, quic: &QuicConfig, stage: &mut Stage) -> anyhow::Result<String> {
    println!(
        "veil bench tcp: edge pid {} on {}, client pid {} (socks5 {}), sink {}",
        stage.procs.edge.process.pid(),
        stage.procs.edge.addr,
        stage.procs.client.process.pid(),
        stage.procs.client.socks,
        stage.targets.sink
    );
    for peer in &stage.procs.peers {
        println!(
            "veil bench tcp: {}: socks5 {}, pids {:?}",
            peer.kind.label(),
            peer.socks,
            peer.pids()
        );
    }
    if let Some(placement) = args.pin {
        stage.pin(placement)?;
        println!("veil bench tcp: pinned: {placement}");
    }
    // The proxies named in --paths, veil's own first (latency and connect always measure
    // it: it is what the others are compared with).
    let mut proxies = vec![(Route::Proxied, stage.procs.client.socks)];
    for route in &args.paths {
        if let Some(socks) = stage.socks_of(*route) {
            if !proxies.iter().any(|(known, _)| known == route) {
                proxies.push((*route, socks));
            }
        }
    }

    let mut report = String::new();
    if args.parts.contains(&Part::Goodput) {
        let pids: Vec<u32> = stage
            .proxy_processes()
            .iter()
            .map(|process| process.pid)
            .collect();
        let goodput = goodput(args, quic, &mut stage.targets, &proxies, &pids).await?;
        report.push_str(&goodput.table(args.bytes));
    }
    if args.parts.contains(&Part::Latency) {
        report.push_str(&latency_part(args, quic, stage.targets.echo, &proxies).await?);
    }
    if args.parts.contains(&Part::Loaded) {
        report.push_str(&loaded_part(args, quic, stage, &proxies).await?);
    }
    if args.parts.contains(&Part::Memory) && args.tunnels > 0 {
        let (client, edge) = (&stage.procs.client, &stage.procs.edge);
        tokio::time::sleep(SETTLE).await;
        let before = (client.process.rss_kib()?, edge.process.rss_kib()?);
        let streams = tcp::open_idle(client.socks, stage.targets.idle, args.tunnels).await?;
        tokio::time::sleep(SETTLE).await;
        let after = (client.process.rss_kib()?, edge.process.rss_kib()?);
        drop(streams);
        report.push_str(&memory_table(args.tunnels, before, after));
    }
    if args.parts.contains(&Part::Connect) && args.connects > 0 {
        let echo = stage.targets.echo;
        let times = by_turns(args, &proxies, |some| {
            tcp::new_tunnels(echo, some, args.connects, WARMUP_CONNECTS)
        })
        .await?;
        report.push_str(&connect_table(args.connects, turns(args), &proxies, &times));
    }
    if args.parts.contains(&Part::Share) && args.busy_tunnels > 0 {
        let source = share::Source::start(stage.targets.echo.ip()).await?;
        let window = Duration::from_secs(args.share_secs.max(1));
        let mut spreads = Vec::new();
        for (route, socks) in &proxies {
            let shares = share::shares(*socks, source.addr, args.busy_tunnels, window).await?;
            spreads.push(share::Spread::new(*route, shares, window));
            tokio::time::sleep(SETTLE).await;
        }
        report.push_str(&share::table(args.busy_tunnels, window, &spreads));
    }
    if args.parts.contains(&Part::Handshakes) {
        let window = Duration::from_secs(args.handshake_secs.max(1));
        let made = handshakes::run(
            stage.procs.edge.addr,
            stage.procs.edge.process.pid(),
            stage.targets.echo,
            window,
        )
        .await?;
        report.push_str(&made.table());
    }
    if !stage.procs.peers.is_empty() {
        report.push_str(&rss_table(&stage.proxy_processes())?);
    }
    Ok(report)
}

/// The loaded part: round trips beside a saturating (or paced) bulk tunnel, through each
/// proxy in turn, veil first. The bulk tunnel and the round trips go through the same local
/// proxy: for veil on one QUIC connection, for a peer as its own transport has them
/// (shadowsocks-rust on two TCP connections).
async fn loaded_part(
    args: &TcpArgs,
    quic: &QuicConfig,
    stage: &mut Stage,
    proxies: &[(Route, std::net::SocketAddr)],
) -> anyhow::Result<String> {
    let mut report = String::new();
    let load_socks = match args.load_route {
        Some(load) => {
            let _ = writeln!(report, "the bulk tunnels go through {}\n", load.label());
            Some(stage.socks_of(load).with_context(|| {
                format!("--load-route {}: not a proxy among --paths", load.label())
            })?)
        }
        None => None,
    };
    let rate = args.load_rate * MIB;
    for (index, (route, socks)) in proxies.iter().enumerate() {
        if index > 0 {
            let _ = writeln!(report, "{}, the same:\n", route.label());
        }
        let bulk = tcp::proxied(load_socks.unwrap_or(*socks), stage.targets.sink).await?;
        let this = [(*route, *socks)];
        let trips = round_trips(args, stage.targets.echo, &this);
        let started = std::time::Instant::now();
        let (times, moved) = stage.targets.under_load(bulk, rate, trips).await?;
        let load = Load {
            rate: args.load_rate,
            moved,
            elapsed: started.elapsed(),
        };
        let [direct, through] = <[Vec<Duration>; 2]>::try_from(times)
            .map_err(|_| anyhow::anyhow!("two series of round trips expected"))?;
        report.push_str(&latency_table(args, direct, through, Some(load)));
        tokio::time::sleep(SETTLE).await;
    }
    if args.paths.contains(&Route::Raw) {
        let (warmup, requests) = (WARMUP_REQUESTS, args.requests);
        let mut series = Vec::new();
        for bulk in [
            Bulk::None,
            Bulk::SameConnection,
            Bulk::OtherConnection,
            Bulk::OtherClient,
        ] {
            series.push(raw_rtt::round_trips(quic, args.message, warmup, requests, bulk).await?);
        }
        report.push_str(&loaded_hop_table(args, series));
    }
    Ok(report)
}

/// One QUIC hop (raw quiche) idle, beside a saturating bulk stream on its connection,
/// beside one on another connection of the same sockets and threads, and beside one from
/// another client socket and thread: `series` in that order.
fn loaded_hop_table(args: &TcpArgs, series: Vec<Vec<Duration>>) -> String {
    let mut out = format!(
        "\n| one QUIC hop (raw quiche, no HTTP/3, no proxy), {} × {} B | p50 µs | p99 µs |\n|---|---|---|\n",
        args.requests, args.message
    );
    let labels = [
        "idle",
        "beside a saturating bulk stream on the same connection",
        "beside one on another connection (same sockets, same threads)",
        "beside one on a connection from another client socket and thread (same server)",
    ];
    for (label, mut times) in labels.into_iter().zip(series) {
        times.sort_unstable();
        let _ = writeln!(
            out,
            "| {label} | {:.1} | {:.1} |",
            micros(percentile(&times, 50)),
            micros(percentile(&times, 99))
        );
    }
    out
}

/// `--requests` round trips to the echo server on a fresh direct connection and a fresh
/// tunnel through each of `proxies`, alternating; the direct series first.
/// The latency part: round trips through every proxy against direct TCP, and, with `raw`
/// among the paths, one QUIC hop against one TCP hop.
async fn latency_part(
    args: &TcpArgs,
    quic: &QuicConfig,
    echo: std::net::SocketAddr,
    proxies: &[(Route, std::net::SocketAddr)],
) -> anyhow::Result<String> {
    let times = by_turns(args, proxies, |some| round_trips(args, echo, some)).await?;
    let mut report = latency_report(args, proxies, &times);
    if args.paths.contains(&Route::Raw) {
        let raw = raw_rtt::round_trips(
            quic,
            args.message,
            WARMUP_REQUESTS,
            args.requests,
            Bulk::None,
        );
        let (direct, raw) = (times.first().cloned().unwrap_or_default(), raw.await?);
        report.push_str(&hop_table(args, direct, raw));
    }
    Ok(report)
}

/// `measure` over every proxy taking turns, or, with `--one-at-a-time`, over each proxy
/// alone after the other: series in the same order either way, direct TCP's first (the
/// first proxy's run's, under `--one-at-a-time`).
async fn by_turns<'a, F, Fut>(
    args: &TcpArgs,
    proxies: &'a [(Route, std::net::SocketAddr)],
    measure: F,
) -> anyhow::Result<Vec<Vec<Duration>>>
where
    F: Fn(&'a [(Route, std::net::SocketAddr)]) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Vec<Duration>>>>,
{
    if !args.one_at_a_time {
        return measure(proxies).await;
    }
    let mut times = Vec::with_capacity(proxies.len() + 1);
    for proxy in proxies.chunks(1) {
        let [direct, through] = <[Vec<Duration>; 2]>::try_from(measure(proxy).await?)
            .map_err(|_| anyhow::anyhow!("two series expected"))?;
        if times.is_empty() {
            times.push(direct);
        }
        times.push(through);
        tokio::time::sleep(SETTLE).await;
    }
    Ok(times)
}

async fn round_trips(
    args: &TcpArgs,
    echo: std::net::SocketAddr,
    proxies: &[(Route, std::net::SocketAddr)],
) -> anyhow::Result<Vec<Vec<Duration>>> {
    let mut streams = vec![tcp::direct(echo).await?];
    for (_, socks) in proxies {
        streams.push(tcp::proxied(*socks, echo).await?);
    }
    // On a worker thread, beside the I/O driver, rather than on the main thread that the
    // driver would have to wake for every response.
    tokio::spawn(tcp::ping_pong(
        streams,
        args.message,
        args.requests,
        WARMUP_REQUESTS,
    ))
    .await?
}

/// One line about the machine: CPUs, load, kernel, and how idle CPUs sleep.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs, load average {} before the run, Linux {}{}",
        load.join(" "),
        kernel.trim(),
        cpuidle()
    )
}

/// How idle CPUs sleep, when the kernel says: `, cpuidle GOVERNOR` and, for a guest's
/// `haltpoll` governor, how long an idle vCPU polls before it halts. Round trips between
/// processes depend on it more than on anything a proxy does (docs/PERFORMANCE.md,
/// "Bytes straight to TCP, events first, and what halted vCPUs cost": the same run took
/// 1.5–2.7× less with 200 µs of polling than with none), so figures carry it.
fn cpuidle() -> String {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim().to_owned())
    };
    let Some(governor) = read("/sys/devices/system/cpu/cpuidle/current_governor") else {
        return String::new();
    };
    match read("/sys/module/haltpoll/parameters/guest_halt_poll_ns") {
        Some(ns) if governor == "haltpoll" => {
            format!(", cpuidle {governor} (guest_halt_poll_ns = {ns})")
        }
        _ => format!(", cpuidle {governor}"),
    }
}

/// One timed transfer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    /// CPU time the bench and every proxy process used meanwhile.
    cpu: Duration,
    /// The same without the bench's own (the load generator and the sink).
    proxy_cpu: Duration,
}

/// Transfers per path, one per round, in the order of `--paths`.
#[derive(Default)]
struct Goodput {
    samples: Vec<(Route, Vec<Sample>)>,
}

impl Goodput {
    fn push(&mut self, route: Route, sample: Sample) {
        match self.samples.iter_mut().find(|(known, _)| *known == route) {
            Some((_, samples)) => samples.push(sample),
            None => self.samples.push((route, vec![sample])),
        }
    }

    /// The samples of `route` (none if it did not run).
    fn of(&self, route: Route) -> &[Sample] {
        self.samples
            .iter()
            .find(|(known, _)| *known == route)
            .map_or(&[], |(_, samples)| samples)
    }
}

/// CPU time used so far by all of `processes` (`None`: this one).
fn cpu_total(processes: &[Option<u32>]) -> anyhow::Result<Duration> {
    processes.iter().map(|pid| procs::cpu_time(*pid)).sum()
}

async fn goodput(
    args: &TcpArgs,
    quic: &QuicConfig,
    targets: &mut tcp::Targets,
    proxies: &[(Route, std::net::SocketAddr)],
    proxy_pids: &[u32],
) -> anyhow::Result<Goodput> {
    let mut raw = if args.paths.contains(&Route::Raw) {
        Some(raw::RawPair::start(quic).await?)
    } else {
        None
    };
    // Every proxy process (idle when another route runs), and with them the bench's own
    // (`None`: the load generator and the sink).
    let proxy_processes: Vec<Option<u32>> = proxy_pids.iter().copied().map(Some).collect();
    let processes: Vec<Option<u32>> = std::iter::once(None)
        .chain(proxy_processes.iter().copied())
        .collect();
    let mut times = Goodput::default();
    for round in 0..=args.rounds {
        // Round 0 warms every path up (windows, allocator, caches) and is not kept.
        let bytes = if round == 0 { WARMUP_BYTES } else { args.bytes };
        for path in &args.paths {
            let (cpu_before, proxy_before) = (cpu_total(&processes)?, cpu_total(&proxy_processes)?);
            let elapsed = match path {
                Route::Direct => {
                    targets
                        .transfer(tcp::direct(targets.sink).await?, bytes)
                        .await?
                }
                Route::Raw => match raw.as_mut() {
                    Some(raw) => raw.transfer(bytes).await?,
                    None => continue,
                },
                route => {
                    let Some((_, socks)) = proxies.iter().find(|(known, _)| known == route) else {
                        continue;
                    };
                    let stream = tcp::proxied(*socks, targets.sink).await?;
                    targets.transfer(stream, bytes).await?
                }
            };
            let sample = Sample {
                elapsed,
                cpu: cpu_total(&processes)?.saturating_sub(cpu_before),
                proxy_cpu: cpu_total(&proxy_processes)?.saturating_sub(proxy_before),
            };
            if round > 0 {
                println!(
                    "veil bench tcp: round {round} {path:?}: {:.1} MiB/s, {:.2} CPU s/GiB",
                    mib_per_s(bytes, elapsed),
                    cpu_per_gib(bytes, sample.cpu)
                );
                times.push(*path, sample);
            }
        }
    }
    if let Some(raw) = raw {
        raw.stop().await?;
    }
    Ok(times)
}

impl Goodput {
    fn table(&self, bytes: u64) -> String {
        let rates = |samples: &[Sample]| -> Vec<f64> {
            samples
                .iter()
                .map(|s| mib_per_s(bytes, s.elapsed))
                .collect()
        };
        let costs = |samples: &[Sample]| -> Vec<f64> {
            samples.iter().map(|s| cpu_per_gib(bytes, s.cpu)).collect()
        };
        let rounds = self.samples.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        let raw_median = median(&rates(self.of(Route::Raw)));
        let raw_cost = median(&costs(self.of(Route::Raw)));
        let busy = |samples: &[Sample]| -> Vec<f64> {
            samples
                .iter()
                .map(|s| s.cpu.as_secs_f64() / s.elapsed.as_secs_f64().max(f64::EPSILON))
                .collect()
        };
        let mut out = format!(
            "| goodput, {} MiB per transfer, median of {rounds} rounds | MiB/s | Gbit/s | range MiB/s | ÷ raw quiche | CPU s per GiB, all processes | ÷ raw quiche | CPUs busy (of {}) |\n|---|---|---|---|---|---|---|---|\n",
            bytes / MIB,
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        );
        for (route, samples) in &self.samples {
            let (rates, costs) = (rates(samples), costs(samples));
            let (Some(m), Some(cost), Some(busy)) =
                (median(&rates), median(&costs), median(&busy(samples)))
            else {
                continue;
            };
            let (lo, hi) = range(&rates);
            let ratio = |base: Option<f64>, value: f64| {
                base.map_or_else(|| "–".to_owned(), |b| format!("{:.2}", value / b))
            };
            let _ = writeln!(
                out,
                "| {} | {m:.1} | {:.2} | {lo:.0}–{hi:.0} | {} | {cost:.2} | {} | {busy:.2} |",
                route.label(),
                gbit(m),
                ratio(raw_median, m),
                ratio(raw_cost, cost),
            );
        }
        // The ratio of each round's pair, whose two transfers ran back to back.
        let (raw, proxied) = (rates(self.of(Route::Raw)), rates(self.of(Route::Proxied)));
        let pairs: Vec<f64> = proxied.iter().zip(&raw).map(|(p, r)| p / r).collect();
        if let (Some(ratio), Some(p)) = (median(&pairs), median(&proxied)) {
            let _ = writeln!(
                out,
                "\nproxied ÷ raw quiche, median of per-round ratios: **{ratio:.2}** (aim ≥ 0.80: {}); proxied {:.2} Gbit/s (aim ≥ 1: {})",
                verdict(ratio >= 0.8),
                gbit(p),
                verdict(gbit(p) >= 1.0)
            );
        }
        let h2 = rates(self.of(Route::ProxiedH2));
        let pairs: Vec<f64> = h2.iter().zip(&proxied).map(|(t, q)| t / q).collect();
        if let Some(ratio) = median(&pairs) {
            let _ = writeln!(
                out,
                "\nHTTP/2 ÷ HTTP/3 proxied, median of per-round ratios: **{ratio:.2}**"
            );
        }
        if let Some(line) = self.ceiling(bytes) {
            out.push_str(&line);
        }
        out.push_str(&self.beside_peers(bytes));
        out.push('\n');
        out
    }

    /// veil against each peer that ran: goodput and the proxy processes' CPU per GiB, as
    /// medians of per-round ratios (each round ran both back to back).
    fn beside_peers(&self, bytes: u64) -> String {
        let veil = self.of(Route::Proxied);
        let peers: Vec<&(Route, Vec<Sample>)> = self
            .samples
            .iter()
            .filter(|(route, _)| route.peer().is_some())
            .collect();
        if veil.is_empty() || peers.is_empty() {
            return String::new();
        }
        let proxy_cost = |s: &Sample| cpu_per_gib(bytes, s.proxy_cpu);
        let mut out = String::from(
            "\n| veil beside its peers, per-round ratios | goodput: veil ÷ peer | proxy CPU s per GiB: veil | peer | veil ÷ peer |\n|---|---|---|---|---|\n",
        );
        for (route, samples) in peers {
            let rate_ratios: Vec<f64> = veil
                .iter()
                .zip(samples)
                .map(|(v, p)| p.elapsed.as_secs_f64() / v.elapsed.as_secs_f64().max(f64::EPSILON))
                .collect();
            let cost_ratios: Vec<f64> = veil
                .iter()
                .zip(samples)
                .map(|(v, p)| proxy_cost(v) / proxy_cost(p).max(f64::EPSILON))
                .collect();
            let veil_cost: Vec<f64> = veil.iter().map(proxy_cost).collect();
            let peer_cost: Vec<f64> = samples.iter().map(proxy_cost).collect();
            let (Some(rate), Some(cost), Some(vc), Some(pc)) = (
                median(&rate_ratios),
                median(&cost_ratios),
                median(&veil_cost),
                median(&peer_cost),
            ) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | **{rate:.2}** | {vc:.2} | {pc:.2} | **{cost:.2}** |",
                route.label()
            );
        }
        out
    }

    /// What proxying cannot avoid on a machine where every path is CPU-bound: the raw
    /// quiche transfer plus two TCP legs (app → client, edge → sink), each costing what the
    /// direct TCP transfer costs (it is one such leg, both ends). The ratio of rates can
    /// then reach at most raw ÷ (raw + 2 × direct) of CPU per GiB; what proxied costs beyond
    /// that is veil's own (HTTP/3, engine, driver, relays).
    fn ceiling(&self, bytes: u64) -> Option<String> {
        let cost = |samples: &[Sample]| {
            median(
                &samples
                    .iter()
                    .map(|s| cpu_per_gib(bytes, s.cpu))
                    .collect::<Vec<_>>(),
            )
        };
        let (direct, raw, proxied) = (
            cost(self.of(Route::Direct))?,
            cost(self.of(Route::Raw))?,
            cost(self.of(Route::Proxied))?,
        );
        let floor = raw + 2.0 * direct;
        let own = proxied - floor;
        Some(format!(
            "\nCPU per GiB that proxying cannot avoid: raw quiche + 2 × direct TCP = {floor:.2} s; \
             when CPU-bound, proxied ÷ raw quiche can reach at most {:.2} here. veil's own \
             share of the proxied cost: {own:.2} s per GiB ({:.0}%).\n",
            raw / floor,
            100.0 * own / proxied
        ))
    }
}

/// The bulk tunnel beside the round trips of `--parts loaded`.
struct Load {
    /// Asked for, MiB/s.
    rate: u64,
    /// Bytes the sink received.
    moved: u64,
    elapsed: Duration,
}

/// `load`: the round trips ran beside a bulk tunnel.
fn latency_table(
    args: &TcpArgs,
    mut direct: Vec<Duration>,
    mut proxied: Vec<Duration>,
    load: Option<Load>,
) -> String {
    direct.sort_unstable();
    proxied.sort_unstable();
    let (d50, d99) = (percentile(&direct, 50), percentile(&direct, 99));
    let (p50, p99) = (percentile(&proxied, 50), percentile(&proxied, 99));
    let added = |p: Duration, d: Duration| micros(p) - micros(d);
    let beside = load.as_ref().map_or_else(String::new, |load| {
        if load.rate == 0 {
            ", beside a saturating bulk tunnel".to_owned()
        } else {
            format!(", beside a {} MiB/s bulk tunnel", load.rate)
        }
    });
    let mut out = format!(
        "| {} × {} B request/response, alternating{beside} | p50 µs | p99 µs |\n|---|---|---|\n",
        args.requests, args.message
    );
    let _ = writeln!(
        out,
        "| direct TCP | {:.1} | {:.1} |",
        micros(d50),
        micros(d99)
    );
    let _ = writeln!(
        out,
        "| through the tunnel | {:.1} | {:.1} |",
        micros(p50),
        micros(p99)
    );
    let _ = writeln!(
        out,
        "| **added by the tunnel** | **{:.1}** | **{:.1}** |",
        added(p50, d50),
        added(p99, d99)
    );
    match load {
        None => {
            let _ = writeln!(
                out,
                "\nadded p50 {:.1} µs (aim < 100 µs: {})\n",
                added(p50, d50),
                verdict(added(p50, d50) < 100.0)
            );
        }
        Some(load) => {
            let _ = writeln!(
                out,
                "\nthe bulk tunnel moved {:.1} MiB in {:.2} s \
                 meanwhile ({:.1} MiB/s)\n",
                mib(load.moved),
                load.elapsed.as_secs_f64(),
                mib(load.moved) / load.elapsed.as_secs_f64().max(f64::EPSILON)
            );
        }
    }
    out
}

/// One hop against one hop: the direct TCP round trips of the latency part, and one QUIC
/// connection's (raw quiche, measured right after them).
fn hop_table(args: &TcpArgs, mut direct: Vec<Duration>, mut raw: Vec<Duration>) -> String {
    direct.sort_unstable();
    raw.sort_unstable();
    let (d50, d99) = (
        micros(percentile(&direct, 50)),
        micros(percentile(&direct, 99)),
    );
    let (r50, r99) = (micros(percentile(&raw, 50)), micros(percentile(&raw, 99)));
    let mut out = format!(
        "\n| one hop, {} × {} B request/response | p50 µs | p99 µs |\n|---|---|---|\n",
        args.requests, args.message
    );
    let _ = writeln!(
        out,
        "| direct TCP (the bench to its echo server) | {d50:.1} | {d99:.1} |"
    );
    let _ = writeln!(
        out,
        "| raw quiche stream on loopback (two threads, one connection, no HTTP/3) | {r50:.1} | {r99:.1} |"
    );
    let _ = writeln!(
        out,
        "| **a QUIC hop's extra** | **{:.1}** | **{:.1}** |",
        r50 - d50,
        r99 - d99
    );
    out
}

/// The latency part's tables: veil's (and its HTTP/2 client's) against direct TCP, then,
/// when peers ran, every route side by side. `times` holds the direct series, then one
/// per proxy.
fn latency_report(
    args: &TcpArgs,
    proxies: &[(Route, std::net::SocketAddr)],
    times: &[Vec<Duration>],
) -> String {
    let (Some(direct), Some(veil)) = (times.first(), times.get(1)) else {
        return String::new();
    };
    let mut out = latency_table(args, direct.clone(), veil.clone(), None);
    let h2 = proxies
        .iter()
        .position(|(route, _)| *route == Route::ProxiedH2)
        .and_then(|index| times.get(index + 1));
    if let Some(h2) = h2 {
        out.push_str("\nThe same through the HTTP/2 client (TCP+TLS to the edge):\n\n");
        out.push_str(&latency_table(args, direct.clone(), h2.clone(), None));
    }
    let compared = |route: Route| route.peer().is_some() || route == Route::Floor;
    if proxies.iter().any(|(route, _)| compared(*route)) {
        let title = format!(
            "{} × {} B request/response on an open tunnel, {}",
            args.requests,
            args.message,
            turns(args)
        );
        out.push_str(&side_by_side(&title, proxies, times));
    }
    out
}

/// The connect part's table: new tunnels (or direct connections) with a 1-byte round trip.
fn connect_table(
    count: usize,
    turns: &str,
    proxies: &[(Route, std::net::SocketAddr)],
    times: &[Vec<Duration>],
) -> String {
    let title =
        format!("{count} new tunnels: SOCKS5 handshake + CONNECT + 1 B round trip, {turns}");
    side_by_side(&title, proxies, times)
}

/// How the routes' series were taken, for the tables' titles.
fn turns(args: &TcpArgs) -> &'static str {
    if args.one_at_a_time {
        "one route at a time (each taking turns with direct TCP)"
    } else {
        "taking turns, each round starting one route later"
    }
}

/// One row per route (direct first, then `proxies`): p50, p99, and p50 against veil's.
fn side_by_side(
    title: &str,
    proxies: &[(Route, std::net::SocketAddr)],
    times: &[Vec<Duration>],
) -> String {
    let sorted: Vec<Vec<Duration>> = times
        .iter()
        .map(|series| {
            let mut series = series.clone();
            series.sort_unstable();
            series
        })
        .collect();
    let veil_p50 = sorted.get(1).map(|s| micros(percentile(s, 50)));
    let mut out = format!("\n| {title} | p50 µs | p99 µs | p50 ÷ veil's |\n|---|---|---|---|\n");
    let names =
        std::iter::once("direct TCP (no proxy)").chain(proxies.iter().map(|(r, _)| r.label()));
    for (name, series) in names.zip(&sorted) {
        let p50 = micros(percentile(series, 50));
        let ratio = veil_p50.map_or_else(
            || "–".to_owned(),
            |v| format!("{:.2}", p50 / v.max(f64::EPSILON)),
        );
        let _ = writeln!(
            out,
            "| {name} | {p50:.1} | {:.1} | {ratio} |",
            micros(percentile(series, 99))
        );
    }
    out
}

/// Every proxy process's resident memory at the end of the run.
fn rss_table(processes: &[ProxyProcess]) -> anyhow::Result<String> {
    let mut out = String::from("\n| RSS at the end of the run | KiB |\n|---|---|\n");
    for process in processes {
        let _ = writeln!(
            out,
            "| {} | {} |",
            process.name,
            procs::rss_kib(process.pid)?
        );
    }
    Ok(out)
}

fn memory_table(tunnels: usize, before: (u64, u64), after: (u64, u64)) -> String {
    let per = |b: u64, a: u64| {
        // Display only.
        #[allow(clippy::cast_precision_loss)]
        let kib = (a.saturating_sub(b)) as f64 / tunnels as f64;
        kib
    };
    let mut out = format!(
        "| RSS, {tunnels} idle tunnels | before KiB | after KiB | per tunnel KiB |\n|---|---|---|---|\n"
    );
    for (name, b, a) in [
        ("veil client", before.0, after.0),
        ("veil edge", before.1, after.1),
    ] {
        let _ = writeln!(out, "| {name} | {b} | {a} | {:.1} |", per(b, a));
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

// Display arithmetic: f64 is exact enough for rates and microseconds.
#[allow(clippy::cast_precision_loss)]
fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64().max(1e-9)
}

#[allow(clippy::cast_precision_loss)]
fn cpu_per_gib(bytes: u64, cpu: Duration) -> f64 {
    cpu.as_secs_f64() * (1024 * MIB) as f64 / bytes.max(1) as f64
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[allow(clippy::cast_precision_loss)]
fn gbit(mib_per_s: f64) -> f64 {
    mib_per_s * MIB as f64 * 8.0 / 1e9
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(mid).copied(),
        _ => Some((sorted.get(mid - 1)? + sorted.get(mid)?) / 2.0),
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 50), Duration::from_micros(500));
        assert_eq!(percentile(&sorted, 99), Duration::from_micros(990));
        assert_eq!(percentile(&sorted[..1], 99), Duration::from_micros(1));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn rates_convert_to_gigabits() {
        let rate = mib_per_s(256 * MIB, Duration::from_secs(2));
        assert!((rate - 128.0).abs() < 1e-9);
        assert!((gbit(rate) - 1.073_741_824).abs() < 1e-9);
    }

    #[test]
    fn the_ceiling_adds_two_tcp_legs_to_the_raw_cost() {
        // CPU seconds per GiB: direct 0.5, raw 2.5, proxied 4.0.
        let sample = |cpu_ms: u64| Sample {
            elapsed: Duration::from_secs(1),
            cpu: Duration::from_millis(cpu_ms),
            proxy_cpu: Duration::from_millis(cpu_ms),
        };
        let mut goodput = Goodput::default();
        goodput.push(Route::Direct, sample(500));
        goodput.push(Route::Raw, sample(2500));
        goodput.push(Route::Proxied, sample(4000));
        let line = goodput.ceiling(1 << 30).expect("all three paths");
        assert!(line.contains("= 3.50 s"), "{line}");
        assert!(line.contains("at most 0.71"), "{line}");
        assert!(line.contains("0.50 s per GiB (12%)"), "{line}");
        goodput.samples.retain(|(route, _)| *route != Route::Direct);
        assert_eq!(goodput.ceiling(1 << 30), None);
    }

    #[test]
    fn peers_are_compared_with_veil_round_by_round() {
        let sample = |secs: u64, cpu_ms: u64| Sample {
            elapsed: Duration::from_secs(secs),
            cpu: Duration::from_millis(cpu_ms + 500),
            proxy_cpu: Duration::from_millis(cpu_ms),
        };
        let mut goodput = Goodput::default();
        goodput.push(Route::Proxied, sample(2, 2000));
        assert_eq!(goodput.beside_peers(1 << 30), "", "no peer ran");
        goodput.push(Route::Shadowsocks, sample(1, 1000));
        let table = goodput.beside_peers(1 << 30);
        // veil took twice as long and twice the proxy CPU (the bench's own 0.5 s left out).
        assert!(
            table.contains("| shadowsocks-rust aes-128-gcm | **0.50** | 2.00 | 1.00 | **2.00** |"),
            "{table}"
        );
    }

    #[test]
    fn side_by_side_rows_compare_each_p50_with_veils() {
        let series = |micros: u64| vec![Duration::from_micros(micros); 10];
        let socks = std::net::SocketAddr::from(([127, 0, 0, 1], 1080));
        let proxies = [(Route::Proxied, socks), (Route::Tuic, socks)];
        let table = side_by_side("t", &proxies, &[series(50), series(200), series(100)]);
        assert!(
            table.contains("| direct TCP (no proxy) | 50.0 | 50.0 | 0.25 |"),
            "{table}"
        );
        assert!(
            table.contains("| TUIC v5 (quinn, CUBIC) | 100.0 | 100.0 | 0.50 |"),
            "{table}"
        );
    }
}
