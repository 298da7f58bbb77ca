//! Network namespaces for the tests that need a network of their own rather than loopback
//! (CONNECT-IP through TUN devices): namespaces made with `ip netns add` and removed, with
//! every process still in them, when their guard drops; veth pairs between them; programs
//! (`veil`, nginx, dnsmasq, ping, dig, curl) run inside with `ip netns exec`.
//!
//! `ip netns exec` execs the program after joining the namespace, so a [`Proc`] started
//! through it holds the program's own pid and kills the program itself.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::{Edge, Output, Proc, STARTUP, require_tool, run_bounded, veil_command};

/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why tests in network namespaces cannot run on this machine (not root, no
/// `/dev/net/tun`), or `None` when they can. Any other obstacle is a failure, not a skip.
pub(crate) fn skip_reason() -> Option<&'static str> {
    if effective_uid() != Some(0) {
        return Some("needs root (network namespaces, TUN devices)");
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing");
    }
    None
}

/// The effective uid of this process, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let ids = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    ids.split_whitespace().nth(1)?.parse().ok()
}

/// One network namespace made by [`Namespaces::create`].
#[derive(Debug)]
pub(crate) struct NetNs {
    name: String,
}

impl NetNs {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A UDP socket bound to `addr` inside this namespace (a socket stays in the
    /// namespace it was made in, whichever thread uses it): made on a thread of its own
    /// that enters the namespace first, so that the test's threads stay where they are.
    pub(crate) fn bind_udp(&self, addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || -> anyhow::Result<std::net::UdpSocket> {
            let namespace = fs::File::open(&path).with_context(|| format!("opening {path}"))?;
            nix::sched::setns(namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {path}"))?;
            std::net::UdpSocket::bind(addr).with_context(|| format!("binding {addr} in {path}"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread binding {addr} panicked"))?
    }

    /// `ip netns exec NAME PROGRAM`: PROGRAM run inside this namespace.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// `command` (program, arguments, environment) run inside this namespace instead.
    pub(crate) fn wrap(&self, command: &Command) -> Command {
        let mut inside = self.command(command.get_program());
        inside.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => inside.env(key, value),
                None => inside.env_remove(key),
            };
        }
        inside
    }

    /// Runs PROGRAM ARGS inside, to completion, killed after `timeout` (an error).
    pub(crate) fn run(
        &self,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let mut command = self.command(program);
        command.args(args);
        run_bounded(command, timeout)
    }

    /// `ip -n NAME ARGS`, which must succeed; its stdout.
    pub(crate) fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new("ip");
        command.args(["-n", &self.name]).args(args);
        let output = run_bounded(command, IP_TIMEOUT)?;
        ensure!(
            output.status.success(),
            "ip -n {} {}: exit {}: {}",
            self.name,
            args.join(" "),
            output.code(),
            output.stderr.trim()
        );
        Ok(output.stdout)
    }

    /// Sets the sysctl `key` (such as `net.ipv4.ip_forward`) of this namespace, through
    /// `/proc/sys`, which shows the namespace of the process that writes it.
    pub(crate) fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let output = self.run(
            "sh",
            &["-c", "echo \"$2\" > \"$1\"", "sh", &path, value],
            IP_TIMEOUT,
        )?;
        ensure!(
            output.status.success(),
            "sysctl {key}={value} in {}: {}",
            self.name,
            output.stderr.trim()
        );
        Ok(())
    }

    /// Gives the programs run in this namespace an `/etc/hosts` of their own (`ip netns
    /// exec` mounts `/etc/netns/NAME/hosts` over it): `lines` as the file's text. Removed
    /// with the namespace.
    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub(crate) fn hosts(&self, lines: &str) -> anyhow::Result<()> {
        let dir = self.etc_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("hosts"), lines)?;
        Ok(())
    }

    /// `/etc/netns/NAME`, the files `ip netns exec` puts over `/etc`'s.
    fn etc_dir(&self) -> std::path::PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// Its interfaces, addresses and routes (both families), for error messages.
    pub(crate) fn dump(&self) -> String {
        let mut text = format!("--- namespace {}:\n", self.name);
        for args in [
            &["-brief", "address"][..],
            &["-4", "route"][..],
            &["-6", "route"][..],
        ] {
            match self.ip(args) {
                Ok(out) => text.push_str(&out),
                Err(e) => {
                    let _ = writeln!(text, "{e:#}");
                }
            }
        }
        text
    }

    /// The pids of the processes in this namespace.
    fn pids(&self) -> Vec<String> {
        let mut command = Command::new("ip");
        command.args(["netns", "pids", &self.name]);
        run_bounded(command, IP_TIMEOUT)
            .map(|out| out.stdout.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// Network namespaces that exist while this guard does: dropping it kills what still runs
/// in them (SIGKILL, by pid) and deletes them, with their interfaces (a veth pair goes
/// with either end, a TUN device with its process).
#[derive(Debug)]
pub(crate) struct Namespaces {
    all: Vec<NetNs>,
}

impl Namespaces {
    /// One namespace per label, named `veil-LABEL-PID-N` (unique among the tests running in
    /// this process and on this machine), each with `lo` up and IPv6 duplicate address
    /// detection off (addresses are usable at once, never `tentative`).
    pub(crate) fn create(labels: &[&str]) -> anyhow::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        require_tool("ip", "iproute2")?;
        let mut namespaces = Self { all: Vec::new() };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        for label in labels {
            let name = format!("veil-{label}-{}-{n}", std::process::id());
            // A leftover of a killed run with the same pid; nothing to do when there is none.
            let mut delete = Command::new("ip");
            delete.args(["netns", "del", &name]);
            let _ = run_bounded(delete, IP_TIMEOUT);
            let mut add = Command::new("ip");
            add.args(["netns", "add", &name]);
            let output = run_bounded(add, IP_TIMEOUT)?;
            ensure!(
                output.status.success(),
                "ip netns add {name}: {}",
                output.stderr.trim()
            );
            // In the guard from here on: deleted on drop even if what follows fails.
            namespaces.all.push(NetNs { name });
            let ns = namespaces.all.last().context("just pushed")?;
            ns.ip(&["link", "set", "lo", "up"])?;
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0")?;
        }
        Ok(namespaces)
    }

    /// The namespace made for `labels[index]`.
    pub(crate) fn get(&self, index: usize) -> anyhow::Result<&NetNs> {
        self.all.get(index).context("no such namespace")
    }

    /// Every namespace's interfaces, addresses and routes.
    pub(crate) fn dump(&self) -> String {
        self.all.iter().map(NetNs::dump).collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.all {
            let pids = ns.pids();
            if !pids.is_empty() {
                let mut kill = Command::new("sh");
                kill.args(["-c", "kill -KILL \"$@\"", "sh"]).args(&pids);
                let _ = run_bounded(kill, IP_TIMEOUT);
            }
            let mut delete = Command::new("ip");
            delete.args(["netns", "del", &ns.name]);
            let _ = run_bounded(delete, IP_TIMEOUT);
            let _ = std::fs::remove_dir_all(ns.etc_dir());
        }
    }
}

/// A veth pair: `a_name` in `a`, `b_name` in `b`, both MTU 1500 and up.
pub(crate) fn veth(a: &NetNs, a_name: &str, b: &NetNs, b_name: &str) -> anyhow::Result<()> {
    a.ip(&[
        "link", "add", a_name, "mtu", "1500", "type", "veth", "peer", "name", b_name, "mtu",
        "1500", "netns", &b.name,
    ])?;
    a.ip(&["link", "set", a_name, "up"])?;
    b.ip(&["link", "set", b_name, "up"])?;
    Ok(())
}

/// Three namespaces in a row, client ── edge ── target (indices 0, 1, 2), on two veth
/// pairs at MTU 1500: the client at `NEAR.2` and the edge at `NEAR.1` (one /24, devices
/// `to-edge` and `to-client`), the edge at `FAR.1` and the target at `FAR.2` (`to-target`,
/// `to-edge`); the edge forwards between them and the target routes back through it.
/// `NEAR` and `FAR` are the first three octets of each /24, such as `10.110.0`.
pub(crate) fn client_edge_target(near: &str, far: &str) -> anyhow::Result<Namespaces> {
    let namespaces = Namespaces::create(&["c", "e", "t"])?;
    let (client_ns, edge_ns, target_ns) =
        (namespaces.get(0)?, namespaces.get(1)?, namespaces.get(2)?);
    veth(client_ns, "to-edge", edge_ns, "to-client")?;
    client_ns.ip(&["address", "add", &format!("{near}.2/24"), "dev", "to-edge"])?;
    edge_ns.ip(&[
        "address",
        "add",
        &format!("{near}.1/24"),
        "dev",
        "to-client",
    ])?;
    veth(edge_ns, "to-target", target_ns, "to-edge")?;
    edge_ns.ip(&["address", "add", &format!("{far}.1/24"), "dev", "to-target"])?;
    target_ns.ip(&["address", "add", &format!("{far}.2/24"), "dev", "to-edge"])?;
    target_ns.ip(&[
        "route",
        "add",
        &format!("{near}.0/24"),
        "via",
        &format!("{far}.1"),
    ])?;
    edge_ns.sysctl("net.ipv4.ip_forward", "1")?;
    Ok(namespaces)
}

/// What a failure of a test in namespaces shows: the edge's and the client's output, and
/// every namespace's addresses and routes.
pub(crate) fn context(edge: &Edge, client: &Proc, namespaces: &Namespaces) -> String {
    format!(
        "{}\n{}\n{}",
        edge.diagnostics(),
        client.diagnostics(),
        namespaces.dump()
    )
}

/// Waits for a stdout line of `proc` that contains `marker`; returns what follows it,
/// trimmed.
pub(crate) fn wait_for_text(
    proc: &Proc,
    marker: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match proc.lines.recv_timeout(left) {
            Ok(line) => {
                if let Some((_, rest)) = line.split_once(marker) {
                    return Ok(rest.trim().to_owned());
                }
            }
            Err(RecvTimeoutError::Timeout) => bail!(
                "{} printed no line with `{marker}` within {timeout:?}\n{}",
                proc.name,
                proc.diagnostics()
            ),
            Err(RecvTimeoutError::Disconnected) => bail!(
                "{} closed its stdout (exited?) before printing `{marker}`\n{}",
                proc.name,
                proc.diagnostics()
            ),
        }
    }
}

/// `veil server ARGS` inside `ns` (ARGS should name `--listen` on one of its addresses);
/// waits for its address and, without `--cert`, its certificate's fingerprint.
pub(crate) fn start_edge(ns: &NetNs, log_dir: &Path, args: &[&str]) -> anyhow::Result<Edge> {
    let mut command = veil_command("server");
    command.args(args);
    let proc = Proc::spawn("edge", ns.wrap(&command), log_dir)?;
    let addr = proc
        .wait_for_line("veil: edge listening on ", STARTUP)?
        .parse()
        .context("the edge's address")?;
    let pin = if args.contains(&"--cert") {
        None
    } else {
        Some(proc.wait_for_line("veil: self-signed certificate fingerprint ", STARTUP)?)
    };
    Ok(Edge { proc, addr, pin })
}

/// `veil client ARGS` inside `ns`, as a bare [`Proc`] named `client`: what it prints
/// depends on ARGS (wait with [`wait_for_text`]).
pub(crate) fn start_client(ns: &NetNs, log_dir: &Path, args: &[&str]) -> anyhow::Result<Proc> {
    let mut command = veil_command("client");
    command.args(args);
    Proc::spawn("client", ns.wrap(&command), log_dir)
}

/// dnsmasq inside `ns` on `listen` port 53 (UDP and TCP), answering only from `records`
/// (dnsmasq options such as `--address=/name/ip`): no upstream, hosts file or config
/// file; it logs every query to its stderr.
pub(crate) fn start_dnsmasq(
    ns: &NetNs,
    log_dir: &Path,
    listen: &str,
    records: &[&str],
) -> anyhow::Result<Proc> {
    let dnsmasq = require_tool("dnsmasq", "dnsmasq")?;
    let mut command = ns.command(dnsmasq);
    command
        .args(["--keep-in-foreground", "--log-facility=-", "--log-queries"])
        .args(["--conf-file=/dev/null", "--pid-file=", "--user=root"])
        .args([
            "--port",
            "53",
            "--listen-address",
            listen,
            "--bind-interfaces",
        ])
        .args(["--no-resolv", "--no-hosts"])
        .args(records);
    let mut proc = Proc::spawn("dnsmasq", command, log_dir)?;
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Some(status) = proc.exited() {
            bail!("dnsmasq exited with {status}\n{}", proc.diagnostics());
        }
        if proc.stderr().contains("started, version") {
            return Ok(proc);
        }
        ensure!(
            Instant::now() < deadline,
            "dnsmasq did not start within {STARTUP:?}\n{}",
            proc.diagnostics()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// nginx inside `ns` serving `root` on each of `listen` (`ADDR:PORT`, IPv6 in brackets),
/// from the prefix `dir` (configuration, pid and logs there); ready once `probe_url`
/// answers 200 to curl inside `ns`.
pub(crate) fn start_nginx(
    ns: &NetNs,
    dir: &Path,
    root: &Path,
    listen: &[&str],
    probe_url: &str,
) -> anyhow::Result<Proc> {
    let nginx = require_tool("nginx", "nginx")?;
    fs::create_dir_all(dir.join("nginx-tmp"))?;
    let conf = dir.join("nginx.conf");
    fs::write(&conf, nginx_conf(dir, root, listen))?;
    let error_log = dir.join("nginx-error.log");
    let mut command = ns.command(nginx);
    command
        .arg("-e")
        .arg(&error_log)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf);
    let mut proc = Proc::spawn("nginx", command, dir)?;
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Some(status) = proc.exited() {
            bail!(
                "nginx exited with {status}\n{}\n{}",
                proc.diagnostics(),
                fs::read_to_string(&error_log).unwrap_or_default()
            );
        }
        let probe = curl_in(
            ns,
            &[
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
                probe_url,
            ],
            Duration::from_secs(2),
        )?;
        if probe.stdout == "200" {
            return Ok(proc);
        }
        ensure!(
            Instant::now() < deadline,
            "nginx did not answer {probe_url} within {STARTUP:?}: {}\n{}",
            probe.stderr.trim(),
            fs::read_to_string(&error_log).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn nginx_conf(prefix: &Path, root: &Path, listen: &[&str]) -> String {
    let p = prefix.display();
    let mut listens = String::new();
    for addr in listen {
        let _ = writeln!(listens, "    listen {addr};");
    }
    // `user root`: started as root, the worker keeps the rights to read the test's files.
    format!(
        "daemon off;\n\
         master_process off;\n\
         user root;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/nginx-error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
           access_log {p}/nginx-access.log;\n\
           client_body_temp_path {p}/nginx-tmp/body;\n\
           proxy_temp_path {p}/nginx-tmp/proxy;\n\
           fastcgi_temp_path {p}/nginx-tmp/fastcgi;\n\
           uwsgi_temp_path {p}/nginx-tmp/uwsgi;\n\
           scgi_temp_path {p}/nginx-tmp/scgi;\n\
           keepalive_timeout 5s;\n\
           server {{\n\
         {listens}\
             root {root};\n\
           }}\n\
         }}\n",
        root = root.display()
    )
}

/// curl inside `ns` with ARGS (plus `--silent --show-error --max-time`, and no proxy from
/// the environment), bounded by `timeout`.
pub(crate) fn curl_in(ns: &NetNs, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    let curl = require_tool("curl", "curl")?;
    let mut command = ns.command(curl);
    command
        .args(["--silent", "--show-error", "--noproxy", "*"])
        .args(["--max-time", &timeout.as_secs().max(1).to_string()])
        .args(args);
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        command.env_remove(var);
    }
    run_bounded(command, timeout + Duration::from_secs(10))
}
