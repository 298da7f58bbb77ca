//! Hooks: the points where an embedder's [`Policy`] decides, in the engine, for every host
//! alike (Oxy's extensibility model, sans-IO: a hook is a plain call that returns a
//! verdict; it does no I/O and must not block).
//!
//! - **ingress**: a QUIC connection has completed its handshake, before any request on it
//!   is read: accept it, or close it with an error code.
//! - **tunnel**: a CONNECT or CONNECT-UDP request passed the engine's own checks
//!   (authentication, the request's shape, egress policy for IP literals): hand it to the
//!   host, refuse it with a [`Refusal`], or send it to another target (which the engine
//!   checks against egress policy again: a policy cannot open what the edge forbids). The
//!   hook may also label the tunnel with [`Tags`], which the host's logs carry.
//! - **egress**: the host resolved the target: which of the addresses to dial, and from
//!   which local address, or refuse. The default is the edge's SSRF-safe egress policy:
//!   the first address it permits ([`EgressQuery::permitted`]).
//! - **`http_request`**: for a tunnel the tunnel hook passed with [`TunnelVerdict::Inspect`],
//!   every HTTP/1.1 request the client sends inside it (a plain-HTTP request the client's
//!   proxy forwards, or any HTTP/1.1 to an origin): allow it, deny it with a status (the
//!   client gets that response and the tunnel ends after the answers already due), or
//!   remove and add header fields before it goes on.
//! - **`ip_flow`**: inside a CONNECT-IP tunnel, the first packet of each new flow (UDP
//!   or TCP by addresses and ports, ICMP echo by addresses and Identifier) the client
//!   sends, once it passed the engine's own checks (assigned source, scope, egress policy
//!   and rules, hop limit): pass the flow, or refuse it (its packets are dropped, counted
//!   under `ip_dropped` cause `flow_refused`). The engine remembers the verdict, so the
//!   hook is asked once per flow, not once per packet.
//!
//! The ingress and tunnel hooks can also answer "ask the host" ([`IngressVerdict::Ask`],
//! [`TunnelVerdict::Ask`]): the engine then reports [`Event::IngressDecision`] or
//! [`Event::TunnelDecision`], waits, and goes on exactly as with an immediate verdict when
//! the host answers ([`Endpoint::decide_ingress`], [`Endpoint::decide_tunnel`]) — for a
//! verdict that needs a database or an RPC. An answer that does not come within
//! `EdgeConfig::request_timeout` closes the connection (ingress) or refuses the request
//! (504, tunnel).
//!
//! The defaults ([`DefaultPolicy`]) are today's behaviour: every connection accepted,
//! every request handed to the host, the first permitted address dialled, every IP flow
//! passed. An embedder
//! replaces one hook and keeps the others.
//!
//! [`Event::IngressDecision`]: crate::Event::IngressDecision
//! [`Event::TunnelDecision`]: crate::Event::TunnelDecision
//! [`Endpoint::decide_ingress`]: crate::Endpoint::decide_ingress
//! [`Endpoint::decide_tunnel`]: crate::Endpoint::decide_tunnel

use std::net::SocketAddr;

pub use veil_proto::ip::FlowProtocol;

use crate::types::{ClientIdentity, Refusal, TunnelId, TunnelKind, TunnelTarget};

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
    /// The identity of the client's certificate, when the edge asks for one
    /// (`EdgeConfig::client_ca`): its first URI or DNS name, else its common name.
    pub certificate_identity: Option<&'a str>,
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
    /// Ask the host: the engine reports `Event::IngressDecision` and reads no request on
    /// the connection until `Endpoint::decide_ingress` answers (with `Accept` or `Close`).
    Ask,
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
    /// The identity of the client's certificate (mutual TLS), if any.
    pub certificate_identity: Option<&'a str>,
    /// The server name the tunnel's first bytes ask for (TLS SNI, HTTP/1 Host), when the
    /// edge sniffed them (it does when a rule matches on `sni`).
    pub sni: Option<&'a str>,
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
    /// Ask the host: the engine reports `Event::TunnelDecision` and waits for
    /// `Endpoint::decide_tunnel` (with `Pass`, `Refuse` or `Redirect`).
    Ask,
    /// Hand it to the host as `Pass` does, and show every HTTP/1.1 request the client
    /// sends inside it to [`Policy::http_request`] before it goes on (the edge reads the
    /// stream as HTTP/1.1: what is not is refused with 400 and the tunnel ends).
    Inspect,
}

/// What the `http_request` hook sees of one HTTP/1.1 request inside an inspected tunnel.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpRequestQuery<'a> {
    /// The tunnel it travels in.
    pub tunnel: crate::types::TunnelId,
    /// Where the tunnel goes.
    pub target: &'a TunnelTarget,
    /// Who opened the tunnel.
    pub client: ClientIdentity,
    /// The name of the token the client presented.
    pub token_name: Option<&'a str>,
    /// The identity of the client's certificate (mutual TLS), if any.
    pub certificate_identity: Option<&'a str>,
    /// The request head: method, request-target, `Host`, fields.
    pub request: &'a veil_proto::http1::OriginRequest<'a>,
    /// The head as the client sent it, up to and including its empty line.
    pub head: &'a [u8],
}

/// The `http_request` hook's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpVerdict {
    /// On to the origin as it is.
    Allow,
    /// Not to the origin: the client gets a response with this status (and
    /// `Proxy-Status: veil; error=http_request_denied`) after the answers to its earlier
    /// requests, and the tunnel ends.
    Deny {
        /// The response's status (400–599; anything else is sent as 403).
        status: u16,
    },
    /// On to the origin with these fields removed (by name, case-insensitively) and these
    /// added. Framing fields and `Host` cannot be edited: an edit that tries is a deny
    /// (500), so that the body boundaries stay what the client sent.
    Edit {
        /// Field names to remove.
        remove: Vec<String>,
        /// Fields to add, in order.
        add: Vec<(String, String)>,
    },
}

/// Labels a tunnel hook puts on a tunnel (`tier:gold`, `blocklist=ads`): the host's logs
/// carry them (and, later, metrics and audit records). Bounded, and restricted to
/// characters that are safe in a log line or a metric label, so that a hook cannot make a
/// tunnel's bookkeeping grow or break a log format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    labels: Vec<Box<str>>,
}

/// Why a label was not added to [`Tags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagError {
    /// The tunnel has [`Tags::MAX`] labels already.
    TooMany,
    /// Empty, or longer than [`Tags::MAX_LEN`] bytes.
    BadLength,
    /// A character other than ASCII letters, digits and `_ - . : = /`.
    BadCharacter,
}

impl core::fmt::Display for TagError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooMany => "too many tags on one tunnel",
            Self::BadLength => "a tag must be 1 to 64 bytes long",
            Self::BadCharacter => "a tag may hold only ASCII letters, digits and _ - . : = /",
        })
    }
}

impl std::error::Error for TagError {}

impl Tags {
    /// The most labels one tunnel carries.
    pub const MAX: usize = 8;
    /// The longest label, in bytes.
    pub const MAX_LEN: usize = 64;

    /// No labels.
    pub const fn new() -> Self {
        Self { labels: Vec::new() }
    }

    /// Adds `label` (a label already present is not added twice).
    pub fn push(&mut self, label: &str) -> Result<(), TagError> {
        if label.is_empty() || label.len() > Self::MAX_LEN {
            return Err(TagError::BadLength);
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-.:=/".contains(&b);
        if !label.bytes().all(allowed) {
            return Err(TagError::BadCharacter);
        }
        if self.labels.iter().any(|have| &**have == label) {
            return Ok(());
        }
        if self.labels.len() == Self::MAX {
            return Err(TagError::TooMany);
        }
        self.labels.push(label.into());
        Ok(())
    }

    /// Adds `other`'s labels after these (valid already; those beyond [`Tags::MAX`] are
    /// dropped).
    pub(crate) fn merge(&mut self, other: Self) {
        for label in other.labels {
            if self.labels.len() < Self::MAX && !self.labels.contains(&label) {
                self.labels.push(label);
            }
        }
    }

    /// The labels, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(|label| &**label)
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl core::fmt::Display for Tags {
    /// The labels joined by commas, for a log field.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, label) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(label)?;
        }
        Ok(())
    }
}

/// What the egress hook sees: a request the host resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EgressQuery<'a> {
    /// The tunnel.
    pub tunnel: crate::types::TunnelId,
    /// What the tunnel carries.
    pub kind: TunnelKind,
    /// Where it goes (after any redirect).
    pub target: &'a TunnelTarget,
    /// Who asked.
    pub client: ClientIdentity,
    /// The name of the token the client presented.
    pub token_name: Option<&'a str>,
    /// The identity of the client's certificate (mutual TLS), if any.
    pub certificate_identity: Option<&'a str>,
    /// Every address the host resolved, in the resolver's order.
    pub candidates: &'a [SocketAddr],
    /// Those the edge's rules and egress policy permit, in the same order: what the
    /// default hook chooses from.
    pub permitted: &'a [SocketAddr],
    /// The tunnel's tags.
    pub tags: &'a Tags,
}

impl EgressQuery<'_> {
    /// The default verdict: the first permitted address, from any local address;
    /// `DnsError` when nothing resolved, `Prohibited` when nothing is permitted.
    pub fn default_verdict(&self) -> EgressVerdict {
        if self.candidates.is_empty() {
            return EgressVerdict::Refuse(Refusal::DnsError);
        }
        match self.permitted.first() {
            Some(&to) => EgressVerdict::Dial(Egress { to, from: None }),
            None => EgressVerdict::Refuse(Refusal::Prohibited),
        }
    }
}

/// Where a tunnel's egress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    /// The address to dial: always one of the candidates the host resolved.
    pub to: SocketAddr,
    /// The local address to bind before dialling (say, one egress IP per tenant); `None`
    /// lets the kernel choose.
    pub from: Option<SocketAddr>,
}

/// The egress hook's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EgressVerdict {
    /// Dial this. An address that is not one of the candidates is refused
    /// ([`Refusal::Internal`]): a different destination is the tunnel hook's redirect.
    Dial(Egress),
    /// Refuse the tunnel.
    Refuse(Refusal),
}

/// What the `ip_flow` hook sees of a new flow inside a CONNECT-IP tunnel: who, which
/// tunnel, the flow's addresses, and its first packet's size and first payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IpFlowQuery<'a> {
    /// The tunnel the flow travels in.
    pub tunnel: TunnelId,
    /// Who opened the tunnel.
    pub client: ClientIdentity,
    /// The name of the token the client presented (never its secret).
    pub token_name: Option<&'a str>,
    /// The identity of the client's certificate (mutual TLS), if any.
    pub certificate_identity: Option<&'a str>,
    /// The labels the tunnel hook put on the tunnel.
    pub tunnel_tags: &'a Tags,
    /// UDP, TCP or ICMP echo.
    pub protocol: FlowProtocol,
    /// The client's address (one the edge assigned it) and port; for ICMP echo, the
    /// echo's Identifier stands for the port.
    pub source: SocketAddr,
    /// Where the flow goes: address and port (ICMP echo: the Identifier).
    pub destination: SocketAddr,
    /// The first packet's length, IP header included.
    pub packet_len: usize,
    /// The first packet's transport payload (after the UDP or TCP header, or the ICMP
    /// echo's 8 bytes), at most [`IpFlowQuery::PAYLOAD_PREFIX`] bytes of it: enough to
    /// recognise a protocol (a DNS query's header and name, a QUIC long header, a TLS
    /// record's start), not to read a conversation. Often empty for TCP, whose first
    /// packet is a SYN.
    pub payload: &'a [u8],
    /// The server name a UDP flow's QUIC client asked for: the SNI of the `ClientHello`
    /// in its first Initial packets (RFC 9001 §5.2 keys, veil-proto `sniff::quic`), read
    /// when [`Policy::ip_flow_wants_sni`] says so or a rule on `sni` needs it. With a
    /// `ClientHello` longer than one packet the flow's first packets are held until the
    /// name is in (a few packets, [`IpFlowQuery::SNI_WAIT`] at most); `payload` and
    /// `packet_len` are then the first packet's.
    pub sni: Option<&'a str>,
}

impl IpFlowQuery<'_> {
    /// The most payload bytes a query shows.
    pub const PAYLOAD_PREFIX: usize = 64;
    /// The longest a flow's first packets are held for the rest of a QUIC `ClientHello`:
    /// a client sends all its Initial packets in one flight, so the wait is short unless
    /// one is lost; then the flow is judged without a name.
    pub const SNI_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
}

/// The `ip_flow` hook's verdict, remembered for the rest of the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpFlowVerdict {
    /// The flow's packets go on to the host's off-ramp.
    Pass,
    /// The flow's packets are dropped, this one and the later ones, silently (no ICMP
    /// error: the hook may refuse what it does not want to reveal it refuses), and
    /// counted under `ip_dropped` cause `flow_refused`.
    Refuse,
}

/// The hooks an edge consults. Every method has a default: implement the ones you need.
pub trait Policy: Send {
    /// A connection completed its handshake.
    fn ingress(&mut self, query: &IngressQuery<'_>) -> IngressVerdict {
        let _ = query;
        IngressVerdict::Accept
    }

    /// A request passed the engine's own checks. `tags` starts empty; labels added to it
    /// stay with the tunnel whatever the verdict.
    fn tunnel(&mut self, query: &TunnelQuery<'_>, tags: &mut Tags) -> TunnelVerdict {
        let _ = (query, tags);
        TunnelVerdict::Pass
    }

    /// An HTTP/1.1 request inside a tunnel the tunnel hook passed with
    /// [`TunnelVerdict::Inspect`]. Must answer at once.
    fn http_request(&mut self, query: &HttpRequestQuery<'_>) -> HttpVerdict {
        let _ = query;
        HttpVerdict::Allow
    }

    /// The host resolved a tunnel's target and asks where to dial. Must answer at once (a
    /// verdict that needs to wait belongs in the tunnel hook, which can ask the host).
    fn egress(&mut self, query: &EgressQuery<'_>) -> EgressVerdict {
        query.default_verdict()
    }

    /// The first packet of a new flow inside a CONNECT-IP tunnel, from the client, after
    /// the engine's own checks passed it: pass or refuse the flow. Called once per flow:
    /// the verdict holds for the flow's later packets until the flow is forgotten (idle
    /// for `QuicConfig::udp_idle_timeout`, or evicted from a tunnel's full table of
    /// `EdgeConfig::ip_flows_per_tunnel` flows); its next packet is then a new flow, asked
    /// about again. Packets that belong to no flow (ICMP errors, fragments, protocols
    /// other than UDP, TCP and ICMP echo) are not shown to it. `tags` starts empty: the
    /// flow's labels, logged with the verdict (debug level), not kept. Must answer at once:
    /// the packet waits for it.
    fn ip_flow(&mut self, query: &IpFlowQuery<'_>, tags: &mut Tags) -> IpFlowVerdict {
        let _ = (query, tags);
        IpFlowVerdict::Pass
    }

    /// Whether `ip_flow` wants [`IpFlowQuery::sni`]: the engine then decrypts the first
    /// Initial packet of each new UDP flow that starts with one (a few microseconds, once
    /// per flow) and may hold the flow's first packets until the `ClientHello` is in. The
    /// default, `false`, reads names only for rules on `sni`.
    fn ip_flow_wants_sni(&self) -> bool {
        false
    }
}

/// Today's behaviour: every connection accepted, every request handed to the host, the
/// first permitted address dialled, every IP flow passed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {}
