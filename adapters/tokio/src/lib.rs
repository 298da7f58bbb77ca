//! veil on tokio: sockets, timers and TCP for the sans-IO [`veil_engine::Endpoint`].
//!
//! A [`Node`] is one endpoint on one UDP socket, run by one driver task:
//!
//! - the socket sends and receives batches with GSO/GRO where the kernel has them
//!   (quinn-udp);
//! - an **edge** resolves each tunnel request once, lets the engine's egress policy pick the
//!   first allowed address, dials exactly that address with a timeout, then accepts or
//!   refuses the tunnel and relays bytes (target EOF → FIN, target RST → tunnel reset,
//!   tunnel FIN → TCP half-close, tunnel reset → TCP RST);
//! - a **client** opens tunnels through an [`Opener`] and gets a [`Tunnel`] to relay;
//! - **CONNECT-UDP** (RFC 9298): an edge resolves and checks the target the same way, then
//!   relays datagrams through one UDP socket per tunnel, `connect()`ed to that address
//!   with Don't Fragment set; a client opens a [`UdpTunnel`] with [`Opener::open_udp`].
//!   Every queue on the way is bounded and drops (counted) when full, as UDP would.
//!
//! [`Node::shutdown`] stops new tunnels, lets open ones drain until a deadline, then closes
//! QUIC with an error code. [`ShutdownSignals`] catches SIGINT and SIGTERM, from before the
//! process says it is ready.
//!
//! No protocol logic lives here: parsing is veil-proto's, decisions are veil-engine's.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use veil_engine::{Config, EdgeConfig};
//! use veil_tokio::{Node, Options, ShutdownSignals};
//!
//! let mut stop = ShutdownSignals::new()?;
//! let edge = Node::start(
//!     Config::edge(EdgeConfig::default()),
//!     "127.0.0.1:4433".parse()?,
//!     Options::default(),
//! )?;
//! stop.recv().await?;
//! edge.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```

mod command;
mod decap;
mod decisions;
mod dial;
mod driver;
mod ip;
mod tcp_onramp;
mod tunnel;
pub mod udp;
mod udp_egress;
mod udp_tunnel;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use veil_engine::lanes::LanePicker;
use veil_engine::{
    Config, ConfigError, Endpoint, EndpointStats, OpenError, RefusedReason, RoleConfig,
    TunnelTarget,
};

pub use decisions::{DECISION_CHANNEL, Decision};
pub use ip::{IpEgress, IpTunnel, IpTunnelConfig, TunClientOptions, open_tun, run_tun_client};
pub use tunnel::{
    RelayEnd, RelayOutcome, Relaying, Tunnel, TunnelLimits, TunnelReader, TunnelReset, TunnelWriter,
};
pub use udp_tunnel::{
    UdpLimits, UdpReceiver, UdpSender, UdpTunnel, UdpTunnelClosed, UdpTunnelStats, WeakUdpSender,
};
pub use veil_tun::Tun;

use command::Command;
use driver::{Driver, LaneGauge};

/// HTTP/3 `H3_NO_ERROR`, the default code of a graceful close.
//# RFC 9114 §8.1: "H3_NO_ERROR (0x0100): No error. This is used when the connection or
//# stream needs to be closed, but there is no error to signal."
pub const H3_NO_ERROR: u64 = 0x0100;

/// Settings of the tokio side, beside the engine's [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Edge: how long resolving a target, and then connecting to it, may take each.
    pub connect_timeout: Duration,
    /// Per-tunnel memory bounds.
    pub limits: TunnelLimits,
    /// Per-tunnel queue bounds of UDP tunnels.
    pub udp_limits: UdpLimits,
    /// Application error code of the `CONNECTION_CLOSE` sent at shutdown.
    pub close_code: u64,
    /// How long connections may take to drain after the close, at most.
    pub close_grace: Duration,
    /// What the connection IDs the endpoint issues say about it (edge, process
    /// generation), for a load balancer or an upgrade's kernel steering; `None`: random IDs.
    pub cid_layout: Option<veil_engine::CidLayout>,
    /// Receive and send buffer of the QUIC socket, in bytes, asked of the kernel (which
    /// caps it at `net.core.rmem_max` / `wmem_max`); `None`: the kernel's default.
    pub udp_buffer: Option<usize>,
    /// Receive and send buffer of the QUIC socket, in bytes, asked of the kernel while the
    /// endpoint has a connection on a path longer than a LAN
    /// ([`Endpoint::long_paths`](veil_engine::Endpoint::long_paths)); the kernel's default
    /// (or `udp_buffer`) otherwise. `None`: never changed.
    pub udp_buffer_long_path: Option<usize>,
    /// Run the driver on an OS thread of its own (a current-thread runtime) rather than
    /// as a task of the caller's runtime. A client's lanes do ([`Opener::across`]): a
    /// driver that shares the runtime's workers with a busy lane's driver and relays waits
    /// behind them, which is what lanes exist to avoid.
    pub own_thread: bool,
    /// After each piece of work, the driver polls for this long (a turn of the runtime at
    /// a time, the socket's readiness checked without sleeping) before it sleeps: the CPU
    /// stays awake for an answer that is due, and that answer does not wait for a sleeping
    /// CPU to wake (tens of microseconds on a virtual machine whose idle CPUs halt). Costs
    /// up to this much CPU after every message. `None`: sleep at once.
    pub busy_poll: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            limits: TunnelLimits::default(),
            udp_limits: UdpLimits::default(),
            close_code: H3_NO_ERROR,
            close_grace: Duration::from_secs(2),
            cid_layout: None,
            udp_buffer: None,
            udp_buffer_long_path: None,
            own_thread: false,
            busy_poll: None,
        }
    }
}

/// Why a [`Node`] did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The UDP socket could not be bound or set up.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The engine refused the configuration.
    Config(ConfigError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The cause is the source: a chain printed with `{:#}` shows it once.
            Self::Bind { addr, .. } => write!(f, "cannot bind UDP {addr}"),
            Self::Config(_) => f.write_str("invalid configuration"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } => Some(source),
            Self::Config(e) => Some(e),
        }
    }
}

/// Why a [`Node`]'s driver stopped other than by a clean shutdown.
#[derive(Debug)]
#[non_exhaustive]
pub enum DriverError {
    /// The UDP socket failed.
    Io(io::Error),
    /// The driver task panicked or was cancelled.
    Task(tokio::task::JoinError),
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "UDP socket failed: {e}"),
            Self::Task(e) => write!(f, "driver task failed: {e}"),
        }
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Task(e) => Some(e),
        }
    }
}

/// Why [`Opener::open`] or [`Opener::open_udp`] did not give a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenFailure {
    /// The edge refused, or could not be reached in time (the engine's reason).
    Refused(RefusedReason),
    /// The engine would not even try (not a client, queue full, closing).
    NotSent(OpenError),
    /// The node is shutting down or has stopped.
    Stopped,
}

impl fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(RefusedReason::Status {
                status,
                proxy_error,
                ..
            }) => match proxy_error {
                Some(error) => write!(f, "the edge refused with {status} ({})", error.token()),
                None => write!(f, "the edge refused with {status}"),
            },
            Self::Refused(RefusedReason::EdgeUnavailable) => f.write_str("the edge is unavailable"),
            Self::Refused(RefusedReason::ConnectionLost) => {
                f.write_str("the connection to the edge was lost")
            }
            Self::Refused(RefusedReason::MalformedResponse) => {
                f.write_str("the edge answered with a malformed response")
            }
            Self::Refused(other) => write!(f, "the edge refused: {other:?}"),
            Self::NotSent(e) => e.fmt(f),
            Self::Stopped => f.write_str("the node is shutting down"),
        }
    }
}

impl std::error::Error for OpenFailure {}

/// One veil endpoint on tokio: its UDP socket and its driver task.
///
/// Dropping a `Node` without [`shutdown`](Self::shutdown) closes it at once (no drain).
#[derive(Debug)]
pub struct Node {
    local_addr: SocketAddr,
    fingerprint: Option<[u8; 32]>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<io::Result<EndpointStats>>>,
    audit: Option<mpsc::Receiver<veil_engine::AuditRecord>>,
    decisions: Option<mpsc::Receiver<Decision>>,
    /// The TCP on-ramp's accept loops: stopped when the shutdown starts, so that a
    /// successor sharing the listener (an upgrade) takes every new connection.
    tcp_accepts: Vec<JoinHandle<()>>,
    /// The driver's load as a client lane: bytes moved, tunnels open.
    gauge: Arc<LaneGauge>,
}

/// Audit records waiting for the host's writer, at most (then dropped, counted).
pub const AUDIT_CHANNEL: usize = 4096;

impl Node {
    /// Binds `bind` and starts the endpoint's driver on the current tokio runtime (call it
    /// from within one).
    ///
    /// An edge listens on `bind`. A client sends from it (`0.0.0.0:0` or `[::]:0`: see
    /// [`client_bind_addr`]); its `local_addr` setting is replaced by the bound address,
    /// which the engine needs to create its connection.
    pub fn start(config: Config, bind: SocketAddr, options: Options) -> Result<Self, StartError> {
        Self::start_with_policy(config, bind, options, veil_engine::DefaultPolicy)
    }

    /// [`start`](Self::start), with the edge's hooks (`veil_engine::Policy`): the engine
    /// consults them for every connection and request. Questions a hook leaves to the host
    /// (`Ask`) come out of [`decisions`](Self::decisions).
    pub fn start_with_policy(
        config: Config,
        bind: SocketAddr,
        options: Options,
        policy: impl veil_engine::Policy + 'static,
    ) -> Result<Self, StartError> {
        Self::start_with(config, bind, options, policy, None)
    }

    /// [`start_with_policy`](Self::start_with_policy), and for an edge an IP egress: the
    /// device CONNECT-IP tunnels' packets go out through (`EdgeConfig::ip_pools` gives the
    /// addresses). Without one the edge declares it does not serve CONNECT-IP (501).
    pub fn start_with(
        config: Config,
        bind: SocketAddr,
        options: Options,
        policy: impl veil_engine::Policy + 'static,
        ip_egress: Option<&IpEgress>,
    ) -> Result<Self, StartError> {
        let socket = std::net::UdpSocket::bind(bind)
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        Self::start_on(config, socket, options, policy, ip_egress)
    }

    /// [`start_with`](Self::start_with) on a socket bound elsewhere: one with
    /// `SO_REUSEPORT` that an upgrade's successor will share, say.
    pub fn start_on(
        mut config: Config,
        socket: std::net::UdpSocket,
        options: Options,
        policy: impl veil_engine::Policy + 'static,
        ip_egress: Option<&IpEgress>,
    ) -> Result<Self, StartError> {
        let bind = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        if let Some(bytes) = options.udp_buffer {
            udp::size_buffers(&socket, bytes);
        }
        if let RoleConfig::Edge(edge) = &mut config.role {
            edge.ip_decap = ip_egress.is_some_and(IpEgress::is_decap);
            edge.serves = if ip_egress.is_some() {
                veil_engine::TunnelKinds::ALL
            } else {
                veil_engine::TunnelKinds::only(veil_engine::TunnelKind::Stream)
                    .with(veil_engine::TunnelKind::Udp)
            };
        }
        // The address now: `UdpIo` is made on the runtime that will drive it.
        let local_addr = socket
            .local_addr()
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        if let RoleConfig::Client(client) = &mut config.role {
            client.local_addr = Some(local_addr);
        }
        let audited = matches!(&config.role, RoleConfig::Edge(edge) if edge.audit);
        let mut endpoint = Endpoint::new(config, Instant::now())
            .map_err(StartError::Config)?
            .with_policy(policy);
        if let Some(layout) = options.cid_layout {
            endpoint = endpoint.with_cid_layout(layout);
        }
        let (decision_tx, decisions) = mpsc::channel(DECISION_CHANNEL);
        let (audit_tx, audit) = if audited {
            let (tx, rx) = mpsc::channel(AUDIT_CHANNEL);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let fingerprint = endpoint.certificate_fingerprint();
        let (tx, rx) = mpsc::unbounded_channel();
        let device = ip_egress.and_then(|egress| ip::DeviceLink::spawn(egress, tx.clone()));
        let decap = ip_egress
            .is_some_and(IpEgress::is_decap)
            .then(decap::DecapFlows::default);
        let gauge = Arc::new(LaneGauge::default());
        let lane_gauge = gauge.clone();
        let command_tx = tx.clone();
        let drive = move || -> io::Result<_> {
            let udp = udp::UdpIo::from_std(socket)?;
            Ok(Driver::new(
                endpoint,
                udp,
                rx,
                command_tx,
                options,
                audit_tx,
                decision_tx,
            )
            .with_ip_device(device)
            .with_decap(decap)
            .with_gauge(lane_gauge))
        };
        let task = if options.own_thread {
            spawn_on_own_thread(drive)
        } else {
            let driver = drive().map_err(|source| StartError::Bind { addr: bind, source })?;
            tokio::spawn(driver.run())
        };
        Ok(Self {
            local_addr,
            fingerprint,
            commands: tx,
            task: Some(task),
            audit,
            decisions: Some(decisions),
            tcp_accepts: Vec::new(),
            gauge,
        })
    }

    /// Edge: also takes clients over TCP (TLS and HTTP/2, for networks that block UDP) on
    /// `listener`, with the same certificate, tokens, hooks, rules and egress as the QUIC
    /// listener. Returns the listener's address.
    pub fn listen_tcp(&mut self, listener: std::net::TcpListener) -> io::Result<SocketAddr> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        self.tcp_accepts
            .push(tcp_onramp::spawn_listener(listener, self.commands.clone()));
        Ok(addr)
    }

    /// The bound UDP address (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Edge: SHA-256 of the certificate it serves, for clients to pin.
    pub fn certificate_fingerprint(&self) -> Option<[u8; 32]> {
        self.fingerprint
    }

    /// Edge: the questions its hooks leave to the host, each with a one-shot answer
    /// (once; `None` afterwards). Nobody taking them is the same as refusing them.
    pub fn decisions(&mut self) -> Option<mpsc::Receiver<Decision>> {
        self.decisions.take()
    }

    /// Edge with `EdgeConfig::audit`: the engine's audit records, one per finished tunnel,
    /// for the host to write (once; `None` afterwards, or without `audit`).
    pub fn audit_records(&mut self) -> Option<mpsc::Receiver<veil_engine::AuditRecord>> {
        self.audit.take()
    }

    /// A handle that reads the endpoint's counters while it runs (for metrics); clone it
    /// freely.
    pub fn stats_probe(&self) -> StatsProbe {
        StatsProbe::across(std::slice::from_ref(self))
    }

    /// Client: a handle that opens tunnels; clone it freely.
    pub fn opener(&self) -> Opener {
        Opener::across(std::slice::from_ref(self))
    }

    /// Stops new tunnels, lets open ones finish for at most `drain`, resets the rest, then
    /// closes QUIC (with [`Options::close_code`]) and waits for the close to go out.
    pub async fn shutdown(mut self, drain: Duration) -> Result<EndpointStats, DriverError> {
        for accepts in self.tcp_accepts.drain(..) {
            accepts.abort();
        }
        let _ = self.commands.send(Command::Shutdown { drain });
        self.join().await
    }

    /// Waits until the driver stops by itself (only a socket failure does that).
    pub async fn stopped(mut self) -> Result<EndpointStats, DriverError> {
        self.join().await
    }

    async fn join(&mut self) -> Result<EndpointStats, DriverError> {
        let Some(task) = self.task.take() else {
            return Ok(EndpointStats::default());
        };
        match task.await {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(e)) => Err(DriverError::Io(e)),
            Err(e) => Err(DriverError::Task(e)),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.commands.send(Command::Shutdown {
                drain: Duration::ZERO,
            });
        }
    }
}

/// Runs the driver `drive` makes on a thread of its own, with a current-thread runtime
/// (its socket registered there); the returned task, on the caller's runtime, ends with
/// the driver.
fn spawn_on_own_thread(
    drive: impl FnOnce() -> io::Result<Driver> + Send + 'static,
) -> JoinHandle<io::Result<EndpointStats>> {
    let (done_tx, done) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("veil-driver".to_owned())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| runtime.block_on(async { drive()?.run().await }));
            let _ = done_tx.send(result);
        });
    tokio::spawn(async move {
        thread?;
        done.await
            .unwrap_or_else(|_| Err(io::Error::other("the driver's thread ended")))
    })
}

/// Reads a running [`Node`]'s counters.
#[derive(Debug, Clone)]
pub struct StatsProbe {
    commands: Vec<mpsc::UnboundedSender<Command>>,
}

impl StatsProbe {
    /// A probe of several nodes (a client's lanes, say), whose counters it sums.
    pub fn across(nodes: &[Node]) -> Self {
        Self {
            commands: nodes.iter().map(|node| node.commands.clone()).collect(),
        }
    }

    /// The endpoint's counters now (summed over the nodes probed); `None` once a node has
    /// stopped.
    pub async fn stats(&self) -> Option<EndpointStats> {
        let mut sum = EndpointStats::default();
        for commands in &self.commands {
            let (reply, stats) = oneshot::channel();
            commands.send(Command::Stats { reply }).ok()?;
            sum.merge(&stats.await.ok()?);
        }
        Some(sum)
    }
}

/// Opens tunnels through a client [`Node`], or through whichever of several client nodes
/// (lanes: each its own socket, driver and connection to the edge) has moved the fewest
/// bytes lately for the tunnels it has open ([`veil_engine::lanes`]): a small tunnel then
/// does not queue behind a bulk transfer's packets in a driver it shares with it.
#[derive(Debug, Clone)]
pub struct Opener {
    lanes: Arc<Lanes>,
}

/// The nodes an [`Opener`] places tunnels on.
#[derive(Debug)]
struct Lanes {
    /// Each lane's driver, and its load.
    nodes: Vec<(mpsc::UnboundedSender<Command>, Arc<LaneGauge>)>,
    picker: std::sync::Mutex<LanePicker>,
}

impl Opener {
    /// An opener that places each new tunnel on one of `nodes` (client nodes to the same
    /// edge): the least busy, quiet ones in turn. With one node, every tunnel goes there.
    ///
    /// # Panics
    ///
    /// If `nodes` is empty.
    pub fn across(nodes: &[Node]) -> Self {
        let count = NonZeroUsize::new(nodes.len()).expect("an opener needs a node");
        let nodes = nodes
            .iter()
            .map(|node| (node.commands.clone(), node.gauge.clone()))
            .collect();
        Self {
            lanes: Arc::new(Lanes {
                nodes,
                picker: std::sync::Mutex::new(LanePicker::new(count, Instant::now())),
            }),
        }
    }

    /// The driver of the lane the next tunnel goes to.
    fn lane(&self) -> &mpsc::UnboundedSender<Command> {
        let nodes = &self.lanes.nodes;
        let index = if nodes.len() > 1 {
            let (moved, tunnels): (Vec<u64>, Vec<usize>) = nodes
                .iter()
                .map(|(_, gauge)| {
                    (
                        gauge.moved.load(Ordering::Relaxed),
                        gauge.tunnels.load(Ordering::Relaxed),
                    )
                })
                .unzip();
            // A poisoned lock only means another opener panicked mid-pick: the table is
            // still a valid estimate.
            let mut picker = self
                .lanes
                .picker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let index = picker.pick_counting(Instant::now(), &moved, &tunnels);
            tracing::debug!(lane = index, ?moved, ?tunnels, "a new tunnel's lane");
            index
        } else {
            0
        };
        let (commands, _) = nodes
            .get(index)
            .or_else(|| nodes.first())
            .expect("an opener has a node");
        commands
    }

    /// Opens a tunnel to `target` and waits for the edge's answer (the engine bounds the
    /// wait with its pending deadline).
    pub async fn open(&self, target: TunnelTarget) -> Result<Tunnel, OpenFailure> {
        let (reply, answer) = oneshot::channel();
        self.lane()
            .send(Command::Open {
                target: Box::new(target),
                reply,
            })
            .map_err(|_| OpenFailure::Stopped)?;
        answer.await.map_err(|_| OpenFailure::Stopped)?
    }

    /// Opens a CONNECT-UDP tunnel (RFC 9298) to `target` and waits for the edge's answer
    /// (bounded by the engine's pending deadline, as for [`open`](Self::open)).
    pub async fn open_udp(&self, target: TunnelTarget) -> Result<UdpTunnel, OpenFailure> {
        let (reply, answer) = oneshot::channel();
        self.lane()
            .send(Command::OpenUdp {
                target: Box::new(target),
                reply,
            })
            .map_err(|_| OpenFailure::Stopped)?;
        answer.await.map_err(|_| OpenFailure::Stopped)?
    }
}

/// The address a client binds to reach `edge`: the unspecified address of its family,
/// port 0.
pub fn client_bind_addr(edge: SocketAddr) -> SocketAddr {
    let ip = match edge.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// SIGINT (Ctrl-C) and, on Unix, SIGTERM, caught from the moment [`ShutdownSignals::new`]
/// returns.
///
/// Create it before telling anyone the process is ready (`READY=1`, a banner a supervisor
/// waits for): until a handler is installed, SIGTERM has its default action and kills
/// the process without its drain. A supervisor that stops a service right after it became
/// ready hit exactly that window when the handlers were installed by the first poll of a
/// future created after the announcement. One value serves the process's whole life: a
/// signal that arrives while nobody waits in [`ShutdownSignals::recv`] is kept for the
/// next call, not lost.
#[derive(Debug)]
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers. Needs a running tokio runtime with signals enabled.
    pub fn new() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next SIGINT or SIGTERM (on other systems, Ctrl-C).
    pub async fn recv(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok(()),
                _ = self.terminate.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_binds_the_wildcard_of_the_edge_family() {
        let v4: SocketAddr = "192.0.2.1:443".parse().expect("valid");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("valid");
        assert_eq!(client_bind_addr(v4), "0.0.0.0:0".parse().expect("valid"));
        assert_eq!(client_bind_addr(v6), "[::]:0".parse().expect("valid"));
    }
}
