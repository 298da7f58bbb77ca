//! Responses veil generates itself: tunnel established, authentication required, errors.

use core::fmt;

use crate::error::BufferTooSmall;

use super::proxy_status::ProxyStatus;
use super::syntax::{Sink, encode_measured, is_tchar, measure, put_decimal, put_field};
use super::text::{QuotedText, TextError};

/// An HTTP status code, 100–599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 200 OK.
    pub const OK: Self = Self(200);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Self = Self(400);
    /// 403 Forbidden.
    pub const FORBIDDEN: Self = Self(403);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 407 Proxy Authentication Required.
    pub const PROXY_AUTHENTICATION_REQUIRED: Self = Self(407);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Self = Self(408);
    /// 414 URI Too Long.
    pub const URI_TOO_LONG: Self = Self(414);
    /// 429 Too Many Requests.
    pub const TOO_MANY_REQUESTS: Self = Self(429);
    /// 431 Request Header Fields Too Large.
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Self = Self(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// 502 Bad Gateway.
    pub const BAD_GATEWAY: Self = Self(502);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    /// 504 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: Self = Self(504);
    /// 505 HTTP Version Not Supported.
    pub const HTTP_VERSION_NOT_SUPPORTED: Self = Self(505);

    /// `code` if it is in 100–599.
    pub const fn new(code: u16) -> Option<Self> {
        if code >= 100 && code <= 599 {
            Some(Self(code))
        } else {
            None
        }
    }

    /// The status a local proxy answers with when the proxy it forwards to refused a
    /// tunnel with `upstream`: an error status is passed on, but 401 and 407 (the upstream
    /// did not take the local proxy's credentials: nothing its client could fix by
    /// authenticating) and anything that is not an error become 502.
    pub const fn relayed_refusal(upstream: u16) -> Self {
        match upstream {
            401 | 407 => Self::BAD_GATEWAY,
            400..=599 => Self(upstream),
            _ => Self::BAD_GATEWAY,
        }
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The standard reason phrase, or `""` for codes veil does not name (an empty
    /// reason-phrase is valid).
    pub const fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            204 => "No Content",
            304 => "Not Modified",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            411 => "Length Required",
            413 => "Content Too Large",
            414 => "URI Too Long",
            421 => "Misdirected Request",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// Whether a response with this status carries content (so a `Content-Length: 0` is
    /// due): not for 1xx, 204 and 304.
    const fn has_content(self) -> bool {
        self.0 >= 200 && self.0 != 204 && self.0 != 304
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge<'a> {
    /// `Basic realm="…"` (RFC 7617).
    Basic {
        /// The protection space shown to the user.
        realm: QuotedText<'a>,
    },
    /// `Bearer`, or `Bearer realm="…"` (RFC 6750 §3).
    Bearer {
        /// The protection space, if any.
        realm: Option<QuotedText<'a>>,
    },
}

impl Challenge<'_> {
    fn emit<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        sink.put(b"Proxy-Authenticate: ")?;
        let (scheme, realm) = match self {
            Self::Basic { realm } => ("Basic", Some(realm)),
            Self::Bearer { realm } => ("Bearer", realm.as_ref()),
        };
        sink.put(scheme.as_bytes())?;
        if let Some(realm) = realm {
            sink.put(b" realm=")?;
            realm.emit(sink)?;
        }
        sink.put(b"\r\n")
    }
}

/// An extra header field for a generated response, checked once when made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseField<'a> {
    name: &'a str,
    value: &'a str,
}

impl<'a> ResponseField<'a> {
    /// Fields [`Response`] writes itself; passing them here could contradict its framing.
    const RESERVED: [&'static str; 5] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "proxy-status",
        "proxy-authenticate",
    ];

    /// Checks that `name` is a token other than the reserved ones, and that `value` is
    /// visible ASCII with inner spaces or tabs only.
    //# RFC 9110 §5.5: field-value = *field-content
    //# field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
    pub fn new(name: &'a str, value: &'a str) -> Result<Self, TextError> {
        if name.is_empty() {
            return Err(TextError::Empty);
        }
        if let Some(index) = name.bytes().position(|b| !is_tchar(b)) {
            return Err(TextError::InvalidByte { index });
        }
        if Self::RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            return Err(TextError::ReservedFieldName);
        }
        let bytes = value.as_bytes();
        let edge = |b: &u8| matches!(b, b' ' | b'\t');
        let bad = bytes
            .iter()
            .position(|b| !matches!(b, b'\t' | 0x20..=0x7e))
            .or_else(|| bytes.first().filter(|b| edge(b)).map(|_| 0))
            .or_else(|| bytes.last().filter(|b| edge(b)).map(|_| bytes.len() - 1));
        match bad {
            Some(index) => Err(TextError::InvalidByte { index }),
            None => Ok(Self { name, value }),
        }
    }
}

/// A response head veil generates, written into a caller buffer.
///
/// ```
/// use veil_proto::http1::{ProxyErrorType, ProxyName, ProxyStatus, Response, StatusCode};
///
/// const VEIL: ProxyName<'static> = match ProxyName::new("veil") {
///     Ok(name) => name,
///     Err(_) => panic!(),
/// };
/// let response = Response::new(StatusCode::BAD_GATEWAY)
///     .with_proxy_status(ProxyStatus::new(VEIL).error(ProxyErrorType::ConnectionRefused))
///     .with_connection_close();
/// let mut out = [0; 128];
/// let len = response.encode(&mut out).unwrap();
/// assert_eq!(
///     &out[..len],
///     b"HTTP/1.1 502 Bad Gateway\r\n\
///       Proxy-Status: veil;error=connection_refused\r\n\
///       Content-Length: 0\r\n\
///       Connection: close\r\n\r\n"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    status: StatusCode,
    reason: &'static str,
    content_length: bool,
    close: bool,
    proxy_status: Option<ProxyStatus<'a>>,
    challenges: &'a [Challenge<'a>],
    fields: &'a [ResponseField<'a>],
}

impl<'a> Response<'a> {
    /// A response with `status` and no content: `Content-Length: 0` is written unless the
    /// status forbids content (1xx, 204, 304).
    ///
    /// For a successful CONNECT use [`connection_established`](Self::connection_established)
    /// instead.
    pub const fn new(status: StatusCode) -> Self {
        Self {
            status,
            reason: status.reason(),
            content_length: status.has_content(),
            close: false,
            proxy_status: None,
            challenges: &[],
            fields: &[],
        }
    }

    /// `200 Connection Established`, for a CONNECT whose tunnel is open. It carries no
    /// framing field: the bytes after it are the tunnel.
    //# RFC 9110 §9.3.6: "A server MUST NOT send any Transfer-Encoding or Content-Length
    //# header fields in a 2xx (Successful) response to CONNECT."
    pub const fn connection_established() -> Self {
        Self {
            reason: "Connection Established",
            content_length: false,
            ..Self::new(StatusCode::OK)
        }
    }

    /// `407 Proxy Authentication Required` with one `Proxy-Authenticate` line per
    /// challenge; pass at least one.
    pub const fn proxy_authentication_required(challenges: &'a [Challenge<'a>]) -> Self {
        Self::new(StatusCode::PROXY_AUTHENTICATION_REQUIRED).with_challenges(challenges)
    }

    /// Adds a `Proxy-Status` field.
    #[must_use]
    pub const fn with_proxy_status(mut self, proxy_status: ProxyStatus<'a>) -> Self {
        self.proxy_status = Some(proxy_status);
        self
    }

    /// Sets the `Proxy-Authenticate` challenges.
    #[must_use]
    pub const fn with_challenges(mut self, challenges: &'a [Challenge<'a>]) -> Self {
        self.challenges = challenges;
        self
    }

    /// Adds extra header fields, written after `Proxy-Status`.
    #[must_use]
    pub const fn with_fields(mut self, fields: &'a [ResponseField<'a>]) -> Self {
        self.fields = fields;
        self
    }

    /// Adds `Connection: close`; the caller closes after writing the response (always
    /// after a [`RequestError`](super::RequestError)).
    #[must_use]
    pub const fn with_connection_close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The status code.
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        measure(|s| self.emit(s))
    }

    /// Writes the response head into `out`, returning its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
        encode_measured(self.encoded_len(), out, |w| self.emit(w))
    }

    fn emit<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        sink.put(b"HTTP/1.1 ")?;
        put_decimal(sink, u64::from(self.status.as_u16()))?;
        sink.put(b" ")?;
        sink.put(self.reason.as_bytes())?;
        sink.put(b"\r\n")?;
        for challenge in self.challenges {
            challenge.emit(sink)?;
        }
        if let Some(proxy_status) = &self.proxy_status {
            sink.put(b"Proxy-Status: ")?;
            proxy_status.emit(sink)?;
            sink.put(b"\r\n")?;
        }
        for field in self.fields {
            put_field(sink, field.name.as_bytes(), field.value.as_bytes())?;
        }
        if self.content_length {
            put_field(sink, b"Content-Length", b"0")?;
        }
        if self.close {
            put_field(sink, b"Connection", b"close")?;
        }
        sink.put(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_refusals_keep_errors_but_credentials_and_non_errors() {
        for (upstream, local) in [(403, 403), (502, 502), (504, 504), (599, 599), (500, 500)] {
            assert_eq!(StatusCode::relayed_refusal(upstream).as_u16(), local);
        }
        for upstream in [401, 407, 200, 302, 99, 600, 0] {
            assert_eq!(
                StatusCode::relayed_refusal(upstream),
                StatusCode::BAD_GATEWAY
            );
        }
    }

    #[test]
    fn status_codes_are_three_digits() {
        assert_eq!(StatusCode::new(99), None);
        assert_eq!(StatusCode::new(600), None);
        assert_eq!(StatusCode::new(100).map(StatusCode::as_u16), Some(100));
        assert_eq!(StatusCode::new(599).map(StatusCode::reason), Some(""));
        assert_eq!(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED.reason(),
            "Proxy Authentication Required"
        );
    }

    #[test]
    fn response_fields_are_validated() {
        assert!(ResponseField::new("Retry-After", "120").is_ok());
        assert!(ResponseField::new("X-A", "").is_ok());
        assert!(ResponseField::new("X-A", "a \tb").is_ok());
        assert_eq!(ResponseField::new("", "x"), Err(TextError::Empty));
        assert_eq!(
            ResponseField::new("X A", "x"),
            Err(TextError::InvalidByte { index: 1 })
        );
        assert_eq!(
            ResponseField::new("content-LENGTH", "5"),
            Err(TextError::ReservedFieldName)
        );
        assert_eq!(
            ResponseField::new("Connection", "keep-alive"),
            Err(TextError::ReservedFieldName)
        );
        assert_eq!(
            ResponseField::new("X", "a\r\nEvil: 1"),
            Err(TextError::InvalidByte { index: 1 })
        );
        assert_eq!(
            ResponseField::new("X", " a"),
            Err(TextError::InvalidByte { index: 0 })
        );
        assert_eq!(
            ResponseField::new("X", "a\t"),
            Err(TextError::InvalidByte { index: 1 })
        );
        assert_eq!(
            ResponseField::new("X", "caf\u{e9}"),
            Err(TextError::InvalidByte { index: 3 })
        );
    }

    #[test]
    fn no_content_length_where_content_is_forbidden() {
        for code in [100, 204, 304] {
            let response = Response::new(StatusCode::new(code).unwrap());
            let mut out = [0; 64];
            let len = response.encode(&mut out).unwrap();
            let text = core::str::from_utf8(&out[..len]).unwrap();
            assert!(!text.contains("Content-Length"), "{text}");
        }
    }
}
