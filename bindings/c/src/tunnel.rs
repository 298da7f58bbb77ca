//! Tunnels: the edge's answer to a request, the client's open, byte I/O with explicit
//! backpressure (TCP tunnels) and datagram I/O (CONNECT-UDP tunnels).

use std::ffi::{c_char, c_int};

use std::time::Instant;

use veil_engine::{Endpoint, Host, OpenError, Refusal, TunnelId, TunnelKind, TunnelTarget};

use crate::endpoint::{veil_endpoint, with_endpoint};
use crate::ptr;
use crate::result::veil_result::{
    self, VEIL_DONE, VEIL_ERR_INVALID_ARGUMENT, VEIL_ERR_INVALID_STATE, VEIL_ERR_UNKNOWN_TUNNEL,
    VEIL_OK,
};

/// What a tunnel carries (`veil_event.tunnel_kind`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_tunnel_kind {
    /// HTTP/3 CONNECT: a TCP byte stream (`veil_endpoint_tunnel_send`/`_recv`).
    VEIL_TUNNEL_STREAM = 0,
    /// CONNECT-UDP (RFC 9298): UDP payloads (`veil_endpoint_tunnel_send_datagram`/
    /// `_recv_datagram`).
    VEIL_TUNNEL_UDP = 1,
}

/// Why an edge refuses a tunnel (the `refusal` argument of `veil_endpoint_refuse_tunnel`).
/// Each maps to an HTTP status and an RFC 9209 Proxy-Status error type.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum veil_refusal {
    /// Egress policy forbids the address: 403 `destination_ip_prohibited`.
    VEIL_REFUSAL_PROHIBITED = 0,
    /// Policy denies the request: 403 `http_request_denied`.
    VEIL_REFUSAL_DENIED = 1,
    /// The name did not resolve: 502 `dns_error`.
    VEIL_REFUSAL_DNS_ERROR = 2,
    /// The resolver did not answer in time: 504 `dns_timeout`.
    VEIL_REFUSAL_DNS_TIMEOUT = 3,
    /// The target refused the connection (`ECONNREFUSED`): 502 `connection_refused`.
    VEIL_REFUSAL_CONNECTION_REFUSED = 4,
    /// The connection attempt timed out: 504 `connection_timeout`.
    VEIL_REFUSAL_CONNECTION_TIMEOUT = 5,
    /// No route to the target (`ENETUNREACH`, `EHOSTUNREACH`): 502
    /// `destination_ip_unroutable`.
    VEIL_REFUSAL_UNREACHABLE = 6,
    /// The edge is at its limit of outbound connections: 503 `connection_limit_reached`.
    VEIL_REFUSAL_CONNECTION_LIMIT = 7,
    /// Anything else: 500 `proxy_internal_error`.
    VEIL_REFUSAL_INTERNAL = 8,
}

pub(crate) fn refusal(code: c_int) -> Option<Refusal> {
    Some(match code {
        0 => Refusal::Prohibited,
        1 => Refusal::Denied,
        2 => Refusal::DnsError,
        3 => Refusal::DnsTimeout,
        4 => Refusal::ConnectionRefused,
        5 => Refusal::ConnectionTimeout,
        6 => Refusal::Unreachable,
        7 => Refusal::ConnectionLimit,
        8 => Refusal::Internal,
        _ => return None,
    })
}

impl From<Refusal> for veil_refusal {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Prohibited => Self::VEIL_REFUSAL_PROHIBITED,
            Refusal::Denied => Self::VEIL_REFUSAL_DENIED,
            Refusal::DnsError => Self::VEIL_REFUSAL_DNS_ERROR,
            Refusal::DnsTimeout => Self::VEIL_REFUSAL_DNS_TIMEOUT,
            Refusal::ConnectionRefused => Self::VEIL_REFUSAL_CONNECTION_REFUSED,
            Refusal::ConnectionTimeout => Self::VEIL_REFUSAL_CONNECTION_TIMEOUT,
            Refusal::Unreachable => Self::VEIL_REFUSAL_UNREACHABLE,
            Refusal::ConnectionLimit => Self::VEIL_REFUSAL_CONNECTION_LIMIT,
            // A refusal this version of the ABI cannot name.
            _ => Self::VEIL_REFUSAL_INTERNAL,
        }
    }
}

/// The refusal a failed `connect`, `socket` or `bind` becomes, from its `errno` value
/// `err`: the same mapping every veil host uses (refused, timed out, unreachable; anything
/// else is `VEIL_REFUSAL_INTERNAL`). (Not named `errno`: in C that is a macro.)
#[unsafe(no_mangle)]
pub extern "C" fn veil_refusal_of_errno(err: c_int) -> veil_refusal {
    Refusal::from_errno(err).into()
}

/// Edge: answers a `VEIL_EVENT_TUNNEL_REQUEST` with 200; the tunnel then carries data.
/// Call it once the target is connected.
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_INVALID_STATE` (answered
/// already, or not a request).
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_accept_tunnel(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        endpoint.engine().accept_tunnel(TunnelId(tunnel))?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Edge: answers a `VEIL_EVENT_TUNNEL_REQUEST` with the status and Proxy-Status of
/// `refusal` (a `veil_refusal`); the tunnel id is dead afterwards.
///
/// Results: `VEIL_OK`; `VEIL_ERR_INVALID_ARGUMENT` (unknown refusal);
/// `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_INVALID_STATE`.
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_refuse_tunnel(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    refusal_code: c_int,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let refusal = refusal(refusal_code).ok_or(VEIL_ERR_INVALID_ARGUMENT)?;
        endpoint.engine().refuse_tunnel(TunnelId(tunnel), refusal)?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Client: opens a CONNECT tunnel to `host`:`port` (`host`: a DNS name or an IP address,
/// IPv6 without brackets) and writes its id to `*tunnel`. The endpoint connects to the
/// edge on the first open and reconnects with backoff; the answer comes as
/// `VEIL_EVENT_TUNNEL_OPENED` or `VEIL_EVENT_TUNNEL_REFUSED`.
///
/// Results: `VEIL_OK`; `VEIL_ERR_INVALID_ARGUMENT` (malformed host, port 0);
/// `VEIL_ERR_WRONG_ROLE` (an edge); `VEIL_ERR_QUEUE_FULL`; `VEIL_ERR_CLOSING`.
///
/// # Safety
/// `endpoint` must be NULL or live; `host` NULL or a NUL-terminated string; `tunnel` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_open_tunnel(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    host: *const c_char,
    port: u16,
    tunnel: *mut u64,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe { open_with(endpoint, now_ns, host, port, tunnel, Endpoint::open_tunnel) }
}

/// Sends up to `len` bytes on an open tunnel and writes how many were taken to `*taken`.
/// Fewer than `len` (or 0) means the tunnel is blocked: keep the rest and wait for
/// `VEIL_EVENT_TUNNEL_WRITABLE`. On an edge, sending between `accept` and the 200 going
/// out takes 0 bytes and a `WRITABLE` follows.
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_INVALID_STATE` (not open yet);
/// `VEIL_ERR_WRITE_CLOSED` (finished, or the peer stopped reading); `VEIL_ERR_STREAM`.
///
/// # Safety
/// `endpoint` must be NULL or live; `data` valid for reads of `len` bytes; `taken` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_send(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    data: *const u8,
    len: usize,
    taken: *mut usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(taken)?;
        // SAFETY: the caller promises `len` readable bytes at `data`.
        let data = unsafe { ptr::bytes(data, len) }?;
        let sent = endpoint.engine().tunnel_send(TunnelId(tunnel), data)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, sent) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Reads received bytes into `out` (`out_len` > 0): writes the count to `*read` and
/// whether the peer finished its direction (after those bytes) to `*fin`.
///
/// Results: `VEIL_OK` (`*read` > 0, or `*fin`); `VEIL_DONE` (nothing now: wait for
/// `VEIL_EVENT_TUNNEL_READABLE`); `VEIL_ERR_BUFFER_TOO_SMALL` (`out_len` is 0);
/// `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_INVALID_STATE`; `VEIL_ERR_STREAM` (reset by the
/// peer: a `VEIL_EVENT_TUNNEL_CLOSED` follows).
///
/// # Safety
/// `endpoint` must be NULL or live; `out` valid for writes of `out_len` bytes; `read` and
/// `fin` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_recv(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    out: *mut u8,
    out_len: usize,
    read: *mut usize,
    fin: *mut bool,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let (read, fin) = (ptr::out(read)?, ptr::out(fin)?);
        // SAFETY: the caller promises `out_len` writable bytes at `out`.
        let out = unsafe { ptr::buffer(out, out_len) }?;
        let received = endpoint.engine().tunnel_recv(TunnelId(tunnel), out)?;
        // SAFETY: both checked non-NULL and aligned; writable as the caller promises.
        unsafe {
            ptr::put(read, received.len);
            ptr::put(fin, received.fin);
        }
        Ok(if received.len == 0 && !received.fin {
            VEIL_DONE
        } else {
            VEIL_OK
        })
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Finishes our direction of the tunnel (FIN) after the bytes already sent; idempotent.
/// The tunnel closes (`VEIL_EVENT_TUNNEL_CLOSED`, finished) once both directions are done.
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_finish(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        endpoint.engine().tunnel_finish(TunnelId(tunnel))?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Resets the tunnel both ways with `H3_CONNECT_ERROR` (the target connection was reset
/// or failed); a client tunnel still waiting is dropped. The id is dead afterwards and no
/// event follows.
///
/// # Safety
/// `endpoint` must be NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_abort(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        endpoint.engine().tunnel_abort(TunnelId(tunnel))?;
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Parses the `host`/`port` arguments of the open calls.
///
/// # Safety
/// `host` must be NULL or a NUL-terminated string.
unsafe fn target(host: *const c_char, port: u16) -> Result<TunnelTarget, veil_result> {
    // SAFETY: forwarded from the caller.
    let host = unsafe { ptr::text(host) }?;
    let host: Host = host.parse().map_err(|_| VEIL_ERR_INVALID_ARGUMENT)?;
    if port == 0 {
        return Err(VEIL_ERR_INVALID_ARGUMENT);
    }
    Ok(TunnelTarget::new(host, port))
}

/// Client: opens a CONNECT-UDP tunnel (RFC 9298) to `host`:`port`, with the same waiting
/// and reconnect rules as `veil_endpoint_open_tunnel`, and writes its id to `*tunnel`.
/// After `VEIL_EVENT_TUNNEL_OPENED`, datagrams flow with
/// `veil_endpoint_tunnel_send_datagram` and `veil_endpoint_tunnel_recv_datagram`.
///
/// Results: as `veil_endpoint_open_tunnel` (`VEIL_ERR_INVALID_ARGUMENT` also when the
/// target does not fit the configured path template).
///
/// # Safety
/// `endpoint` must be NULL or live; `host` NULL or a NUL-terminated string; `tunnel` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_open_udp_tunnel(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    host: *const c_char,
    port: u16,
    tunnel: *mut u64,
) -> veil_result {
    // SAFETY: the caller's promises are forwarded.
    unsafe {
        open_with(
            endpoint,
            now_ns,
            host,
            port,
            tunnel,
            Endpoint::open_udp_tunnel,
        )
    }
}

/// Both opens: checks the arguments, opens with `open`, writes the id to `*tunnel`.
///
/// # Safety
/// As `veil_endpoint_open_tunnel`.
unsafe fn open_with(
    endpoint: *mut veil_endpoint,
    now_ns: u64,
    host: *const c_char,
    port: u16,
    tunnel: *mut u64,
    open: fn(&mut Endpoint, Instant, &TunnelTarget) -> Result<TunnelId, OpenError>,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(tunnel)?;
        // SAFETY: the caller promises a NUL-terminated string.
        let target = unsafe { target(host, port) }?;
        let now = endpoint.clock().instant(now_ns);
        let id = open(endpoint.engine(), now, &target)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, id.0) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// UDP tunnel: sends one UDP payload (`len` bytes, may be 0) and writes to `*queued`
/// whether it was queued (`true`) or dropped and counted (`false`: larger than the
/// connection can carry now — see `veil_endpoint_tunnel_max_datagram_payload` — or a
/// queue is full), as UDP would; never fragmented.
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_NOT_UDP`;
/// `VEIL_ERR_INVALID_STATE` (not open yet).
///
/// # Safety
/// `endpoint` must be NULL or live; `data` valid for reads of `len` bytes; `queued` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_send_datagram(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    data: *const u8,
    len: usize,
    queued: *mut bool,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(queued)?;
        // SAFETY: the caller promises `len` readable bytes at `data`.
        let data = unsafe { ptr::bytes(data, len) }?;
        let sent = endpoint
            .engine()
            .tunnel_send_datagram(TunnelId(tunnel), data)?;
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, sent) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// UDP tunnel: moves the next received UDP payload into `out` and writes its length to
/// `*len`.
///
/// Results: `VEIL_OK`; `VEIL_DONE` (none queued: wait for `VEIL_EVENT_TUNNEL_DATAGRAMS`);
/// `VEIL_ERR_BUFFER_TOO_SMALL` (`out_len` is shorter than the payload, which stays
/// queued; `*len` is set to the length needed — 65527 bytes always suffice);
/// `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_NOT_UDP`; `VEIL_ERR_INVALID_STATE`.
///
/// # Safety
/// `endpoint` must be NULL or live; `out` valid for writes of `out_len` bytes; `len` NULL
/// or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_recv_datagram(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    out: *mut u8,
    out_len: usize,
    len: *mut usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let len = ptr::out(len)?;
        if out.is_null() {
            return Err(veil_result::VEIL_ERR_NULL);
        }
        // A zero-length buffer is valid here: an empty UDP payload fits in it.
        let buffer: &mut [u8] = if out_len == 0 {
            &mut []
        } else {
            // SAFETY: the caller promises `out_len` writable bytes at `out`.
            unsafe { ptr::buffer(out, out_len) }?
        };
        let (result, value) = match endpoint
            .engine()
            .tunnel_recv_datagram(TunnelId(tunnel), buffer)
        {
            Ok(Some(received)) => (VEIL_OK, received),
            Ok(None) => (VEIL_DONE, 0),
            Err(veil_engine::TunnelError::BufferTooSmall { needed }) => {
                (veil_result::VEIL_ERR_BUFFER_TOO_SMALL, needed)
            }
            Err(error) => return Err(error.into()),
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(len, value) };
        Ok(result)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// UDP tunnel: writes to `*max` the largest payload `veil_endpoint_tunnel_send_datagram`
/// can send now (what fits one QUIC DATAGRAM frame on the current path, or 65527 when
/// the tunnel uses capsules).
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL`; `VEIL_ERR_NOT_UDP`;
/// `VEIL_ERR_INVALID_STATE` (not open).
///
/// # Safety
/// `endpoint` must be NULL or live; `max` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_max_datagram_payload(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    max: *mut usize,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(max)?;
        let id = TunnelId(tunnel);
        let engine = endpoint.engine();
        let Some(payload) = engine.tunnel_max_datagram_payload(id) else {
            return Err(match engine.tunnel_kind(id) {
                None => VEIL_ERR_UNKNOWN_TUNNEL,
                Some(TunnelKind::Udp) => VEIL_ERR_INVALID_STATE,
                Some(_) => veil_result::VEIL_ERR_NOT_UDP,
            });
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, payload) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

/// Writes what a live tunnel carries (a `veil_tunnel_kind`) to `*kind`.
///
/// Results: `VEIL_OK`; `VEIL_ERR_UNKNOWN_TUNNEL`.
///
/// # Safety
/// `endpoint` must be NULL or live; `kind` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_endpoint_tunnel_kind(
    endpoint: *mut veil_endpoint,
    tunnel: u64,
    kind: *mut veil_tunnel_kind,
) -> veil_result {
    let body = |endpoint: &mut veil_endpoint| {
        let out = ptr::out(kind)?;
        let value = match endpoint.engine().tunnel_kind(TunnelId(tunnel)) {
            None => return Err(VEIL_ERR_UNKNOWN_TUNNEL),
            Some(TunnelKind::Udp) => veil_tunnel_kind::VEIL_TUNNEL_UDP,
            Some(_) => veil_tunnel_kind::VEIL_TUNNEL_STREAM,
        };
        // SAFETY: checked non-NULL and aligned; writable as the caller promises.
        unsafe { ptr::put(out, value) };
        Ok(VEIL_OK)
    };
    // SAFETY: the caller's promises are forwarded.
    unsafe { with_endpoint(endpoint, body) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_code_maps_to_the_engine_refusal_of_its_name() {
        let table = [
            (veil_refusal::VEIL_REFUSAL_PROHIBITED, Refusal::Prohibited),
            (veil_refusal::VEIL_REFUSAL_DENIED, Refusal::Denied),
            (veil_refusal::VEIL_REFUSAL_DNS_ERROR, Refusal::DnsError),
            (veil_refusal::VEIL_REFUSAL_DNS_TIMEOUT, Refusal::DnsTimeout),
            (
                veil_refusal::VEIL_REFUSAL_CONNECTION_REFUSED,
                Refusal::ConnectionRefused,
            ),
            (
                veil_refusal::VEIL_REFUSAL_CONNECTION_TIMEOUT,
                Refusal::ConnectionTimeout,
            ),
            (veil_refusal::VEIL_REFUSAL_UNREACHABLE, Refusal::Unreachable),
            (
                veil_refusal::VEIL_REFUSAL_CONNECTION_LIMIT,
                Refusal::ConnectionLimit,
            ),
            (veil_refusal::VEIL_REFUSAL_INTERNAL, Refusal::Internal),
        ];
        assert_eq!(table.len(), Refusal::ALL.len());
        for (code, engine) in table {
            assert_eq!(refusal(code as c_int), Some(engine));
        }
        assert_eq!(refusal(9), None);
        assert_eq!(refusal(-1), None);
    }
}
