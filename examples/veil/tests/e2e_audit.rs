//! `veil server --audit-log FILE`: one JSON line per finished tunnel and per refusal, with
//! the token's name (never its secret), the target, the address dialled, the bytes each
//! way and the outcome, for tunnels curl opens through `veil client`.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{Client, Edge, Origin, TempDir, closed_port, curl, require_tool};

const REQUEST: Duration = Duration::from_secs(20);

#[test]
fn every_tunnel_and_refusal_gets_a_json_line_tokio() -> anyhow::Result<()> {
    check("tokio")
}

#[test]
fn every_tunnel_and_refusal_gets_a_json_line_glommio() -> anyhow::Result<()> {
    check("glommio")
}

fn check(runtime: &str) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new(&format!("audit-{runtime}"))?;
    let origin = Origin::start(dir.path())?;
    let body = "x".repeat(10_000);
    std::fs::write(origin.root().join("ten-k.txt"), &body)?;
    let log = dir.join("audit.jsonl");
    let log_arg = log.to_str().context("path")?;
    let mut args = vec![
        "--token",
        "ops:s3cret",
        "--allow-target",
        "127.0.0.0/8",
        "--audit-log",
        log_arg,
        "--runtime",
        runtime,
    ];
    if runtime == "glommio" {
        args.extend(["--cores", "1"]);
    }
    let edge = Edge::start(dir.path(), &args)?;
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &["--pin", edge.pin()?, "--token", "s3cret"],
    )?;
    let proxy = format!("socks5h://{}", client.socks());
    let out = curl(&["--proxy", &proxy, &origin.url("ten-k.txt")], REQUEST)?;
    ensure!(
        out.code() == 0 && out.stdout == body,
        "curl: {}",
        out.stderr
    );
    let closed = closed_port()?;
    let refused = curl(&["--proxy", &proxy, &format!("http://{closed}/")], REQUEST)?;
    ensure!(refused.code() != 0, "a closed port answered");

    // The lines are written as the tunnels end: wait for both.
    let give_up = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("not JSON lines:\n{text}"))?;
        if lines.len() >= 2 || Instant::now() > give_up {
            ensure!(
                !text.contains("s3cret"),
                "a secret in the audit log:\n{text}"
            );
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let finished = lines
        .iter()
        .find(|line| line["outcome"] == "finished")
        .with_context(|| format!("no finished tunnel in {lines:?}"))?;
    ensure!(finished["token"] == "ops", "{finished}");
    ensure!(finished["kind"] == "tcp", "{finished}");
    ensure!(
        finished["target"] == origin.addr().to_string(),
        "{finished}"
    );
    ensure!(
        finished["dialed"] == origin.addr().to_string(),
        "{finished}"
    );
    ensure!(
        finished["bytes_to_client"].as_u64() >= Some(10_000),
        "{finished}"
    );
    ensure!(
        finished["bytes_from_client"].as_u64() > Some(0),
        "{finished}"
    );
    ensure!(
        finished["time_unix_ms"].as_u64() > Some(1_600_000_000_000),
        "{finished}"
    );
    let refusal = lines
        .iter()
        .find(|line| line["outcome"] == "refused")
        .with_context(|| format!("no refusal in {lines:?}"))?;
    ensure!(refusal["status"] == 502, "{refusal}");
    ensure!(refusal["proxy_error"] == "connection_refused", "{refusal}");
    ensure!(refusal["target"] == closed.to_string(), "{refusal}");
    Ok(())
}
