//! `--metrics ADDR`: `veil server` (tokio and glommio) and `veil client` serve their
//! counters in the Prometheus text format at `/metrics`, and the counters move with the
//! traffic curl sends through them.

mod support;

use std::time::Duration;

use anyhow::{Context, ensure};
use std::collections::HashMap;

use support::{Client, Edge, Origin, STARTUP, TOKEN, TempDir, curl, require_tool};

const REQUEST: Duration = Duration::from_secs(20);

/// `GET http://ADDR/metrics`: the body.
fn scrape(addr: &str) -> anyhow::Result<String> {
    let out = curl(&["--fail", &format!("http://{addr}/metrics")], REQUEST)?;
    ensure!(
        out.code() == 0,
        "scrape of {addr}: exit {}: {}",
        out.code(),
        out.stderr
    );
    Ok(out.stdout)
}

/// The value of the sample line `name` (with its labels, if any) in `text`.
fn sample(text: &str, name: &str) -> anyhow::Result<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no sample {name} in:\n{text}"))?
        .trim()
        .parse()
        .with_context(|| format!("sample {name}"))
}

/// An edge on `runtime` with `--metrics`, and its metrics address.
fn start_edge(dir: &TempDir, runtime: &str) -> anyhow::Result<(Edge, String)> {
    let mut args = vec![
        "--token",
        TOKEN,
        "--allow-target",
        "127.0.0.0/8",
        "--metrics",
        "127.0.0.1:0",
        "--runtime",
        runtime,
    ];
    if runtime == "glommio" {
        args.extend(["--cores", "1"]);
    }
    let mut edge = Edge::start(dir.path(), &args)?;
    let metrics = edge
        .proc()
        .wait_for_line("veil: metrics listening on ", STARTUP)?;
    Ok((edge, metrics))
}

fn check_runtime(runtime: &str) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new(&format!("metrics-{runtime}"))?;
    let origin = Origin::start(dir.path())?;
    std::fs::write(origin.root().join("hello.txt"), "hello\n")?;
    let body = "y".repeat(100_000);
    std::fs::write(origin.root().join("big.txt"), &body)?;
    let (edge, edge_metrics) = start_edge(&dir, runtime)?;
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &[
            "--pin",
            edge.pin()?,
            "--token",
            TOKEN,
            "--metrics",
            "127.0.0.1:0",
        ],
    )?;
    let before = scrape(&edge_metrics)?;
    let parsed_before = support::parse_with_prometheus_client(&before)?;
    ensure!(
        sample(&before, "veil_tunnels_opened_total")? == 0.0,
        "{before}"
    );
    ensure!(before.contains("# TYPE veil_connections gauge"), "{before}");
    ensure!(before.trim_end().ends_with("# EOF"), "{before}");
    let proxy = format!("socks5h://{}", client.socks());
    for _ in 0..3 {
        let out = curl(&["--proxy", &proxy, &origin.url("hello.txt")], REQUEST)?;
        ensure!(
            out.code() == 0 && out.stdout == "hello\n",
            "curl: {}",
            out.stderr
        );
    }
    let big = curl(&["--proxy", &proxy, &origin.url("big.txt")], REQUEST)?;
    ensure!(
        big.code() == 0 && big.stdout == body,
        "curl: {}",
        big.stderr
    );
    // glommio's cores publish their counters every 500 ms.
    std::thread::sleep(Duration::from_millis(700));
    let after = scrape(&edge_metrics)?;
    let parsed_after = support::parse_with_prometheus_client(&after)?;
    let moved = |name: &str| -> anyhow::Result<f64> {
        let get = |samples: &HashMap<String, f64>| {
            samples
                .get(name)
                .copied()
                .with_context(|| format!("no {name} in {samples:?}"))
        };
        Ok(get(&parsed_after)? - get(&parsed_before)?)
    };
    // The edge sent the four bodies (and their heads) to the client, and read the
    // requests from it.
    let sent = moved("veil_tunnel_sent_bytes_total")?;
    ensure!(
        (100_018.0..120_000.0).contains(&sent),
        "sent {sent}\n{after}"
    );
    ensure!(moved("veil_tunnel_received_bytes_total")? > 0.0, "{after}");
    ensure!(moved("veil_tunnels_opened_total")? >= 4.0, "{after}");
    ensure!(moved("veil_tunnel_setup_seconds_count")? >= 4.0, "{after}");
    ensure!(
        moved("veil_tunnel_first_byte_seconds_count")? >= 4.0,
        "{after}"
    );
    ensure!(
        sample(&after, "veil_tunnels_opened_total")? >= 3.0,
        "{after}"
    );
    ensure!(sample(&after, "veil_connections")? >= 1.0, "{after}");
    ensure!(
        sample(&after, "veil_datagrams_received_total")? > 0.0,
        "{after}"
    );
    ensure!(
        sample(
            &after,
            "veil_udp_payloads_dropped_total{cause=\"queue_full\"}"
        )? == 0.0,
        "{after}"
    );
    ensure!(!after.contains(TOKEN), "a secret in the metrics:\n{after}");
    // The client's side of the same tunnels.
    let client_metrics = client_metrics_addr(&client)?;
    let client_text = scrape(&client_metrics)?;
    ensure!(
        sample(&client_text, "veil_tunnels_opened_total")? >= 3.0,
        "{client_text}"
    );
    // Anything but /metrics is 404.
    let other = curl(
        &[
            "--write-out",
            "%{http_code}",
            &format!("http://{edge_metrics}/"),
        ],
        REQUEST,
    )?;
    ensure!(other.stdout.ends_with("404"), "{}", other.stdout);
    Ok(())
}

fn client_metrics_addr(client: &Client) -> anyhow::Result<String> {
    client.wait_for_line("veil: metrics listening on ")
}

#[test]
fn the_tokio_edge_and_the_client_serve_their_counters() -> anyhow::Result<()> {
    check_runtime("tokio")
}

#[test]
fn the_glommio_edge_serves_its_cores_counters_summed() -> anyhow::Result<()> {
    check_runtime("glommio")
}
