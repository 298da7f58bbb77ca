//! A request head inside the stream: parsed, its target form and framing checked.

use crate::http1::framing::{BodyFraming, body_framing};
use crate::http1::request::{HeaderField, RequestError, RequestHead, Version, parse_head};
use crate::http1::target::{Authority, TargetError, parse_absolute_form, validate_host_field};

use super::StreamError;

/// The form of a request-target a server accepts (RFC 9112 §3.2); authority-form, which
/// only CONNECT uses, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm<'b> {
    /// `absolute-path [ "?" query ]`, e.g. `/where?q=now`.
    //# RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ]
    Origin,
    /// `*`, in an `OPTIONS` request.
    //# RFC 9112 §3.2.4: "The asterisk-form of request-target is only used for a
    //# server-wide OPTIONS request (Section 9.3.7 of [HTTP])."
    Asterisk,
    /// `http://host[:port]/path?query`.
    //# RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests even though
    //# most HTTP/1.1 clients will only send the absolute-form to a proxy."
    Absolute {
        /// The authority of the URI, which names the origin instead of `Host`.
        authority: Authority<'b>,
        /// What follows the authority: empty, or starting with `/` or `?`.
        path_and_query: &'b str,
    },
}

/// A request head found at the start of a [`RequestStream`](super::RequestStream)'s input,
/// borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRequest<'b> {
    pub(super) head: RequestHead<'b>,
    form: TargetForm<'b>,
    framing: BodyFraming,
    host: Option<&'b str>,
}

impl<'b> OriginRequest<'b> {
    /// The method, as sent (methods are case-sensitive). Never `CONNECT`.
    pub const fn method(&self) -> &'b str {
        self.head.method()
    }

    /// The request-target, as sent.
    pub const fn target(&self) -> &'b str {
        self.head.target()
    }

    /// Which form the request-target has.
    pub const fn target_form(&self) -> TargetForm<'b> {
        self.form
    }

    /// The HTTP version.
    pub const fn version(&self) -> Version {
        self.head.version()
    }

    /// Every header field line, in order.
    pub fn fields(&self) -> &[HeaderField<'b>] {
        self.head.fields()
    }

    /// The value of the first field named `name` (ignoring ASCII case).
    pub fn field(&self, name: &str) -> Option<&'b [u8]> {
        self.head.field(name)
    }

    /// The value of the one `Host` field: always there in HTTP/1.1, perhaps not in
    /// HTTP/1.0. It is `uri-host [ ":" port ]`, checked. With an absolute-form target the
    /// target's authority names the origin instead (RFC 9112 §3.2.2).
    pub const fn host(&self) -> Option<&'b str> {
        self.host
    }

    /// Whether any `Connection` field lists `option` (ignoring ASCII case), e.g. `close`
    /// or `upgrade`.
    pub fn has_connection_option(&self, option: &str) -> bool {
        self.head.has_connection_option(option)
    }

    /// How the body is delimited; the stream passes exactly that many bytes as its body.
    pub const fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Bytes the head takes at the start of the input (empty lines before the request-line
    /// and the final empty line included).
    pub const fn len(&self) -> usize {
        self.head.head_len()
    }

    /// Always false: a head has at least a request-line.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

/// Parses a complete head at the start of `lines`; `None` while it is incomplete.
pub(super) fn parse(lines: &[u8]) -> Result<Option<OriginRequest<'_>>, StreamError> {
    let head = match parse_head(lines) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(RequestError::TooManyHeaders) => return Err(StreamError::TooManyHeaders),
        Err(RequestError::Syntax(e)) => return Err(StreamError::Syntax(e)),
        Err(_) => {
            return Err(StreamError::Syntax(
                crate::http1::request::SyntaxError::RequestLine,
            ));
        }
    };
    classify(head).map(Some)
}

/// Checks, in this order, the method, the target, the framing and `Host`; a head with
/// several defects reports the first.
fn classify(head: RequestHead<'_>) -> Result<OriginRequest<'_>, StreamError> {
    // A tunnel inside the tunnel would carry bytes this splitter cannot follow.
    if head.method() == "CONNECT" {
        return Err(StreamError::Connect);
    }
    let form = target_form(head.method(), head.target())?;
    let framing = body_framing(head.fields(), head.version())?;
    let host = host_field(&head)?;
    Ok(OriginRequest {
        head,
        form,
        framing,
        host,
    })
}

fn target_form<'b>(method: &str, target: &'b str) -> Result<TargetForm<'b>, StreamError> {
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(TargetForm::Asterisk)
        } else {
            Err(TargetError::Malformed.into())
        };
    }
    if target.starts_with('/') {
        if !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TargetError::InvalidCharacter.into());
        }
        if target.contains('#') {
            return Err(TargetError::Fragment.into());
        }
        return Ok(TargetForm::Origin);
    }
    let absolute = parse_absolute_form(target)?;
    Ok(TargetForm::Absolute {
        authority: absolute.authority,
        path_and_query: absolute.path_and_query,
    })
}

//# RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
//# HTTP/1.1 request message that lacks a Host header field and to any request message that
//# contains more than one Host header field line or a Host header field with an invalid
//# field value."
fn host_field<'b>(head: &RequestHead<'b>) -> Result<Option<&'b str>, StreamError> {
    let mut hosts = head.fields().iter().filter(|f| f.is("host"));
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Err(StreamError::DuplicateHost),
        (Some(host), None) => {
            validate_host_field(host.value()).map_err(|_| StreamError::InvalidHost)?;
            core::str::from_utf8(host.value())
                .map(Some)
                .map_err(|_| StreamError::InvalidHost)
        }
        (None, None) if head.version() == Version::Http11 => Err(StreamError::MissingHost),
        (None, None) => Ok(None),
    }
}
