//! CONNECT-UDP end to end with real programs: `dig` asking `dnsmasq` through
//! `veil client --udp-forward` and `veil server`, `PySocks` sending through the client's
//! SOCKS5 UDP ASSOCIATE to UDP echo servers, and the edge refusing forbidden UDP targets.

mod support;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{
    Client, Dnsmasq, Edge, Output, TOKEN, TempDir, UdpEcho, dig, require_pysocks, run_bounded,
    wait_until,
};

/// A TXT answer of about 1 KiB: several 250-byte strings (a DNS string holds 255 at most).
fn big_txt_record() -> String {
    let strings: Vec<String> = (0..4)
        .map(|i| format!("\"{}\"", char::from(b'a' + i).to_string().repeat(250)))
        .collect();
    format!("--txt-record=big.veil.test,{}", strings.join(","))
}

fn dnsmasq(dir: &TempDir) -> anyhow::Result<Dnsmasq> {
    Dnsmasq::start(
        dir.path(),
        &[
            "--address=/veil.test/192.0.2.7",
            "--host-record=host.veil.test,192.0.2.8,2001:db8::8",
            "--txt-record=txt.veil.test,\"hello through veil\"",
            &big_txt_record(),
        ],
    )
}

/// The questions asked directly and through the forward; their answers must match.
const QUERIES: [[&str; 2]; 5] = [
    ["veil.test", "A"],
    ["www.veil.test", "A"],
    ["host.veil.test", "AAAA"],
    ["txt.veil.test", "TXT"],
    ["big.veil.test", "TXT"],
];

/// The answer section of one query, TTLs and all (dnsmasq serves these with TTL 0).
fn answer(server: SocketAddr, name: &str, kind: &str) -> anyhow::Result<String> {
    let output = dig(server, &["+noall", "+answer", "+bufsize=4096", name, kind])?;
    ensure!(
        output.status.success() && !output.stdout.trim().is_empty(),
        "dig {name} {kind} @{server}: exit {}\nstdout:\n{}\nstderr:\n{}",
        output.code(),
        output.stdout,
        output.stderr
    );
    Ok(output.stdout)
}

#[test]
fn dig_through_a_udp_forward_gets_what_dnsmasq_answers_directly() -> anyhow::Result<()> {
    let dir = TempDir::new("udp-dig")?;
    let dns = dnsmasq(&dir)?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let forward = format!("127.0.0.1:0={}", dns.addr());
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &forward,
        ],
    )?;
    let local = client.udp_forward()?;
    for [name, kind] in QUERIES {
        let direct = answer(dns.addr(), name, kind)?;
        let tunnelled = answer(local, name, kind)
            .with_context(|| format!("{}\n{}", client.diagnostics(), edge.diagnostics()))?;
        ensure!(
            direct == tunnelled,
            "{name} {kind}: direct answer\n{direct}\nthrough veil\n{tunnelled}"
        );
    }
    let a = answer(local, "veil.test", "A")?;
    ensure!(a.contains("192.0.2.7"), "unexpected answer: {a}");
    let big = answer(local, "big.veil.test", "TXT")?;
    ensure!(big.len() > 1000, "the big TXT answer is short: {big}");
    // Each dig run is a new sender (a new source port): its own tunnel. dnsmasq saw the
    // tunnelled queries (as many as the direct ones, plus the two extra; more if dig
    // retried).
    let queries = dns.log().matches("query[").count();
    ensure!(
        queries >= 2 * QUERIES.len() + 2,
        "dnsmasq logged {queries} queries:\n{}",
        dns.log()
    );
    Ok(())
}

/// Runs the `PySocks` script through `client` against `targets`; every target must echo.
fn pysocks(client: &Client, targets: &[String], tag: &str) -> anyhow::Result<Output> {
    let python = require_pysocks()?;
    let mut command = Command::new(python);
    command
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/pysocks_udp.py"))
        .args(["--proxy", &client.socks().to_string(), "--tag", tag]);
    for target in targets {
        command.args(["--target", target]);
    }
    let output = support::timed("pysocks_udp.py", || {
        run_bounded(command, Duration::from_secs(120))
    })?;
    let passed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    ensure!(
        output.status.success() && passed == targets.len(),
        "pysocks_udp.py: exit {}, {passed} of {} targets ok\nstdout:\n{}\nstderr:\n{}\n{}",
        output.code(),
        targets.len(),
        output.stdout,
        output.stderr,
        client.diagnostics()
    );
    Ok(output)
}

#[test]
fn pysocks_udp_associate_reaches_echo_servers_through_the_tunnel() -> anyhow::Result<()> {
    let dir = TempDir::new("udp-socks")?;
    let first = UdpEcho::start(b"echo:")?;
    let second = UdpEcho::start(b"echo:")?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    let client = Client::of(dir.path(), &edge, TOKEN)?;
    // Two destinations by address and one by name (resolved by the edge), on one
    // association: three tunnels.
    let targets = [
        first.addr().to_string(),
        second.addr().to_string(),
        format!("localhost:{}", first.addr().port()),
    ];
    pysocks(&client, &targets, "echo:")?;
    ensure!(first.received() >= 40 && second.received() >= 20);
    Ok(())
}

#[test]
fn forbidden_udp_targets_are_refused_and_never_reached() -> anyhow::Result<()> {
    let dir = TempDir::new("udp-forbidden")?;
    // A UDP socket nothing may reach: loopback is forbidden without --allow-target.
    let canary = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    canary.set_nonblocking(true)?;
    let port = canary.local_addr()?.port();
    let edge = Edge::start(dir.path(), &["--token", TOKEN])?;
    // By address (the engine refuses it) and by a name that resolves to loopback (the
    // edge's resolver step refuses it).
    let by_ip = format!("127.0.0.1:0=127.0.0.1:{port}");
    let by_name = format!("127.0.0.1:0=localhost:{port}");
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &by_ip,
            "--udp-forward",
            &by_name,
        ],
    )?;
    let forwards = [client.udp_forward()?, client.udp_forward()?];
    let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    for forward in forwards {
        sender.send_to(b"must not arrive", forward)?;
    }
    wait_until(
        "two refusals in the client's log",
        Duration::from_secs(15),
        || client.stderr().matches("destination_ip_prohibited").count() >= 2,
    )
    .with_context(|| format!("{}\n{}", client.diagnostics(), edge.diagnostics()))?;
    let mut buf = [0; 64];
    ensure!(
        canary.recv_from(&mut buf).is_err(),
        "a forbidden target received a datagram"
    );
    Ok(())
}

/// The value of `name: N` in a Debug-printed stats line of `log`, the last one logged.
fn logged_counter(log: &str, name: &str) -> Option<u64> {
    let at = log.rfind(&format!("{name}: "))? + name.len() + 2;
    let digits: String = log
        .get(at..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn without_h3_datagrams_the_tunnel_falls_back_to_capsules() -> anyhow::Result<()> {
    let dir = TempDir::new("udp-capsules")?;
    let dns = dnsmasq(&dir)?;
    let edge = Edge::start(
        dir.path(),
        &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
    )?;
    // The client does not offer HTTP/3 datagrams: both sides must use DATAGRAM capsules.
    let config = dir.join("client.toml");
    std::fs::write(&config, "[quic]\nh3_datagrams = false\n")?;
    let forward = format!("127.0.0.1:0={}", dns.addr());
    let mut client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--config",
            config.to_str().context("temp path is UTF-8")?,
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--udp-forward",
            &forward,
        ],
    )?;
    let local = client.udp_forward()?;
    for [name, kind] in QUERIES {
        let direct = answer(dns.addr(), name, kind)?;
        let tunnelled = answer(local, name, kind)
            .with_context(|| format!("{}\n{}", client.diagnostics(), edge.diagnostics()))?;
        ensure!(
            direct == tunnelled,
            "{name} {kind}: {direct} != {tunnelled}"
        );
    }
    // The client logs its engine's counters when it stops.
    client.terminate(Duration::from_secs(15))?;
    let log = client.stderr();
    let capsules = logged_counter(&log, "udp_capsule_datagrams").context("no stats logged")?;
    ensure!(
        capsules >= 2 * QUERIES.len() as u64,
        "{capsules} capsule datagrams for {} queries:\n{log}",
        QUERIES.len()
    );
    Ok(())
}
