//! Host conformance: the same scenarios against every edge host, since the engine decides
//! and hosts only move bytes, so every host must behave the same:
//!
//! - `tokio`: `veil server` (veil-tokio);
//! - `glommio`: `veil server --runtime glommio` (veil-glommio, `io_uring`, thread-per-core);
//! - `c`: `bindings/c/examples/edge.c`, compiled against libveil.a by the C tests' support
//!   (`bindings/c/tests/support`, included below), once per test process.
//!
//! Each scenario is a function of an [`EdgeKind`]; `on_every_host!` makes one test per
//! scenario and host (`tcp_transfer::c`, `drain_on_sigterm::glommio`, ...), so a failure
//! names both. The scenarios:
//!
//! 1. `tcp_transfer`: curl → `veil client` → edge → nginx, 4 MiB down (SOCKS5 and HTTP
//!    CONNECT) and up, SHA-256 equal.
//! 2. `udp`: `veil client --udp-forward` → edge → a UDP echo; on the C edge, which serves
//!    only TCP, aioquic's CONNECT-UDP gets 501 at once and the forward gets nothing through.
//! 3. `refusals`: a closed port (SOCKS5 reply 5, 502 `connection_refused`), a name that does
//!    not resolve (4, 502 `dns_error`), loopback without allow (2, 403
//!    `destination_ip_prohibited`, never reached).
//! 4. `unanswered_request`: a target that never answers a SYN (a loopback listener whose
//!    accept queue is full: Linux drops the SYNs), a 1 s request timeout and a 20 s connect
//!    timeout: 504 `connection_timeout` (SOCKS5 reply 6) after about 1 s; the engine tells
//!    the host (`TunnelClosed`, `RequestTimeout`) and the host stops the dial, so when the
//!    target answers at last, no dial reaches it (any that did is closed at once).
//! 5. `drain_on_sigterm`: a slow download through the edge; SIGTERM; the download completes
//!    whole and the edge exits 0 before its drain timeout.
//! 6. `linger_after_stop`: the application resets after its request; the edge writes the
//!    whole request and FIN to the target, lingers while the target talks, and closes once
//!    it is quiet (as `e2e_linger`).
//! 7. `aioquic_connect`: aioquic's HTTP/3 CONNECT echoes 4 MiB and the FIN.
//! 8. `http2_connect`: the TCP on-ramp (TLS, HTTP/2): Python `h2`'s CONNECT echoes 4 MiB
//!    both ways with `END_STREAM`, twice on one connection, and a forbidden target is 403
//!    `destination_ip_prohibited`, as over HTTP/3.
//! 9. `http1_connect`: the TCP on-ramp with HTTP/1.1: Python's `ssl` echoes 64 MiB through a
//!    CONNECT whose writes must stall while it does not read (the host stops reading its
//!    socket when the engine says so: HTTP/1.1 has no flow control), a forbidden target is
//!    403 and closed; curl fetches 4 MiB with the edge as its HTTPS proxy.

mod support;

// The C edge is built with the C tests' own support (libveil installed, `cc`).
#[path = "../../../bindings/c/tests/support/mod.rs"]
mod c_support;

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use support::{
    Canary, Client, Echo, Edge, Origin, Output, Proc, STARTUP, TOKEN, TempDir, UdpEcho,
    Unanswering, curl, require_aioquic, require_tool, run_bounded, sha256_file, wait_until,
    write_random_file,
};

/// Bound of one transfer or refused request on a busy machine (debug build).
const REQUEST: Duration = Duration::from_secs(60);
/// Bound of one aioquic script run (its own steps time out after 20 s each).
const SCRIPT: Duration = Duration::from_secs(120);

/// The edge hosts under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeKind {
    Tokio,
    Glommio,
    C,
}

/// What a scenario asks of the edge, spelled by each host in its own flags.
#[derive(Clone, Copy, Debug, Default)]
struct EdgeArgs<'a> {
    /// A prefix the edge may reach although egress policy forbids it.
    allow: Option<&'a str>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    /// Also listen on TCP (the on-ramp for HTTP/2).
    tcp: bool,
}

impl EdgeArgs<'_> {
    /// Loopback allowed.
    fn loopback() -> Self {
        Self {
            allow: Some("127.0.0.0/8"),
            ..Self::default()
        }
    }
}

/// A running edge, whatever its host: its address, its certificate pin, its process.
struct Host {
    kind: EdgeKind,
    running: Running,
    addr: SocketAddr,
    /// The TCP on-ramp's address, when asked for.
    tcp_addr: Option<SocketAddr>,
    pin: String,
}

enum Running {
    Veil(Edge),
    C(Proc),
}

/// The C edge, compiled once per test process into the cargo output directory.
fn c_edge_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let installed = c_support::Installed::new();
        let binary = c_support::build_dir().join("veil-c-edge-conformance");
        installed.compile(
            &c_support::crate_dir().join("examples/edge.c"),
            &binary,
            &[],
        );
        binary
    })
}

impl EdgeKind {
    /// Starts this host on an ephemeral loopback port with the test token and `args`.
    fn start(self, dir: &TempDir, wanted: EdgeArgs<'_>) -> anyhow::Result<Host> {
        let ms = |value: Option<u64>| value.map(|v| v.to_string());
        let (connect, request, drain) = (
            ms(wanted.connect_timeout_ms),
            ms(wanted.request_timeout_ms),
            ms(wanted.drain_timeout_ms),
        );
        let flags = [
            ("--connect-timeout-ms", connect.as_deref()),
            ("--request-timeout-ms", request.as_deref()),
            ("--drain-timeout-ms", drain.as_deref()),
        ];
        let mut argv: Vec<String> = vec!["--token".into(), TOKEN.into()];
        if wanted.tcp {
            argv.extend(["--listen-tcp".into(), "127.0.0.1:0".into()]);
        }
        for (flag, value) in flags {
            if let Some(value) = value {
                argv.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        match self {
            Self::Tokio | Self::Glommio => {
                if let Some(allow) = wanted.allow {
                    argv.extend(["--allow-target".to_owned(), allow.to_owned()]);
                }
                if self == Self::Glommio {
                    // Two cores where the machine has them: tunnels may live on either.
                    let cores = thread::available_parallelism().map_or(1, |n| n.get().min(2));
                    argv.extend(["--runtime".into(), "glommio".into()]);
                    argv.extend(["--cores".into(), cores.to_string()]);
                }
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let mut edge = Edge::start(dir.path(), &argv)?;
                let (addr, pin) = (edge.addr(), edge.pin()?.to_owned());
                let tcp_addr = if wanted.tcp {
                    let line = edge
                        .proc()
                        .wait_for_line("veil: edge listening on tcp ", STARTUP)?;
                    Some(line.parse().context("the edge's TCP address")?)
                } else {
                    None
                };
                Ok(Host {
                    kind: self,
                    running: Running::Veil(edge),
                    addr,
                    tcp_addr,
                    pin,
                })
            }
            Self::C => {
                if let Some(allow) = wanted.allow {
                    argv.extend(["--allow".to_owned(), allow.to_owned()]);
                }
                let mut command = Command::new(c_edge_binary());
                command.args(&argv);
                let proc = Proc::spawn("veil-c-edge", command, dir.path())?;
                let pin = proc.wait_for_line("veil-c-edge: fingerprint ", STARTUP)?;
                let addr = proc
                    .wait_for_line("veil-c-edge: listening on ", STARTUP)?
                    .parse()
                    .context("the C edge's address")?;
                let tcp_addr = if wanted.tcp {
                    let line = proc.wait_for_line("veil-c-edge: listening on tcp ", STARTUP)?;
                    Some(line.parse().context("the C edge's TCP address")?)
                } else {
                    None
                };
                Ok(Host {
                    kind: self,
                    running: Running::C(proc),
                    addr,
                    tcp_addr,
                    pin,
                })
            }
        }
    }
}

impl Host {
    fn proc(&mut self) -> &mut Proc {
        match &mut self.running {
            Running::Veil(edge) => edge.proc(),
            Running::C(proc) => proc,
        }
    }

    fn diagnostics(&self) -> String {
        match &self.running {
            Running::Veil(edge) => edge.diagnostics(),
            Running::C(proc) => proc.diagnostics(),
        }
    }

    /// A `veil client` that pins this edge and presents the token, with `extra` flags.
    fn client(&self, dir: &TempDir, extra: &[&str]) -> anyhow::Result<Client> {
        let args = [&["--pin", self.pin.as_str(), "--token", TOKEN][..], extra].concat();
        Client::start(dir.path(), self.addr, &args)
    }
}

/// One test per scenario and host: `SCENARIO::tokio`, `SCENARIO::glommio`, `SCENARIO::c`.
macro_rules! on_every_host {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn tokio() -> anyhow::Result<()> {
                super::$scenario(super::EdgeKind::Tokio)
            }
            #[test]
            fn glommio() -> anyhow::Result<()> {
                super::$scenario(super::EdgeKind::Glommio)
            }
            #[test]
            fn c() -> anyhow::Result<()> {
                super::$scenario(super::EdgeKind::C)
            }
        }
    )*};
}

on_every_host!(
    tcp_transfer,
    udp,
    refusals,
    unanswered_request,
    drain_on_sigterm,
    linger_after_stop,
    aioquic_connect,
    http2_connect,
    http1_connect,
);

/// Every test builds the C edge first (once per process): building it runs
/// `cargo build --workspace`, which may replace the `veil` binary, so nothing may be
/// running it yet.
fn begin(kind: EdgeKind, scenario: &str) -> anyhow::Result<TempDir> {
    c_edge_binary();
    TempDir::new(&format!("conf-{scenario}-{kind:?}"))
}

// ---- 1. TCP ---------------------------------------------------------------------------

const TRANSFER: usize = 4 << 20;

fn tcp_transfer(kind: EdgeKind) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = begin(kind, "tcp")?;
    let origin = Origin::start(dir.path())?;
    let served = write_random_file(&origin.root().join("big.bin"), TRANSFER, 0x5eed)?;
    let upload = dir.join("upload.bin");
    let uploaded = write_random_file(&upload, TRANSFER, 0xcafe)?;
    let host = kind.start(&dir, EdgeArgs::loopback())?;
    let client = host.client(&dir, &[])?;
    let context = || format!("{kind:?}\n{}\n{}", host.diagnostics(), client.diagnostics());

    let socks = client.socks().to_string();
    let http = client.http_proxy();
    let big = origin.url("big.bin");
    let downloads: [(&str, &[&str]); 2] = [
        ("SOCKS5", &["--socks5-hostname", &socks]),
        ("HTTP CONNECT", &["--proxy", &http, "--proxytunnel"]),
    ];
    for (how, proxy) in downloads {
        let out = dir.join("down.bin");
        let path = out.to_str().context("UTF-8 path")?;
        let args = [proxy, &["--fail", "--output", path, &big]].concat();
        let output = curl(&args, REQUEST)?;
        ensure!(
            output.status.success(),
            "download via {how}: curl exit {}: {}\n{}",
            output.code(),
            output.stderr,
            context()
        );
        ensure!(
            sha256_file(&out)? == served,
            "download via {how}: checksum\n{}",
            context()
        );
    }
    let path = upload.to_str().context("UTF-8 path")?;
    let url = origin.url("upload/up.bin");
    let output = curl(
        &["--socks5-hostname", &socks, "--fail", "-T", path, &url],
        REQUEST,
    )?;
    ensure!(
        output.status.success(),
        "upload via SOCKS5: curl exit {}: {}\n{}",
        output.code(),
        output.stderr,
        context()
    );
    ensure!(
        sha256_file(&origin.root().join("upload/up.bin"))? == uploaded,
        "upload via SOCKS5: checksum\n{}",
        context()
    );
    Ok(())
}

// ---- 2. UDP ---------------------------------------------------------------------------

/// Payloads sent through `veil client --udp-forward`.
const UDP_PAYLOADS: usize = 100;

fn udp(kind: EdgeKind) -> anyhow::Result<()> {
    let dir = begin(kind, "udp")?;
    let echo = UdpEcho::start(b"")?;
    let host = kind.start(&dir, EdgeArgs::loopback())?;
    let forward = format!("127.0.0.1:0={}", echo.addr());
    let client = host.client(&dir, &["--udp-forward", &forward])?;
    let local = client.udp_forward()?;
    let context = || format!("{kind:?}\n{}\n{}", host.diagnostics(), client.diagnostics());
    if kind != EdgeKind::C {
        return echo_through(local).with_context(context);
    }

    // The C edge serves only TCP: the engine answers CONNECT-UDP with 501 at once, ...
    let started = Instant::now();
    let refuse = format!("{}=501", echo.addr());
    let output = aioquic(
        "aioquic_connect_udp_client.py",
        &host,
        &["--token", TOKEN, "--refuse", &refuse],
        1,
    )?;
    let took = started.elapsed();
    let line = output
        .stdout
        .lines()
        .find(|l| l.starts_with("ok "))
        .unwrap_or_default();
    eprintln!("conformance: C: CONNECT-UDP: {line}: {took:.1?}");
    ensure!(
        took < Duration::from_secs(10),
        "the 501 took {took:?}\n{}\n{}",
        output.stdout,
        context()
    );
    // ... and nothing a forward sends reaches the target.
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(local)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 2048];
    for round in 0..10u8 {
        socket.send(&[round; 100])?;
        if let Ok(len) = socket.recv(&mut buf) {
            bail!("{len} bytes came back through a tunnel the edge does not serve");
        }
    }
    ensure!(
        echo.received() == 0,
        "{} datagrams reached the target\n{}",
        echo.received(),
        context()
    );
    Ok(())
}

/// Sends `UDP_PAYLOADS` distinct payloads (3 to 1200 bytes) to `forward` and expects each
/// back, byte for byte (missing ones are resent: loopback UDP may drop under load).
fn echo_through(forward: SocketAddr) -> anyhow::Result<()> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(forward)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let payloads: Vec<Vec<u8>> = (0..UDP_PAYLOADS)
        .map(|i| {
            let len = [3, 40, 500, 1000, 1200][i % 5];
            (0..len)
                .map(|j| match j {
                    0 => u8::try_from(i).unwrap_or(0),
                    _ => u8::try_from((i * 31 + j) % 251).unwrap_or(0),
                })
                .collect()
        })
        .collect();
    let mut missing = vec![true; payloads.len()];
    let mut buf = vec![0u8; 65_536];
    for _ in 0..10 {
        for (payload, _) in payloads.iter().zip(&missing).filter(|(_, m)| **m) {
            socket.send(payload)?;
        }
        while let Ok(len) = socket.recv(&mut buf) {
            let echo = buf.get(..len).unwrap_or_default();
            let index = usize::from(*echo.first().context("an empty echo")?);
            ensure!(
                payloads.get(index).is_some_and(|p| p == echo),
                "an echo of {len} bytes matching no payload sent"
            );
            if let Some(m) = missing.get_mut(index) {
                *m = false;
            }
            if missing.iter().all(|m| !m) {
                return Ok(());
            }
        }
    }
    let lost = missing.iter().filter(|m| **m).count();
    bail!("{lost} of {UDP_PAYLOADS} payloads never came back through {forward}")
}

// ---- 3. Refusals ----------------------------------------------------------------------

/// What curl saw of one refused request through `veil client`.
struct Refused {
    exit: i32,
    stderr: String,
    head: String,
    connect_code: String,
}

impl Refused {
    /// curl through `proxy` (SOCKS5 or HTTP CONNECT) to `url`.
    fn run(proxy: &[&str], url: &str) -> anyhow::Result<Self> {
        let args = [
            proxy,
            &[
                "--dump-header",
                "-",
                "--output",
                "/dev/null",
                "--write-out",
                "\n%{http_connect}",
                url,
            ],
        ]
        .concat();
        let output = curl(&args, REQUEST)?;
        let (head, code) = output
            .stdout
            .rsplit_once('\n')
            .context("curl printed no --write-out line")?;
        Ok(Self {
            exit: output.code(),
            stderr: output.stderr.trim().to_owned(),
            head: head.replace("\r\n", "\n"),
            connect_code: code.to_owned(),
        })
    }

    /// curl's error for a SOCKS5 reply: exit 97 and the code at the end of its message.
    fn is_socks_reply(&self, code: u8) -> bool {
        self.exit == 97
            && self.stderr.contains("SOCKS5")
            && self.stderr.ends_with(&format!("({code})"))
    }

    /// A CONNECT answered `status` with `Proxy-Status: veil;error=ERROR`.
    fn is_status(&self, status: &str, error: &str) -> bool {
        let mut lines = self.head.lines();
        self.connect_code == status
            && lines
                .next()
                .is_some_and(|l| l.starts_with(&format!("HTTP/1.1 {status} ")))
            && lines.any(|line| {
                line.split_once(':').is_some_and(|(name, value)| {
                    name.eq_ignore_ascii_case("proxy-status")
                        && value.trim() == format!("veil;error={error}")
                })
            })
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}, http_connect {}, stderr {:?}, head:\n{}",
            self.exit, self.connect_code, self.stderr, self.head
        )
    }
}

fn refusals(kind: EdgeKind) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = begin(kind, "refusals")?;
    let mut canary = Canary::start()?;
    // Only 127.0.0.2 may be reached: a closed port there is a dial failure, while
    // 127.0.0.1 stays forbidden.
    let closed = StdTcpListener::bind((Ipv4Addr::new(127, 0, 0, 2), 0))?.local_addr()?;
    let args = EdgeArgs {
        allow: Some("127.0.0.2/32"),
        ..EdgeArgs::default()
    };
    let host = kind.start(&dir, args)?;
    let client = host.client(&dir, &[])?;
    let socks = client.socks().to_string();
    let http = client.http_proxy();
    let cases = [
        (
            "closed port",
            format!("http://{closed}/"),
            5,
            "502",
            "connection_refused",
        ),
        (
            "unresolvable name",
            "http://no-such-host.invalid/".to_owned(),
            4,
            "502",
            "dns_error",
        ),
        (
            "loopback without allow",
            format!("http://127.0.0.1:{}/", canary.port()?),
            2,
            "403",
            "destination_ip_prohibited",
        ),
    ];
    for (what, url, reply, status, error) in cases {
        let context = || format!("{kind:?}\n{}\n{}", host.diagnostics(), client.diagnostics());
        let attempt = Refused::run(&["--socks5-hostname", &socks], &url)?;
        ensure!(
            attempt.is_socks_reply(reply),
            "{what}, SOCKS5: want reply {reply}, got {attempt}\n{}",
            context()
        );
        let attempt = Refused::run(&["--proxy", &http, "--proxytunnel"], &url)?;
        ensure!(
            attempt.is_status(status, error),
            "{what}, CONNECT: want {status} {error}, got {attempt}\n{}",
            context()
        );
    }
    ensure!(
        canary.reached()? == 0,
        "{kind:?}: a refused target was reached"
    );
    Ok(())
}

// ---- 4. An unanswered request ---------------------------------------------------------

impl Unanswering {
    /// Answers at last: accepts for `window`, and checks that every connection the edge's
    /// abandoned dials made is closed at once (EOF or reset): the engine refused their
    /// tunnels, so the host must not hold them. Returns how many came.
    fn answer(self, window: Duration) -> anyhow::Result<usize> {
        use tokio::io::AsyncReadExt;
        let ours: Vec<SocketAddr> = self
            .filling
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect();
        let listener = self.listener;
        self.runtime.block_on(async {
            let mut came = 0;
            let deadline = tokio::time::Instant::now() + window;
            while let Ok(accepted) = tokio::time::timeout_at(deadline, listener.accept()).await {
                let (mut stream, peer) = accepted?;
                if ours.contains(&peer) {
                    continue;
                }
                came += 1;
                let mut byte = [0u8; 1];
                match tokio::time::timeout(Duration::from_secs(3), stream.read(&mut byte)).await {
                    Ok(Ok(0) | Err(_)) => {}
                    Ok(Ok(_)) => bail!("the edge sent bytes on a dial whose tunnel was refused"),
                    Err(_) => bail!(
                        "the edge held a connection from a dial whose tunnel the engine had \
                         refused (504) open for 3 s"
                    ),
                }
            }
            Ok(came)
        })
    }
}

fn unanswered_request(kind: EdgeKind) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = begin(kind, "timeout")?;
    let target = Unanswering::start()?;
    let args = EdgeArgs {
        request_timeout_ms: Some(1000),
        connect_timeout_ms: Some(20_000),
        ..EdgeArgs::loopback()
    };
    let host = kind.start(&dir, args)?;
    let client = host.client(&dir, &[])?;
    let context = || format!("{kind:?}\n{}\n{}", host.diagnostics(), client.diagnostics());
    let url = format!("http://{}/", target.addr);
    let http = client.http_proxy();
    let socks = client.socks().to_string();

    let started = Instant::now();
    let attempt = Refused::run(&["--proxy", &http, "--proxytunnel"], &url)?;
    let took = started.elapsed();
    eprintln!("conformance: {kind:?}: CONNECT to a target that ignores SYNs: {took:.1?}");
    ensure!(
        attempt.is_status("504", "connection_timeout"),
        "CONNECT: want 504 connection_timeout, got {attempt} after {took:?}\n{}",
        context()
    );
    ensure!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "CONNECT: the 504 came after {took:?}, not about 1 s\n{}",
        context()
    );
    let started = Instant::now();
    let attempt = Refused::run(&["--socks5-hostname", &socks], &url)?;
    let took = started.elapsed();
    // X'06' TTL expired: what SOCKS5 says for connection_timeout.
    ensure!(
        attempt.is_socks_reply(6) && took < Duration::from_secs(10),
        "SOCKS5: want reply 6 after about 1 s, got {attempt} after {took:?}\n{}",
        context()
    );
    // The host's dials go on (20 s) after the 504s; when the target answers at last (its
    // SYNs are retransmitted within seconds), the host must drop what it dialled.
    let came = target
        .answer(Duration::from_secs(6))
        .with_context(context)?;
    eprintln!("conformance: {kind:?}: {came} late dials reached the target, each closed");
    Ok(())
}

// ---- 5. Drain on shutdown -------------------------------------------------------------

/// The slow download: nginx serves `/slow/` at 32 KiB/s, so this takes about 5 s.
const SLOW: usize = 160 * 1024;
/// How long the edge lets open tunnels go on after SIGTERM.
const DRAIN_MS: u64 = 20_000;

fn drain_on_sigterm(kind: EdgeKind) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = begin(kind, "drain")?;
    let origin = Origin::start(dir.path())?;
    let served = write_random_file(&origin.root().join("slow/long.bin"), SLOW, 0x51)?;
    let args = EdgeArgs {
        drain_timeout_ms: Some(DRAIN_MS),
        ..EdgeArgs::loopback()
    };
    let mut host = kind.start(&dir, args)?;
    let client = host.client(&dir, &[])?;
    let socks = client.socks().to_string();
    let url = origin.url("slow/long.bin");
    let partial = dir.join("long.bin");
    let out = partial.to_str().context("UTF-8 path")?.to_owned();
    let download = thread::spawn(move || {
        let output = curl(
            &[
                "--socks5-hostname",
                &socks,
                "--fail",
                "--output",
                &out,
                &url,
            ],
            REQUEST,
        );
        (output, Instant::now())
    });
    wait_until("the slow download started", REQUEST, || {
        fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    })?;

    let signalled = Instant::now();
    let status: anyhow::Result<ExitStatus> = host
        .proc()
        .terminate(Duration::from_millis(DRAIN_MS) + Duration::from_secs(10));
    let exited = Instant::now();
    let (output, finished) = download
        .join()
        .map_err(|_| anyhow::anyhow!("the curl thread panicked"))?;
    let output = output?;
    let context = || format!("{kind:?}\n{}\n{}", host.diagnostics(), client.diagnostics());
    let status = status.with_context(context)?;
    ensure!(
        output.status.success(),
        "the download in flight at SIGTERM failed: curl exit {}: {}\n{}",
        output.code(),
        output.stderr,
        context()
    );
    ensure!(
        sha256_file(&partial)? == served,
        "the download in flight at SIGTERM arrived changed\n{}",
        context()
    );
    ensure!(
        status.success(),
        "the edge exited with {status} after its drain\n{}",
        context()
    );
    // It waited for the tunnel, not for the drain's deadline.
    let after = exited.saturating_duration_since(finished);
    eprintln!(
        "conformance: {kind:?}: exited {:.1?} after SIGTERM, {after:.1?} after the download",
        exited.duration_since(signalled)
    );
    ensure!(
        exited.duration_since(signalled) < Duration::from_millis(DRAIN_MS)
            && after < Duration::from_secs(5),
        "the edge exited {:?} after SIGTERM, {after:?} after the download ended\n{}",
        exited.duration_since(signalled),
        context()
    );
    Ok(())
}

// ---- 6. A peer that stops after its FIN (linger) --------------------------------------

/// The request the application sends before it resets.
const LINGER_REQUEST: usize = 256 * 1024;
/// What the target sends after it read the request: under the linger's bound on
/// discarded bytes (`veil_engine::relay::LINGER_BYTES`, 1 MiB, past which the edge stops
/// reading; `e2e_linger` checks that).
const AFTER_EOF: usize = 512 * 1024;
/// The edge's idle bound on a linger (`veil_engine::relay::LINGER_IDLE`).
const LINGER_IDLE: Duration = Duration::from_secs(5);
/// How long after its last byte the target waits before it checks that the edge closed.
const QUIET: Duration = Duration::from_secs(7);

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i * 13 % 251).unwrap_or(0))
        .collect()
}

/// The target: answers, answers again once the application has reset (the client's relay
/// fails to write that and stops the edge's direction), reads the request to its EOF,
/// keeps sending (the lingering edge discards it), goes quiet, and then finds the
/// connection closed. Returns the request it read.
async fn talkative_target(listener: tokio::net::TcpListener) -> anyhow::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut stream, _) = listener.accept().await?;
    stream.write_all(b"early\n").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stream.write_all(b"late\n").await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut request = Vec::new();
    stream
        .read_to_end(&mut request)
        .await
        .context("the request ends with EOF, not a reset")?;
    let piece = vec![7; 64 * 1024];
    for _ in 0..AFTER_EOF / piece.len() {
        stream
            .write_all(&piece)
            .await
            .context("the edge lingers: a write after the request's EOF succeeds")?;
    }
    tokio::time::sleep(QUIET).await;
    // Closed: its kernel answers the next byte with RST, which fails a write after it.
    for _ in 0..2 {
        if stream.write_all(b"?").await.is_err() {
            return Ok(request);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("the edge still held the connection {QUIET:?} after the target's last byte")
}

fn linger_after_stop(kind: EdgeKind) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    use veil_cli::fetch::{self, SocksOutcome};
    assert!(QUIET > LINGER_IDLE);
    let dir = begin(kind, "linger")?;
    let host = kind.start(&dir, EdgeArgs::loopback())?;
    let client = host.client(&dir, &[])?;
    let context = || format!("{kind:?}\n{}\n{}", host.diagnostics(), client.diagnostics());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let exchange = async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let target = tokio::spawn(talkative_target(listener));
        let outcome = fetch::socks5_connect(client.socks(), "127.0.0.1", port, None).await?;
        let SocksOutcome::Connected(mut app) = outcome else {
            bail!("refused: {outcome:?}");
        };
        app.write_all(&pattern(LINGER_REQUEST)).await?;
        app.shutdown().await?;
        // Ample for the request to leave the application's socket, then a reset.
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.set_zero_linger()?;
        drop(app);
        target.await.context("the target task")?
    };
    let request = runtime
        .block_on(async { tokio::time::timeout(REQUEST, exchange).await })
        .context("the exchange did not finish in time")
        .and_then(|r| r)
        .with_context(context)?;
    ensure!(
        request.len() == LINGER_REQUEST && request == pattern(LINGER_REQUEST),
        "the target read {} of {LINGER_REQUEST} bytes (or changed ones)\n{}",
        request.len(),
        context()
    );
    Ok(())
}

// ---- 7. aioquic interop ---------------------------------------------------------------

/// Runs `tests/interop/SCRIPT` against `host` with ARGS; fails unless it exited 0 with
/// exactly `checks` lines `ok ...`.
fn aioquic(script: &str, host: &Host, args: &[&str], checks: usize) -> anyhow::Result<Output> {
    let python = require_aioquic()?;
    let mut command = Command::new(python);
    command
        .arg(support::repo_root().join("tests/interop").join(script))
        .args(["--edge", &host.addr.to_string(), "--pin", &host.pin])
        .args(args);
    let output = run_bounded(command, SCRIPT)?;
    let passed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    ensure!(
        output.status.success() && passed == checks,
        "{:?}: {script} {args:?}: exit {}, {passed} of {checks} checks ok\n\
         stdout:\n{}\nstderr:\n{}\n{}",
        host.kind,
        output.code(),
        output.stdout,
        output.stderr,
        host.diagnostics()
    );
    Ok(output)
}

fn aioquic_connect(kind: EdgeKind) -> anyhow::Result<()> {
    let dir = begin(kind, "aioquic")?;
    let echo = Echo::start()?;
    let host = kind.start(&dir, EdgeArgs::loopback())?;
    let target = echo.addr().to_string();
    let args = [
        "--token", TOKEN, "--size", "4194304", "--echo", &target, "--echo", &target,
    ];
    aioquic("aioquic_connect.py", &host, &args, 2)?;
    Ok(())
}

// ---- 8. the TCP on-ramp: HTTP/2 ------------------------------------------------------

fn http2_connect(kind: EdgeKind) -> anyhow::Result<()> {
    let dir = begin(kind, "http2")?;
    let echo = Echo::start()?;
    let host = kind.start(
        &dir,
        EdgeArgs {
            tcp: true,
            ..EdgeArgs::loopback()
        },
    )?;
    let tcp = host.tcp_addr.context("no TCP listener")?.to_string();
    let target = echo.addr().to_string();
    let args = [
        "--edge",
        &tcp,
        "--pin",
        &host.pin,
        "--token",
        TOKEN,
        "--size",
        "4194304",
        "--echo",
        &target,
        "--echo",
        &target,
        "--refuse",
        "169.254.169.254:80=403:destination_ip_prohibited",
    ]
    .map(String::from);
    let python = support::require_python_h2()?;
    let run = support::run_script(&python, "h2_connect.py", &args, SCRIPT)?;
    support::ensure_checks(&format!("{kind:?}: h2_connect.py"), &run, 3, || {
        host.diagnostics()
    })?;
    Ok(())
}

// ---- 9. the TCP on-ramp: HTTP/1.1 ----------------------------------------------------

fn http1_connect(kind: EdgeKind) -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = begin(kind, "http1")?;
    let echo = Echo::start()?;
    let origin = Origin::start(dir.path())?;
    let served = write_random_file(&origin.root().join("file.bin"), TRANSFER, 0x4831)?;
    let host = kind.start(
        &dir,
        EdgeArgs {
            tcp: true,
            ..EdgeArgs::loopback()
        },
    )?;
    let tcp = host.tcp_addr.context("no TCP listener")?.to_string();
    let args = [
        "--edge",
        &tcp,
        "--pin",
        &host.pin,
        "--token",
        TOKEN,
        "--echo",
        &echo.addr().to_string(),
        "--refuse",
        "169.254.169.254:80=403",
    ]
    .map(String::from);
    let run = support::run_script(&require_aioquic()?, "h1_connect.py", &args, SCRIPT)?;
    support::ensure_checks(&format!("{kind:?}: h1_connect.py"), &run, 2, || {
        host.diagnostics()
    })?;
    let downloaded = dir.path().join("downloaded.bin");
    let output = support::curl_https_proxy(
        &tcp,
        Some(TOKEN),
        "%{http_code}",
        downloaded.to_str().context("a UTF-8 path")?,
        &origin.url("file.bin"),
        REQUEST,
    )?;
    support::check_download(&output, &downloaded, &served, || host.diagnostics())?;
    Ok(())
}
