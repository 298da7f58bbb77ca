//! `veil_endpoint`: the engine's run loop in C — feed datagrams and time in, drain
//! transmits, timeouts and events out.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use veil_engine::socket_buffers::{BufferSizer, LONG_PATH_BUFFER_MIN};
use veil_engine::{Endpoint, EndpointStats, RecvMeta, Role, ShutdownPlan};

use crate::addr::{self, veil_sockaddr};
use crate::clock::Clock;
use crate::config::{veil_config, veil_role};
use crate::event::veil_event;
use crate::panic::{Outcome, boundary};
use crate::ptr;
use crate::result::veil_result::{
    self, VEIL_DONE, VEIL_ERR_BUFFER_TOO_SMALL, VEIL_ERR_CONFIG, VEIL_ERR_NULL, VEIL_ERR_PANIC,
    VEIL_ERR_PROHIBITED, VEIL_ERR_WRONG_ROLE, VEIL_OK,
};

/// `veil_endpoint_poll_timeout` writes this when no timer is needed.
pub const VEIL_NO_TIMEOUT: u64 = u64::MAX;

/// One engine endpoint (one per UDP socket). Opaque: create it with `veil_endpoint_new`,
/// free it with `veil_endpoint_free`.
pub struct veil_endpoint {
    pub(crate) engine: Endpoint,
    pub(crate) clock: Clock,
    /// The smallest buffer `poll_transmit` accepts: one full-size datagram.
    min_transmit: usize,
    /// Set when a call panicked: the engine's state may be half-updated, so every later
    /// call answers `VEIL_ERR_PANIC`.
    poisoned: Cell<bool>,
    /// The C hooks in place, so that setting one keeps the others.
    hooks: crate::policy::CHooks,
    /// The QUIC socket's buffer sizes over the endpoint's life, for
    /// `veil_endpoint_socket_buffers`.
    buffers: BufferSizer,
}

/// A datagram (or a GSO batch of them) that `veil_endpoint_poll_transmit` wrote to the
/// start of the caller's buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct veil_transmit {
    /// Send to this address…
    pub to: veil_sockaddr,
    /// …from this local address (the one the peer's datagrams arrived on).
    pub from: veil_sockaddr,
    /// Bytes written to the buffer.
    pub len: usize,
    /// 0: the `len` bytes are one datagram. Otherwise they are consecutive datagrams of
    /// `segment_size` bytes (the last may be shorter): send them with `UDP_SEGMENT` (GSO)
    /// or one `sendto` per segment.
    pub segment_size: usize,
}

/// Counters of an endpoint, for metrics (`veil_endpoint_stats`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct veil_stats {
    /// Connections currently alive.
    pub connections: u64,
    /// Connections ever created.
    pub connections_total: u64,
    /// Connections that ended.
    pub connections_lost: u64,
    /// Tunnels currently alive.
    pub tunnels: u64,
    /// Tunnels ever created.
    pub tunnels_total: u64,
    /// Tunnels refused.
    pub tunnels_refused: u64,
    /// Edge: requests refused for missing or wrong credentials.
    pub auth_failures: u64,
    /// Datagrams dropped (unparsable, unroutable, over the connection limit).
    pub datagrams_dropped: u64,
    /// Version negotiation packets sent.
    pub version_negotiations: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams sent (GSO segments counted one by one).
    pub datagrams_sent: u64,
    /// UDP tunnels: payloads handed to QUIC or to a stream (capsule) for sending.
    pub udp_datagrams_sent: u64,
    /// UDP tunnels: payloads queued for the host.
    pub udp_datagrams_received: u64,
    /// UDP tunnels: payloads dropped for being too large to send unfragmented.
    pub udp_dropped_oversize: u64,
    /// UDP tunnels: payloads dropped because a queue was full.
    pub udp_dropped_queue_full: u64,
    /// UDP tunnels: HTTP Datagrams dropped for an unknown Context ID.
    pub udp_dropped_unknown_context: u64,
    /// UDP tunnels: HTTP Datagrams dropped for naming no live tunnel.
    pub udp_dropped_unknown_tunnel: u64,
    /// UDP tunnels: HTTP Datagrams dropped for having no complete Context ID.
    pub udp_dropped_malformed: u64,
    /// UDP tunnels: payloads carried in DATAGRAM capsules (also in sent/received).
    pub udp_capsule_datagrams: u64,
    /// Audit records dropped (`EdgeConfig::audit`; the host drained too slowly).
    pub audit_dropped: u64,
    /// Bytes read from tunnels (an edge: from its clients).
    pub tunnel_bytes_received: u64,
    /// Bytes sent into tunnels (an edge: to its clients).
    pub tunnel_bytes_sent: u64,
}

impl From<EndpointStats> for veil_stats {
    fn from(stats: EndpointStats) -> Self {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Self {
            connections: count(stats.connections),
            connections_total: stats.connections_total,
            connections_lost: stats.connections_lost,
            tunnels: count(stats.tunnels),
            tunnels_total: stats.tunnels_total,
            tunnels_refused: stats.tunnels_refused,
            auth_failures: stats.auth_failures,
            datagrams_dropped: stats.datagrams_dropped,
            version_negotiations: stats.version_negotiations,
            datagrams_received: stats.datagrams_received,
            datagrams_sent: stats.datagrams_sent,
            udp_datagrams_sent: stats.udp_datagrams_sent,
            udp_datagrams_received: stats.udp_datagrams_received,
            udp_dropped_oversize: stats.udp_dropped_oversize,
            udp_dropped_queue_full: stats.udp_dropped_queue_full,
            udp_dropped_unknown_context: stats.udp_dropped_unknown_context,
            udp_dropped_unknown_tunnel: stats.udp_dropped_unknown_tunnel,
            udp_dropped_malformed: stats.udp_dropped_malformed,
            udp_capsule_datagrams: stats.udp_capsule_datagrams,
            audit_dropped: stats.audit_dropped,
            tunnel_bytes_received: stats.tunnel_bytes_received,
            tunnel_bytes_sent: stats.tunnel_bytes_sent,
        }
    }
}

impl veil_endpoint {
    pub(crate) fn engine(&mut self) -> &mut Endpoint {
        &mut self.engine
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    pub(crate) fn hooks_mut(&mut self) -> &mut crate::policy::CHooks {
        &mut self.hooks
    }
}

/// Runs `body` on a live endpoint behind the panic boundary; a panic poisons it.
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint from `veil_endpoint_new`, used by no other
/// thread during the call.
pub(crate) unsafe fn with_endpoint(
    endpoint: *mut veil_endpoint,
    body: impl FnOnce(&mut veil_endpoint) -> Outcome,
) -> veil_result {
    boundary(|| {
        if endpoint.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        // SAFETY: non-NULL; the caller promises a live endpoint (Box-allocated by
        // veil_endpoint_new, so aligned) that nothing else uses during the call.
        let endpoint = unsafe { &mut *endpoint };
        if endpoint.poisoned.get() {
            return Err(VEIL_ERR_PANIC);
        }
        // The engine is left as the panic found it; it is never used again.
        let outcome = catch_unwind(AssertUnwindSafe(|| body(endpoint)));
        outcome.unwrap_or_else(|_| {
            endpoint.poisoned.set(true);
            Err(VEIL_ERR_PANIC)
        })
    })
}

/// As [`with_endpoint`], for calls that only read the endpoint.
///
/// # Safety
/// `endpoint` must be NULL or a live endpoint, not being mutated during the call.
pub(crate) unsafe fn with_endpoint_ref(
    endpoint: *const veil_endpoint,
    body: impl FnOnce(&veil_endpoint) -> Outcome,
) -> veil_result {
    boundary(|| {
        if endpoint.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        // SAFETY: non-NULL; the caller promises a live endpoint not mutated meanwhile.
        let endpoint = unsafe { &*endpoint };
        if endpoint.poisoned.get() {
            return Err(VEIL_ERR_PANIC);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| body(endpoint)));
        outcome.unwrap_or_else(|_| {
            endpoint.poisoned.set(true);
            Err(VEIL_ERR_PANIC)
        })
    })
}

/// Creates an endpoint from `config` and writes it to `*out`; the caller owns it (free it
/// with `veil_endpoint_free`). `config` is only read: it stays the caller's, and may be
/// freed or reused right after.
///
/// `now_ns` is the caller's monotonic clock (`CLOCK_MONOTONIC`, in nanoseconds). Every
/// later `now_ns` must come from the same clock: this call pairs it with the system's
/// monotonic clock once (the only clock read of the ABI), and every later time is
/// converted by difference. An edge without a certificate generates its self-signed one
/// here.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_CONFIG` (the configuration is incomplete
/// or refused: `veil_config_last_error(config)` says why).
///
/// # Safety
/// `config` must be NULL or a live configuration; `out` NULL or valid for writing one
/// pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_new(
    config: *mut veil_config,
    now_ns: u64,
    out: *mut *mut veil_endpoint,
) -> veil_result {
    boundary(|| {
        let out = ptr::out(out)?;
        if config.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        // SAFETY: non-NULL; the caller promises a live configuration nobody else uses.
        let config = unsafe { &mut *config };
        let engine_config = match config.build() {
            Ok(engine_config) => engine_config,
            Err(message) => return Err(config.fail(VEIL_ERR_CONFIG, &message)),
        };
        let min_transmit = engine_config.quic.max_send_udp_payload_size;
        let clock = Clock::new(now_ns);
        let mut engine = match Endpoint::new(engine_config, clock.instant(now_ns)) {
            Ok(engine) => engine,
            Err(error) => return Err(config.fail(VEIL_ERR_CONFIG, &error.to_string())),
        };
        if let Some(layout) = config.cid_layout() {
            engine = engine.with_cid_layout(layout);
        }
        config.fail(VEIL_OK, "");
        let endpoint = Box::new(veil_endpoint {
            engine,
            clock,
            min_transmit,
            poisoned: Cell::new(false),
            hooks: crate::policy::CHooks::default(),
            buffers: BufferSizer::new(Some(LONG_PATH_BUFFER_MIN)),
        });
        // SAFETY: `out` is checked non-NULL and aligned; the caller promises it writable.
        unsafe { ptr::put(out, Box::into_raw(endpoint)) };
        Ok(VEIL_OK)
    })
}

/// Frees an endpoint and everything it holds (connections are dropped without a goodbye:
/// call `veil_endpoint_close` and drain first for a graceful end). NULL is ignored.
///
/// # Safety
/// `endpoint` must be NULL or an endpoint from `veil_endpoint_new` not freed before; it
/// must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_free(endpoint: *mut veil_endpoint) {
    if endpoint.is_null() {
        return;
    }
    let _ = boundary(|| {
        // SAFETY: non-NULL and, as the caller promises, from Box::into_raw in
        // veil_endpoint_new and not freed before.
        drop(unsafe { Box::from_raw(endpoint) });
        Ok(VEIL_OK)
    });
}

/// Writes the endpoint's role (a `veil_role`) to `*role`.
///
/// # Safety
/// `endpoint` must be NULL or live; `role` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_role(
    endpoint: *const veil_endpoint,
    role: *mut veil_role,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(role)?;
        let role = match endpoint.engine.role() {
            Role::Client => veil_role::VEIL_ROLE_CLIENT,
            Role::Edge => veil_role::VEIL_ROLE_EDGE,
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, role) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Edge: writes the SHA-256 of the DER of the certificate it serves (self-signed or
/// loaded) to `out` (`len` >= 32), for clients that pin it. A client: `VEIL_ERR_WRONG_ROLE`.
///
/// # Safety
/// `endpoint` must be NULL or live; `out` valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_certificate_fingerprint(
    endpoint: *const veil_endpoint,
    out: *mut u8,
    len: usize,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        // SAFETY: the caller promises `len` writable bytes at `out`.
        let out = unsafe { ptr::buffer(out, len) }?;
        let fingerprint = endpoint
            .engine
            .certificate_fingerprint()
            .ok_or(VEIL_ERR_WRONG_ROLE)?;
        out.get_mut(..32)
            .ok_or(VEIL_ERR_BUFFER_TOO_SMALL)?
            .copy_from_slice(&fingerprint);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Feeds one received UDP datagram: `from` the peer, `to` the local address it arrived
/// on (`IP_PKTINFO`, or the socket's bound address). `data` may be modified (decrypted in
/// place) and is not kept after the call. Datagrams that belong to no connection and
/// cannot start one are dropped and counted.
///
/// # Safety
/// `endpoint` must be NULL or live; `from`, `to` NULL or `veil_sockaddr`s; `data` valid for
/// reads and writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_handle_datagram(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    from: *const veil_sockaddr,
    to: *const veil_sockaddr,
    data: *mut u8,
    len: usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        // SAFETY: the caller promises veil_sockaddrs.
        let meta = unsafe {
            RecvMeta {
                from: addr::read(from)?,
                to: addr::read(to)?,
            }
        };
        // An empty datagram is fed as such: the engine drops and counts it.
        let datagram = match len {
            0 if !data.is_null() => &mut [],
            // SAFETY: the caller promises `len` readable and writable bytes at `data`.
            _ => unsafe { ptr::buffer(data, len) }?,
        };
        let now = endpoint.clock.instant(now_ns);
        endpoint.engine.handle_datagram(now, meta, datagram);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Tells the endpoint that `now_ns` has come; call it when the deadline from
/// `veil_endpoint_poll_timeout` is reached (early is harmless).
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_handle_timeout(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let now = endpoint.clock.instant(now_ns);
        endpoint.engine.handle_timeout(now);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Writes the next datagram to send (or a GSO batch of same-size datagrams) to the start
/// of `out` and describes it in `*transmit`. Call until `VEIL_DONE`.
///
/// `out_len` must be at least the configured send size (1350 by default); 65536 lets the
/// engine batch up to 64 segments.
///
/// Results: `VEIL_OK` (a datagram is in `out`), `VEIL_DONE` (nothing to send now),
/// `VEIL_ERR_BUFFER_TOO_SMALL`, `VEIL_ERR_NULL`.
///
/// # Safety
/// `endpoint` must be NULL or live; `out` valid for writes of `out_len` bytes; `transmit`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_poll_transmit(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    out: *mut u8,
    out_len: usize,
    transmit: *mut veil_transmit,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let transmit = ptr::out(transmit)?;
        // SAFETY: the caller promises `out_len` writable bytes at `out`.
        let out = unsafe { ptr::buffer(out, out_len) }?;
        if out.len() < endpoint.min_transmit {
            return Err(VEIL_ERR_BUFFER_TOO_SMALL);
        }
        let now = endpoint.clock.instant(now_ns);
        let Some(sent) = endpoint.engine.poll_transmit(now, out) else {
            return Ok(VEIL_DONE);
        };
        let value = veil_transmit {
            to: sent.to.into(),
            from: sent.from.into(),
            len: sent.len,
            segment_size: sent.segment_size.unwrap_or(0),
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(transmit, value) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Writes to `*deadline_ns` when `veil_endpoint_handle_timeout` should be called next, on
/// the caller's clock. `VEIL_DONE` and `VEIL_NO_TIMEOUT` when no timer is needed. A
/// deadline in the past means "now".
///
/// # Safety
/// `endpoint` must be NULL or live; `deadline_ns` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_poll_timeout(
    endpoint: *const veil_endpoint,
    deadline_ns: *mut u64,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(deadline_ns)?;
        let (deadline, result) = match endpoint.engine.poll_timeout() {
            Some(at) => (endpoint.clock.nanos(at), VEIL_OK),
            None => (VEIL_NO_TIMEOUT, VEIL_DONE),
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, deadline) };
        Ok(result)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Writes to `*count` how many of the endpoint's connections are on a path longer than a
/// LAN: their smallest round trip took over 5 ms during the handshake and still does, or,
/// after the peer moved to another path, the new path's does. For the host's UDP socket
/// buffers: across such a path the receiving socket is the path's only queue and the
/// kernel's default size a small part of its bandwidth-delay product (over a 20 ms path a
/// tunnel moved 12 MiB/s at 208 KiB and 80-90 at 1 MiB), while on loopback or a LAN a
/// larger buffer only lets a saturating transfer queue longer in front of small
/// exchanges. veil's own hosts ask for 1 MiB (`SO_RCVBUF`, `SO_SNDBUF`) while it is above
/// zero, more as `veil_endpoint_received_flight` grows, and go back to the kernel's sizes
/// when it falls to zero: `veil_endpoint_socket_buffers` gives a C host the same sizes.
///
/// # Safety
/// `endpoint` must be NULL or live; `count` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_long_paths(
    endpoint: *const veil_endpoint,
    count: *mut usize,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(count)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, endpoint.engine.long_paths()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Writes to `*resize` the size to set the endpoint's UDP socket's buffers to now
/// (`SO_RCVBUF` and `SO_SNDBUF`, or their `FORCE` forms past `net.core.rmem_max`), or 0 to
/// leave them: the rule veil's own hosts follow, decided here once for every host. Ask
/// after every round of work (feeding datagrams, handling the timeout, draining
/// transmits), so that a long path's first flight already finds the larger queue.
///
/// While a connection is on a long path (`veil_endpoint_long_paths`), the buffers hold
/// twice the largest flight (`veil_endpoint_received_flight`), rounded up to a power of
/// two, between 1 MiB and 16 MiB, and never shrink while a path is long; when none is
/// left, the size they were asked to be before (0 if that is not known: they stay).
/// `started`: the receive buffer size the kernel reports for the socket
/// (`getsockopt(SO_RCVBUF)`) before the first resize, twice what was asked for on Linux,
/// or 0 if not known; read only at the first resize.
///
/// # Safety
/// `endpoint` must be NULL or live; `resize` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_socket_buffers(
    endpoint: *mut veil_endpoint,
    started: usize,
    resize: *mut usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(resize)?;
        // The kernel reports twice what was asked for; the sizer halves it back.
        let reported = || (started > 0).then_some(started);
        let size = endpoint.buffers.fit(&endpoint.engine, reported);
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, size.unwrap_or(0)) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Writes to `*bytes` the most bytes one of the endpoint's connections on a long path
/// (`veil_endpoint_long_paths`) received in one round trip since it last had none: the
/// flight its peer keeps in the air, which the receiving UDP socket must hold while the
/// host is off its CPU; 0 without a long path. veil's own hosts keep their QUIC socket's
/// buffers at twice it, rounded up to a power of two, between 1 MiB and 16 MiB, as Linux
/// grows a TCP receiver's buffer to twice what was read in a round trip.
///
/// # Safety
/// `endpoint` must be NULL or live; `bytes` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_received_flight(
    endpoint: *const veil_endpoint,
    bytes: *mut usize,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(bytes)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, endpoint.engine.received_flight()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Writes the next event, oldest first, to `*event`. Call until `VEIL_DONE`.
///
/// # Safety
/// `endpoint` must be NULL or live; `event` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_poll_event(
    endpoint: *mut veil_endpoint,
    event: *mut veil_event,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(event)?;
        // Events a newer engine adds and this ABI has no kind for are skipped.
        while let Some(next) = endpoint.engine.poll_event() {
            if let Some(value) = veil_event::from_engine(next) {
                // SAFETY: checked non-NULL and aligned; writable as the caller promises.
                unsafe { ptr::put(out, value) };
                return Ok(VEIL_OK);
            }
        }
        Ok(VEIL_DONE)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Edge: whether egress policy lets a tunnel go to the IP address in `addr` (its port is
/// ignored), for hosts that resolved a name: `VEIL_OK`, or `VEIL_ERR_PROHIBITED` (refuse
/// with `VEIL_REFUSAL_PROHIBITED`). A client has no policy and answers `VEIL_OK`.
///
/// # Safety
/// `endpoint` must be NULL or live; `addr` NULL or a `veil_sockaddr`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_check_egress(
    endpoint: *const veil_endpoint,
    addr: *const veil_sockaddr,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        // SAFETY: the caller promises a veil_sockaddr.
        let addr = unsafe { addr::read(addr) }?;
        match endpoint.engine.check_egress(addr.ip()) {
            Ok(()) => Ok(VEIL_OK),
            Err(_) => Err(VEIL_ERR_PROHIBITED),
        }
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Edge: starts a graceful drain. Sends HTTP/3 GOAWAY on every connection, accepts no
/// new connections, and rejects later requests unprocessed (`H3_REQUEST_REJECTED`: the
/// client retries them elsewhere); open tunnels carry on. Call `veil_endpoint_close`
/// when they are done or the drain's deadline passes. A client: no-op.
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_go_away(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let now = endpoint.clock.instant(now_ns);
        endpoint.engine.go_away(now);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// The whole graceful shutdown, run by the engine: an edge sends HTTP/3 GOAWAY and a
/// client takes no new tunnels; open TCP tunnels go on for at most `drain_ms` and until the
/// peer has acknowledged the end of every finished one; then the tunnels left are cut
/// (`VEIL_EVENT_TUNNEL_CLOSED` with `VEIL_CLOSE_CONNECTION_LOST`), every connection sends
/// `CONNECTION_CLOSE` with `close_code` (0x100, `H3_NO_ERROR`, for a clean stop) and has
/// at most `grace_ms` to finish closing. Every deadline comes out of
/// `veil_endpoint_poll_timeout`: keep the usual loop until `veil_endpoint_is_closed` says
/// so. A second call changes nothing.
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_shutdown(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    drain_ms: u64,
    close_code: u64,
    grace_ms: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let now = endpoint.clock.instant(now_ns);
        let plan = ShutdownPlan {
            drain: Duration::from_millis(drain_ms),
            close_code,
            grace: Duration::from_millis(grace_ms),
        };
        endpoint.engine.shutdown(now, plan);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Graceful shutdown: GOAWAY, then `CONNECTION_CLOSE` with `error_code` and `reason`
/// (`reason_len` bytes, may be 0) on every connection; a client stops reconnecting and
/// refuses waiting tunnels. Keep polling until `veil_endpoint_is_closed` says so.
///
/// # Safety
/// `endpoint` must be NULL or live; `reason` valid for reads of `reason_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_close(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    error_code: u64,
    reason: *const u8,
    reason_len: usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        // SAFETY: the caller promises `reason_len` readable bytes.
        let reason = unsafe { ptr::bytes(reason, reason_len) }?;
        let now = endpoint.clock.instant(now_ns);
        endpoint.engine.close(now, error_code, reason);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Writes whether every connection has drained (after `veil_endpoint_close`, or before
/// any connection existed).
///
/// # Safety
/// `endpoint` must be NULL or live; `closed` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_is_closed(
    endpoint: *const veil_endpoint,
    closed: *mut bool,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(closed)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, endpoint.engine.is_closed()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Writes the endpoint's counters in the Prometheus text format (`OpenMetrics`, what an
/// HTTP `GET /metrics` answers with) to `out`, NUL-terminated, and its length without the
/// NUL to `*len_out`. A host with several endpoints (one per core) can add their
/// `veil_stats` up itself, or serve one text per endpoint with a label of its own.
///
/// Results: `VEIL_OK`; `VEIL_ERR_BUFFER_TOO_SMALL` (`len` is not larger than the text;
/// `*len_out` still says how long it is); `VEIL_ERR_NULL`.
///
/// # Safety
/// `endpoint` must be NULL or live; `out` NULL or writable for `len` bytes; `len_out` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_metrics_text(
    endpoint: *const veil_endpoint,
    out: *mut std::ffi::c_char,
    len: usize,
    len_out: *mut usize,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let len_out = ptr::out(len_out)?;
        if out.is_null() {
            return Err(VEIL_ERR_NULL);
        }
        let text = veil_engine::metrics::encode_text(&endpoint.engine.stats());
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(len_out, text.len()) };
        if text.len() >= len {
            return Err(VEIL_ERR_BUFFER_TOO_SMALL);
        }
        // SAFETY: `out` is non-NULL and the caller promises `len` writable bytes; the
        // text and its NUL fit (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().cast(), out, text.len());
            out.add(text.len()).write(0);
        }
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Writes the endpoint's counters to `*stats`.
///
/// # Safety
/// `endpoint` must be NULL or live; `stats` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_stats(
    endpoint: *const veil_endpoint,
    stats: *mut veil_stats,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(stats)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, endpoint.engine.stats().into()) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}
