//! The engine embedded in C, end to end with real programs on loopback:
//!
//!   curl → `veil client` (the Rust command) → QUIC → `veil-c-edge` (examples/edge.c,
//!   plain C99 on libveil.a) → TCP → a Python HTTP origin
//!
//! A 10 MiB download and a 10 MiB upload arrive with the SHA-256 they left with, several
//! at once; a target that refuses the connection comes back as 502 with Proxy-Status
//! `connection_refused`, a name that does not resolve as 502 `dns_error`, a forbidden
//! address as 403, a name the C host's own tunnel hook (a callback) refuses as 403
//! `http_request_denied`.

mod support;

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use support::{Installed, TempDir, crate_dir, require_tool, run_bounded};

const TOKEN: &str = "c-edge-token";
const TEN_MIB: usize = 10 << 20;
const STARTUP: Duration = Duration::from_secs(30);
const TRANSFER: Duration = Duration::from_secs(120);

/// A child process killed on drop, whose stdout lines can be awaited.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut command: Command, dir: &Path) -> Self {
        let stderr = dir.join(format!("{name}.stderr"));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            child,
            lines,
            stderr,
        }
    }

    /// The rest of the first stdout line starting with `prefix`.
    fn wait_for(&self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(STARTUP) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(e) => panic!(
                    "{} printed no `{prefix}` line ({e}); stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `veil` command, built by cargo beside libveil.a.
fn veil_binary() -> PathBuf {
    let veil = support::build_artifacts().join("veil");
    assert!(veil.is_file(), "{} was not built", veil.display());
    veil
}

/// An HTTP origin on loopback: Python's http.server serving `dir`, plus PUT, which
/// answers with the SHA-256 of the body it received.
const ORIGIN: &str = r#"
import hashlib, http.server, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_PUT(self):
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while left:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        body = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
    lambda *a: Handler(*a, directory=sys.argv[1]))
print("origin: listening on", server.server_address[1], flush=True)
server.serve_forever()
"#;

fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in boring::sha::sha256(bytes) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Pseudo-random bytes (xorshift), so that compression or caching cannot help.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn curl(args: &[&str]) -> support::Output {
    let mut command = Command::new(require_tool("curl", "curl"));
    command
        .args(["--silent", "--show-error", "--noproxy", ""])
        .args(["--max-time", &TRANSFER.as_secs().to_string()])
        .args(args);
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    run_bounded(command, TRANSFER + Duration::from_secs(10))
}

/// The origin (serving `big.bin`), the C edge and a `veil client` that pins it. Fields
/// drop in order: the programs stop before their directory goes.
struct Rig {
    client: Proc,
    edge: Proc,
    _origin: Proc,
    origin_port: String,
    socks: String,
    http: String,
    served: Vec<u8>,
    dir: TempDir,
}

impl Rig {
    fn start() -> Self {
        let python = require_tool("python3", "python3");
        require_tool("curl", "curl");
        let veil = veil_binary();
        let installed = Installed::new();
        let dir = TempDir::new("e2e");
        let edge_bin = dir.path().join("veil-c-edge");
        installed.compile(&crate_dir().join("examples/edge.c"), &edge_bin, &[]);

        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).expect("www");
        let served = random_bytes(TEN_MIB, 0x5eed);
        std::fs::write(www.join("big.bin"), &served).expect("big.bin");
        let mut origin = Command::new(python);
        origin.arg("-c").arg(ORIGIN).arg(&www);
        let origin = Proc::spawn("origin", origin, dir.path());
        let origin_port = origin.wait_for("origin: listening on");

        // The C edge may reach loopback (the origin); the client pins its certificate.
        let mut edge = Command::new(&edge_bin);
        edge.args(["--token", TOKEN, "--allow", "127.0.0.0/8"]);
        // The C host's own tunnel hook (a callback): names under .denied.test are refused.
        edge.args(["--deny-suffix", ".denied.test"]);
        let edge = Proc::spawn("veil-c-edge", edge, dir.path());
        let pin = edge.wait_for("veil-c-edge: fingerprint");
        let edge_addr = edge.wait_for("veil-c-edge: listening on");
        let mut client = Command::new(&veil);
        client
            .arg("client")
            .args(["--edge", &edge_addr, "--pin", &pin, "--token", TOKEN])
            .args(["--socks", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        let client = Proc::spawn("veil client", client, dir.path());
        let socks = client.wait_for("veil: socks5 listening on");
        let http = format!("http://{}", client.wait_for("veil: http listening on"));
        Self {
            client,
            edge,
            _origin: origin,
            origin_port,
            socks,
            http,
            served,
            dir,
        }
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- edge stderr:\n{}\n--- client stderr:\n{}",
            self.edge.stderr(),
            self.client.stderr()
        )
    }

    /// curl through the HTTP proxy with the response head included and the status on
    /// the last line.
    fn fetch_with_status(&self, url: &str) -> support::Output {
        curl(&[
            "-x",
            &self.http,
            "--include",
            "--write-out",
            "\n%{http_code}",
            url,
        ])
    }
}

#[test]
fn curl_through_veil_client_and_the_c_edge_reaches_a_real_origin() {
    let rig = Rig::start();
    let url = format!("http://127.0.0.1:{}/big.bin", rig.origin_port);
    let upload = rig.dir.path().join("upload.bin");
    let uploaded = random_bytes(TEN_MIB, 0xcafe);
    std::fs::write(&upload, &uploaded).expect("upload.bin");
    let upload = upload.to_str().expect("UTF-8 path").to_owned();

    // Two downloads (SOCKS5 and HTTP proxy) and an upload at once, each checksummed: a
    // download's body is the file, an upload's the SHA-256 the origin computed.
    let downloaded = sha256_hex(&rig.served);
    let jobs = [
        (
            "download via socks5",
            vec!["--socks5-hostname", &rig.socks, "--output", "-", &url],
            downloaded.clone(),
        ),
        (
            "download via http proxy",
            vec!["-x", &rig.http, "--output", "-", &url],
            downloaded,
        ),
        (
            "upload via socks5",
            vec!["--socks5-hostname", &rig.socks, "-T", &upload, &url],
            sha256_hex(&uploaded),
        ),
    ];
    thread::scope(|scope| {
        let running: Vec<_> = jobs
            .iter()
            .map(|(what, args, expected)| (what, expected, scope.spawn(|| curl_raw(args))))
            .collect();
        for (what, expected, job) in running {
            let out = job.join().expect("curl thread");
            assert!(
                out.status.success(),
                "{what}: curl {}: {}\n{}",
                out.status,
                out.stderr,
                rig.diagnostics()
            );
            let got = if what.starts_with("download") {
                sha256_hex(&out.stdout)
            } else {
                String::from_utf8_lossy(&out.stdout).into_owned()
            };
            assert_eq!(&got, expected, "{what}: checksum\n{}", rig.diagnostics());
        }
    });
}

#[test]
fn the_c_edge_refuses_with_the_status_of_the_failure() {
    let rig = Rig::start();
    // A target that refuses the TCP connection: 502 connection_refused.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
    let closed_port = closed.local_addr().expect("port").port();
    drop(closed);
    let refused = rig.fetch_with_status(&format!("http://127.0.0.1:{closed_port}/"));
    assert!(
        refused.stdout.ends_with("\n502") && refused.stdout.contains("connection_refused"),
        "refused target: {}\n{}\n{}",
        refused.stdout,
        refused.stderr,
        rig.diagnostics()
    );
    // A name that does not resolve: 502 dns_error.
    let unresolved = rig.fetch_with_status("http://no-such-host.invalid/");
    assert!(
        unresolved.stdout.ends_with("\n502") && unresolved.stdout.contains("dns_error"),
        "unresolvable target: {}\n{}\n{}",
        unresolved.stdout,
        unresolved.stderr,
        rig.diagnostics()
    );
    // A metadata address: the engine refuses it before the C edge sees it: 403.
    let forbidden = rig.fetch_with_status("http://169.254.169.254/");
    assert!(
        forbidden.stdout.ends_with("\n403"),
        "metadata address: {}\n{}",
        forbidden.stdout,
        rig.diagnostics()
    );
    // A name the C host's tunnel hook refuses: 403 http_request_denied, never resolved.
    let hooked = rig.fetch_with_status("http://www.denied.test/");
    assert!(
        hooked.stdout.ends_with("\n403") && hooked.stdout.contains("http_request_denied"),
        "a name the hook refuses: {}\n{}",
        hooked.stdout,
        rig.diagnostics()
    );
    // The edge is still serving after the refusals.
    let url = format!("http://127.0.0.1:{}/big.bin", rig.origin_port);
    let out = curl_raw(&["-x", &rig.http, "--output", "-", &url]);
    assert_eq!(
        sha256_hex(&out.stdout),
        sha256_hex(&rig.served),
        "{}",
        rig.diagnostics()
    );
}

/// What curl printed, as bytes (10 MiB do not go through a String).
struct RawOutput {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs curl (bounded by its own `--max-time`) and keeps its output as bytes.
fn curl_raw(args: &[&str]) -> RawOutput {
    let mut command = Command::new(require_tool("curl", "curl"));
    command
        .args(["--silent", "--show-error", "--noproxy", ""])
        .args(["--max-time", &TRANSFER.as_secs().to_string()])
        .args(args)
        .stdin(Stdio::null());
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    let out = command.output().expect("running curl");
    RawOutput {
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
