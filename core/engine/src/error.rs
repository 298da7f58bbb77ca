//! One small error enum per operation of the [`Endpoint`](crate::Endpoint).

use std::fmt;
use std::path::PathBuf;

/// Why [`Endpoint::new`](crate::Endpoint::new) refused a configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// A PEM file could not be read.
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A certificate or key was not valid PEM, or did not fit together.
    InvalidPem {
        /// Which setting (`cert`, `key`, `verify.ca`).
        what: &'static str,
    },
    /// A certificate was given without its key, or a key without its certificate.
    CertWithoutKey,
    /// `BoringSSL` refused a setting.
    Tls {
        /// What was being set up.
        what: &'static str,
        /// `BoringSSL`'s error queue.
        source: boring::error::ErrorStack,
    },
    /// quiche refused a setting.
    Quic {
        /// What was being set up.
        what: &'static str,
        /// quiche's error.
        source: quiche::Error,
    },
    /// An egress allowlist entry is not a CIDR prefix.
    InvalidEgressPrefix(String),
    /// A CONNECT-IP address pool is not a CIDR prefix.
    InvalidIpPool(String),
    /// A numeric setting is out of its range.
    InvalidValue {
        /// The setting.
        field: &'static str,
    },
    /// A routing rule does not compile (see [`crate::rules::RuleError`]).
    InvalidRule(crate::rules::RuleError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadFile { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Self::InvalidPem { what } => write!(f, "{what}: not valid PEM"),
            Self::CertWithoutKey => {
                f.write_str("a certificate needs its key and a key its certificate")
            }
            Self::Tls { what, source } => write!(f, "TLS setup ({what}): {source}"),
            Self::Quic { what, source } => write!(f, "QUIC setup ({what}): {source}"),
            Self::InvalidEgressPrefix(prefix) => {
                write!(f, "egress allowlist entry {prefix:?} is not an IP prefix")
            }
            Self::InvalidIpPool(prefix) => {
                write!(f, "IP pool {prefix:?} is not an IP prefix (`10.89.0.0/24`)")
            }
            Self::InvalidValue { field } => write!(f, "{field}: value out of range"),
            Self::InvalidRule(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ReadFile { source, .. } => Some(source),
            Self::Tls { source, .. } => Some(source),
            Self::Quic { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why [`Endpoint::open_tunnel`](crate::Endpoint::open_tunnel) failed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// Only a client opens tunnels.
    NotClient,
    /// `max_pending_tunnels` tunnels already wait for the connection.
    QueueFull,
    /// The endpoint is closing.
    Closing,
    /// The target cannot be asked for: port 0 (CONNECT-UDP, RFC 9298 §3).
    InvalidTarget,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotClient => "only a client endpoint opens tunnels",
            Self::QueueFull => "too many tunnels wait for the edge connection",
            Self::Closing => "the endpoint is closing",
            Self::InvalidTarget => "the target's port must be 1 to 65535",
        })
    }
}

impl std::error::Error for OpenError {}

/// Why a tunnel operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TunnelError {
    /// No live tunnel has this id (never existed, refused, closed or aborted).
    UnknownTunnel,
    /// The tunnel is not in a state for this call: `accept_tunnel` on a client or twice,
    /// `tunnel_send` before the tunnel opened, …
    InvalidState,
    /// Our direction is finished (`tunnel_finish` was called) or the peer stopped reading.
    WriteClosed,
    /// The underlying HTTP/3 stream failed; the tunnel is dead.
    Stream,
    /// A datagram call on a tunnel that is not a UDP tunnel.
    NotUdp,
    /// A byte-stream call (`tunnel_send`, `tunnel_recv`) on a UDP tunnel.
    NotStream,
    /// A packet call (`tunnel_send_packet`, `tunnel_recv_packet`) on a tunnel that is not a
    /// CONNECT-IP tunnel.
    NotIp,
    /// The caller's buffer is shorter than the next datagram, which stays queued.
    BufferTooSmall {
        /// The length of the next datagram.
        needed: usize,
    },
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Self::BufferTooSmall { needed } = self {
            return write!(f, "the next datagram needs a buffer of {needed} bytes");
        }
        f.write_str(match self {
            Self::UnknownTunnel => "no such tunnel",
            Self::InvalidState => "the tunnel is not in a state for this operation",
            Self::WriteClosed => "the tunnel's write side is closed",
            Self::Stream => "the tunnel's stream failed",
            Self::NotUdp => "not a UDP tunnel",
            Self::NotStream => "a UDP tunnel carries datagrams, not a byte stream",
            Self::NotIp => "not an IP tunnel",
            Self::BufferTooSmall { .. } => "buffer too small",
        })
    }
}

impl std::error::Error for TunnelError {}
