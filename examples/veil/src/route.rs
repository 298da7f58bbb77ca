//! Client split tunnelling: every new flow of the client's front-ends (SOCKS5, the HTTP
//! proxy, UDP forwards) goes where the engine's `ClientRules` say — through the tunnel
//! (the default), directly from this machine, or nowhere. The decision is the engine's;
//! this module only carries it out: it dials a direct flow (from the configured source
//! address, if any) and relays it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use veil_engine::rules::{ClientAction, ClientRules, Protocol};
use veil_engine::{Host, TunnelTarget};
use veil_tokio::Opener;

/// What a front-end needs to start a flow: the tunnel opener and the rules.
#[derive(Clone, Debug)]
pub(crate) struct Front {
    /// Opens tunnels through the edge.
    pub(crate) opener: Opener,
    router: Arc<Router>,
}

/// The rules and how direct flows leave.
#[derive(Debug)]
pub(crate) struct Router {
    rules: ClientRules,
    /// The local address direct flows are sent from; `None` lets the kernel choose.
    direct_source: Option<IpAddr>,
    /// Resolving and connecting a direct flow, each.
    connect_timeout: Duration,
    /// Optimistic tunnels (`veil client --optimistic`): the fronts answer the application
    /// before they ask for the tunnel.
    answer_first: bool,
}

impl Router {
    pub(crate) fn new(
        rules: ClientRules,
        direct_source: Option<IpAddr>,
        connect_timeout: Duration,
        answer_first: bool,
    ) -> Self {
        Self {
            rules,
            direct_source,
            connect_timeout,
            answer_first,
        }
    }
}

impl Front {
    pub(crate) fn new(opener: Opener, router: Arc<Router>) -> Self {
        Self { opener, router }
    }

    /// Whether a front answers the application (SOCKS5 success, HTTP `200 Connection
    /// established`) before it asks for the tunnel: with optimistic tunnels the answer
    /// does not wait for the edge, and need not wait for the driver's turn either (the
    /// application's first bytes wait in the socket meanwhile). A refusal, from the edge or
    /// from this client, then resets the application's connection.
    pub(crate) fn answers_first(&self) -> bool {
        self.router.answer_first
    }

    /// Where a new flow to `target` goes.
    pub(crate) fn route(&self, target: &TunnelTarget, protocol: Protocol) -> ClientAction {
        let action = self.router.rules.route(target, protocol);
        if action != ClientAction::Tunnel {
            tracing::debug!(%target, ?protocol, ?action, "client rule");
        }
        action
    }

    /// A TCP connection from this machine to `target`: the first resolved address that
    /// answers.
    pub(crate) async fn dial_direct(&self, target: &TunnelTarget) -> io::Result<TcpStream> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        for addr in self.resolve(target).await? {
            let socket = if addr.is_ipv6() {
                TcpSocket::new_v6()?
            } else {
                TcpSocket::new_v4()?
            };
            if let Some(source) = self.router.direct_source {
                socket.bind(SocketAddr::new(source, 0))?;
            }
            match tokio::time::timeout(self.router.connect_timeout, socket.connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(last)
    }

    /// A UDP socket connected from this machine to `target`'s first address.
    pub(crate) async fn udp_direct(&self, target: &TunnelTarget) -> io::Result<UdpSocket> {
        let addr = self
            .resolve(target)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))?;
        let local = match (self.router.direct_source, addr) {
            (Some(source), _) => SocketAddr::new(source, 0),
            (None, SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], 0)),
            (None, SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok(socket)
    }

    async fn resolve(&self, target: &TunnelTarget) -> io::Result<Vec<SocketAddr>> {
        let self_source = self.router.direct_source;
        let addrs: Vec<SocketAddr> = match &target.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
            Host::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), target.port));
                tokio::time::timeout(self.router.connect_timeout, lookup)
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolving timed out"))??
                    .collect()
            }
        };
        // A source address of one family can only reach that family.
        Ok(addrs
            .into_iter()
            .filter(|addr| self_source.is_none_or(|source| source.is_ipv6() == addr.is_ipv6()))
            .collect())
    }
}

/// Relays a direct flow: `early` (bytes the client sent with its request) first, then
/// both ways until both sides finished.
pub(crate) async fn relay_direct(
    mut client: TcpStream,
    early: Bytes,
    mut target: TcpStream,
) -> io::Result<(u64, u64)> {
    if !early.is_empty() {
        target.write_all(&early).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut target).await
}

/// Closes `stream` with a reset (`SO_LINGER` 0): what an application told its connection
/// was open hears when the tunnel is refused after all.
pub(crate) fn reset(stream: TcpStream) {
    if let Err(e) = stream.set_zero_linger() {
        tracing::debug!(error = %e, "SO_LINGER 0 failed; the connection closes with FIN");
    }
    drop(stream);
}
