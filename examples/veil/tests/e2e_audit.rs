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

/// An edge on `runtime` writing its audit log to `log` (token `ops:s3cret`, loopback
/// allowed, `extra` flags), and a client of it.
fn audited(
    dir: &TempDir,
    runtime: &str,
    log: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<(Edge, Client)> {
    let mut args = vec![
        "--token",
        "ops:s3cret",
        "--allow-target",
        "127.0.0.0/8",
        "--audit-log",
        log.to_str().context("path")?,
        "--runtime",
        runtime,
    ];
    if runtime == "glommio" {
        args.extend(["--cores", "1"]);
    }
    args.extend(extra);
    let edge = Edge::start(dir.path(), &args)?;
    let client = Client::start(
        dir.path(),
        edge.addr(),
        &["--pin", edge.pin()?, "--token", "s3cret"],
    )?;
    Ok((edge, client))
}

fn check(runtime: &str) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new(&format!("audit-{runtime}"))?;
    let origin = Origin::start(dir.path())?;
    let body = "x".repeat(10_000);
    std::fs::write(origin.root().join("ten-k.txt"), &body)?;
    let log = dir.join("audit.jsonl");
    let (_edge, client) = audited(&dir, runtime, &log, &[])?;
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

#[test]
fn a_tunnel_past_its_maximum_duration_is_cut_and_recorded_tokio() -> anyhow::Result<()> {
    cut_at_max_duration("tokio")
}

#[test]
fn a_tunnel_past_its_maximum_duration_is_cut_and_recorded_glommio() -> anyhow::Result<()> {
    cut_at_max_duration("glommio")
}

/// `[quic] tunnel_max_duration_ms`: a download slower than the limit is cut at it (curl
/// sees a reset, never a complete file) and the audit line says `max_duration`.
fn cut_at_max_duration(runtime: &str) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new(&format!("max-duration-{runtime}"))?;
    let origin = Origin::start(dir.path())?;
    // 256 KiB at nginx's 32 KiB/s for `/slow/`: about 8 s, well past the 1.5 s limit.
    let served = support::write_random_file(&origin.root().join("slow/cut.bin"), 256 << 10, 3)?;
    let log = dir.join("audit.jsonl");
    let config = dir.join("edge.toml");
    std::fs::write(&config, "[quic]\ntunnel_max_duration_ms = 1500\n")?;
    let config_arg = config.to_str().context("path")?;
    let (_edge, client) = audited(&dir, runtime, &log, &["--config", config_arg])?;
    let proxy = format!("socks5h://{}", client.socks());
    let out_path = dir.join("slow.out");
    let started = Instant::now();
    let out = curl(
        &[
            "--fail",
            "--proxy",
            &proxy,
            "--output",
            out_path.to_str().context("path")?,
            &origin.url("slow/cut.bin"),
        ],
        REQUEST,
    )?;
    let took = started.elapsed();
    ensure!(
        out.code() != 0 && support::sha256_file(&out_path).ok().as_deref() != Some(&served),
        "the download outlived the limit: curl exit {} after {took:?}",
        out.code()
    );
    ensure!(
        took < Duration::from_secs(4),
        "cut after {took:?}, not at the 1.5 s limit"
    );
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("\"outcome\":\"max_duration\"") {
            break;
        }
        ensure!(
            Instant::now() < give_up,
            "no max_duration line in the audit log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
