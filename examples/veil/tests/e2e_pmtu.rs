//! Path MTU discovery (`[quic] pmtu_discovery = true`, probing up to 16,383 bytes) across
//! a link whose MTU is 1,500 bytes, in network namespaces:
//! client ns ── veth (MTU 1500) ── edge ns ── veth ── target ns (nginx).
//!
//! The probes larger than the link must be lost, never fragmented: the kernel fragments a
//! UDP datagram over the MTU unless the socket says Don't Fragment, and a probe that got
//! through as fragments would make QUIC send every packet as fragments from then on (on
//! the Internet, where fragments are often dropped, a black hole). So a download through
//! the tunnel, with the edge on each runtime, arrives whole, and neither end's namespace
//! created an IP fragment (`FragCreates` in its `/proc/net/snmp`). The tokio host's socket
//! gets Don't Fragment from quinn-udp, the glommio host's from `adapters/glommio/src/udp.rs`.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::netns::{self, NetNs, skip_reason, wait_for_text};
use support::{STARTUP, TOKEN, TempDir, require_tool};

const PROBE: Duration = Duration::from_secs(20);
/// The download: large enough for many probes and the binary search behind them.
const FILE_LEN: usize = 16 << 20;
const TRANSFER: Duration = Duration::from_secs(60);
/// Both ends probe for packets up to quiche's largest (a two-byte varint length).
const CONFIG: &str = "[quic]\npmtu_discovery = true\nmax_send_udp_payload_size = 16383\n";

/// An IPv4 counter of `/proc/net/snmp` as read inside `ns` (each namespace has its own).
fn ip_counter(ns: &NetNs, name: &str) -> anyhow::Result<u64> {
    let out = ns.run("cat", &["/proc/net/snmp"], PROBE)?;
    ensure!(out.status.success(), "cat /proc/net/snmp: {}", out.stderr);
    let mut lines = out.stdout.lines().filter(|line| line.starts_with("Ip: "));
    let (names, values) = (lines.next(), lines.next());
    let (Some(names), Some(values)) = (names, values) else {
        anyhow::bail!("no Ip lines in:\n{}", out.stdout);
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| value.parse().ok())
        .with_context(|| format!("no {name} in:\n{}", out.stdout))
}

/// IP fragments the client's and the edge's namespaces have made so far.
fn fragments_created(client_ns: &NetNs, edge_ns: &NetNs) -> anyhow::Result<[u64; 2]> {
    Ok([
        ip_counter(client_ns, "FragCreates")?,
        ip_counter(edge_ns, "FragCreates")?,
    ])
}

#[test]
fn path_mtu_probes_across_a_1500_byte_link_are_never_fragmented() -> anyhow::Result<()> {
    if let Some(why) = skip_reason() {
        println!("SKIPPED path_mtu_probes_across_a_1500_byte_link_are_never_fragmented: {why}");
        return Ok(());
    }
    for (tool, package) in [("ip", "iproute2"), ("nginx", "nginx"), ("curl", "curl")] {
        require_tool(tool, package)?;
    }
    let dir = TempDir::new("pmtu")?;
    let config = dir.join("pmtu.toml");
    fs::write(&config, CONFIG)?;
    let config = config.to_string_lossy().into_owned();
    let www = dir.join("www");
    fs::create_dir_all(&www)?;
    let sum = support::write_random_file(&www.join("big.bin"), FILE_LEN, 0x706d_7475)?;

    for runtime in ["tokio", "glommio"] {
        download_across_the_link(runtime, &dir, &config, &www, &sum)?;
    }
    Ok(())
}

/// The download through a tunnel to an edge on `runtime`, in namespaces of its own.
fn download_across_the_link(
    runtime: &str,
    dir: &TempDir,
    config: &str,
    www: &Path,
    sum: &str,
) -> anyhow::Result<()> {
    let namespaces = netns::client_edge_target("10.111.0", "10.211.0")?;
    let (client_ns, edge_ns, target_ns) =
        (namespaces.get(0)?, namespaces.get(1)?, namespaces.get(2)?);
    let link = client_ns.ip(&["-o", "link", "show", "to-edge"])?;
    ensure!(link.contains("mtu 1500 "), "the link's MTU: {link}");
    let nginx_dir = dir.join(&format!("nginx-{runtime}"));
    fs::create_dir_all(&nginx_dir)?;
    let _nginx = netns::start_nginx(
        target_ns,
        &nginx_dir,
        www,
        &["10.211.0.2:80"],
        "http://10.211.0.2/big.bin",
    )?;
    let edge = netns::start_edge(
        edge_ns,
        dir.path(),
        &[
            "--config",
            config,
            "--runtime",
            runtime,
            "--listen",
            "10.111.0.1:4433",
            "--token",
            TOKEN,
            "--allow-target",
            "10.211.0.0/24",
        ],
    )?;
    let client = netns::start_client(
        client_ns,
        dir.path(),
        &[
            "--config",
            config,
            "--edge",
            "10.111.0.1:4433",
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--socks",
            "127.0.0.1:1080",
        ],
    )?;
    wait_for_text(&client, "veil: socks5 listening on", STARTUP)?;
    let context = || netns::context(&edge, &client, &namespaces);

    let before = fragments_created(client_ns, edge_ns)?;
    let out = dir.join(&format!("big-{runtime}.bin"));
    let started = Instant::now();
    let fetched = client_ns.run(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--max-time",
            &TRANSFER.as_secs().to_string(),
            "--proxy",
            "socks5h://127.0.0.1:1080",
            "-o",
            &out.to_string_lossy(),
            "http://10.211.0.2/big.bin",
        ],
        TRANSFER + Duration::from_secs(10),
    )?;
    let took = started.elapsed();
    ensure!(
        fetched.status.success(),
        "{runtime}: curl: {}\n{}",
        fetched.stderr,
        context()
    );
    ensure!(
        support::sha256_file(&out)? == sum,
        "{runtime}: the download differs from the file\n{}",
        context()
    );
    let after = fragments_created(client_ns, edge_ns)?;
    ensure!(
        after == before,
        "{runtime}: IP fragments created (client, edge): {before:?} → {after:?}\n{}",
        context()
    );
    eprintln!(
        "e2e: {runtime} edge, {} MiB across MTU 1500 with PMTU discovery in {took:?}, \
         no fragments",
        FILE_LEN >> 20
    );
    Ok(())
}
