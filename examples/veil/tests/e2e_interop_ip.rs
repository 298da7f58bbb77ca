//! Interop for CONNECT-IP (RFC 9484) with aioquic, a QUIC and HTTP/3 implementation nobody
//! here wrote: `tests/interop/aioquic_connect_ip_client.py` is the client, `veil server
//! --ip-egress tun:veil-ipx` the edge, both in a network namespace of the test's own:
//!
//! ```text
//!  namespace veil-ipx-PID-N
//!  aioquic client ── QUIC on 127.0.0.1 ──  veil server ── veil-ipx (TUN) 10.89.0.1/24
//!                                                          target0 (veth) 10.200.0.2/24
//! ```
//!
//! The client's packets leave the edge through its TUN device into the same kernel, where
//! 10.200.0.2 is a local address (`--allow-target 10.200.0.0/24`): it answers ICMP echo,
//! and the script holds a UDP socket on it. The script checks, and reports in one JSON
//! line: the 200 with `capsule-protocol: ?1`, `ADDRESS_ASSIGN` (10.89.0.2/32),
//! `ROUTE_ADVERTISEMENT` (all of IPv4, every protocol), `ADDRESS_REQUEST` answered (an IPv4
//! address, and all zeroes for IPv6, which the pool lacks), an echo round trip (TTL 63), UDP
//! both ways, ICMP "administratively prohibited" from 10.89.0.1 for a private address,
//! and silence for a spoofed source. Once with HTTP datagrams in QUIC DATAGRAM frames,
//! once in DATAGRAM capsules (no H3 datagrams announced), and once scoped by name
//! (`/.well-known/masque/ip/target.veil.test/*/`, the name in the namespace's own
//! `/etc/hosts`): the edge resolves it, advertises one route to 10.200.0.2 and drops
//! packets to anything else, silently (`out_of_scope` in its metrics). And once through
//! the `decap` off-ramp instead of the TUN device: the same checks, the target seeing the
//! edge's socket (not the client's address) send the UDP payload.
//!
//! Both tests need root and `/dev/net/tun`; without either they print SKIPPED and pass
//! (CI runs as root). A missing `ip` or aioquic is a failure.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::Value;
use support::netns::{self, Namespaces, skip_reason};
use support::{TempDir, require_aioquic, run_bounded};

/// Bound of the script (its own steps take a few seconds at most).
const SCRIPT: Duration = Duration::from_secs(40);
/// Bound of the whole test.
const WHOLE: Duration = Duration::from_secs(60);
/// The checks the script runs, all of which must pass.
const CHECKS: [&str; 8] = [
    "request",
    "assign",
    "routes",
    "address_request",
    "echo",
    "udp",
    "forbidden",
    "spoofed",
];

/// The edge's metrics listener, inside the test's namespace.
const METRICS: &str = "127.0.0.1:19090";

/// Runs the script against a fresh edge in a fresh namespace in `mode` (`datagrams` or
/// `capsules`), scoped to any host or, `by_name`, to `target.veil.test`; returns its JSON
/// result, which must say every check passed.
fn connect_ip_interop(label: &str, mode: &str, by_name: bool) -> anyhow::Result<Option<Value>> {
    connect_ip_interop_via(label, mode, by_name, "tun:veil-ipx", &[])
}

/// [`connect_ip_interop`] through the edge's `egress` (`tun:NAME` or `decap`), with more
/// flags for the edge.
fn connect_ip_interop_via(
    label: &str,
    mode: &str,
    by_name: bool,
    egress: &str,
    edge_flags: &[&str],
) -> anyhow::Result<Option<Value>> {
    if let Some(why) = skip_reason() {
        println!("SKIPPED {label}: {why}");
        return Ok(None);
    }
    let started = Instant::now();
    let python = require_aioquic()?;
    let dir = TempDir::new(label)?;
    // Dropped last: the namespace goes (with anything still running in it) even when an
    // assertion fails or panics.
    let namespaces = Namespaces::create(&["ipx"])?;
    let ns = namespaces.get(0)?;
    // The target's interface: one end of a veth pair whose other end stays unused (a
    // `dummy` link would do, but not every kernel has that driver; this one's has not).
    ns.ip(&[
        "link", "add", "target0", "type", "veth", "peer", "name", "target1",
    ])?;
    ns.ip(&["address", "add", "10.200.0.2/24", "dev", "target0"])?;
    ns.ip(&["link", "set", "target1", "up"])?;
    ns.ip(&["link", "set", "target0", "up"])?;
    ns.hosts("127.0.0.1 localhost\n10.200.0.2 target.veil.test\n")?;

    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--ip-pool",
        "10.89.0.0/24",
        "--ip-egress",
        egress,
        "--allow-target",
        "10.200.0.0/24",
        "--metrics",
        METRICS,
    ];
    args.extend_from_slice(edge_flags);
    let edge = netns::start_edge(ns, dir.path(), &args)?;
    let mut command = ns.command(python);
    command
        .arg(support::repo_root().join("tests/interop/aioquic_connect_ip_client.py"))
        .args(["--edge", &edge.addr().to_string(), "--pin", edge.pin()?])
        .args(["--mode", mode]);
    if egress == "decap" {
        command.arg("--decap");
    }
    if by_name {
        command.args([
            "--path",
            "/.well-known/masque/ip/target.veil.test/*/",
            "--expect-route",
            "10.200.0.2-10.200.0.2/0",
            "--forbidden-out-of-scope",
        ]);
    }
    let output = support::timed("aioquic_connect_ip_client.py", || {
        run_bounded(command, SCRIPT)
    })?;
    let context = || {
        format!(
            "aioquic_connect_ip_client.py --mode {mode}: exit {}\nstdout:\n{}\nstderr:\n{}\n{}\n{}",
            output.code(),
            output.stdout,
            output.stderr,
            edge.diagnostics(),
            ns.dump()
        )
    };
    let line = output
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(context)?;
    let result: Value = serde_json::from_str(line).with_context(context)?;
    for check in CHECKS {
        let verdict = result["checks"][check].as_str().unwrap_or("missing");
        ensure!(
            verdict.starts_with("ok"),
            "check {check}: {verdict}\n{}",
            context()
        );
    }
    ensure!(
        result["ok"] == Value::Bool(true) && output.status.success(),
        "the script failed\n{}",
        context()
    );
    ensure!(
        result["mode"] == mode && result["h3_datagrams"] == Value::Bool(mode == "datagrams"),
        "ran in the wrong mode\n{}",
        context()
    );
    if by_name {
        let dropped = out_of_scope_drops(ns)?;
        ensure!(
            dropped >= 3.0,
            "the edge dropped {dropped} packets as out of scope, expected the script's 3\n{}",
            context()
        );
    }
    ensure!(
        started.elapsed() < WHOLE,
        "took {:?}, more than {WHOLE:?}",
        started.elapsed()
    );
    Ok(Some(result))
}

/// `veil_ip_packets_dropped_total{cause="out_of_scope"}` from the edge's metrics.
fn out_of_scope_drops(ns: &netns::NetNs) -> anyhow::Result<f64> {
    let url = format!("http://{METRICS}/metrics");
    let output = netns::curl_in(ns, &[&url], Duration::from_secs(5))?;
    ensure!(output.status.success(), "GET {url}: {}", output.stderr);
    let name = "veil_ip_packets_dropped_total{cause=\"out_of_scope\"}";
    output
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no sample {name} in:\n{}", output.stdout))?
        .trim()
        .parse()
        .with_context(|| format!("the sample {name}"))
}

#[test]
fn aioquic_connect_ip_through_veil_server_in_datagram_frames() -> anyhow::Result<()> {
    let label = "aioquic_connect_ip_through_veil_server_in_datagram_frames";
    if let Some(result) = connect_ip_interop(label, "datagrams", false)? {
        eprintln!("e2e: {result}");
    }
    Ok(())
}

#[test]
fn aioquic_connect_ip_through_veil_server_in_capsules() -> anyhow::Result<()> {
    let label = "aioquic_connect_ip_through_veil_server_in_capsules";
    if let Some(result) = connect_ip_interop(label, "capsules", false)? {
        eprintln!("e2e: {result}");
    }
    Ok(())
}

#[test]
fn aioquic_connect_ip_through_veil_server_s_decap_off_ramp() -> anyhow::Result<()> {
    let label = "aioquic_connect_ip_through_veil_server_s_decap_off_ramp";
    if let Some(result) = connect_ip_interop_via(label, "datagrams", false, "decap", &[])? {
        eprintln!("e2e: {result}");
    }
    Ok(())
}

/// The same through a thread-per-core edge (`--runtime glommio`), which carries CONNECT-IP
/// through the decap off-ramp.
#[test]
fn aioquic_connect_ip_through_a_glommio_edge() -> anyhow::Result<()> {
    let label = "aioquic_connect_ip_through_a_glommio_edge";
    let glommio = ["--runtime", "glommio", "--cores", "1"];
    if let Some(result) = connect_ip_interop_via(label, "capsules", false, "decap", &glommio)? {
        eprintln!("e2e: {result}");
    }
    Ok(())
}

#[test]
fn aioquic_connect_ip_scoped_by_name_through_veil_server() -> anyhow::Result<()> {
    let label = "aioquic_connect_ip_scoped_by_name_through_veil_server";
    if let Some(result) = connect_ip_interop(label, "datagrams", true)? {
        eprintln!("e2e: {result}");
    }
    Ok(())
}
