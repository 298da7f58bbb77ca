//! The glommio thread-per-core edge end to end: curl → `veil client` → a rebinding UDP relay
//! → `veil server --runtime glommio --cores 2` → nginx.
//!
//! The kernel spreads an edge's `SO_REUSEPORT` sockets by 4-tuple, so a client that keeps its
//! address always reaches the core that owns its connection. Each client here goes through
//! a relay that plays a NAT rebinding its port: it keeps moving the client's traffic to
//! another of its source ports, and the kernel then hands some of those datagrams to the
//! other core, which must forward them to the owner named in the connection ID. The test
//! checks that both cores own connections, that forwarding happened (the edge prints each
//! core's counters at SIGTERM), and that every transfer arrived intact.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use support::{
    Client, Edge, Origin, STARTUP, TOKEN, TempDir, curl, require_tool, write_random_file,
};

/// Size of each downloaded file.
const FILE: usize = 2 << 20;
/// Transfers per client.
const PER_CLIENT: usize = 3;
/// Clients started at first; more (up to `MAX_CLIENTS`) while one core owns none.
const FIRST_CLIENTS: usize = 4;
const MAX_CLIENTS: usize = 16;
/// Source ports each relay moves between, and how often it moves.
const RELAY_PORTS: usize = 4;
const REBIND_EVERY: Duration = Duration::from_millis(40);
/// Bound of one transfer in a debug build on a busy machine.
const TRANSFER: Duration = Duration::from_secs(120);

/// A UDP relay in front of the edge for one client, rebinding like a NAT: datagrams from
/// the client leave from one of `RELAY_PORTS` sockets, a different one every
/// `REBIND_EVERY`; the edge's answers, on whichever socket they arrive, go back to the
/// client. Its threads stop when it drops.
struct RebindingRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl RebindingRelay {
    fn start(edge: SocketAddr) -> anyhow::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let addr = front.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let mut back = Vec::with_capacity(RELAY_PORTS);
        for _ in 0..RELAY_PORTS {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            back.push(socket);
        }
        // Edge → client, one thread per source port.
        for socket in &back {
            let socket = socket.try_clone()?;
            let front = front.try_clone()?;
            let (stop, client) = (Arc::clone(&stop), Arc::clone(&client));
            thread::spawn(move || {
                let mut buf = vec![0; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, _)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let to = *client.lock().expect("relay lock");
                    if let (Some(to), Some(bytes)) = (to, buf.get(..len)) {
                        let _ = front.send_to(bytes, to);
                    }
                }
            });
        }
        // Client → edge, from the current source port.
        front.set_read_timeout(Some(Duration::from_millis(100)))?;
        let thread_stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = vec![0; 65_536];
            let started = Instant::now();
            while !thread_stop.load(Ordering::Relaxed) {
                let Ok((len, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                *client.lock().expect("relay lock") = Some(from);
                let ticks = started.elapsed().as_millis() / REBIND_EVERY.as_millis();
                let port = usize::try_from(ticks).unwrap_or(0) % RELAY_PORTS;
                if let (Some(socket), Some(bytes)) = (back.get(port), buf.get(..len)) {
                    let _ = socket.send_to(bytes, edge);
                }
            }
        });
        Ok(Self { addr, stop })
    }
}

impl Drop for RebindingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A `veil client` behind its own relay.
struct RelayedClient {
    client: Client,
    _relay: RebindingRelay,
}

/// Connections the edge logged as established, by core.
fn connections_by_core(edge: &mut Edge) -> HashMap<u16, usize> {
    let mut by_core = HashMap::new();
    for line in edge.proc().stderr().lines() {
        if !line.contains("QUIC connection established") {
            continue;
        }
        let core = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("core="))
            .and_then(|core| core.parse().ok());
        if let Some(core) = core {
            *by_core.entry(core).or_default() += 1;
        }
    }
    by_core
}

/// One `veil: core N: ...` line's counters.
#[derive(Debug, Default)]
struct CoreLine {
    connections: u64,
    forwarded_out: u64,
    forwarded_in: u64,
}

fn parse_core_line(line: &str) -> anyhow::Result<CoreLine> {
    let mut counters = CoreLine::default();
    for part in line.split(',') {
        let part = part.trim();
        let number = |name: &str| -> Option<u64> {
            part.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        };
        if let Some(n) = number("connections") {
            counters.connections = n;
        } else if let Some(n) = number("forwarded out") {
            counters.forwarded_out = n;
        } else if let Some(n) = number("forwarded in") {
            counters.forwarded_in = n;
        }
    }
    Ok(counters)
}

#[test]
fn a_two_core_glommio_edge_forwards_rebound_clients_to_their_owner() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("glommio")?;
    let origin = Origin::start(dir.path())?;
    let sum = write_random_file(&origin.root().join("file.bin"), FILE, 0x9e37)?;
    let mut edge = Edge::start(
        dir.path(),
        &[
            "--runtime",
            "glommio",
            "--cores",
            "2",
            "--token",
            TOKEN,
            "--allow-target",
            "127.0.0.0/8",
        ],
    )?;
    let pin = edge.pin()?.to_owned();

    // Clients, each connected by a first small request, until both cores own connections.
    let mut clients: Vec<RelayedClient> = Vec::new();
    while clients.len() < MAX_CLIENTS {
        let relay = RebindingRelay::start(edge.addr())?;
        let client = Client::start(dir.path(), relay.addr, &["--pin", &pin, "--token", TOKEN])?;
        let socks = client.socks().to_string();
        let probe = curl(
            &["--socks5-hostname", &socks, "-o", "/dev/null", &origin.url("/")],
            TRANSFER,
        )?;
        ensure!(probe.status.success(), "first request: {}", probe.stderr);
        clients.push(RelayedClient {
            client,
            _relay: relay,
        });
        let by_core = connections_by_core(&mut edge);
        if clients.len() >= FIRST_CLIENTS && by_core.len() == 2 {
            break;
        }
    }
    let by_core = connections_by_core(&mut edge);
    ensure!(
        by_core.len() == 2,
        "after {} clients the connections are all on one core: {by_core:?}\n{}",
        clients.len(),
        edge.diagnostics()
    );

    // Every client downloads at once, while its relay keeps rebinding.
    let url = origin.url("/file.bin");
    let transfers: Vec<_> = clients
        .iter()
        .enumerate()
        .flat_map(|(index, relayed)| {
            let socks = relayed.client.socks().to_string();
            let url = url.clone();
            let out_dir = dir.path().to_owned();
            (0..PER_CLIENT).map(move |n| {
                let socks = socks.clone();
                let url = url.clone();
                let out = out_dir.join(format!("got-{index}-{n}.bin"));
                thread::spawn(move || -> anyhow::Result<String> {
                    let out_text = out.to_string_lossy().into_owned();
                    let result =
                        curl(&["--socks5-hostname", &socks, "-o", &out_text, &url], TRANSFER)?;
                    ensure!(result.status.success(), "curl: {}", result.stderr);
                    support::sha256_file(&out)
                })
            })
        })
        .collect();
    for transfer in transfers {
        let got = transfer
            .join()
            .map_err(|_| anyhow::anyhow!("a transfer thread panicked"))?
            .with_context(|| edge.diagnostics())?;
        ensure!(got == sum, "a transfer's checksum differs");
    }

    let status = edge.proc().terminate(STARTUP)?;
    ensure!(status.success(), "the edge exited with {status}");
    let mut lines = Vec::new();
    for core in 0..2 {
        let line = edge
            .proc()
            .wait_for_line(&format!("veil: core {core}: "), STARTUP)?;
        lines.push(parse_core_line(&line)?);
    }
    let forwarded_out: u64 = lines.iter().map(|l| l.forwarded_out).sum();
    let forwarded_in: u64 = lines.iter().map(|l| l.forwarded_in).sum();
    let connections: u64 = lines.iter().map(|l| l.connections).sum();
    if forwarded_out == 0 || forwarded_in == 0 {
        bail!(
            "no datagram was forwarded between cores ({lines:?})\n{}",
            edge.diagnostics()
        );
    }
    ensure!(
        lines.iter().all(|l| l.connections > 0),
        "a core owned no connection: {lines:?}"
    );
    ensure!(
        connections >= u64::try_from(clients.len())?,
        "every client's connection is counted: {lines:?}"
    );
    eprintln!(
        "glommio e2e: {} clients, {} transfers, per core {lines:?}",
        clients.len(),
        clients.len() * PER_CLIENT
    );
    Ok(())
}
