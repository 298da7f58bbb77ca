//! The `veil server` and `veil client` under test, as child processes of the bench: each
//! has its own runtime and its own memory, which `/proc/PID/status` reports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child `veil` process, killed when dropped.
#[derive(Debug)]
pub(crate) struct VeilProcess {
    name: &'static str,
    child: Child,
    /// Kept open so that the child's later prints do not fail.
    stdout: BufReader<ChildStdout>,
}

impl VeilProcess {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size now, in KiB (`VmRSS` of `/proc/PID/status`).
    pub(crate) fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid()).with_context(|| format!("reading the {} process's RSS", self.name))
    }
}

impl Drop for VeilProcess {
    /// Stops the child with SIGTERM (`veil` then shuts down and exits, so that a profiler
    /// running it, such as callgrind, writes its data), or SIGKILL if it lingers.
    fn drop(&mut self) {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if terminated {
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a child may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The children's drain time at shutdown, in milliseconds: the bench leaves nothing open.
const DRAIN_MS: &str = "100";

/// A started edge: its process, UDP address and certificate pin.
pub(crate) struct Edge {
    pub(crate) process: VeilProcess,
    pub(crate) addr: SocketAddr,
    /// Its TCP on-ramp (TLS, HTTP/2).
    pub(crate) tcp_addr: SocketAddr,
    pub(crate) pin: String,
}

/// A started client: its process, SOCKS5 address and, if asked for, its UDP forward.
pub(crate) struct Client {
    pub(crate) process: VeilProcess,
    pub(crate) socks: SocketAddr,
    /// The local address of `--udp-forward`.
    pub(crate) udp_forward: Option<SocketAddr>,
}

/// Where the edge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgePlace {
    /// On loopback, beside everything else.
    Loopback,
    /// In the namespace behind the veth pair of `super::veth` (`--veth`), at this address.
    Veth(std::net::IpAddr),
}

/// Starts `veil server` on a loopback port, allowed to dial loopback targets, with a
/// CONNECT-IP pool (the `decap` off-ramp, which needs no privileges).
pub(crate) fn start_edge(config: Option<&Path>) -> anyhow::Result<Edge> {
    start_edge_in(config, EdgePlace::Loopback)
}

/// [`start_edge`] at `place`: on loopback, or at the edge's end of the veth pair, allowed
/// to dial the bench's targets at the other end.
pub(crate) fn start_edge_in(config: Option<&Path>, place: EdgePlace) -> anyhow::Result<Edge> {
    let (listen, allow) = match place {
        EdgePlace::Loopback => ("127.0.0.1:0".to_owned(), "127.0.0.0/8".to_owned()),
        EdgePlace::Veth(edge) => (format!("{edge}:0"), format!("{}/32", super::veth::HOST)),
    };
    let args = [
        "server",
        "--listen",
        &listen,
        // The TCP on-ramp, for the HTTP/2 paths (`--paths proxied-h2`).
        "--listen-tcp",
        &listen,
        "--allow-target",
        &allow,
        "--drain-timeout-ms",
        DRAIN_MS,
        // CONNECT-IP for `veil bench udp --paths ip`, through the `decap` off-ramp.
        "--ip-pool",
        super::ip_load::POOL,
    ];
    let wrapper = matches!(place, EdgePlace::Veth(_)).then(super::veth::Link::exec_prefix);
    let (process, lines) = spawn_in("edge", config, &args, 3, wrapper)?;
    let addr = field(&lines, "veil: edge listening on ")?.parse()?;
    let pin = field(&lines, "veil: self-signed certificate fingerprint ")?.to_owned();
    let tcp_addr = field(&lines, "veil: edge listening on tcp ")?.parse()?;
    Ok(Edge {
        process,
        addr,
        tcp_addr,
        pin,
    })
}

/// Starts `veil client` for `edge`, pinned to its certificate, SOCKS5 on a loopback port
/// and, with `udp_target`, `--udp-forward` from a loopback port to that target.
pub(crate) fn start_client(
    config: Option<&Path>,
    edge: &Edge,
    udp_target: Option<SocketAddr>,
) -> anyhow::Result<Client> {
    start_client_over(config, edge, udp_target, "h3", &[])
}

/// [`start_client`] over `transport` (`h3`, or `h2` to the edge's TCP on-ramp), with
/// `extra` flags.
pub(crate) fn start_client_over(
    config: Option<&Path>,
    edge: &Edge,
    udp_target: Option<SocketAddr>,
    transport: &str,
    extra: &[&str],
) -> anyhow::Result<Client> {
    let edge_addr = if transport == "h2" {
        edge.tcp_addr.to_string()
    } else {
        edge.addr.to_string()
    };
    let forward = udp_target.map(|target| format!("127.0.0.1:0={target}"));
    let mut args = vec![
        "client",
        "--edge",
        &edge_addr,
        "--pin",
        &edge.pin,
        "--socks",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--drain-timeout-ms",
        DRAIN_MS,
        "--transport",
        transport,
    ];
    if let Some(forward) = &forward {
        args.extend(["--udp-forward", forward]);
    }
    args.extend(extra);
    let banner = if forward.is_some() { 3 } else { 2 };
    let (process, lines) = spawn("client", config, &args, banner)?;
    let socks = field(&lines, "veil: socks5 listening on ")?.parse()?;
    let udp_forward = match forward {
        Some(_) => {
            // `veil: udp forward listening on ADDR to TARGET`
            let rest = field(&lines, "veil: udp forward listening on ")?;
            let addr = rest.split_whitespace().next().unwrap_or_default();
            Some(
                addr.parse()
                    .with_context(|| format!("the UDP forward's address in {rest:?}"))?,
            )
        }
        None => None,
    };
    Ok(Client {
        process,
        socks,
        udp_forward,
    })
}

/// Starts the delay line of a link (`super::delay_line`) on `device`, run by `ip
/// WRAPPER…` in the link's router namespace; returns once the device is up.
pub(crate) fn start_delay_line(
    wrapper: [&str; 3],
    device: &str,
    impairment: super::veth::Impairment,
) -> anyhow::Result<VeilProcess> {
    let delay = impairment.delay_ms.to_string();
    let loss = impairment.loss_percent.to_string();
    let args = [
        "bench",
        "delay-line",
        "--device",
        device,
        "--delay-ms",
        &delay,
        "--loss-percent",
        &loss,
    ];
    let (process, lines) = spawn_in("delay line", None, &args, 1, Some(wrapper))?;
    field(&lines, "delay line ready on ")?;
    Ok(process)
}

/// Runs this executable with `args` and reads its first `banner` stdout lines.
fn spawn(
    name: &'static str,
    config: Option<&Path>,
    args: &[&str],
    banner: usize,
) -> anyhow::Result<(VeilProcess, Vec<String>)> {
    spawn_in(name, config, args, banner, None)
}

/// [`spawn`], run by `ip WRAPPER…` (`netns exec NAMESPACE`) when given: `ip` execs the
/// program, so the pid stays the program's.
fn spawn_in(
    name: &'static str,
    config: Option<&Path>,
    args: &[&str],
    banner: usize,
    wrapper: Option<[&str; 3]>,
) -> anyhow::Result<(VeilProcess, Vec<String>)> {
    let exe = std::env::current_exe().context("finding the veil executable")?;
    let mut command = match wrapper {
        Some(wrapper) => {
            let mut command = Command::new("ip");
            command.args(wrapper).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    if let Some(config) = config {
        command.arg("--config").arg(PathBuf::from(config));
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting veil {}", args.first().unwrap_or(&"")))?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut process = VeilProcess {
        name,
        child,
        stdout: BufReader::new(stdout),
    };
    let mut lines = Vec::with_capacity(banner);
    while lines.len() < banner {
        let mut line = String::new();
        if process.stdout.read_line(&mut line)? == 0 {
            bail!("the {name} process exited before it was ready");
        }
        lines.push(line.trim_end().to_owned());
    }
    Ok((process, lines))
}

/// The rest of the banner line that starts with `prefix`.
fn field<'a>(lines: &'a [String], prefix: &str) -> anyhow::Result<&'a str> {
    lines
        .iter()
        .find_map(|line| line.strip_prefix(prefix))
        .with_context(|| format!("no {prefix:?} line in {lines:?}"))
}

/// `VmRSS` of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS line")
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`, 100 on every Linux
/// architecture this runs on).
const USER_HZ: u64 = 100;

/// CPU time (user + system) process `pid` (`None`: this process) has used so far.
pub(crate) fn cpu_time(pid: Option<u32>) -> anyhow::Result<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let stat = std::fs::read_to_string(path)?;
    let ticks = parse_cpu_ticks(&stat).context("malformed /proc/PID/stat")?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line; the command name (field
/// 2, in parentheses) may hold spaces, so fields are counted after its closing `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// The floor of a proxy on quiche ([`super::floor`]): its two processes and the local
/// side's SOCKS5 address.
pub(crate) struct Floor {
    /// Started second, so dropped first: the far side sees its connection close.
    pub(crate) local: VeilProcess,
    pub(crate) far: VeilProcess,
    pub(crate) socks: SocketAddr,
}

/// Starts the floor's far side, then its local side connected to it (ready once its QUIC
/// connection is established), both reading the bench's `--config`.
pub(crate) fn start_floor(config: Option<&Path>) -> anyhow::Result<Floor> {
    let (far, lines) = spawn_in(
        "floor far",
        config,
        &["bench", "floor", "--side", "far"],
        1,
        None,
    )?;
    let far_addr = field(&lines, "floor far listening on ")?.to_owned();
    let args = ["bench", "floor", "--side", "local", "--far", &far_addr];
    let (local, lines) = spawn_in("floor local", config, &args, 1, None)?;
    let socks = field(&lines, "floor local socks on ")?.parse()?;
    Ok(Floor { local, far, socks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tveil\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(5120));
        assert_eq!(parse_vm_rss("Name:\tveil\n"), None);
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "4242 (tokio rt) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("4242 (veil) S 1"), None);
    }

    #[test]
    fn banner_fields_are_found_by_prefix() {
        let lines = vec![
            "veil: edge listening on 127.0.0.1:4433".to_owned(),
            "veil: self-signed certificate fingerprint sha256:ab".to_owned(),
        ];
        assert_eq!(
            field(&lines, "veil: edge listening on ").expect("present"),
            "127.0.0.1:4433"
        );
        assert!(field(&lines, "veil: socks5 listening on ").is_err());
    }
}
