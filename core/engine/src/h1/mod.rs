//! The HTTP/1.1 on-ramp's session (RFC 9112): one proxy request per connection, then the
//! connection is its tunnel. Sans-IO, over the plaintext of a TLS connection the caller
//! runs, for clients that speak neither HTTP/3 nor HTTP/2 (curl as the client of an HTTPS
//! proxy, most proxy libraries).
//!
//! Two requests are served: `CONNECT host:port` (RFC 9110 §9.3.6) for a TCP tunnel, and an
//! upgrade to `connect-udp` (RFC 9298 §3.2) or `connect-ip` (RFC 9484 §4.1), whose tunnel
//! carries capsules (RFC 9297 §3.2). The session speaks the HTTP/2 session's vocabulary
//! ([`Event`], [`Error`], stream [`STREAM`]) so that the endpoint drives both through one
//! set of calls; `crate::h1::head` turns the request head into the fields an HTTP/2 request
//! would carry, so that one checker decides for every HTTP version.
//!
//! HTTP/1.1 has no flow control: what the peer sends after the head is buffered for the
//! tunnel, and [`Session::wants_input`] turns false above [`BODY_HIGH_WATER`]: the host
//! stops reading the socket until the tunnel has taken it, and TCP pushes back on the peer.
//!
//! Ends: our end of the tunnel is TLS `close_notify` (sent by the caller once
//! [`Session::finished_sending`]); the peer's is its `close_notify` ([`Session::peer_closed`]).
//! A reset, or a connection closed with the tunnel unfinished, ends without `close_notify`
//! ([`Session::clean_end`] is false), so that the peer sees a truncated stream and not a
//! complete one.

mod head;

use std::collections::VecDeque;

pub use crate::h2::{ConnectionError, Error, Event};

/// The stream id of the connection's one request, as HTTP/2 would number the first (RFC
/// 9113 §3.2 gives an upgraded HTTP/1.1 request stream 1 too).
pub const STREAM: u64 = 1;

/// The longest request head read; a longer one is refused with 431.
pub const MAX_HEAD: usize = 32 * 1024;

/// Tunnel bytes buffered from the peer before [`Session::wants_input`] turns false. The
/// host reads at most one more chunk past it.
pub const BODY_HIGH_WATER: usize = 256 * 1024;

/// Our output the session holds before `send_body` takes less (backpressure on the
/// tunnel's other side).
pub const MAX_OUTPUT: usize = 256 * 1024;

/// Where the connection's one request is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading the request head.
    Head,
    /// The head was reported; no final response yet. `upgrade`: the protocol it asked
    /// for.
    Requested { upgrade: Option<Vec<u8>> },
    /// A 2xx was sent: the connection is the tunnel.
    Tunnel,
    /// Over: a refusal sent, a reset, or closed. `clean`: the peer may be told with
    /// `close_notify` (everything we meant to send was sent).
    Over { clean: bool },
}

/// What the session has told about the peer's side.
#[derive(Debug, Default)]
struct Inbound {
    /// `Event::Data` was queued and the buffer has not been drained since.
    data_reported: bool,
    /// The peer's `close_notify` arrived.
    finished: bool,
    /// `Event::Finished` was queued.
    finished_reported: bool,
}

/// Where our side stands.
#[derive(Debug, Default)]
struct Outbound {
    /// We sent our end of the tunnel (`send_body` with `fin`).
    sent_fin: bool,
    /// `send_body` took less than it was given: report the stream when there is room.
    blocked: bool,
    /// Room came back after a block: `writable_next` reports the stream once.
    writable: bool,
}

/// One connection's request and tunnel.
#[derive(Debug)]
pub struct Session {
    state: State,
    /// The head read so far (state `Head`).
    head: Vec<u8>,
    events: VecDeque<(u64, Event)>,
    /// Tunnel bytes from the peer, from `body_start`.
    body: Vec<u8>,
    body_start: usize,
    inbound: Inbound,
    /// Output, from `out_start`.
    out: Vec<u8>,
    out_start: usize,
    outbound: Outbound,
    /// A graceful shutdown was asked: no request is taken any more.
    goaway: bool,
    /// A refusal with a body: the connection ends with the body (no tunnel follows).
    refusal_body: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A server session, waiting for the request head.
    pub fn new() -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            events: VecDeque::new(),
            body: Vec::new(),
            body_start: 0,
            inbound: Inbound::default(),
            out: Vec::new(),
            out_start: 0,
            outbound: Outbound::default(),
            goaway: false,
            refusal_body: false,
        }
    }

    /// Plaintext from the peer. An error means the connection is over: the answer to it
    /// (400, 431) is in the output, to be flushed before closing.
    pub fn recv(&mut self, input: &[u8]) -> Result<(), ConnectionError> {
        match self.state {
            State::Head => self.recv_head(input),
            State::Requested { .. } | State::Tunnel => {
                if !self.inbound.finished {
                    self.take_body(input);
                }
                Ok(())
            }
            // After a refusal or a reset nothing the peer sends matters.
            State::Over { .. } => Ok(()),
        }
    }

    fn recv_head(&mut self, input: &[u8]) -> Result<(), ConnectionError> {
        if self.goaway {
            self.state = State::Over { clean: true };
            return Ok(());
        }
        // Only what can still belong to the head is kept here; the rest is the tunnel's.
        let room = MAX_HEAD - self.head.len();
        let (mine, later) = input.split_at(input.len().min(room));
        self.head.extend_from_slice(mine);
        let request = match head::parse_request(&self.head) {
            Ok(Some(request)) => request,
            Ok(None) if self.head.len() < MAX_HEAD => return Ok(()),
            Ok(None) => {
                return Err(self.refuse(431, "request head too large"));
            }
            Err(refusal) => return Err(self.refuse(refusal.status, refusal.reason)),
        };
        let after = self.head.split_off(request.len);
        self.head = Vec::new();
        self.state = State::Requested {
            upgrade: request.upgrade,
        };
        self.events.push_back((
            STREAM,
            Event::Headers {
                list: request.list,
                end_stream: false,
            },
        ));
        self.take_body(&after);
        self.take_body(later);
        Ok(())
    }

    /// Answers a request we cannot read with `status` and ends.
    fn refuse(&mut self, status: u16, reason: &'static str) -> ConnectionError {
        let status = status.to_string();
        let fields: [(&[u8], &[u8]); 1] = [(b":status", status.as_bytes())];
        let _ = head::encode_response(&fields, None, true, &mut self.out);
        self.state = State::Over { clean: true };
        ConnectionError {
            code: u64::from(veil_proto::h2::ErrorCode::PROTOCOL_ERROR.0),
            reason,
        }
    }

    fn take_body(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.body.extend_from_slice(bytes);
        if !self.inbound.data_reported {
            self.inbound.data_reported = true;
            self.events.push_back((STREAM, Event::Data));
        }
    }

    /// The peer ended its side (`close_notify`): the tunnel's end of stream, once its
    /// bytes are read. Before a request head was complete it ends the connection.
    pub fn peer_closed(&mut self) {
        match self.state {
            State::Head => self.state = State::Over { clean: true },
            State::Requested { .. } | State::Tunnel => {
                self.inbound.finished = true;
                self.report_finished();
            }
            State::Over { .. } => {}
        }
    }

    fn report_finished(&mut self) {
        if self.inbound.finished && self.body_len() == 0 && !self.inbound.finished_reported {
            self.inbound.finished_reported = true;
            self.events.push_back((STREAM, Event::Finished));
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<(u64, Event)> {
        self.events.pop_front()
    }

    /// The response head (fields as HTTP/2 carries them, `:status` among them). A 2xx
    /// makes the connection the tunnel; anything above 2xx ends the connection once
    /// written.
    pub fn send_response(
        &mut self,
        stream: u64,
        fields: &[(&[u8], &[u8])],
        fin: bool,
    ) -> Result<(), Error> {
        if stream != STREAM {
            return Err(Error::UnknownStream);
        }
        let State::Requested { upgrade } = &self.state else {
            return Err(match self.state {
                State::Over { .. } => Error::Closed,
                _ => Error::StreamClosed,
            });
        };
        let outcome = head::encode_response(fields, upgrade.as_deref(), fin, &mut self.out)
            .ok_or(Error::StreamClosed)?;
        match outcome {
            head::Outcome::Informational => {}
            head::Outcome::Tunnel => {
                self.state = State::Tunnel;
                self.outbound.sent_fin = fin;
            }
            head::Outcome::Refused => {
                // Its body, if one is sent, ends with the connection.
                if fin {
                    self.state = State::Over { clean: true };
                } else {
                    self.state = State::Tunnel;
                    self.refusal_body = true;
                }
                self.outbound.sent_fin = fin;
            }
        }
        Ok(())
    }

    /// Tunnel bytes to the peer, up to the room under [`MAX_OUTPUT`]; returns how many were
    /// taken (fewer: [`Session::writable_next`] names the stream when there is room).
    /// `fin` applies only if all of `data` was taken.
    pub fn send_body(&mut self, stream: u64, data: &[u8], fin: bool) -> Result<usize, Error> {
        let room = self.stream_capacity(stream)?;
        let n = room.min(data.len());
        if n == 0 && !data.is_empty() {
            self.outbound.blocked = true;
            return Err(Error::StreamBlocked);
        }
        self.out.extend_from_slice(&data[..n]);
        if n < data.len() {
            self.outbound.blocked = true;
        } else if fin {
            self.outbound.sent_fin = true;
        }
        Ok(n)
    }

    /// Reads buffered tunnel bytes; `Err(Done)` when there are none.
    pub fn recv_body(&mut self, stream: u64, out: &mut [u8]) -> Result<usize, Error> {
        if stream != STREAM || !self.has_stream(stream) {
            return Err(Error::UnknownStream);
        }
        let pending = &self.body[self.body_start..];
        if pending.is_empty() {
            return Err(Error::Done);
        }
        let n = pending.len().min(out.len());
        out[..n].copy_from_slice(&pending[..n]);
        self.body_start += n;
        if self.body_start == self.body.len() {
            self.body.clear();
            self.body_start = 0;
            self.inbound.data_reported = false;
            self.report_finished();
        } else if self.body_start >= 64 * 1024 && self.body_start * 2 >= self.body.len() {
            self.body.drain(..self.body_start);
            self.body_start = 0;
        }
        Ok(n)
    }

    fn body_len(&self) -> usize {
        self.body.len() - self.body_start
    }

    /// Whether the peer's end was reached and every byte read.
    pub fn stream_finished(&self, stream: u64) -> bool {
        stream == STREAM && self.inbound.finished && self.body_len() == 0
    }

    /// Whether the request is still alive (asked and not over).
    pub fn has_stream(&self, stream: u64) -> bool {
        stream == STREAM && matches!(self.state, State::Requested { .. } | State::Tunnel)
    }

    /// How many bytes `send_body` would take now.
    pub fn stream_capacity(&self, stream: u64) -> Result<usize, Error> {
        if !self.has_stream(stream) {
            return Err(Error::UnknownStream);
        }
        if self.state != State::Tunnel || self.outbound.sent_fin {
            return Err(Error::StreamClosed);
        }
        Ok(MAX_OUTPUT.saturating_sub(self.out.len() - self.out_start))
    }

    /// Ends the request: with `NO_ERROR` after our side is complete, once everything we
    /// sent is out (the HTTP/2 way of asking the peer to stop sending after a complete
    /// response; before it, nothing happens); with any other code at once and without
    /// `close_notify` (an abort the peer can tell from an end).
    pub fn reset_stream(&mut self, stream: u64, code: u64) {
        if !self.has_stream(stream) {
            return;
        }
        // "Stop sending" before our side is complete: what the peer still sends is read
        // and dropped by the caller, as on an HTTP/2 stream.
        if code == 0 && !self.outbound.sent_fin {
            return;
        }
        let clean = code == 0;
        if !clean {
            // Nothing more of an aborted tunnel goes out.
            self.out.truncate(self.out_start);
        }
        self.state = State::Over { clean };
    }

    /// The stream, once, when its room came back after `send_body` took less.
    pub fn writable_next(&mut self) -> Option<u64> {
        std::mem::take(&mut self.outbound.writable).then_some(STREAM)
    }

    /// A graceful shutdown: a connection with no request yet is ended; a tunnel carries
    /// on to its end (HTTP/1.1 has nothing like GOAWAY, and one request is all a
    /// connection serves anyway).
    pub fn send_goaway(&mut self) {
        self.goaway = true;
        if self.state == State::Head && self.head.is_empty() {
            self.state = State::Over { clean: true };
        }
    }

    /// Closes from our side. A tunnel that had not ended is aborted.
    pub fn close(&mut self) {
        match self.state {
            State::Over { .. } => {}
            State::Tunnel if self.outbound.sent_fin && self.inbound.finished => {
                self.state = State::Over { clean: true };
            }
            State::Head if self.head.is_empty() => self.state = State::Over { clean: true },
            _ => {
                self.out.truncate(self.out_start);
                self.state = State::Over { clean: false };
            }
        }
    }

    /// Output to write to the transport.
    pub fn pending_output(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// Marks `n` bytes of [`Session::pending_output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start >= 64 * 1024 && self.out_start * 2 >= self.out.len() {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
        if self.outbound.blocked && self.stream_capacity(STREAM).is_ok_and(|room| room > 0) {
            self.outbound.blocked = false;
            self.outbound.writable = true;
        }
    }

    /// Our side is over: the connection ends once its output is written (and both sides
    /// of a tunnel ended, or it never became one).
    pub fn is_closed(&self) -> bool {
        match self.state {
            State::Over { .. } => true,
            State::Tunnel => {
                self.outbound.sent_fin
                    && (self.refusal_body || (self.inbound.finished && self.body_len() == 0))
            }
            _ => false,
        }
    }

    /// Whether the end may be told with `close_notify`: everything we meant to send was
    /// sent. `false` after a reset or an abort.
    pub fn clean_end(&self) -> bool {
        match self.state {
            State::Over { clean } => clean,
            _ => self.outbound.sent_fin,
        }
    }

    /// We sent our end of the tunnel (the caller sends `close_notify` once the output is
    /// written, even while the peer's side goes on).
    pub fn finished_sending(&self) -> bool {
        self.outbound.sent_fin && matches!(self.state, State::Tunnel | State::Over { clean: true })
    }

    /// Whether the host should read more from the socket now: not while the tunnel has
    /// [`BODY_HIGH_WATER`] bytes unread, nor once the connection is over.
    pub fn wants_input(&self) -> bool {
        match self.state {
            State::Head => true,
            State::Requested { .. } | State::Tunnel => {
                !self.inbound.finished && self.body_len() < BODY_HIGH_WATER
            }
            State::Over { .. } => false,
        }
    }

    /// Requests open: 1 from the head until the tunnel's end, else 0.
    pub fn open_streams(&self) -> usize {
        usize::from(self.has_stream(STREAM))
    }

    /// Still reading the request head (the connection's start deadline applies).
    pub fn awaiting_request(&self) -> bool {
        self.state == State::Head
    }
}

#[cfg(test)]
mod tests;
