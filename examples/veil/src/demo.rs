//! `veil demo`: an origin, an edge and a client on loopback; data through both proxies,
//! verified by SHA-256, with the throughput of each path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::net::TcpStream;
use veil_engine::{QuicConfig, Secret, Token};

use crate::body::{hex, pattern_digest};
use crate::config::{ClientSettings, DemoArgs, ServerSettings, Trust, format_pin};
use crate::fetch::{self, SocksOutcome};
use crate::origin::Origin;
use crate::run::{RunningClient, RunningEdge};

const MIB: u64 = 1024 * 1024;
/// The whole demo must end within this.
const DEMO_DEADLINE: Duration = Duration::from_secs(50);

/// Runs the demo; an error means something did not work.
pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    ensure!(args.size_mib > 0, "--size-mib must be at least 1");
    tokio::time::timeout(DEMO_DEADLINE, demo(args.size_mib * MIB))
        .await
        .context("the demo did not finish in time")?
}

async fn demo(size: u64) -> anyhow::Result<()> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let origin = Origin::start(loopback).await?;
    let token = random_token()?;
    let edge = RunningEdge::start(&ServerSettings {
        listen: loopback,
        listen_tcp: None,
        proxy_protocol: false,
        proxy_protocol_egress: None,
        cert_key: None,
        client_ca: None,
        tokens: vec![Token::new("demo", token.clone()).context("the demo token")?],
        allow_targets: vec!["127.0.0.0/8".to_owned()],
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        drain: Duration::from_secs(1),
        upgrade_drain: Duration::from_secs(60),
        edge_id: 0,
        udp_template: None,
        quic: QuicConfig::default(),
        rules: Vec::new(),
        metrics: None,
        audit_log: None,
        ip_pools: Vec::new(),
        ip_egress: None,
        tun_offload: true,
        retry: veil_engine::EdgeConfig::default().retry,
        tenant: None,
        udp_buffer: crate::config::UdpBuffers::AUTO,
        busy_poll: None,
        drivers: std::num::NonZeroUsize::MIN,
    })?;
    let fingerprint = edge
        .fingerprint()
        .context("the edge reports no certificate fingerprint")?;
    let client = RunningClient::start(&ClientSettings {
        edge: edge.addr().to_string(),
        transport: veil_engine::Transport::H3,
        h3_retry: None,
        optimistic: false,
        lanes: std::num::NonZeroUsize::MIN,
        server_name: Some("localhost".to_owned()),
        trust: Trust::Pin(fingerprint),
        token: Some(token),
        certificate: None,
        socks: Some(loopback),
        http: Some(loopback),
        socks_user: None,
        drain: Duration::from_secs(1),
        udp_forwards: Vec::new(),
        udp_template: None,
        quic: QuicConfig::default(),
        rules: Vec::new(),
        metrics: None,
        direct_source: None,
        udp_buffer: crate::config::UdpBuffers::AUTO,
        busy_poll: None,
        connect_timeout: Duration::from_secs(5),
        tun: None,
        tun_routes: Vec::new(),
        tun_offload: true,
    })
    .await?;
    println!("veil demo: origin    http://{}", origin.addr());
    println!(
        "veil demo: edge      {} (self-signed {}, token required, allow-target 127.0.0.0/8)",
        edge.addr(),
        format_pin(&fingerprint)
    );
    println!(
        "veil demo: client    socks5 {}, http {} (pinned to the edge)",
        client.socks_addr().context("the demo's SOCKS5 listener")?,
        client.http_addr().context("the demo's HTTP listener")?
    );
    let expected = pattern_digest(size);
    println!(
        "veil demo: moving {} MiB per path, expected sha256 {}",
        size / MIB,
        hex(&expected)
    );

    let results = paths(&origin, &client, size, &expected).await;
    client.shutdown().await?;
    edge.shutdown().await?;
    results?;
    println!("veil demo: all paths verified");
    Ok(())
}

async fn paths(
    origin: &Origin,
    client: &RunningClient,
    size: u64,
    expected: &[u8; 32],
) -> anyhow::Result<()> {
    let host = origin.addr().to_string();
    let port = origin.addr().port();
    let path = format!("/bytes/{size}");

    let started = Instant::now();
    let SocksOutcome::Connected(mut stream) = fetch::socks5_connect(
        client.socks_addr().context("no SOCKS5 listener")?,
        "127.0.0.1",
        port,
        None,
    )
    .await?
    else {
        bail!("the SOCKS5 CONNECT to the origin was refused");
    };
    let received = fetch::get(&mut stream, &path, &host).await?;
    check_download("socks5 CONNECT, GET", &received, size, expected, started)?;

    let started = Instant::now();
    let mut stream = TcpStream::connect(client.http_addr().context("no HTTP listener")?).await?;
    let received = fetch::get(&mut stream, &format!("http://{host}{path}"), &host).await?;
    check_download("http forward, GET", &received, size, expected, started)?;

    let started = Instant::now();
    let (head, stream) =
        fetch::http_connect(client.http_addr().context("no HTTP listener")?, &host).await?;
    let mut stream = stream.with_context(|| format!("HTTP CONNECT answered {}", head.status))?;
    let (head, answer) = fetch::upload(&mut stream, &host, size).await?;
    ensure!(head.status == 200, "upload answered {}", head.status);
    ensure!(
        answer == format!("sha256:{}", hex(expected)),
        "the origin received different bytes: {answer}"
    );
    report("http CONNECT, POST", size, started);

    refusals(client, port).await
}

/// A target the edge must refuse: IPv6 loopback is outside the allowlist.
async fn refusals(client: &RunningClient, port: u16) -> anyhow::Result<()> {
    match fetch::socks5_connect(
        client.socks_addr().context("no SOCKS5 listener")?,
        "::1",
        port,
        None,
    )
    .await?
    {
        SocksOutcome::Refused(0x02) => {}
        SocksOutcome::Refused(code) => bail!("SOCKS5 refusal code {code:#04x}, expected 0x02"),
        SocksOutcome::Connected(_) => bail!("a forbidden target was reached through SOCKS5"),
    }
    let (head, _) = fetch::http_connect(
        client.http_addr().context("no HTTP listener")?,
        &format!("[::1]:{port}"),
    )
    .await?;
    let proxy_status = head.field("proxy-status").unwrap_or_default();
    ensure!(
        head.status == 403 && proxy_status.contains("destination_ip_prohibited"),
        "HTTP CONNECT to a forbidden target answered {} ({proxy_status})",
        head.status
    );
    println!(
        "veil demo: forbidden target [::1]:{port}: socks5 reply 0x02, http 403 ({proxy_status})"
    );
    Ok(())
}

fn check_download(
    what: &str,
    received: &fetch::Received,
    size: u64,
    expected: &[u8; 32],
    started: Instant,
) -> anyhow::Result<()> {
    ensure!(
        received.head.status == 200,
        "{what}: status {}",
        received.head.status
    );
    ensure!(
        received.len == size,
        "{what}: {} bytes of {size}",
        received.len
    );
    ensure!(
        &received.digest == expected,
        "{what}: sha256 {} differs",
        hex(&received.digest)
    );
    report(what, size, started);
    Ok(())
}

fn report(what: &str, size: u64, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    // Display only: precision loss on huge sizes does not matter.
    #[allow(clippy::cast_precision_loss)]
    let mib = size as f64 / MIB as f64;
    println!(
        "veil demo: {what:<20} {mib:>6.0} MiB in {seconds:>6.2} s = {:>8.1} MiB/s, sha256 ok",
        mib / seconds.max(1e-9)
    );
}

fn random_token() -> anyhow::Result<Secret> {
    let mut bytes = [0; 16];
    boring::rand::rand_bytes(&mut bytes)?;
    Ok(Secret::new(hex(&bytes)))
}
