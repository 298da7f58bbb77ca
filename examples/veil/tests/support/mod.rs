//! What the end-to-end tests share: real programs (`veil server`, `veil client`, nginx,
//! curl, python3) started on loopback with ephemeral ports, each in a guard that kills it
//! when dropped, and every wait bounded by a deadline.
//!
//! A missing tool is a failure that names the tool and how to install it, never a skip:
//! `.ci/run` installs all of them.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

pub(crate) mod impair;
pub(crate) mod netns;
pub(crate) mod relay;

/// How long a program may take to print that it is listening.
pub(crate) const STARTUP: Duration = Duration::from_secs(20);
/// The token the tests' edges accept.
pub(crate) const TOKEN: &str = "e2e-token";
/// The pinned aioquic release `.ci/run` installs.
pub(crate) const AIOQUIC: &str = "aioquic==1.7.2";

/// `veil bench tcp` timing `requests` round trips over direct TCP and through veil, with
/// `extra` flags after them.
pub(crate) fn bench_latency(requests: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(veil_bin());
    command.args([
        "bench",
        "tcp",
        "--paths",
        "direct,proxied",
        "--parts",
        "latency",
        "--requests",
        requests,
    ]);
    command.args(extra);
    command
}

/// The edge's and the client's pids from what follows `veil bench tcp: edge pid ` in a
/// bench's banner (`N on ADDR, client pid M …`).
pub(crate) fn bench_child_pids(line: &str) -> anyhow::Result<[u32; 2]> {
    let edge = line.split_whitespace().next().context("no edge pid")?;
    let client = line
        .split("client pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .context("no client pid")?;
    Ok([edge.parse()?, client.parse()?])
}

/// The `veil` binary cargo built for these tests.
pub(crate) fn veil_bin() -> &'static str {
    env!("CARGO_BIN_EXE_veil")
}

/// The repository's root directory.
///
/// From `CARGO_MANIFEST_DIR` as cargo sets it when it runs the test, not as it was at build
/// time: cargo reuses test binaries built from another checkout of the same sources (a shared
/// `CARGO_TARGET_DIR`, as CI keeps), whose baked-in path may be gone.
pub(crate) fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..")
}

/// The path of `tool` on PATH (or in /usr/sbin and /sbin, where Debian puts nginx); an
/// error naming the tool and the package that brings it when it is missing.
pub(crate) fn require_tool(tool: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "e2e: the tool `{tool}` is missing; install it (`apt-get install {package}`, \
         as .ci/run does) — these tests do not skip"
    )
}

/// Fails unless python3 can import aioquic.
pub(crate) fn require_aioquic() -> anyhow::Result<PathBuf> {
    let python = require_tool("python3", "python3")?;
    let mut check = Command::new(&python);
    check.args(["-c", "import aioquic"]);
    let output = run_bounded(check, Duration::from_secs(30))?;
    ensure!(
        output.status.success(),
        "e2e: the Python package aioquic is missing; install it with \
         `python3 -m pip install {AIOQUIC}` (as .ci/run does): {}",
        output.stderr.trim()
    );
    Ok(python)
}

/// The pinned release of Python's `h2` (python-hyper's HTTP/2 state machine) `.ci/run`
/// installs: an HTTP/2 client nobody here wrote (`tests/interop/h2_connect.py`).
#[allow(dead_code)] // not every test binary uses it
pub(crate) const PYTHON_H2: &str = "h2==4.4.1";

/// Fails unless python3 can import h2 (and aioquic, whose capsule helpers the script shares).
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn require_python_h2() -> anyhow::Result<PathBuf> {
    let python = require_aioquic()?;
    let mut check = Command::new(&python);
    check.args(["-c", "import h2.connection"]);
    let output = run_bounded(check, Duration::from_secs(30))?;
    ensure!(
        output.status.success(),
        "e2e: the Python package h2 is missing; install it with \
         `python3 -m pip install {PYTHON_H2}` (as .ci/run does): {}",
        output.stderr.trim()
    );
    Ok(python)
}

/// A directory under the system temp directory, removed with its contents on drop.
#[derive(Debug)]
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(label: &str) -> anyhow::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "veil-e2e-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A program started by a test; killed (SIGKILL) and reaped when dropped.
///
/// Its stdout lines are read by a thread and can be waited for; its stderr goes to a file
/// (`<name>.stderr` in the given directory), shown in errors.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr_path: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        let pipe = child.stdout.take().context("stdout is piped")?;
        let (sender, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&stdout);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut seen) = seen.lock() {
                    seen.push(line.clone());
                }
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            lines,
            stdout,
            stderr_path,
        })
    }

    /// Waits for a stdout line starting with `prefix`; returns the rest of it, trimmed.
    pub(crate) fn wait_for_line(&self, prefix: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{} printed no `{prefix}` line within {timeout:?}\n{}",
                    self.name,
                    self.diagnostics()
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "{} closed its stdout before printing `{prefix}`\n{}",
                    self.name,
                    self.diagnostics()
                ),
            }
        }
    }

    /// What it wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Its stdout lines and the end of its stderr, for error messages.
    pub(crate) fn diagnostics(&self) -> String {
        let stdout = self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default();
        let stderr = self.stderr();
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "--- {name} stdout:\n{stdout}\n--- {name} stderr (last 40 lines):\n{}",
            tail.join("\n"),
            name = self.name
        )
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for it to exit; SIGKILL if it has not within `timeout`.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut kill = Command::new("sh");
        kill.args([
            "-c",
            "kill -TERM \"$1\"",
            "sh",
            &self.child.id().to_string(),
        ]);
        let output = run_bounded(kill, Duration::from_secs(10))?;
        ensure!(
            output.status.success(),
            "kill -TERM failed: {}",
            output.stderr
        );
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        bail!(
            "{} did not exit within {timeout:?} of SIGTERM\n{}",
            self.name,
            self.diagnostics()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Environment of every veil process: info logs (the edge's `QUIC connection established`
/// lines are counted), no colours in the log files.
/// `veil SUBCOMMAND`, logging at `info`, or as `VEIL_TEST_LOG` says (a `RUST_LOG`
/// filter: `VEIL_TEST_LOG=veil_tokio=debug cargo test ...` shows the tunnels' ends in the
/// diagnostics of a failed test).
fn veil_command(subcommand: &str) -> Command {
    let mut command = Command::new(veil_bin());
    let filter = std::env::var("VEIL_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
    command
        .arg(subcommand)
        .env("RUST_LOG", filter)
        .env("NO_COLOR", "1");
    command
}

/// `veil server` on an ephemeral loopback port.
#[derive(Debug)]
pub(crate) struct Edge {
    proc: Proc,
    addr: SocketAddr,
    pin: Option<String>,
}

impl Edge {
    /// Starts `veil server --listen 127.0.0.1:0 ARGS` (a `--listen` in ARGS wins); waits for
    /// its address and, without `--cert`, its fingerprint.
    pub(crate) fn start(log_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_named("edge", log_dir, args)
    }

    /// An edge on `runtime` (`tokio` or `glommio`) that takes [`TOKEN`] and lets its
    /// clients reach loopback targets (the tests' nginx and echo servers).
    #[allow(dead_code)] // not every test binary that includes this module starts one
    pub(crate) fn on_runtime(log_dir: &Path, runtime: &str) -> anyhow::Result<Self> {
        let args = [
            "--runtime",
            runtime,
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
        ];
        Self::start(log_dir, &args)
    }

    pub(crate) fn start_named(name: &str, log_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = veil_command("server");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command.args(args);
        let proc = Proc::spawn(name, command, log_dir)?;
        let addr = proc
            .wait_for_line("veil: edge listening on ", STARTUP)?
            .parse()
            .context("the edge's address")?;
        let pin = if args.contains(&"--cert") {
            None
        } else {
            Some(proc.wait_for_line("veil: self-signed certificate fingerprint ", STARTUP)?)
        };
        Ok(Self { proc, addr, pin })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `sha256:HEX` of its self-signed certificate.
    pub(crate) fn pin(&self) -> anyhow::Result<&str> {
        self.pin
            .as_deref()
            .context("this edge has no self-signed fingerprint")
    }

    /// How many QUIC connections it has logged as established.
    pub(crate) fn connections_established(&self) -> usize {
        self.proc
            .stderr()
            .matches("QUIC connection established")
            .count()
    }

    pub(crate) fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub(crate) fn diagnostics(&self) -> String {
        self.proc.diagnostics()
    }
}

/// `veil client` with its SOCKS5 and HTTP listeners on ephemeral loopback ports.
#[derive(Debug)]
pub(crate) struct Client {
    proc: Proc,
    socks: SocketAddr,
    http: SocketAddr,
}

impl Client {
    /// Starts `veil client --edge EDGE --socks 127.0.0.1:0 --http 127.0.0.1:0 ARGS`.
    pub(crate) fn start(log_dir: &Path, edge: SocketAddr, args: &[&str]) -> anyhow::Result<Self> {
        let mut command = veil_command("client");
        command
            .args(["--edge", &edge.to_string()])
            .args(["--socks", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(args);
        let proc = Proc::spawn("client", command, log_dir)?;
        let socks = proc
            .wait_for_line("veil: socks5 listening on ", STARTUP)?
            .parse()
            .context("the SOCKS5 address")?;
        let http = proc
            .wait_for_line("veil: http listening on ", STARTUP)?
            .parse()
            .context("the HTTP proxy address")?;
        Ok(Self { proc, socks, http })
    }

    /// The rest of the first line it printed that starts with `prefix`.
    pub(crate) fn wait_for_line(&self, prefix: &str) -> anyhow::Result<String> {
        self.proc.wait_for_line(prefix, STARTUP)
    }

    /// A client of `edge` that pins its certificate and presents `token`.
    pub(crate) fn of(log_dir: &Path, edge: &Edge, token: &str) -> anyhow::Result<Self> {
        Self::start(
            log_dir,
            edge.addr(),
            &["--pin", edge.pin()?, "--token", token],
        )
    }

    pub(crate) fn socks(&self) -> SocketAddr {
        self.socks
    }

    #[allow(dead_code)] // not every test binary uses it
    pub(crate) fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// `http://ADDR`, for curl's `-x`.
    pub(crate) fn http_proxy(&self) -> String {
        format!("http://{}", self.http)
    }

    pub(crate) fn http(&self) -> SocketAddr {
        self.http
    }

    pub(crate) fn diagnostics(&self) -> String {
        self.proc.diagnostics()
    }
}

/// nginx from Debian as the HTTP origin, on a loopback port, from a temporary prefix:
/// static files under `/`, PUT uploads under `/upload/` (the DAV module), and `/slow/`
/// served at 32 KiB/s per connection, so that many transfers overlap.
#[derive(Debug)]
pub(crate) struct Origin {
    proc: Proc,
    addr: SocketAddr,
    root: PathBuf,
}

impl Origin {
    pub(crate) fn start(dir: &Path) -> anyhow::Result<Self> {
        let nginx = require_tool("nginx", "nginx")?;
        let root = dir.join("www");
        for sub in ["upload", "slow"] {
            fs::create_dir_all(root.join(sub))?;
        }
        fs::create_dir_all(dir.join("nginx-tmp"))?;
        // nginx cannot report a port it picked: take a free one, and try again with another
        // if someone else took it before nginx bound it.
        let mut failures = Vec::new();
        for attempt in 0..5 {
            let port = free_tcp_port()?;
            let conf = dir.join("nginx.conf");
            fs::write(&conf, nginx_conf(dir, &root, port))?;
            let error_log = dir.join("nginx-error.log");
            let mut command = Command::new(&nginx);
            command
                .arg("-e")
                .arg(&error_log)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf);
            let mut proc = Proc::spawn(&format!("nginx-{attempt}"), command, dir)?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match wait_until_accepting(addr, &mut proc, STARTUP) {
                Ok(()) => return Ok(Self { proc, addr, root }),
                Err(e) => failures.push(format!(
                    "{e:#}\n{}",
                    fs::read_to_string(&error_log).unwrap_or_default()
                )),
            }
        }
        bail!("nginx did not start:\n{}", failures.join("\n"))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory nginx serves.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Its access log: one line per request, `METHOD URI STATUS BYTES ACTIVE` where
    /// ACTIVE is how many client connections nginx had open when the request ended.
    pub(crate) fn access_log(&self) -> String {
        self.root
            .parent()
            .map(|dir| fs::read_to_string(dir.join("nginx-access.log")).unwrap_or_default())
            .unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }
}

fn nginx_conf(prefix: &Path, root: &Path, port: u16) -> String {
    let p = prefix.display();
    // `user` matters only when nginx starts as root (as in CI): the worker then keeps
    // root's rights to write uploads into the test's directory.
    format!(
        "daemon off;\n\
         master_process off;\n\
         user root;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/nginx-error.log info;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           log_format e2e '$request_method $uri $status $body_bytes_sent $connections_active';\n\
           access_log {p}/nginx-access.log e2e;\n\
           client_body_temp_path {p}/nginx-tmp/body;\n\
           proxy_temp_path {p}/nginx-tmp/proxy;\n\
           fastcgi_temp_path {p}/nginx-tmp/fastcgi;\n\
           uwsgi_temp_path {p}/nginx-tmp/uwsgi;\n\
           scgi_temp_path {p}/nginx-tmp/scgi;\n\
           client_max_body_size 0;\n\
           keepalive_timeout 5s;\n\
           server {{\n\
             listen 127.0.0.1:{port};\n\
             root {root};\n\
             location /upload/ {{ dav_methods PUT; create_full_put_path on; }}\n\
             location /slow/ {{ limit_rate 32k; }}\n\
           }}\n\
         }}\n",
        root = root.display()
    )
}

fn wait_until_accepting(
    addr: SocketAddr,
    proc: &mut Proc,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = proc.exited() {
            bail!("exited with {status} before accepting on {addr}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    bail!("not accepting on {addr} within {timeout:?}")
}

/// A TCP port on loopback that was free a moment ago.
pub(crate) fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A loopback address where nothing listens (connecting gets a RST).
pub(crate) fn closed_port() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()?)))
}

/// What a bounded command printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// The exit code, or -1 when a signal ended it.
    pub(crate) fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// Runs `command` to completion, killing it if it takes longer than `timeout` (an error).
pub(crate) fn run_bounded(mut command: Command, timeout: Duration) -> anyhow::Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            bail!("{command:?} did not finish within {timeout:?}; stderr:\n{stderr}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Runs curl with ARGS (plus `--silent --show-error --max-time`), bounded by `timeout`.
pub(crate) fn curl(args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    let curl = require_tool("curl", "curl")?;
    let mut command = Command::new(curl);
    command
        .args(["--silent", "--show-error", "--noproxy", ""])
        .args(["--max-time", &timeout.as_secs().to_string()])
        .args(args)
        // No proxy from the environment: each test names its own.
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY");
    run_bounded(command, timeout + Duration::from_secs(10))
}

/// Writes `len` pseudo-random bytes (xorshift from `seed`); returns their SHA-256.
pub(crate) fn write_random_file(path: &Path, len: usize, seed: u64) -> anyhow::Result<String> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut hasher = boring::sha::Sha256::new();
    let mut state = seed | 1;
    let mut chunk = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = left.min(chunk.len());
        let bytes = chunk.get(..take).context("chunk length")?;
        file.write_all(bytes)?;
        hasher.update(bytes);
        left -= take;
    }
    file.flush()?;
    Ok(veil_cli::body::hex(&hasher.finish()))
}

/// Downloads `url` to `to` with curl through `proxy` (`socks5://…`, `socks5h://…`),
/// writing out the HTTP status, for [`check_download`].
#[allow(dead_code)] // not every test binary that includes this module downloads
pub(crate) fn download(
    proxy: &str,
    to: &Path,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let to = to.to_str().context("a UTF-8 path")?;
    curl(
        &[
            "--proxy",
            proxy,
            "--write-out",
            "%{http_code}",
            "--output",
            to,
            url,
        ],
        timeout,
    )
}

/// Checks a download curl made with `--write-out %{http_code}`: exit 0, status 200, and
/// `downloaded` has the SHA-256 `served_sum`; `context` explains a failure.
#[allow(dead_code)] // not every test binary that includes this module downloads
pub(crate) fn check_download(
    output: &Output,
    downloaded: &Path,
    served_sum: &str,
    context: impl Fn() -> String,
) -> anyhow::Result<()> {
    ensure!(
        output.status.success() && output.stdout == "200",
        "download: curl exit {}, status {:?}: {}\n{}",
        output.code(),
        output.stdout,
        output.stderr,
        context()
    );
    ensure!(
        sha256_file(downloaded)? == served_sum,
        "the downloaded file differs from the served one\n{}",
        context()
    );
    Ok(())
}

/// SHA-256 of a file, in hex.
pub(crate) fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = boring::sha::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).context("read length")?);
    }
    Ok(veil_cli::body::hex(&hasher.finish()))
}

/// A TCP echo server on loopback, in threads: echoes until EOF, then closes its side.
#[derive(Debug)]
pub(crate) struct Echo {
    addr: SocketAddr,
}

impl Echo {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        // The accept thread ends with the test process.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Ok(Self { addr })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A loopback listener that nothing should ever reach: counts connection attempts that
/// completed (the kernel finishes the TCP handshake even before `accept`).
#[derive(Debug)]
pub(crate) struct Canary {
    listener: TcpListener,
    reached: usize,
}

impl Canary {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            reached: 0,
        })
    }

    pub(crate) fn port(&self) -> anyhow::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// How many connections reached it so far.
    pub(crate) fn reached(&mut self) -> anyhow::Result<usize> {
        loop {
            match self.listener.accept() {
                Ok(_) => self.reached += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(self.reached),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Prints how long a step took (seen with `--nocapture`), and returns its value.
pub(crate) fn timed<T>(what: &str, step: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = step();
    eprintln!("e2e: {what}: {:.1?}", start.elapsed());
    value
}

/// A self-signed P-256 certificate for `localhost` and its key, made by openssl: an edge
/// that restarts with them keeps the identity its clients trust.
pub(crate) fn make_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let openssl = require_tool("openssl", "openssl")?;
    let (cert, key) = (dir.join("edge-cert.pem"), dir.join("edge-key.pem"));
    let mut command = Command::new(openssl);
    command
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    let output = run_bounded(command, Duration::from_secs(30))?;
    ensure!(
        output.status.success(),
        "openssl could not make a certificate: {}",
        output.stderr
    );
    Ok((cert, key))
}

/// Polls `condition` every 20 ms until it holds; an error naming `what` after `timeout`.
pub(crate) fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Client {
    /// Waits for the next `veil: udp forward listening on ADDR to TARGET` line (one per
    /// `--udp-forward`, in order) and returns ADDR.
    pub(crate) fn udp_forward(&self) -> anyhow::Result<SocketAddr> {
        let rest = self
            .proc
            .wait_for_line("veil: udp forward listening on ", STARTUP)?;
        let addr = rest
            .split_once(" to ")
            .map_or(rest.as_str(), |(addr, _)| addr);
        addr.parse().context("the UDP forward's address")
    }

    /// What it wrote to stderr so far (its log).
    pub(crate) fn stderr(&self) -> String {
        self.proc.stderr()
    }
}

/// A UDP and TCP port on loopback that were both free a moment ago (dnsmasq takes both).
pub(crate) fn free_udp_port() -> anyhow::Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on loopback")
}

/// dnsmasq from Debian as a DNS server on a loopback port, answering only from its
/// command line (no upstream, no hosts file, no config file), logging every query.
#[derive(Debug)]
pub(crate) struct Dnsmasq {
    proc: Proc,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (dnsmasq options such as `--address=/name/ip`).
    pub(crate) fn start(dir: &Path, records: &[&str]) -> anyhow::Result<Self> {
        let dnsmasq = require_tool("dnsmasq", "dnsmasq")?;
        let mut failures = Vec::new();
        for attempt in 0..5 {
            let port = free_udp_port()?;
            let mut command = Command::new(&dnsmasq);
            command
                .args(["--keep-in-foreground", "--log-facility=-", "--log-queries"])
                .args(["--conf-file=/dev/null", "--pid-file=", "--user=root"])
                .args(["--port", &port.to_string()])
                .args(["--listen-address", "127.0.0.1", "--bind-interfaces"])
                .args(["--no-resolv", "--no-hosts"])
                .args(records);
            let mut proc = Proc::spawn(&format!("dnsmasq-{attempt}"), command, dir)?;
            let started = wait_until("dnsmasq started", STARTUP, || {
                proc.stderr().contains("started, version") || proc.exited().is_some()
            });
            if started.is_ok() && proc.exited().is_none() {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                return Ok(Self { proc, addr });
            }
            failures.push(proc.diagnostics());
        }
        bail!("dnsmasq did not start:\n{}", failures.join("\n"))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log: `query[A] NAME from IP` for every query.
    pub(crate) fn log(&self) -> String {
        self.proc.stderr()
    }
}

/// Runs `dig @SERVER -p PORT ARGS` (two tries, 3 s each), bounded in time.
pub(crate) fn dig(server: SocketAddr, args: &[&str]) -> anyhow::Result<Output> {
    let dig = require_tool("dig", "bind9-dnsutils")?;
    let mut command = Command::new(dig);
    command
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+tries=2", "+timeout=3"])
        .args(args);
    run_bounded(command, Duration::from_secs(20))
}

/// Fails unless python3 can import `PySocks` (`socks`).
pub(crate) fn require_pysocks() -> anyhow::Result<PathBuf> {
    let python = require_tool("python3", "python3")?;
    let mut check = Command::new(&python);
    check.args(["-c", "import socks"]);
    let output = run_bounded(check, Duration::from_secs(30))?;
    ensure!(
        output.status.success(),
        "e2e: the Python package PySocks is missing; install it with \
         `python3 -m pip install {PYSOCKS}` (as .ci/run does): {}",
        output.stderr.trim()
    );
    Ok(python)
}

/// The pinned `PySocks` release `.ci/run` installs: a SOCKS5 client with UDP ASSOCIATE.
pub(crate) const PYSOCKS: &str = "PySocks==1.7.1";

/// A UDP echo server on loopback, in a thread: sends every datagram back to its sender,
/// prefixed with `tag`, and counts what it received.
#[derive(Debug)]
pub(crate) struct UdpEcho {
    addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl UdpEcho {
    pub(crate) fn start(tag: &'static [u8]) -> anyhow::Result<Self> {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = socket.local_addr()?;
        let received = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&received);
        // The thread ends with the test process.
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut out = Vec::with_capacity(65_536 + tag.len());
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                count.fetch_add(1, Ordering::Relaxed);
                out.clear();
                out.extend_from_slice(tag);
                out.extend_from_slice(buf.get(..len).unwrap_or_default());
                let _ = socket.send_to(&out, from);
            }
        });
        Ok(Self { addr, received })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Datagrams received so far.
    pub(crate) fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Client {
    /// SIGTERM, then waits for it to exit.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.proc.terminate(timeout)
    }

    /// Its exit status if it has exited; `None` while it runs.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.proc.exited()
    }
}

/// A loopback target that never answers a SYN: a listener with a backlog of 0 whose accept
/// queue one unaccepted connection fills; Linux then drops the SYNs it gets. Holds the
/// listener (and the runtime that made it: std cannot set a backlog) and the connection.
#[allow(dead_code)] // not every test binary uses it
pub(crate) struct Unanswering {
    pub(crate) addr: SocketAddr,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) filling: Vec<std::net::TcpStream>,
}

#[allow(dead_code)] // not every test binary uses it
impl Unanswering {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())?;
            socket.listen(0)?
        };
        let addr = listener.local_addr()?;
        let filling: Vec<std::net::TcpStream> = (0..3)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
            })
            .collect();
        // The kernel must now drop a SYN: a probe must time out, not connect or be refused.
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            other => anyhow::bail!(
                "could not make a loopback target that ignores SYNs (a probe got {other:?}); \
                 this scenario needs Linux's drop of SYNs on a full accept queue"
            ),
        }
        Ok(Self {
            addr,
            runtime,
            listener,
            filling,
        })
    }
}

/// Runs `python tests/interop/SCRIPT ARGS` within `bound`; returns its output and how many
/// checks printed `ok ` (the interop scripts' convention: one line per check).
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn run_script(
    python: &Path,
    script: &str,
    args: &[String],
    bound: Duration,
) -> anyhow::Result<(Output, usize)> {
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("tests/interop").join(script))
        .args(args);
    let output = timed(script, || run_bounded(command, bound))?;
    let passed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok "))
        .count();
    Ok((output, passed))
}

/// Fails unless a [`run_script`] run exited 0 with every one of `checks` `ok`; `context`
/// (the processes' logs) explains a failure.
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn ensure_checks(
    script: &str,
    (output, passed): &(Output, usize),
    checks: usize,
    context: impl Fn() -> String,
) -> anyhow::Result<()> {
    ensure!(
        output.status.success() && *passed == checks,
        "{script}: exit {}, {passed} of {checks} checks ok\nstdout:\n{}\nstderr:\n{}\n{}",
        output.code(),
        output.stdout,
        output.stderr,
        context()
    );
    Ok(())
}

/// curl through `proxy` as the HTTPS proxy users configure (`-p -x https://ADDR`, the
/// edge's self-signed certificate not verified: made at start, and curl has no option for
/// a certificate's fingerprint), with the bearer `token` if any, writing `write_out` and
/// the body to `output`.
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn curl_https_proxy(
    proxy: &str,
    token: Option<&str>,
    write_out: &str,
    output: &str,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<Output> {
    let proxy = format!("https://{proxy}");
    let authorization = token.map(|token| format!("Proxy-Authorization: Bearer {token}"));
    let mut args = vec!["--proxytunnel", "--proxy", &proxy, "--proxy-insecure"];
    if let Some(header) = &authorization {
        args.extend(["--proxy-header", header]);
    }
    args.extend(["--write-out", write_out, "--output", output, url]);
    curl(&args, timeout)
}

/// Downloads `url` through the SOCKS5 proxy `socks` into nothing; fails unless it was a
/// 200 of exactly `size` bytes.
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn download_via_socks(socks: SocketAddr, url: &str, size: usize) -> anyhow::Result<()> {
    let proxy = format!("socks5h://{socks}");
    let output = curl(
        &[
            "--proxy",
            &proxy,
            "--write-out",
            "%{http_code} %{size_download}",
            "--output",
            "/dev/null",
            url,
        ],
        Duration::from_secs(60),
    )?;
    ensure!(
        output.status.success() && output.stdout == format!("200 {size}"),
        "a download of {size} bytes: exit {}, {:?}: {}",
        output.code(),
        output.stdout,
        output.stderr
    );
    Ok(())
}

/// The samples of an `OpenMetrics` text as Python's `prometheus_client` parser reads them
/// (a parser nobody here wrote): name with labels → value.
#[allow(dead_code)] // not every test binary reads metrics
pub(crate) fn parse_with_prometheus_client(
    text: &str,
) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    let python = require_tool("python3", "python3")?;
    let script = r#"
import sys, json
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.argv[1]):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[s.name + ("{" + labels + "}" if labels else "")] = s.value
print(json.dumps(out))
"#;
    let mut command = Command::new(python);
    command.arg("-c").arg(script).arg(text);
    let out = run_bounded(command, Duration::from_secs(30))?;
    ensure!(
        out.code() == 0,
        "prometheus_client refused the text: {}\n{text}",
        out.stderr
    );
    Ok(serde_json::from_str(&out.stdout)?)
}

/// `veil SUBCOMMAND ARGS`, as `name` (its stderr in `log_dir`); wait for its lines.
#[allow(dead_code)] // not every test binary starts veil this way
pub(crate) fn spawn_veil(
    name: &str,
    subcommand: &str,
    args: &[&str],
    log_dir: &Path,
) -> anyhow::Result<Proc> {
    let mut command = veil_command(subcommand);
    command.args(args);
    Proc::spawn(name, command, log_dir)
}
