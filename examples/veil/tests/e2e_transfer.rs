//! TCP over HTTP/3 CONNECT end to end with real programs on loopback: curl → `veil client`
//! (SOCKS5 or HTTP proxy) → one QUIC connection → `veil server` → nginx. Bytes are checked
//! by SHA-256 at both ends, both ways.

mod support;

use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Client, Edge, Origin, TOKEN, TempDir, curl, require_tool, sha256_file, timed};

/// 100 MiB each way.
const BIG: usize = 100 << 20;
/// Bound of one 100 MiB transfer in a debug build on a busy 2-core machine (they take
/// 5 to 15 s alone).
const BIG_TRANSFER: Duration = Duration::from_secs(180);

/// nginx, an edge that may reach loopback, and a client that pins it. Fields drop in
/// order: the programs stop before their directory goes.
struct Rig {
    client: Client,
    edge: Edge,
    origin: Origin,
    dir: TempDir,
}

impl Rig {
    fn start(label: &str) -> anyhow::Result<Self> {
        require_tool("curl", "curl")?;
        let dir = TempDir::new(label)?;
        let origin = Origin::start(dir.path())?;
        let edge = Edge::start(
            dir.path(),
            &["--token", TOKEN, "--allow-target", "127.0.0.0/8"],
        )?;
        let client = Client::of(dir.path(), &edge, TOKEN)?;
        Ok(Self {
            client,
            edge,
            origin,
            dir,
        })
    }

    fn diagnostics(&self) -> String {
        format!("{}\n{}", self.edge.diagnostics(), self.client.diagnostics())
    }

    /// Downloads a 100 MiB file nginx serves and uploads (PUT) another 100 MiB file to
    /// it, through curl with `proxy` options; both arrive with the SHA-256 they left with.
    fn download_and_upload(&self, proxy: &[&str]) -> anyhow::Result<()> {
        let served = self.origin.root().join("big.bin");
        let served_sum = support::write_random_file(&served, BIG, 0x5eed_0001)?;
        let downloaded = self.dir.join("downloaded.bin");
        let output = timed("100 MiB download", || {
            curl(
                &[
                    proxy,
                    &[
                        "--write-out",
                        "%{http_code}",
                        "--output",
                        path_str(&downloaded)?,
                        &self.origin.url("big.bin"),
                    ],
                ]
                .concat(),
                BIG_TRANSFER,
            )
        })?;
        ensure!(
            output.status.success() && output.stdout == "200",
            "download through {proxy:?}: curl exit {}, status {:?}: {}\n{}",
            output.code(),
            output.stdout,
            output.stderr,
            self.diagnostics()
        );
        ensure!(
            sha256_file(&downloaded)? == served_sum,
            "the downloaded file differs from the served one"
        );

        let sent = self.dir.join("upload.bin");
        let sent_sum = support::write_random_file(&sent, BIG, 0x5eed_0002)?;
        let output = timed("100 MiB upload", || {
            curl(
                &[
                    proxy,
                    &[
                        "--write-out",
                        "%{http_code}",
                        "--upload-file",
                        path_str(&sent)?,
                        &self.origin.url("upload/received.bin"),
                    ],
                ]
                .concat(),
                BIG_TRANSFER,
            )
        })?;
        ensure!(
            output.status.success() && output.stdout == "201",
            "upload through {proxy:?}: curl exit {}, status {:?}: {}\n{}",
            output.code(),
            output.stdout,
            output.stderr,
            self.diagnostics()
        );
        let received = self.origin.root().join("upload/received.bin");
        ensure!(
            sha256_file(&received)? == sent_sum,
            "the file nginx received differs from the one sent"
        );
        Ok(())
    }
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().context("a temp path that is not UTF-8")
}

#[test]
fn socks5_hostname_carries_100_mib_down_and_up_intact() -> anyhow::Result<()> {
    let rig = Rig::start("socks-big")?;
    let socks = rig.client.socks().to_string();
    rig.download_and_upload(&["--socks5-hostname", &socks])
}

#[test]
fn http_proxy_connect_tunnel_carries_100_mib_down_and_up_intact() -> anyhow::Result<()> {
    let rig = Rig::start("connect-big")?;
    let proxy = rig.client.http_proxy();
    rig.download_and_upload(&["--proxy", &proxy, "--proxytunnel"])
}

#[test]
fn http_proxy_absolute_form_carries_100_mib_down_and_up_intact() -> anyhow::Result<()> {
    let rig = Rig::start("forward-big")?;
    let proxy = rig.client.http_proxy();
    rig.download_and_upload(&["--proxy", &proxy])
}

/// 100 transfers through SOCKS5 and 100 through HTTP CONNECT at once, each slowed by nginx
/// to 32 KiB/s (4 s each) so that they overlap: all arrive intact, nginx saw them open
/// together, and the edge saw one QUIC connection.
#[test]
fn two_hundred_concurrent_transfers_share_one_quic_connection() -> anyhow::Result<()> {
    const EACH: usize = 100;
    const SIZE: usize = 128 << 10;
    let rig = Rig::start("concurrent")?;
    let served_sum =
        support::write_random_file(&rig.origin.root().join("slow/file.bin"), SIZE, 0x5eed_0003)?;
    let socks = rig.client.socks().to_string();
    let proxy = rig.client.http_proxy();
    let groups: [(&str, Vec<&str>); 2] = [
        ("socks", vec!["--socks5-hostname", &socks]),
        ("connect", vec!["--proxy", &proxy, "--proxytunnel"]),
    ];
    let mut plans = Vec::new();
    for (name, proxy_args) in &groups {
        let out_dir = rig.dir.join(name);
        std::fs::create_dir_all(&out_dir)?;
        let mut args: Vec<String> = ["--parallel", "--parallel-immediate", "--parallel-max"]
            .iter()
            .map(ToString::to_string)
            .chain([EACH.to_string()])
            .chain(proxy_args.iter().map(ToString::to_string))
            .chain(["--write-out".into(), "%{http_code}\\n".into()])
            .collect();
        for i in 0..EACH {
            args.push("--output".into());
            args.push(path_str(&out_dir.join(i.to_string()))?.to_owned());
            args.push(rig.origin.url(&format!("slow/file.bin?{name}={i}")));
        }
        plans.push((out_dir, args));
    }
    let outputs = timed("200 concurrent transfers", || {
        thread::scope(|scope| {
            let runs: Vec<_> = plans
                .iter()
                .map(|(_, args)| {
                    scope.spawn(move || {
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        curl(&args, Duration::from_secs(120))
                    })
                })
                .collect();
            runs.into_iter()
                .map(|run| {
                    run.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("curl thread")))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
    })?;
    for ((out_dir, _), output) in plans.iter().zip(&outputs) {
        let ok = output.stdout.lines().filter(|l| *l == "200").count();
        ensure!(
            output.status.success() && ok == EACH,
            "{}: curl exit {}, {ok} of {EACH} answered 200: {}\n{}",
            out_dir.display(),
            output.code(),
            output.stderr,
            rig.diagnostics()
        );
        for i in 0..EACH {
            let file = out_dir.join(i.to_string());
            ensure!(
                sha256_file(&file)? == served_sum,
                "{} differs from the served file",
                file.display()
            );
        }
    }
    let most_open = rig
        .origin
        .access_log()
        .lines()
        .filter(|line| line.contains("/slow/"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    eprintln!("e2e: nginx had at most {most_open} connections open at once");
    ensure!(
        most_open >= 2 * EACH,
        "the transfers did not overlap: nginx had at most {most_open} connections open"
    );
    ensure!(
        rig.edge.connections_established() == 1,
        "the edge saw {} QUIC connections, not 1\n{}",
        rig.edge.connections_established(),
        rig.diagnostics()
    );
    Ok(())
}
