//! The HTTP layer of a TCP connection: HTTP/2, or on the edge HTTP/1.1, as ALPN chose.
//!
//! Both sessions speak one vocabulary (`h2::Event`, `h2::Error`, stream ids), so the
//! endpoint drives them through the same calls (`crate::wire::Http::H2`); what only one
//! of them has answers here for the other (an HTTP/1.1 client cannot open a stream, has
//! no SETTINGS, and counts no HTTP/2 floods).

use std::time::Instant;

use crate::{h1, h2};

/// A TCP connection's HTTP session.
// It lives inside the boxed `TcpConn`, one per connection: boxing the larger variant
// would add an indirection to every call for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Session {
    H2(h2::Session),
    H1(h1::Session),
}

impl Session {
    pub(crate) fn recv(&mut self, now: Instant, input: &[u8]) -> Result<(), h2::ConnectionError> {
        match self {
            Self::H2(s) => s.recv(now, input),
            Self::H1(s) => s.recv(input),
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<(u64, h2::Event)> {
        match self {
            Self::H2(s) => s.poll_event(),
            Self::H1(s) => s.poll_event(),
        }
    }

    pub(crate) fn send_request(
        &mut self,
        fields: &[(&[u8], &[u8])],
        fin: bool,
    ) -> Result<u64, h2::Error> {
        match self {
            Self::H2(s) => s.send_request(fields, fin),
            // veil's client speaks HTTP/2 to its edge, never HTTP/1.1.
            Self::H1(_) => Err(h2::Error::LimitReached),
        }
    }

    pub(crate) fn send_response(
        &mut self,
        stream: u64,
        fields: &[(&[u8], &[u8])],
        fin: bool,
    ) -> Result<(), h2::Error> {
        match self {
            Self::H2(s) => s.send_response(stream, fields, fin),
            Self::H1(s) => s.send_response(stream, fields, fin),
        }
    }

    pub(crate) fn send_body(
        &mut self,
        stream: u64,
        data: &[u8],
        fin: bool,
    ) -> Result<usize, h2::Error> {
        match self {
            Self::H2(s) => s.send_body(stream, data, fin),
            Self::H1(s) => s.send_body(stream, data, fin),
        }
    }

    pub(crate) fn recv_body(&mut self, stream: u64, out: &mut [u8]) -> Result<usize, h2::Error> {
        match self {
            Self::H2(s) => s.recv_body(stream, out),
            Self::H1(s) => s.recv_body(stream, out),
        }
    }

    pub(crate) fn stream_finished(&self, stream: u64) -> bool {
        match self {
            Self::H2(s) => s.stream_finished(stream),
            Self::H1(s) => s.stream_finished(stream),
        }
    }

    pub(crate) fn has_stream(&self, stream: u64) -> bool {
        match self {
            Self::H2(s) => s.has_stream(stream),
            Self::H1(s) => s.has_stream(stream),
        }
    }

    pub(crate) fn stream_capacity(&self, stream: u64) -> Result<usize, h2::Error> {
        match self {
            Self::H2(s) => s.stream_capacity(stream),
            Self::H1(s) => s.stream_capacity(stream),
        }
    }

    pub(crate) fn reset_stream(&mut self, stream: u64, code: u64) {
        match self {
            Self::H2(s) => s.reset_stream(stream, code),
            Self::H1(s) => s.reset_stream(stream, code),
        }
    }

    pub(crate) fn writable_next(&mut self) -> Option<u64> {
        match self {
            Self::H2(s) => s.writable_next(),
            Self::H1(s) => s.writable_next(),
        }
    }

    pub(crate) fn send_goaway(&mut self) {
        match self {
            Self::H2(s) => s.send_goaway(),
            Self::H1(s) => s.send_goaway(),
        }
    }

    /// Closes from our side with an HTTP/2 code (HTTP/1.1 has no codes: a tunnel that had
    /// not ended is aborted).
    pub(crate) fn close(&mut self, code: u64) {
        match self {
            Self::H2(s) => s.close(code),
            Self::H1(s) => s.close(),
        }
    }

    pub(crate) fn pending_output(&self) -> &[u8] {
        match self {
            Self::H2(s) => s.pending_output(),
            Self::H1(s) => s.pending_output(),
        }
    }

    pub(crate) fn consume_output(&mut self, n: usize) {
        match self {
            Self::H2(s) => s.consume_output(n),
            Self::H1(s) => s.consume_output(n),
        }
    }

    /// The session has nothing more to do: flush its output and end the connection.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::H2(s) => s.is_closed(),
            Self::H1(s) => s.is_closed(),
        }
    }

    /// Whether the connection's end may be told with TLS `close_notify`. An HTTP/1.1
    /// tunnel's end is its `close_notify`, so an aborted one must not send it; HTTP/2
    /// says how it ended in GOAWAY and always may.
    pub(crate) fn clean_end(&self) -> bool {
        match self {
            Self::H2(_) => true,
            Self::H1(s) => s.clean_end(),
        }
    }

    /// HTTP/1.1: our side of the tunnel ended; `close_notify` says so once the output is
    /// written, while the peer's side may go on.
    pub(crate) fn finished_sending(&self) -> bool {
        match self {
            Self::H2(_) => false,
            Self::H1(s) => s.finished_sending(),
        }
    }

    /// The peer's `close_notify`: HTTP/1.1's end of the tunnel from the peer (true: the
    /// connection goes on, half-closed); HTTP/2 has no half-closed connection, so it is
    /// the end of the connection (false).
    pub(crate) fn peer_closed(&mut self) -> bool {
        match self {
            Self::H2(_) => false,
            Self::H1(s) => {
                s.peer_closed();
                true
            }
        }
    }

    /// Whether the host should read more now. HTTP/2's flow control bounds what the peer
    /// may send, so it always does; HTTP/1.1 has none and stops above a mark.
    pub(crate) fn wants_input(&self) -> bool {
        match self {
            Self::H2(s) => !s.is_closed(),
            Self::H1(s) => s.wants_input(),
        }
    }

    /// HTTP/1.1 still waiting for its request head (the start deadline holds).
    pub(crate) fn awaiting_request(&self) -> bool {
        match self {
            Self::H2(_) => false,
            Self::H1(s) => s.awaiting_request(),
        }
    }

    pub(crate) fn peer_settings_received(&self) -> bool {
        match self {
            Self::H2(s) => s.peer_settings_received(),
            Self::H1(_) => true,
        }
    }

    pub(crate) fn peer_enabled_connect_protocol(&self) -> bool {
        match self {
            Self::H2(s) => s.peer_enabled_connect_protocol(),
            Self::H1(_) => false,
        }
    }

    pub(crate) fn open_streams(&self) -> usize {
        match self {
            Self::H2(s) => s.open_streams(),
            Self::H1(s) => s.open_streams(),
        }
    }

    /// The HTTP/2 session's counters (none for HTTP/1.1).
    pub(crate) fn stats(&self) -> h2::Stats {
        match self {
            Self::H2(s) => s.stats(),
            Self::H1(_) => h2::Stats::default(),
        }
    }
}
