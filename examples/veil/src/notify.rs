//! systemd's readiness protocol (`Type=notify`, `sd_notify(3)`): when `NOTIFY_SOCKET` is
//! set, `veil server` and `veil client` send `READY=1` once their listeners are bound and
//! `STOPPING=1` when a signal starts their drain, as one datagram each on that Unix socket.
//! Without the variable nothing is sent. A failure to send is logged, never fatal: the
//! service works the same, systemd only learns less.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`) to the service manager, if there is one.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): the name after the `@`.
            #[cfg(target_os = "linux")]
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            _ => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify the service manager");
    }
}
