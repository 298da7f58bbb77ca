//! The edge's TCP on-ramp in C: connections the embedder accepted on its own TCP listener
//! (TLS with ALPN h2, then HTTP/2), their bytes in and out. The engine does TLS, HTTP/2 and
//! every decision; the embedder moves bytes:
//!
//! 1. `veil_endpoint_accept_tcp` for each accepted socket gives the connection's id;
//! 2. every read goes to `veil_endpoint_tcp_input`; EOF or an error to
//!    `veil_endpoint_tcp_closed`;
//! 3. after any call, `veil_endpoint_poll_tcp_ready` names connections with bytes to write,
//!    and `veil_endpoint_tcp_transmit` copies them out, as fast as the socket takes them;
//! 4. `VEIL_EVENT_CONNECTION_LOST` for the connection: close the socket (its last bytes
//!    were already taken).
//!
//! Its tunnels are the same tunnels, with the same events and calls, as QUIC's.

use veil_engine::ConnectionHandle;

use crate::addr;
use crate::addr::veil_sockaddr;
use crate::endpoint::{veil_endpoint, with_endpoint};
use crate::ptr;
use crate::result::veil_result::{
    self, VEIL_DONE, VEIL_ERR_CLOSING, VEIL_ERR_QUEUE_FULL, VEIL_ERR_WRONG_ROLE, VEIL_OK,
};

/// Edge: takes a TCP connection the embedder accepted, from `peer` to `local`; writes its
/// id to `*connection`. `VEIL_ERR_WRONG_ROLE` on a client, `VEIL_ERR_CLOSING` while
/// shutting down, `VEIL_ERR_QUEUE_FULL` at the connection limit (close the socket).
///
/// # Safety
/// `endpoint` must be NULL or live; `peer`, `local` NULL or `veil_sockaddr`s;
/// `connection` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_accept_tcp(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    peer: *const veil_sockaddr,
    local: *const veil_sockaddr,
    connection: *mut u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let connection = ptr::out(connection)?;
        // SAFETY: the caller promises veil_sockaddrs.
        let (peer, local) = unsafe { (addr::read(peer)?, addr::read(local)?) };
        let now = endpoint.clock.instant(now_ns);
        let handle =
            endpoint
                .engine
                .accept_tcp(now, peer, local)
                .map_err(|refused| match refused {
                    veil_engine::TcpRefused::NotEdge => VEIL_ERR_WRONG_ROLE,
                    veil_engine::TcpRefused::Closing => VEIL_ERR_CLOSING,
                    veil_engine::TcpRefused::TooManyConnections => VEIL_ERR_QUEUE_FULL,
                    _ => veil_result::VEIL_ERR_OTHER,
                })?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(connection, handle.0) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Bytes read from a TCP connection's socket (not kept after the call).
///
/// # Safety
/// `endpoint` must be NULL or live; `data` valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tcp_input(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    connection: u64,
    data: *const u8,
    len: usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        // SAFETY: the caller promises `len` readable bytes at `data`.
        let bytes = unsafe { ptr::bytes(data, len) }?;
        let now = endpoint.clock.instant(now_ns);
        endpoint
            .engine
            .tcp_input(now, ConnectionHandle(connection), bytes);
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// A TCP connection's socket ended (EOF, or a read or write error).
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tcp_closed(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    connection: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let now = endpoint.clock.instant(now_ns);
        endpoint
            .engine
            .tcp_closed(now, ConnectionHandle(connection));
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Writes to `*connection` the next TCP connection with bytes to write (each once per
/// change). `VEIL_DONE`: none.
///
/// # Safety
/// `endpoint` must be NULL or live; `connection` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_poll_tcp_ready(
    endpoint: *mut veil_endpoint,
    connection: *mut u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let connection = ptr::out(connection)?;
        let Some(handle) = endpoint.engine.poll_tcp_ready() else {
            return Ok(VEIL_DONE);
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(connection, handle.0) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Copies up to `out_len` bytes to write to a TCP connection's socket into `out`; writes
/// how many to `*written`. `VEIL_DONE` (and 0): nothing now. Bytes not taken stay in the
/// engine, which then holds its tunnels back: the socket is the backpressure.
///
/// # Safety
/// `endpoint` must be NULL or live; `out` valid for writes of `out_len` bytes; `written`
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tcp_transmit(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    connection: u64,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let written = ptr::out(written)?;
        // SAFETY: the caller promises `out_len` writable bytes at `out`.
        let out = unsafe { ptr::buffer(out, out_len) }?;
        let now = endpoint.clock.instant(now_ns);
        let len = endpoint
            .engine
            .tcp_transmit(now, ConnectionHandle(connection), out);
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(written, len) };
        Ok(if len == 0 { VEIL_DONE } else { VEIL_OK })
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}
