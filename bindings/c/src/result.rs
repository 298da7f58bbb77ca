//! The numbered result codes every export returns, and their names as text.

use std::ffi::{CStr, c_char, c_int};

use veil_engine::{OpenError, TunnelError};

/// What a call did. The numbers are part of the ABI: they never change meaning and are
/// never reused; new codes get new numbers.
///
/// `VEIL_OK` (0) and `VEIL_DONE` (1) are successes; every error is negative, so
/// `if (r < 0)` tests for failure.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_result {
    /// The call did what it says.
    VEIL_OK = 0,
    /// Nothing to report now: no transmit, no event, no datagram queued. Not an error.
    VEIL_DONE = 1,
    /// A required pointer argument was NULL.
    VEIL_ERR_NULL = -1,
    /// An argument is out of range or malformed: not UTF-8, not an address, an unknown
    /// enum value, a misaligned pointer.
    VEIL_ERR_INVALID_ARGUMENT = -2,
    /// The caller's buffer is too short for the result; nothing was consumed.
    VEIL_ERR_BUFFER_TOO_SMALL = -3,
    /// The configuration is incomplete or was refused by the engine; see
    /// `veil_config_last_error`.
    VEIL_ERR_CONFIG = -4,
    /// The call does not apply to this role (an edge setting on a client configuration,
    /// `veil_endpoint_open_tunnel` on an edge, …).
    VEIL_ERR_WRONG_ROLE = -5,
    /// No live tunnel has this id (never existed, refused, closed or aborted).
    VEIL_ERR_UNKNOWN_TUNNEL = -6,
    /// The tunnel is not in a state for this call (accepting twice, sending before it
    /// opened, …).
    VEIL_ERR_INVALID_STATE = -7,
    /// The tunnel's write side is finished, or the peer stopped reading.
    VEIL_ERR_WRITE_CLOSED = -8,
    /// The tunnel's HTTP/3 stream failed; the tunnel is dead.
    VEIL_ERR_STREAM = -9,
    /// Client: too many tunnels already wait for the connection to the edge.
    VEIL_ERR_QUEUE_FULL = -10,
    /// The endpoint is closing.
    VEIL_ERR_CLOSING = -11,
    /// Egress policy forbids this address (refuse the tunnel with `VEIL_REFUSAL_PROHIBITED`).
    VEIL_ERR_PROHIBITED = -12,
    /// The library panicked; the endpoint involved is poisoned (every later call on it
    /// returns this code) and should be freed. This is a bug in veil: please report it.
    VEIL_ERR_PANIC = -13,
    /// The engine reported an error this version of the ABI has no code for.
    VEIL_ERR_OTHER = -14,
    /// Stream I/O (`veil_endpoint_tunnel_send`/`_recv`) on a UDP tunnel.
    VEIL_ERR_NOT_STREAM = -15,
    /// Datagram I/O on a stream (TCP) tunnel.
    VEIL_ERR_NOT_UDP = -16,
}

/// Every code, for lookups and tests (private: not part of the header).
const ALL_RESULTS: [veil_result; 18] = [
    veil_result::VEIL_OK,
    veil_result::VEIL_DONE,
    veil_result::VEIL_ERR_NULL,
    veil_result::VEIL_ERR_INVALID_ARGUMENT,
    veil_result::VEIL_ERR_BUFFER_TOO_SMALL,
    veil_result::VEIL_ERR_CONFIG,
    veil_result::VEIL_ERR_WRONG_ROLE,
    veil_result::VEIL_ERR_UNKNOWN_TUNNEL,
    veil_result::VEIL_ERR_INVALID_STATE,
    veil_result::VEIL_ERR_WRITE_CLOSED,
    veil_result::VEIL_ERR_STREAM,
    veil_result::VEIL_ERR_QUEUE_FULL,
    veil_result::VEIL_ERR_CLOSING,
    veil_result::VEIL_ERR_PROHIBITED,
    veil_result::VEIL_ERR_PANIC,
    veil_result::VEIL_ERR_OTHER,
    veil_result::VEIL_ERR_NOT_STREAM,
    veil_result::VEIL_ERR_NOT_UDP,
];

impl veil_result {
    /// The code's description, NUL-terminated, static.
    pub const fn description(self) -> &'static CStr {
        match self {
            Self::VEIL_OK => c"ok",
            Self::VEIL_DONE => c"nothing to report now",
            Self::VEIL_ERR_NULL => c"a required pointer was NULL",
            Self::VEIL_ERR_INVALID_ARGUMENT => c"invalid argument",
            Self::VEIL_ERR_BUFFER_TOO_SMALL => c"buffer too small",
            Self::VEIL_ERR_CONFIG => c"invalid configuration (see veil_config_last_error)",
            Self::VEIL_ERR_WRONG_ROLE => c"not available in this role",
            Self::VEIL_ERR_UNKNOWN_TUNNEL => c"no such tunnel",
            Self::VEIL_ERR_INVALID_STATE => c"the tunnel is not in a state for this operation",
            Self::VEIL_ERR_WRITE_CLOSED => c"the tunnel's write side is closed",
            Self::VEIL_ERR_STREAM => c"the tunnel's stream failed",
            Self::VEIL_ERR_QUEUE_FULL => c"too many tunnels wait for the edge connection",
            Self::VEIL_ERR_CLOSING => c"the endpoint is closing",
            Self::VEIL_ERR_PROHIBITED => c"egress policy forbids this address",
            Self::VEIL_ERR_PANIC => c"internal error (panic); the endpoint is unusable",
            Self::VEIL_ERR_OTHER => c"engine error without a code in this ABI version",
            Self::VEIL_ERR_NOT_STREAM => c"stream I/O on a UDP tunnel",
            Self::VEIL_ERR_NOT_UDP => c"datagram I/O on a stream tunnel",
        }
    }

    /// The code with this number, if there is one.
    pub fn from_code(code: c_int) -> Option<Self> {
        ALL_RESULTS
            .into_iter()
            .find(|result| *result as c_int == code)
    }
}

impl From<TunnelError> for veil_result {
    fn from(error: TunnelError) -> Self {
        match error {
            TunnelError::UnknownTunnel => Self::VEIL_ERR_UNKNOWN_TUNNEL,
            TunnelError::InvalidState => Self::VEIL_ERR_INVALID_STATE,
            TunnelError::WriteClosed => Self::VEIL_ERR_WRITE_CLOSED,
            TunnelError::Stream => Self::VEIL_ERR_STREAM,
            TunnelError::NotUdp => Self::VEIL_ERR_NOT_UDP,
            TunnelError::NotStream => Self::VEIL_ERR_NOT_STREAM,
            TunnelError::BufferTooSmall { .. } => Self::VEIL_ERR_BUFFER_TOO_SMALL,
            _ => Self::VEIL_ERR_OTHER,
        }
    }
}

impl From<OpenError> for veil_result {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::NotClient => Self::VEIL_ERR_WRONG_ROLE,
            OpenError::QueueFull => Self::VEIL_ERR_QUEUE_FULL,
            OpenError::Closing => Self::VEIL_ERR_CLOSING,
            OpenError::InvalidTarget => Self::VEIL_ERR_INVALID_ARGUMENT,
            _ => Self::VEIL_ERR_OTHER,
        }
    }
}

/// A static, NUL-terminated description of result code `code`; unknown numbers get
/// "unknown result code". Never NULL; the string must not be freed.
#[unsafe(no_mangle)]
pub extern "C" fn veil_result_str(code: c_int) -> *const c_char {
    // A lookup in a constant table cannot panic, but the boundary costs nothing and keeps
    // the rule without exception.
    std::panic::catch_unwind(|| {
        veil_result::from_code(code).map_or(c"unknown result code", veil_result::description)
    })
    .unwrap_or(c"unknown result code")
    .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_distinct_number_and_text() {
        let mut numbers: Vec<c_int> = ALL_RESULTS.iter().map(|r| *r as c_int).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), ALL_RESULTS.len());
        for result in ALL_RESULTS {
            assert_eq!(veil_result::from_code(result as c_int), Some(result));
            assert!(!result.description().is_empty());
        }
        assert_eq!(veil_result::from_code(12345), None);
    }

    #[test]
    fn result_str_names_known_codes_and_unknown_ones() {
        // SAFETY: veil_result_str returns a pointer to a static NUL-terminated string.
        let text = |code| unsafe { CStr::from_ptr(veil_result_str(code)) };
        assert_eq!(text(0), c"ok");
        assert_eq!(text(-3), c"buffer too small");
        assert_eq!(text(99), c"unknown result code");
    }
}
