//! Edge TCP tunnels on one core: from a tunnel request to a dialled TCP stream (resolve once,
//! see [`crate::resolve`]; the engine's egress policy picks the first allowed address; dial exactly
//! that address with a timeout), then the relay between the stream and the tunnel.
//!
//! Backpressure: each direction holds at most one chunk. Towards the target, the relay reads
//! the engine only after the previous chunk was written, so QUIC flow control holds the
//! client back; towards the client, it reads TCP only after the engine took the previous
//! chunk, so TCP flow control holds the target back. Target EOF → FIN, target failure →
//! tunnel reset; tunnel FIN → TCP half-close, tunnel reset → TCP RST.
//!
//! A client that finished its direction and then stopped ours (`STOP_SENDING`: its
//! application reset after sending everything) is not a reset for the target: every byte
//! and the FIN are written, and the target connection closes cleanly after a lingering
//! read (see [`linger`]).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use veil_engine::{Recv, Refusal, TunnelId, TunnelTarget};

use crate::port::{Port, TunnelSignals};
use crate::resolve;

/// Bytes moved at once in each direction.
const CHUNK: usize = 64 * 1024;

/// A lingering close reads (and discards) what the target still sends for at most this
/// long in all, and at most [`LINGER_IDLE`] without a byte.
const LINGER_TOTAL: Duration = Duration::from_secs(30);
/// See [`LINGER_TOTAL`].
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// Dials the target of a tunnel request, answers it, and relays until both sides end.
pub(crate) async fn dial_and_relay(port: Rc<dyn Port>, tunnel: TunnelId, target: TunnelTarget) {
    let timeout = port.connect_timeout();
    let result = dial(&*port, tunnel, &target, timeout).await;
    if let Err(refusal) = &result {
        tracing::info!(?tunnel, %target, ?refusal, "dial failed");
    }
    let (stream, accepted) = match result {
        Ok(stream) => {
            let accepted = port.answer(tunnel, Ok(()));
            (stream, accepted)
        }
        Err(refusal) => {
            port.answer(tunnel, Err(refusal));
            return;
        }
    };
    let Some(signals) = accepted else { return };
    relay(&*port, tunnel, &signals, stream).await;
}

/// Resolves `target`, lets the engine choose the address, and connects to it; the engine
/// also says what a failure becomes.
async fn dial(
    port: &dyn Port,
    tunnel: TunnelId,
    target: &TunnelTarget,
    timeout: Duration,
) -> Result<TcpStream, Refusal> {
    let addrs = resolve::resolve(target, timeout).await?;
    // The address that passed the check is the one dialled: no second lookup can swap it.
    let egress = port.egress_for(tunnel, &addrs)?;
    if egress.from.is_some() {
        // glommio's TcpStream connects from an address the kernel picks; binding first
        // would need a socket of our own. Refused rather than dialled from elsewhere.
        tracing::warn!(
            ?tunnel,
            "the glommio host cannot dial TCP from a chosen source address"
        );
        return Err(Refusal::Internal);
    }
    let addr = egress.to;
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(|e| Refusal::from_io_error(&io::Error::from(e)))?;
    // Tunnel bytes arrive in bursts already; don't hold small writes back.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Relays between `stream` and the tunnel until both directions ended.
async fn relay(port: &dyn Port, tunnel: TunnelId, signals: &TunnelSignals, stream: TcpStream) {
    let fd = stream.as_raw_fd();
    let (mut reader, writer) = futures_lite::io::split(stream);
    let upstream = to_client(port, tunnel, signals, &mut reader);
    let downstream = to_target(port, tunnel, signals, writer);
    let (up, down) = future::zip(upstream, downstream).await;
    // The client's bytes and FIN are all written, and only our direction was refused: the
    // client stopped it (or its connection went) after finishing. A reset would make the
    // kernel drop whatever the target has not read yet.
    let peer_stopped = down.is_ok() && matches!(up, Err(Stopped::Tunnel));
    if peer_stopped {
        linger(&mut reader).await;
    } else if signals.was_reset() || up.is_err() || down.is_err() {
        reset_on_close(fd);
    }
    tracing::debug!(?tunnel, ?up, ?down, peer_stopped, "relay ended");
}

/// Reads and discards what the target sends until it closes, fails, or the linger bounds
/// pass, so that closing afterwards finds nothing unread: Linux answers a close with
/// unread bytes with RST, which drops what the target has not read of ours.
async fn linger(reader: &mut ReadHalf<TcpStream>) {
    let give_up = Instant::now() + LINGER_TOTAL;
    let mut discard = vec![0; 16 * 1024];
    loop {
        let idle = LINGER_IDLE.min(give_up.saturating_duration_since(Instant::now()));
        let read = future::or(async { Some(reader.read(&mut discard).await) }, async {
            Timer::new(idle).await;
            None
        })
        .await;
        if !matches!(read, Some(Ok(len)) if len > 0) {
            return;
        }
    }
}

/// Why a direction stopped early.
#[derive(Debug)]
enum Stopped {
    /// The tunnel was reset or its connection lost.
    Tunnel,
    /// The TCP side failed.
    Target,
}

/// Target → client: TCP reads become tunnel sends; EOF becomes FIN.
async fn to_client(
    port: &dyn Port,
    tunnel: TunnelId,
    signals: &TunnelSignals,
    reader: &mut ReadHalf<TcpStream>,
) -> Result<(), Stopped> {
    let mut buf = vec![0; CHUNK];
    loop {
        let read = future::or(async { Some(reader.read(&mut buf).await) }, async {
            // A reset tunnel stops a read that may never end.
            while !signals.is_closed() {
                signals.writable.notified().await;
            }
            None
        })
        .await;
        let len = match read {
            None => return Err(Stopped::Tunnel),
            Some(Ok(0)) => {
                port.tunnel_finish(tunnel);
                return Ok(());
            }
            Some(Ok(len)) => len,
            Some(Err(e)) => {
                tracing::debug!(?tunnel, error = %e, "target read failed");
                port.tunnel_abort(tunnel);
                return Err(Stopped::Target);
            }
        };
        let mut offset = 0;
        while let Some(rest) = buf.get(offset..len).filter(|rest| !rest.is_empty()) {
            if signals.is_closed() {
                return Err(Stopped::Tunnel);
            }
            match port.tunnel_send(tunnel, rest) {
                Some(taken) => {
                    offset += taken;
                    if offset < len {
                        signals.writable.notified().await;
                    }
                }
                None => return Err(Stopped::Tunnel),
            }
        }
    }
}

/// Client → target: tunnel reads become TCP writes; FIN becomes a TCP half-close.
async fn to_target(
    port: &dyn Port,
    tunnel: TunnelId,
    signals: &TunnelSignals,
    mut writer: WriteHalf<TcpStream>,
) -> Result<(), Stopped> {
    let mut buf = vec![0; CHUNK];
    loop {
        // The engine says when the tunnel has bytes (`TunnelReadable`, edge-triggered); an
        // accepted tunnel is not readable before its first one.
        signals.readable.notified().await;
        loop {
            if signals.was_reset() {
                return Err(Stopped::Tunnel);
            }
            let Some(Recv { len, fin }) = port.tunnel_recv(tunnel, &mut buf) else {
                if signals.is_closed() {
                    return Err(Stopped::Tunnel);
                }
                // Not readable yet: wait for the engine's next word.
                break;
            };
            if len > 0 {
                let bytes = buf.get(..len).unwrap_or_default();
                if let Err(e) = writer.write_all(bytes).await {
                    tracing::debug!(?tunnel, error = %e, "target write failed");
                    port.tunnel_abort(tunnel);
                    return Err(Stopped::Target);
                }
            }
            if fin {
                // Half-close: the target sees EOF and may still answer.
                let _ = writer.close().await;
                return Ok(());
            }
            if len == 0 {
                break;
            }
        }
    }
}

/// Makes the coming close of `fd` send RST instead of FIN (`SO_LINGER` 0), so the target
/// sees the tunnel's reset.
fn reset_on_close(fd: RawFd) {
    let socket = socket2::SockRef::from(&fd);
    let _ = socket.set_linger(Some(Duration::ZERO));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_connection_refused() {
        crate::test_executor().run(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("address");
            drop(listener);
            let error = TcpStream::connect_timeout(addr, Duration::from_secs(2))
                .await
                .expect_err("nothing listens");
            assert_eq!(
                Refusal::from_io_error(&io::Error::from(error)),
                Refusal::ConnectionRefused
            );
        });
    }
}
