//! The CONNECT-IP path of `veil bench udp`: the same load, as UDP packets inside IP packets
//! in one CONNECT-IP tunnel (RFC 9484) from a veil-tokio client node in the bench process
//! to the `veil server` child, whose `decap` off-ramp takes each packet apart and sends its
//! payload from a UDP socket to the echo server; the echoes come back as IP packets.
//!
//! No TUN device and no privileges: the generator builds the IPv4 and UDP headers itself
//! (veil-proto's `encode_udp`) from the address the edge assigned, as a TUN device's kernel
//! would, and reads the echoes' payloads out of the packets. What it measures against the
//! CONNECT-UDP path is the IP layer's cost: the per-packet checks both ways, the flow
//! table, decapsulation and the IP and UDP headers (28 more bytes per datagram).

use std::net::{IpAddr, SocketAddr};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{mpsc, oneshot};
use veil_engine::IpScope;
use veil_engine::{ClientConfig, Config, QuicConfig, RoleConfig, Verify};
use veil_proto::ip::{IpPacket, Transport, encode_udp};
use veil_tokio::{IpTunnel, Node, Options};

use super::load::{Generator, Step, StepResult};
use super::raw::{sleep_until, spawn_side};
use super::step_thread::{Job, StepThread};

/// The source port of the generator's packets inside the tunnel.
const SOURCE_PORT: u16 = 40_000;
/// Packets the generator takes from the tunnel per wake-up, at most.
const RECV_BATCH: usize = 256;
/// Room for one IP packet the generator builds.
const PACKET_ROOM: usize = 65_535;

/// The pool the bench's edge gives CONNECT-IP clients their addresses from.
pub(crate) const POOL: &str = "10.89.0.0/24";

/// A client node with one IP tunnel to the edge, kept for every step of the path.
pub(crate) struct IpLoad {
    generator: StepThread,
    /// The client node's thread, and what stops it.
    node: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
}

impl IpLoad {
    /// A client of the edge at `edge` (pinned to `pin`) whose packets go to `target`.
    pub(crate) async fn start(
        quic: &QuicConfig,
        edge: SocketAddr,
        pin: &str,
        target: SocketAddr,
    ) -> anyhow::Result<Self> {
        let pin =
            crate::config::parse_pin(pin).with_context(|| format!("the edge's pin {pin:?}"))?;
        let config = Config {
            role: RoleConfig::Client(ClientConfig::new(
                edge,
                "localhost".to_owned(),
                Verify::Pin(pin),
            )),
            quic: quic.clone(),
        };
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        // The client node on a thread of its own, as `veil client` is a process of its own
        // in the CONNECT-UDP path: the generator does not share its thread.
        let (tunnel_tx, tunnel_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let node = spawn_side("ip-node", move || async move {
            let node = Node::start(
                config,
                veil_tokio::client_bind_addr(edge),
                Options::default(),
            )?;
            let tunnel = node.opener().open_ip(IpScope::ANY).await?;
            let _ = tunnel_tx.send(tunnel);
            let _ = stopped.await;
            drop(node);
            Ok(())
        })?;
        let thread = spawn_side("ip-load", move || async move {
            let tunnel = tunnel_rx
                .await
                .context("the client node did not open a tunnel")?;
            Box::pin(load_loop(tunnel, target, jobs, ready_tx)).await
        })?;
        let mut load = Self {
            generator: StepThread::new("CONNECT-IP load generator", jobs_tx, thread),
            node: Some((stop, node)),
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(10), ready).await {
            return Ok(load);
        }
        if let Some((_, node)) = load.node.take().filter(|(_, node)| node.is_finished()) {
            if let Ok(Err(e)) = node.join() {
                return Err(e.context("the CONNECT-IP client node did not start"));
            }
        }
        Err(load.generator.stopped())
    }

    /// Runs one step and returns what it measured.
    pub(crate) async fn run(&mut self, step: Step) -> anyhow::Result<StepResult> {
        self.generator.run(step).await
    }
}

impl Drop for IpLoad {
    /// The generator's thread first (the field's own drop would come too late), then the
    /// node's.
    fn drop(&mut self) {
        let _ = self.generator.stopped();
        if let Some((stop, node)) = self.node.take() {
            let _ = stop.send(());
            let _ = node.join();
        }
    }
}

/// Waits for the edge's IPv4 address, says so on `ready`, then runs the steps.
async fn load_loop(
    tunnel: IpTunnel,
    target: SocketAddr,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    ready: oneshot::Sender<()>,
) -> anyhow::Result<()> {
    let IpTunnel {
        packets,
        mut config,
    } = tunnel;
    let source = loop {
        let v4 = config
            .borrow_and_update()
            .addresses
            .iter()
            .map(veil_engine::IpPrefix::addr)
            .find(IpAddr::is_ipv4);
        if let Some(addr) = v4 {
            break SocketAddr::new(addr, SOURCE_PORT);
        }
        config
            .changed()
            .await
            .context("the tunnel closed before the edge gave an address")?;
    };
    let _ = ready.send(());
    let (sender, mut receiver) = packets.split();
    let mut payload = vec![0; PACKET_ROOM];
    let mut packet = vec![0; PACKET_ROOM];
    let mut echoes = Vec::with_capacity(RECV_BATCH);
    while let Some((step, done)) = jobs.recv().await {
        let mut generator = Generator::new(step, Instant::now());
        loop {
            let now = Instant::now();
            let due = generator.due(now);
            for _ in 0..due {
                let len = generator.fill(now, &mut payload);
                let body = payload.get(..len).unwrap_or_default();
                let packet_len = encode_udp(&mut packet, source, target, body)
                    .map_err(|e| anyhow::anyhow!("building a packet: {e:?}"))?;
                // A packet the engine's queue refuses is lost, as on a full link.
                if !sender
                    .try_send(packet.get(..packet_len).unwrap_or_default())
                    .context("the IP tunnel closed")?
                {
                    generator.refused();
                }
            }
            if generator.done(now) {
                break;
            }
            let wake = generator.next_wake(now);
            tokio::select! {
                biased;
                taken = receiver.recv_many(&mut echoes, RECV_BATCH) => {
                    if taken == 0 {
                        bail!("the IP tunnel closed");
                    }
                    let now = Instant::now();
                    for echo in echoes.drain(..) {
                        if let Some(body) = udp_payload(&echo, target) {
                            generator.on_echo(now, body);
                        }
                    }
                }
                () = sleep_until(Some(wake)) => {}
            }
        }
        let _ = done.send(generator.finish());
    }
    Ok(())
}

/// The payload of `packet` if it is a UDP datagram from `from`.
fn udp_payload(packet: &[u8], from: SocketAddr) -> Option<&[u8]> {
    let view = IpPacket::new_checked(packet).ok()?;
    let Transport::Udp(udp) = view.transport() else {
        return None;
    };
    (SocketAddr::new(view.source(), udp.source_port()) == from).then(|| udp.payload())
}
