//! Edge: the questions a [`Policy`](veil_engine::Policy) hook leaves to the host
//! (`IngressVerdict::Ask`, `TunnelVerdict::Ask`), handed to the embedder over a channel
//! ([`Node::decisions`](crate::Node::decisions)) with a one-shot answer each. The answer
//! goes back to the engine through the driver, which then goes on exactly as with an
//! immediate verdict. An answer never given (the sender dropped) refuses the request (or
//! closes the connection) at once; one given late finds the engine's own refusal
//! (`EdgeConfig::request_timeout`).

use std::net::SocketAddr;

use tokio::sync::{mpsc, oneshot};
use veil_engine::{
    ClientIdentity, ConnectionHandle, IngressVerdict, Tags, TunnelId, TunnelKind, TunnelTarget,
    TunnelVerdict,
};

/// Questions waiting for the embedder, at most; more are refused at once.
pub const DECISION_CHANNEL: usize = 1024;

/// A question the hooks left to the embedder.
#[derive(Debug)]
#[non_exhaustive]
// A tunnel question holds its target's name inline (up to 253 bytes): one per request, so
// the size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Serve this new connection (`IngressVerdict::Accept`) or close it.
    Ingress {
        /// The connection.
        connection: ConnectionHandle,
        /// The client's address.
        peer: SocketAddr,
        /// The server name it asked for.
        server_name: Option<String>,
        /// Where the verdict goes (`Accept` or `Close`).
        answer: oneshot::Sender<IngressVerdict>,
    },
    /// Pass, refuse or redirect this request, with tags.
    Tunnel {
        /// The tunnel.
        tunnel: TunnelId,
        /// What it would carry.
        kind: TunnelKind,
        /// Where the client wants to go.
        target: TunnelTarget,
        /// Who asks.
        client: ClientIdentity,
        /// Where the verdict goes (`Pass`, `Refuse`, `Redirect`, `Inspect`) and the tags.
        answer: oneshot::Sender<(TunnelVerdict, Tags)>,
    },
}

/// The driver's end: where questions go, when the embedder asked for them.
pub(crate) type DecisionSender = mpsc::Sender<Decision>;
