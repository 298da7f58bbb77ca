//! `veil bench udp`: UDP through a CONNECT-UDP tunnel against direct UDP and raw QUIC
//! DATAGRAM frames, side by side in one run.
//!
//! Paths, all on loopback, all driven by the same [`Generator`](super::load::Generator):
//!
//! - *direct*: the generator's UDP socket → the UDP echo server → back;
//! - *raw*: a quiche client → QUIC DATAGRAM frames → a quiche server that sends each one
//!   back ([`super::raw_dgram`]): the transport alone, no HTTP/3, no proxying;
//! - *proxied*: the generator's UDP socket → `veil client --udp-forward` → one CONNECT-UDP
//!   tunnel (HTTP datagrams in QUIC DATAGRAM frames) → `veil server` → UDP → the same echo
//!   server, and back the same way.
//! - *ip*: the generator's UDP packets, IP headers and all, in one CONNECT-IP tunnel from
//!   a client node in the bench process → the same `veil server`, whose `decap` off-ramp
//!   sends each payload from a UDP socket → the same echo server; the echoes come back as
//!   IP packets ([`super::ip_load`]).
//!
//! For each offered rate every path runs back to back (one round), `--rounds` times; each
//! cell of the table is the round with the median echo rate. Then `--pings` round trips,
//! one packet in flight at a time, give the unloaded round-trip time of each path.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use clap::{Args, ValueEnum};
use veil_engine::QuicConfig;

use super::ip_load::IpLoad;
use super::load::{Mode, Step, StepResult};
use super::raw_dgram::RawDgramPair;
use super::udp::{EchoServer, UdpLoad};
use super::{cpu_total, machine, micros, percentile, procs, verdict};

/// The warm-up of each path before the timed steps (it also opens the tunnel).
const WARMUP: Mode = Mode::Paced {
    rate: 10_000,
    duration: Duration::from_millis(500),
};
/// The aim: the tunnel's echo rate against raw QUIC DATAGRAM frames'.
const AIM_RATIO: f64 = 0.8;

/// Flags of `veil bench udp`.
#[derive(Debug, Args)]
pub struct UdpArgs {
    /// Offered loads, in packets per second (each one way; the echoes double it).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,50000,100000,200000"
    )]
    pub rates: Vec<u64>,
    /// How long each offered load is sent, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub duration_ms: u64,
    /// UDP payload bytes per packet (at least 16: sequence number and timestamp).
    #[arg(long, default_value_t = 1200)]
    pub payload: usize,
    /// Rounds of every (rate, path) pair; the median round is reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Round trips, one packet in flight, for the unloaded latency (0: none).
    #[arg(long, default_value_t = 1000)]
    pub pings: u64,
    /// Paths to measure.
    #[arg(long, value_delimiter = ',', default_value = "direct,raw,proxied")]
    pub paths: Vec<UdpRoute>,
}

/// A path of `veil bench udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum UdpRoute {
    /// UDP straight to the echo server.
    Direct,
    /// Raw QUIC DATAGRAM frames between two quiche endpoints, echoed back.
    Raw,
    /// UDP → veil client --udp-forward → CONNECT-UDP → veil server → UDP echo server.
    Proxied,
    /// IP packets → CONNECT-IP → veil server (decap) → UDP echo server.
    Ip,
}

impl UdpRoute {
    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct UDP",
            Self::Raw => "raw QUIC DATAGRAM",
            Self::Proxied => "proxied (CONNECT-UDP)",
            Self::Ip => "CONNECT-IP (decap)",
        }
    }
}

/// A path's driver.
enum Driver {
    Udp(UdpLoad),
    Raw(RawDgramPair),
    Ip(IpLoad),
}

impl Driver {
    async fn run(&mut self, step: Step) -> anyhow::Result<StepResult> {
        match self {
            Self::Udp(load) => load.run(step).await,
            Self::Raw(pair) => pair.run(step).await,
            Self::Ip(load) => load.run(step).await,
        }
    }
}

/// One timed step with the CPU it cost.
struct Sample {
    result: StepResult,
    /// CPU time of the bench, client and edge processes during the step.
    cpu: Duration,
}

/// Runs `veil bench udp`.
pub(crate) async fn run(
    args: &UdpArgs,
    quic: &QuicConfig,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    ensure!(
        args.payload >= super::load::HEADER_LEN,
        "--payload must be at least 16"
    );
    ensure!(
        args.rounds > 0 && args.duration_ms > 0,
        "--rounds and --duration-ms must be positive"
    );
    println!("veil bench udp: {}", machine());
    let echo = EchoServer::start()?;
    let needs_veil = args
        .paths
        .iter()
        .any(|path| matches!(path, UdpRoute::Proxied | UdpRoute::Ip));
    let (edge, client) = if needs_veil {
        let (edge, client) = start_veil(config, echo.addr).await?;
        (Some(edge), Some(client))
    } else {
        (None, None)
    };
    // This process (`None`: the generators, the echo server, the raw pair), then the
    // client and the edge when they run.
    let mut processes = vec![None];
    processes.extend(client.as_ref().map(|c| Some(c.process.pid())));
    processes.extend(edge.as_ref().map(|e| Some(e.process.pid())));
    let forward = client.as_ref().and_then(|c| c.udp_forward);
    let mut drivers = start_drivers(args, quic, echo.addr, forward, edge.as_ref()).await?;

    let report = measure(args, &mut drivers, &processes).await?;
    println!("\n{report}");

    for (_, driver) in drivers {
        if let Driver::Raw(pair) = driver {
            pair.stop().await?;
        }
    }
    tokio::task::spawn_blocking(move || {
        drop(client);
        drop(edge);
        drop(echo);
    })
    .await?;
    Ok(())
}

/// `veil server` and `veil client --udp-forward` to the echo server at `target`.
async fn start_veil(
    config: Option<&Path>,
    target: SocketAddr,
) -> anyhow::Result<(procs::Edge, procs::Client)> {
    let config_owned = config.map(Path::to_path_buf);
    let (edge, client) = tokio::task::spawn_blocking(move || {
        let edge = procs::start_edge(config_owned.as_deref())?;
        let client = procs::start_client(config_owned.as_deref(), &edge, Some(target))?;
        anyhow::Ok((edge, client))
    })
    .await??;
    println!(
        "veil bench udp: edge pid {} on {}, client pid {} forwarding {} to the echo server {target}",
        edge.process.pid(),
        edge.addr,
        client.process.pid(),
        client
            .udp_forward
            .map_or_else(String::new, |a| a.to_string()),
    );
    Ok((edge, client))
}

/// One driver per path asked for, in the order asked for.
async fn start_drivers(
    args: &UdpArgs,
    quic: &QuicConfig,
    echo: SocketAddr,
    forward: Option<SocketAddr>,
    edge: Option<&procs::Edge>,
) -> anyhow::Result<Vec<(UdpRoute, Driver)>> {
    let mut drivers: Vec<(UdpRoute, Driver)> = Vec::new();
    for &route in &args.paths {
        if drivers.iter().any(|(r, _)| *r == route) {
            continue;
        }
        let driver = match route {
            UdpRoute::Direct => Driver::Udp(UdpLoad::start("udp-load-direct", echo)?),
            UdpRoute::Raw => Driver::Raw(RawDgramPair::start(quic).await?),
            UdpRoute::Proxied => {
                let forward = forward.context("the client has no UDP forward")?;
                Driver::Udp(UdpLoad::start("udp-load-proxied", forward)?)
            }
            UdpRoute::Ip => {
                let edge = edge.context("no edge runs")?;
                Driver::Ip(IpLoad::start(quic, edge.addr, &edge.pin, echo).await?)
            }
        };
        drivers.push((route, driver));
    }
    Ok(drivers)
}

/// Warm-up, every offered load on every path, then the round trips; returns the report.
async fn measure(
    args: &UdpArgs,
    drivers: &mut [(UdpRoute, Driver)],
    processes: &[Option<u32>],
) -> anyhow::Result<String> {
    let mut next_id = 0u32;
    let mut step = |mode| {
        next_id += 1;
        Step {
            id: next_id,
            mode,
            payload: args.payload,
        }
    };
    for (route, driver) in drivers.iter_mut() {
        let warm = driver.run(step(WARMUP)).await?;
        println!(
            "veil bench udp: warm-up {}: {} of {} echoed",
            route.label(),
            warm.received,
            warm.sent
        );
    }
    let duration = Duration::from_millis(args.duration_ms);
    // samples[rate index][path index]: one sample per round.
    let mut samples: Vec<Vec<Vec<Sample>>> = Vec::new();
    for &rate in &args.rates {
        let mut per_path: Vec<Vec<Sample>> = drivers.iter().map(|_| Vec::new()).collect();
        for round in 1..=args.rounds {
            for ((route, driver), kept) in drivers.iter_mut().zip(&mut per_path) {
                let cpu_before = cpu_total(processes)?;
                let result = driver.run(step(Mode::Paced { rate, duration })).await?;
                let cpu = cpu_total(processes)?.saturating_sub(cpu_before);
                println!(
                    "veil bench udp: {rate} pps offered, round {round}, {}: {:.0} echoed/s, loss {:.2}%",
                    route.label(),
                    result.echoed_per_s(),
                    result.loss() * 100.0
                );
                kept.push(Sample { result, cpu });
            }
        }
        samples.push(per_path);
    }
    let mut pings = Vec::new();
    if args.pings > 0 {
        for (route, driver) in drivers.iter_mut() {
            let result = driver
                .run(step(Mode::PingPong { count: args.pings }))
                .await?;
            pings.push((*route, result));
        }
    }
    let routes: Vec<UdpRoute> = drivers.iter().map(|(r, _)| *r).collect();
    let mut report = load_table(args, &routes, &samples);
    report.push_str(&ping_table(args, &pings));
    Ok(report)
}

/// The sample whose echo rate is the median of its rounds.
fn median_sample(samples: &[Sample]) -> Option<&Sample> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.result.echoed_per_s().total_cmp(&b.result.echoed_per_s()));
    sorted.get(sorted.len() / 2).copied()
}

// Display arithmetic.
#[allow(clippy::cast_precision_loss)]
fn goodput_mbit(result: &StepResult, payload: usize) -> f64 {
    result.echoed_per_s() * payload as f64 * 8.0 / 1e6
}

#[allow(clippy::cast_precision_loss)]
fn cpu_us_per_packet(sample: &Sample) -> f64 {
    // Each echoed packet crossed every process twice (there and back).
    micros(sample.cpu) / sample.result.received.max(1) as f64
}

fn load_table(args: &UdpArgs, routes: &[UdpRoute], samples: &[Vec<Vec<Sample>>]) -> String {
    let mut out = format!(
        "| {} B payloads, {} ms per load, median of {} rounds | offered pps | sent pps | echoed pps | loss | goodput Mbit/s (echoed) | RTT p50 µs | RTT p99 µs | CPU µs per echo, all processes |\n|---|---|---|---|---|---|---|---|---|\n",
        args.payload, args.duration_ms, args.rounds
    );
    // Best echo rate of each path over the loads, and the raw path's echo rate per load.
    let mut best = vec![0.0f64; routes.len()];
    let mut ratios = Vec::new();
    let mut ip_ratios = Vec::new();
    for (&rate, per_path) in args.rates.iter().zip(samples) {
        let mut raw_rate = None;
        let mut proxied_rate = None;
        let mut ip_rate = None;
        for ((route, kept), best) in routes.iter().zip(per_path).zip(&mut best) {
            let Some(sample) = median_sample(kept) else {
                continue;
            };
            let r = &sample.result;
            *best = best.max(r.echoed_per_s());
            match route {
                UdpRoute::Raw => raw_rate = Some(r.echoed_per_s()),
                UdpRoute::Proxied => proxied_rate = Some(r.echoed_per_s()),
                UdpRoute::Ip => ip_rate = Some(r.echoed_per_s()),
                UdpRoute::Direct => {}
            }
            let _ = writeln!(
                out,
                "| {} | {rate} | {:.0} | {:.0} | {:.2}% | {:.1} | {:.1} | {:.1} | {:.2} |",
                route.label(),
                r.offered_per_s(),
                r.echoed_per_s(),
                r.loss() * 100.0,
                goodput_mbit(r, args.payload),
                micros(percentile(&r.rtts, 50)),
                micros(percentile(&r.rtts, 99)),
                cpu_us_per_packet(sample),
            );
        }
        if let (Some(raw), Some(proxied)) = (raw_rate, proxied_rate) {
            ratios.push((rate, proxied / raw.max(1e-9)));
        }
        if let (Some(raw), Some(ip)) = (raw_rate, ip_rate) {
            ip_ratios.push((rate, ip / raw.max(1e-9)));
        }
    }
    out.push('\n');
    let raw_best = routes
        .iter()
        .position(|r| *r == UdpRoute::Raw)
        .and_then(|i| best.get(i).copied());
    let best_of = |route: UdpRoute| {
        routes
            .iter()
            .position(|r| *r == route)
            .and_then(|i| best.get(i).copied())
    };
    let proxied_best = best_of(UdpRoute::Proxied);
    let ip_best = best_of(UdpRoute::Ip);
    for (route, best) in routes.iter().zip(&best) {
        let _ = writeln!(
            out,
            "- {}: best echo rate {best:.0} packets/s, {:.1} Mbit/s of payload each way",
            route.label(),
            *best * f64::from(u32::try_from(args.payload).unwrap_or(u32::MAX)) * 8.0 / 1e6
        );
    }
    write_ratios(&mut out, "proxied", &ratios);
    if let (Some(raw), Some(proxied)) = (raw_best, proxied_best) {
        let ratio = proxied / raw.max(1e-9);
        let _ = writeln!(
            out,
            "- proxied ÷ raw QUIC DATAGRAM, best echo rates: **{ratio:.2}** (aim ≥ {AIM_RATIO:.2}: {})",
            verdict(ratio >= AIM_RATIO)
        );
    }
    write_ratios(&mut out, "CONNECT-IP", &ip_ratios);
    if let (Some(raw), Some(ip)) = (raw_best, ip_best) {
        let _ = writeln!(
            out,
            "- CONNECT-IP ÷ raw QUIC DATAGRAM, best echo rates: **{:.2}**",
            ip / raw.max(1e-9)
        );
    }
    if let (Some(proxied), Some(ip)) = (proxied_best, ip_best) {
        let _ = writeln!(
            out,
            "- CONNECT-IP ÷ CONNECT-UDP, best echo rates: **{:.2}**",
            ip / proxied.max(1e-9)
        );
    }
    out.push('\n');
    out
}

/// `- WHAT ÷ raw QUIC DATAGRAM, echo rate at each load: ...`, when there are any.
fn write_ratios(out: &mut String, what: &str, per_load: &[(u64, f64)]) {
    if per_load.is_empty() {
        return;
    }
    let list: Vec<String> = per_load
        .iter()
        .map(|(rate, ratio)| format!("{rate} pps: {ratio:.2}"))
        .collect();
    let _ = writeln!(
        out,
        "- {what} ÷ raw QUIC DATAGRAM, echo rate at each load: {}",
        list.join(", ")
    );
}

fn ping_table(args: &UdpArgs, pings: &[(UdpRoute, StepResult)]) -> String {
    if pings.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "| {} × {} B round trips, one in flight | p50 µs | p99 µs | lost |\n|---|---|---|---|\n",
        args.pings, args.payload
    );
    let mut direct = None;
    for (route, result) in pings {
        let (p50, p99) = (percentile(&result.rtts, 50), percentile(&result.rtts, 99));
        if *route == UdpRoute::Direct {
            direct = Some((p50, p99));
        }
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {} |",
            route.label(),
            micros(p50),
            micros(p99),
            result.sent.saturating_sub(result.received)
        );
    }
    let proxied = pings.iter().find(|(r, _)| *r == UdpRoute::Proxied);
    if let (Some((d50, d99)), Some((_, p))) = (direct, proxied) {
        let _ = writeln!(
            out,
            "| **added by the tunnel** | **{:.1}** | **{:.1}** | |",
            micros(percentile(&p.rtts, 50)) - micros(d50),
            micros(percentile(&p.rtts, 99)) - micros(d99)
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(received: u64) -> Sample {
        Sample {
            result: StepResult {
                sent: 100,
                received,
                elapsed: Duration::from_secs(1),
                ..StepResult::default()
            },
            cpu: Duration::from_millis(1),
        }
    }

    #[test]
    fn the_median_round_is_picked_by_echo_rate() {
        let samples = [sample(90), sample(50), sample(70)];
        let median = median_sample(&samples).expect("three samples");
        assert_eq!(median.result.received, 70);
        assert!(median_sample(&[]).is_none());
    }

    #[test]
    fn goodput_counts_echoed_payload_bits() {
        let s = sample(100);
        assert!((goodput_mbit(&s.result, 1200) - 0.96).abs() < 1e-9);
        assert!((s.result.loss()).abs() < 1e-9);
        assert!((sample(75).result.loss() - 0.25).abs() < 1e-9);
    }
}
