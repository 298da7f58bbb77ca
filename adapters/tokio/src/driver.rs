//! The driver task: it owns the [`Endpoint`] and its UDP socket, and runs the engine's
//! loop — one input, then drain `poll_transmit` and `poll_event`, then re-arm the timer
//! from `poll_timeout`, then wait on the socket, the timer and the command channel.
//!
//! Tunnels (their TCP sides and UDP sockets) and dials run in their own tasks and talk to
//! the driver over the command channel. That channel is unbounded in type but bounded in
//! content: data commands spend per-tunnel credit ([`TunnelLimits`](crate::TunnelLimits),
//! [`UdpLimits`](crate::UdpLimits)), a tunnel sends at most one wake-up per chunk it
//! drained, and every other command is sent once per tunnel or dial.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use veil_engine::{
    Endpoint, EndpointStats, Event, Recv, RecvMeta, Refusal, Role, ShutdownPlan, TunnelError,
    TunnelId, TunnelKind, TunnelTarget,
};

use crate::command::Command;
use crate::tcp_onramp::TcpSlot;
use crate::tunnel::{self, RelayEnd, Room, Tunnel, TunnelPort};
use crate::udp::{self, RecvBufs, UdpIo};
use crate::udp_tunnel::{self, OnDrop, UdpPort, UdpTunnel};
use crate::{OpenFailure, Options, dial, udp_egress};
use veil_engine::socket_buffers::BufferSizer;

/// The driver's tunnel tables, looked up for every chunk: std's with aHash (reasons in the
/// root Cargo.toml).
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Commands processed per wake-up before the driver flushes output again.
const COMMAND_BATCH: usize = 256;
/// Bytes read from the engine into one chunk.
/// Room for the largest UDP payload and the largest IP packet (65,575 bytes).
const RECV_CHUNK: usize = 64 * 1024 + 64;

/// The driver's state of one open tunnel.
struct Slot {
    port: TunnelPort,
    /// Bytes handed over by the tunnel task that the engine has not taken yet (bounded by
    /// the tunnel's credit).
    pending: VecDeque<Bytes>,
    /// The engine took less than offered; wait for `TunnelWritable`.
    blocked: bool,
    write: WriteSide,
}

/// Where the host's direction of a tunnel stands in the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteSide {
    Open,
    /// The task finished its side; the FIN goes to the engine once `pending` is empty.
    /// `then_abort`: the task aborted after finishing, and the abort waits for the FIN, so
    /// that it stops only the peer's direction (as `Endpoint::tunnel_abort` does after a
    /// finish) rather than resetting bytes the task had handed over before its FIN.
    Finishing {
        then_abort: bool,
    },
    /// The FIN went to the engine.
    Finished,
    /// The peer stopped this direction (`STOP_SENDING`) while its own goes on: the task's
    /// bytes are discarded and their credit returned, and the tunnel ends when the peer's
    /// FIN is read.
    Stopped,
}

/// What woke the driver.
enum Input {
    Datagrams(usize),
    Timer,
    Command(Command),
    /// Nothing came during one turn of busy polling (`Options::busy_poll`).
    Nothing,
}

pub(crate) struct Driver {
    endpoint: Endpoint,
    udp: UdpIo,
    commands: mpsc::UnboundedReceiver<Command>,
    command_tx: mpsc::UnboundedSender<Command>,
    options: Options,
    tunnels: HashMap<TunnelId, Slot>,
    opening: HashMap<TunnelId, oneshot::Sender<Result<Tunnel, OpenFailure>>>,
    udp_tunnels: HashMap<TunnelId, UdpPort>,
    opening_udp: HashMap<TunnelId, oneshot::Sender<Result<UdpTunnel, OpenFailure>>>,
    /// `Node::shutdown` was asked for: the engine runs the sequence, the driver stops when
    /// it says it is closed.
    stopping: bool,
    send_buf: Box<[u8]>,
    recv_chunk: Box<[u8]>,
    /// Where the engine's audit records go (`Node::audit_records`), when it keeps them.
    audit: Option<mpsc::Sender<veil_engine::AuditRecord>>,
    /// Records the channel had no room for (the writer fell behind).
    audit_lost: u64,
    /// Where the hooks' questions go (`Node::decisions`).
    decisions: crate::decisions::DecisionSender,
    /// Edge: the IP egress device, if any.
    device: Option<crate::ip::DeviceLink>,
    /// Edge: the decap off-ramp's flows, if it is the IP egress.
    decap: Option<crate::decap::DecapFlows>,
    /// CONNECT-IP tunnels (their packets ride `udp_tunnels` on a client): a client's
    /// configuration channel, nothing on an edge.
    ip_tunnels: HashMap<TunnelId, Option<watch::Sender<crate::ip::IpTunnelConfig>>>,
    opening_ip: HashMap<TunnelId, oneshot::Sender<Result<crate::ip::IpTunnel, OpenFailure>>>,
    /// Scratch for a packet being checked, and for the ICMP error the engine answers with.
    packet_buf: Vec<u8>,
    icmp_buf: Box<[u8]>,
    /// Edge: connections on the TCP on-ramp (`Node::listen_tcp`).
    tcp: HashMap<veil_engine::ConnectionHandle, TcpSlot>,
    /// Edge: dials under way, aborted when the engine ends their tunnel first (the client
    /// reset its request, or the engine's request timeout refused it): a dial nobody waits
    /// for must not hold a socket until its connect timeout.
    dials: HashMap<TunnelId, tokio::task::AbortHandle>,
    /// Scratch for a TCP connection's bytes on their way to its writer.
    tcp_buf: Box<[u8]>,
    /// A client lane's load, which `Opener` reads to place new tunnels
    /// (`veil_engine::lanes`).
    gauge: Arc<LaneGauge>,
    /// When the socket's buffers grow for a long path, and shrink back (`fit_buffers`).
    buffers: BufferSizer,
}

/// What a driver tells its node's `Opener` of its load: written by the driver, read by
/// the threads that open tunnels (relaxed: an estimate, not an account).
#[derive(Debug, Default)]
pub(crate) struct LaneGauge {
    /// Bytes of the UDP datagrams received and sent so far.
    pub(crate) moved: AtomicU64,
    /// Tunnels alive at the end of the driver's last round of work.
    pub(crate) tunnels: AtomicUsize,
}

impl Driver {
    pub(crate) fn new(
        endpoint: Endpoint,
        udp: UdpIo,
        commands: mpsc::UnboundedReceiver<Command>,
        command_tx: mpsc::UnboundedSender<Command>,
        options: Options,
        audit: Option<mpsc::Sender<veil_engine::AuditRecord>>,
        decisions: crate::decisions::DecisionSender,
    ) -> Self {
        let buffers = BufferSizer::new(options.udp_buffer_long_path);
        Self {
            endpoint,
            udp,
            commands,
            command_tx,
            options,
            tunnels: HashMap::default(),
            opening: HashMap::default(),
            udp_tunnels: HashMap::default(),
            opening_udp: HashMap::default(),
            stopping: false,
            send_buf: vec![0; udp::MAX_GSO_PAYLOAD].into_boxed_slice(),
            recv_chunk: vec![0; RECV_CHUNK].into_boxed_slice(),
            audit,
            audit_lost: 0,
            decisions,
            device: None,
            decap: None,
            ip_tunnels: HashMap::default(),
            opening_ip: HashMap::default(),
            packet_buf: Vec::new(),
            icmp_buf: vec![0; 1280].into_boxed_slice(),
            tcp: HashMap::default(),
            dials: HashMap::default(),
            tcp_buf: vec![0; 64 * 1024].into_boxed_slice(),
            gauge: Arc::default(),
            buffers,
        }
    }

    /// Hands the engine's audit records to the writer; a full channel drops them, counted
    /// (an audit log never holds traffic back).
    fn pass_audit(&mut self) {
        while let Some(record) = self.endpoint.poll_audit() {
            let Some(audit) = &self.audit else {
                continue;
            };
            if audit.try_send(record).is_err() {
                self.audit_lost += 1;
                if self.audit_lost.is_power_of_two() {
                    tracing::warn!(
                        lost = self.audit_lost,
                        "audit records dropped: the writer is behind"
                    );
                }
            }
        }
    }

    /// Runs until shutdown completes or the socket fails.
    pub(crate) async fn run(mut self) -> io::Result<EndpointStats> {
        let mut recv_bufs = RecvBufs::new();
        // Until when the driver polls rather than sleeps (`Options::busy_poll`), and
        // whether the last turn found nothing (no flush needed).
        let mut polling_until: Option<Instant> = None;
        let mut idle_turn = false;
        loop {
            if !idle_turn {
                self.flush().await?;
                self.fit_buffers();
                if self.advance_phase() {
                    self.flush().await?;
                    return Ok(self.endpoint.stats());
                }
                polling_until = self.options.busy_poll.map(|poll| Instant::now() + poll);
            }
            let deadline = self.deadline();
            // Polling until the window closes, or a deadline passes (the sleeping select
            // below then fires at once). The clock is read only while a window is open.
            let polling = polling_until.is_some_and(|until| {
                let now = Instant::now();
                now < until && deadline.is_none_or(|deadline| deadline > now)
            });
            let input = if polling {
                // One turn of the runtime (its I/O polled without sleeping, the relays run),
                // then back here: the CPU stays awake for the answer that is due, and no
                // timer is set for so short a wait.
                tokio::select! {
                    biased;
                    received = self.udp.recv(&mut recv_bufs) => Input::Datagrams(received?),
                    command = self.commands.recv() => match command {
                        Some(command) => Input::Command(command),
                        None => Input::Timer,
                    },
                    () = tokio::task::yield_now() => Input::Nothing,
                }
            } else {
                tokio::select! {
                    received = self.udp.recv(&mut recv_bufs) => Input::Datagrams(received?),
                    () = sleep_until(deadline) => Input::Timer,
                    command = self.commands.recv() => match command {
                        Some(command) => Input::Command(command),
                        // The driver holds a sender itself; this cannot end first.
                        None => Input::Timer,
                    },
                }
            };
            idle_turn = matches!(input, Input::Nothing);
            match input {
                Input::Nothing => {}
                Input::Datagrams(count) => self.on_datagrams(&mut recv_bufs, count),
                Input::Timer => self.endpoint.handle_timeout(Instant::now()),
                Input::Command(command) => {
                    self.on_command(command);
                    for _ in 1..COMMAND_BATCH {
                        match self.commands.try_recv() {
                            Ok(command) => self.on_command(command),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
    }

    /// Grows the socket's buffers while the engine has a connection on a path longer than
    /// a LAN, and as its flights grow, and gives them back when it has none
    /// (`Options::udp_buffer_long_path`, `Endpoint::long_paths`,
    /// `Endpoint::received_flight`).
    fn fit_buffers(&mut self) {
        let udp = &self.udp;
        let resize = self
            .buffers
            .fit(&self.endpoint, || udp.recv_buffer_reported());
        if let Some(bytes) = resize {
            tracing::debug!(
                bytes,
                long_paths = self.endpoint.long_paths(),
                flight = self.endpoint.received_flight(),
                "socket buffers resized for the paths"
            );
            self.udp.size_buffers(bytes);
        }
    }

    /// The engine's next deadline (the shutdown's among them).
    fn deadline(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }

    fn on_datagrams(&mut self, bufs: &mut RecvBufs, count: usize) {
        let now = Instant::now();
        let local = self.udp.local_addr();
        for index in 0..count {
            let Some((from, dst_ip, datagrams)) = bufs.datagrams(index) else {
                continue;
            };
            let meta = RecvMeta {
                from,
                to: local_for(self.endpoint.role(), local, dst_ip),
            };
            let mut bytes = 0;
            for datagram in datagrams {
                bytes += datagram.len();
                self.endpoint.handle_datagram(now, meta, datagram);
            }
            self.count_traffic(bytes);
        }
    }

    /// Adds to the lane's traffic (read by other threads: relaxed, a load estimate).
    fn count_traffic(&self, bytes: usize) {
        self.gauge
            .moved
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Reports the lane's load into `gauge` (the node's, which its `Opener` reads).
    pub(crate) fn with_gauge(mut self, gauge: Arc<LaneGauge>) -> Self {
        self.gauge = gauge;
        self
    }

    /// Drains events and transmits until the engine has nothing more to say. Events come
    /// first: a tunnel's bytes reach its TCP connection (written by the port, see
    /// `tunnel::Down::direct`) and new tunnels' dials start before the driver sends
    /// acknowledgements and spends quiche's `send` on connections with nothing to say.
    async fn flush(&mut self) -> io::Result<()> {
        loop {
            let mut progressed = false;
            while let Some(connection) = self.endpoint.poll_tcp_ready() {
                progressed = true;
                self.pump_tcp(connection);
            }
            while let Some(event) = self.endpoint.poll_event() {
                progressed = true;
                self.on_event(event);
            }
            while let Some(transmit) = self
                .endpoint
                .poll_transmit(Instant::now(), &mut self.send_buf)
            {
                progressed = true;
                self.count_traffic(transmit.len);
                let contents = self.send_buf.get(..transmit.len).unwrap_or_default();
                // Bound to a wildcard address: answer from the address the peer wrote to.
                let from = Some(transmit.from.ip()).filter(|ip| {
                    self.udp.local_addr().ip().is_unspecified() && !ip.is_unspecified()
                });
                match transmit.segment_size {
                    Some(segment) if segment < transmit.len => {
                        let max = self.udp.max_gso_segments();
                        for run in udp::gso_runs(transmit.len, segment, max) {
                            let bytes = contents.get(run).unwrap_or_default();
                            let segment_size = (bytes.len() > segment).then_some(segment);
                            self.udp
                                .send_from(transmit.to, from, bytes, segment_size)
                                .await?;
                        }
                    }
                    _ => {
                        self.udp
                            .send_from(transmit.to, from, contents, None)
                            .await?;
                    }
                }
            }
            self.pass_audit();
            if !progressed {
                self.gauge
                    .tunnels
                    .store(self.endpoint.tunnel_count(), Ordering::Relaxed);
                return Ok(());
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::ConnectionEstablished { connection, peer } => {
                if self.tcp.contains_key(&connection) {
                    tracing::info!(?connection, %peer, "TCP connection established");
                } else {
                    tracing::info!(?connection, %peer, "QUIC connection established");
                }
            }
            Event::ConnectionLost { connection, reason } => {
                self.on_connection_lost(connection, &reason);
            }
            Event::TcpDial { connection, to } => self.dial_edge(connection, to),
            Event::TunnelRequest {
                tunnel,
                kind,
                target,
                client,
            } => self.on_tunnel_request(tunnel, kind, target, &client),
            Event::TunnelOpened { tunnel } => self.on_opened(tunnel),
            Event::TunnelRefused { tunnel, reason } => {
                tracing::debug!(?tunnel, ?reason, "tunnel refused");
                self.abandon_dial(tunnel);
                if let Some(reply) = self.opening.remove(&tunnel) {
                    let _ = reply.send(Err(OpenFailure::Refused(reason)));
                } else if let Some(reply) = self.opening_udp.remove(&tunnel) {
                    let _ = reply.send(Err(OpenFailure::Refused(reason)));
                } else if let Some(reply) = self.opening_ip.remove(&tunnel) {
                    let _ = reply.send(Err(OpenFailure::Refused(reason)));
                }
            }
            Event::TunnelDatagrams { tunnel } => {
                if self.ip_tunnels.get(&tunnel).is_some_and(Option::is_none) {
                    self.packets_to_device(tunnel);
                } else {
                    self.read_datagrams(tunnel);
                }
            }
            Event::IpTunnelConfigured { tunnel } => self.on_ip_configured(tunnel),
            Event::IpFlowOpened { .. }
            | Event::IpFlowReadable { .. }
            | Event::IpFlowClosed { .. } => {
                self.on_flow_event(&event);
            }
            Event::TunnelReadable { tunnel } => self.read_tunnel(tunnel),
            Event::TunnelWritable { tunnel } => {
                if let Some(slot) = self.tunnels.get_mut(&tunnel) {
                    slot.blocked = false;
                }
                self.write_tunnel(tunnel);
            }
            Event::TunnelClosed { tunnel, reason } => {
                tracing::debug!(?tunnel, ?reason, "tunnel closed");
                self.abandon_dial(tunnel);
                if let Some(reply) = self.opening.remove(&tunnel) {
                    let _ = reply.send(Err(OpenFailure::Stopped));
                }
                if let Some(reply) = self.opening_udp.remove(&tunnel) {
                    let _ = reply.send(Err(OpenFailure::Stopped));
                }
                if let Some(reply) = self.opening_ip.remove(&tunnel) {
                    let _ = reply.send(Err(OpenFailure::Stopped));
                }
                self.ip_tunnels.remove(&tunnel);
                if let Some(port) = self.udp_tunnels.remove(&tunnel) {
                    port.close();
                }
                if let Some(slot) = self.tunnels.remove(&tunnel) {
                    slot.port.closed(reason);
                }
            }
            Event::TunnelDecision {
                tunnel,
                kind,
                target,
                client,
            } => self.ask_tunnel(tunnel, kind, target, client),
            Event::IngressDecision {
                connection,
                peer,
                server_name,
            } => self.ask_ingress(connection, peer, server_name),
            other => tracing::debug!(event = ?other, "unhandled engine event"),
        }
    }

    /// Edge: a CONNECT passed the engine's checks; resolve, check egress and dial in a
    /// task of its own.
    ///
    /// While draining, the engine reports only requests that were in flight when its GOAWAY
    /// went out (it rejects later ones itself): GOAWAY promised to process them.
    fn on_request(&mut self, tunnel: TunnelId, target: TunnelTarget) {
        let commands = self.command_tx.clone();
        let timeout = self.options.connect_timeout;
        // An address, or a name in the engine's cache: the engine plans the dial now, and
        // the task spares a lookup and a round trip back here to ask.
        let known =
            dial::known_addresses(&target).or_else(|| self.endpoint.cached_addresses(tunnel));
        let plan = match known.map(|addrs| self.endpoint.egress_plan(tunnel, &addrs)) {
            None => None,
            Some(Ok(plan)) => Some(plan),
            Some(Err(refusal)) => {
                tracing::info!(?tunnel, %target, ?refusal, "dial refused");
                return self.refuse(tunnel, refusal);
            }
        };
        let dial = tokio::spawn(async move {
            let result = dial::dial(tunnel, &target, plan, &commands, timeout).await;
            if let Err(refusal) = &result {
                tracing::info!(?tunnel, %target, ?refusal, "dial failed");
            }
            let _ = commands.send(Command::Dialed { tunnel, result });
        });
        self.dials.insert(tunnel, dial.abort_handle());
    }

    /// The engine ended `tunnel` while its dial was under way: the dial stops.
    fn abandon_dial(&mut self, tunnel: TunnelId) {
        if let Some(dial) = self.dials.remove(&tunnel) {
            dial.abort();
            tracing::debug!(?tunnel, "dial abandoned: the tunnel ended first");
        }
    }

    /// Hands a hook's question about a request to the embedder; its answer comes back as a
    /// command. No embedder, or no answer: refused at once.
    fn ask_tunnel(
        &mut self,
        tunnel: TunnelId,
        kind: TunnelKind,
        target: TunnelTarget,
        client: veil_engine::ClientIdentity,
    ) {
        let (answer, verdict) = oneshot::channel();
        let question = crate::Decision::Tunnel {
            tunnel,
            kind,
            target,
            client,
            answer,
        };
        if self.decisions.try_send(question).is_err() {
            let refuse = veil_engine::TunnelVerdict::Refuse(Refusal::Internal);
            let _ = self
                .endpoint
                .decide_tunnel(tunnel, refuse, veil_engine::Tags::new());
            return;
        }
        let commands = self.command_tx.clone();
        tokio::spawn(async move {
            let (verdict, tags) = verdict.await.unwrap_or((
                veil_engine::TunnelVerdict::Refuse(Refusal::Internal),
                veil_engine::Tags::new(),
            ));
            let _ = commands.send(Command::DecideTunnel {
                tunnel,
                verdict: Box::new(verdict),
                tags,
            });
        });
    }

    /// Hands a hook's question about a connection to the embedder (see `ask_tunnel`).
    fn ask_ingress(
        &mut self,
        connection: veil_engine::ConnectionHandle,
        peer: SocketAddr,
        server_name: Option<String>,
    ) {
        //# RFC 9114 §8.1: "H3_INTERNAL_ERROR (0x0102): An internal error has occurred in
        //# the HTTP stack."
        let close = veil_engine::IngressVerdict::Close { error_code: 0x0102 };
        let (answer, verdict) = oneshot::channel();
        let question = crate::Decision::Ingress {
            connection,
            peer,
            server_name,
            answer,
        };
        if self.decisions.try_send(question).is_err() {
            let _ = self.endpoint.decide_ingress(connection, close);
            return;
        }
        let commands = self.command_tx.clone();
        tokio::spawn(async move {
            let verdict = verdict.await.unwrap_or(close);
            let _ = commands.send(Command::DecideIngress {
                connection,
                verdict,
            });
        });
    }

    fn refuse(&mut self, tunnel: TunnelId, refusal: Refusal) {
        if let Err(e) = self.endpoint.refuse_tunnel(tunnel, refusal) {
            tracing::debug!(?tunnel, error = %e, "refusing a tunnel failed");
        }
    }

    fn on_dialed(&mut self, tunnel: TunnelId, result: Result<dial::Connected, Refusal>) {
        self.dials.remove(&tunnel);
        let dial::Connected { stream, peer } = match result {
            Ok(connected) => connected,
            Err(refusal) => return self.refuse(tunnel, refusal),
        };
        self.endpoint.egress_connected(tunnel, peer);
        // A PROXY header for the origin, when the edge sends one there: before any tunnel
        // byte.
        let preamble = self.endpoint.egress_preamble(tunnel, peer);
        if let Err(e) = self.endpoint.accept_tunnel(tunnel) {
            // The client gave up (reset the stream) while we dialled.
            tracing::debug!(?tunnel, error = %e, "accepting a tunnel failed");
            return;
        }
        let tunnel_handle = self.insert_tunnel(tunnel);
        let Some(preamble) = preamble else {
            // The relay's own future is the task: a wrapper around it would add its own
            // locals to every idle tunnel's allocation (184 bytes, measured).
            tokio::spawn(tunnel_handle.relay(stream, Bytes::new(), RelayEnd::BothFinished));
            return;
        };
        tokio::spawn(async move {
            let mut stream = stream;
            // A failed write shows again in the relay, which ends the tunnel.
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &preamble).await;
            tunnel_handle
                .relay(stream, Bytes::new(), RelayEnd::BothFinished)
                .await
        });
    }

    /// Edge: a CONNECT-UDP passed the engine's checks; resolve, check egress and set up
    /// the socket in a task of its own.
    fn on_udp_request(&mut self, tunnel: TunnelId, target: TunnelTarget) {
        let commands = self.command_tx.clone();
        let timeout = self.options.connect_timeout;
        let cached = self.endpoint.cached_addresses(tunnel);
        tokio::spawn(async move {
            let result = udp_egress::connect(tunnel, &target, cached, &commands, timeout).await;
            if let Err(refusal) = &result {
                tracing::info!(?tunnel, %target, ?refusal, "UDP tunnel refused");
            }
            let _ = commands.send(Command::UdpConnected { tunnel, result });
        });
    }

    fn on_udp_connected(&mut self, tunnel: TunnelId, result: Result<udp_egress::Egress, Refusal>) {
        let socket = match result {
            Ok(socket) => socket,
            Err(refusal) => return self.refuse(tunnel, refusal),
        };
        if let Err(e) = self.endpoint.accept_tunnel(tunnel) {
            tracing::debug!(?tunnel, error = %e, "accepting a UDP tunnel failed");
            return;
        }
        let handle = self.insert_udp_tunnel(tunnel, OnDrop::Abort);
        tokio::spawn(udp_egress::relay(socket, handle));
    }

    fn insert_udp_tunnel(&mut self, tunnel: TunnelId, on_drop: OnDrop) -> UdpTunnel {
        let (handle, port) = udp_tunnel::pair(
            tunnel,
            self.command_tx.clone(),
            self.options.udp_limits,
            on_drop,
        );
        self.udp_tunnels.insert(tunnel, port);
        handle
    }

    /// Client: the edge said 2xx; hand the tunnel to whoever opened it.
    fn on_opened(&mut self, tunnel: TunnelId) {
        if let Some(reply) = self.opening_ip.remove(&tunnel) {
            let packets = self.insert_udp_tunnel(tunnel, OnDrop::Finish);
            let (config_tx, config) = watch::channel(crate::ip::IpTunnelConfig::default());
            self.ip_tunnels.insert(tunnel, Some(config_tx));
            let _ = reply.send(Ok(crate::ip::IpTunnel { packets, config }));
            return;
        }
        if let Some(reply) = self.opening_udp.remove(&tunnel) {
            let handle = self.insert_udp_tunnel(tunnel, OnDrop::Finish);
            // An opener that gave up drops the handle, which finishes the tunnel.
            let _ = reply.send(Ok(handle));
            return;
        }
        let Some(reply) = self.opening.remove(&tunnel) else {
            return;
        };
        let handle = self.insert_tunnel(tunnel);
        if reply.send(Ok(handle)).is_err() {
            // The opener gave up; dropping its handle already asked for an abort.
            tracing::debug!(?tunnel, "tunnel opened after its opener left");
        }
    }

    fn insert_tunnel(&mut self, tunnel: TunnelId) -> Tunnel {
        let (handle, port) = tunnel::pair(tunnel, self.command_tx.clone(), self.options.limits);
        self.tunnels.insert(
            tunnel,
            Slot {
                port,
                pending: VecDeque::new(),
                blocked: false,
                write: WriteSide::Open,
            },
        );
        handle
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Open { target, reply } => self.on_open(&target, reply),
            Command::Data { tunnel, bytes } => {
                if let Some(slot) = self.tunnels.get_mut(&tunnel) {
                    if slot.write == WriteSide::Stopped {
                        slot.port.release(bytes.len());
                        return;
                    }
                    slot.pending.push_back(bytes);
                    self.write_tunnel(tunnel);
                }
            }
            Command::Finish { tunnel } => {
                if let Some(slot) = self.tunnels.get_mut(&tunnel) {
                    if slot.write == WriteSide::Open {
                        slot.write = WriteSide::Finishing { then_abort: false };
                        self.write_tunnel(tunnel);
                    }
                }
            }
            Command::Abort { tunnel } => self.on_abort(tunnel),
            Command::Wake { tunnel } => self.read_tunnel(tunnel),
            Command::ChooseEgress {
                tunnel,
                addrs,
                reply,
            } => {
                let _ = reply.send(self.endpoint.egress_plan(tunnel, &addrs));
            }
            Command::Dialed { tunnel, result } => self.on_dialed(tunnel, result),
            Command::OpenUdp { target, reply } => self.on_open_udp(&target, reply),
            Command::UdpDatagram { tunnel, payload } => self.send_datagram(tunnel, &payload),
            Command::UdpClose { tunnel, abort } => self.close_udp(tunnel, abort),
            Command::UdpConnected { tunnel, result } => self.on_udp_connected(tunnel, result),
            Command::OpenIp { scope, reply } => self.on_open_ip(&scope, reply),
            Command::IpFromDevice { packets } => {
                for mut packet in packets {
                    self.packet_from_device(&mut packet);
                }
            }
            Command::IpFlowAnswers { flow, payloads } => {
                for payload in payloads {
                    if let Err(e) = self.endpoint.ip_flow_send(flow, &payload) {
                        tracing::debug!(?flow, error = %e, "flow answer dropped");
                        break;
                    }
                }
            }
            Command::IpScopeResolved { tunnel, result } => {
                self.on_ip_scope_resolved(tunnel, result);
            }
            Command::IpFlowFailed { flow } => {
                let _ = self.endpoint.ip_flow_close(flow);
            }
            Command::DecideTunnel {
                tunnel,
                verdict,
                tags,
            } => {
                if let Err(e) = self.endpoint.decide_tunnel(tunnel, *verdict, tags) {
                    tracing::debug!(?tunnel, error = %e, "a late decision");
                }
            }
            Command::DecideIngress {
                connection,
                verdict,
            } => {
                if let Err(e) = self.endpoint.decide_ingress(connection, verdict) {
                    tracing::debug!(?connection, error = %e, "a late decision");
                }
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.endpoint.stats());
            }
            Command::Shutdown { drain } => {
                // The engine runs the whole sequence (GOAWAY, drain, close); its tunnels'
                // ends reach the relays as events.
                self.stopping = true;
                let plan = ShutdownPlan {
                    drain,
                    close_code: self.options.close_code,
                    grace: self.options.close_grace,
                };
                self.endpoint.shutdown(Instant::now(), plan);
            }
            command @ (Command::TcpAccepted { .. }
            | Command::TcpDialed { .. }
            | Command::TcpInput { .. }
            | Command::TcpDrained { .. }
            | Command::TcpClosed { .. }) => self.on_tcp_command(command),
        }
    }

    /// The TCP connections' commands: the edge's on-ramp and a client's `--transport h2`.
    fn on_tcp_command(&mut self, command: Command) {
        match command {
            Command::TcpAccepted { stream, peer } => self.on_tcp_accepted(stream, peer),
            Command::TcpDialed { connection, result } => match result {
                Ok(stream) => {
                    let slot = TcpSlot::spawn(connection, stream, &self.command_tx);
                    self.tcp.insert(connection, slot);
                    self.endpoint.tcp_connected(Instant::now(), connection);
                }
                Err(error) => {
                    tracing::debug!(?connection, %error, "cannot reach the edge over TCP");
                    self.endpoint.tcp_closed(Instant::now(), connection);
                }
            },
            Command::TcpInput { connection, bytes } => {
                self.endpoint.tcp_input(Instant::now(), connection, &bytes);
                let wants_input = self.endpoint.tcp_wants_input(connection);
                if let Some(slot) = self.tcp.get_mut(&connection) {
                    slot.return_credit(wants_input);
                }
            }
            Command::TcpDrained { connection }
                if self.tcp.get(&connection).is_some_and(|slot| slot.blocked) =>
            {
                self.pump_tcp(connection);
            }
            Command::TcpClosed { connection } => {
                self.endpoint.tcp_closed(Instant::now(), connection);
            }
            _ => {}
        }
    }

    /// Client (`--transport h2`): dials the edge's TCP listener for `connection`.
    fn dial_edge(&self, connection: veil_engine::ConnectionHandle, to: SocketAddr) {
        crate::tcp_onramp::spawn_dial(
            connection,
            to,
            self.options.connect_timeout,
            self.command_tx.clone(),
        );
    }

    /// Edge: a request the engine hands to this host, logged and sent on by its kind.
    fn on_tunnel_request(
        &mut self,
        tunnel: TunnelId,
        kind: TunnelKind,
        target: TunnelTarget,
        client: &veil_engine::ClientIdentity,
    ) {
        // The token's name, never its secret.
        let token = client.token_index.and_then(|i| self.endpoint.token_name(i));
        let identity = self.endpoint.certificate_identity(client.connection);
        let tags = self
            .endpoint
            .tunnel_tags(tunnel)
            .filter(|tags| !tags.is_empty())
            .map(ToString::to_string);
        tracing::debug!(
            ?tunnel,
            ?kind,
            %target,
            peer = %client.peer,
            token,
            identity,
            tags,
            "tunnel requested"
        );
        match kind {
            TunnelKind::Stream => self.on_request(tunnel, target),
            TunnelKind::Udp => self.on_udp_request(tunnel, target),
            TunnelKind::Ip => self.on_ip_request(tunnel, target),
            // The engine hands over only the kinds this host serves (all it knew
            // when this was written).
            _ => self.refuse(tunnel, Refusal::Internal),
        }
    }

    fn on_connection_lost(&mut self, connection: veil_engine::ConnectionHandle, reason: &str) {
        // A TCP connection's writer sends what it holds, then closes the socket.
        let kind = if self.tcp.remove(&connection).is_some() {
            "TCP"
        } else {
            "QUIC"
        };
        tracing::info!(?connection, %reason, "{kind} connection closed");
    }

    /// Edge: a connection on the TCP listener: the engine takes it, or it is closed.
    fn on_tcp_accepted(&mut self, stream: TcpStream, peer: SocketAddr) {
        let local = crate::tcp_onramp::local_of(&stream, self.udp.local_addr());
        match self.endpoint.accept_tcp(Instant::now(), peer, local) {
            Ok(connection) => {
                tracing::debug!(?connection, %peer, "TCP connection accepted");
                let slot = TcpSlot::spawn(connection, stream, &self.command_tx);
                self.tcp.insert(connection, slot);
            }
            Err(refused) => tracing::debug!(%peer, %refused, "TCP connection refused"),
        }
    }

    /// Moves a TCP connection's bytes from the engine to its writer while it has room.
    fn pump_tcp(&mut self, connection: veil_engine::ConnectionHandle) {
        // Named ready: reading may resume (an HTTP/1.1 tunnel's application took bytes).
        let wants_input = self.endpoint.tcp_wants_input(connection);
        if let Some(slot) = self.tcp.get_mut(&connection) {
            slot.resume(wants_input);
        }
        loop {
            let Some(slot) = self.tcp.get_mut(&connection) else {
                return;
            };
            if !slot.has_room() {
                slot.blocked = true;
                return;
            }
            slot.blocked = false;
            let len = self
                .endpoint
                .tcp_transmit(Instant::now(), connection, &mut self.tcp_buf);
            if len == 0 {
                return;
            }
            let Some(slot) = self.tcp.get_mut(&connection) else {
                return;
            };
            let bytes = self.tcp_buf.get(..len).unwrap_or_default();
            if !slot.try_write(bytes) {
                return;
            }
        }
    }

    fn on_open(
        &mut self,
        target: &TunnelTarget,
        reply: oneshot::Sender<Result<Tunnel, OpenFailure>>,
    ) {
        if self.stopping {
            let _ = reply.send(Err(OpenFailure::Stopped));
            return;
        }
        match self.endpoint.open_tunnel(Instant::now(), target) {
            Ok(tunnel) => {
                tracing::debug!(?tunnel, %target, "opening tunnel");
                self.opening.insert(tunnel, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(OpenFailure::NotSent(e)));
            }
        }
    }

    fn on_open_udp(
        &mut self,
        target: &TunnelTarget,
        reply: oneshot::Sender<Result<UdpTunnel, OpenFailure>>,
    ) {
        if self.stopping {
            let _ = reply.send(Err(OpenFailure::Stopped));
            return;
        }
        match self.endpoint.open_udp_tunnel(Instant::now(), target) {
            Ok(tunnel) => {
                tracing::debug!(?tunnel, %target, "opening UDP tunnel");
                self.opening_udp.insert(tunnel, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(OpenFailure::NotSent(e)));
            }
        }
    }

    /// Hands one datagram to the engine, which sends it or drops it (UDP semantics).
    fn send_datagram(&mut self, tunnel: TunnelId, payload: &[u8]) {
        let Some(port) = self.udp_tunnels.get(&tunnel) else {
            return;
        };
        port.release();
        let sent = if self.ip_tunnels.contains_key(&tunnel) {
            // The engine decrements the hop limit in place, and answers a packet too big
            // for the tunnel with ICMP, which goes back to the device like a received one.
            self.packet_buf.clear();
            self.packet_buf.extend_from_slice(payload);
            match self.endpoint.tunnel_send_packet_or_answer(
                tunnel,
                &mut self.packet_buf,
                &mut self.icmp_buf,
            ) {
                Ok(veil_engine::IpDelivery::Answer { len }) => {
                    let answer = self.icmp_buf.get(..len).unwrap_or_default();
                    port.deliver(Bytes::copy_from_slice(answer));
                    Ok(false)
                }
                Ok(delivery) => Ok(matches!(delivery, veil_engine::IpDelivery::Sent(_))),
                Err(e) => Err(e),
            }
        } else {
            self.endpoint.tunnel_send_datagram(tunnel, payload)
        };
        match sent {
            Ok(taken) => port.count_send(taken),
            Err(e) => tracing::debug!(?tunnel, error = %e, "datagram send failed"),
        }
    }

    /// Moves every queued datagram of a UDP tunnel to its host (or drops it, counted, when
    /// the host is behind). The event is edge-triggered: the queue is always drained.
    fn read_datagrams(&mut self, tunnel: TunnelId) {
        loop {
            let received = if self.ip_tunnels.contains_key(&tunnel) {
                self.endpoint
                    .tunnel_recv_packet(tunnel, &mut self.recv_chunk)
            } else {
                self.endpoint
                    .tunnel_recv_datagram(tunnel, &mut self.recv_chunk)
            };
            match received {
                Ok(Some(len)) => {
                    if let Some(port) = self.udp_tunnels.get(&tunnel) {
                        let payload = self.recv_chunk.get(..len).unwrap_or_default();
                        port.deliver(Bytes::copy_from_slice(payload));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    // Not a UDP tunnel or gone; a larger payload than the 64 KiB buffer
                    // cannot be (UDP's length field is 16 bits).
                    if !matches!(e, TunnelError::BufferTooSmall { .. }) {
                        tracing::debug!(?tunnel, error = %e, "datagram receive failed");
                    }
                    return;
                }
            }
        }
    }

    /// The host let go of a UDP tunnel.
    fn close_udp(&mut self, tunnel: TunnelId, abort: bool) {
        let Some(port) = self.udp_tunnels.remove(&tunnel) else {
            return;
        };
        port.close();
        let result = if abort {
            self.endpoint.tunnel_abort(tunnel)
        } else {
            self.endpoint.tunnel_finish(tunnel)
        };
        if let Err(e) = result {
            tracing::debug!(?tunnel, error = %e, "closing a UDP tunnel failed");
        }
    }

    /// The task aborted its tunnel. After a finish whose FIN still waits behind pending
    /// bytes, the abort waits for that FIN (see [`WriteSide::Finishing`]).
    fn on_abort(&mut self, tunnel: TunnelId) {
        if let Some(slot) = self.tunnels.get_mut(&tunnel) {
            if let WriteSide::Finishing { then_abort } = &mut slot.write {
                *then_abort = true;
                return;
            }
        }
        self.abort(tunnel);
    }

    /// Resets a tunnel whose local side failed or went away.
    fn abort(&mut self, tunnel: TunnelId) {
        if let Some(slot) = self.tunnels.remove(&tunnel) {
            if let Err(e) = self.endpoint.tunnel_abort(tunnel) {
                tracing::debug!(?tunnel, error = %e, "aborting a tunnel failed");
            }
            slot.port.reset();
        }
    }

    /// Hands pending bytes (and then the FIN) to the engine until it takes no more.
    fn write_tunnel(&mut self, tunnel: TunnelId) {
        let Some(slot) = self.tunnels.get_mut(&tunnel) else {
            return;
        };
        if slot.blocked {
            return;
        }
        while let Some(front) = slot.pending.front_mut() {
            match self.endpoint.tunnel_send(tunnel, front) {
                Ok(taken) => {
                    slot.port.release(taken);
                    let short = taken < front.len();
                    front.advance(taken);
                    if front.is_empty() {
                        slot.pending.pop_front();
                    }
                    if short {
                        slot.blocked = true;
                        return;
                    }
                }
                Err(TunnelError::WriteClosed) => return Self::write_stopped(slot),
                Err(e) => {
                    tracing::debug!(?tunnel, error = %e, "tunnel send failed");
                    return self.abort(tunnel);
                }
            }
        }
        let WriteSide::Finishing { then_abort } = slot.write else {
            return;
        };
        slot.write = WriteSide::Finished;
        match self.endpoint.tunnel_finish(tunnel) {
            Err(TunnelError::WriteClosed) => Self::write_stopped(slot),
            Err(e) => tracing::debug!(?tunnel, error = %e, "tunnel finish failed"),
            Ok(()) if then_abort => self.abort(tunnel),
            Ok(()) => {}
        }
    }

    /// The peer stopped the host's direction while its own goes on (the engine keeps
    /// reading it to the FIN): drop what waits, give its credit back, and from now on
    /// discard what the task sends.
    fn write_stopped(slot: &mut Slot) {
        let dropped: usize = slot.pending.drain(..).map(|bytes| bytes.len()).sum();
        slot.port.release(dropped);
        slot.write = WriteSide::Stopped;
    }

    /// Moves received bytes to the tunnel's reader while it has room. Stops when the
    /// engine has nothing more (the next `TunnelReadable` resumes) or the reader is full
    /// (its wake-up resumes).
    fn read_tunnel(&mut self, tunnel: TunnelId) {
        let Some(slot) = self.tunnels.get_mut(&tunnel) else {
            return;
        };
        loop {
            let permit = match slot.port.room() {
                Room::Ready(permit) => Some(permit),
                Room::Full => return,
                // Nobody reads: discard, so that flow control keeps moving.
                Room::Gone => None,
            };
            let Recv { len, fin } = match self.endpoint.tunnel_recv(tunnel, &mut self.recv_chunk) {
                Ok(received) => received,
                Err(e) => {
                    tracing::debug!(?tunnel, error = %e, "tunnel recv failed");
                    return;
                }
            };
            if len == 0 && !fin {
                return;
            }
            if let Some(permit) = permit {
                let bytes = self.recv_chunk.get(..len).unwrap_or_default();
                slot.port.deliver(permit, bytes, fin);
            }
            if fin {
                return;
            }
        }
    }

    /// Whether the driver should stop: the engine's shutdown is over.
    fn advance_phase(&self) -> bool {
        self.stopping && self.endpoint.is_closed()
    }
}

/// The local address a datagram arrived on: the bound address, or, for an edge bound to a
/// wildcard address, the destination address the kernel reported. A client always uses
/// the bound address, the one its connection was created with.
fn local_for(role: Role, bound: SocketAddr, dst_ip: Option<std::net::IpAddr>) -> SocketAddr {
    match dst_ip {
        Some(ip) if role == Role::Edge && bound.ip().is_unspecified() => {
            SocketAddr::new(ip, bound.port())
        }
        _ => bound,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

// CONNECT-IP: packets between tunnels and the IP egress device (`crate::ip`).
impl Driver {
    /// Edge: CONNECT-IP packets leave through `device`.
    pub(crate) fn with_ip_device(mut self, device: Option<crate::ip::DeviceLink>) -> Self {
        self.device = device;
        self
    }

    /// Edge: CONNECT-IP packets are decapsulated into flows, each with a socket.
    pub(crate) fn with_decap(mut self, decap: Option<crate::decap::DecapFlows>) -> Self {
        self.decap = decap;
        self
    }

    /// Edge, decap: a flow opened (it gets its socket), has payloads, or closed.
    fn on_flow_event(&mut self, event: &Event) {
        match *event {
            Event::IpFlowOpened {
                flow,
                tunnel,
                protocol,
                destination,
            } => {
                tracing::debug!(?flow, ?tunnel, ?protocol, %destination, "flow opened");
                let commands = self.command_tx.clone();
                if let Some(decap) = self.decap.as_mut() {
                    decap.open(flow, protocol, destination, commands);
                } else {
                    let _ = self.endpoint.ip_flow_close(flow);
                }
            }
            Event::IpFlowReadable { flow } => self.read_flow(flow),
            Event::IpFlowClosed { flow } => {
                if let Some(decap) = self.decap.as_mut() {
                    decap.close(flow);
                }
            }
            _ => {}
        }
    }

    /// Edge, decap: moves what the client sent on a flow to its socket.
    fn read_flow(&mut self, flow: veil_engine::IpFlowId) {
        loop {
            match self.endpoint.ip_flow_recv(flow, &mut self.recv_chunk) {
                Ok(Some(len)) => {
                    if let Some(decap) = self.decap.as_mut() {
                        decap.deliver(flow, self.recv_chunk.get(..len).unwrap_or_default());
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(?flow, error = %e, "flow receive failed");
                    return;
                }
            }
        }
    }

    /// Edge: a CONNECT-IP request; the engine assigned its addresses, the device carries
    /// its packets.
    fn on_ip_request(&mut self, tunnel: TunnelId, target: TunnelTarget) {
        if self.device.is_none() && self.decap.is_none() {
            // `Node::start_with` declares CONNECT-IP unserved without an egress.
            return self.refuse(tunnel, Refusal::Internal);
        }
        if matches!(target.host, veil_engine::Host::Name(_)) {
            // A scope by name: resolved first, in a task of its own (RFC 9484 §4.6).
            let commands = self.command_tx.clone();
            let timeout = self.options.connect_timeout;
            tokio::spawn(async move {
                let result = crate::dial::resolve(&target, timeout)
                    .await
                    .map(|addrs| addrs.iter().map(SocketAddr::ip).collect());
                let _ = commands.send(Command::IpScopeResolved { tunnel, result });
            });
            return;
        }
        self.accept_ip(tunnel);
    }

    /// Edge: the addresses a name-scoped IP tunnel's target resolved to, or why not.
    fn on_ip_scope_resolved(&mut self, tunnel: TunnelId, result: Result<Vec<IpAddr>, Refusal>) {
        let resolved = result.and_then(|addrs| self.endpoint.ip_scope_resolved(tunnel, &addrs));
        match resolved {
            Ok(()) => self.accept_ip(tunnel),
            Err(refusal) => {
                tracing::info!(?tunnel, ?refusal, "IP tunnel's target refused");
                self.refuse(tunnel, refusal);
            }
        }
    }

    /// Edge: accepts an IP tunnel whose packets the device or the decap off-ramp carries.
    fn accept_ip(&mut self, tunnel: TunnelId) {
        if let Err(e) = self.endpoint.accept_tunnel(tunnel) {
            tracing::debug!(?tunnel, error = %e, "accepting an IP tunnel failed");
            return;
        }
        self.ip_tunnels.insert(tunnel, None);
    }

    /// Edge: moves every packet the engine let out of a client's tunnel to the device.
    fn packets_to_device(&mut self, tunnel: TunnelId) {
        loop {
            match self
                .endpoint
                .tunnel_recv_packet(tunnel, &mut self.recv_chunk)
            {
                Ok(Some(len)) => {
                    if let Some(device) = self.device.as_mut() {
                        device.send(self.recv_chunk.get(..len).unwrap_or_default());
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(?tunnel, error = %e, "packet receive failed");
                    return;
                }
            }
        }
    }

    /// Edge: a packet the device read goes to the tunnel that owns its destination; an
    /// ICMP error the engine answers with goes back to the device.
    fn packet_from_device(&mut self, packet: &mut [u8]) {
        if let veil_engine::IpDelivery::Answer { len } =
            self.endpoint.ip_deliver(packet, &mut self.icmp_buf)
        {
            if let Some(device) = self.device.as_mut() {
                device.send(self.icmp_buf.get(..len).unwrap_or_default());
            }
        }
    }

    /// Client: opens a CONNECT-IP tunnel for `scope`.
    fn on_open_ip(
        &mut self,
        scope: &veil_engine::IpScope,
        reply: oneshot::Sender<Result<crate::ip::IpTunnel, OpenFailure>>,
    ) {
        if self.stopping {
            let _ = reply.send(Err(OpenFailure::Stopped));
            return;
        }
        match self.endpoint.open_ip_tunnel(Instant::now(), scope) {
            Ok(tunnel) => {
                tracing::debug!(?tunnel, "opening IP tunnel");
                self.opening_ip.insert(tunnel, reply);
            }
            Err(e) => {
                let _ = reply.send(Err(OpenFailure::NotSent(e)));
            }
        }
    }

    /// Client: the edge assigned addresses or advertised routes.
    fn on_ip_configured(&mut self, tunnel: TunnelId) {
        let Some(Some(config)) = self.ip_tunnels.get(&tunnel) else {
            return;
        };
        let addresses = self
            .endpoint
            .ip_tunnel_addresses(tunnel)
            .unwrap_or_default();
        let routes = self
            .endpoint
            .ip_tunnel_routes(tunnel)
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        let mtu = self.endpoint.tunnel_max_datagram_payload(tunnel);
        tracing::info!(?tunnel, ?addresses, ?routes, ?mtu, "IP tunnel configured");
        let _ = config.send(crate::ip::IpTunnelConfig {
            addresses,
            routes,
            mtu,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn an_edge_on_a_wildcard_address_uses_the_reported_destination() {
        let bound = SocketAddr::from(([0, 0, 0, 0], 4433));
        let dst = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(
            local_for(Role::Edge, bound, dst),
            SocketAddr::from(([192, 0, 2, 7], 4433))
        );
        assert_eq!(local_for(Role::Edge, bound, None), bound);
    }

    #[test]
    fn a_client_and_a_bound_edge_use_the_bound_address() {
        let wildcard = SocketAddr::from(([0, 0, 0, 0], 5000));
        let dst = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(local_for(Role::Client, wildcard, dst), wildcard);
        let bound = SocketAddr::from(([127, 0, 0, 1], 4433));
        assert_eq!(local_for(Role::Edge, bound, dst), bound);
    }
}
