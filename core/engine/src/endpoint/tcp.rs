//! The edge's TCP on-ramp, as the host sees it: connections it accepted on its TCP
//! listener, their bytes in and out.
//!
//! A TCP connection (TLS, then HTTP/2 or HTTP/1.1: `crate::tcp`) sits in the same table
//! as the QUIC ones and its requests go through the same code; what differs is only how
//! its bytes travel. The host:
//! 1. calls [`Endpoint::accept_tcp`] for each accepted socket, which names the connection;
//! 2. hands every read to [`Endpoint::tcp_input`], and the socket's end (EOF or error) to
//!    [`Endpoint::tcp_closed`]; before each read it asks [`Endpoint::tcp_wants_input`],
//!    and while that is false it leaves the socket unread (HTTP/1.1 has no flow control:
//!    this is its backpressure) until `poll_tcp_ready` names the connection again;
//! 3. after any call into the endpoint, asks [`Endpoint::poll_tcp_ready`] which
//!    connections have bytes to write, and takes them with [`Endpoint::tcp_transmit`] as
//!    fast as its socket takes them (what it does not take stays in the engine, and the
//!    engine stops taking tunnel bytes when that grows: the socket is the backpressure);
//! 4. closes the socket on `Event::ConnectionLost` for it, which comes once everything
//!    the connection had to say was taken.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Endpoint, RoleState};
use crate::h2;
use crate::tcp::TcpConn;
use crate::types::ConnectionHandle;
use crate::wire::Wire;

/// How long a host may take to write a TCP connection's last bytes once the engine has
/// reported it lost (`Event::ConnectionLost`): a peer that stops reading must not keep a
/// socket open for ever. After it, the host closes the socket with whatever is unwritten.
pub const TCP_LAST_WRITES: std::time::Duration = std::time::Duration::from_secs(5);

/// Why [`Endpoint::accept_tcp`] turned a connection away: close the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TcpRefused {
    /// A client endpoint has no TCP listener.
    NotEdge,
    /// The edge is shutting down or draining.
    Closing,
    /// `EdgeConfig::max_connections` connections are open.
    TooManyConnections,
    /// TLS could not be set up for it (`BoringSSL` ran out of memory, say).
    Tls,
}

impl std::fmt::Display for TcpRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotEdge => "not an edge",
            Self::Closing => "the edge is shutting down",
            Self::TooManyConnections => "too many connections",
            Self::Tls => "TLS setup failed",
        })
    }
}

impl std::error::Error for TcpRefused {}

impl Endpoint {
    /// Client: a connection to the edge over TCP (`Transport::H2`, or `Auto`'s fallback):
    /// the host is asked to dial it (`Event::TcpDial`) and says when it did
    /// (`tcp_connected`) or could not (`tcp_closed`).
    pub(super) fn start_tcp_attempt(&mut self, now: Instant) -> Option<u64> {
        let RoleState::Client(client) = &mut self.role else {
            return None;
        };
        let attempt = client.tcp_tls.as_ref().and_then(|context| {
            let ssl = crate::tls::tcp_client_ssl(context, &client.server_name)
                .map_err(|error| tracing::warn!(%error, "cannot start a TLS session"))
                .ok()?;
            TcpConn::connect(ssl, h2::Limits::default(), self.idle_timeout, now).ok()
        });
        let tcp = attempt?;
        let (local, edge) = (client.local_addr, client.edge_addr);
        let handle = self.insert_conn(Wire::Tcp(Box::new(tcp)), local, edge);
        self.events.push_back(crate::types::Event::TcpDial {
            connection: ConnectionHandle(handle),
            to: edge,
        });
        Some(handle)
    }

    /// Client: the host connected the socket `Event::TcpDial` asked for; TLS starts.
    pub fn tcp_connected(&mut self, now: Instant, connection: ConnectionHandle) {
        self.clock = now;
        if let Some(tcp) = self.tcp_conn(connection) {
            tcp.connected(now);
            self.process(now, connection.0);
        }
    }

    /// Edge: a TCP connection the host accepted on its TCP listener, from `peer` to
    /// `local`. TLS (the QUIC listener's certificate; ALPN `h2`, else HTTP/1.1) and the
    /// HTTP session follow from its bytes.
    pub fn accept_tcp(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<ConnectionHandle, TcpRefused> {
        self.clock = now;
        let RoleState::Edge(edge) = &self.role else {
            return Err(TcpRefused::NotEdge);
        };
        if self.closing || self.draining || self.shutdown.is_some() {
            return Err(TcpRefused::Closing);
        }
        if self.conns.len() >= edge.max_connections {
            return Err(TcpRefused::TooManyConnections);
        }
        let context = edge.tcp_tls.as_ref().ok_or(TcpRefused::Tls)?;
        let limits = h2::Limits {
            enable_connect_protocol: true,
            ..h2::Limits::default()
        };
        let tcp = TcpConn::accept(context, limits, self.idle_timeout, edge.proxy_protocol, now)
            .map_err(|_| TcpRefused::Tls)?;
        let handle = self.insert_conn(Wire::Tcp(Box::new(tcp)), local, peer);
        self.stats.tcp_connections_total += 1;
        Ok(ConnectionHandle(handle))
    }

    /// Bytes read from a TCP connection's socket.
    pub fn tcp_input(&mut self, now: Instant, connection: ConnectionHandle, bytes: &[u8]) {
        self.clock = now;
        let handle = connection.0;
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(tcp) = conn.wire.tcp_mut() else {
            return;
        };
        tcp.input(now, bytes);
        // The address a PROXY header names is the client's from here on: tokens, hooks,
        // rules, audit and logs see it (TLS, and so every request, comes after it).
        if let Some(client) = tcp.take_proxied_client() {
            tracing::debug!(connection = handle, socket = %conn.peer, %client, "PROXY header");
            conn.peer = client;
        }
        self.process(now, handle);
    }

    /// Whether the host should read more from a TCP connection's socket now.
    ///
    /// False while an HTTP/1.1 tunnel holds [`crate::h1::BODY_HIGH_WATER`] bytes its
    /// application has not taken (the host then stops reading, and TCP pushes back on the
    /// peer), and once the connection is over. The engine names the connection in
    /// [`poll_tcp_ready`](Self::poll_tcp_ready) after the tunnel is read: ask again then.
    /// What a host reads past a `false` is still taken, never lost: the bound is one read
    /// (or the host's reads in flight) above the mark.
    pub fn tcp_wants_input(&self, connection: ConnectionHandle) -> bool {
        self.conns
            .get(connection.0)
            .and_then(|conn| conn.wire.tcp())
            .is_some_and(TcpConn::wants_input)
    }

    /// A TCP connection's socket ended (the peer closed it, or reading or writing failed):
    /// its tunnels are lost, and `ConnectionLost` follows.
    pub fn tcp_closed(&mut self, now: Instant, connection: ConnectionHandle) {
        self.clock = now;
        if let Some(tcp) = self.tcp_conn(connection) {
            tcp.socket_closed();
            self.process(now, connection.0);
        }
    }

    /// The TCP connection `connection` names, if it is one.
    fn tcp_conn(&mut self, connection: ConnectionHandle) -> Option<&mut TcpConn> {
        self.conns.get_mut(connection.0)?.wire.tcp_mut()
    }

    /// The next TCP connection with bytes to write (or whose end is due), each once per
    /// change; take its bytes with [`tcp_transmit`](Self::tcp_transmit).
    pub fn poll_tcp_ready(&mut self) -> Option<ConnectionHandle> {
        self.process_received();
        while let Some(handle) = self.tcp_ready.pop_front() {
            let Some(conn) = self.conns.get_mut(handle) else {
                continue;
            };
            conn.queued = false;
            return Some(ConnectionHandle(handle));
        }
        None
    }

    /// Copies bytes to write to a TCP connection's socket into `out`; returns how many (0:
    /// nothing now). A connection that has said everything is removed here
    /// (`ConnectionLost` follows: close the socket).
    pub fn tcp_transmit(
        &mut self,
        now: Instant,
        connection: ConnectionHandle,
        out: &mut [u8],
    ) -> usize {
        self.clock = now;
        let handle = connection.0;
        let Some(conn) = self.conns.get_mut(handle) else {
            return 0;
        };
        let Some(tcp) = conn.wire.tcp_mut() else {
            return 0;
        };
        let len = tcp.transmit(now, out);
        if len > 0 {
            // Room in the session's output: tunnels blocked on it may write again.
            self.poll_writable(handle);
            self.refresh_timer(handle);
        } else {
            self.reap(now, handle);
        }
        len
    }
}
