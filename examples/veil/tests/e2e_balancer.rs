//! Two edges behind a small QUIC-LB-style balancer (written here, in threads) that routes
//! every datagram by the server ID in its destination connection ID (`--edge-id`), and
//! only packets without a known one (a new client's first Initials) by a per-client
//! fallback. Each client's connection stays with the edge that owns it, also after the
//! balancer's own source addresses change and its fallback choices are swapped, which
//! would send a 4-tuple-routed client to the other edge.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Client, Edge, Origin, TOKEN, TempDir, curl, make_certificate, require_tool};
use veil_engine::CidLayout;

const REQUEST: Duration = Duration::from_secs(30);

/// One client address as the balancer sees it: the socket it forwards that client's
/// datagrams from, and the edge its unroutable packets go to.
struct Flow {
    upstream: Arc<UdpSocket>,
    fallback: usize,
}

#[derive(Default)]
struct Routing {
    flows: HashMap<SocketAddr, Flow>,
    next_fallback: usize,
    /// Datagrams routed by the server ID in their connection ID.
    by_server_id: u64,
    /// Datagrams without a known server ID (a client's own first IDs).
    by_fallback: u64,
}

/// The balancer: a front socket clients send to, edges by `--edge-id` (1, 2, ...).
struct Balancer {
    front: Arc<UdpSocket>,
    edges: Arc<Vec<SocketAddr>>,
    routing: Arc<Mutex<Routing>>,
    stop: Arc<AtomicBool>,
}

impl Balancer {
    fn start(edges: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        front.set_read_timeout(Some(Duration::from_millis(50)))?;
        let balancer = Self {
            front,
            edges: Arc::new(edges),
            routing: Arc::default(),
            stop: Arc::default(),
        };
        let (front, edges, routing, stop) = (
            Arc::clone(&balancer.front),
            Arc::clone(&balancer.edges),
            Arc::clone(&balancer.routing),
            Arc::clone(&balancer.stop),
        );
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let datagram = &buf[..len];
                let Ok(mut routing) = routing.lock() else {
                    return;
                };
                let Ok(upstream) = flow(&mut routing, client, &front, &stop, edges.len()) else {
                    continue;
                };
                let server = CidLayout::destination_id(datagram)
                    .and_then(CidLayout::server_of)
                    .map(|(edge, _generation)| usize::from(edge))
                    .filter(|edge| (1..=edges.len()).contains(edge));
                let edge = if let Some(edge) = server {
                    routing.by_server_id += 1;
                    edge - 1
                } else {
                    routing.by_fallback += 1;
                    routing.flows[&client].fallback
                };
                let _ = upstream.send_to(datagram, edges[edge]);
            }
        });
        Ok(balancer)
    }

    fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.front.local_addr()?)
    }

    /// Every client gets a new source address toward the edges (as a NAT rebinding would
    /// give it), and the other edge as its fallback.
    fn rebind(&self) -> anyhow::Result<()> {
        let mut routing = self
            .routing
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let clients: Vec<SocketAddr> = routing.flows.keys().copied().collect();
        for client in clients {
            let old = routing.flows.remove(&client).context("listed")?;
            let upstream = spawn_upstream(client, &self.front, &self.stop)?;
            routing.flows.insert(
                client,
                Flow {
                    upstream,
                    fallback: (old.fallback + 1) % self.edges.len(),
                },
            );
        }
        Ok(())
    }

    fn counts(&self) -> (u64, u64) {
        self.routing
            .lock()
            .map(|r| (r.by_server_id, r.by_fallback))
            .unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The upstream socket of `client`'s flow, made (with the next fallback edge) if new.
fn flow(
    routing: &mut Routing,
    client: SocketAddr,
    front: &Arc<UdpSocket>,
    stop: &Arc<AtomicBool>,
    edges: usize,
) -> anyhow::Result<Arc<UdpSocket>> {
    if let Some(flow) = routing.flows.get(&client) {
        return Ok(Arc::clone(&flow.upstream));
    }
    let upstream = spawn_upstream(client, front, stop)?;
    let fallback = routing.next_fallback % edges;
    routing.next_fallback += 1;
    routing.flows.insert(
        client,
        Flow {
            upstream: Arc::clone(&upstream),
            fallback,
        },
    );
    Ok(upstream)
}

/// A socket toward the edges for `client`, and a thread that carries the edges' answers
/// back to it through the front socket (until the socket is replaced and dropped).
fn spawn_upstream(
    client: SocketAddr,
    front: &Arc<UdpSocket>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Arc<UdpSocket>> {
    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
    upstream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let (socket, front, stop) = (Arc::clone(&upstream), Arc::clone(front), Arc::clone(stop));
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        // Two owners while the flow uses it: this thread's and the routing table's.
        while !stop.load(Ordering::Relaxed) && Arc::strong_count(&socket) > 1 {
            if let Ok(len) = socket.recv(&mut buf) {
                let _ = front.send_to(&buf[..len], client);
            }
        }
    });
    Ok(upstream)
}

fn download(client: &Client, url: &str, served: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let socks = client.socks().to_string();
    let output = curl(
        &[
            "--socks5-hostname",
            &socks,
            "--write-out",
            "%{http_code}",
            "--output",
            out.to_str().context("UTF-8 path")?,
            url,
        ],
        REQUEST,
    )?;
    support::check_download(&output, out, served, || client.diagnostics())
}

#[test]
fn two_edges_behind_a_balancer_that_routes_by_server_id() -> anyhow::Result<()> {
    require_tool("curl", "curl")?;
    let dir = TempDir::new("balancer")?;
    let origin = Origin::start(dir.path())?;
    let served = support::write_random_file(&origin.root().join("file.bin"), 8 << 20, 5)?;
    let (cert, key) = make_certificate(dir.path())?;
    let (cert, key) = (
        cert.to_str().context("UTF-8")?,
        key.to_str().context("UTF-8")?,
    );
    let edges: Vec<Edge> = (1..=2)
        .map(|id| {
            Edge::start_named(
                &format!("edge{id}"),
                dir.path(),
                &[
                    "--cert",
                    cert,
                    "--key",
                    key,
                    "--token",
                    TOKEN,
                    "--allow-target",
                    "127.0.0.0/8",
                    "--edge-id",
                    &id.to_string(),
                ],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let balancer = Balancer::start(edges.iter().map(Edge::addr).collect())?;
    let clients: Vec<Client> = (0..2)
        .map(|_| {
            Client::start(
                dir.path(),
                balancer.addr()?,
                &["--ca", cert, "--server-name", "localhost", "--token", TOKEN],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let url = origin.url("file.bin");
    let out = dir.join("out.bin");
    for client in &clients {
        download(client, &url, &served, &out)?;
    }
    // The fallback spread the two clients' first packets over both edges.
    for edge in &edges {
        ensure!(
            edge.connections_established() == 1,
            "an edge saw {} connections, not 1\n{}",
            edge.connections_established(),
            edge.diagnostics()
        );
    }

    // New source addresses toward the edges, and swapped fallbacks: only the server ID
    // still leads each client's packets to its own edge.
    balancer.rebind()?;
    for client in &clients {
        download(client, &url, &served, &out)?;
    }
    for edge in &edges {
        ensure!(
            edge.connections_established() == 1,
            "a client had to connect again: {} connections\n{}",
            edge.connections_established(),
            edge.diagnostics()
        );
    }
    let (by_server_id, by_fallback) = balancer.counts();
    eprintln!("balancer: {by_server_id} datagrams by server ID, {by_fallback} by fallback");
    ensure!(
        by_fallback <= 8 && by_server_id > 500,
        "{by_server_id} datagrams routed by server ID, {by_fallback} by fallback"
    );
    Ok(())
}
