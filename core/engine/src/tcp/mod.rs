//! The TCP on-ramp's connections: TLS and HTTP/2 over one byte stream, for clients whose
//! network blocks or throttles UDP.
//!
//! A [`TcpConn`] is what a `quiche::Connection` is for the QUIC on-ramp: the transport
//! under one connection's tunnels. The engine's `Endpoint` keeps both kinds in one table
//! (`crate::wire::Wire`), so that a request that arrives on an HTTP/2 stream goes through
//! exactly the checks, rules, hooks, egress choice and audit of one that arrived on an
//! HTTP/3 stream, and its tunnel is driven by the host through the same calls
//! (`tunnel_send`, `tunnel_recv`, …). The host only moves bytes: what it read from the
//! socket in, what the engine gives it out.
//!
//! Layering, inside out: [`session::Session`] (HTTP/2: [`crate::h2::Session`], frames,
//! HPACK, flow control; or, on the edge, HTTP/1.1: [`crate::h1::Session`], one CONNECT or
//! upgrade per connection) works on plaintext; [`tls::TlsStream`] turns it into records;
//! the host carries the records.

pub(crate) mod proxy;
pub(crate) mod session;
pub(crate) mod tls;

#[cfg(test)]
mod h1_tests;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use boring::ssl::SslContext;

use crate::{h1, h2};
use session::Session;
use tls::{Progress, TlsStream};

/// How long a TCP client has to complete its TLS handshake and HTTP/2 preface: a bound on
/// connections that open and then say nothing (slowloris at the TLS layer).
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Decrypted bytes taken per input before they go to the HTTP/2 session.
const PLAINTEXT_CHUNK: usize = 256 * 1024;

/// Ciphertext the connection lets pile up for the host before it stops encrypting more of
/// the session's output: the session's own bound then pushes back on tunnels.
const CIPHERTEXT_HIGH_WATER: usize = 256 * 1024;

/// ALPN of HTTP/2 over TLS (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// ALPN of HTTP/1.1 (RFC 7301 §6).
pub(crate) const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a TCP connection ended, for `ConnectionLost` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Handshake or idle timer.
    TimedOut,
    /// The TLS handshake failed (reason from `BoringSSL`) or the peer chose no protocol we
    /// speak.
    Handshake(String),
    /// The peer closed the TCP connection or sent `close_notify`.
    PeerClosed,
    /// The peer broke HTTP/2: the GOAWAY code we sent.
    ProtocolError { code: u64, reason: &'static str },
    /// The PROXY protocol header the edge requires was missing or malformed.
    ProxyHeader(&'static str),
    /// We closed it (shutdown, ingress hook, connection error of ours).
    Local { code: u64 },
}

/// One TCP connection of the edge: TLS, then HTTP/2.
pub(crate) struct TcpConn {
    /// The PROXY protocol header being read, before TLS (`EdgeConfig::proxy_protocol`).
    proxy: Option<proxy::Pending>,
    /// The client address a PROXY header named, until the endpoint takes it.
    proxied_client: Option<SocketAddr>,
    tls: TlsStream,
    /// Made once TLS is up, as ALPN chose.
    session: Option<Session>,
    /// Our role: an edge's accepted connection, or a client's to its edge.
    role: h2::Role,
    /// Client: the host has not connected the socket yet (`Endpoint::tcp_connected`).
    dialing: bool,
    limits: h2::Limits,
    /// Reused buffer of decrypted bytes.
    plaintext: Vec<u8>,
    /// Set when the connection is over for us: output is flushed, then it is closed.
    ending: Option<Ending>,
    /// The host reported the socket's end (EOF or an error): nothing more can be written.
    socket_gone: bool,
    /// When the handshake must be done by, then when the connection idles out.
    handshake_deadline: Instant,
    idle_timeout: Duration,
    last_activity: Instant,
}

impl TcpConn {
    /// A connection the edge accepted.
    pub(crate) fn accept(
        context: &SslContext,
        limits: h2::Limits,
        idle_timeout: Duration,
        proxy_protocol: bool,
        now: Instant,
    ) -> Result<Self, boring::error::ErrorStack> {
        let mut conn = Self::new(
            TlsStream::server(context)?,
            h2::Role::Server,
            limits,
            idle_timeout,
            now,
        );
        conn.proxy = proxy_protocol.then(proxy::Pending::default);
        Ok(conn)
    }

    /// A client's connection to its edge, before the host has dialled it.
    pub(crate) fn connect(
        ssl: boring::ssl::Ssl,
        limits: h2::Limits,
        idle_timeout: Duration,
        now: Instant,
    ) -> Result<Self, boring::error::ErrorStack> {
        let mut conn = Self::new(
            TlsStream::client(ssl)?,
            h2::Role::Client,
            limits,
            idle_timeout,
            now,
        );
        conn.dialing = true;
        Ok(conn)
    }

    /// A connection whose TLS session is `tls`, in `role`, nothing read or written yet.
    fn new(
        tls: TlsStream,
        role: h2::Role,
        limits: h2::Limits,
        idle_timeout: Duration,
        now: Instant,
    ) -> Self {
        Self {
            proxy: None,
            proxied_client: None,
            tls,
            session: None,
            role,
            dialing: false,
            limits,
            plaintext: Vec::new(),
            ending: None,
            socket_gone: false,
            handshake_deadline: now + HANDSHAKE_TIMEOUT,
            idle_timeout,
            last_activity: now,
        }
    }

    /// Client: the host's socket to the edge is connected: the `ClientHello` goes out.
    pub(crate) fn connected(&mut self, now: Instant) {
        if !self.dialing || self.ending.is_some() {
            return;
        }
        self.dialing = false;
        self.handshake_deadline = now + HANDSHAKE_TIMEOUT;
        self.last_activity = now;
        if self.tls.advance() == Progress::Ended {
            self.end_tls();
        }
    }

    /// Ciphertext from the socket: decrypted and handed to the HTTP session.
    pub(crate) fn input(&mut self, now: Instant, ciphertext: &[u8]) {
        // After the peer's `close_notify` nothing it sends counts (nor is kept).
        if self.over() || self.tls.peer_closed() {
            return;
        }
        self.last_activity = now;
        let after_header;
        let mut ciphertext = ciphertext;
        if let Some(pending) = self.proxy.as_mut() {
            match pending.feed(ciphertext) {
                Ok(proxy::Outcome::NeedMore) => return,
                Ok(proxy::Outcome::Done { client, rest }) => {
                    self.proxy = None;
                    self.proxied_client = client;
                    after_header = rest;
                    ciphertext = &after_header;
                }
                Err(reason) => {
                    self.ending = Some(Ending::ProxyHeader(reason));
                    return;
                }
            }
        }
        match self.tls.feed(ciphertext) {
            Progress::Handshaking => return,
            Progress::Ended => {
                self.end_tls();
                return;
            }
            Progress::Established => {}
        }
        if self.session.is_none() && !self.start_session() {
            return;
        }
        loop {
            self.plaintext.clear();
            let open = self
                .tls
                .read_plaintext(&mut self.plaintext, PLAINTEXT_CHUNK);
            if !self.plaintext.is_empty() {
                let Some(session) = self.session.as_mut() else {
                    return;
                };
                if let Err(error) = session.recv(now, &self.plaintext) {
                    tracing::debug!(
                        code = error.code,
                        reason = error.reason,
                        "HTTP connection error"
                    );
                    self.ending = Some(Ending::ProtocolError {
                        code: error.code,
                        reason: error.reason,
                    });
                    return;
                }
            }
            if !open {
                // HTTP/1.1: the peer's end of the tunnel, ours may go on; HTTP/2 (or a
                // failed record): the end of the connection.
                let half_close = self.tls.failure().is_none()
                    && self.session.as_mut().is_some_and(Session::peer_closed);
                if !half_close {
                    self.end_tls();
                }
                return;
            }
            if self.plaintext.len() < PLAINTEXT_CHUNK {
                return;
            }
        }
    }

    /// TLS is up: HTTP/2 if ALPN chose `h2`; on the edge HTTP/1.1 if it chose
    /// `http/1.1` or nothing (clients of an HTTPS proxy often offer no ALPN); else the
    /// connection ends.
    // (A client that offered only protocols we lack got a fatal alert in the handshake:
    // `crate::tls::edge_context`.)
    fn start_session(&mut self) -> bool {
        let alpn = self.tls.ssl().selected_alpn_protocol();
        self.session = match (alpn, self.role) {
            (Some(ALPN_H2), _) => Some(Session::H2(h2::Session::new(
                self.role,
                self.limits.clone(),
            ))),
            (Some(ALPN_HTTP11) | None, h2::Role::Server) => Some(Session::H1(h1::Session::new())),
            _ => None,
        };
        if self.session.is_none() {
            self.ending = Some(Ending::Handshake("no application protocol".to_owned()));
            return false;
        }
        true
    }

    fn end_tls(&mut self) {
        self.ending = Some(match self.tls.failure() {
            Some(reason) if self.session.is_none() => Ending::Handshake(reason.to_owned()),
            _ => Ending::PeerClosed,
        });
    }

    /// The client address a PROXY protocol header gave, once.
    pub(crate) fn take_proxied_client(&mut self) -> Option<SocketAddr> {
        self.proxied_client.take()
    }

    /// The host's socket ended (the peer closed it, or it failed).
    pub(crate) fn socket_closed(&mut self) {
        self.socket_gone = true;
        if self.ending.is_none() {
            self.ending = Some(Ending::PeerClosed);
        }
    }

    /// Copies ciphertext for the socket into `out`; returns how much.
    pub(crate) fn transmit(&mut self, now: Instant, out: &mut [u8]) -> usize {
        self.encrypt_output();
        let pending = self.tls.ciphertext();
        let len = pending.len().min(out.len());
        out[..len].copy_from_slice(&pending[..len]);
        self.tls.consume_ciphertext(len);
        if len > 0 {
            self.last_activity = now;
        }
        len
    }

    /// Moves the session's output into TLS records, up to the high-water mark.
    fn encrypt_output(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while self.tls.ciphertext().len() < CIPHERTEXT_HIGH_WATER {
            let pending = session.pending_output();
            if pending.is_empty() {
                break;
            }
            let chunk = &pending[..pending.len().min(16 * 1024)];
            let taken = self.tls.write_plaintext(chunk);
            if taken == 0 {
                break;
            }
            session.consume_output(taken);
        }
        let over = self.ending.is_some() || session.is_closed();
        if session.pending_output().is_empty()
            && (session.finished_sending() || (over && session.clean_end()))
        {
            self.tls.close();
        }
    }

    /// Over for us: ended, or the session has nothing more to do (an HTTP/1.1 request
    /// refused, or its tunnel done).
    fn over(&self) -> bool {
        self.ending.is_some() || self.session.as_ref().is_some_and(Session::is_closed)
    }

    /// Our `close_notify` is still to be sent before the connection may close: the
    /// session ended cleanly (an HTTP/1.1 tunnel's `close_notify` is its end; an aborted
    /// one sends none, so that the peer can tell).
    fn close_notify_due(&self) -> bool {
        self.tls.can_close() && self.session.as_ref().is_some_and(Session::clean_end)
    }

    /// Whether there is ciphertext to write (or that encrypting would give).
    pub(crate) fn wants_transmit(&self) -> bool {
        !self.tls.ciphertext().is_empty()
            || self
                .session
                .as_ref()
                .is_some_and(|session| !session.pending_output().is_empty())
            || (self.over() && self.close_notify_due())
    }

    /// Whether the host should read more from the socket now. HTTP/1.1 has no flow
    /// control: its session says no while the tunnel has bytes unread, and the host reads
    /// again once `poll_tcp_ready` names the connection (the engine queues it when the
    /// tunnel is read). Before the handshake, the TLS layer's own bound holds.
    pub(crate) fn wants_input(&self) -> bool {
        !self.over()
            && !self.socket_gone
            && !self.tls.peer_closed()
            && self.session.as_ref().is_none_or(Session::wants_input)
    }

    /// Closes from our side: GOAWAY with `code` (HTTP/2 codes), `close_notify`, then the
    /// socket once both are out.
    pub(crate) fn close(&mut self, code: u64) {
        if self.ending.is_some() {
            return;
        }
        if let Some(session) = self.session.as_mut() {
            session.close(code);
        }
        self.ending = Some(Ending::Local { code });
    }

    /// Over, and nothing more to write: the host closes the socket.
    pub(crate) fn is_closed(&self) -> bool {
        self.over() && (self.socket_gone || !self.wants_transmit())
    }

    /// An edge's accepted connection (not a client's to its edge).
    pub(crate) fn is_server(&self) -> bool {
        self.role == h2::Role::Server
    }

    pub(crate) fn is_established(&self) -> bool {
        self.session.is_some() && !self.over()
    }

    /// The handshake deadline, then the idle deadline while no stream is open.
    ///
    /// An HTTP/2 client that is not veil sends no keep-alive: a connection whose tunnels
    /// are quiet but open stays (each tunnel has its own idle timeout,
    /// `QuicConfig::tcp_idle_timeout`); one with nothing open closes after the idle
    /// timeout, as an HTTP server's keep-alive timeout does.
    pub(crate) fn timeout_instant(&self) -> Option<Instant> {
        if self.over() {
            return None;
        }
        let Some(session) = &self.session else {
            return Some(self.handshake_deadline);
        };
        // An HTTP/1.1 request head is part of the start: slowloris stops here.
        if session.awaiting_request() {
            return Some(self.handshake_deadline);
        }
        (session.open_streams() == 0).then_some(self.last_activity + self.idle_timeout)
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        if self.timeout_instant().is_some_and(|at| at <= now) {
            if let Some(session) = self.session.as_mut() {
                session.close(crate::wire::h2_code::NO_ERROR);
            }
            self.ending = Some(Ending::TimedOut);
        }
    }

    pub(crate) fn ending(&self) -> Option<&Ending> {
        self.ending.as_ref()
    }

    pub(crate) fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    pub(crate) fn session_mut(&mut self) -> Option<&mut Session> {
        self.session.as_mut().filter(|_| self.ending.is_none())
    }

    pub(crate) fn server_name(&self) -> Option<&str> {
        self.tls.ssl().servername(boring::ssl::NameType::HOST_NAME)
    }

    pub(crate) fn application_proto(&self) -> &[u8] {
        self.tls.ssl().selected_alpn_protocol().unwrap_or_default()
    }

    /// DER of the client's certificate (mutual TLS).
    pub(crate) fn peer_cert(&self) -> Option<Vec<u8>> {
        self.tls.ssl().peer_certificate()?.to_der().ok()
    }
}
