//! `veil_relay`: how a relay between a TCP connection and a TCP tunnel ends, decided by
//! the engine (`veil_engine::relay::Relay`) so that a C host only moves bytes.
//!
//! One relay per accepted (edge) or opened (client) TCP tunnel. The host reports what
//! happened to its bytes (the TCP side's EOF or error, the tunnel's FIN, a failed tunnel
//! call, `VEIL_EVENT_TUNNEL_CLOSED`, the deadline), then drains `veil_relay_poll_action`
//! and does each action in order, and adds `veil_relay_poll_timeout` to its wait. Like an
//! endpoint, a relay reads no clock: every `now_ns` is the caller's, converted with the
//! pairing of the endpoint it was created from.

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use veil_engine::relay::{Relay, RelayAction, RelayEnd, RelayOutcome};
use veil_engine::{CloseReason, TunnelError};

use crate::clock::Clock;
use crate::endpoint::{VEIL_NO_TIMEOUT, veil_endpoint, with_endpoint};
use crate::event::veil_close_reason;
use crate::panic::{Outcome, boundary};
use crate::ptr;
use crate::result::veil_result::{
    self, VEIL_DONE, VEIL_ERR_INVALID_ARGUMENT, VEIL_ERR_NULL, VEIL_ERR_PANIC, VEIL_OK,
};

/// When a relay is done (the `end` argument of `veil_relay_new`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_relay_end {
    /// When both directions are finished (a CONNECT tunnel).
    VEIL_RELAY_BOTH_FINISHED = 0,
    /// When the tunnel's direction has finished and everything it sent is written; the
    /// tunnel is then finished and the TCP connection closed (a request forwarded over a
    /// one-request tunnel).
    VEIL_RELAY_AFTER_PEER_FIN = 1,
}

/// What the host must do next (`veil_relay_poll_action`), in the order given.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_relay_action {
    /// `veil_endpoint_tunnel_finish`: the peer reads EOF after the bytes sent so far.
    VEIL_RELAY_FINISH_TUNNEL = 1,
    /// `shutdown(fd, SHUT_WR)`: the TCP side reads EOF after the bytes written so far.
    VEIL_RELAY_SHUTDOWN_TCP_WRITE = 2,
    /// The tunnel takes no more bytes (its peer stopped reading): drop what waits for it,
    /// and from now on read the TCP side only to discard, reporting each read with
    /// `veil_relay_tcp_discarded` and its EOF with `veil_relay_tcp_eof`.
    VEIL_RELAY_DISCARD_TCP = 3,
    /// `veil_endpoint_tunnel_abort` (the engine resets with `H3_CONNECT_ERROR`).
    VEIL_RELAY_ABORT_TUNNEL = 4,
    /// `close(fd)`: no reset (the write side is shut down already, or the socket failed).
    VEIL_RELAY_CLOSE_TCP = 5,
    /// Close with RST: `SO_LINGER` {1, 0}, then `close(fd)`, without `shutdown` first.
    VEIL_RELAY_RESET_TCP = 6,
    /// The relay is over (`veil_relay_ended` says how); nothing more comes. Free it and
    /// release the tunnel's resources.
    VEIL_RELAY_DONE = 7,
}

/// How a relay ended (`veil_relay_ended`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_relay_outcome {
    /// Both sides finished cleanly (or, with `VEIL_RELAY_AFTER_PEER_FIN`, the tunnel did).
    VEIL_RELAY_OUTCOME_FINISHED = 0,
    /// The peer finished, every byte of it was written, then it stopped reading ours: the
    /// TCP connection was closed without a reset after lingering (30 s at most, 5 s idle).
    VEIL_RELAY_OUTCOME_PEER_STOPPED = 1,
    /// The tunnel was reset or failed; the TCP connection was reset.
    VEIL_RELAY_OUTCOME_TUNNEL_RESET = 2,
    /// The TCP connection failed; the tunnel was aborted.
    VEIL_RELAY_OUTCOME_TCP_FAILED = 3,
    /// An outcome this version of the ABI has no code for.
    VEIL_RELAY_OUTCOME_OTHER = 4,
}

impl From<RelayOutcome> for veil_relay_outcome {
    fn from(outcome: RelayOutcome) -> Self {
        match outcome {
            RelayOutcome::Finished => Self::VEIL_RELAY_OUTCOME_FINISHED,
            RelayOutcome::PeerStopped => Self::VEIL_RELAY_OUTCOME_PEER_STOPPED,
            RelayOutcome::TunnelReset => Self::VEIL_RELAY_OUTCOME_TUNNEL_RESET,
            RelayOutcome::TcpFailed => Self::VEIL_RELAY_OUTCOME_TCP_FAILED,
            _ => Self::VEIL_RELAY_OUTCOME_OTHER,
        }
    }
}

/// One relay's end. Opaque: create it with `veil_relay_new`, free it with
/// `veil_relay_free`.
pub struct veil_relay {
    relay: Relay,
    clock: Clock,
    /// Set when a call panicked: every later call answers `VEIL_ERR_PANIC`.
    poisoned: Cell<bool>,
}

/// Runs `body` on a live relay behind the panic boundary; a panic poisons it.
///
/// # Safety
/// `relay` must be NULL or a live relay from `veil_relay_new`, used by no other thread
/// during the call.
unsafe fn with_relay(
    relay: *mut veil_relay,
    body: impl FnOnce(&mut veil_relay) -> Outcome,
) -> veil_result {
    boundary(|| {
        if relay.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        // SAFETY: non-NULL; the caller promises a live relay (Box-allocated by
        // veil_relay_new, so aligned) that nothing else uses during the call.
        let relay = unsafe { &mut *relay };
        if relay.poisoned.get() {
            return Err(VEIL_ERR_PANIC);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| body(relay)));
        outcome.unwrap_or_else(|_| {
            relay.poisoned.set(true);
            Err(VEIL_ERR_PANIC)
        })
    })
}

/// As [`with_relay`], for calls that only read the relay.
///
/// # Safety
/// `relay` must be NULL or a live relay, not being mutated during the call.
unsafe fn with_relay_ref(
    relay: *const veil_relay,
    body: impl FnOnce(&veil_relay) -> Outcome,
) -> veil_result {
    boundary(|| {
        if relay.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        // SAFETY: non-NULL; the caller promises a live relay not mutated meanwhile.
        let relay = unsafe { &*relay };
        if relay.poisoned.get() {
            return Err(VEIL_ERR_PANIC);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| body(relay)));
        outcome.unwrap_or_else(|_| {
            relay.poisoned.set(true);
            Err(VEIL_ERR_PANIC)
        })
    })
}

/// Feeds one timed input to a relay.
///
/// # Safety
/// As [`with_relay`].
unsafe fn input(
    relay: *mut veil_relay,
    now_ns: u64,
    feed: impl FnOnce(&mut Relay, Instant) -> Result<(), veil_result>,
) -> veil_result {
    let body = |relay: &mut veil_relay| {
        let now = relay.clock.instant(now_ns);
        feed(&mut relay.relay, now)?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_relay(relay, body) }
}

/// Feeds one fact that cannot be malformed to a relay.
///
/// # Safety
/// As [`with_relay`].
unsafe fn fact(relay: *mut veil_relay, now_ns: u64, feed: fn(&mut Relay, Instant)) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe {
        input(relay, now_ns, |relay, now| {
            feed(relay, now);
            Ok(())
        })
    }
}

/// Creates the relay of one TCP tunnel of `endpoint` (whose clock it shares: every
/// `now_ns` given to the relay is on the same clock) and writes it to `*out`; the caller
/// owns it (free it with `veil_relay_free`). `end` is a `veil_relay_end`. The relay keeps
/// no pointer to the endpoint.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_INVALID_ARGUMENT` (unknown `end`).
///
/// # Safety
/// `endpoint` must be NULL or live; `out` NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_new(
    endpoint: *mut veil_endpoint,
    end: c_int,
    out: *mut *mut veil_relay,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(out)?;
        let end = match end {
            0 => RelayEnd::BothFinished,
            1 => RelayEnd::AfterPeerFin,
            _ => return Err(VEIL_ERR_INVALID_ARGUMENT),
        };
        let relay = Box::new(veil_relay {
            relay: Relay::new(end),
            clock: endpoint.clock(),
            poisoned: Cell::new(false),
        });
        // SAFETY: `out` is checked non-NULL and aligned; the caller promises it writable.
        unsafe { ptr::put(out, Box::into_raw(relay)) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Frees a relay. NULL is ignored.
///
/// # Safety
/// `relay` must be NULL or a relay from `veil_relay_new` not freed before; it must not be
/// used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_free(relay: *mut veil_relay) {
    if relay.is_null() {
        return;
    }
    let _ = boundary(|| {
        // SAFETY: non-NULL and, as the caller promises, from Box::into_raw in
        // veil_relay_new and not freed before.
        drop(unsafe { Box::from_raw(relay) });
        Ok(VEIL_OK)
    });
}

/// A read from the TCP side returned 0 (EOF). Every byte read before it must have been
/// taken by the tunnel (or discarded, after `VEIL_RELAY_DISCARD_TCP`).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tcp_eof(relay: *mut veil_relay, now_ns: u64) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { fact(relay, now_ns, Relay::tcp_eof) }
}

/// Bytes read from the TCP side were discarded (after `VEIL_RELAY_DISCARD_TCP`), without
/// their count: the linger keeps its time bounds only. Prefer
/// `veil_relay_tcp_discarded_len`.
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tcp_discarded(
    relay: *mut veil_relay,
    now_ns: u64,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { fact(relay, now_ns, |relay, now| relay.tcp_discarded(now, 0)) }
}

/// `len` bytes read from the TCP side were discarded (after `VEIL_RELAY_DISCARD_TCP`).
/// Past a mebibyte in a linger, `veil_relay_tcp_reads_paused` says to stop reading.
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tcp_discarded_len(
    relay: *mut veil_relay,
    now_ns: u64,
    len: usize,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe {
        input(relay, now_ns, |relay, now| {
            relay.tcp_discarded(now, len);
            Ok(())
        })
    }
}

/// A `read`, `write` or `shutdown` on the TCP side failed (other than `EAGAIN`/`EINTR`).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tcp_error(relay: *mut veil_relay, now_ns: u64) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { fact(relay, now_ns, Relay::tcp_error) }
}

/// Every byte received from the tunnel so far is written to the TCP side (report it each
/// time the host's buffer empties; it matters once the FIN was read).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tcp_flushed(
    relay: *mut veil_relay,
    now_ns: u64,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { fact(relay, now_ns, Relay::tcp_flushed) }
}

/// `veil_endpoint_tunnel_recv` reported the FIN (`*fin`); the bytes before it may still
/// wait to be written (`veil_relay_tcp_flushed` says when they are).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tunnel_fin(relay: *mut veil_relay, now_ns: u64) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { fact(relay, now_ns, Relay::tunnel_fin) }
}

/// A tunnel call (`veil_endpoint_tunnel_send`, `_finish`, `_recv`) failed with `result`:
/// `VEIL_ERR_WRITE_CLOSED` is the peer's stop of our direction (the relay goes on
/// delivering the peer's bytes), any other error means the tunnel is dead.
///
/// Results: `VEIL_OK`; `VEIL_ERR_INVALID_ARGUMENT` (`result` is not an error).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tunnel_error(
    relay: *mut veil_relay,
    now_ns: u64,
    result: c_int,
) -> veil_result {
    let feed = |relay: &mut Relay, now| {
        let error = match veil_result::from_code(result) {
            Some(veil_result::VEIL_ERR_WRITE_CLOSED) => TunnelError::WriteClosed,
            Some(veil_result::VEIL_ERR_UNKNOWN_TUNNEL) => TunnelError::UnknownTunnel,
            Some(veil_result::VEIL_ERR_INVALID_STATE) => TunnelError::InvalidState,
            _ if result < 0 => TunnelError::Stream,
            _ => return Err(VEIL_ERR_INVALID_ARGUMENT),
        };
        relay.tunnel_error(now, error);
        Ok(())
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { input(relay, now_ns, feed) }
}

/// `VEIL_EVENT_TUNNEL_CLOSED` came for the relay's tunnel: pass the event's `close` (a
/// `veil_close_reason`) and `error_code`. The relay judges it: a reset after the FIN was
/// read is the peer's stop (a clean end), a reset before it or a lost connection resets
/// the TCP connection.
///
/// Results: `VEIL_OK`; `VEIL_ERR_INVALID_ARGUMENT` (`close` is not a close reason).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tunnel_closed(
    relay: *mut veil_relay,
    now_ns: u64,
    close: c_int,
    error_code: u64,
) -> veil_result {
    let feed = |relay: &mut Relay, now| {
        let reason = match close {
            c if c == veil_close_reason::VEIL_CLOSE_FINISHED as c_int => CloseReason::Finished,
            c if c == veil_close_reason::VEIL_CLOSE_RESET as c_int => {
                CloseReason::Reset { code: error_code }
            }
            c if c == veil_close_reason::VEIL_CLOSE_IDLE_TIMEOUT as c_int => {
                CloseReason::IdleTimeout
            }
            c if c == veil_close_reason::VEIL_CLOSE_MAX_DURATION as c_int => {
                CloseReason::MaxDuration
            }
            // The relay resets the local side for a refusal whatever its status.
            c if c == veil_close_reason::VEIL_CLOSE_REFUSED as c_int => {
                CloseReason::Refused { status: 0 }
            }
            // A close this ABI cannot name is not a clean one.
            c if c == veil_close_reason::VEIL_CLOSE_CONNECTION_LOST as c_int
                || c == veil_close_reason::VEIL_CLOSE_OTHER as c_int =>
            {
                CloseReason::ConnectionLost
            }
            _ => return Err(VEIL_ERR_INVALID_ARGUMENT),
        };
        relay.tunnel_closed(now, reason);
        Ok(())
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { input(relay, now_ns, feed) }
}

/// Tells the relay that `now_ns` has come; call it when the deadline from
/// `veil_relay_poll_timeout` is reached (early is harmless).
///
/// # Safety
/// `relay` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_handle_timeout(
    relay: *mut veil_relay,
    now_ns: u64,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { fact(relay, now_ns, Relay::on_timeout) }
}

/// Writes the next action to `*action`. Call until `VEIL_DONE`, after every input, and do
/// each action in order.
///
/// Results: `VEIL_OK` (an action is in `*action`); `VEIL_DONE` (nothing now).
///
/// # Safety
/// `relay` must be NULL or live; `action` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_poll_action(
    relay: *mut veil_relay,
    action: *mut veil_relay_action,
) -> veil_result {
    let body = |relay: &mut veil_relay| {
        let out = ptr::out(action)?;
        let Some(next) = relay.relay.poll_action() else {
            return Ok(VEIL_DONE);
        };
        let value = match next {
            RelayAction::FinishTunnel => veil_relay_action::VEIL_RELAY_FINISH_TUNNEL,
            RelayAction::ShutdownTcpWrite => veil_relay_action::VEIL_RELAY_SHUTDOWN_TCP_WRITE,
            RelayAction::DiscardTcp => veil_relay_action::VEIL_RELAY_DISCARD_TCP,
            RelayAction::AbortTunnel => veil_relay_action::VEIL_RELAY_ABORT_TUNNEL,
            RelayAction::CloseTcp => veil_relay_action::VEIL_RELAY_CLOSE_TCP,
            RelayAction::ResetTcp => veil_relay_action::VEIL_RELAY_RESET_TCP,
            // `Done`, and anything newer than this ABI: the relay is over (its outcome
            // says how), and the host can only let go.
            _ => veil_relay_action::VEIL_RELAY_DONE,
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, value) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_relay(relay, body) }
}

/// Writes to `*deadline_ns` when `veil_relay_handle_timeout` should be called next, on the
/// caller's clock (only while lingering). `VEIL_DONE` and `VEIL_NO_TIMEOUT` when no timer
/// is needed.
///
/// # Safety
/// `relay` must be NULL or live; `deadline_ns` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_poll_timeout(
    relay: *const veil_relay,
    deadline_ns: *mut u64,
) -> veil_result {
    let body = |relay: &veil_relay| {
        let out = ptr::out(deadline_ns)?;
        let (value, code) = match relay.relay.poll_timeout() {
            Some(at) => (relay.clock.nanos(at), VEIL_OK),
            None => (VEIL_NO_TIMEOUT, VEIL_DONE),
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, value) };
        Ok(code)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_relay_ref(relay, body) }
}

/// Writes whether the TCP side is to be read only to discard (from
/// `VEIL_RELAY_DISCARD_TCP` until its EOF or the end) to `*discards`.
///
/// # Safety
/// `relay` must be NULL or live; `discards` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_discards_tcp(
    relay: *const veil_relay,
    discards: *mut bool,
) -> veil_result {
    let body = |relay: &veil_relay| {
        let out = ptr::out(discards)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, relay.relay.discards_tcp()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_relay_ref(relay, body) }
}

/// Writes to `*paused` whether the host should stop reading the TCP side: the relay
/// lingers and has discarded a mebibyte already. It then waits for its deadline
/// (`veil_relay_poll_timeout`) without reading: the far end's sends stall, and nothing it
/// has not read is lost to a reset. A host that reads on only spends CPU.
///
/// # Safety
/// `relay` must be NULL or live; `paused` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_tcp_reads_paused(
    relay: *const veil_relay,
    paused: *mut bool,
) -> veil_result {
    let body = |relay: &veil_relay| {
        let out = ptr::out(paused)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, relay.relay.tcp_reads_paused()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_relay_ref(relay, body) }
}

/// Writes how the relay ended to `*outcome`, once `VEIL_RELAY_DONE` is queued or taken.
///
/// Results: `VEIL_OK`; `VEIL_DONE` (not over yet; `*outcome` is not written).
///
/// # Safety
/// `relay` must be NULL or live; `outcome` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_relay_ended(
    relay: *const veil_relay,
    outcome: *mut veil_relay_outcome,
) -> veil_result {
    let body = |relay: &veil_relay| {
        let out = ptr::out(outcome)?;
        let Some(ended) = relay.relay.outcome() else {
            return Ok(VEIL_DONE);
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, ended.into()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_relay_ref(relay, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edge endpoint for the relay's clock.
    fn endpoint() -> *mut veil_endpoint {
        let mut config = std::ptr::null_mut();
        // SAFETY: out-pointers to locals; every handle is freed by the caller.
        unsafe {
            assert_eq!(
                crate::config::veil_config_new(
                    crate::config::veil_role::VEIL_ROLE_EDGE as c_int,
                    &raw mut config
                ),
                VEIL_OK
            );
            let mut endpoint = std::ptr::null_mut();
            assert_eq!(
                crate::endpoint::veil_endpoint_new(config, 1_000, &raw mut endpoint),
                VEIL_OK
            );
            crate::config::veil_config_free(config);
            endpoint
        }
    }

    /// Every action queued now.
    fn actions(relay: *mut veil_relay) -> Vec<veil_relay_action> {
        let mut out = Vec::new();
        let mut action = veil_relay_action::VEIL_RELAY_DONE;
        // SAFETY: a live relay and a local out-pointer.
        while unsafe { veil_relay_poll_action(relay, &raw mut action) } == VEIL_OK {
            out.push(action);
        }
        out
    }

    #[test]
    fn a_stop_after_the_fin_lingers_on_the_callers_clock() {
        use veil_relay_action::{
            VEIL_RELAY_CLOSE_TCP, VEIL_RELAY_DISCARD_TCP, VEIL_RELAY_DONE,
            VEIL_RELAY_SHUTDOWN_TCP_WRITE,
        };
        let endpoint = endpoint();
        let mut relay = std::ptr::null_mut();
        // SAFETY: live handles and local out-pointers throughout; both freed at the end.
        unsafe {
            assert_eq!(veil_relay_new(endpoint, 0, &raw mut relay), VEIL_OK);
            assert_eq!(veil_relay_tunnel_fin(relay, 2_000), VEIL_OK);
            let reset = veil_close_reason::VEIL_CLOSE_RESET as c_int;
            assert_eq!(
                veil_relay_tunnel_closed(relay, 2_000, reset, 0x10f),
                VEIL_OK
            );
            let mut discards = false;
            assert_eq!(veil_relay_discards_tcp(relay, &raw mut discards), VEIL_OK);
            assert!(discards);
            assert_eq!(veil_relay_tcp_flushed(relay, 3_000), VEIL_OK);
            assert_eq!(
                actions(relay),
                [VEIL_RELAY_DISCARD_TCP, VEIL_RELAY_SHUTDOWN_TCP_WRITE]
            );
            let mut deadline = 0;
            assert_eq!(veil_relay_poll_timeout(relay, &raw mut deadline), VEIL_OK);
            assert_eq!(deadline, 3_000 + 5_000_000_000);
            let mut outcome = veil_relay_outcome::VEIL_RELAY_OUTCOME_OTHER;
            assert_eq!(veil_relay_ended(relay, &raw mut outcome), VEIL_DONE);
            assert_eq!(veil_relay_handle_timeout(relay, deadline), VEIL_OK);
            assert_eq!(actions(relay), [VEIL_RELAY_CLOSE_TCP, VEIL_RELAY_DONE]);
            assert_eq!(veil_relay_ended(relay, &raw mut outcome), VEIL_OK);
            assert_eq!(outcome, veil_relay_outcome::VEIL_RELAY_OUTCOME_PEER_STOPPED);
            assert_eq!(veil_relay_poll_timeout(relay, &raw mut deadline), VEIL_DONE);
            assert_eq!(deadline, VEIL_NO_TIMEOUT);
            veil_relay_free(relay);
            crate::endpoint::veil_endpoint_free(endpoint);
        }
    }

    #[test]
    fn bad_arguments_are_result_codes() {
        let endpoint = endpoint();
        let mut relay = std::ptr::null_mut();
        // SAFETY: live handles and local out-pointers; NULLs where the test says so.
        unsafe {
            assert_eq!(
                veil_relay_new(endpoint, 2, &raw mut relay),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_relay_new(std::ptr::null_mut(), 0, &raw mut relay),
                VEIL_ERR_NULL
            );
            assert_eq!(
                veil_relay_new(endpoint, 0, std::ptr::null_mut()),
                VEIL_ERR_NULL
            );
            assert_eq!(veil_relay_tcp_eof(std::ptr::null_mut(), 0), VEIL_ERR_NULL);
            assert_eq!(veil_relay_new(endpoint, 1, &raw mut relay), VEIL_OK);
            assert_eq!(
                veil_relay_tunnel_error(relay, 0, 0),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_relay_tunnel_closed(relay, 0, 0, 0),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_relay_tunnel_closed(relay, 0, 99, 0),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_relay_poll_action(relay, std::ptr::null_mut()),
                VEIL_ERR_NULL
            );
            let write_closed = veil_result::VEIL_ERR_WRITE_CLOSED as c_int;
            assert_eq!(veil_relay_tunnel_error(relay, 0, write_closed), VEIL_OK);
            assert_eq!(actions(relay), [veil_relay_action::VEIL_RELAY_DISCARD_TCP]);
            veil_relay_free(relay);
            veil_relay_free(std::ptr::null_mut());
            crate::endpoint::veil_endpoint_free(endpoint);
        }
    }
}
