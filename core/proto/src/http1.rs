//! HTTP/1.1 proxy requests and responses (RFC 9110, RFC 9112, RFC 9209), for veil's local
//! HTTP proxy listener.
//!
//! # Requests
//!
//! A [`RequestDecoder`] takes the bytes received so far and, once the head is complete,
//! returns a [`ProxyRequest`]:
//!
//! - [`ProxyRequest::Connect`]: `CONNECT host:port`, a TCP tunnel to open. Answer with
//!   [`Response::connection_established`] and relay bytes both ways; any bytes after
//!   [`RequestHead::head_len`] already belong to the tunnel.
//! - [`ProxyRequest::Forward`]: `GET http://host/path`, a plain-HTTP request to forward.
//!   Write the head for the origin with [`ForwardRequest::write_upstream_head`], then relay
//!   the body as [`ForwardRequest::framing`] delimits it.
//!
//! Everything else is a [`RequestError`] whose [`status`](RequestError::status) is the
//! answer; close the connection after sending it. The decoder is strict where leniency
//! enables request smuggling: both `Content-Length` and `Transfer-Encoding`, differing
//! `Content-Length`s, a non-decimal `Content-Length`, a final coding other than `chunked`,
//! `Transfer-Encoding` in HTTP/1.0, whitespace before a colon and obs-fold are all refused.
//! Parsing is httparse's, without allocation: at most [`MAX_HEADERS`] fields and
//! [`Limits::max_head_len`] bytes.
//!
//! ```
//! use veil_proto::http1::{BodyFraming, ProxyRequest, RequestDecoder, UpstreamOptions};
//!
//! let mut decoder = RequestDecoder::default();
//! let received = b"POST http://example.com/submit?x=1 HTTP/1.1\r\n\
//!                  Host: example.com\r\n\
//!                  Proxy-Connection: keep-alive\r\n\
//!                  Content-Length: 5\r\n\r\nhello";
//! // Fed in two pieces, as a socket might deliver it.
//! assert_eq!(decoder.decode(&received[..20]), Ok(None));
//! let Some(ProxyRequest::Forward(request)) = decoder.decode(received)? else { panic!() };
//! assert_eq!(request.target().port(), 80);
//! assert_eq!(request.framing(), BodyFraming::ContentLength(5));
//! assert_eq!(&received[request.head().head_len()..], b"hello");
//!
//! let mut head = [0; 256];
//! let len = request.write_upstream_head(&UpstreamOptions::default(), &mut head)?;
//! assert_eq!(
//!     &head[..len],
//!     b"POST /submit?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n"
//! );
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! # Request streams inside a tunnel
//!
//! A [`RequestStream`] follows the plain-HTTP requests a client sends to an origin through
//! a tunnel (origin-form, pipelined or one after another): each [`step`](RequestStream::step)
//! says whether the input starts with a request head ([`Step::Head`], an [`OriginRequest`]),
//! bytes to pass through as they are ([`Step::Body`]: a `Content-Length` body, or a chunked
//! body with its chunk-size lines, extensions and trailers), or needs more
//! ([`Step::NeedMore`]); [`consume`](RequestStream::consume) marks what was handled, and
//! [`at_boundary`](RequestStream::at_boundary) says whether a FIN would be clean. It keeps
//! the decoder's framing refusals, refuses `CONNECT` and a bare LF in the chunked coding,
//! and neither copies nor allocates. [`OriginRequest::write_head`] re-writes a head with
//! [`HeadEdits`] (fields removed, fields added), which can never touch the framing fields or
//! `Host`, so the body still ends where the stream says.
//!
//! # Authentication
//!
//! [`RequestHead::proxy_authorization`] exposes the scheme and raw token of a single
//! `Proxy-Authorization` field (`Debug` hides the token). [`Credentials::bearer_matches`],
//! [`Credentials::basic_matches`] and [`constant_time_eq`] compare without timing leaks;
//! [`Credentials::decode_basic`] decodes into a caller buffer. Answer missing or wrong
//! credentials with [`Response::proxy_authentication_required`].
//!
//! # Responses
//!
//! [`Response`] writes the heads veil generates: status line, `Proxy-Authenticate`
//! challenges, a [`ProxyStatus`] naming the proxy and the [`ProxyErrorType`], extra
//! fields, `Content-Length: 0` and, on request, `Connection: close`.

mod auth;
mod framing;
mod proxy_status;
mod request;
mod response;
mod stream;
mod syntax;
mod target;
mod text;
mod upstream;

pub use auth::{BasicCredentials, BasicError, Credentials, constant_time_eq};
pub use framing::{BodyFraming, FramingError};
pub use proxy_status::{ProxyErrorType, ProxyStatus};
pub use request::{
    ConnectRequest, ForwardRequest, HeaderField, Limits, MAX_HEADERS, ProxyRequest, RequestDecoder,
    RequestError, RequestHead, SyntaxError, Version,
};
pub use response::{Challenge, Response, ResponseField, StatusCode};
pub use stream::{
    EditError, HeadEdits, MAX_CHUNK_LINE_LEN, OriginRequest, RequestStream, Step, StreamError,
    TargetForm,
};
pub use target::{Authority, Host, TargetError};
pub use text::{ProxyName, QuotedText, TextError};
pub use upstream::{OriginForm, UpstreamOptions};
