//! The HTTP/2 on-ramp's session (RFC 9113): one connection's streams, flow control and
//! HPACK, sans-IO, over the plaintext bytes of a TLS connection the caller runs.
//!
//! It exists for networks that block UDP: each HTTP/2 stream carries the same CONNECT (or
//! extended CONNECT, RFC 8441) tunnel an HTTP/3 stream would. The caller feeds what it
//! reads to [`Session::recv`], drains [`Session::poll_event`], and writes
//! [`Session::pending_output`] to the transport.
//!
//! Every buffer is bounded: a partial frame by our `SETTINGS_MAX_FRAME_SIZE`, a stream's
//! unread body by its receive window, a header block and list by [`Limits`], output by
//! [`Limits::max_send_buffer`] plus control frames, which are bounded by
//! [`Limits::max_control_frames_queued`]. Floods that cost us without costing the peer
//! (rapid reset, CONTINUATION floods, unread PING/SETTINGS, HPACK bombs, too many streams)
//! each close the connection with `ENHANCE_YOUR_CALM` or refuse the stream, and count in
//! [`Stats`].
//!
//! Modules, one job each: `limits` (bounds and the reset-rate window), `settings` (ours and
//! the peer's), `flow` (windows), `stream` (per-stream state and buffer), `block` (header
//! blocks across CONTINUATION), `hpack` (bounded HPACK), `fields` (malformed header lists),
//! `output` (the output buffer), `recv` (incoming frames).

mod block;
mod fields;
mod flow;
mod hpack;
mod limits;
mod output;
mod recv;
mod settings;
mod stream;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, VecDeque};

use crate::map::{HashMap, HashSet};
use std::fmt;
use std::time::Instant;

use veil_proto::h2::{ErrorCode, Frame, MAX_WINDOW_SIZE, PREFACE, encode_settings};

use block::HeaderBlock;
use flow::{RecvWindow, SendWindow};
use hpack::HeaderCodec;
pub use limits::Limits;
pub(crate) use limits::RateWindow;
use output::Output;
use settings::PeerSettings;
use stream::Stream;

/// Which end of the connection the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts streams (the edge).
    Server,
    /// Opens streams (the client).
    Client,
}

/// What happened on a stream (or, for [`Event::GoAway`], stream 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request (server) or response (client) head, decoded; `end_stream` if
    /// `END_STREAM` came with it. A client sees informational (1xx) heads too, before the
    /// final one.
    Headers {
        /// The fields, in order, pseudo-header fields first.
        list: Vec<(Vec<u8>, Vec<u8>)>,
        /// No body follows.
        end_stream: bool,
    },
    /// New body bytes are readable with `recv_body` (reported once per burst; re-armed
    /// after `recv_body` drained the buffer).
    Data,
    /// The peer's `END_STREAM` has been reached and all its bytes read (or nothing was
    /// left).
    Finished,
    /// The stream ended abruptly with this code: the peer reset it, or the session reset
    /// it because the peer broke a rule on it (then the code is the one we sent), or the
    /// peer's GOAWAY showed it was never processed (`REFUSED_STREAM`, safe to retry). The
    /// stream is forgotten.
    Reset(u64),
    /// The peer sent GOAWAY with this last stream id (reported again only if it drops).
    GoAway(u64),
}

/// Why a call on the session did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Nothing now (no bytes to read / no capacity).
    Done,
    /// No flow-control or buffer capacity for this stream now; [`Session::writable_next`]
    /// names it when there is.
    StreamBlocked,
    /// Not an open stream (never opened, closed, or reset).
    UnknownStream,
    /// Our side of the stream already finished (or, for a body, its head was not sent).
    StreamClosed,
    /// Client: the peer's `MAX_CONCURRENT_STREAMS` is reached, or GOAWAY was received, or
    /// stream identifiers ran out; a server cannot open streams.
    LimitReached,
    /// The connection is closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Done => "nothing to do",
            Self::StreamBlocked => "stream blocked by flow control or the output bound",
            Self::UnknownStream => "no such open stream",
            Self::StreamClosed => "our side of the stream is finished",
            Self::LimitReached => "no new stream can be opened",
            Self::Closed => "connection closed",
        })
    }
}

impl std::error::Error for Error {}

/// A connection error: GOAWAY with `code` is queued and the session is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionError {
    /// The HTTP/2 error code (RFC 9113 §7).
    pub code: u64,
    /// What went wrong, for logs (also sent as GOAWAY debug data).
    pub reason: &'static str,
}

impl ConnectionError {
    fn new(code: ErrorCode, reason: &'static str) -> Self {
        Self {
            code: u64::from(code.0),
            reason,
        }
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = u32::try_from(self.code).map_or(ErrorCode::INTERNAL_ERROR, ErrorCode);
        write!(f, "HTTP/2 connection error {code}: {}", self.reason)
    }
}

impl std::error::Error for ConnectionError {}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames decoded from the peer.
    pub frames_received: u64,
    /// DATA payload bytes received (padding excluded).
    pub data_bytes_received: u64,
    /// DATA payload bytes sent.
    pub data_bytes_sent: u64,
    /// `RST_STREAM` frames received on open streams.
    pub resets_received: u64,
    /// `RST_STREAM` frames sent (by the caller or for the peer's errors).
    pub resets_sent: u64,
    /// Streams refused at our `MAX_CONCURRENT_STREAMS` (flood bound: too many streams).
    pub streams_refused: u64,
    /// Header lists over `max_header_list_size` (flood bound: HPACK bomb).
    pub header_lists_too_large: u64,
    /// Connections closed for too many resets and refusals in 10 s (rapid reset).
    pub rapid_reset_floods: u64,
    /// Connections closed for a header block with too many CONTINUATION frames or bytes.
    pub continuation_floods: u64,
    /// Connections closed for too many unread acknowledgements and resets.
    pub control_frame_floods: u64,
}

/// Where the peer's side of the connection start is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Server: this many bytes of the client's preface matched so far.
    Preface(usize),
    /// The peer's first frame must be SETTINGS.
    FirstSettings,
    /// Running.
    Ready,
}

/// Streams we reset recently: frames for them may still be in flight and are ignored.
#[derive(Debug, Default)]
struct RecentResets {
    order: VecDeque<u32>,
    set: HashSet<u32>,
}

impl RecentResets {
    /// How many to remember: past that, a late frame gets a `STREAM_CLOSED` reset, which
    /// is harmless.
    const CAPACITY: usize = 1024;

    fn insert(&mut self, id: u32) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, id: u32) -> bool {
        self.set.contains(&id)
    }
}

/// One HTTP/2 connection, sans-IO. See the module documentation.
#[derive(Debug)]
pub struct Session {
    role: Role,
    limits: Limits,
    phase: Phase,
    out: Output,
    codec: HeaderCodec,
    peer: PeerSettings,
    streams: HashMap<u32, Stream>,
    events: VecDeque<(u64, Event)>,
    /// Streams that got `StreamBlocked` (or were left without capacity) and wait for it.
    blocked: BTreeSet<u32>,
    writable: VecDeque<u64>,
    conn_send: SendWindow,
    conn_recv: RecvWindow,
    /// A partial frame (at most our max frame size plus 9 bytes).
    inbuf: Vec<u8>,
    /// A header block waiting for CONTINUATION frames.
    block: Option<HeaderBlock>,
    /// The highest stream the peer opened (or that we refused).
    highest_peer_stream: u32,
    /// The identifier our next stream gets (client: odd).
    next_local_stream: u32,
    reset_by_us: RecentResets,
    /// Streams the peer opened and reset, or had refused.
    resets: RateWindow,
    /// Our GOAWAY's last stream id.
    goaway_sent: Option<u32>,
    /// The lowest last stream id of the peer's GOAWAYs.
    goaway_received: Option<u32>,
    /// Set once the connection is closed.
    error: Option<ConnectionError>,
    stats: Stats,
}

impl Session {
    /// A session that has queued its start: the client preface (client), our SETTINGS,
    /// and a `WINDOW_UPDATE` raising the connection window to `limits.connection_window`.
    pub fn new(role: Role, limits: Limits) -> Self {
        let limits = limits.sanitized();
        let mut session = Self {
            role,
            phase: match role {
                Role::Server => Phase::Preface(0),
                Role::Client => Phase::FirstSettings,
            },
            out: Output::default(),
            codec: HeaderCodec::new(),
            peer: PeerSettings::default(),
            streams: HashMap::default(),
            events: VecDeque::new(),
            blocked: BTreeSet::new(),
            writable: VecDeque::new(),
            conn_send: SendWindow::new(veil_proto::h2::DEFAULT_WINDOW_SIZE),
            conn_recv: RecvWindow::new(limits.connection_window),
            inbuf: Vec::new(),
            block: None,
            highest_peer_stream: 0,
            next_local_stream: 1,
            reset_by_us: RecentResets::default(),
            resets: RateWindow::default(),
            goaway_sent: None,
            goaway_received: None,
            error: None,
            stats: Stats::default(),
            limits,
        };
        session.start();
        session
    }

    //# RFC 9113 §3.4: "That is, the connection preface starts with the string
    //# PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n. This sequence MUST be followed by a SETTINGS frame"
    fn start(&mut self) {
        let mut start = Vec::new();
        if self.role == Role::Client {
            start.extend_from_slice(PREFACE);
        }
        let settings = settings::ours(self.role, &self.limits);
        let at = start.len();
        start.resize(at + 9 + 6 * settings.len(), 0);
        let written = encode_settings(
            false,
            &settings,
            &mut veil_proto::Writer::new(&mut start[at..]),
        );
        debug_assert!(written.is_ok());
        self.out.raw(&start);
        //# RFC 9113 §6.9.2: "The connection flow-control window can only be changed using
        //# WINDOW_UPDATE frames."
        let increment = self.limits.connection_window - veil_proto::h2::DEFAULT_WINDOW_SIZE;
        if increment > 0 {
            self.out.frame(&Frame::WindowUpdate {
                stream_id: 0,
                increment,
            });
        }
    }

    /// Feeds plaintext bytes from the peer. Consumes everything (a partial frame is
    /// buffered, up to our max frame size plus 9 bytes).
    ///
    /// On a connection error, GOAWAY with the code is queued and the error returned; the
    /// session is then closed (every later call returns it again): flush the output, then
    /// close the transport.
    pub fn recv(&mut self, now: Instant, input: &[u8]) -> Result<(), ConnectionError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let result = self.recv_bytes(now, input);
        if let Err(error) = result {
            self.fail(error);
        }
        result
    }

    /// The next event, with its stream (0 for [`Event::GoAway`]).
    pub fn poll_event(&mut self) -> Option<(u64, Event)> {
        self.events.pop_front()
    }

    /// Client: opens a stream with this head (a CONNECT or extended CONNECT); returns its
    /// identifier.
    pub fn send_request(
        &mut self,
        headers: &[(&[u8], &[u8])],
        end_stream: bool,
    ) -> Result<u64, Error> {
        if self.error.is_some() {
            return Err(Error::Closed);
        }
        let open = u32::try_from(self.streams.len()).unwrap_or(u32::MAX);
        if self.role != Role::Client
            || self.goaway_received.is_some()
            || open >= self.peer.max_concurrent_streams
            || self.next_local_stream > MAX_WINDOW_SIZE
        {
            return Err(Error::LimitReached);
        }
        let id = self.next_local_stream;
        self.next_local_stream += 2;
        let mut stream = Stream::new(self.peer.initial_window, self.limits.stream_window);
        stream.head_sent = true;
        stream.send_closed = end_stream;
        self.streams.insert(id, stream);
        self.write_headers(id, headers, end_stream);
        Ok(u64::from(id))
    }

    /// Server: the response head on a stream the peer opened. (Also sends trailers, with
    /// `end_stream`, after a body.)
    pub fn send_response(
        &mut self,
        stream: u64,
        headers: &[(&[u8], &[u8])],
        end_stream: bool,
    ) -> Result<(), Error> {
        let id = self.open_stream(stream)?;
        let Some(state) = self.streams.get_mut(&id) else {
            return Err(Error::UnknownStream);
        };
        if state.send_closed {
            return Err(Error::StreamClosed);
        }
        state.head_sent = true;
        state.send_closed = end_stream;
        self.write_headers(id, headers, end_stream);
        self.forget_if_done(id);
        Ok(())
    }

    /// Sends body bytes, up to the stream's capacity; returns how many were taken (maybe
    /// fewer than `data.len()`: then the stream is blocked and
    /// [`Session::writable_next`] names it when it can take more).
    ///
    /// `fin` applies only if all of `data` was taken; an empty `data` with `fin` sends
    /// `END_STREAM` alone. DATA frames are split at the peer's `SETTINGS_MAX_FRAME_SIZE`.
    pub fn send_body(&mut self, stream: u64, data: &[u8], fin: bool) -> Result<usize, Error> {
        let id = self.open_stream(stream)?;
        let capacity = self.capacity(id)?;
        let n = capacity.min(data.len());
        if n == 0 && !data.is_empty() {
            self.blocked.insert(id);
            return Err(Error::StreamBlocked);
        }
        let end_stream = fin && n == data.len();
        if n == 0 && !end_stream {
            return Ok(0);
        }
        let max_frame = usize::try_from(self.peer.max_frame_size).unwrap_or(usize::MAX);
        let taken = &data[..n];
        let mut chunks = taken.chunks(max_frame).peekable();
        if chunks.peek().is_none() {
            self.out.data(id, &[], end_stream);
        }
        while let Some(chunk) = chunks.next() {
            self.out
                .data(id, chunk, end_stream && chunks.peek().is_none());
        }
        self.conn_send.consume(n);
        self.stats.data_bytes_sent += n as u64;
        if let Some(state) = self.streams.get_mut(&id) {
            state.send.consume(n);
            state.send_closed |= end_stream;
        }
        if n < data.len() {
            self.blocked.insert(id);
        }
        self.forget_if_done(id);
        Ok(n)
    }

    /// Reads buffered body bytes; `Err(Done)` when there are none.
    ///
    /// Reading returns flow-control credit: a `WINDOW_UPDATE` for the stream and one for
    /// the connection are queued once the amount read reaches half their window.
    pub fn recv_body(&mut self, stream: u64, out: &mut [u8]) -> Result<usize, Error> {
        let id = u32::try_from(stream).map_err(|_| Error::UnknownStream)?;
        let Some(state) = self.streams.get_mut(&id) else {
            return Err(Error::UnknownStream);
        };
        if state.buf.is_empty() {
            return Err(Error::Done);
        }
        let n = state.read(out);
        let drained = state.buf.is_empty();
        if drained {
            state.data_reported = false;
        }
        let read = u32::try_from(n).unwrap_or(u32::MAX);
        self.release(id, read);
        if drained {
            self.report_finished(id);
        }
        Ok(n)
    }

    /// Whether the peer's `END_STREAM` was received and every byte read. A stream whose
    /// both directions are over is forgotten, and then this is false, like for any
    /// unknown stream.
    pub fn stream_finished(&self, stream: u64) -> bool {
        u32::try_from(stream)
            .ok()
            .and_then(|id| self.streams.get(&id))
            .is_some_and(|s| s.recv_closed && s.buf.is_empty())
    }

    /// Whether the session still keeps `stream` (at least one direction not over).
    pub fn has_stream(&self, stream: u64) -> bool {
        u32::try_from(stream).is_ok_and(|id| self.streams.contains_key(&id))
    }

    /// How many bytes `send_body` would take now: the least of the stream's send window,
    /// the connection's, and the room left under `max_send_buffer`.
    pub fn stream_capacity(&self, stream: u64) -> Result<usize, Error> {
        let id = self.open_stream(stream)?;
        self.capacity(id)
    }

    /// Resets a stream with this code (`RST_STREAM`): both directions end and the stream
    /// is forgotten; frames the peer had in flight for it are ignored. Nothing happens
    /// for a stream that is not open.
    pub fn reset_stream(&mut self, stream: u64, code: u64) {
        if self.error.is_some() {
            return;
        }
        let Ok(id) = u32::try_from(stream) else {
            return;
        };
        if self.streams.contains_key(&id) {
            let code = ErrorCode(u32::try_from(code).unwrap_or(ErrorCode::INTERNAL_ERROR.0));
            self.out.frame(&Frame::RstStream {
                stream_id: id,
                error_code: code,
            });
            self.stats.resets_sent += 1;
            self.drop_stream(id);
        }
    }

    /// The next stream whose capacity came back after `StreamBlocked` (a `WINDOW_UPDATE`,
    /// a SETTINGS change, or output drained); each is named once per block.
    pub fn writable_next(&mut self) -> Option<u64> {
        self.writable.pop_front()
    }

    /// Starts a graceful shutdown: GOAWAY(`NO_ERROR`) naming the highest stream the peer
    /// opened so far. Streams it opens later are refused (`REFUSED_STREAM`); open ones
    /// carry on. The caller closes once [`Session::open_streams`] is 0.
    pub fn send_goaway(&mut self) {
        if self.error.is_some() || self.goaway_sent.is_some() {
            return;
        }
        let last = self.highest_peer_stream;
        self.goaway_sent = Some(last);
        self.out.frame(&Frame::GoAway {
            last_stream_id: last,
            error_code: ErrorCode::NO_ERROR,
            debug_data: &[],
        });
    }

    /// Closes the connection from our side: GOAWAY with `code`, then closed.
    pub fn close(&mut self, code: u64) {
        if self.error.is_some() {
            return;
        }
        let code = u32::try_from(code).map_or(ErrorCode::INTERNAL_ERROR, ErrorCode);
        self.fail(ConnectionError::new(code, "closed by us"));
    }

    /// Output to write to the transport.
    pub fn pending_output(&self) -> &[u8] {
        self.out.pending()
    }

    /// Marks `n` bytes of [`Session::pending_output`] as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
        self.refresh_writable();
    }

    /// The connection is closed: nothing more will be produced. Flush the output, then
    /// close the transport.
    pub fn is_closed(&self) -> bool {
        self.error.is_some()
    }

    /// The peer's first SETTINGS frame has arrived.
    pub fn peer_settings_received(&self) -> bool {
        self.peer.received
    }

    /// Client: the server announced `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 8441), so
    /// extended CONNECT (`:protocol`) may be sent.
    pub fn peer_enabled_connect_protocol(&self) -> bool {
        self.peer.connect_protocol
    }

    /// Streams open or half-closed.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// The session's counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // --- internals shared by sending and receiving ----------------------------------

    /// The identifier of an open stream on which we may still act.
    fn open_stream(&self, stream: u64) -> Result<u32, Error> {
        if self.error.is_some() {
            return Err(Error::Closed);
        }
        let id = u32::try_from(stream).map_err(|_| Error::UnknownStream)?;
        match self.streams.get(&id) {
            None => Err(Error::UnknownStream),
            Some(_) => Ok(id),
        }
    }

    /// What `send_body` may take on `id` now.
    fn capacity(&self, id: u32) -> Result<usize, Error> {
        let Some(stream) = self.streams.get(&id) else {
            return Err(Error::UnknownStream);
        };
        if stream.send_closed || !stream.head_sent {
            return Err(Error::StreamClosed);
        }
        Ok(stream
            .send
            .available()
            .min(self.conn_send.available())
            .min(self.limits.max_send_buffer.saturating_sub(self.out.len())))
    }

    /// Moves blocked streams that have capacity again to the writable queue.
    fn refresh_writable(&mut self) {
        if self.blocked.is_empty()
            || self.conn_send.available() == 0
            || self.out.len() >= self.limits.max_send_buffer
        {
            return;
        }
        let ready: Vec<u32> = self
            .blocked
            .iter()
            .copied()
            .filter(|&id| self.capacity(id).is_ok_and(|c| c > 0))
            .collect();
        for id in ready {
            self.blocked.remove(&id);
            self.writable.push_back(u64::from(id));
        }
    }

    /// Encodes a head and writes it as HEADERS and, past the peer's frame size,
    /// CONTINUATION frames.
    fn write_headers(&mut self, id: u32, headers: &[(&[u8], &[u8])], end_stream: bool) {
        let block = self.codec.encode(headers);
        let max_frame = usize::try_from(self.peer.max_frame_size).unwrap_or(usize::MAX);
        let mut chunks = block.chunks(max_frame);
        let first = chunks.next().unwrap_or_default();
        let mut rest = chunks.peekable();
        self.out.frame(&Frame::Headers {
            stream_id: id,
            fragment: first,
            end_stream,
            end_headers: rest.peek().is_none(),
            priority: None,
            padding: None,
        });
        while let Some(fragment) = rest.next() {
            self.out.frame(&Frame::Continuation {
                stream_id: id,
                fragment,
                end_headers: rest.peek().is_none(),
            });
        }
    }

    /// Returns `n` bytes of credit to the stream (unless the peer is done sending on it)
    /// and to the connection, with `WINDOW_UPDATE`s once half a window is due.
    fn release(&mut self, id: u32, n: u32) {
        if n == 0 {
            return;
        }
        if let Some(stream) = self.streams.get_mut(&id) {
            if !stream.recv_closed {
                if let Some(increment) = stream.recv.release(n) {
                    self.out.frame(&Frame::WindowUpdate {
                        stream_id: id,
                        increment,
                    });
                }
            }
        }
        self.release_connection(n);
    }

    fn release_connection(&mut self, n: u32) {
        if let Some(increment) = self.conn_recv.release(n) {
            self.out.frame(&Frame::WindowUpdate {
                stream_id: 0,
                increment,
            });
        }
    }

    /// Queues `Finished` once the peer's `END_STREAM` is reached and its bytes read.
    fn report_finished(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.recv_closed && stream.buf.is_empty() && !stream.finished_reported {
            stream.finished_reported = true;
            self.events.push_back((u64::from(id), Event::Finished));
        }
        self.forget_if_done(id);
    }

    fn forget_if_done(&mut self, id: u32) {
        if self.streams.get(&id).is_some_and(Stream::is_done) {
            self.streams.remove(&id);
            self.blocked.remove(&id);
        }
    }

    /// Forgets a stream that ends abruptly; its unread bytes go back to the connection
    /// window (they will never be read), and late frames for it are ignored.
    fn drop_stream(&mut self, id: u32) {
        if let Some(stream) = self.streams.remove(&id) {
            let unread = u32::try_from(stream.buf.len()).unwrap_or(u32::MAX);
            if unread > 0 {
                self.release_connection(unread);
            }
        }
        self.blocked.remove(&id);
        self.reset_by_us.insert(id);
    }

    /// Closes the connection with GOAWAY.
    fn fail(&mut self, error: ConnectionError) {
        let code = u32::try_from(error.code).map_or(ErrorCode::INTERNAL_ERROR, ErrorCode);
        self.out.frame(&Frame::GoAway {
            last_stream_id: self.highest_peer_stream,
            error_code: code,
            debug_data: error.reason.as_bytes(),
        });
        self.error = Some(error);
        self.block = None;
        self.inbuf = Vec::new();
    }
}
