//! Proxies nobody here wrote, measured beside veil in the same run through the same SOCKS5
//! client path: shadowsocks-rust (a TCP proxy, the one users run today) with its classic
//! AEAD and its 2022 cipher, and TUIC v5 (a QUIC proxy on quinn).
//!
//! Each peer is two processes (its local SOCKS5 side and its server), started on loopback
//! ports for the run and stopped when dropped. Their programs are found in `--peer-dir`,
//! then on `PATH`, then in `~/.cargo/bin` (`cargo install shadowsocks-rust` puts them
//! there); `scripts/bench-peers` installs and builds them.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// A peer proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKind {
    /// shadowsocks-rust, `aes-128-gcm` (the classic AEAD construction).
    Shadowsocks,
    /// shadowsocks-rust, `2022-blake3-aes-128-gcm` (SIP022).
    Shadowsocks2022,
    /// TUIC v5 (`tuic-server` and `tuic-client`), CUBIC.
    Tuic,
}

impl PeerKind {
    /// What the tables call it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Shadowsocks => "shadowsocks-rust aes-128-gcm",
            Self::Shadowsocks2022 => "shadowsocks-rust 2022-blake3-aes-128-gcm",
            Self::Tuic => "TUIC v5 (quinn, CUBIC)",
        }
    }

    fn programs(self) -> [&'static str; 2] {
        match self {
            Self::Shadowsocks | Self::Shadowsocks2022 => ["sslocal", "ssserver"],
            Self::Tuic => ["tuic-client", "tuic-server"],
        }
    }
}

/// A running peer: its SOCKS5 address and its two processes (killed when dropped).
pub(crate) struct Peer {
    pub(crate) kind: PeerKind,
    pub(crate) socks: SocketAddr,
    local: Child,
    server: Child,
    /// Files the run wrote (configurations, certificate), removed when dropped.
    dir: Option<PathBuf>,
}

impl Peer {
    /// Starts `kind`, its programs found as the module says: the local side on loopback,
    /// the server at `server_ip`, run by `ip WRAPPER…` when given (`netns exec NAMESPACE`,
    /// the edge's place under `--veth`).
    pub(crate) fn start(
        kind: PeerKind,
        peer_dir: Option<&Path>,
        server_ip: IpAddr,
        wrapper: Option<[&str; 3]>,
    ) -> anyhow::Result<Self> {
        let [local_program, server_program] = kind.programs().map(|p| find_program(p, peer_dir));
        let local_program = local_program?;
        let server_program = server_program?;
        let (server_port, socks_port) = (free_port()?, free_port()?);
        let socks = SocketAddr::from(([127, 0, 0, 1], socks_port));
        let server_at = SocketAddr::new(server_ip, server_port);
        let server_addr = server_at.to_string();
        let server_command = |program: &Path| match wrapper {
            Some(wrapper) => {
                let mut command = Command::new("ip");
                command.args(wrapper).arg(program);
                command
            }
            None => Command::new(program),
        };
        let (server, local, dir) = match kind {
            PeerKind::Shadowsocks | PeerKind::Shadowsocks2022 => {
                let (method, key) = shadowsocks_key(kind, peer_dir)?;
                let cipher = ["-s", server_addr.as_str(), "-m", method, "-k", key.as_str()];
                let server = spawn(server_command(&server_program).args(cipher))?;
                let local = spawn(
                    Command::new(&local_program)
                        .args(["-b", &socks.to_string()])
                        .args(cipher),
                )?;
                (server, local, None)
            }
            PeerKind::Tuic => {
                let dir =
                    std::env::temp_dir().join(format!("veil-bench-tuic-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                let files = tuic_files(&dir, server_at, socks_port)?;
                let server = spawn(server_command(&server_program).arg("-c").arg(&files.0))?;
                let local = spawn(Command::new(&local_program).arg("-c").arg(&files.1))?;
                (server, local, Some(dir))
            }
        };
        // Not ready yet: the bench waits until a byte crosses it (`bench::peer_ready`).
        Ok(Self {
            kind,
            socks,
            local,
            server,
            dir,
        })
    }

    /// Process ids: the local side, then the server.
    pub(crate) fn pids(&self) -> [u32; 2] {
        [self.local.id(), self.server.id()]
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for child in [&mut self.local, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `program` in `peer_dir`, on `PATH` or in `~/.cargo/bin`.
fn find_program(program: &str, peer_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"));
    peer_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&path))
        .chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "{program} not found in --peer-dir, PATH or ~/.cargo/bin \
                 (scripts/bench-peers installs the peers)"
            )
        })
}

/// A loopback TCP port nobody listened on a moment ago (the peers take addresses, not
/// listeners; a race with another program is possible and would show as a failed start).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The method and a fresh key: a password for the classic AEAD, and for SIP022 a random
/// key of the cipher's length, made by shadowsocks-rust's own `ssservice genkey`.
fn shadowsocks_key(
    kind: PeerKind,
    peer_dir: Option<&Path>,
) -> anyhow::Result<(&'static str, String)> {
    if kind == PeerKind::Shadowsocks {
        return Ok(("aes-128-gcm", format!("veil-bench-{}", std::process::id())));
    }
    let method = "2022-blake3-aes-128-gcm";
    let output = Command::new(find_program("ssservice", peer_dir)?)
        .args(["genkey", "-m", method])
        .output()
        .context("ssservice genkey")?;
    let key = String::from_utf8(output.stdout)?.trim().to_owned();
    if !output.status.success() || key.is_empty() {
        bail!("ssservice genkey -m {method} gave no key");
    }
    Ok((method, key))
}

fn spawn(command: &mut Command) -> anyhow::Result<Child> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Their own words about failures reach the bench's reader, as veil's do.
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))
}

/// Writes TUIC's certificate and two configuration files into `dir`; returns the server's
/// and the client's configuration paths.
fn tuic_files(
    dir: &Path,
    server: SocketAddr,
    socks_port: u16,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // rustls (TUIC's) refuses a CA certificate as the server's own, and OpenSSL marks
        // a self-signed one as a CA unless told otherwise.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "keyUsage=critical,digitalSignature"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("openssl (for TUIC's certificate)")?;
    if !status.success() {
        bail!("openssl could not make TUIC's certificate");
    }
    let uuid = "6a0e2b0c-5f4e-4a57-9d8c-2f1b7e3c9a10";
    let password = format!("veil-bench-{}", std::process::id());
    let server_json = serde_json::json!({
        "server": server.to_string(),
        "users": { uuid: password },
        "certificate": cert,
        "private_key": key,
        "congestion_control": "cubic",
        "alpn": ["h3"],
        "log_level": "warn",
    });
    let client = serde_json::json!({
        "relay": {
            "server": format!("localhost:{}", server.port()),
            "ip": server.ip().to_string(),
            "uuid": uuid,
            "password": password,
            "certificates": [cert],
            "congestion_control": "cubic",
            "alpn": ["h3"],
            "udp_relay_mode": "native",
        },
        "local": { "server": format!("127.0.0.1:{socks_port}") },
        "log_level": "warn",
    });
    let (server_path, client_path) = (dir.join("server.json"), dir.join("client.json"));
    std::fs::write(&server_path, serde_json::to_vec_pretty(&server_json)?)?;
    std::fs::write(&client_path, serde_json::to_vec_pretty(&client)?)?;
    Ok((server_path, client_path))
}
