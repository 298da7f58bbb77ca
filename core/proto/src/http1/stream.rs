//! Splitting a client's HTTP/1.1 request stream into heads and bodies, sans-IO.
//!
//! A [`RequestStream`] is told, each time, the bytes of the stream from its current position
//! on, and says what they start with: a request head ([`Step::Head`]), bytes to pass
//! through as they are ([`Step::Body`]: body bytes and the chunked coding's framing), or
//! nothing decidable yet ([`Step::NeedMore`]). The caller then marks what it handled with
//! [`consume`](RequestStream::consume). Nothing is copied or allocated: a head is parsed
//! with httparse into a fixed array, and the chunked coding is followed line by line.
//!
//! Pipelined requests follow one another; each body is delimited as its head says.

use core::fmt;

use super::framing::{BodyFraming, FramingError};
use super::request::{Limits, SyntaxError};
use super::response::StatusCode;
use super::target::TargetError;

mod chunked;
mod edit;
mod head;
#[cfg(test)]
mod tests;

pub use chunked::MAX_CHUNK_LINE_LEN;
pub use edit::{EditError, HeadEdits};
pub use head::{OriginRequest, TargetForm};

use chunked::{Line, TrailerLine, chunk_size_line, trailer_line};

/// What the bytes at the start of the input are.
#[derive(Debug, Clone, PartialEq, Eq)]
// A head is big (its fields live in a fixed array, since nothing here allocates) and
// rare next to bodies; boxing it would need a heap.
#[allow(clippy::large_enum_variant)]
pub enum Step<'b> {
    /// A complete request head is at the start of `input`, [`len`](OriginRequest::len)
    /// bytes long; call [`RequestStream::consume`] with that length once it is handled.
    /// Its body, if any, follows.
    Head(OriginRequest<'b>),
    /// The next `len` bytes of `input` (at least one, at most all of it) are body bytes, or
    /// the chunked coding's framing (chunk-size lines, CRLFs, the trailer section), to pass
    /// through as they are; consume them, or a part of them.
    Body {
        /// How many bytes.
        len: usize,
    },
    /// More bytes are needed: the input is empty, or holds only part of a head or of a
    /// chunked-coding line.
    NeedMore,
}

/// Why the stream cannot be followed any further. [`status`](Self::status) is the answer
/// to send before closing the connection: where a next request would start is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamError {
    /// The request-line did not end within [`Limits::max_head_len`] (414).
    RequestLineTooLong,
    /// The head did not end within [`Limits::max_head_len`] (431).
    HeadTooLarge,
    /// More than [`MAX_HEADERS`](super::MAX_HEADERS) field lines (431).
    TooManyHeaders,
    /// Malformed head syntax, including obs-fold and whitespace before a colon (400).
    Syntax(SyntaxError),
    /// A request-target that is neither origin-form, asterisk-form in `OPTIONS`, nor an
    /// `http` absolute-form (400; 501 for another scheme).
    Target(TargetError),
    /// A `CONNECT` request: the bytes after it would be a tunnel this splitter cannot
    /// follow (501).
    Connect,
    /// Ambiguous or unsupported body framing (400, or 501 for an unsupported coding).
    Framing(FramingError),
    /// An HTTP/1.1 request without `Host` (400).
    MissingHost,
    /// More than one `Host` field line (400).
    DuplicateHost,
    /// A `Host` value that is not `uri-host [":" port]` (400).
    InvalidHost,
    /// A chunk-size that is not hexadecimal digits, or exceeds 64 bits (400).
    ChunkSize,
    /// A malformed chunk extension (400).
    ChunkExtension,
    /// A chunk-size line longer than [`MAX_CHUNK_LINE_LEN`] (400).
    ChunkLineTooLong,
    /// A line of the chunked coding (chunk-size line, trailer field line) that does not
    /// end in CRLF: a bare LF or a CR not followed by LF (400).
    ChunkLineEnding,
    /// Chunk data not followed by CRLF (400).
    MissingChunkCrlf,
    /// A malformed trailer field line (400).
    Trailer,
    /// A trailer section longer than [`Limits::max_head_len`] (431).
    TrailersTooLarge,
    /// The caller consumed more than the last step allowed (500): a bug in the caller.
    ConsumedTooMuch,
}

impl StreamError {
    /// The status code to answer with: 400 for malformed requests, 414 and 431 for the size
    /// limits, 501 for what is well-formed but not followed (a `CONNECT`, a scheme other
    /// than `http`, a transfer coding other than `chunked`), 500 for a caller's bug.
    pub const fn status(&self) -> StatusCode {
        match self {
            Self::RequestLineTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge | Self::TooManyHeaders | Self::TrailersTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::Connect => StatusCode::NOT_IMPLEMENTED,
            Self::Target(e) if e.is_unsupported() => StatusCode::NOT_IMPLEMENTED,
            Self::Framing(e) if e.is_unsupported() => StatusCode::NOT_IMPLEMENTED,
            Self::ConsumedTooMuch => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<TargetError> for StreamError {
    fn from(e: TargetError) -> Self {
        Self::Target(e)
    }
}

impl From<FramingError> for StreamError {
    fn from(e: FramingError) -> Self {
        Self::Framing(e)
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestLineTooLong => f.write_str("request-line too long"),
            Self::HeadTooLarge => f.write_str("request head too large"),
            Self::TooManyHeaders => write!(f, "more than {} header fields", super::MAX_HEADERS),
            Self::Syntax(e) => e.fmt(f),
            Self::Target(e) => e.fmt(f),
            Self::Connect => f.write_str("CONNECT inside a request stream"),
            Self::Framing(e) => e.fmt(f),
            Self::MissingHost => f.write_str("HTTP/1.1 request without Host"),
            Self::DuplicateHost => f.write_str("more than one Host field"),
            Self::InvalidHost => f.write_str("invalid Host field value"),
            Self::ChunkSize => f.write_str("malformed chunk size"),
            Self::ChunkExtension => f.write_str("malformed chunk extension"),
            Self::ChunkLineTooLong => f.write_str("chunk-size line too long"),
            Self::ChunkLineEnding => f.write_str("chunked coding line not ending in CRLF"),
            Self::MissingChunkCrlf => f.write_str("chunk data not followed by CRLF"),
            Self::Trailer => f.write_str("malformed trailer field"),
            Self::TrailersTooLarge => f.write_str("trailer section too large"),
            Self::ConsumedTooMuch => f.write_str("consumed more than the stream allowed"),
        }
    }
}

impl core::error::Error for StreamError {}

/// Where the stream is, once the bytes of `pending` have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Expecting a request head (or more of one).
    Head,
    /// In a `Content-Length` body: bytes still to come (never 0).
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkLine,
    /// In chunk data: bytes still to come (never 0).
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkCrlf,
    /// In the trailer section: bytes of it so far.
    Trailers(usize),
    /// Everything is passed through ([`RequestStream::pass_through`]).
    PassThrough,
    /// Stopped by this error, which every later step returns.
    Failed(StreamError),
}

/// How far a head has been looked at, so that a head fed a byte at a time is parsed once
/// per line, not once per byte (as [`RequestDecoder`](super::RequestDecoder) does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HeadScan {
    /// Bytes of the input already looked at.
    scanned: usize,
    /// Whether a byte other than CR or LF has been seen: a head has started.
    started: bool,
    /// Whether an LF has been seen after the start, i.e. the request-line is whole.
    request_line_ended: bool,
    /// Bytes up to and including the last CR or LF after the start: what gets parsed.
    lines_end: usize,
    /// The length and framing of the complete head last returned, until consumed.
    ready: Option<(usize, BodyFraming)>,
}

impl HeadScan {
    /// Scans the bytes not seen before; reports whether they hold a CR or LF after the
    /// start of the request-line, the only moment a parse can make progress.
    fn saw_new_line_break(&mut self, window: &[u8]) -> bool {
        let mut offset = self.scanned;
        let mut fresh = window.get(offset..).unwrap_or_default();
        self.scanned = window.len();
        if !self.started {
            let Some(start) = fresh.iter().position(|b| !matches!(b, b'\r' | b'\n')) else {
                return false;
            };
            self.started = true;
            offset += start;
            fresh = fresh.get(start..).unwrap_or_default();
        }
        self.request_line_ended |= fresh.contains(&b'\n');
        match fresh.iter().rposition(|b| matches!(b, b'\r' | b'\n')) {
            Some(last) => {
                self.lines_end = offset + last + 1;
                true
            }
            None => false,
        }
    }
}

/// Splits a client's request stream (origin-form requests, pipelined or one after the
/// other on a persistent connection) into request heads and the bytes to pass through.
///
/// Drive it with the bytes received and not yet consumed, starting at the stream's current
/// position:
///
/// ```
/// use veil_proto::http1::{BodyFraming, RequestStream, Step};
///
/// let mut stream = RequestStream::default();
/// let mut input: &[u8] = b"POST /up HTTP/1.1\r\nHost: a.example\r\n\
///                          Transfer-Encoding: chunked\r\n\r\n\
///                          5;sig=x\r\nhello\r\n0\r\n\r\n\
///                          GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
/// let mut heads = Vec::new();
/// let mut passed = 0;
/// loop {
///     match stream.step(input)? {
///         Step::Head(request) => {
///             heads.push((request.method(), request.target(), request.framing()));
///             let len = request.len();
///             stream.consume(len);
///             input = &input[len..];
///         }
///         Step::Body { len } => {
///             passed += len;
///             stream.consume(len);
///             input = &input[len..];
///         }
///         Step::NeedMore => break,
///     }
/// }
/// assert_eq!(
///     heads,
///     [("POST", "/up", BodyFraming::Chunked), ("GET", "/", BodyFraming::None)]
/// );
/// assert_eq!(passed, b"5;sig=x\r\nhello\r\n0\r\n\r\n".len());
/// assert!(stream.at_boundary());
/// # Ok::<(), veil_proto::http1::StreamError>(())
/// ```
///
/// The caller must hand `step` the same bytes from the same position until it consumes:
/// only more of them, never others. A head, a chunk-size line and each trailer line are
/// reported only once whole in the input (bounded by [`Limits::max_head_len`] and
/// [`MAX_CHUNK_LINE_LEN`]); body bytes as soon as there is one.
///
/// The stream is as strict as [`RequestDecoder`](super::RequestDecoder): the same
/// framing refusals against request smuggling (both `Content-Length` and
/// `Transfer-Encoding`, differing `Content-Length`s, `chunked` not final, `Transfer-Encoding`
/// in HTTP/1.0, obs-fold, whitespace before a colon), and in the chunked coding no bare LF
/// or CR, no whitespace the grammar does not allow, and a chunk size that fits 64 bits.
/// After an error every step returns it again.
///
/// A request with `Upgrade` (e.g. a WebSocket handshake) changes protocol only if the
/// origin answers 101: stop stepping after it until the response arrives, then call
/// [`pass_through`](Self::pass_through) on a 101.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestStream {
    limits: Limits,
    phase: Phase,
    /// Bytes at the start of the input that are already known to pass through (a validated
    /// line of the chunked coding, or the rest of a partly consumed head), before `phase`.
    pending: usize,
    scan: HeadScan,
}

impl Default for RequestStream {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl RequestStream {
    /// A stream at the start of a connection, enforcing `limits` on each head and each
    /// trailer section.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            phase: Phase::Head,
            pending: 0,
            scan: HeadScan::default(),
        }
    }

    /// What the bytes at the start of `input` are. Never consumes by itself: stepping
    /// again over the same input gives the same answer.
    pub fn step<'b>(&mut self, input: &'b [u8]) -> Result<Step<'b>, StreamError> {
        if let Phase::Failed(error) = self.phase {
            return Err(error);
        }
        if input.is_empty() {
            return Ok(Step::NeedMore);
        }
        if self.pending > 0 {
            return Ok(body(self.pending, input));
        }
        let outcome = match self.phase {
            Phase::Head => return self.step_head(input),
            Phase::Length(remaining) | Phase::ChunkData(remaining) => Ok(body(
                usize::try_from(remaining).unwrap_or(usize::MAX),
                input,
            )),
            Phase::PassThrough => Ok(body(input.len(), input)),
            Phase::ChunkLine => self.step_chunk_line(input),
            Phase::ChunkCrlf => self.step_chunk_crlf(input),
            Phase::Trailers(used) => self.step_trailer(input, used),
            Phase::Failed(error) => Err(error),
        };
        outcome.inspect_err(|&e| self.phase = Phase::Failed(e))
    }

    /// Marks `len` bytes as handled: a head's [`len`](OriginRequest::len), or at most the
    /// `len` of the last [`Step::Body`]. Consuming less of a head leaves the rest of it to
    /// pass through as [`Step::Body`]. Consuming more than the last step allowed stops the
    /// stream with [`StreamError::ConsumedTooMuch`].
    pub fn consume(&mut self, len: usize) {
        if len == 0 || matches!(self.phase, Phase::Failed(_)) {
            return;
        }
        if self.pending > 0 {
            if len > self.pending {
                self.phase = Phase::Failed(StreamError::ConsumedTooMuch);
            } else {
                self.pending -= len;
            }
            return;
        }
        let len64 = u64::try_from(len).unwrap_or(u64::MAX);
        self.phase = match self.phase {
            Phase::Head => match self.scan.ready {
                Some((head_len, framing)) if len <= head_len => {
                    self.scan = HeadScan::default();
                    self.pending = head_len - len;
                    match framing {
                        //# RFC 9112 §6.3: "If this is a request message and none of the
                        //# above are true, then the message body length is zero (no
                        //# message body is present)."
                        BodyFraming::None | BodyFraming::ContentLength(0) => Phase::Head,
                        BodyFraming::ContentLength(length) => Phase::Length(length),
                        BodyFraming::Chunked => Phase::ChunkLine,
                    }
                }
                _ => Phase::Failed(StreamError::ConsumedTooMuch),
            },
            Phase::Length(remaining) if len64 < remaining => Phase::Length(remaining - len64),
            //# RFC 9112 §9.3.2: "A client that supports persistent connections MAY
            //# "pipeline" its requests (i.e., send multiple requests without waiting for
            //# each response)."
            Phase::Length(remaining) if len64 == remaining => Phase::Head,
            Phase::ChunkData(remaining) if len64 < remaining => Phase::ChunkData(remaining - len64),
            Phase::ChunkData(remaining) if len64 == remaining => Phase::ChunkCrlf,
            Phase::PassThrough => Phase::PassThrough,
            _ => Phase::Failed(StreamError::ConsumedTooMuch),
        };
    }

    /// Whether the stream is between requests: no part of a head or body is pending, as
    /// far as `step` has seen. A FIN here is clean; elsewhere the last request is cut off.
    /// Also true once the stream passes everything through.
    pub fn at_boundary(&self) -> bool {
        self.pending == 0
            && match self.phase {
                Phase::Head => !self.scan.started && self.scan.ready.is_none(),
                Phase::PassThrough => true,
                _ => false,
            }
    }

    /// Passes every byte from now on through as [`Step::Body`], for a connection that
    /// changed protocol: call it at a boundary, after the origin answered 101 (Switching
    /// Protocols) to the request before.
    //# RFC 9110 §15.2.2: "The server MUST generate an Upgrade header field in the response
    //# that indicates which protocol(s) will be switched to immediately after the empty
    //# line that terminates the 101 response."
    pub fn pass_through(&mut self) {
        if !matches!(self.phase, Phase::Failed(_)) {
            self.phase = Phase::PassThrough;
            self.scan = HeadScan::default();
        }
    }

    /// The error that stopped the stream, if one did.
    pub const fn error(&self) -> Option<StreamError> {
        match self.phase {
            Phase::Failed(error) => Some(error),
            _ => None,
        }
    }

    fn step_head<'b>(&mut self, input: &'b [u8]) -> Result<Step<'b>, StreamError> {
        let outcome = self.find_head(input);
        match &outcome {
            Ok(Step::Head(request)) => self.scan.ready = Some((request.len(), request.framing())),
            Ok(_) => {}
            Err(e) => self.phase = Phase::Failed(*e),
        }
        outcome
    }

    fn find_head<'b>(&mut self, input: &'b [u8]) -> Result<Step<'b>, StreamError> {
        if input.len() < self.scan.scanned {
            self.scan = HeadScan::default();
        }
        let max = self.limits.max_head_len;
        let window = input.get(..max).unwrap_or(input);
        if self.scan.saw_new_line_break(window) || self.scan.ready.is_some() {
            let lines = window.get(..self.scan.lines_end).unwrap_or(window);
            if let Some(request) = head::parse(lines)? {
                return Ok(Step::Head(request));
            }
        }
        if window.len() < max {
            Ok(Step::NeedMore)
        } else if self.scan.request_line_ended {
            Err(StreamError::HeadTooLarge)
        } else {
            Err(StreamError::RequestLineTooLong)
        }
    }

    fn step_chunk_line<'b>(&mut self, input: &'b [u8]) -> Result<Step<'b>, StreamError> {
        match chunk_size_line(input)? {
            Line::Complete { len, what: 0 } => Ok(self.element(len, Phase::Trailers(0))),
            Line::Complete { len, what: size } => Ok(self.element(len, Phase::ChunkData(size))),
            Line::Incomplete => Ok(Step::NeedMore),
        }
    }

    //# RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    fn step_chunk_crlf<'b>(&mut self, input: &'b [u8]) -> Result<Step<'b>, StreamError> {
        match input {
            [b'\r', b'\n', ..] => Ok(self.element(2, Phase::ChunkLine)),
            [b'\r'] => Ok(Step::NeedMore),
            _ => Err(StreamError::MissingChunkCrlf),
        }
    }

    fn step_trailer<'b>(&mut self, input: &'b [u8], used: usize) -> Result<Step<'b>, StreamError> {
        let budget = self.limits.max_head_len.saturating_sub(used);
        match trailer_line(input, budget)? {
            Line::Complete {
                len,
                what: TrailerLine::Field,
            } => Ok(self.element(len, Phase::Trailers(used + len))),
            Line::Complete {
                len,
                what: TrailerLine::End,
            } => Ok(self.element(len, Phase::Head)),
            Line::Incomplete => Ok(Step::NeedMore),
        }
    }

    /// A validated line of `len` bytes at the start of the input, after which `next`.
    fn element(&mut self, len: usize, next: Phase) -> Step<'static> {
        self.pending = len;
        self.phase = next;
        Step::Body { len }
    }
}

/// `Body` for up to `len` bytes of a non-empty `input`.
fn body(len: usize, input: &[u8]) -> Step<'static> {
    Step::Body {
        len: len.min(input.len()),
    }
}
