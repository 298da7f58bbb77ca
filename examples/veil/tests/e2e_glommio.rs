//! The glommio thread-per-core edge end to end: curl → `veil client` → a UDP relay →
//! `veil server --runtime glommio --cores 2` → nginx.
//!
//! Clients are added until both cores own connections (the kernel spreads new connections
//! of clients without lanes by 4-tuple). The edge's steering program sends every datagram
//! that carries an ID it issued to the core the ID names, so misdelivery is made by hand:
//! the relays note the connection IDs the edge issues (the source IDs of its long-header
//! packets), and the test sends, from many source ports while the transfers run, Initial
//! packets to those IDs whose source ID names the other core. The program steers an Initial
//! by its source ID (a client's lane), so they reach the wrong core, which must forward them
//! to the core the destination ID names, which drops them (they do not decrypt). The edge
//! prints each core's counters at SIGTERM; the test checks that forwarding happened both
//! ways, that both cores owned connections, and that every transfer's checksum matches.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use support::{
    Client, Edge, Origin, STARTUP, TOKEN, TempDir, curl, require_tool, write_random_file,
};

/// Size of each downloaded file.
const FILE: usize = 8 << 20;
/// Transfers per client.
const PER_CLIENT: usize = 3;
/// Clients started at first; more (up to `MAX_CLIENTS`) while one core owns none.
const FIRST_CLIENTS: usize = 4;
const MAX_CLIENTS: usize = 16;
/// Source ports the misdelivered datagrams come from, per connection ID.
const PROBE_PORTS: usize = 16;
/// Bound of one transfer in a debug build on a busy machine.
const TRANSFER: Duration = Duration::from_secs(120);

/// Connection IDs the edge issued, as the relays saw them.
type Issued = Arc<Mutex<BTreeSet<Vec<u8>>>>;

/// A UDP relay between one client and the edge that notes the connection IDs the edge
/// issues. Its threads stop when it drops.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(edge: SocketAddr, issued: Issued) -> anyhow::Result<Self> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        let addr = front.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        for socket in [&front, &back] {
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        }
        // Edge → client.
        {
            let (back, front) = (back.try_clone()?, front.try_clone()?);
            let (stop, client) = (Arc::clone(&stop), Arc::clone(&client));
            thread::spawn(move || {
                let mut buf = vec![0; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((len, _)) = back.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(bytes) = buf.get(..len) else {
                        continue;
                    };
                    if let Some(scid) = long_header_scid(bytes) {
                        issued.lock().expect("issued lock").insert(scid.to_vec());
                    }
                    if let Some(to) = *client.lock().expect("relay lock") {
                        let _ = front.send_to(bytes, to);
                    }
                }
            });
        }
        // Client → edge.
        let thread_stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = vec![0; 65_536];
            while !thread_stop.load(Ordering::Relaxed) {
                let Ok((len, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                *client.lock().expect("relay lock") = Some(from);
                if let Some(bytes) = buf.get(..len) {
                    let _ = back.send_to(bytes, edge);
                }
            }
        });
        Ok(Self { addr, stop })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The source connection ID of a long-header packet (RFC 9000 §17.2).
fn long_header_scid(packet: &[u8]) -> Option<&[u8]> {
    if packet.first()? & 0x80 == 0 {
        return None;
    }
    let dcid_len = usize::from(*packet.get(5)?);
    let scid_at = 6 + dcid_len;
    let scid_len = usize::from(*packet.get(scid_at)?);
    packet.get(scid_at + 1..scid_at + 1 + scid_len)
}

/// Sends an Initial for each issued ID from `PROBE_PORTS` source ports, its source ID
/// naming the other core: the steering program hands it to the core that does not own the
/// ID. Returns how many were sent.
fn misdeliver(edge: SocketAddr, issued: &Issued) -> anyhow::Result<usize> {
    let ids: Vec<Vec<u8>> = issued
        .lock()
        .expect("issued lock")
        .iter()
        .cloned()
        .collect();
    let mut sent = 0;
    for _ in 0..PROBE_PORTS {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        for id in &ids {
            // An Initial (QUIC v1) to the ID, from a source ID that names the other core,
            // then bytes that will not decrypt.
            let Some(owner) = id
                .get(3..5)
                .map(|core| u16::from_be_bytes([core[0], core[1]]))
            else {
                continue;
            };
            let other = veil_engine::CidLayout::new(1 - owner.min(1), 2)
                .and_then(veil_engine::CidLayout::issue)
                .context("a source ID of the other core")?;
            let mut datagram = vec![0xc0, 0, 0, 0, 1, u8::try_from(id.len())?];
            datagram.extend_from_slice(id);
            datagram.push(u8::try_from(other.len())?);
            datagram.extend_from_slice(&other);
            datagram.resize(1200, 0x5a);
            socket.send_to(&datagram, edge)?;
            sent += 1;
        }
    }
    Ok(sent)
}

/// A `veil client` behind its own relay.
struct RelayedClient {
    client: Client,
    _relay: Relay,
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

fn parse_core_line(line: &str) -> CoreLine {
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
    counters
}

/// Clients, each behind a relay and connected by a first small request, until both cores
/// own connections.
fn connect_clients(
    edge: &mut Edge,
    origin: &Origin,
    dir: &std::path::Path,
    issued: &Issued,
) -> anyhow::Result<Vec<RelayedClient>> {
    let pin = edge.pin()?.to_owned();
    let mut clients: Vec<RelayedClient> = Vec::new();
    while clients.len() < MAX_CLIENTS {
        let relay = Relay::start(edge.addr(), Arc::clone(issued))?;
        let client = Client::start(dir, relay.addr, &["--pin", &pin, "--token", TOKEN])?;
        let socks = client.socks().to_string();
        let probe = curl(
            &[
                "--socks5-hostname",
                &socks,
                "-o",
                "/dev/null",
                &origin.url("/"),
            ],
            TRANSFER,
        )?;
        ensure!(probe.status.success(), "first request: {}", probe.stderr);
        clients.push(RelayedClient {
            client,
            _relay: relay,
        });
        if clients.len() >= FIRST_CLIENTS && connections_by_core(edge).len() == 2 {
            break;
        }
    }
    let by_core = connections_by_core(edge);
    ensure!(
        by_core.len() == 2,
        "after {} clients the connections are all on one core: {by_core:?}\n{}",
        clients.len(),
        edge.diagnostics()
    );
    Ok(clients)
}

#[test]
fn a_two_core_glommio_edge_forwards_misdelivered_datagrams_to_their_owner() -> anyhow::Result<()> {
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
    let issued = Issued::default();

    let clients = connect_clients(&mut edge, &origin, dir.path(), &issued)?;

    // Every client downloads at once, while datagrams for their connections reach the
    // wrong core.
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
                    let result = curl(
                        &["--socks5-hostname", &socks, "-o", &out_text, &url],
                        TRANSFER,
                    )?;
                    ensure!(result.status.success(), "curl: {}", result.stderr);
                    support::sha256_file(&out)
                })
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let probes = misdeliver(edge.addr(), &issued)?;
    ensure!(probes > 0, "the relays saw no issued connection ID");
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
        lines.push(parse_core_line(&line));
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

/// An edge bound to a wildcard address, reached at another of the host's addresses
/// (127.0.0.2), answers from that address: the kernel would pick 127.0.0.1 (its route back
/// to the client), and the client's QUIC drops datagrams from an address it did not write
/// to. glommio's socket passes no packet info, so the glommio core asks for it itself
/// (`adapters/glommio/src/udp.rs`); the tokio edge is checked beside it.
#[test]
fn an_edge_bound_to_a_wildcard_address_answers_from_the_address_it_was_reached_at()
-> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("glommio-wildcard")?;
    let origin = Origin::start(dir.path())?;
    let sum = write_random_file(&origin.root().join("file.bin"), 1 << 20, 0x5eed)?;
    for runtime in ["glommio", "tokio"] {
        let edge = Edge::start_named(
            runtime,
            dir.path(),
            &[
                "--listen",
                "0.0.0.0:0",
                "--runtime",
                runtime,
                "--token",
                TOKEN,
                "--allow-target",
                "127.0.0.0/8",
            ],
        )?;
        let pin = edge.pin()?.to_owned();
        let reached = SocketAddr::from(([127, 0, 0, 2], edge.addr().port()));
        let client = Client::start(dir.path(), reached, &["--pin", &pin, "--token", TOKEN])?;
        let out = dir.path().join(format!("wildcard-{runtime}.bin"));
        let result = curl(
            &[
                "--socks5-hostname",
                &client.socks().to_string(),
                "-o",
                &out.to_string_lossy(),
                &origin.url("/file.bin"),
            ],
            TRANSFER,
        )?;
        ensure!(
            result.status.success(),
            "{runtime}: curl through the edge at {reached}: {}\n{}",
            result.stderr,
            edge.diagnostics()
        );
        ensure!(
            support::sha256_file(&out)? == sum,
            "{runtime}: the checksum differs"
        );
    }
    Ok(())
}
