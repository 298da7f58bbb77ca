//! The transport under one connection of the `Endpoint`: QUIC (quiche) or TCP (TLS and
//! HTTP/2, `crate::tcp`), and the HTTP layer on it: HTTP/3 or HTTP/2.
//!
//! The endpoint's request, tunnel and datagram logic was written against quiche's
//! connection and HTTP/3 API. [`Wire`] and [`Http`] keep those calls' names and types
//! (quiche's and `h3`'s errors, events and headers) and send each one to whichever
//! transport the connection has, so that one body of code decides for both on-ramps.
//! What only QUIC has (paths, DATAGRAM frames, packets) is reached through
//! [`Wire::quic_mut`]; a TCP connection has none of it, and its tunnels carry datagrams as
//! capsules, as an HTTP/3 peer without datagram support does.
//!
//! Error codes: the endpoint speaks HTTP/3's (RFC 9114 §8.1). On an HTTP/2 connection they
//! are turned into the HTTP/2 code with the same meaning (RFC 9113 §7), and the peer's
//! back, so that hosts see one vocabulary.

use std::borrow::Cow;
use std::time::Instant;

use quiche::h3;

use crate::h2;
use crate::tcp::TcpConn;

/// HTTP/2 error codes (RFC 9113 §7).
pub(crate) mod h2_code {
    pub(crate) const NO_ERROR: u64 = 0x0;
    pub(crate) const PROTOCOL_ERROR: u64 = 0x1;
    pub(crate) const INTERNAL_ERROR: u64 = 0x2;
    pub(crate) const REFUSED_STREAM: u64 = 0x7;
    pub(crate) const CANCEL: u64 = 0x8;
    pub(crate) const CONNECT_ERROR: u64 = 0xa;
    pub(crate) const ENHANCE_YOUR_CALM: u64 = 0xb;
}

/// HTTP/3 error codes (RFC 9114 §8.1) the engine uses.
mod h3_code {
    pub(super) const NO_ERROR: u64 = 0x100;
    pub(super) const GENERAL_PROTOCOL_ERROR: u64 = 0x101;
    pub(super) const INTERNAL_ERROR: u64 = 0x102;
    pub(super) const EXCESSIVE_LOAD: u64 = 0x107;
    pub(super) const REQUEST_REJECTED: u64 = 0x10b;
    pub(super) const REQUEST_CANCELLED: u64 = 0x10c;
    pub(super) const CONNECT_ERROR: u64 = 0x10f;
}

/// The HTTP/2 code for an HTTP/3 one (what is not listed is a protocol error).
pub(crate) fn h2_from_h3(code: u64) -> u64 {
    match code {
        h3_code::NO_ERROR => h2_code::NO_ERROR,
        h3_code::INTERNAL_ERROR => h2_code::INTERNAL_ERROR,
        h3_code::EXCESSIVE_LOAD => h2_code::ENHANCE_YOUR_CALM,
        h3_code::REQUEST_REJECTED => h2_code::REFUSED_STREAM,
        h3_code::REQUEST_CANCELLED => h2_code::CANCEL,
        h3_code::CONNECT_ERROR => h2_code::CONNECT_ERROR,
        // MESSAGE_ERROR, GENERAL_PROTOCOL_ERROR and the rest.
        _ => h2_code::PROTOCOL_ERROR,
    }
}

/// The HTTP/3 code for an HTTP/2 one (unknown codes stay as they are: the host logs them).
pub(crate) fn h3_from_h2(code: u64) -> u64 {
    match code {
        h2_code::NO_ERROR => h3_code::NO_ERROR,
        h2_code::PROTOCOL_ERROR => h3_code::GENERAL_PROTOCOL_ERROR,
        h2_code::INTERNAL_ERROR => h3_code::INTERNAL_ERROR,
        h2_code::REFUSED_STREAM => h3_code::REQUEST_REJECTED,
        h2_code::CANCEL => h3_code::REQUEST_CANCELLED,
        h2_code::CONNECT_ERROR => h3_code::CONNECT_ERROR,
        h2_code::ENHANCE_YOUR_CALM => h3_code::EXCESSIVE_LOAD,
        other => other,
    }
}

/// One connection's transport.
// QUIC is the common case, and its connection was inline in `Conn` before there was a
// choice: boxing it would cost an indirection on every packet, for a TCP variant that is
// boxed already.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Wire {
    Quic(quiche::Connection),
    Tcp(Box<TcpConn>),
}

impl Wire {
    /// The QUIC connection, for what only QUIC has.
    pub(crate) fn quic(&self) -> Option<&quiche::Connection> {
        match self {
            Self::Quic(quic) => Some(quic),
            Self::Tcp(_) => None,
        }
    }

    /// [`quic`](Self::quic), mutable.
    pub(crate) fn quic_mut(&mut self) -> Option<&mut quiche::Connection> {
        match self {
            Self::Quic(quic) => Some(quic),
            Self::Tcp(_) => None,
        }
    }

    /// The TCP connection, for what only it has.
    pub(crate) fn tcp(&self) -> Option<&TcpConn> {
        match self {
            Self::Quic(_) => None,
            Self::Tcp(tcp) => Some(tcp),
        }
    }

    /// [`tcp`](Self::tcp), mutable.
    pub(crate) fn tcp_mut(&mut self) -> Option<&mut TcpConn> {
        match self {
            Self::Quic(_) => None,
            Self::Tcp(tcp) => Some(tcp),
        }
    }

    pub(crate) fn is_tcp(&self) -> bool {
        matches!(self, Self::Tcp(_))
    }

    /// Closes the connection with an HTTP/3 application error code.
    pub(crate) fn close(&mut self, app: bool, code: u64, reason: &[u8]) -> quiche::Result<()> {
        match self {
            Self::Quic(quic) => quic.close(app, code, reason),
            Self::Tcp(tcp) => {
                tcp.close(if app {
                    h2_from_h3(code)
                } else {
                    h2_code::PROTOCOL_ERROR
                });
                Ok(())
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Quic(quic) => quic.is_closed(),
            Self::Tcp(tcp) => tcp.is_closed(),
        }
    }

    pub(crate) fn is_established(&self) -> bool {
        match self {
            Self::Quic(quic) => quic.is_established(),
            Self::Tcp(tcp) => tcp.is_established(),
        }
    }

    pub(crate) fn is_server(&self) -> bool {
        match self {
            Self::Quic(quic) => quic.is_server(),
            Self::Tcp(tcp) => tcp.is_server(),
        }
    }

    pub(crate) fn timeout_instant(&self) -> Option<Instant> {
        match self {
            Self::Quic(quic) => quic.timeout_instant(),
            Self::Tcp(tcp) => tcp.timeout_instant(),
        }
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) {
        match self {
            Self::Quic(quic) => quic.on_timeout(),
            Self::Tcp(tcp) => tcp.on_timeout(now),
        }
    }

    pub(crate) fn server_name(&self) -> Option<&str> {
        match self {
            Self::Quic(quic) => quic.server_name(),
            Self::Tcp(tcp) => tcp.server_name(),
        }
    }

    pub(crate) fn application_proto(&self) -> &[u8] {
        match self {
            Self::Quic(quic) => quic.application_proto(),
            Self::Tcp(tcp) => tcp.application_proto(),
        }
    }

    /// DER of the peer's certificate (mutual TLS).
    pub(crate) fn peer_cert(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Self::Quic(quic) => quic.peer_cert().map(Cow::Borrowed),
            Self::Tcp(tcp) => tcp.peer_cert().map(Cow::Owned),
        }
    }

    /// Whether the peer's end of `stream` was reached and read.
    pub(crate) fn stream_finished(&self, stream: u64) -> bool {
        match self {
            Self::Quic(quic) => quic.stream_finished(stream),
            // As quiche does, a stream the session has forgotten (both directions over)
            // counts as finished.
            Self::Tcp(tcp) => tcp.session().is_none_or(|session| {
                session.stream_finished(stream) || !session.has_stream(stream)
            }),
        }
    }

    pub(crate) fn stream_capacity(&mut self, stream: u64) -> quiche::Result<usize> {
        match self {
            Self::Quic(quic) => quic.stream_capacity(stream),
            Self::Tcp(tcp) => match tcp.session() {
                Some(session) => session
                    .stream_capacity(stream)
                    .map_err(|_| quiche::Error::InvalidStreamState(stream)),
                None => Err(quiche::Error::InvalidStreamState(stream)),
            },
        }
    }

    /// Whether `stream` has room for `len` bytes now; if not, it is reported by
    /// [`stream_writable_next`](Self::stream_writable_next) when it has.
    pub(crate) fn stream_writable(&mut self, stream: u64, len: usize) -> quiche::Result<bool> {
        match self {
            Self::Quic(quic) => quic.stream_writable(stream, len),
            // The session reports a stream once its capacity comes back after a send it
            // could not take whole.
            Self::Tcp(_) => Ok(self.stream_capacity(stream)? >= len),
        }
    }

    pub(crate) fn stream_writable_next(&mut self) -> Option<u64> {
        match self {
            Self::Quic(quic) => quic.stream_writable_next(),
            Self::Tcp(tcp) => tcp.session_mut()?.writable_next(),
        }
    }

    /// Shuts one direction of a stream with an HTTP/3 code.
    ///
    /// HTTP/2 has one reset for both directions and no `STOP_SENDING`: shutting our write
    /// side resets the stream; shutting the read side after our response is complete asks
    /// the client to stop with `RST_STREAM(NO_ERROR)`; before it, what the peer still sends
    /// is read and dropped by the endpoint (its flow control bounds it).
    //# RFC 9113 §8.1: "A server can send a complete response prior to the client sending
    //# an entire request if the response does not depend on any portion of the request
    //# that has not been sent and received. When this is true, a server MAY request that
    //# the client abort transmission of a request without error by sending a RST_STREAM
    //# with an error code of NO_ERROR after sending a complete response"
    pub(crate) fn stream_shutdown(
        &mut self,
        stream: u64,
        direction: quiche::Shutdown,
        code: u64,
    ) -> quiche::Result<()> {
        match self {
            Self::Quic(quic) => quic.stream_shutdown(stream, direction, code),
            Self::Tcp(tcp) => {
                let Some(session) = tcp.session_mut() else {
                    return Err(quiche::Error::Done);
                };
                match direction {
                    quiche::Shutdown::Write => session.reset_stream(stream, h2_from_h3(code)),
                    quiche::Shutdown::Read => {
                        if matches!(
                            session.stream_capacity(stream),
                            Err(h2::Error::StreamClosed)
                        ) {
                            session.reset_stream(stream, h2_code::NO_ERROR);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Why the connection closed, for logs and `ConnectionLost`; never carries secrets.
    pub(crate) fn describe_close(&self) -> String {
        match self {
            Self::Quic(quic) => describe_quic_close(quic),
            Self::Tcp(tcp) => match tcp.ending() {
                None => "closed".to_owned(),
                Some(crate::tcp::Ending::TimedOut) => "idle timeout".to_owned(),
                Some(crate::tcp::Ending::Handshake(reason)) => {
                    format!("TLS handshake failed ({reason})")
                }
                Some(crate::tcp::Ending::PeerClosed) => "closed by peer (TCP)".to_owned(),
                Some(crate::tcp::Ending::ProxyHeader(reason)) => (*reason).to_owned(),
                Some(crate::tcp::Ending::ProtocolError { code, reason }) => {
                    format!("HTTP/2 error {code:#x} from peer: {reason}")
                }
                Some(crate::tcp::Ending::Local { code }) => {
                    format!("closed locally (HTTP/2 error {code:#x})")
                }
            },
        }
    }
}

/// Why a QUIC connection closed.
fn describe_quic_close(quic: &quiche::Connection) -> String {
    let side = |is_app: bool| if is_app { "application" } else { "transport" };
    if quic.is_timed_out() {
        "idle timeout".to_owned()
    } else if let Some(error) = quic.peer_error() {
        format!(
            "closed by peer ({} error {:#x})",
            side(error.is_app),
            error.error_code
        )
    } else if let Some(error) = quic.local_error() {
        format!(
            "closed locally ({} error {:#x})",
            side(error.is_app),
            error.error_code
        )
    } else {
        "closed".to_owned()
    }
}

/// Every tunnel's stream is sent at one urgency and *incremental* (RFC 9218 §4): quiche
/// then takes turns between the streams that hold data, a frame each, instead of sending
/// them one after the other in stream order.
///
/// Incremental matters twice. Tunnels are independent flows: in stream order the first
/// opened of many busy tunnels took the connection and the last opened got nothing until
/// it was done (issue 17's starved tunnels). And quiche 0.30 can leave a stream with
/// nothing to send at the head of its queue of streams to send (data queued again for a
/// probe, then acknowledged before the probe carried it): a packet is then written
/// without stream data, and a non-incremental head is never moved, so every other
/// tunnel of the connection waits behind it for good. An incremental one goes to the
/// back of the queue each time, which [`crate::transmit`] relies on.
//# RFC 9218 §4.2: "The incremental parameter value is Boolean. It indicates if an HTTP
//# response can be processed incrementally, i.e., provide some meaningful output as
//# chunks of the response arrive."
const TUNNEL_PRIORITY: h3::Priority = h3::Priority::new(TUNNEL_URGENCY, TUNNEL_INCREMENTAL);
const TUNNEL_INCREMENTAL: bool = true;
/// RFC 9218's default urgency.
const TUNNEL_URGENCY: u8 = 3;
/// quiche's transport orders streams by an urgency of its own, `124 + u` for an HTTP/3
/// urgency `u` (what its HTTP/3 layer sets on a response); a request's stream is given
/// the same here.
const QUICHE_URGENCY: u8 = 124 + TUNNEL_URGENCY;
/// The leading tunnel's (`endpoint::turns`, bursts): one step more urgent than the others,
/// still incremental, so that quiche moves it to the back of its queue (at its urgency,
/// where it is alone) each time and never keeps it as a dead head of the others'
/// urgency.
const QUICHE_LEAD_URGENCY: u8 = QUICHE_URGENCY - 1;

/// Sends `stream` ahead of the other tunnels (`lead`) or back among them. A stream quiche
/// has already forgotten is left alone.
pub(crate) fn set_lead(wire: &mut Wire, stream: u64, lead: bool) {
    let urgency = if lead {
        QUICHE_LEAD_URGENCY
    } else {
        QUICHE_URGENCY
    };
    if let Some(quic) = wire.quic_mut() {
        let _ = quic.stream_priority(stream, urgency, TUNNEL_INCREMENTAL);
    }
}

/// One connection's HTTP layer, once its transport is up.
#[allow(clippy::large_enum_variant)] // as for `Wire`
pub(crate) enum Http {
    H3(h3::Connection),
    /// The session lives in the TCP connection ([`Wire::Tcp`]).
    H2,
}

/// An HTTP/2 session's error as the `h3` error the endpoint expects.
fn h3_error(error: h2::Error, stream: u64) -> h3::Error {
    match error {
        h2::Error::Done => h3::Error::Done,
        h2::Error::StreamBlocked => h3::Error::StreamBlocked,
        h2::Error::UnknownStream | h2::Error::StreamClosed => {
            h3::Error::TransportError(quiche::Error::InvalidStreamState(stream))
        }
        h2::Error::LimitReached => h3::Error::TransportError(quiche::Error::StreamLimit),
        h2::Error::Closed => h3::Error::ClosedCriticalStream,
    }
}

/// The session of a TCP wire, or the error a call on a gone one gives.
fn session(wire: &mut Wire) -> h3::Result<&mut crate::tcp::session::Session> {
    wire.tcp_mut()
        .and_then(TcpConn::session_mut)
        .ok_or(h3::Error::ClosedCriticalStream)
}

/// `(name, value)` slices of `h3` headers, as HTTP/2 takes them.
fn pairs(headers: &[h3::Header]) -> Vec<(&[u8], &[u8])> {
    use quiche::h3::NameValue;
    headers.iter().map(|h| (h.name(), h.value())).collect()
}

impl Http {
    /// The HTTP layer of an established wire.
    pub(crate) fn new(wire: &mut Wire, config: &h3::Config) -> h3::Result<Self> {
        match wire {
            Wire::Quic(quic) => h3::Connection::with_transport(quic, config).map(Self::H3),
            Wire::Tcp(_) => Ok(Self::H2),
        }
    }

    pub(crate) fn poll(&mut self, wire: &mut Wire) -> h3::Result<(u64, h3::Event)> {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => h3.poll(quic),
            (Self::H2, wire) => {
                let (stream, event) = session(wire)?.poll_event().ok_or(h3::Error::Done)?;
                let event = match event {
                    h2::Event::Headers { list, end_stream } => h3::Event::Headers {
                        list: list
                            .iter()
                            .map(|(name, value)| h3::Header::new(name, value))
                            .collect(),
                        more_frames: !end_stream,
                    },
                    h2::Event::Data => h3::Event::Data,
                    h2::Event::Finished => h3::Event::Finished,
                    h2::Event::Reset(code) => h3::Event::Reset(h3_from_h2(code)),
                    h2::Event::GoAway(last) => return Ok((last, h3::Event::GoAway)),
                };
                Ok((stream, event))
            }
            _ => Err(h3::Error::InternalError),
        }
    }

    pub(crate) fn send_body(
        &mut self,
        wire: &mut Wire,
        stream: u64,
        data: &[u8],
        fin: bool,
    ) -> h3::Result<usize> {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => h3.send_body(quic, stream, data, fin),
            (Self::H2, wire) => session(wire)?
                .send_body(stream, data, fin)
                .map_err(|e| h3_error(e, stream)),
            _ => Err(h3::Error::InternalError),
        }
    }

    pub(crate) fn recv_body(
        &mut self,
        wire: &mut Wire,
        stream: u64,
        out: &mut [u8],
    ) -> h3::Result<usize> {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => h3.recv_body(quic, stream, out),
            (Self::H2, wire) => session(wire)?
                .recv_body(stream, out)
                .map_err(|e| h3_error(e, stream)),
            _ => Err(h3::Error::InternalError),
        }
    }

    pub(crate) fn send_response(
        &mut self,
        wire: &mut Wire,
        stream: u64,
        headers: &[h3::Header],
        fin: bool,
    ) -> h3::Result<()> {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => {
                h3.send_response_with_priority(quic, stream, headers, &TUNNEL_PRIORITY, fin)
            }
            (Self::H2, wire) => session(wire)?
                .send_response(stream, &pairs(headers), fin)
                .map_err(|e| h3_error(e, stream)),
            _ => Err(h3::Error::InternalError),
        }
    }

    pub(crate) fn send_request(
        &mut self,
        wire: &mut Wire,
        headers: &[h3::Header],
        fin: bool,
    ) -> h3::Result<u64> {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => {
                let stream = h3.send_request(quic, headers, fin)?;
                // The stream exists now (its HEADERS are queued): this cannot fail.
                let _ = quic.stream_priority(stream, QUICHE_URGENCY, TUNNEL_INCREMENTAL);
                Ok(stream)
            }
            (Self::H2, wire) => session(wire)?
                .send_request(&pairs(headers), fin)
                .map_err(|e| h3_error(e, 0)),
            _ => Err(h3::Error::InternalError),
        }
    }

    /// Drops what the HTTP layer keeps of a stream the transport has forgotten.
    ///
    /// quiche 0.30's HTTP/3 layer forgets a request stream's state only once our side of it
    /// finished with a FIN; one that ended with our reset (an aborted tunnel, a request
    /// the peer reset before our answer) stays in its table for the connection's life:
    /// some hundred bytes per tunnel on a long-lived connection. Its `send_body` (for a
    /// stream we sent headers on) and `send_response` (for one we never answered) drop
    /// that state when the transport has collected the stream, failing before anything
    /// is written, which is expected here; a stream the transport still has is left
    /// alone. HTTP/2 forgets streams itself.
    pub(crate) fn forget_stream(&mut self, wire: &mut Wire, stream: u64) {
        let (Self::H3(h3), Wire::Quic(quic)) = (self, wire) else {
            return;
        };
        if !matches!(
            quic.stream_capacity(stream),
            Err(quiche::Error::InvalidStreamState(_))
        ) {
            return;
        }
        // (An empty body without FIN is refused before the cleanup: one byte it is.)
        let _ = h3.send_body(quic, stream, &[0], false);
        let _ = h3.send_response(quic, stream, &[h3::Header::new(b":status", b"200")], false);
    }

    /// GOAWAY. HTTP/3 names `id`; HTTP/2 names the last stream the session processed.
    pub(crate) fn send_goaway(&mut self, wire: &mut Wire, id: u64) -> h3::Result<()> {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => h3.send_goaway(quic, id),
            (Self::H2, wire) => {
                session(wire)?.send_goaway();
                Ok(())
            }
            _ => Err(h3::Error::InternalError),
        }
    }

    /// Whether the peer takes HTTP datagrams outside streams (HTTP/3 with
    /// `SETTINGS_H3_DATAGRAM` and QUIC DATAGRAM frames); an HTTP/2 peer never does: its
    /// datagrams travel as capsules (RFC 9297 §3.5).
    pub(crate) fn dgram_enabled_by_peer(&self, wire: &Wire) -> bool {
        match (self, wire) {
            (Self::H3(h3), Wire::Quic(quic)) => h3.dgram_enabled_by_peer(quic),
            _ => false,
        }
    }

    /// Whether the peer's SETTINGS allow Extended CONNECT (`None`: not received yet).
    // RFC 9220 carries RFC 8441's Extended CONNECT, and its rule, over to HTTP/3:
    //# RFC 8441 §3: "Upon receipt of SETTINGS_ENABLE_CONNECT_PROTOCOL with a value of 1, a
    //# client MAY use the Extended CONNECT as defined in this document when creating new
    //# streams."
    pub(crate) fn extended_connect(&self, wire: &Wire) -> Option<bool> {
        match (self, wire) {
            (Self::H3(h3), _) => h3
                .peer_settings_raw()
                .map(|_| h3.extended_connect_enabled_by_peer()),
            (Self::H2, Wire::Tcp(tcp)) => tcp
                .session()
                .filter(|session| session.peer_settings_received())
                .map(crate::tcp::session::Session::peer_enabled_connect_protocol),
            (Self::H2, Wire::Quic(_)) => None,
        }
    }
}
