//! Decoding a proxy request head, incrementally, and classifying it.

use core::fmt;

use heapless::Vec;

use super::auth::Credentials;
use super::framing::{BodyFraming, FramingError, body_framing};
use super::response::StatusCode;
use super::syntax::list_members;
use super::target::{
    Authority, TargetError, parse_absolute_form, parse_authority_form, validate_host_field,
};

/// The most header fields a request head may carry. They are kept in a fixed array, so
/// decoding never allocates; one more is [`RequestError::TooManyHeaders`].
pub const MAX_HEADERS: usize = 64;

/// Bounds on what a client may send before its head is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest request head accepted, in bytes, counted from the start of the buffer
    /// (empty lines before the request-line included). Must be above zero.
    pub max_head_len: usize,
}

impl Limits {
    /// 16 KiB: twice the request-line length RFC 9112 §3 recommends supporting, with room
    /// for ordinary header fields.
    pub const DEFAULT_MAX_HEAD_LEN: usize = 16 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_len: Self::DEFAULT_MAX_HEAD_LEN,
        }
    }
}

/// The HTTP version of a request. httparse accepts exactly these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `HTTP/1.0`.
    Http10,
    /// `HTTP/1.1`.
    Http11,
}

impl Version {
    /// The protocol-version as written in `Via` (`1.0` or `1.1`).
    pub const fn number(self) -> &'static str {
        match self {
            Self::Http10 => "1.0",
            Self::Http11 => "1.1",
        }
    }
}

/// One header field line of a request, borrowed from the input.
///
/// `Debug` hides the values of `Proxy-Authorization`, `Authorization` and `Cookie`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'b> {
    name: &'b str,
    value: &'b [u8],
}

impl<'b> HeaderField<'b> {
    /// The field name, as sent (compare it ignoring ASCII case).
    pub const fn name(&self) -> &'b str {
        self.name
    }

    /// The field value, without surrounding whitespace. It may hold obs-text bytes
    /// (0x80–0xFF), never CR, LF or NUL.
    pub const fn value(&self) -> &'b [u8] {
        self.value
    }

    /// Whether this field's name is `name`, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    fn is_sensitive(&self) -> bool {
        ["proxy-authorization", "authorization", "cookie"]
            .iter()
            .any(|name| self.is(name))
    }
}

impl fmt::Debug for HeaderField<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("HeaderField");
        out.field("name", &self.name);
        if self.is_sensitive() {
            out.field("value", &"<redacted>");
        } else if let Ok(text) = core::str::from_utf8(self.value) {
            out.field("value", &text);
        } else {
            out.field("value", &self.value);
        }
        out.finish()
    }
}

/// A syntactically valid request head, borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'b> {
    method: &'b str,
    target: &'b str,
    version: Version,
    fields: Vec<HeaderField<'b>, MAX_HEADERS>,
    len: usize,
    proxy_authorization: Option<Credentials<'b>>,
}

impl<'b> RequestHead<'b> {
    /// The method, as sent (methods are case-sensitive).
    pub const fn method(&self) -> &'b str {
        self.method
    }

    /// The request-target, as sent.
    pub const fn target(&self) -> &'b str {
        self.target
    }

    /// The HTTP version.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// Every header field line, in order.
    pub fn fields(&self) -> &[HeaderField<'b>] {
        &self.fields
    }

    /// The value of the first field named `name` (ignoring ASCII case).
    pub fn field(&self, name: &str) -> Option<&'b [u8]> {
        self.fields.iter().find(|f| f.is(name)).map(|f| f.value)
    }

    /// Bytes the head took in the input, final empty line included. Whatever follows in the
    /// same buffer is body (forwarded requests) or tunnel data (CONNECT) and must not be
    /// dropped.
    pub const fn head_len(&self) -> usize {
        self.len
    }

    /// The credentials of the single `Proxy-Authorization` field, if one was sent.
    pub const fn proxy_authorization(&self) -> Option<Credentials<'b>> {
        self.proxy_authorization
    }

    /// Whether any `Connection` field lists `option` (ignoring ASCII case), e.g. `close`.
    pub fn has_connection_option(&self, option: &str) -> bool {
        self.fields
            .iter()
            .filter(|f| f.is("connection"))
            .flat_map(|f| list_members(f.value))
            .any(|member| member.eq_ignore_ascii_case(option.as_bytes()))
    }
}

/// `CONNECT host:port`: open a TCP tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest<'b> {
    head: RequestHead<'b>,
    target: Authority<'b>,
}

impl<'b> ConnectRequest<'b> {
    /// The request head.
    pub const fn head(&self) -> &RequestHead<'b> {
        &self.head
    }

    /// The tunnel destination.
    pub const fn target(&self) -> Authority<'b> {
        self.target
    }
}

/// `METHOD http://host[:port]/path?query`: forward a plain-HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest<'b> {
    pub(crate) head: RequestHead<'b>,
    pub(crate) target: Authority<'b>,
    pub(crate) path_and_query: &'b str,
    pub(crate) framing: BodyFraming,
}

impl<'b> ForwardRequest<'b> {
    /// The request head.
    pub const fn head(&self) -> &RequestHead<'b> {
        &self.head
    }

    /// The origin server to connect to (port 80 unless the URI names one).
    ///
    /// This authority wins over the client's `Host` field, which is ignored:
    //# RFC 9112 §3.2.2: "When a proxy receives a request with an absolute-form of
    //# request-target, the proxy MUST ignore the received Host header field (if any) and
    //# instead replace it with the host information of the request-target."
    pub const fn target(&self) -> Authority<'b> {
        self.target
    }

    /// The URI after the authority: empty, or starting with `/` or `?`. The upstream
    /// request-line uses [`origin_form`](Self::origin_form), which adds the `/`.
    pub const fn path_and_query(&self) -> &'b str {
        self.path_and_query
    }

    /// How the request body is delimited, so the forwarder knows how much to relay.
    pub const fn framing(&self) -> BodyFraming {
        self.framing
    }
}

/// A request veil can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRequest<'b> {
    /// Open a tunnel.
    Connect(ConnectRequest<'b>),
    /// Forward a plain-HTTP request.
    Forward(ForwardRequest<'b>),
}

impl<'b> ProxyRequest<'b> {
    /// The request head.
    pub const fn head(&self) -> &RequestHead<'b> {
        match self {
            Self::Connect(r) => &r.head,
            Self::Forward(r) => &r.head,
        }
    }

    /// Where the request wants to go.
    pub const fn target(&self) -> Authority<'b> {
        match self {
            Self::Connect(r) => r.target,
            Self::Forward(r) => r.target,
        }
    }
}

/// Which part of the head httparse found malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The method or request-target (a byte outside their grammar, or not one SP apart).
    RequestLine,
    /// The HTTP-version is not `HTTP/1.0` or `HTTP/1.1`.
    Version,
    /// A field name, including whitespace before the colon, a line starting with
    /// whitespace (obs-fold) and a line without a colon.
    HeaderName,
    /// A field value byte (a control character, bare CR or NUL).
    HeaderValue,
    /// A line ending that is not CRLF or LF.
    LineEnding,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RequestLine => "malformed request-line",
            Self::Version => "unsupported or malformed HTTP version",
            Self::HeaderName => "malformed header field name",
            Self::HeaderValue => "malformed header field value",
            Self::LineEnding => "malformed line ending",
        })
    }
}

/// Why a request cannot be acted on. [`status`](Self::status) gives the response status.
///
/// After any of these, answer and close the connection: where a next request would start
/// cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The request-line did not end within [`Limits::max_head_len`] (414).
    //# RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes
    //# to parse MUST respond with a 414 (URI Too Long) status code"
    RequestLineTooLong,
    /// The head did not end within [`Limits::max_head_len`] (431).
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] field lines (431).
    TooManyHeaders,
    /// Malformed syntax (400).
    Syntax(SyntaxError),
    /// A request-target a forward proxy cannot act on (400, or 501 for an unsupported
    /// scheme).
    Target(TargetError),
    /// Ambiguous or unsupported body framing (400, or 501 for an unsupported coding).
    Framing(FramingError),
    /// An HTTP/1.1 request without `Host` (400).
    MissingHost,
    /// More than one `Host` field line (400).
    DuplicateHost,
    /// A `Host` value that is not `uri-host [":" port]` (400).
    InvalidHost,
    /// More than one `Proxy-Authorization` field line (400): which one to check would be
    /// ambiguous.
    DuplicateProxyAuthorization,
    /// A `Proxy-Authorization` value without a token scheme (400).
    InvalidProxyAuthorization,
    /// A CONNECT request announcing a body (400).
    //# RFC 9110 §9.3.6: "A CONNECT request message does not have content."
    ConnectWithBody,
}

impl RequestError {
    /// The status code to answer with.
    ///
    /// 400 for malformed requests; 414 and 431 for the size limits; 501 where the request
    /// is well-formed but asks for something veil does not implement (an absolute URI other
    /// than `http`, a transfer coding other than `chunked`). Origin-form and asterisk-form
    /// targets get 400: they are not addressed to a proxy.
    pub const fn status(&self) -> StatusCode {
        match self {
            Self::RequestLineTooLong => StatusCode::URI_TOO_LONG,
            Self::HeadTooLarge | Self::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::Target(e) if e.is_unsupported() => StatusCode::NOT_IMPLEMENTED,
            Self::Framing(e) if e.is_unsupported() => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn from_httparse(error: httparse::Error) -> Self {
        match error {
            httparse::Error::TooManyHeaders => Self::TooManyHeaders,
            httparse::Error::Version => Self::Syntax(SyntaxError::Version),
            httparse::Error::HeaderName => Self::Syntax(SyntaxError::HeaderName),
            httparse::Error::HeaderValue => Self::Syntax(SyntaxError::HeaderValue),
            httparse::Error::NewLine => Self::Syntax(SyntaxError::LineEnding),
            httparse::Error::Token | httparse::Error::Status => {
                Self::Syntax(SyntaxError::RequestLine)
            }
        }
    }
}

impl From<TargetError> for RequestError {
    fn from(e: TargetError) -> Self {
        Self::Target(e)
    }
}

impl From<FramingError> for RequestError {
    fn from(e: FramingError) -> Self {
        Self::Framing(e)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestLineTooLong => f.write_str("request-line too long"),
            Self::HeadTooLarge => f.write_str("request head too large"),
            Self::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            Self::Syntax(e) => e.fmt(f),
            Self::Target(e) => e.fmt(f),
            Self::Framing(e) => e.fmt(f),
            Self::MissingHost => f.write_str("HTTP/1.1 request without Host"),
            Self::DuplicateHost => f.write_str("more than one Host field"),
            Self::InvalidHost => f.write_str("invalid Host field value"),
            Self::DuplicateProxyAuthorization => {
                f.write_str("more than one Proxy-Authorization field")
            }
            Self::InvalidProxyAuthorization => f.write_str("malformed Proxy-Authorization"),
            Self::ConnectWithBody => f.write_str("CONNECT request with a body"),
        }
    }
}

impl core::error::Error for RequestError {}

/// Decodes one request head from a buffer the caller keeps filling.
///
/// Call [`decode`](Self::decode) with the whole buffer received so far, each time more
/// arrives. It returns `Ok(None)` until the head is complete, then the classified request;
/// the bytes after [`RequestHead::head_len`] are the body or tunnel data. After it returns
/// a request or an error the decoder starts afresh for the next request.
///
/// The decoder remembers how far it has looked and parses only when a new line break
/// arrives, and then only up to the last one: feeding a head one byte at a time costs one
/// parse per line rather than one per byte, and the outcome is the same however the bytes
/// were split. It expects the buffer to only grow between calls; a shorter buffer restarts
/// it, and [`reset`](Self::reset) does so explicitly.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    /// Bytes of the buffer already looked at.
    scanned: usize,
    /// Whether a byte other than CR or LF has been seen (empty lines before the
    /// request-line are skipped, RFC 9112 §2.2).
    started: bool,
    /// Whether an LF has been seen after the start, i.e. the request-line is whole.
    request_line_ended: bool,
    /// Bytes up to and including the last CR or LF after the start: what gets parsed.
    lines_end: usize,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub const fn new(limits: Limits) -> Self {
        Self {
            limits,
            scanned: 0,
            started: false,
            request_line_ended: false,
            lines_end: 0,
        }
    }

    /// Forgets any partial head.
    pub const fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Looks for a complete request head at the start of `buf`.
    pub fn decode<'b>(&mut self, buf: &'b [u8]) -> Result<Option<ProxyRequest<'b>>, RequestError> {
        let outcome = self.decode_head(buf);
        if !matches!(outcome, Ok(None)) {
            self.reset();
        }
        outcome
    }

    fn decode_head<'b>(&mut self, buf: &'b [u8]) -> Result<Option<ProxyRequest<'b>>, RequestError> {
        if buf.len() < self.scanned {
            self.reset();
        }
        let window = buf.get(..self.limits.max_head_len).unwrap_or(buf);
        if self.saw_new_line_break(window) {
            let lines = window.get(..self.lines_end).unwrap_or(window);
            if let Some(head) = parse_head(lines)? {
                return classify(head).map(Some);
            }
        }
        if window.len() < self.limits.max_head_len {
            Ok(None)
        } else if self.request_line_ended {
            Err(RequestError::HeadTooLarge)
        } else {
            Err(RequestError::RequestLineTooLong)
        }
    }

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

impl Default for RequestDecoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Runs httparse over the window; `None` while the head is incomplete.
pub(super) fn parse_head(window: &[u8]) -> Result<Option<RequestHead<'_>>, RequestError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut storage);
    let len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(RequestError::from_httparse(e)),
    };
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(RequestError::Syntax(SyntaxError::RequestLine));
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(RequestError::Syntax(SyntaxError::Version)),
    };
    let mut fields = Vec::new();
    for header in parsed.headers.iter() {
        fields
            .push(HeaderField {
                name: header.name,
                value: header.value,
            })
            .map_err(|_| RequestError::TooManyHeaders)?;
    }
    Ok(Some(RequestHead {
        method,
        target,
        version,
        fields,
        len,
        proxy_authorization: None,
    }))
}

/// Turns a parsed head into a tunnel or forward request, or refuses it.
///
/// Checks run target first, then framing, then `Host`, then `Proxy-Authorization`; a head
/// with several defects reports the first.
fn classify(mut head: RequestHead<'_>) -> Result<ProxyRequest<'_>, RequestError> {
    if head.method == "CONNECT" {
        let target = parse_authority_form(head.target)?;
        let framing = body_framing(&head.fields, head.version)?;
        if !matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0)) {
            return Err(RequestError::ConnectWithBody);
        }
        check_host_field(&head)?;
        head.proxy_authorization = proxy_authorization(&head)?;
        return Ok(ProxyRequest::Connect(ConnectRequest { head, target }));
    }
    let absolute = match head.target {
        "*" => return Err(TargetError::AsteriskForm.into()),
        target if target.starts_with('/') => return Err(TargetError::OriginForm.into()),
        target => parse_absolute_form(target)?,
    };
    let framing = body_framing(&head.fields, head.version)?;
    check_host_field(&head)?;
    head.proxy_authorization = proxy_authorization(&head)?;
    Ok(ProxyRequest::Forward(ForwardRequest {
        head,
        target: absolute.authority,
        path_and_query: absolute.path_and_query,
        framing,
    }))
}

/// The only field named `name`; `Err(())` when there are several.
fn single_field<'h, 'b>(
    head: &'h RequestHead<'b>,
    name: &str,
) -> Result<Option<&'h HeaderField<'b>>, ()> {
    let mut named = head.fields.iter().filter(|f| f.is(name));
    match (named.next(), named.next()) {
        (first, None) => Ok(first),
        (_, Some(_)) => Err(()),
    }
}

//# RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
//# HTTP/1.1 request message that lacks a Host header field and to any request message that
//# contains more than one Host header field line or a Host header field with an invalid
//# field value."
fn check_host_field(head: &RequestHead<'_>) -> Result<(), RequestError> {
    match single_field(head, "host").map_err(|()| RequestError::DuplicateHost)? {
        Some(host) => validate_host_field(host.value).map_err(|_| RequestError::InvalidHost),
        None if head.version == Version::Http11 => Err(RequestError::MissingHost),
        None => Ok(()),
    }
}

fn proxy_authorization<'b>(
    head: &RequestHead<'b>,
) -> Result<Option<Credentials<'b>>, RequestError> {
    let field = single_field(head, "proxy-authorization")
        .map_err(|()| RequestError::DuplicateProxyAuthorization)?;
    field
        .map(|f| Credentials::parse(f.value).ok_or(RequestError::InvalidProxyAuthorization))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(RequestError::RequestLineTooLong.status().as_u16(), 414);
        assert_eq!(RequestError::HeadTooLarge.status().as_u16(), 431);
        assert_eq!(RequestError::TooManyHeaders.status().as_u16(), 431);
        assert_eq!(
            RequestError::Target(TargetError::UnsupportedScheme)
                .status()
                .as_u16(),
            501
        );
        assert_eq!(
            RequestError::Framing(FramingError::UnsupportedTransferCoding)
                .status()
                .as_u16(),
            501
        );
        assert_eq!(
            RequestError::Target(TargetError::OriginForm)
                .status()
                .as_u16(),
            400
        );
        assert_eq!(
            RequestError::Framing(FramingError::ChunkedNotFinal)
                .status()
                .as_u16(),
            400
        );
        assert_eq!(RequestError::ConnectWithBody.status().as_u16(), 400);
    }

    #[test]
    fn a_shorter_buffer_restarts_the_scan() {
        let mut decoder = RequestDecoder::default();
        assert_eq!(
            decoder.decode(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n"),
            Ok(None)
        );
        let request = decoder
            .decode(b"CONNECT a:1 HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(request, ProxyRequest::Connect(_)));
    }

    #[test]
    fn header_debug_redacts_credentials() {
        let field = HeaderField {
            name: "Proxy-Authorization",
            value: b"Basic c2VjcmV0",
        };
        assert_eq!(
            std::format!("{field:?}"),
            r#"HeaderField { name: "Proxy-Authorization", value: "<redacted>" }"#
        );
        let field = HeaderField {
            name: "X",
            value: b"\xff",
        };
        assert_eq!(
            std::format!("{field:?}"),
            r#"HeaderField { name: "X", value: [255] }"#
        );
    }
}
