//! The edge's TCP on-ramp in C: connections the embedder accepted on its own TCP listener
//! (TLS with ALPN h2, then HTTP/2), their bytes in and out. The engine does TLS, HTTP/2 and
//! every decision; the embedder moves bytes:
//!
//! 1. `veil_endpoint_accept_tcp` for each accepted socket gives the connection's id;
//! 2. every read goes to `veil_endpoint_tcp_input`; EOF or an error to
//!    `veil_endpoint_tcp_closed`; while `veil_endpoint_tcp_wants_input` says no, the socket
//!    is left unread (no `POLLIN`) until `veil_endpoint_poll_tcp_ready` names it again
//!    (HTTP/1.1 has no flow control: this is its backpressure);
//! 3. after any call, `veil_endpoint_poll_tcp_ready` names connections with bytes to write,
//!    and `veil_endpoint_tcp_transmit` copies them out, as fast as the socket takes them;
//! 4. `VEIL_EVENT_CONNECTION_LOST` for the connection: close the socket (its last bytes
//!    were already taken).
//!
//! Its tunnels are the same tunnels, with the same events and calls, as QUIC's.

use veil_engine::ConnectionHandle;

use crate::addr;
use crate::addr::veil_sockaddr;
use crate::endpoint::{veil_endpoint, with_endpoint, with_endpoint_ref};
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

/// Writes whether the engine wants more bytes from a TCP connection's socket now. False
/// while an HTTP/1.1 tunnel holds 256 KiB its application has not taken, and once the
/// connection is over: stop polling the socket for `POLLIN`, and ask again when
/// `veil_endpoint_poll_tcp_ready` names the connection. Bytes read past a `false` are still
/// taken whole.
///
/// # Safety
/// `endpoint` must be NULL or live; `wants` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tcp_wants_input(
    endpoint: *const veil_endpoint,
    connection: u64,
    wants: *mut bool,
) -> veil_result {
    let body = |endpoint: &veil_endpoint| {
        let out = ptr::out(wants)?;
        let value = endpoint
            .engine
            .tcp_wants_input(ConnectionHandle(connection));
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, value) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint_ref(endpoint, body) }
}

/// Client: the socket `VEIL_EVENT_TCP_DIAL` asked for is connected; TLS starts.
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tcp_connected(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    connection: u64,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe {
        tell(
            endpoint,
            now_ns,
            connection,
            veil_engine::Endpoint::tcp_connected,
        )
    }
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
    // SAFETY: the caller's promises are forwarded.
    unsafe {
        tell(
            endpoint,
            now_ns,
            connection,
            veil_engine::Endpoint::tcp_closed,
        )
    }
}

/// Tells the engine something happened to a TCP connection's socket at `now_ns`.
///
/// # Safety
/// `endpoint` must be NULL or live.
unsafe fn tell(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    connection: u64,
    what: fn(&mut veil_engine::Endpoint, std::time::Instant, ConnectionHandle),
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let now = endpoint.clock.instant(now_ns);
        what(&mut endpoint.engine, now, ConnectionHandle(connection));
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

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;
    use crate::config::{
        veil_config, veil_config_free, veil_config_new, veil_config_set_edge,
        veil_config_set_transport, veil_config_verify_insecure, veil_role, veil_transport,
    };
    use crate::endpoint::{veil_endpoint_free, veil_endpoint_new, veil_endpoint_poll_event};
    use crate::event::{veil_event, veil_event_kind};
    use crate::tunnel::veil_endpoint_open_tunnel;

    /// A client with `VEIL_TRANSPORT_H2` asks its embedder to dial the edge over TCP, and a
    /// failed dial is taken as a lost connection.
    #[test]
    fn an_h2_client_asks_for_a_tcp_dial() {
        let mut config: *mut veil_config = std::ptr::null_mut();
        let edge_addr: std::net::SocketAddr = "127.0.0.1:4433".parse().expect("addr");
        let edge = veil_sockaddr::from(edge_addr);
        let name = CString::new("localhost").expect("cstr");
        let host = CString::new("example.test").expect("cstr");
        // SAFETY: every pointer below is live and of the right type for the call.
        unsafe {
            assert_eq!(
                veil_config_new(veil_role::VEIL_ROLE_CLIENT as i32, &raw mut config),
                VEIL_OK
            );
            assert_eq!(
                veil_config_set_edge(config, &raw const edge, name.as_ptr()),
                VEIL_OK
            );
            assert_eq!(veil_config_verify_insecure(config), VEIL_OK);
            assert_eq!(
                veil_config_set_transport(config, veil_transport::VEIL_TRANSPORT_H2 as i32),
                VEIL_OK
            );
            assert_ne!(veil_config_set_transport(config, 7), VEIL_OK);
            let mut endpoint: *mut veil_endpoint = std::ptr::null_mut();
            assert_eq!(veil_endpoint_new(config, 1, &raw mut endpoint), VEIL_OK);
            veil_config_free(config);
            let mut tunnel = 0u64;
            assert_eq!(
                veil_endpoint_open_tunnel(endpoint, 2, host.as_ptr(), 443, &raw mut tunnel),
                VEIL_OK
            );
            // poll_event writes a whole event when it returns VEIL_OK.
            let mut slot = std::mem::MaybeUninit::<veil_event>::uninit();
            let mut dial = None;
            while veil_endpoint_poll_event(endpoint, slot.as_mut_ptr()) == VEIL_OK {
                let event = slot.assume_init_ref();
                if event.kind == veil_event_kind::VEIL_EVENT_TCP_DIAL {
                    let to = crate::addr::read(&raw const event.peer).expect("address");
                    assert_eq!(to, edge_addr);
                    dial = Some(event.connection);
                }
            }
            let connection = dial.expect("no VEIL_EVENT_TCP_DIAL");
            assert_eq!(veil_endpoint_tcp_closed(endpoint, 3, connection), VEIL_OK);
            let mut lost = false;
            while veil_endpoint_poll_event(endpoint, slot.as_mut_ptr()) == VEIL_OK {
                let event = slot.assume_init_ref();
                lost |= event.kind == veil_event_kind::VEIL_EVENT_CONNECTION_LOST
                    && event.connection == connection;
            }
            assert!(lost, "a failed dial was not a lost connection");
            veil_endpoint_free(endpoint);
        }
    }
}
