//! Edge TCP tunnels on one core: from a tunnel request to a dialled TCP stream (resolve once,
//! see [`crate::resolve`]; the engine's egress policy picks the first allowed address; dial exactly
//! that address with a timeout), then the relay between the stream and the tunnel.
//!
//! Backpressure: each direction holds at most one chunk. Towards the target, the relay reads
//! the engine only after the previous chunk was written, so QUIC flow control holds the
//! client back; towards the client, it reads TCP only after the engine took the previous
//! chunk, so TCP flow control holds the target back.
//!
//! How a relay ends (FINs passed on as half-closes, resets both ways, a client that finished
//! and then stopped reading ours, the linger after it) is the engine's
//! [`veil_engine::relay::Relay`]: [`relay`] only moves bytes, reports what happened to
//! them, and does what it says.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use veil_engine::relay::{Relay, RelayAction, RelayEnd, RelayOutcome};
use veil_engine::{Recv, Refusal, TunnelId, TunnelTarget};

use crate::port::{Port, TunnelSignals};
use crate::resolve;
use crate::signal::Signal;

/// Bytes moved at once in each direction.
const CHUNK: usize = 64 * 1024;

/// Dials the target of a tunnel request, answers it, and relays until both sides end.
pub(crate) async fn dial_and_relay(port: Rc<dyn Port>, tunnel: TunnelId, target: TunnelTarget) {
    let timeout = port.connect_timeout();
    let result = dial(&*port, tunnel, &target, timeout).await;
    if let Err(refusal) = &result {
        tracing::info!(?tunnel, %target, ?refusal, "dial failed");
    }
    let (mut stream, accepted) = match result {
        Ok(stream) => {
            // Asked before the answer: the request is the engine's to describe until then.
            let preamble = stream
                .peer_addr()
                .ok()
                .and_then(|dialed| port.egress_preamble(tunnel, dialed));
            let accepted = port.answer(tunnel, Ok(()));
            (stream, accepted.map(|signals| (signals, preamble)))
        }
        Err(refusal) => {
            port.answer(tunnel, Err(refusal));
            return;
        }
    };
    let Some((signals, preamble)) = accepted else {
        return;
    };
    if let Some(preamble) = preamble {
        // A PROXY header for the origin before any tunnel byte; a failed write shows
        // again in the relay, which ends the tunnel.
        let _ = stream.write_all(&preamble).await;
    }
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
    let addrs = match port.cached_addresses(tunnel) {
        Some(addrs) => addrs,
        None => resolve::resolve(target, timeout).await?,
    };
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

/// Relays between `stream` and the tunnel until the engine's [`Relay`] says it is done:
/// the two directions report what happens to the bytes, a watcher reports the engine's
/// close of the tunnel and the relay's deadlines, and whoever reports does what the relay
/// says next ([`Shared::feed`]). The stream is closed when this returns (with RST if the
/// relay said so). Returns how it ended (`None` only if a bug left it hanging and failing
/// it did not end it either).
async fn relay(
    port: &dyn Port,
    tunnel: TunnelId,
    signals: &TunnelSignals,
    stream: TcpStream,
) -> Option<RelayOutcome> {
    let fd = stream.as_raw_fd();
    let (mut reader, mut writer) = futures_lite::io::split(stream);
    let shared = Shared {
        port,
        tunnel,
        signals,
        fd,
        relay: RefCell::new(Relay::new(RelayEnd::BothFinished)),
        news: Signal::default(),
    };
    let directions = async {
        future::zip(
            to_client(&shared, &mut reader),
            to_target(&shared, &mut writer),
        )
        .await;
        // Both directions reported their end: the relay is done, unless a report is
        // missing (a bug: it would hang otherwise).
        if shared.outcome().is_none() {
            tracing::warn!(?tunnel, "relay with nothing left to wait for: failing it");
            shared.feed(Relay::tcp_error);
        }
        shared.outcome()
    };
    // Whichever sees the end first; the other stops where it waits.
    let outcome = future::or(watch(&shared), directions).await;
    tracing::debug!(?tunnel, ?outcome, "relay ended");
    outcome
}

/// What one relay's tasks share: the engine's [`Relay`] and what its actions need.
struct Shared<'a> {
    port: &'a dyn Port,
    tunnel: TunnelId,
    signals: &'a TunnelSignals,
    /// The TCP stream's socket, for the actions that need no half: `shutdown(SHUT_WR)`
    /// and `SO_LINGER`.
    fd: RawFd,
    relay: RefCell<Relay>,
    /// Wakes the watcher: the relay ended, or has a deadline it did not have.
    news: Signal,
}

impl Shared<'_> {
    /// Reports one fact to the relay, then does what it says, in order. A failure while
    /// doing it is reported in turn. Never holds the relay across an `.await`.
    fn feed(&self, fact: impl FnOnce(&mut Relay, Instant)) {
        let now = Instant::now();
        let mut relay = self.relay.borrow_mut();
        let had_deadline = relay.poll_timeout().is_some();
        fact(&mut relay, now);
        while let Some(action) = relay.poll_action() {
            match action {
                RelayAction::FinishTunnel => {
                    if let Err(e) = self.port.tunnel_finish(self.tunnel) {
                        tracing::debug!(tunnel = ?self.tunnel, error = %e, "tunnel finish failed");
                        relay.tunnel_error(now, e);
                    }
                }
                RelayAction::ShutdownTcpWrite => {
                    // What closing glommio's write half does (a `shutdown(2)` at once),
                    // without needing the half.
                    let socket = socket2::SockRef::from(&self.fd);
                    if let Err(e) = socket.shutdown(Shutdown::Write) {
                        tracing::debug!(tunnel = ?self.tunnel, error = %e, "TCP shutdown failed");
                        relay.tcp_error(now);
                    }
                }
                // `to_client` discards from now on; wake it if it waits for the tunnel.
                RelayAction::DiscardTcp => self.signals.writable.notify(),
                RelayAction::AbortTunnel => self.port.tunnel_abort(self.tunnel),
                RelayAction::ResetTcp => reset_on_close(self.fd),
                // The stream closes when `relay` returns, right after `Done`.
                RelayAction::CloseTcp | RelayAction::Done(_) => {}
                other => tracing::debug!(tunnel = ?self.tunnel, ?other, "unknown relay action"),
            }
        }
        if relay.outcome().is_some() || (!had_deadline && relay.poll_timeout().is_some()) {
            self.news.notify();
        }
    }

    /// How the relay ended, once it has.
    fn outcome(&self) -> Option<RelayOutcome> {
        self.relay.borrow().outcome()
    }

    /// Whether the TCP side's bytes are read only to be dropped (the peer stopped ours).
    fn discards_tcp(&self) -> bool {
        self.relay.borrow().discards_tcp()
    }

    /// Whether the linger has discarded enough: no more reads (`Relay::tcp_reads_paused`).
    fn tcp_reads_paused(&self) -> bool {
        self.relay.borrow().tcp_reads_paused()
    }
}

/// Tells the relay of the engine's close of the tunnel, and of its deadlines (a glommio
/// [`Timer`] at [`Relay::poll_timeout`]); returns once the relay is done.
async fn watch(shared: &Shared<'_>) -> Option<RelayOutcome> {
    let mut told = false;
    loop {
        if let Some(outcome) = shared.outcome() {
            return Some(outcome);
        }
        if !told {
            if let Some(reason) = shared.signals.closed() {
                told = true;
                shared.feed(|relay, now| relay.tunnel_closed(now, reason));
                continue;
            }
        }
        let deadline = shared.relay.borrow().poll_timeout();
        let due = future::or(
            async {
                // A deadline that moved later only wakes this early, which is harmless.
                shared.news.notified().await;
                false
            },
            future::or(
                async {
                    if told {
                        future::pending::<()>().await;
                    }
                    shared.signals.ended.notified().await;
                    false
                },
                async {
                    sleep_until(deadline).await;
                    true
                },
            ),
        )
        .await;
        if due {
            shared.feed(Relay::on_timeout);
        }
    }
}

/// Sleeps until `deadline` (forever without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => {
            Timer::new(at.saturating_duration_since(Instant::now())).await;
        }
        None => future::pending().await,
    }
}

/// Target → client: TCP reads become tunnel sends, and EOF the tunnel's FIN (the relay's
/// `FinishTunnel`); once the relay says so (`DiscardTcp`), reads are dropped instead.
/// Returns once the relay has heard how this direction ended.
async fn to_client(shared: &Shared<'_>, reader: &mut ReadHalf<TcpStream>) {
    let mut buf = vec![0; CHUNK];
    loop {
        if shared.tcp_reads_paused() {
            // The linger waits without reading; `watch` ends it at its deadline. Not a
            // return: with both directions reported, the relay would close at once, and a
            // close with unread bytes is a reset.
            return future::pending().await;
        }
        let len = match reader.read(&mut buf).await {
            Ok(0) => return shared.feed(Relay::tcp_eof),
            Ok(len) => len,
            Err(e) => {
                tracing::debug!(tunnel = ?shared.tunnel, error = %e, "target read failed");
                return shared.feed(Relay::tcp_error);
            }
        };
        send(shared, buf.get(..len).unwrap_or_default()).await;
        if shared.outcome().is_some() {
            return;
        }
    }
}

/// Hands `bytes` to the tunnel, waiting for room after a short send; drops them instead
/// (reporting it) while the relay discards, and stops if a failed send ended the relay.
async fn send(shared: &Shared<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        if shared.outcome().is_some() {
            return;
        }
        if shared.discards_tcp() {
            let len = bytes.len();
            return shared.feed(|relay, now| relay.tcp_discarded(now, len));
        }
        match shared.port.tunnel_send(shared.tunnel, bytes) {
            Ok(taken) => {
                bytes = bytes.get(taken..).unwrap_or_default();
                if !bytes.is_empty() {
                    shared.signals.writable.notified().await;
                }
            }
            // `WriteClosed` (the peer's stop) makes the relay discard; anything else ends it.
            Err(e) => {
                tracing::debug!(tunnel = ?shared.tunnel, error = %e, "tunnel send failed");
                shared.feed(|relay, now| relay.tunnel_error(now, e));
            }
        }
    }
}

/// Client → target: tunnel reads become TCP writes, and the FIN a half-close (the relay's
/// `ShutdownTcpWrite`, once every byte before it is written). Returns once the relay has
/// heard how this direction ended.
async fn to_target(shared: &Shared<'_>, writer: &mut WriteHalf<TcpStream>) {
    let mut buf = vec![0; CHUNK];
    loop {
        // The engine says when the tunnel has bytes (`TunnelReadable`, edge-triggered); an
        // accepted tunnel is not readable before its first one.
        shared.signals.readable.notified().await;
        // Not readable (yet, or any more: the engine's close, which the watcher reports,
        // says which) ends the inner loop until the engine's next word.
        while let Some(Recv { len, fin }) = shared.port.tunnel_recv(shared.tunnel, &mut buf) {
            if fin {
                // Before the write: a close that comes meanwhile finds the FIN read (a
                // reset then is the peer's stop after its FIN, not a failure).
                shared.feed(Relay::tunnel_fin);
            }
            if len == 0 && !fin {
                break;
            }
            let bytes = buf.get(..len).unwrap_or_default();
            if let Err(e) = writer.write_all(bytes).await {
                tracing::debug!(tunnel = ?shared.tunnel, error = %e, "target write failed");
                return shared.feed(Relay::tcp_error);
            }
            // After the FIN, this passes it on; before, it changes nothing.
            shared.feed(Relay::tcp_flushed);
            if fin {
                return;
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
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::net::SocketAddr;

    use glommio::net::TcpListener;
    use veil_engine::{CloseReason, Egress, H3_CONNECT_ERROR, TunnelError};

    use super::*;

    /// The engine as a relay sees it, played by the test: what `tunnel_recv` hands out, and
    /// a record of what the relay did to the tunnel.
    #[derive(Default)]
    struct FakePort {
        incoming: RefCell<VecDeque<(&'static [u8], bool)>>,
        sent: RefCell<Vec<u8>>,
        /// What every `tunnel_send` fails with, if anything.
        send_fails: Cell<Option<TunnelError>>,
        finished: Cell<bool>,
        aborted: Cell<bool>,
    }

    impl Port for FakePort {
        fn connect_timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
        fn egress_for(&self, _: TunnelId, _: &[SocketAddr]) -> Result<Egress, Refusal> {
            Err(Refusal::Internal)
        }
        fn egress_preamble(&self, _: TunnelId, _: SocketAddr) -> Option<Vec<u8>> {
            None
        }
        fn answer(&self, _: TunnelId, _: Result<(), Refusal>) -> Option<Rc<TunnelSignals>> {
            None
        }
        fn tunnel_recv(&self, _: TunnelId, out: &mut [u8]) -> Option<Recv> {
            let (bytes, fin) = self.incoming.borrow_mut().pop_front()?;
            out.get_mut(..bytes.len())?.copy_from_slice(bytes);
            Some(Recv {
                len: bytes.len(),
                fin,
            })
        }
        fn tunnel_send(&self, _: TunnelId, data: &[u8]) -> Result<usize, TunnelError> {
            if let Some(error) = self.send_fails.get() {
                return Err(error);
            }
            self.sent.borrow_mut().extend_from_slice(data);
            Ok(data.len())
        }
        fn tunnel_finish(&self, _: TunnelId) -> Result<(), TunnelError> {
            self.finished.set(true);
            Ok(())
        }
        fn tunnel_abort(&self, _: TunnelId) {
            self.aborted.set(true);
        }
        fn send_datagram(&self, _: TunnelId, _: &[u8]) -> bool {
            false
        }
        fn recv_datagram(&self, _: TunnelId, _: &mut [u8]) -> Option<usize> {
            None
        }
        fn count_target_drop(&self) {}

        fn cached_addresses(&self, _: TunnelId) -> Option<Vec<SocketAddr>> {
            None
        }

        fn flow_recv(&self, _: veil_engine::IpFlowId, _: &mut [u8]) -> Option<usize> {
            None
        }

        fn flow_send(&self, _: veil_engine::IpFlowId, _: &[u8]) -> bool {
            false
        }

        fn flow_close(&self, _: veil_engine::IpFlowId) {}
    }

    /// A relay on a real TCP connection whose far end (`app`, the target) the test holds,
    /// and a tunnel the test plays.
    struct Rig {
        app: TcpStream,
        port: Rc<FakePort>,
        signals: Rc<TunnelSignals>,
        relay: glommio::task::JoinHandle<Option<RelayOutcome>>,
    }

    async fn rig() -> Rig {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = TcpStream::connect(addr).await.expect("connect");
        let stream = listener.accept().await.expect("accept");
        let port = Rc::new(FakePort::default());
        let signals = Rc::new(TunnelSignals::default());
        let (relay_port, relay_signals) = (port.clone(), signals.clone());
        let relay = glommio::spawn_local(async move {
            relay(&*relay_port, TunnelId(7), &relay_signals, stream).await
        })
        .detach();
        Rig {
            app,
            port,
            signals,
            relay,
        }
    }

    impl Rig {
        /// The tunnel's peer sent `bytes` (and its FIN, with `fin`).
        fn deliver(&self, bytes: &'static [u8], fin: bool) {
            self.port.incoming.borrow_mut().push_back((bytes, fin));
            self.signals.readable.notify();
        }

        /// Everything the target reads until EOF, or the error that ended it.
        async fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            within(self.app.read_to_end(&mut bytes))
                .await
                .map(|_| bytes)
        }

        async fn outcome(self) -> Option<RelayOutcome> {
            within(self.relay).await.flatten()
        }
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        future::or(async { Some(future.await) }, async {
            Timer::new(Duration::from_secs(10)).await;
            None
        })
        .await
        .expect("in time")
    }

    /// Waits until `done` holds (the relay runs on the same thread meanwhile).
    async fn until(done: impl Fn() -> bool) {
        within(async {
            while !done() {
                Timer::new(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    const RESET: CloseReason = CloseReason::Reset {
        code: H3_CONNECT_ERROR,
    };

    #[test]
    fn fins_pass_both_ways_as_half_closes() {
        crate::test_executor().run(async {
            let mut rig = rig().await;
            rig.app.write_all(b"request").await.expect("write");
            rig.app.shutdown(Shutdown::Write).await.expect("half-close");
            until(|| rig.port.finished.get()).await;
            assert_eq!(*rig.port.sent.borrow(), b"request");
            // Our FIN does not end the relay: the answer still comes.
            rig.deliver(b"answer", true);
            assert_eq!(rig.read_to_end().await.expect("clean EOF"), b"answer");
            assert!(!rig.port.aborted.get());
            assert_eq!(rig.outcome().await, Some(RelayOutcome::Finished));
        });
    }

    #[test]
    fn a_stop_after_the_fin_delivers_everything_then_lingers_and_closes_cleanly() {
        crate::test_executor().run(async {
            let mut rig = rig().await;
            rig.deliver(b"answer", true);
            let mut answer = [0; 6];
            within(rig.app.read_exact(&mut answer))
                .await
                .expect("answer");
            assert_eq!(&answer, b"answer");
            // The engine closes it as reset once the FIN was read: the peer stopped ours.
            rig.signals.close(RESET);
            // What the target still sends is read and thrown away, then its close ends
            // the linger.
            rig.app.write_all(&vec![1; 100_000]).await.expect("write");
            rig.app.shutdown(Shutdown::Write).await.expect("half-close");
            assert_eq!(rig.read_to_end().await.expect("clean EOF"), b"");
            assert!(rig.port.sent.borrow().is_empty(), "nothing for the tunnel");
            assert!(!rig.port.aborted.get() && !rig.port.finished.get());
            assert_eq!(rig.outcome().await, Some(RelayOutcome::PeerStopped));
        });
    }

    #[test]
    fn a_send_refused_as_write_closed_is_the_peers_stop_not_a_failure() {
        crate::test_executor().run(async {
            let mut rig = rig().await;
            rig.port.send_fails.set(Some(TunnelError::WriteClosed));
            rig.app.write_all(b"ignored").await.expect("write");
            // The peer's direction goes on to its FIN, and then the relay lingers.
            rig.deliver(b"answer", true);
            assert_eq!(rig.read_to_end().await.expect("clean EOF"), b"answer");
            rig.app.shutdown(Shutdown::Write).await.expect("half-close");
            let port = rig.port.clone();
            assert_eq!(rig.outcome().await, Some(RelayOutcome::PeerStopped));
            assert!(!port.aborted.get(), "a stop is no reason to abort");
        });
    }

    #[test]
    fn a_tunnel_reset_resets_the_tcp_connection() {
        crate::test_executor().run(async {
            let mut rig = rig().await;
            rig.deliver(b"partial", false);
            let mut partial = [0; 7];
            within(rig.app.read_exact(&mut partial))
                .await
                .expect("bytes");
            rig.signals.close(RESET);
            let error = rig.read_to_end().await.expect_err("a reset");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
            // The engine closed the tunnel already: nothing to abort.
            assert!(!rig.port.aborted.get());
            assert_eq!(rig.outcome().await, Some(RelayOutcome::TunnelReset));
        });
    }

    #[test]
    fn a_tcp_reset_aborts_the_tunnel() {
        crate::test_executor().run(async {
            let Rig {
                app, port, relay, ..
            } = rig().await;
            reset_on_close(app.as_raw_fd());
            drop(app);
            assert_eq!(within(relay).await.flatten(), Some(RelayOutcome::TcpFailed));
            assert!(port.aborted.get());
        });
    }

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
