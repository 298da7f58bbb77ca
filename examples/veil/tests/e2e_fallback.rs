//! `veil client --transport auto` (the default) where UDP to the edge is blocked, in
//! network namespaces: client ns ── veth ── edge ns ── veth ── target ns (nginx, dnsmasq).
//!
//! An nftables rule in the client's namespace drops every UDP datagram to the edge's port,
//! as networks that block QUIC do. The client still carries curl (TCP through SOCKS5) and
//! dig (UDP through a `--udp-forward`, CONNECT-UDP with its datagrams in capsules) over
//! HTTP/2 to the edge's TCP listener. Once the rule is gone, the client tries HTTP/3 again
//! after `--h3-retry-ms` and a QUIC connection reaches the edge; requests go on working.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::netns::{self, NetNs, curl_in, skip_reason, wait_for_text};
use support::{STARTUP, TOKEN, TempDir, require_tool};

const SMALL: &str = "hello over whichever transport works\n";
const PROBE: Duration = Duration::from_secs(20);
/// `--h3-retry-ms` of the client: how long it stays on HTTP/2 before trying HTTP/3.
const H3_RETRY: Duration = Duration::from_secs(2);

/// The edge's counters from its `/metrics`, read inside its namespace.
fn counter(edge_ns: &NetNs, metrics: &str, name: &str) -> anyhow::Result<u64> {
    let out = curl_in(edge_ns, &[&format!("http://{metrics}/metrics")], PROBE)?;
    ensure!(out.status.success(), "metrics: {}", out.stderr);
    out.stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .with_context(|| format!("no {name} in:\n{}", out.stdout))
}

/// The small file through the client's SOCKS5 listener, by curl inside `ns`.
fn fetch(ns: &NetNs) -> anyhow::Result<support::Output> {
    ns.run(
        "curl",
        &[
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--proxy",
            "socks5h://127.0.0.1:1080",
            "http://10.210.0.2/small.txt",
        ],
        PROBE,
    )
}

/// curl fetches the small file through the client's SOCKS5 listener and dig resolves
/// `veil.test` through its UDP forward, both inside `ns`.
fn curl_and_dig(ns: &NetNs, when: &str, context: &dyn Fn() -> String) -> anyhow::Result<()> {
    let out = fetch(ns)?;
    ensure!(
        out.status.success() && out.stdout == SMALL,
        "curl {when}: {}\n{}",
        out.stderr,
        context()
    );
    let answer = dig(ns, "127.0.0.1", "5353", "veil.test")?;
    ensure!(
        answer == "10.210.0.2",
        "dig {when}: {answer:?}\n{}",
        context()
    );
    Ok(())
}

/// `dig @SERVER -p PORT NAME +short` inside `ns`.
fn dig(ns: &NetNs, server: &str, port: &str, name: &str) -> anyhow::Result<String> {
    let out = ns.run(
        "dig",
        &[
            &format!("@{server}"),
            "-p",
            port,
            name,
            "A",
            "+short",
            "+tries=2",
            "+timeout=3",
        ],
        PROBE,
    )?;
    ensure!(out.status.success(), "dig: {}{}", out.stdout, out.stderr);
    Ok(out.stdout.trim().to_owned())
}

/// Fails, naming the package, unless every program the test runs is installed.
fn require_tools() -> anyhow::Result<()> {
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("dig", "bind9-dnsutils"),
        ("dnsmasq", "dnsmasq"),
        ("nginx", "nginx"),
        ("curl", "curl"),
    ] {
        require_tool(tool, package)?;
    }
    Ok(())
}

/// dnsmasq (`veil.test` is 10.210.0.2) and nginx (`/small.txt`) in the target namespace.
fn start_target(
    target_ns: &NetNs,
    dir: &TempDir,
) -> anyhow::Result<(support::Proc, support::Proc)> {
    let www = dir.join("www");
    fs::create_dir_all(&www)?;
    fs::write(www.join("small.txt"), SMALL)?;
    let dnsmasq = netns::start_dnsmasq(
        target_ns,
        dir.path(),
        "10.210.0.2",
        &["--address=/veil.test/10.210.0.2"],
    )?;
    let nginx_dir = dir.join("nginx");
    fs::create_dir_all(&nginx_dir)?;
    let nginx = netns::start_nginx(
        target_ns,
        &nginx_dir,
        &www,
        &["10.210.0.2:80"],
        "http://10.210.0.2/small.txt",
    )?;
    Ok((dnsmasq, nginx))
}

#[test]
fn auto_falls_back_to_http2_when_udp_is_blocked_and_returns_to_http3() -> anyhow::Result<()> {
    if let Some(why) = skip_reason() {
        println!(
            "SKIPPED auto_falls_back_to_http2_when_udp_is_blocked_and_returns_to_http3: {why}"
        );
        return Ok(());
    }
    require_tools()?;
    let namespaces = netns::client_edge_target("10.110.0", "10.210.0")?;
    let (client_ns, edge_ns) = (namespaces.get(0)?, namespaces.get(1)?);
    let dir = TempDir::new("fallback")?;
    let _target = start_target(namespaces.get(2)?, &dir)?;

    // UDP to the edge's port is dropped on its way out of the client's namespace.
    let block = "table inet veil_block { chain out { type filter hook output priority 0; \
                 udp dport 4433 drop; }; }";
    let out = client_ns.run("nft", &[block], PROBE)?;
    ensure!(out.status.success(), "nft: {}", out.stderr);

    let mut edge = netns::start_edge(
        edge_ns,
        dir.path(),
        &[
            "--listen",
            "10.110.0.1:4433",
            "--listen-tcp",
            "10.110.0.1:4433",
            "--token",
            TOKEN,
            "--allow-target",
            "10.210.0.0/24",
            "--metrics",
            "10.110.0.1:0",
        ],
    )?;
    edge.proc()
        .wait_for_line("veil: edge listening on tcp ", STARTUP)?;
    let metrics = edge
        .proc()
        .wait_for_line("veil: metrics listening on ", STARTUP)?;
    let retry_ms = H3_RETRY.as_millis().to_string();
    let client = netns::start_client(
        client_ns,
        dir.path(),
        &[
            "--edge",
            "10.110.0.1:4433",
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--socks",
            "127.0.0.1:1080",
            "--udp-forward",
            "127.0.0.1:5353=10.210.0.2:53",
            "--h3-retry-ms",
            &retry_ms,
        ],
    )?;
    wait_for_text(&client, "veil: socks5 listening on", STARTUP)?;
    let context = || netns::context(&edge, &client, &namespaces);

    // Blocked: curl and dig work over HTTP/2.
    let fetched = Instant::now();
    curl_and_dig(client_ns, "with UDP blocked", &context)?;
    eprintln!(
        "e2e: curl and dig with UDP blocked took {:?}",
        fetched.elapsed()
    );
    let total = counter(edge_ns, &metrics, "veil_connections_opened_total")?;
    let over_tcp = counter(edge_ns, &metrics, "veil_tcp_connections_opened_total")?;
    ensure!(
        over_tcp == 1 && total == 1,
        "with UDP blocked: {total} connections, {over_tcp} over TCP\n{}",
        context()
    );

    // Unblocked: after the retry delay, HTTP/3 is tried again and gets through.
    let out = client_ns.run("nft", &["delete table inet veil_block"], PROBE)?;
    ensure!(out.status.success(), "nft: {}", out.stderr);
    let deadline = Instant::now() + H3_RETRY + Duration::from_secs(10);
    loop {
        let total = counter(edge_ns, &metrics, "veil_connections_opened_total")?;
        let over_tcp = counter(edge_ns, &metrics, "veil_tcp_connections_opened_total")?;
        if total > over_tcp {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no QUIC connection after UDP came back\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    curl_and_dig(client_ns, "after UDP came back", &context)?;
    Ok(())
}
