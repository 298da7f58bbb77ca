//! Hooks: the points where an embedder's [`Policy`] decides, in the engine, for every host
//! alike (Oxy's extensibility model, sans-IO: a hook is a plain call that returns a
//! verdict; it does no I/O and must not block).
//!
//! - **ingress**: a QUIC connection has completed its handshake, before any request on it
//!   is read: accept it, or close it with an error code.
//! - **tunnel**: a CONNECT or CONNECT-UDP request passed the engine's own checks
//!   (authentication, the request's shape, egress policy for IP literals): hand it to the
//!   host, refuse it with a [`Refusal`], or send it to another target (which the engine
//!   checks against egress policy again: a policy cannot open what the edge forbids).
//!
//! The defaults ([`DefaultPolicy`]) are today's behaviour: every connection accepted,
//! every request handed to the host. An embedder replaces one hook and keeps the others.

use std::net::SocketAddr;

use crate::types::{ClientIdentity, Refusal, TunnelKind, TunnelTarget};

/// What the ingress hook sees of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IngressQuery<'a> {
    /// The client's address as the edge sees it.
    pub peer: SocketAddr,
    /// The TLS server name the client asked for (SNI), when it sent one.
    pub server_name: Option<&'a str>,
    /// The application protocol negotiated (ALPN), `h3`.
    pub alpn: &'a [u8],
}

/// The ingress hook's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngressVerdict {
    /// Serve the connection.
    Accept,
    /// Close it at once with this application error code (HTTP/3: `0x0101`,
    /// `H3_GENERAL_PROTOCOL_ERROR`, or `0x0100`, `H3_NO_ERROR`).
    Close {
        /// The `CONNECTION_CLOSE` frame's error code.
        error_code: u64,
    },
}

/// What the tunnel hook sees of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelQuery<'a> {
    /// What the tunnel would carry.
    pub kind: TunnelKind,
    /// Where the client wants to go.
    pub target: &'a TunnelTarget,
    /// Who asks.
    pub client: ClientIdentity,
    /// The name of the token the client presented (never its secret).
    pub token_name: Option<&'a str>,
}

/// The tunnel hook's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// A redirect holds its target's DNS name inline (up to 253 bytes): one verdict per request,
// so the size does not matter, and no allocation is needed.
#[allow(clippy::large_enum_variant)]
pub enum TunnelVerdict {
    /// Hand the request to the host as it is.
    Pass,
    /// Refuse it: the client gets the refusal's status and Proxy-Status.
    Refuse(Refusal),
    /// Hand it to the host with this target instead (checked against egress policy again).
    Redirect(TunnelTarget),
}

/// The hooks an edge consults. Every method has a default: implement the ones you need.
pub trait Policy: Send {
    /// A connection completed its handshake.
    fn ingress(&mut self, query: &IngressQuery<'_>) -> IngressVerdict {
        let _ = query;
        IngressVerdict::Accept
    }

    /// A request passed the engine's own checks.
    fn tunnel(&mut self, query: &TunnelQuery<'_>) -> TunnelVerdict {
        let _ = query;
        TunnelVerdict::Pass
    }
}

/// Today's behaviour: every connection accepted, every request handed to the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {}
