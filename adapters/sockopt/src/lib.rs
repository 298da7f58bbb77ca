//! Socket options that veil's Rust hosts set alike, whatever runtime drives the socket:
//! the tokio host's driver and the glommio edge's cores both size their QUIC socket's
//! buffers here, when `veil_engine::socket_buffers::BufferSizer` says so.
//!
//! The C ABI's hosts own their sockets and do the same themselves, at the size
//! `veil_endpoint_socket_buffers` gives them (`veil.h`).

use std::os::fd::AsFd;

use rustix::net::sockopt;

/// Asks for `bytes` of receive and of send buffer on `socket`, and logs what the kernel
/// granted.
///
/// The kernel caps what a process asks for at `net.core.rmem_max` / `wmem_max` (208 KiB
/// on a stock Debian) and reports twice what it keeps for the data, its bookkeeping
/// included. Where it capped them, a process allowed to (`CAP_NET_ADMIN`) asks again past
/// the cap (`SO_RCVBUFFORCE`, `SO_SNDBUFFORCE`); otherwise the cap stands and is logged as
/// a warning naming the two sysctls to raise. A refusal is logged, not fatal: the socket
/// works at any size, only slower across long paths.
pub fn size_buffers(socket: impl AsFd, bytes: usize) {
    let socket = socket.as_fd();
    let asked = (
        sockopt::set_socket_recv_buffer_size(socket, bytes),
        sockopt::set_socket_send_buffer_size(socket, bytes),
    );
    if let (Err(error), _) | (_, Err(error)) = asked {
        tracing::warn!(%error, bytes, "cannot size the UDP socket buffers");
        return;
    }
    let granted = || {
        let recv = sockopt::socket_recv_buffer_size(socket).ok()?;
        let send = sockopt::socket_send_buffer_size(socket).ok()?;
        Some((recv, send))
    };
    let mut now = granted();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if now.is_some_and(|reported| capped(bytes, reported)) {
        // Refused without CAP_NET_ADMIN: then the cap stands, and is reported below.
        let _ = sockopt::set_socket_recv_buffer_size_force(socket, bytes);
        let _ = sockopt::set_socket_send_buffer_size_force(socket, bytes);
        now = granted();
    }
    match now {
        Some((recv, send)) if capped(bytes, (recv, send)) => tracing::warn!(
            asked = bytes,
            recv,
            send,
            "the kernel capped the UDP socket buffers: raise net.core.rmem_max and \
             net.core.wmem_max for long, fast paths (docs/CONFIG.md, socket buffers)"
        ),
        Some((recv, send)) => tracing::info!(asked = bytes, recv, send, "UDP socket buffers"),
        None => tracing::warn!(bytes, "cannot read the UDP socket buffers back"),
    }
}

/// Whether the kernel kept less than `asked` bytes of receive or send buffer, from the
/// sizes it reports (`SO_RCVBUF`, `SO_SNDBUF`: twice what it keeps for the data).
fn capped(asked: usize, (reported_recv, reported_send): (usize, usize)) -> bool {
    reported_recv / 2 < asked || reported_send / 2 < asked
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_kernels_doubled_report_is_not_a_cap_but_less_is() {
        assert!(!capped(MIB, (2 * MIB, 2 * MIB)));
        assert!(
            capped(MIB, (425_984, 2 * MIB)),
            "net.core.rmem_max at 208 KiB"
        );
        assert!(capped(MIB, (2 * MIB, 425_984)));
    }

    /// Whether this process may ask past the kernel's cap: `CAP_NET_ADMIN` (bit 12) in
    /// its effective capabilities.
    fn may_pass_the_cap() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let effective = status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .expect("CapEff");
        effective & (1 << 12) != 0
    }

    #[test]
    fn a_socket_gets_past_the_cap_where_the_process_may_and_the_cap_where_not() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .expect("rmem_max")
            .trim()
            .parse()
            .expect("a number");
        let asked = 2 * max;
        size_buffers(&socket, asked);
        let recv = sockopt::socket_recv_buffer_size(&socket).expect("SO_RCVBUF");
        let expected = if may_pass_the_cap() { asked } else { max };
        assert_eq!(recv, 2 * expected, "rmem_max {max}, asked {asked}");
    }
}
