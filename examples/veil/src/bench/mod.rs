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
//!   alternating between a direct connection and a tunnel;
//! - **loaded**: the same, while another tunnel on the same QUIC connection carries a bulk
//!   transfer to the sink paced at `--load-rate` MiB/s (head-of-line blocking between
//!   tunnels, and the cost of sharing one congestion window, would show here);
//! - **memory**: the client's and the edge's `VmRSS` before and after opening `--tunnels`
//!   idle tunnels.
//!
//! `veil bench udp` ([`udp_bench`]) measures UDP through a CONNECT-UDP tunnel against
//! direct UDP and raw QUIC DATAGRAM frames: echo rate, loss and round trips at rising
//! offered loads.

mod ip_load;
mod load;
mod loss;
mod procs;
mod raw;
mod raw_dgram;
mod step_thread;
mod tcp;
mod udp;
mod udp_bench;
mod veth;

pub use udp_bench::{UdpArgs, UdpRoute};

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::ensure;
use clap::{Args, Subcommand, ValueEnum};
use veil_engine::QuicConfig;

const MIB: u64 = 1024 * 1024;
/// Bytes moved before the timed rounds, on each path.
const WARMUP_BYTES: u64 = 16 * MIB;
/// Request/responses before the timed ones.
const WARMUP_REQUESTS: usize = 100;
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
    /// Parts to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "goodput,latency,loaded,memory"
    )]
    pub parts: Vec<Part>,
    /// Goodput paths to measure.
    #[arg(long, value_delimiter = ',', default_value = "direct,raw,proxied")]
    pub paths: Vec<Route>,
    /// Drop this share of the packets between the clients and the edge, both ways, both
    /// transports (its UDP and TCP ports), with an nftables rule (`numgen random`) for the
    /// run: needs root and `nft`. On loopback a dropped packet is a whole GSO/TSO batch
    /// (up to 64 KiB) for either transport.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    pub loss_percent: f64,
    /// Run the edge in a network namespace of its own behind a veth pair with a 1,500-byte
    /// MTU (root and `ip` needed): tunnels and the edge's dials cross a link sized as real
    /// ones are, instead of loopback's 64 KiB MTU. The targets listen at the link's other
    /// end, so the direct path crosses it once and the proxied paths twice.
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
}

/// A goodput path.
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
}

/// Runs `veil bench`. `quic` is the QUIC configuration of the `--config` file (or the
/// defaults), used by the raw baseline; the child processes read the same file.
pub async fn run(args: &BenchArgs, quic: QuicConfig, config: Option<&Path>) -> anyhow::Result<()> {
    match &args.which {
        BenchCommand::Tcp(tcp) => bench_tcp(tcp, &quic, config).await,
        BenchCommand::Udp(udp) => udp_bench::run(udp, &quic, config).await,
    }
}

/// What `veil bench tcp` runs against: the targets, the edge and its clients, and, when
/// asked for, the veth link and the loss rule (each removed when dropped).
struct Stage {
    targets: tcp::Targets,
    edge: procs::Edge,
    client: procs::Client,
    client_h2: Option<procs::Client>,
    loss: Option<loss::Loss>,
    link: Option<veth::Link>,
}

impl Stage {
    async fn set_up(args: &TcpArgs, config: Option<&Path>) -> anyhow::Result<Self> {
        let link = if args.veth {
            Some(veth::Link::create()?)
        } else {
            None
        };
        let (place, targets_ip) = if args.veth {
            (procs::EdgePlace::Veth, veth::HOST)
        } else {
            (
                procs::EdgePlace::Loopback,
                std::net::IpAddr::from([127, 0, 0, 1]),
            )
        };
        let targets = tcp::Targets::start(targets_ip).await?;
        let config_owned = config.map(Path::to_path_buf);
        let want_h2 = args.paths.contains(&Route::ProxiedH2);
        let (edge, client, client_h2) = tokio::task::spawn_blocking(move || {
            let edge = procs::start_edge_in(config_owned.as_deref(), place)?;
            let client = procs::start_client(config_owned.as_deref(), &edge, None)?;
            let client_h2 = if want_h2 {
                Some(procs::start_client_over(
                    config_owned.as_deref(),
                    &edge,
                    None,
                    "h2",
                )?)
            } else {
                None
            };
            anyhow::Ok((edge, client, client_h2))
        })
        .await??;
        let loss = if args.loss_percent > 0.0 {
            let hooks: &[&str] = if args.veth {
                &["output", "input"]
            } else {
                &["output"]
            };
            Some(loss::Loss::install(
                args.loss_percent,
                edge.addr.port(),
                edge.tcp_addr.port(),
                hooks,
            )?)
        } else {
            None
        };
        Ok(Self {
            targets,
            edge,
            client,
            client_h2,
            loss,
            link,
        })
    }

    /// Stops the processes (clients first, so that the edge sees their connections
    /// close), then removes the loss rule and the link.
    async fn tear_down(self) -> anyhow::Result<()> {
        let Self {
            edge,
            client,
            client_h2,
            loss,
            link,
            ..
        } = self;
        tokio::task::spawn_blocking(move || {
            drop(client_h2);
            drop(client);
            drop(edge);
            drop(loss);
            drop(link);
        })
        .await?;
        Ok(())
    }
}

async fn bench_tcp(args: &TcpArgs, quic: &QuicConfig, config: Option<&Path>) -> anyhow::Result<()> {
    ensure!(
        args.bytes > 0 && args.rounds > 0,
        "--bytes and --rounds must be positive"
    );
    ensure!(args.message > 0, "--message must be positive");
    println!("veil bench tcp: {}", machine());
    let mut stage = Stage::set_up(args, config).await?;
    let report = measure(args, quic, &mut stage).await;
    stage.tear_down().await?;
    println!("\n{}", report?);
    Ok(())
}

/// Runs the parts `args` names against `stage`; returns the report.
async fn measure(args: &TcpArgs, quic: &QuicConfig, stage: &mut Stage) -> anyhow::Result<String> {
    let Stage {
        targets,
        edge,
        client,
        client_h2,
        ..
    } = stage;
    println!(
        "veil bench tcp: edge pid {} on {}, client pid {} (socks5 {}), sink {}",
        edge.process.pid(),
        edge.addr,
        client.process.pid(),
        client.socks,
        targets.sink
    );

    let mut report = String::new();
    if args.parts.contains(&Part::Goodput) {
        let mut processes = vec![None, Some(client.process.pid()), Some(edge.process.pid())];
        processes.extend(client_h2.as_ref().map(|c| Some(c.process.pid())));
        let socks_h2 = client_h2.as_ref().map(|c| c.socks);
        let goodput = goodput(args, quic, targets, client.socks, socks_h2, &processes).await?;
        report.push_str(&goodput.table(args.bytes));
    }
    if args.parts.contains(&Part::Latency) {
        let (direct, proxied) = round_trips(args, targets.echo, client.socks).await?;
        report.push_str(&latency_table(args, direct, proxied, None));
        if let Some(h2) = &client_h2 {
            let (direct, proxied) = round_trips(args, targets.echo, h2.socks).await?;
            report.push_str(
                "
The same through the HTTP/2 client (TCP+TLS to the edge):

",
            );
            report.push_str(&latency_table(args, direct, proxied, None));
        }
    }
    if args.parts.contains(&Part::Loaded) {
        let bulk = tcp::proxied(client.socks, targets.sink).await?;
        let rate = args.load_rate * MIB;
        let trips = round_trips(args, targets.echo, client.socks);
        let started = std::time::Instant::now();
        let ((direct, proxied), moved) = targets.under_load(bulk, rate, trips).await?;
        let load = Load {
            rate: args.load_rate,
            moved,
            elapsed: started.elapsed(),
        };
        report.push_str(&latency_table(args, direct, proxied, Some(load)));
    }
    if args.parts.contains(&Part::Memory) && args.tunnels > 0 {
        tokio::time::sleep(SETTLE).await;
        let before = (client.process.rss_kib()?, edge.process.rss_kib()?);
        let streams = tcp::open_idle(client.socks, targets.idle, args.tunnels).await?;
        tokio::time::sleep(SETTLE).await;
        let after = (client.process.rss_kib()?, edge.process.rss_kib()?);
        drop(streams);
        report.push_str(&memory_table(args.tunnels, before, after));
    }
    Ok(report)
}

/// `--requests` round trips to the echo server on a fresh direct connection and a fresh
/// tunnel, alternating.
async fn round_trips(
    args: &TcpArgs,
    echo: std::net::SocketAddr,
    socks: std::net::SocketAddr,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let direct = tcp::direct(echo).await?;
    let proxied = tcp::proxied(socks, echo).await?;
    // On a worker thread, beside the I/O driver, rather than on the main thread that the
    // driver would have to wake for every response.
    tokio::spawn(tcp::ping_pong(
        direct,
        proxied,
        args.message,
        args.requests,
        WARMUP_REQUESTS,
    ))
    .await?
}

/// One line about the machine: CPUs, load, kernel.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs, load average {} before the run, Linux {}",
        load.join(" "),
        kernel.trim()
    )
}

/// One timed transfer.
#[derive(Debug, Clone, Copy)]
struct Sample {
    elapsed: Duration,
    /// CPU time the bench, client and edge processes used meanwhile.
    cpu: Duration,
}

/// Transfers per path, one per round.
#[derive(Default)]
struct Goodput {
    direct: Vec<Sample>,
    raw: Vec<Sample>,
    proxied: Vec<Sample>,
    proxied_h2: Vec<Sample>,
}

/// CPU time used so far by all of `processes` (`None`: this one).
fn cpu_total(processes: &[Option<u32>]) -> anyhow::Result<Duration> {
    processes.iter().map(|pid| procs::cpu_time(*pid)).sum()
}

async fn goodput(
    args: &TcpArgs,
    quic: &QuicConfig,
    targets: &mut tcp::Targets,
    socks: std::net::SocketAddr,
    socks_h2: Option<std::net::SocketAddr>,
    processes: &[Option<u32>],
) -> anyhow::Result<Goodput> {
    let mut raw = if args.paths.contains(&Route::Raw) {
        Some(raw::RawPair::start(quic).await?)
    } else {
        None
    };
    let mut times = Goodput::default();
    for round in 0..=args.rounds {
        // Round 0 warms every path up (windows, allocator, caches) and is not kept.
        let bytes = if round == 0 { WARMUP_BYTES } else { args.bytes };
        let keep = round > 0;
        for path in &args.paths {
            let cpu_before = cpu_total(processes)?;
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
                Route::Proxied => {
                    let stream = tcp::proxied(socks, targets.sink).await?;
                    targets.transfer(stream, bytes).await?
                }
                Route::ProxiedH2 => {
                    let Some(socks_h2) = socks_h2 else { continue };
                    let stream = tcp::proxied(socks_h2, targets.sink).await?;
                    targets.transfer(stream, bytes).await?
                }
            };
            let sample = Sample {
                elapsed,
                cpu: cpu_total(processes)?.saturating_sub(cpu_before),
            };
            if keep {
                println!(
                    "veil bench tcp: round {round} {path:?}: {:.1} MiB/s, {:.2} CPU s/GiB",
                    mib_per_s(bytes, elapsed),
                    cpu_per_gib(bytes, sample.cpu)
                );
                match path {
                    Route::Direct => times.direct.push(sample),
                    Route::Raw => times.raw.push(sample),
                    Route::Proxied => times.proxied.push(sample),
                    Route::ProxiedH2 => times.proxied_h2.push(sample),
                }
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
        let rounds = self
            .direct
            .len()
            .max(self.raw.len())
            .max(self.proxied.len())
            .max(self.proxied_h2.len());
        let raw_median = median(&rates(&self.raw));
        let raw_cost = median(&costs(&self.raw));
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
        for (name, samples) in [
            ("direct TCP (app → sink)", &self.direct),
            ("raw quiche stream (no HTTP/3, no proxy)", &self.raw),
            (
                "proxied: SOCKS5 → veil client → QUIC → veil edge → TCP",
                &self.proxied,
            ),
            (
                "proxied over HTTP/2: SOCKS5 → veil client → TCP+TLS → veil edge → TCP",
                &self.proxied_h2,
            ),
        ] {
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
                "| {name} | {m:.1} | {:.2} | {lo:.0}–{hi:.0} | {} | {cost:.2} | {} | {busy:.2} |",
                gbit(m),
                ratio(raw_median, m),
                ratio(raw_cost, cost),
            );
        }
        // The ratio of each round's pair, whose two transfers ran back to back.
        let (raw, proxied) = (rates(&self.raw), rates(&self.proxied));
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
        let h2 = rates(&self.proxied_h2);
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
        out.push('\n');
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
        let (direct, raw, proxied) = (cost(&self.direct)?, cost(&self.raw)?, cost(&self.proxied)?);
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
                "\nthe bulk tunnel, on the same QUIC connection, moved {:.1} MiB in {:.2} s \
                 meanwhile ({:.1} MiB/s)\n",
                mib(load.moved),
                load.elapsed.as_secs_f64(),
                mib(load.moved) / load.elapsed.as_secs_f64().max(f64::EPSILON)
            );
        }
    }
    out
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
        };
        let goodput = Goodput {
            direct: vec![sample(500)],
            raw: vec![sample(2500)],
            proxied: vec![sample(4000)],
            proxied_h2: Vec::new(),
        };
        let line = goodput.ceiling(1 << 30).expect("all three paths");
        assert!(line.contains("= 3.50 s"), "{line}");
        assert!(line.contains("at most 0.71"), "{line}");
        assert!(line.contains("0.50 s per GiB (12%)"), "{line}");
        let without_direct = Goodput {
            direct: Vec::new(),
            ..goodput
        };
        assert_eq!(without_direct.ceiling(1 << 30), None);
    }
}
