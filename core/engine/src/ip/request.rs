//! CONNECT-IP request heads (RFC 9484 §4.1): checking requests on the edge, building their
//! `:path` on the client. Pure functions over header lists, like
//! [`udp::request`](crate::udp::request), whose shape and authentication rules they share.

use std::net::{IpAddr, Ipv4Addr};

use veil_proto::masque::ip::{Scope, Target, Template};

use crate::config::Token;
use crate::connect::{self, Accepted, ErrorResponse, RequestFields};
use crate::types::{Host, Name, TunnelKind, TunnelTarget};

/// The `:protocol` of a CONNECT-IP request, its HTTP Upgrade Token.
//# RFC 9484 §4.4: "The :protocol pseudo-header field SHALL be "connect-ip"."
pub(crate) const PROTOCOL: &str = "connect-ip";

/// Checks the rest of an Extended CONNECT whose `:protocol` is `connect-ip`: shape, then
/// credentials, then the scope read from `:path`. Egress policy judges each packet, not
/// the request: a scope names what the client may reach, not one destination.
//# RFC 9484 §4.4: "The :method pseudo-header field SHALL be "CONNECT". [...] The
//# :authority pseudo-header field SHALL contain the authority of the IP proxy. The :path
//# and :scheme pseudo-header fields SHALL NOT be empty. Their values SHALL contain the
//# scheme and path from the URI Template after the URI Template expansion process has
//# been completed; see Section 4.6."
pub(crate) fn check(
    fields: &RequestFields<'_>,
    tokens: &[Token],
    template: &Template<'_>,
) -> Result<Accepted, ErrorResponse> {
    if non_empty(fields.scheme) != Some(&b"https"[..]) {
        return Err(ErrorResponse::BAD_REQUEST);
    }
    let path = non_empty(fields.path).ok_or(ErrorResponse::BAD_REQUEST)?;
    non_empty(fields.authority).ok_or(ErrorResponse::BAD_REQUEST)?;
    let token_index =
        connect::authenticate(fields.authorization, fields.authorization_count, tokens)?;
    //# RFC 9297 §3.2: "The Capsule Protocol MUST NOT be used with messages that contain
    //# Content-Length, Content-Type, or Transfer-Encoding header fields. [...] A receiver
    //# that observes a violation of these requirements MUST treat the HTTP message as
    //# malformed."
    if fields.content_fields {
        return Err(ErrorResponse::BAD_REQUEST);
    }
    let scope = template
        .parse(path)
        .map_err(|_| ErrorResponse::BAD_REQUEST)?;
    // A scope by name: the host resolves it before accepting the tunnel
    // (`Endpoint::ip_scope_resolved`); the target is the name, for hooks and rules.
    Ok(Accepted {
        target: target_of(&scope),
        token_index,
        kind: TunnelKind::Ip,
        ip_scope: Some(Box::new(scope)),
    })
}

/// What hooks, rules and logs see as an IP tunnel's target: its scope's prefix address
/// (or name), port 0; `0.0.0.0:0` for any host.
pub(crate) fn target_of(scope: &Scope) -> TunnelTarget {
    match &scope.target {
        Target::Any => TunnelTarget::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        Target::Prefix(prefix) => TunnelTarget::new(prefix.addr(), 0),
        Target::Name(name) => match Name::new(name.as_str()) {
            Ok(name) => TunnelTarget::new(Host::Name(name), 0),
            Err(_) => TunnelTarget::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        },
    }
}

/// The `:path` of a request for `scope` under `template`.
pub(crate) fn expand_path(template: &Template<'_>, scope: &Scope) -> Option<String> {
    let mut path = vec![0; template.expanded_len(scope).ok()?];
    let len = template.expand(scope, &mut path).ok()?;
    path.truncate(len);
    String::from_utf8(path).ok()
}

/// A field's value, unless absent or empty.
fn non_empty(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| !v.is_empty())
}
