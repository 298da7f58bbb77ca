//! veil's sans-IO engine.
//!
//! Drives quiche and quiche's HTTP/3 for both roles (client and edge). No sockets, no
//! runtime, no threads: the caller feeds datagrams and time in, and drains datagrams,
//! timeouts and events out. See [`Endpoint`].

mod cid;
mod config;
mod connect;
pub mod egress;
mod egress_shim;
mod endpoint;
mod error;
mod tls;
mod transmit;
mod transport;
mod types;

pub use config::{
    ClientConfig, Config, CongestionControl, EdgeConfig, Pem, QuicConfig, RoleConfig, Secret,
    Verify, format_fingerprint, parse_fingerprint,
};
pub use endpoint::Endpoint;
pub use error::{ConfigError, OpenError, TunnelError};
pub use types::{
    ClientIdentity, CloseReason, ConnectionHandle, EndpointStats, Event, Host, Name, Recv,
    RecvMeta, Refusal, RefusedReason, Role, Transmit, TunnelId, TunnelTarget,
};
pub use veil_proto::http1::ProxyErrorType;

/// With pacing on, a packet whose release time is at most this far ahead is sent now;
/// later ones are held until their time.
pub const PACING_HORIZON: std::time::Duration = std::time::Duration::from_millis(1);

/// HTTP/3 error code for a CONNECT tunnel whose target connection was reset or failed.
//# RFC 9114 §8.1: "H3_CONNECT_ERROR (0x010f): The TCP connection established in response
//# to a CONNECT request was reset or abnormally closed."
pub const H3_CONNECT_ERROR: u64 = 0x010f;
