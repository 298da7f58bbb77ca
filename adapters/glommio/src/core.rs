//! One core of the edge: its [`Endpoint`], its UDP socket, its dials and relays, all on one
//! glommio executor and nothing shared with other cores but the forwarding channels.
//!
//! Tasks of a core:
//!
//! - **intake**: reads the socket; a datagram whose connection ID names another core goes
//!   to that core over the channel mesh, any other is fed to the local endpoint;
//! - **forwarded intake**, one per peer core: feeds what the peers forwarded;
//! - **driver** (the core's main future): the engine's loop — drain `poll_transmit` and
//!   `poll_event`, re-arm the timer from `poll_timeout` (the shutdown's deadlines
//!   included), wait for work or the timer;
//! - a **dial** per tunnel request and a **relay** per accepted tunnel (TCP:
//!   [`crate::tunnel`], UDP: [`crate::udp_tunnel`]), which reach the engine only through
//!   the core's [`Port`];
//! - with the TCP on-ramp, an **accept** task on the core's TCP listening socket and a
//!   reader and a writer per connection it accepted ([`crate::tcp`]), which reach the
//!   engine only through the core's [`TcpPort`]; the driver's flush moves the engine's
//!   bytes to the writers.
//!
//! Tasks of one core share its state through `Rc<RefCell<..>>`: glommio runs them on one
//! thread, a borrow never crosses an `.await`, and every task that feeds the endpoint
//! notifies the driver, which flushes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::channels::channel_mesh::{FullMesh, Senders};
use glommio::net::UdpSocket;
use tokio::sync::watch;
use veil_engine::socket_buffers::BufferSizer;
use veil_engine::{
    CidLayout, CloseReason, Config, Egress, Endpoint, Event, H3_CONNECT_ERROR, Recv, RecvMeta,
    Refusal, ShutdownPlan, TunnelError, TunnelId, TunnelKind,
};

use crate::port::{Port, TunnelSignals};
use crate::signal::Signal;
use crate::tcp::{self, TcpConnection, TcpPort};
use crate::{CoreStats, Options};
use crate::{decap, tunnel, udp, udp_tunnel};

/// Largest UDP datagram read or sent.
const MAX_DATAGRAM: usize = 65_535;

/// A datagram that must leave from a given address waits for room in the socket's buffer
/// this many pauses at most.
const SEND_RETRIES: usize = 20;
const SEND_RETRY_PAUSE: Duration = Duration::from_micros(100);

/// A datagram one core received for a connection another core owns.
#[derive(Debug)]
pub(crate) struct Forwarded {
    from: SocketAddr,
    /// The local address it came to.
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// What a core needs to start (all `Send`, handed over from the thread that starts the
/// edge).
pub(crate) struct CoreSetup {
    pub(crate) config: Config,
    /// Every core's UDP socket, in the order they joined the `SO_REUSEPORT` group: the
    /// core takes the one at its index, which the steering program sends its connections'
    /// datagrams to.
    pub(crate) sockets: Arc<Mutex<Vec<Option<socket2::Socket>>>>,
    pub(crate) local_addr: SocketAddr,
    /// The core's socket of the TCP on-ramp's listening group, when the edge has one.
    pub(crate) tcp_listener: Option<socket2::Socket>,
    pub(crate) mesh: FullMesh<Forwarded>,
    pub(crate) stop: watch::Receiver<Option<Duration>>,
    pub(crate) options: Options,
    /// Where the core publishes its counters for `Edge::stats`, at its index.
    pub(crate) published: Arc<Mutex<Vec<CoreStats>>>,
    /// Where its audit records go, when the edge keeps them.
    pub(crate) audit: Option<std::sync::mpsc::SyncSender<veil_engine::AuditRecord>>,
    /// Makes the core's own hooks (one `Policy` per core: each engine owns its own).
    pub(crate) policy: Option<crate::PolicyFactory>,
}

/// The mutable part of a core, borrowed by its tasks between awaits.
struct State {
    endpoint: Endpoint,
    tunnels: HashMap<TunnelId, Rc<TunnelSignals>>,
    /// TCP tunnels whose dial is under way (no answer yet): cancelled when the engine ends
    /// the tunnel first (the client reset it, or the request timed out), so that a dial
    /// nobody waits for does not hold a socket until its connect timeout.
    dials: HashMap<TunnelId, glommio::task::JoinHandle<()>>,
    /// Decapsulated CONNECT-IP flows and their relays' signals (`crate::decap`).
    flows: HashMap<veil_engine::IpFlowId, Rc<TunnelSignals>>,
    /// Connections of the TCP on-ramp this core accepted.
    tcp: tcp::Connections,
    /// A stop was asked for: the engine runs the sequence, the core stops when it says it
    /// is closed.
    stopping: bool,
}

/// One core: shared by its tasks through `Rc`.
pub(crate) struct Core {
    state: RefCell<State>,
    /// Notified whenever the endpoint got input and may have something to send.
    work: Signal,
    socket: UdpSocket,
    local_addr: SocketAddr,
    layout: CidLayout,
    senders: Senders<Forwarded>,
    options: Options,
    forwarded_out: Cell<u64>,
    forwarded_in: Cell<u64>,
    forward_dropped: Cell<u64>,
    send_errors: Cell<u64>,
    /// Trains go out in one `sendmsg` (`crate::udp`); off after the kernel refused one.
    gso: Cell<bool>,
    /// Bound to a wildcard address, the socket reports each datagram's destination and
    /// answers from it (`crate::udp`).
    answer_from_destination: bool,
    udp_target_drops: Cell<u64>,
    /// Where audit records go (`Edge::audit_records`), when the edge keeps them.
    audit: Option<std::sync::mpsc::SyncSender<veil_engine::AuditRecord>>,
    /// Audit records the writer had no room for.
    audit_lost: Cell<u64>,
    /// The socket failed; the driver stops with this error.
    failure: RefCell<Option<io::Error>>,
    /// The TCP on-ramp's accept loop: cancelled when the drain starts, which closes this
    /// core's listening socket, so that new connections are refused by the kernel rather
    /// than accepted by a core that would only close them.
    accepting: RefCell<Option<glommio::task::JoinHandle<()>>>,
    /// The UDP socket again, for its buffer sizes (`Core::fit_buffers`).
    buffers: socket2::Socket,
    /// When the socket's buffers grow for a long path, and shrink back
    /// (`Core::fit_buffers`).
    sizer: Cell<BufferSizer>,
}

/// The socket at the core's index in the group, which the steering program sends its
/// connections' datagrams to (taken once).
fn socket_of(
    sockets: &Mutex<Vec<Option<socket2::Socket>>>,
    index: u16,
) -> io::Result<socket2::Socket> {
    sockets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_mut(usize::from(index))
        .and_then(Option::take)
        .ok_or_else(|| io::Error::other("no socket for this core"))
}

/// Runs one core until shutdown completes or its socket fails.
pub(crate) async fn run(setup: CoreSetup) -> io::Result<CoreStats> {
    let CoreSetup {
        config,
        sockets,
        local_addr,
        tcp_listener,
        mesh,
        stop,
        options,
        published,
        audit,
        policy,
    } = setup;
    let (senders, mut receivers) = mesh
        .join()
        .await
        .map_err(|e| io::Error::other(format!("cannot join the cores' channel mesh: {e}")))?;
    let index = u16::try_from(senders.peer_id()).map_err(io::Error::other)?;
    let cores = u16::try_from(senders.nr_consumers()).map_err(io::Error::other)?;
    let layout = CidLayout::new(index, cores)
        .ok_or_else(|| io::Error::other("mesh index beyond the number of cores"))?
        .with_server(options.edge_id, 0);
    let mut endpoint = Endpoint::new(config, Instant::now())
        .map_err(io::Error::other)?
        .with_cid_layout(layout);
    if let Some(make_policy) = &policy {
        endpoint.set_boxed_policy(make_policy());
    }
    let (socket, features) = prepare_socket(socket_of(&sockets, index)?, index);
    // The same socket (a second descriptor): its buffers are sized through it.
    let buffers = socket.try_clone()?;
    let sizer = BufferSizer::new(options.udp_buffer_long_path);
    let core = Rc::new(Core {
        state: RefCell::new(State {
            endpoint,
            tunnels: HashMap::new(),
            dials: HashMap::new(),
            flows: HashMap::new(),
            tcp: tcp::Connections::default(),
            stopping: false,
        }),
        work: Signal::default(),
        socket: UdpSocket::from(socket),
        local_addr,
        layout,
        senders,
        options,
        forwarded_out: Cell::new(0),
        forwarded_in: Cell::new(0),
        forward_dropped: Cell::new(0),
        send_errors: Cell::new(0),
        gso: Cell::new(true),
        answer_from_destination: features.destination,
        udp_target_drops: Cell::new(0),
        audit,
        audit_lost: Cell::new(0),
        failure: RefCell::new(None),
        accepting: RefCell::new(None),
        buffers,
        sizer: Cell::new(sizer),
    });
    tracing::debug!(core = index, cores, %local_addr, "core started");

    glommio::spawn_local(intake(core.clone())).detach();
    if let Some(socket) = tcp_listener {
        let listener = tcp::listener(socket);
        let writers = core.state.borrow().tcp.writers();
        let port: Rc<dyn TcpPort> = core.clone();
        let accepting = glommio::spawn_local(tcp::accept_loop(port, listener, writers)).detach();
        *core.accepting.borrow_mut() = Some(accepting);
    }
    for (_peer, receiver) in receivers.streams() {
        let core = core.clone();
        glommio::spawn_local(async move {
            while let Some(forwarded) = receiver.recv().await {
                core.forwarded_in.set(core.forwarded_in.get() + 1);
                let Forwarded {
                    from,
                    to,
                    mut bytes,
                } = forwarded;
                core.feed(from, to, &mut bytes);
            }
        })
        .detach();
    }
    glommio::spawn_local(watch_stop(core.clone(), stop)).detach();
    glommio::spawn_local(publish_stats(core.clone(), published)).detach();

    let result = drive(&core).await;
    // Peers may still forward to us while they drain; closing makes their sends fail
    // (counted as dropped there) rather than wait.
    core.senders.close();
    // The engine has closed every connection; TCP writers may still hold its last bytes
    // (GOAWAY, TLS close_notify): let them write those, for at most the close grace.
    let writers = {
        let mut state = core.state.borrow_mut();
        state.tcp.clear();
        state.tcp.writers()
    };
    future::or(writers.finished(), async {
        glommio::timer::sleep(core.options.close_grace).await;
    })
    .await;
    result.map(|()| core.stats())
}

/// Publishes the core's counters every `STATS_PERIOD` for `Edge::stats` (metrics).
async fn publish_stats(core: Rc<Core>, published: Arc<Mutex<Vec<CoreStats>>>) {
    loop {
        let stats = core.stats();
        let index = usize::from(stats.core);
        if let Some(slot) = published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(index)
        {
            *slot = stats;
        }
        glommio::timer::sleep(crate::STATS_PERIOD).await;
    }
}

/// Asks for GRO on the core's socket, and for each datagram's destination when it is bound
/// to a wildcard address (`crate::udp`). Without GRO trains arrive a datagram at a time,
/// which the intake handles the same way.
fn prepare_socket(socket: socket2::Socket, core: u16) -> (socket2::Socket, udp::Features) {
    let (socket, features) = udp::prepare(socket);
    if !features.gro {
        tracing::debug!(core, "no UDP GRO: datagrams are received one at a time");
    }
    if !features.dont_fragment {
        tracing::warn!(
            core,
            "cannot set Don't Fragment: path MTU probes may leave as IP fragments"
        );
    }
    (socket, features)
}

/// Reads the socket: forwards datagrams of other cores' connections, feeds the rest. A
/// coalesced train (GRO) is split into its datagrams, each routed on its own.
async fn intake(core: Rc<Core>) {
    let mut buf = vec![0; MAX_DATAGRAM].into_boxed_slice();
    let mut peek = [0u8; 1];
    loop {
        let received = match udp::recv_now(core.socket.as_raw_fd(), &mut buf) {
            Ok(Some(received)) => received,
            // Nothing queued: wait (in io_uring) until something is, without taking it.
            Ok(None) => match core.socket.peek_from(&mut peek).await {
                Ok(_) => continue,
                Err(e) => return core.fail_intake(e.into()),
            },
            Err(e) => return core.fail_intake(e),
        };
        let Some(train) = buf.get_mut(..received.len) else {
            continue;
        };
        let segment = received.segment.unwrap_or(received.len).max(1);
        let to = received.to.map_or(core.local_addr, |ip| {
            SocketAddr::new(ip, core.local_addr.port())
        });
        for datagram in train.chunks_mut(segment) {
            match core.layout.owner_of_datagram(datagram) {
                Some(owner) if owner != core.layout.core() => {
                    core.forward(owner, received.from, to, datagram);
                }
                _ => core.feed(received.from, to, datagram),
            }
        }
        // The receives above do not wait: let the engine's loop and the relays run.
        glommio::yield_if_needed().await;
    }
}

/// Turns the stop request into the draining phase.
async fn watch_stop(core: Rc<Core>, mut stop: watch::Receiver<Option<Duration>>) {
    let drain = loop {
        if let Some(drain) = *stop.borrow_and_update() {
            break drain;
        }
        if stop.changed().await.is_err() {
            // The edge's handle is gone without a shutdown: stop at once.
            break Duration::ZERO;
        }
    };
    if let Some(accepting) = core.accepting.borrow_mut().take() {
        accepting.cancel();
    }
    let mut state = core.state.borrow_mut();
    tracing::debug!(
        core = core.layout.core(),
        ?drain,
        tunnels = state.tunnels.len(),
        "draining"
    );
    // The engine runs the sequence: HTTP/3 GOAWAY, the drain, the close; tunnels it cuts
    // reach their relays as events.
    state.stopping = true;
    let plan = ShutdownPlan {
        drain,
        close_code: core.options.close_code,
        grace: core.options.close_grace,
    };
    state.endpoint.shutdown(Instant::now(), plan);
    drop(state);
    core.work.notify();
}

/// The engine's loop, until shutdown completes.
async fn drive(core: &Rc<Core>) -> io::Result<()> {
    let mut send_buf = vec![0; MAX_DATAGRAM].into_boxed_slice();
    loop {
        core.flush(&mut send_buf).await;
        core.fit_buffers();
        if let Some(e) = core.failure.borrow_mut().take() {
            return Err(e);
        }
        if core.advance_phase() {
            core.flush(&mut send_buf).await;
            return Ok(());
        }
        let deadline = core.deadline();
        let timer = async {
            match deadline {
                Some(at) => {
                    glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                    true
                }
                None => future::pending().await,
            }
        };
        let fired = future::or(timer, async {
            core.work.notified().await;
            false
        })
        .await;
        if fired {
            core.state
                .borrow_mut()
                .endpoint
                .handle_timeout(Instant::now());
        }
    }
}

impl Core {
    /// Feeds one datagram this core owns to its endpoint.
    /// `to`: the local address it came to (the bound one, or with a wildcard bind the
    /// destination the kernel reported).
    fn feed(&self, from: SocketAddr, to: SocketAddr, datagram: &mut [u8]) {
        let meta = RecvMeta { from, to };
        self.state
            .borrow_mut()
            .endpoint
            .handle_datagram(Instant::now(), meta, datagram);
        self.work.notify();
    }

    /// Hands a datagram to the core that owns its connection. A full queue drops it (the
    /// peer's loss recovery resends), counted.
    fn forward(&self, owner: u16, from: SocketAddr, to: SocketAddr, datagram: &[u8]) {
        let message = Forwarded {
            from,
            to,
            bytes: datagram.to_vec(),
        };
        match self.senders.try_send_to(usize::from(owner), message) {
            Ok(()) => self.forwarded_out.set(self.forwarded_out.get() + 1),
            Err(_) => self.forward_dropped.set(self.forward_dropped.get() + 1),
        }
    }

    /// Sends a train of datagrams of `segment` bytes in one system call (GSO). `false`:
    /// not sent (the socket's buffer is full, or GSO is off or refused).
    fn send_train(
        &self,
        train: &[u8],
        to: SocketAddr,
        segment: usize,
        from: Option<IpAddr>,
    ) -> bool {
        let Ok(segment) = u16::try_from(segment) else {
            return false;
        };
        if !self.gso.get() {
            return false;
        }
        match udp::send_now(self.socket.as_raw_fd(), train, to, Some(segment), from) {
            Ok(sent) => sent,
            Err(e) if udp::no_gso(&e) => {
                tracing::info!(error = %e, "UDP GSO refused: datagrams are sent one at a time");
                self.gso.set(false);
                false
            }
            Err(e) => {
                self.send_failed(to, &e);
                true
            }
        }
    }

    /// Sends one datagram, waiting for room in the socket's buffer: in glommio's send, or,
    /// when it must leave from `from` (which glommio's send cannot say), by trying again
    /// after a pause, [`SEND_RETRIES`] times at most (then it is lost, counted).
    async fn send_one(&self, datagram: &[u8], to: SocketAddr, from: Option<IpAddr>) {
        if from.is_none() {
            if let Err(e) = self.socket.send_to(datagram, to).await {
                self.send_failed(to, &e.into());
            }
            return;
        }
        for _ in 0..SEND_RETRIES {
            match udp::send_now(self.socket.as_raw_fd(), datagram, to, None, from) {
                Ok(true) => return,
                Ok(false) => glommio::timer::sleep(SEND_RETRY_PAUSE).await,
                Err(e) => return self.send_failed(to, &e),
            }
        }
        self.send_failed(to, &io::Error::from(io::ErrorKind::WouldBlock));
    }

    /// A datagram could not be sent (an ICMP error of an earlier send, a full buffer): it
    /// is lost and counted; QUIC recovers.
    fn send_failed(&self, to: SocketAddr, e: &io::Error) {
        self.send_errors.set(self.send_errors.get() + 1);
        tracing::debug!(%to, error = %e, "UDP send failed");
    }

    /// The socket failed: the driver stops with this error.
    fn fail_intake(&self, e: io::Error) {
        tracing::error!(core = self.layout.core(), error = %e, "UDP receive failed");
        *self.failure.borrow_mut() = Some(e);
        self.work.notify();
    }

    /// Sends what the engine has to send and handles its events, until it has nothing.
    async fn flush(self: &Rc<Self>, send_buf: &mut [u8]) {
        loop {
            let mut progressed = false;
            loop {
                let transmit = self
                    .state
                    .borrow_mut()
                    .endpoint
                    .poll_transmit(Instant::now(), send_buf);
                let Some(transmit) = transmit else { break };
                progressed = true;
                let contents = send_buf.get(..transmit.len).unwrap_or_default();
                // A socket bound to a wildcard address answers from the address the
                // connection's datagrams came to.
                let from = Some(transmit.from.ip())
                    .filter(|ip| self.answer_from_destination && !ip.is_unspecified());
                let segment = transmit.segment_size.unwrap_or(transmit.len).max(1);
                if segment < contents.len() && self.send_train(contents, transmit.to, segment, from)
                {
                    continue;
                }
                // One datagram, or a train the socket had no room for now: a datagram at a
                // time, waiting for room.
                for datagram in contents.chunks(segment) {
                    self.send_one(datagram, transmit.to, from).await;
                }
            }
            {
                let mut state = self.state.borrow_mut();
                let State { endpoint, tcp, .. } = &mut *state;
                progressed |= tcp.flush(endpoint);
            }
            loop {
                let event = self.state.borrow_mut().endpoint.poll_event();
                let Some(event) = event else { break };
                progressed = true;
                self.on_event(event);
            }
            self.pass_audit();
            if !progressed {
                return;
            }
        }
    }

    fn on_event(self: &Rc<Self>, event: Event) {
        let core = self.layout.core();
        match event {
            Event::ConnectionEstablished { connection, peer } => {
                tracing::info!(core, ?connection, %peer, "QUIC connection established");
            }
            Event::ConnectionLost { connection, reason } => {
                // A TCP connection's writer writes what it holds, then shuts the socket
                // down; its reader stops. Dropped outside the borrow.
                let tcp = self.state.borrow_mut().tcp.remove(connection);
                let kind = if tcp.is_some() { "TCP" } else { "QUIC" };
                drop(tcp);
                tracing::info!(core, ?connection, %reason, "{kind} connection closed");
            }
            Event::TunnelRequest {
                tunnel,
                kind,
                target,
                client,
            } => {
                // While draining, the engine reports only requests that were in flight
                // when its GOAWAY went out: GOAWAY promised to process them.
                // The token's name, never its secret.
                let state = self.state.borrow();
                let token = client
                    .token_index
                    .and_then(|i| state.endpoint.token_name(i));
                tracing::debug!(core, ?tunnel, ?kind, %target, peer = %client.peer, token, "tunnel requested");
                drop(state);
                let port: Rc<dyn Port> = self.clone();
                match kind {
                    TunnelKind::Stream => {
                        let dial =
                            glommio::spawn_local(tunnel::dial_and_relay(port, tunnel, target))
                                .detach();
                        self.state.borrow_mut().dials.insert(tunnel, dial);
                    }
                    TunnelKind::Udp => {
                        glommio::spawn_local(udp_tunnel::connect_and_relay(port, tunnel, target))
                            .detach();
                    }
                    // The engine assigned the addresses; its decap off-ramp carries the
                    // packets (`Edge::start` declares Ip only with pools).
                    TunnelKind::Ip => {
                        let accepted = self.state.borrow_mut().endpoint.accept_tunnel(tunnel);
                        if let Err(e) = accepted {
                            tracing::debug!(core, ?tunnel, error = %e, "accepting an IP tunnel failed");
                        }
                        self.work.notify();
                    }
                    // The engine hands over only the kinds this host declares (all it knew
                    // when this was written): anything else here is a bug, refused.
                    _ => refuse(
                        &mut self.state.borrow_mut().endpoint,
                        tunnel,
                        Refusal::Internal,
                    ),
                }
            }
            // This host has no one to ask: a hook's question is answered no at once (hooks
            // on a glommio edge answer themselves).
            Event::TunnelDecision { tunnel, .. } => {
                let refuse = veil_engine::TunnelVerdict::Refuse(Refusal::Internal);
                let _ = self.state.borrow_mut().endpoint.decide_tunnel(
                    tunnel,
                    refuse,
                    veil_engine::Tags::new(),
                );
            }
            Event::IngressDecision { connection, .. } => {
                //# RFC 9114 §8.1: "H3_INTERNAL_ERROR (0x0102): An internal error has
                //# occurred in the HTTP stack."
                let close = veil_engine::IngressVerdict::Close { error_code: 0x0102 };
                let _ = self
                    .state
                    .borrow_mut()
                    .endpoint
                    .decide_ingress(connection, close);
            }
            // Bytes for a TCP tunnel's target, datagrams for a UDP tunnel's.
            Event::TunnelReadable { tunnel } | Event::TunnelDatagrams { tunnel } => {
                if let Some(signals) = self.state.borrow().tunnels.get(&tunnel) {
                    signals.readable.notify();
                }
            }
            Event::TunnelWritable { tunnel } => {
                if let Some(signals) = self.state.borrow().tunnels.get(&tunnel) {
                    signals.writable.notify();
                }
            }
            Event::TunnelClosed { tunnel, reason } => {
                tracing::debug!(core, ?tunnel, ?reason, "tunnel closed");
                let mut state = self.state.borrow_mut();
                let signals = state.tunnels.remove(&tunnel);
                let dial = state.dials.remove(&tunnel);
                drop(state);
                if let Some(signals) = signals {
                    signals.close(reason);
                } else if let Some(dial) = dial {
                    // Not answered yet: its dial is for nobody now.
                    dial.cancel();
                }
            }
            Event::IpFlowOpened { .. }
            | Event::IpFlowReadable { .. }
            | Event::IpFlowClosed { .. } => self.on_flow_event(&event),
            other => tracing::debug!(core, event = ?other, "unhandled engine event"),
        }
    }

    /// A decapsulated CONNECT-IP flow opened (it gets a relay with a socket), has
    /// payloads, or closed.
    fn on_flow_event(self: &Rc<Self>, event: &Event) {
        match *event {
            Event::IpFlowOpened {
                flow,
                protocol,
                destination,
                ..
            } => {
                let signals = Rc::new(TunnelSignals::default());
                self.state
                    .borrow_mut()
                    .flows
                    .insert(flow, Rc::clone(&signals));
                let port: Rc<dyn Port> = self.clone();
                glommio::spawn_local(decap::relay(port, flow, protocol, destination, signals))
                    .detach();
            }
            Event::IpFlowReadable { flow } => {
                if let Some(signals) = self.state.borrow().flows.get(&flow) {
                    signals.readable.notify();
                }
            }
            Event::IpFlowClosed { flow } => {
                let signals = self.state.borrow_mut().flows.remove(&flow);
                if let Some(signals) = signals {
                    signals.close(veil_engine::CloseReason::Finished);
                }
            }
            _ => {}
        }
    }

    /// The engine's next deadline (the shutdown's among them).
    fn deadline(&self) -> Option<Instant> {
        self.state.borrow().endpoint.poll_timeout()
    }

    /// Whether the core should stop: the engine's shutdown is over.
    /// Hands the engine's audit records to the edge's writer; a full channel drops them,
    /// counted (an audit log never holds traffic back).
    fn pass_audit(&self) {
        loop {
            let record = self.state.borrow_mut().endpoint.poll_audit();
            let Some(record) = record else { return };
            let sent = self
                .audit
                .as_ref()
                .is_some_and(|audit| audit.try_send(record).is_ok());
            if !sent {
                self.audit_lost.set(self.audit_lost.get() + 1);
            }
        }
    }

    fn advance_phase(&self) -> bool {
        let state = self.state.borrow();
        state.stopping && state.endpoint.is_closed()
    }

    /// Grows the socket's buffers while the engine has a connection on a path longer than
    /// a LAN, and as its flights grow, and gives them back when it has none
    /// (`Options::udp_buffer_long_path`, `Endpoint::long_paths`,
    /// `Endpoint::received_flight`); looked at after every flush, as tokio's driver does: a
    /// long path's first flight must find the larger queue, or its losses end CUBIC's
    /// slow start early (checked once per `STATS_PERIOD`, a glommio edge moved 34 MiB/s
    /// across a 20 ms path against 80 with the buffers fixed at 1 MiB).
    fn fit_buffers(&self) {
        let state = self.state.borrow();
        let mut sizer = self.sizer.get();
        let resize = sizer.fit(&state.endpoint, || self.buffers.recv_buffer_size().ok());
        self.sizer.set(sizer);
        if let Some(bytes) = resize {
            tracing::debug!(
                bytes,
                long_paths = state.endpoint.long_paths(),
                flight = state.endpoint.received_flight(),
                "socket buffers resized for the paths"
            );
            crate::set_buffers(&self.buffers, bytes);
        }
    }

    fn stats(&self) -> CoreStats {
        CoreStats {
            core: self.layout.core(),
            endpoint: self.state.borrow().endpoint.stats(),
            forwarded_out: self.forwarded_out.get(),
            forwarded_in: self.forwarded_in.get(),
            forward_dropped: self.forward_dropped.get(),
            send_errors: self.send_errors.get(),
            udp_target_drops: self.udp_target_drops.get(),
        }
    }
}

/// What the tunnel tasks may do with this core's engine.
impl Port for Core {
    fn connect_timeout(&self) -> Duration {
        self.options.connect_timeout
    }

    fn answer(&self, tunnel: TunnelId, result: Result<(), Refusal>) -> Option<Rc<TunnelSignals>> {
        let mut state = self.state.borrow_mut();
        // Answered: the task goes on as the tunnel's relay, no longer a dial to cancel.
        state.dials.remove(&tunnel);
        let outcome = match result {
            Err(refusal) => {
                refuse(&mut state.endpoint, tunnel, refusal);
                None
            }
            Ok(()) => match state.endpoint.accept_tunnel(tunnel) {
                Ok(()) => {
                    let signals = Rc::new(TunnelSignals::default());
                    // Bytes may have come with the request, before the tunnel had signals:
                    // look once.
                    signals.readable.notify();
                    state.tunnels.insert(tunnel, signals.clone());
                    Some(signals)
                }
                Err(e) => {
                    // The client gave up (reset the stream) while we dialled.
                    tracing::debug!(?tunnel, error = %e, "accepting a tunnel failed");
                    None
                }
            },
        };
        drop(state);
        self.work.notify();
        outcome
    }

    fn cached_addresses(&self, tunnel: TunnelId) -> Option<Vec<SocketAddr>> {
        self.state.borrow_mut().endpoint.cached_addresses(tunnel)
    }

    fn egress_preamble(&self, tunnel: TunnelId, dialed: SocketAddr) -> Option<Vec<u8>> {
        self.state.borrow().endpoint.egress_preamble(tunnel, dialed)
    }

    fn egress_for(&self, tunnel: TunnelId, addrs: &[SocketAddr]) -> Result<Egress, Refusal> {
        self.state.borrow_mut().endpoint.egress_for(tunnel, addrs)
    }

    fn tunnel_recv(&self, tunnel: TunnelId, out: &mut [u8]) -> Option<Recv> {
        let received = self.state.borrow_mut().endpoint.tunnel_recv(tunnel, out);
        self.work.notify();
        received
            .map_err(|e| tracing::debug!(?tunnel, error = %e, "tunnel recv failed"))
            .ok()
    }

    fn tunnel_send(&self, tunnel: TunnelId, data: &[u8]) -> Result<usize, TunnelError> {
        let sent = self.state.borrow_mut().endpoint.tunnel_send(tunnel, data);
        self.work.notify();
        sent
    }

    fn tunnel_finish(&self, tunnel: TunnelId) -> Result<(), TunnelError> {
        let finished = self.state.borrow_mut().endpoint.tunnel_finish(tunnel);
        self.work.notify();
        finished
    }

    fn tunnel_abort(&self, tunnel: TunnelId) {
        let mut state = self.state.borrow_mut();
        if let Err(e) = state.endpoint.tunnel_abort(tunnel) {
            tracing::debug!(?tunnel, error = %e, "aborting a tunnel failed");
        }
        if let Some(signals) = state.tunnels.remove(&tunnel) {
            // No event follows an abort: the tunnel's own tasks learn of it here.
            signals.close(CloseReason::Reset {
                code: H3_CONNECT_ERROR,
            });
        }
        drop(state);
        self.work.notify();
    }

    fn send_datagram(&self, tunnel: TunnelId, payload: &[u8]) -> bool {
        let sent = self
            .state
            .borrow_mut()
            .endpoint
            .tunnel_send_datagram(tunnel, payload);
        self.work.notify();
        sent.map_err(|e| tracing::debug!(?tunnel, error = %e, "datagram send failed"))
            .is_ok()
    }

    fn recv_datagram(&self, tunnel: TunnelId, out: &mut [u8]) -> Option<usize> {
        // Not open yet (accepted, its 2xx waiting for room) or gone: nothing to read; the
        // engine says `TunnelDatagrams` when the tunnel opens with datagrams queued.
        let received = self
            .state
            .borrow_mut()
            .endpoint
            .tunnel_recv_datagram(tunnel, out);
        received
            .map_err(|e| tracing::debug!(?tunnel, error = %e, "datagram receive failed"))
            .ok()
            .flatten()
    }

    fn count_target_drop(&self) {
        self.udp_target_drops.set(self.udp_target_drops.get() + 1);
    }

    fn flow_recv(&self, flow: veil_engine::IpFlowId, out: &mut [u8]) -> Option<usize> {
        let received = self.state.borrow_mut().endpoint.ip_flow_recv(flow, out);
        received
            .map_err(|e| tracing::debug!(?flow, error = %e, "flow receive failed"))
            .ok()
            .flatten()
    }

    fn flow_send(&self, flow: veil_engine::IpFlowId, payload: &[u8]) -> bool {
        let sent = self.state.borrow_mut().endpoint.ip_flow_send(flow, payload);
        self.work.notify();
        sent.map_err(|e| tracing::debug!(?flow, error = %e, "flow answer dropped"))
            .is_ok()
    }

    fn flow_close(&self, flow: veil_engine::IpFlowId) {
        let _ = self.state.borrow_mut().endpoint.ip_flow_close(flow);
        self.work.notify();
    }
}

/// What the TCP on-ramp's tasks may do with this core's engine.
impl TcpPort for Core {
    fn accept(&self, peer: SocketAddr, local: SocketAddr) -> Option<veil_engine::ConnectionHandle> {
        let accepted = self
            .state
            .borrow_mut()
            .endpoint
            .accept_tcp(Instant::now(), peer, local);
        accepted
            .map_err(|refused| {
                tracing::debug!(core = self.layout.core(), %peer, %refused, "TCP connection refused");
            })
            .ok()
    }

    fn adopt(&self, connection: veil_engine::ConnectionHandle, conn: TcpConnection) {
        self.state.borrow_mut().tcp.insert(connection, conn);
        self.work.notify();
    }

    fn input(&self, connection: veil_engine::ConnectionHandle, bytes: &[u8]) -> bool {
        let mut state = self.state.borrow_mut();
        state.endpoint.tcp_input(Instant::now(), connection, bytes);
        let wants_input = state.endpoint.tcp_wants_input(connection);
        drop(state);
        self.work.notify();
        wants_input
    }

    fn closed(&self, connection: veil_engine::ConnectionHandle) {
        self.state
            .borrow_mut()
            .endpoint
            .tcp_closed(Instant::now(), connection);
        self.work.notify();
    }

    fn drained(&self, connection: veil_engine::ConnectionHandle) {
        self.state.borrow_mut().tcp.note_drained(connection);
        self.work.notify();
    }
}

fn refuse(endpoint: &mut Endpoint, tunnel: TunnelId, refusal: Refusal) {
    if let Err(e) = endpoint.refuse_tunnel(tunnel, refusal) {
        tracing::debug!(?tunnel, error = %e, "refusing a tunnel failed");
    }
}
