//! Rewriting a forward request's head for the origin server.
//!
//! The upstream head is rebuilt, never copied: origin-form request-line with veil's own
//! HTTP version, `Host` from the request-target, the client's end-to-end fields in their
//! order, then one normalized framing field.

use core::fmt;

use crate::error::BufferTooSmall;

use super::framing::BodyFraming;
use super::request::{ForwardRequest, HeaderField};
use super::syntax::{Sink, encode_measured, measure, put_decimal, put_field};
use super::text::ProxyName;

/// Fields that describe the client's connection or its credentials for veil, and never go
/// upstream. `Host` and the framing fields are dropped too, and written anew.
//# RFC 9110 §7.6.1: "Intermediaries SHOULD remove or replace fields that are known to
//# require removal before forwarding, whether or not they appear as a connection-option,
//# after applying those fields' semantics." (Proxy-Connection, Keep-Alive, TE,
//# Transfer-Encoding, Upgrade)
const NOT_FORWARDED: [&str; 11] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "host",
    "content-length",
];

/// Choices for the upstream head that belong to the engine, not to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamOptions<'a> {
    /// Appends `Via: <client version> <name>` (RFC 9110 §7.6.3). A proxy "MUST send an
    /// appropriate Via header field"; veil leaves it to configuration because a pseudonym
    /// still tells the origin a proxy is in the path.
    pub via: Option<ProxyName<'a>>,
    /// Appends `Connection: close`, for a forwarder that uses one upstream connection per
    /// request.
    pub connection_close: bool,
}

/// The request-target of the upstream request-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginForm<'b> {
    /// `absolute-path [ "?" query ]`; the path part may be empty and is then written `/`.
    //# RFC 9112 §3.2.1: "If the target URI's path component is empty, the client MUST send
    //# "/" as the path within the origin-form of request-target."
    Path(&'b str),
    /// `*`, for `OPTIONS http://host` with neither path nor query.
    //# RFC 9112 §3.2.4: "If a proxy receives an OPTIONS request with an absolute-form of
    //# request-target in which the URI has an empty path and no query component, then the
    //# last proxy on the request chain MUST send a request-target of "*" when it forwards
    //# the request to the indicated origin server."
    Asterisk,
}

impl OriginForm<'_> {
    fn emit<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        match self {
            Self::Asterisk => sink.put(b"*"),
            Self::Path(path) => {
                if !path.starts_with('/') {
                    sink.put(b"/")?;
                }
                sink.put(path.as_bytes())
            }
        }
    }
}

impl fmt::Display for OriginForm<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Asterisk => f.write_str("*"),
            Self::Path(path) if path.starts_with('/') => f.write_str(path),
            Self::Path(path) => write!(f, "/{path}"),
        }
    }
}

impl<'b> ForwardRequest<'b> {
    /// The request-target to send upstream.
    pub fn origin_form(&self) -> OriginForm<'b> {
        if self.path_and_query.is_empty() && self.head.method() == "OPTIONS" {
            OriginForm::Asterisk
        } else {
            OriginForm::Path(self.path_and_query)
        }
    }

    /// Whether a client field goes upstream: not hop-by-hop, not rewritten, and not named
    /// by a `Connection` option.
    //# RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header field
    //# before a message is forwarded and, for each connection-option in this field, remove
    //# any header or trailer field(s) from the message with the same name as the
    //# connection-option, and then remove the Connection header field itself (or replace it
    //# with the intermediary's own control options for the forwarded message)."
    pub fn is_forwarded(&self, field: &HeaderField<'_>) -> bool {
        !NOT_FORWARDED.iter().any(|name| field.is(name))
            && !self.head.has_connection_option(field.name())
    }

    /// Bytes [`write_upstream_head`](Self::write_upstream_head) writes.
    pub fn upstream_head_len(&self, options: &UpstreamOptions<'_>) -> usize {
        measure(|s| self.emit_upstream_head(options, s))
    }

    /// Writes the head to send to the origin server into `out`, returning its length.
    ///
    /// ```text
    /// METHOD origin-form HTTP/1.1
    /// Host: <request-target authority>
    /// <client fields that are forwarded, in order>
    /// Content-Length: N | Transfer-Encoding: chunked     (per framing)
    /// Via: 1.x <name>                                   (if configured)
    /// Connection: close                                 (if configured)
    /// ```
    ///
    /// Then relay the body as [`framing`](Self::framing) delimits it; chunked bodies go as
    /// they are, trailers included.
    pub fn write_upstream_head(
        &self,
        options: &UpstreamOptions<'_>,
        out: &mut [u8],
    ) -> Result<usize, BufferTooSmall> {
        let len = self.upstream_head_len(options);
        encode_measured(len, out, |w| self.emit_upstream_head(options, w))
    }

    fn emit_upstream_head<S: Sink>(
        &self,
        options: &UpstreamOptions<'_>,
        sink: &mut S,
    ) -> Result<(), S::Error> {
        sink.put(self.head.method().as_bytes())?;
        sink.put(b" ")?;
        self.origin_form().emit(sink)?;
        //# RFC 9112 §2.3: "Intermediaries that process HTTP messages (i.e., all
        //# intermediaries other than those acting as tunnels) MUST send their own
        //# HTTP-version in forwarded messages"
        sink.put(b" HTTP/1.1\r\n")?;
        //# RFC 9112 §3.2.2: "A proxy that forwards such a request MUST generate a new Host
        //# field value based on the received request-target rather than forward the
        //# received Host field value."
        put_field(sink, b"Host", self.target.as_str().as_bytes())?;
        for field in self.head.fields().iter().filter(|f| self.is_forwarded(f)) {
            put_field(sink, field.name().as_bytes(), field.value())?;
        }
        match self.framing {
            BodyFraming::None => {}
            BodyFraming::ContentLength(length) => {
                sink.put(b"Content-Length: ")?;
                put_decimal(sink, length)?;
                sink.put(b"\r\n")?;
            }
            BodyFraming::Chunked => put_field(sink, b"Transfer-Encoding", b"chunked")?,
        }
        if let Some(name) = options.via {
            sink.put(b"Via: ")?;
            sink.put(self.head.version().number().as_bytes())?;
            sink.put(b" ")?;
            sink.put(name.as_str().as_bytes())?;
            sink.put(b"\r\n")?;
        }
        if options.connection_close {
            put_field(sink, b"Connection", b"close")?;
        }
        sink.put(b"\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_form_display_adds_the_slash() {
        assert_eq!(std::format!("{}", OriginForm::Path("")), "/");
        assert_eq!(std::format!("{}", OriginForm::Path("?q=1")), "/?q=1");
        assert_eq!(std::format!("{}", OriginForm::Path("/a?b")), "/a?b");
        assert_eq!(std::format!("{}", OriginForm::Asterisk), "*");
    }
}
