//! veil on glommio: a thread-per-core edge for the sans-IO [`veil_engine::Endpoint`]
//! (Linux only: glommio runs on `io_uring`).
//!
//! [`Edge::start`] runs one glommio executor pinned to each of N cores. Every core has its
//! own [`Endpoint`](veil_engine::Endpoint), its own UDP socket bound with `SO_REUSEPORT` to
//! the listen address, its own TCP dials (with a connect timeout) and relays; nothing is
//! shared on the hot path.
//!
//! - A client's first Initial makes the core that received it the connection's owner, and
//!   that core issues every connection ID of the connection with its number in it
//!   ([`veil_engine::CidLayout`]). The engine's steering program, attached to the sockets'
//!   group ([`veil_engine::driver_steering`]), then sends every datagram of the connection
//!   to its owner's socket, whatever the peer's address (NAT rebinding, migration), and a
//!   new connection from a client's lane to the core the lane's number names; other new
//!   connections are spread by the kernel's 4-tuple hash.
//! - A datagram that still reaches another core (the kernel refused the program, which is
//!   logged; a client's Initial naming another core than the connection's IDs) is
//!   forwarded to its owner over glommio's channel mesh ([`CoreStats::forwarded_out`]).
//! - With [`Options::listen_tcp`], every core also has a TCP listening socket in one
//!   `SO_REUSEPORT` group: the edge's TCP on-ramp (TLS and HTTP/2, for clients whose
//!   network blocks UDP), which the engine runs. The kernel spreads connections over the
//!   cores, and each stays on the core that accepted it ([`Edge::tcp_addr`]).
//! - Authentication, egress policy and every other decision are the engine's, exactly as
//!   on veil-tokio.
//! - [`Edge::shutdown`] stops new tunnels on every core, lets open ones drain until a
//!   deadline, resets the rest, closes QUIC with an error code, and returns each core's
//!   counters.
//!
//! `io_uring` registers memory that counts against `RLIMIT_MEMLOCK`; the edge raises the soft
//! limit to the hard one and sizes each core's share to fit, or fails with a message that
//! says what to raise ([`MemlockError`]).
//!
//! ```no_run
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use veil_engine::{Config, EdgeConfig};
//! use veil_glommio::{Edge, Options};
//!
//! let edge = Edge::start(
//!     Config::edge(EdgeConfig::default()),
//!     "127.0.0.1:4433".parse()?,
//!     Options { cores: 2, ..Options::default() },
//! )?;
//! // … until SIGTERM …
//! for core in edge.shutdown(std::time::Duration::from_secs(5))? {
//!     println!("core {}: forwarded {}", core.core, core.forwarded_out);
//! }
//! # Ok(())
//! # }
//! ```

#![cfg(target_os = "linux")]

mod core;
mod decap;
mod memlock;
mod port;
mod resolve;
mod signal;
mod steer;
mod tcp;
mod tunnel;
mod udp;
mod udp_tunnel;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};
use tokio::sync::watch;
use veil_engine::{
    Config, ConfigError, Endpoint, EndpointStats, RoleConfig, TunnelKind, TunnelKinds,
};

pub use memlock::MemlockError;
pub use steer::attach_steering;

use crate::core::CoreSetup;

/// HTTP/3 `H3_NO_ERROR`, the default code of a graceful close.
//# RFC 9114 §8.1: "H3_NO_ERROR (0x0100): No error. This is used when the connection or
//# stream needs to be closed, but there is no error to signal."
pub const H3_NO_ERROR: u64 = 0x0100;

/// Settings of the glommio side, beside the engine's [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Cores to run on, one executor pinned to each (at most the CPUs available to the
    /// process and `u16::MAX`).
    pub cores: usize,
    /// How long resolving a target, and then connecting to it, may take each.
    pub connect_timeout: Duration,
    /// Application error code of the `CONNECTION_CLOSE` sent at shutdown.
    pub close_code: u64,
    /// How long connections may take to drain after the close, at most.
    pub close_grace: Duration,
    /// `io_uring` I/O memory wanted per core, in bytes; less is used when `RLIMIT_MEMLOCK`
    /// is lower. glommio uses it for file I/O, which the edge does not do.
    pub io_memory: u64,
    /// Datagrams that may wait in each core-to-core forwarding channel; more are dropped
    /// and counted ([`CoreStats::forward_dropped`]).
    pub forward_queue: usize,
    /// Also take clients over TCP (TLS and HTTP/2, for networks that block UDP) on this
    /// address, with the same certificate, tokens, hooks, rules and egress as the QUIC
    /// listener: one `SO_REUSEPORT` listening socket per core (port 0: the OS picks one
    /// port for all; [`Edge::tcp_addr`]).
    pub listen_tcp: Option<SocketAddr>,
    /// This edge's QUIC-LB server ID byte, written in every connection ID it issues
    /// (`veil_engine::CidLayout::with_server`).
    pub edge_id: u8,
    /// Receive and send buffer of each core's QUIC socket, in bytes, asked of the kernel
    /// (which caps it at `net.core.rmem_max` / `wmem_max`); `None`: the kernel's default.
    ///
    /// Larger is not better for a proxy: a datagram waits behind everything queued before
    /// it. With 4 MiB buffers (the kernel's cap here), a small tunnel's round trips beside
    /// a saturating bulk tunnel on the same connection took 80–100 ms at the median,
    /// against 3–4 ms with the default (docs/PERFORMANCE.md).
    pub udp_buffer: Option<usize>,
    /// Receive and send buffer of each core's socket while its endpoint has a connection
    /// on a path longer than a LAN
    /// ([`Endpoint::long_paths`](veil_engine::Endpoint::long_paths)): there the socket is
    /// the only queue of a fast path, and the kernel's default a small part of its
    /// bandwidth-delay product. `None`: never changed.
    pub udp_buffer_long_path: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cores: available_cores(),
            connect_timeout: Duration::from_secs(10),
            close_code: H3_NO_ERROR,
            close_grace: Duration::from_secs(2),
            io_memory: 512 * 1024,
            forward_queue: 1024,
            listen_tcp: None,
            edge_id: 0,
            udp_buffer: None,
            udp_buffer_long_path: None,
        }
    }
}

/// The CPUs this process may run on (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// One core's counters (at shutdown, or as last published while running: [`Edge::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// The core's number, the one its connection IDs carry.
    pub core: u16,
    /// Its endpoint's counters (connections it owned, tunnels, datagrams).
    pub endpoint: EndpointStats,
    /// Datagrams it received for connections of other cores and forwarded to them.
    pub forwarded_out: u64,
    /// Datagrams other cores forwarded to it.
    pub forwarded_in: u64,
    /// Datagrams it could not forward (the owner's queue was full or closed).
    pub forward_dropped: u64,
    /// UDP sends that failed (the datagram was lost; QUIC resends).
    pub send_errors: u64,
    /// Datagrams of CONNECT-UDP tunnels that their target sockets refused (dropped, as UDP
    /// would: a full buffer, larger than the path allows, the ICMP error of an earlier
    /// one). The engine counts its own drops in [`EndpointStats`].
    pub udp_target_drops: u64,
}

/// Why an [`Edge`] did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is not an edge's.
    NotAnEdge,
    /// `cores` is 0 or more than the process may use.
    Cores {
        /// Cores asked for.
        asked: usize,
        /// CPUs available.
        available: usize,
    },
    /// The UDP sockets could not be bound or set up.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The TCP listening sockets ([`Options::listen_tcp`]) could not be bound or set up.
    BindTcp {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// The engine refused the configuration.
    Config(ConfigError),
    /// `RLIMIT_MEMLOCK` is too small for `io_uring` on this many cores.
    Memlock(MemlockError),
    /// glommio could not start its executors.
    Executors(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnEdge => f.write_str("the glommio adapter runs edges only"),
            Self::Cores { asked, available } => write!(
                f,
                "cannot run on {asked} cores: between 1 and {available} are available"
            ),
            // The cause is the source: a chain printed with `{:#}` shows it once.
            Self::Bind { addr, .. } => write!(f, "cannot bind UDP {addr}"),
            Self::BindTcp { addr, .. } => write!(f, "cannot listen on TCP {addr}"),
            Self::Config(_) => f.write_str("invalid configuration"),
            Self::Memlock(e) => e.fmt(f),
            Self::Executors(e) => write!(f, "cannot start the glommio executors: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. } | Self::BindTcp { source, .. } => Some(source),
            Self::Config(e) => Some(e),
            // Its message is the whole story; a chain would repeat it.
            _ => None,
        }
    }
}

/// Why an [`Edge`] stopped other than cleanly.
#[derive(Debug)]
#[non_exhaustive]
pub enum EdgeError {
    /// A core failed (its socket, or its executor); the others were stopped.
    Core(String),
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Core(e) => write!(f, "a core failed: {e}"),
        }
    }
}

impl std::error::Error for EdgeError {}

/// A running thread-per-core edge.
///
/// Dropping it without [`shutdown`](Self::shutdown) tells every core to close at once (no
/// drain) and does not wait for them.
pub struct Edge {
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    fingerprint: Option<[u8; 32]>,
    cores: usize,
    stop: watch::Sender<Option<Duration>>,
    handles: Option<PoolThreadHandles<io::Result<CoreStats>>>,
    /// Each core's counters, as it last published them (every [`STATS_PERIOD`]).
    published: Arc<Mutex<Vec<CoreStats>>>,
    /// Every core's audit records (`EdgeConfig::audit`), until the host takes them.
    audit: Option<std::sync::mpsc::Receiver<veil_engine::AuditRecord>>,
}

/// Audit records waiting for the host's writer, all cores together (then dropped,
/// counted).
pub const AUDIT_CHANNEL: usize = 4096;

/// Reads a running [`Edge`]'s counters from any thread.
#[derive(Debug, Clone)]
pub struct StatsHandle(Arc<Mutex<Vec<CoreStats>>>);

impl StatsHandle {
    /// Every core's counters, each as of at most [`STATS_PERIOD`] ago, in core order.
    pub fn stats(&self) -> Vec<CoreStats> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Makes one core's hooks: each core's engine consults a `Policy` of its own (state shared
/// between cores is the factory's to arrange, say behind an `Arc`).
pub type PolicyFactory = Arc<dyn Fn() -> Box<dyn veil_engine::Policy> + Send + Sync>;

/// How often each core publishes its counters for [`Edge::stats`]: a copy of a few hundred
/// bytes under an uncontended lock, far from the data path.
pub const STATS_PERIOD: Duration = Duration::from_millis(500);

impl fmt::Debug for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge")
            .field("local_addr", &self.local_addr)
            .field("tcp_addr", &self.tcp_addr)
            .field("cores", &self.cores)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Binds one `SO_REUSEPORT` socket per core on `listen` (port 0: the OS picks one port
    /// for all), and as many TCP listening sockets on [`Options::listen_tcp`] if set, and
    /// starts one pinned executor per core. Returns once every socket is bound; the cores
    /// start serving as their executors come up.
    ///
    /// A self-signed certificate (no `cert`/`key` in the configuration) is made once here,
    /// so that every core serves the same one.
    pub fn start(config: Config, listen: SocketAddr, options: Options) -> Result<Self, StartError> {
        Self::start_inner(config, listen, options, None)
    }

    /// [`start`](Self::start), with the edge's hooks: `make_policy` makes one `Policy` per
    /// core. A hook's question to the host (`Ask`) is answered no at once on this host.
    pub fn start_with_policy(
        config: Config,
        listen: SocketAddr,
        options: Options,
        make_policy: PolicyFactory,
    ) -> Result<Self, StartError> {
        Self::start_inner(config, listen, options, Some(make_policy))
    }

    fn start_inner(
        config: Config,
        listen: SocketAddr,
        options: Options,
        policy: Option<PolicyFactory>,
    ) -> Result<Self, StartError> {
        let available = available_cores();
        let cores = options.cores;
        if cores == 0 || cores > available || u16::try_from(cores).is_err() {
            return Err(StartError::Cores {
                asked: cores,
                available,
            });
        }
        let RoleConfig::Edge(mut edge) = config.role else {
            return Err(StartError::NotAnEdge);
        };
        // The kinds this host serves: CONNECT (TCP), CONNECT-UDP and, with address pools,
        // CONNECT-IP through the engine's decap off-ramp (no device: each core's engine
        // takes its tunnels' packets apart; pools are per engine, and an address given
        // out on two cores is no conflict, since no packet leaves the edge by it). The
        // engine answers any other kind with 501 rather than leave it waiting.
        edge.serves = TunnelKinds::only(TunnelKind::Stream).with(TunnelKind::Udp);
        if !edge.ip_pools.is_empty() {
            edge.serves = edge.serves.with(TunnelKind::Ip);
            edge.ip_decap = true;
        }
        let audited = edge.audit;
        let config = Config {
            role: RoleConfig::Edge(edge.with_shared_self_signed().map_err(StartError::Config)?),
            quic: config.quic,
        };
        // Validate once here, so that a bad configuration fails before any thread starts.
        let fingerprint = Endpoint::new(config.clone(), Instant::now())
            .map_err(StartError::Config)?
            .certificate_fingerprint();
        let io_memory =
            memlock::io_memory_per_core(cores, options.io_memory).map_err(StartError::Memlock)?;
        let io_memory = usize::try_from(io_memory).unwrap_or(usize::MAX);
        let (sockets, local_addr) = bind_all(listen, cores, options.udp_buffer)?;
        if cores > 1 {
            steer::attach(&sockets, cores);
        }
        let sockets = Arc::new(Mutex::new(
            sockets.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let (tcp_listeners, tcp_addr) = match options.listen_tcp {
            Some(addr) => {
                let (listeners, bound) = tcp::bind_all(addr, cores)
                    .map_err(|source| StartError::BindTcp { addr, source })?;
                (listeners, Some(bound))
            }
            None => (Vec::new(), None),
        };
        let tcp_listeners = Arc::new(Mutex::new(tcp_listeners));
        let mesh = MeshBuilder::full(cores, options.forward_queue.max(1));
        let (stop, stop_rx) = watch::channel(None);
        let published = Arc::new(Mutex::new(vec![CoreStats::default(); cores]));
        let (audit_tx, audit) = if audited {
            let (tx, rx) = std::sync::mpsc::sync_channel(AUDIT_CHANNEL);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let publish_to = published.clone();
        let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(cores, None))
            .name("veil-core")
            .io_memory(io_memory)
            .on_all_shards(move || {
                let sockets = sockets.clone();
                let tcp_listener = tcp_listeners
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop();
                let published = publish_to.clone();
                let audit = audit_tx.clone();
                let policy = policy.clone();
                async move {
                    if tcp_addr.is_some() && tcp_listener.is_none() {
                        return Err(io::Error::other("no TCP listener left"));
                    }
                    core::run(CoreSetup {
                        config,
                        sockets,
                        local_addr,
                        tcp_listener,
                        mesh,
                        stop: stop_rx,
                        options,
                        published,
                        audit,
                        policy,
                    })
                    .await
                }
            })
            .map_err(|e| StartError::Executors(e.to_string()))?;
        tracing::info!(%local_addr, ?tcp_addr, cores, io_memory, "glommio edge started");
        Ok(Self {
            local_addr,
            tcp_addr,
            fingerprint,
            cores,
            stop,
            handles: Some(handles),
            published,
            audit,
        })
    }

    /// Every core's counters while the edge runs, each as of at most [`STATS_PERIOD`] ago,
    /// in core order. Sum their `endpoint` fields (`EndpointStats::merge`) for the edge's.
    pub fn stats(&self) -> Vec<CoreStats> {
        self.stats_handle().stats()
    }

    /// With `EdgeConfig::audit`: every core's audit records, for the host to write from a
    /// thread of its own (once; `None` afterwards, or without `audit`).
    pub fn audit_records(&mut self) -> Option<std::sync::mpsc::Receiver<veil_engine::AuditRecord>> {
        self.audit.take()
    }

    /// A handle to [`stats`](Self::stats) that other threads can keep.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.published.clone())
    }

    /// The UDP address every core listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TCP on-ramp's address every core listens on ([`Options::listen_tcp`], with the
    /// port the OS chose for port 0), when it listens.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// SHA-256 of the certificate every core serves, for clients to pin.
    pub fn certificate_fingerprint(&self) -> Option<[u8; 32]> {
        self.fingerprint
    }

    /// How many cores run.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Stops new tunnels on every core, lets open ones finish for at most `drain`, resets
    /// the rest, closes QUIC (with [`Options::close_code`]), and waits for every core to
    /// stop. Blocks the calling thread (not a core's).
    pub fn shutdown(mut self, drain: Duration) -> Result<Vec<CoreStats>, EdgeError> {
        let _ = self.stop.send(Some(drain));
        let Some(handles) = self.handles.take() else {
            return Ok(Vec::new());
        };
        let mut all = Vec::with_capacity(self.cores);
        let mut failure = None;
        for result in handles.join_all() {
            match result {
                Ok(Ok(stats)) => all.push(stats),
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(e) => failure = Some(e.to_string()),
            }
        }
        all.sort_by_key(|stats| stats.core);
        match failure {
            Some(e) => Err(EdgeError::Core(e)),
            None => Ok(all),
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if self.handles.is_some() {
            let _ = self.stop.send(Some(Duration::ZERO));
        }
    }
}

/// Binds `cores` UDP sockets with `SO_REUSEPORT` on `listen`, all before any core reads, so
/// that the kernel's group is complete from the first datagram. Returns them and the bound
/// address (the port the OS chose for port 0).
fn bind_all(
    listen: SocketAddr,
    cores: usize,
    buffer: Option<usize>,
) -> Result<(Vec<socket2::Socket>, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind {
        addr: listen,
        source,
    };
    // First without SO_REUSEPORT: fails if anyone listens there, us of another run
    // included (a second edge would otherwise silently take half of the first one's
    // datagrams), and for port 0 picks a port nobody holds (with SO_REUSEPORT the kernel
    // may pick one a socket of ours already has, and join it).
    let mut addr = std::net::UdpSocket::bind(listen)
        .and_then(|probe| probe.local_addr())
        .map_err(bind_error)?;
    let mut sockets = Vec::with_capacity(cores);
    for _ in 0..cores {
        let socket = reuseport_socket(addr, buffer).map_err(bind_error)?;
        addr = socket
            .local_addr()
            .map_err(bind_error)?
            .as_socket()
            .ok_or_else(|| bind_error(io::Error::other("not an IP socket")))?;
        sockets.push(socket);
    }
    Ok((sockets, addr))
}

fn reuseport_socket(addr: SocketAddr, buffer: Option<usize>) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Only when asked ([`Options::udp_buffer`]); the kernel caps it at rmem_max.
    if let Some(bytes) = buffer {
        set_buffers(&socket, bytes);
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Asks for `bytes` of receive and send buffer, past the kernel's cap where the process
/// may ([`veil_sockopt::size_buffers`], as the tokio host does).
pub(crate) fn set_buffers(socket: &socket2::Socket, bytes: usize) {
    veil_sockopt::size_buffers(borrowed(socket), bytes);
}

/// The socket's descriptor, for rustix's socket options (socket2 0.4, glommio's, predates
/// `AsFd`).
#[allow(unsafe_code)]
fn borrowed(socket: &socket2::Socket) -> std::os::fd::BorrowedFd<'_> {
    // SAFETY: the descriptor stays open as long as `socket`, which the result borrows.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(std::os::fd::AsRawFd::as_raw_fd(socket)) }
}

/// An executor for unit tests, with I/O memory that fits any `RLIMIT_MEMLOCK`.
#[cfg(test)]
pub(crate) fn test_executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(64 * 1024)
        .make()
        .expect("a glommio executor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_gets_a_socket_on_one_port() {
        let (sockets, addr) =
            bind_all("127.0.0.1:0".parse().expect("addr"), 3, None).expect("bind");
        assert_eq!(sockets.len(), 3);
        assert_ne!(addr.port(), 0);
        for socket in &sockets {
            let bound = socket.local_addr().expect("addr").as_socket().expect("ip");
            assert_eq!(bound, addr);
        }
    }

    #[test]
    fn zero_or_too_many_cores_are_refused() {
        let config = || Config::edge(veil_engine::EdgeConfig::default());
        let listen = "127.0.0.1:0".parse().expect("addr");
        for cores in [0, available_cores() + 1] {
            let options = Options {
                cores,
                ..Options::default()
            };
            let error = Edge::start(config(), listen, options).expect_err("refused");
            assert!(matches!(error, StartError::Cores { .. }), "{error}");
        }
    }
}
