//! One record per finished tunnel, for an audit log: who asked for what, where it went,
//! how much moved each way, how long it lasted and how it ended (`EdgeConfig::audit`).
//!
//! The engine writes records as tunnels end and keeps them in a bounded queue that the
//! host drains with [`Endpoint::poll_audit`](crate::Endpoint::poll_audit) and writes off
//! the data path (the CLI: one JSON line each, `--audit-log`). A full queue drops the
//! newest record and counts it (`EndpointStats::audit_dropped`): an audit log never holds
//! traffic back. Records name tokens, never their secrets; they carry no wall-clock time
//! (the engine has none): the host stamps them when it writes them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::types::{CloseReason, Refusal};

/// Records waiting for the host, at most.
pub const AUDIT_QUEUE: usize = 4096;

/// One finished tunnel (or one request refused before it became one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// The tunnel's id; `None` for a request the rules refused as it arrived.
    pub tunnel: Option<u64>,
    /// `tcp` or `udp`.
    pub kind: &'static str,
    /// The tenant whose listener took the request (`EdgeConfig::tenant`), when the
    /// process serves several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The client's address as the edge saw it.
    pub client: SocketAddr,
    /// The name of its token (never the secret).
    pub token: Option<String>,
    /// The identity of its certificate (mutual TLS).
    pub identity: Option<String>,
    /// Where the tunnel went (`host:port`, after any redirect).
    pub target: String,
    /// The server name its first bytes asked for, when the edge sniffed them.
    pub sni: Option<String>,
    /// The address the host dialled.
    pub dialed: Option<SocketAddr>,
    /// The tunnel hook's tags.
    pub tags: Vec<String>,
    /// Bytes the client sent through the tunnel (read by the host).
    pub bytes_from_client: u64,
    /// Bytes the client was sent through the tunnel (taken from the host).
    pub bytes_to_client: u64,
    /// CONNECT-UDP payloads from the client.
    pub datagrams_from_client: u64,
    /// CONNECT-UDP payloads to the client.
    pub datagrams_to_client: u64,
    /// From the request to the end, in milliseconds.
    pub duration_ms: u64,
    /// From the request to its 2xx, in milliseconds, when it opened.
    pub setup_ms: Option<u64>,
    /// How it ended: `finished`, `reset`, `connection_lost`, `idle_timeout`,
    /// `max_duration`, `aborted`
    /// (the host's side failed), `failed` (the stream failed), `refused`, `closed`.
    pub outcome: &'static str,
    /// `refused`: the status the client got.
    pub status: Option<u16>,
    /// `refused`: the Proxy-Status error type.
    pub proxy_error: Option<&'static str>,
    /// `reset`: the HTTP/3 error code.
    pub error_code: Option<u64>,
}

/// How a tunnel ended, as the engine learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Closed(CloseReason),
    Refused(Refusal),
    Aborted,
    Failed,
}

/// What the edge notes of a tunnel while it lives, for its record.
#[derive(Debug, Clone)]
pub(crate) struct Trail {
    pub(crate) started: Instant,
    pub(crate) opened: Option<Instant>,
    pub(crate) dialed: Option<SocketAddr>,
    pub(crate) bytes_from_client: u64,
    pub(crate) bytes_to_client: u64,
    pub(crate) datagrams_from_client: u64,
    pub(crate) datagrams_to_client: u64,
    pub(crate) ending: Option<Ending>,
}

impl Trail {
    pub(crate) fn new(started: Instant) -> Self {
        Self {
            started,
            opened: None,
            dialed: None,
            bytes_from_client: 0,
            bytes_to_client: 0,
            datagrams_from_client: 0,
            datagrams_to_client: 0,
            ending: None,
        }
    }

    /// Notes how it ended, unless something said so first.
    pub(crate) fn end(&mut self, ending: Ending) {
        self.ending.get_or_insert(ending);
    }
}

/// The outcome fields of a record for `ending`.
pub(crate) fn outcome_of(
    ending: Option<Ending>,
) -> (&'static str, Option<u16>, Option<&'static str>, Option<u64>) {
    match ending {
        Some(Ending::Closed(CloseReason::Finished)) => ("finished", None, None, None),
        Some(Ending::Closed(CloseReason::Reset { code })) => ("reset", None, None, Some(code)),
        Some(Ending::Closed(CloseReason::ConnectionLost)) => ("connection_lost", None, None, None),
        Some(Ending::Closed(CloseReason::IdleTimeout)) => ("idle_timeout", None, None, None),
        Some(Ending::Closed(CloseReason::MaxDuration)) => ("max_duration", None, None, None),
        // Recorded as the refusal it is (`Ending::Refused`) before the host is told.
        Some(Ending::Closed(CloseReason::RequestTimeout)) => ("refused", None, None, None),
        Some(Ending::Closed(CloseReason::Refused { status })) => {
            ("refused", Some(status), None, None)
        }
        Some(Ending::Refused(refusal)) => (
            "refused",
            Some(refusal.status()),
            Some(refusal.proxy_error().token()),
            None,
        ),
        Some(Ending::Aborted) => ("aborted", None, None, None),
        Some(Ending::Failed) => ("failed", None, None, None),
        None => ("closed", None, None, None),
    }
}

/// Milliseconds of `duration`, saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
