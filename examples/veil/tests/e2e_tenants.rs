//! Tenants: one `veil server` process with two `[[listener]]` tables, each with its own
//! address, certificate, tokens, egress allowlist and rules. A token of one tenant opens
//! nothing at the other; each tenant's allowlist and rules judge only its own requests; one
//! metrics page labels every sample with its tenant (read by Python's `prometheus_client`),
//! and one audit log names the tenant of each record.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{Client, Origin, TempDir, curl, require_tool, spawn_veil};

const REQUEST: Duration = Duration::from_secs(20);

/// GETs `url` through `client`'s SOCKS5 listener; the curl exit code and body.
fn get(client: &Client, url: &str) -> anyhow::Result<(i32, String)> {
    let proxy = format!("socks5h://{}", client.socks());
    let out = curl(&["--proxy", &proxy, url], REQUEST)?;
    Ok((out.code(), out.stdout))
}

#[test]
fn two_tenants_in_one_process_keep_their_tokens_rules_and_counters_apart() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("tenants")?;
    let origin = Origin::start(dir.path())?;
    fs::write(origin.root().join("hello.txt"), "hello")?;
    let log = dir.join("audit.jsonl");
    let config = dir.join("tenants.toml");
    fs::write(
        &config,
        format!(
            r#"[server]
metrics = "127.0.0.1:0"
audit_log = "{log}"

[[listener]]
name = "blue"
listen = "127.0.0.1:0"
tokens = ["blue:blue-secret"]
allow_targets = ["127.0.0.0/8"]

[[listener]]
name = "green"
listen = "127.0.0.1:0"
tokens = ["green:green-secret"]

[[listener.rule]]
host = ["denied.test"]
action = "deny"
"#,
            log = log.display()
        ),
    )?;
    let config_arg = config.to_str().context("UTF-8 path")?;
    let edge = spawn_veil("edge", "server", &["--config", config_arg], dir.path())?;
    let mut addrs = Vec::new();
    for tenant in ["blue", "green"] {
        let addr: std::net::SocketAddr = edge
            .wait_for_line(
                &format!("veil: listener {tenant}: edge listening on "),
                support::STARTUP,
            )?
            .parse()?;
        let pin = edge.wait_for_line(
            &format!("veil: listener {tenant}: self-signed certificate fingerprint "),
            support::STARTUP,
        )?;
        addrs.push((addr, pin));
    }
    let metrics = edge.wait_for_line("veil: metrics listening on ", support::STARTUP)?;
    let client = |(addr, pin): &(std::net::SocketAddr, String), token: &str| {
        Client::start(dir.path(), *addr, &["--pin", pin, "--token", token])
    };
    let blue = client(&addrs[0], "blue-secret")?;
    let green = client(&addrs[1], "green-secret")?;
    let green_with_blue_token = client(&addrs[1], "blue-secret")?;

    let hello = origin.url("hello.txt");
    let (code, body) = get(&blue, &hello)?;
    ensure!(
        code == 0 && body == "hello",
        "blue: curl exit {code}, {body:?}"
    );
    // Green's allowlist is empty: its loopback origin is refused by default egress policy.
    let (code, _) = get(&green, &hello)?;
    ensure!(
        code != 0,
        "green reached a loopback origin it does not allow"
    );
    // Green's rule, green's tenant only.
    let (code, _) = get(&green, "http://denied.test/")?;
    ensure!(code != 0, "green's deny rule let denied.test through");
    // Blue's token means nothing at green.
    let (code, _) = get(&green_with_blue_token, &hello)?;
    ensure!(code != 0, "green took blue's token");

    check_metrics(&metrics)?;
    check_audit(&log)
}

/// Each tenant's samples under its name, read by Python's `prometheus_client`.
fn check_metrics(metrics: &str) -> anyhow::Result<()> {
    let page = curl(&["--silent", &format!("http://{metrics}/metrics")], REQUEST)?.stdout;
    let samples = support::parse_with_prometheus_client(&page)?;
    let sample = |name: &str| samples.get(name).copied().unwrap_or(0.0);
    ensure!(
        sample("veil_tunnels_opened_total{tenant=blue}") >= 1.0,
        "no blue tunnel counted\n{page}"
    );
    ensure!(
        sample("veil_tunnels_opened_total{tenant=green}") == 0.0,
        "green opened a tunnel\n{page}"
    );
    ensure!(
        sample("veil_refusals_total{error=destination_ip_prohibited,tenant=green}") >= 1.0
            && sample("veil_refusals_total{error=http_request_denied,tenant=green}") >= 1.0,
        "green's refusals not counted under its name\n{page}"
    );
    ensure!(
        sample("veil_auth_failures_total{tenant=green}") >= 1.0
            && sample("veil_auth_failures_total{tenant=blue}") == 0.0,
        "the wrong token not counted at green\n{page}"
    );

    Ok(())
}

/// Blue's finished tunnel and green's refusals, each line with its tenant.
fn check_audit(log: &std::path::Path) -> anyhow::Result<()> {
    // Audit lines: blue's finished tunnel, green's refusals, each with its tenant.
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("not JSON lines:\n{text}"))?;
        let blue_finished = lines
            .iter()
            .any(|l| l["tenant"] == "blue" && l["outcome"] == "finished");
        let green_refused = lines
            .iter()
            .filter(|l| l["tenant"] == "green" && l["outcome"] == "refused")
            .count();
        if blue_finished && green_refused >= 2 {
            ensure!(
                !text.contains("secret"),
                "a secret in the audit log:\n{text}"
            );
            break;
        }
        ensure!(
            Instant::now() < give_up,
            "the audit log lacks a tenant's lines:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn tenants_refuse_shared_credentials_and_duplicate_names() -> anyhow::Result<()> {
    let dir = TempDir::new("tenants-bad")?;
    for (what, text, expected) in [
        (
            "a token in [server]",
            "[server]\ntokens = [\"x\"]\n[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n",
            "in each listener",
        ),
        (
            "two listeners of one name",
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n",
            "two listeners are named",
        ),
        (
            "a misspelt key",
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\ntokes = []\n",
            "unknown field",
        ),
    ] {
        let path = dir.join("bad.toml");
        fs::write(&path, text)?;
        let mut command = std::process::Command::new(support::veil_bin());
        command.args(["config", "check", path.to_str().context("UTF-8 path")?]);
        let out = support::run_bounded(command, REQUEST)?;
        ensure!(
            out.code() != 0 && out.stderr.contains(expected),
            "{what}: exit {}, {}",
            out.code(),
            out.stderr
        );
    }
    Ok(())
}
