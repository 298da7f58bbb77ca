//! One tunnel's byte streams on the tokio side, and the relay between a TCP connection and
//! a tunnel.
//!
//! The driver task owns the engine; a [`Tunnel`] talks to it over channels whose contents
//! are bounded per tunnel:
//!
//! - **towards the engine**, a [`TunnelWriter`] spends credit (a semaphore of bytes) for
//!   every chunk it hands over; the driver returns the credit as the engine accepts the
//!   bytes, so at most [`TunnelLimits::credit`] bytes wait in the driver per tunnel;
//! - **from the engine**, the driver reads a tunnel only while its chunk queue (of
//!   [`TunnelLimits::chunks`] slots) has room; when it is full the driver stops reading, and
//!   QUIC flow control holds the peer back. The reader asks for a wake-up as it drains.
//!   A relay that waits for a chunk with nothing left to write parks its TCP write half
//!   with the port, and the driver writes the engine's bytes straight to the socket
//!   during its own turn: a message on an open tunnel reaches TCP without waking the
//!   relay task, without a copy, and before the driver's acknowledgements and timers.
//!
//! Both directions, and the driver's word on how the tunnel ended, live in one allocation
//! per tunnel ([`Shared`]): a semaphore of credit, a queue that allocates only once bytes
//! arrive, and the wakers of the reader and the relay. Idle tunnels are what a proxy holds
//! most of: a tokio `mpsc` channel allocates its first block of 32 slots when it is made,
//! 1.8 KB per tunnel with nothing in it, and every future an idle relay waits on is part
//! of its task's allocation (docs/PERFORMANCE.md, "Many tunnels on one connection").
//!
//! How a relay ends (FINs, resets, a peer that stopped reading ours, the linger) is the
//! engine's [`veil_engine::relay::Relay`]: [`Tunnel::relay`] only moves bytes, reports what
//! happened to it, and does what it says.

use std::cell::Cell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc};
use veil_engine::relay::Relay;
pub use veil_engine::relay::{RelayEnd, RelayOutcome};
use veil_engine::{CloseReason, TunnelId};

pub use self::relay::Relaying;
use crate::command::Command;

mod relay;

/// Largest chunk read from a TCP connection at once.
const MAX_CHUNK: usize = 64 * 1024;

/// Per-tunnel memory bounds on the tokio side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelLimits {
    /// Bytes a tunnel may hand the driver before the engine has taken them. At least one
    /// chunk (64 KiB) is always allowed.
    pub credit: usize,
    /// Chunks (of up to 64 KiB) read from the engine that may wait for the TCP side.
    pub chunks: usize,
}

impl Default for TunnelLimits {
    fn default() -> Self {
        Self {
            credit: 256 * 1024,
            chunks: 4,
        }
    }
}

impl TunnelLimits {
    fn credit_bytes(self) -> usize {
        self.credit.max(MAX_CHUNK)
    }
}

/// Bytes from the engine for one tunnel; `fin` marks the peer's last bytes.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) bytes: Bytes,
    pub(crate) fin: bool,
}

/// The tunnel was reset (by the peer, by the engine, or because its connection was lost),
/// or the driver has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelReset;

impl std::fmt::Display for TunnelReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the tunnel was reset")
    }
}

impl std::error::Error for TunnelReset {}

/// An open tunnel: a byte stream to the target, through the edge.
///
/// Use [`relay`](Self::relay) to join it to a TCP connection, or [`split`](Self::split) it
/// to drive each direction by hand. Dropping a writer that has not finished resets the
/// tunnel.
#[derive(Debug)]
pub struct Tunnel {
    id: TunnelId,
    writer: TunnelWriter,
    reader: TunnelReader,
}

/// How the driver tells a relay that a tunnel ended, for the engine's [`Relay`] to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The engine closed the tunnel (`TunnelClosed`). `fin_read`: the chunk with the
    /// peer's FIN had gone to the reader by then (it may not have been read yet).
    Closed { reason: CloseReason, fin_read: bool },
    /// The driver reset the tunnel (a send failed, the task aborted, or the driver
    /// stopped): unread bytes are lost.
    Reset,
}

/// The sending half of a [`Tunnel`].
#[derive(Debug)]
pub struct TunnelWriter {
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    max_chunk: usize,
    done: bool,
}

/// The receiving half of a [`Tunnel`].
#[derive(Debug)]
pub struct TunnelReader {
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    fin: bool,
}

/// The driver's end of one tunnel. Dropping it without [`closed`](Self::closed) or
/// [`reset`](Self::reset) says nothing, which the relay takes as a reset.
#[derive(Debug)]
pub(crate) struct TunnelPort {
    shared: Arc<Shared>,
    /// Chunks the reader may have waiting ([`TunnelLimits::chunks`], at least 1).
    capacity: usize,
    /// The chunk carrying the peer's FIN went to the reader (a `Cell`: it is set while a
    /// reserved slot borrows the port).
    fin_queued: Cell<bool>,
}

/// What a tunnel's halves and the driver's port share: one allocation per tunnel.
#[derive(Debug)]
struct Shared {
    /// Bytes the writer may hand the driver before the engine has taken them.
    credit: Semaphore,
    /// Towards the reader: chunks, and how the tunnel ended.
    down: Mutex<Down>,
}

/// The engine → reader side of [`Shared`].
#[derive(Debug, Default)]
struct Down {
    /// Chunks not yet read; the port keeps them within its capacity. Allocated with the
    /// first chunk, not before.
    chunks: VecDeque<Chunk>,
    /// The port found the queue full: the reader sends [`Command::Wake`] as it takes one.
    wake: bool,
    /// The port's word on how the tunnel ended, until the relay takes it.
    ending: Option<Ending>,
    /// The port is gone (after its word, if it had one): once the queue is empty, reads
    /// fail.
    port_gone: bool,
    /// The reader is gone: the port discards what the engine has for it.
    reader_gone: bool,
    /// The reader, waiting for a chunk: woken when one is queued or the port goes.
    reader: Option<Waker>,
    /// The relay, waiting for the port's word: woken when it comes or the port goes.
    relay: Option<Waker>,
    /// The relay's TCP write half, parked here while the relay waits for a chunk with
    /// nothing of its own left to write. The port then writes the engine's bytes straight
    /// to it: no wake-up of the relay, no copy, and the bytes reach TCP before the driver
    /// goes on with its turn (acknowledgements, timers). Only what the socket does not
    /// take is queued, and the half goes back to the relay with the next chunk, so bytes
    /// reach TCP in order.
    direct: Option<OwnedWriteHalf>,
}

impl Down {
    /// Wakes whoever waits, once the lock is released (`wake` after the guard's drop).
    fn take_wakers(&mut self) -> [Option<Waker>; 2] {
        [self.reader.take(), self.relay.take()]
    }
}

/// Returns a write half parked with the port to `park`.
fn take_back(down: &mut Down, park: &mut Option<OwnedWriteHalf>) {
    if park.is_none() {
        *park = down.direct.take();
    }
}

/// Writes what a parked write half takes of `bytes` at once; returns the rest. A full
/// socket or a failed write leaves it all to the relay, which waits for room or reports
/// the failure.
fn write_direct<'a>(half: &OwnedWriteHalf, bytes: &'a [u8]) -> &'a [u8] {
    if bytes.is_empty() {
        return bytes;
    }
    match half.try_write(bytes) {
        Ok(written) => bytes.get(written..).unwrap_or_default(),
        Err(_) => bytes,
    }
}

/// Keeps `cx`'s waker in `slot` (cloning it only if it changed).
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Shared {
    fn down(&self) -> MutexGuard<'_, Down> {
        // Nothing panics while holding the lock; a poisoned one is still consistent.
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next chunk and whether the port asked for a wake-up; a reset once the port is
    /// gone and the queue empty. A write half in `park` waits with the port for the next
    /// chunk (see [`Down::direct`]) and is back in `park` when this is ready.
    fn poll_chunk(
        &self,
        cx: &Context<'_>,
        park: &mut Option<OwnedWriteHalf>,
    ) -> Poll<Result<(Chunk, bool), TunnelReset>> {
        let mut down = self.down();
        if let Some(chunk) = down.chunks.pop_front() {
            take_back(&mut down, park);
            return Poll::Ready(Ok((chunk, std::mem::take(&mut down.wake))));
        }
        if down.port_gone {
            take_back(&mut down, park);
            return Poll::Ready(Err(TunnelReset));
        }
        if let Some(half) = park.take() {
            down.direct = Some(half);
        }
        register(&mut down.reader, cx);
        Poll::Pending
    }

    /// Parks a relay's write half with the port before the relay first waits (see
    /// [`Down::direct`]).
    fn park(&self, half: OwnedWriteHalf) {
        self.down().direct = Some(half);
    }

    /// The write half parked with the port, if any (the relay is closing its connection).
    fn unpark(&self) -> Option<OwnedWriteHalf> {
        self.down().direct.take()
    }

    /// The port's word on how the tunnel ended, once it said it or went (`None`: it went
    /// without a word).
    fn poll_ending(&self, cx: &Context<'_>) -> Poll<Option<Ending>> {
        let mut down = self.down();
        if let Some(ending) = down.ending.take() {
            return Poll::Ready(Some(ending));
        }
        if down.port_gone {
            return Poll::Ready(None);
        }
        register(&mut down.relay, cx);
        Poll::Pending
    }

    /// The port's word, if it has said it (without waiting).
    fn take_ending(&self) -> Option<Ending> {
        self.down().ending.take()
    }
}

/// Room for one chunk towards the reader, reserved by [`TunnelPort::room`]. The port is
/// the queue's only producer, so the room lasts while the slot borrows it.
pub(crate) struct Slot<'a>(PhantomData<&'a TunnelPort>);

/// What the driver may do with bytes the engine has for a tunnel.
pub(crate) enum Room<'a> {
    /// A slot is reserved: read one chunk and send it through the slot.
    Ready(Slot<'a>),
    /// The reader is behind; it will send [`Command::Wake`] when it catches up.
    Full,
    /// The reader is gone.
    Gone,
}

/// A connected tunnel and the driver's end of it.
pub(crate) fn pair(
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    limits: TunnelLimits,
) -> (Tunnel, TunnelPort) {
    let credit_bytes = limits.credit_bytes();
    let shared = Arc::new(Shared {
        credit: Semaphore::new(credit_bytes),
        down: Mutex::default(),
    });
    let tunnel = Tunnel {
        id,
        writer: TunnelWriter {
            id,
            commands: commands.clone(),
            shared: shared.clone(),
            max_chunk: credit_bytes.min(MAX_CHUNK),
            done: false,
        },
        reader: TunnelReader {
            id,
            commands,
            shared: shared.clone(),
            fin: false,
        },
    };
    let port = TunnelPort {
        shared,
        capacity: limits.chunks.max(1),
        fin_queued: Cell::new(false),
    };
    (tunnel, port)
}

impl TunnelPort {
    /// Reserves room for one chunk towards the reader, or arranges a wake-up when there is
    /// none.
    pub(crate) fn room(&self) -> Room<'_> {
        let mut down = self.shared.down();
        if down.reader_gone {
            Room::Gone
        } else if down.chunks.len() < self.capacity {
            Room::Ready(Slot(PhantomData))
        } else {
            // Under the lock: the reader's next take sees the flag.
            down.wake = true;
            Room::Full
        }
    }

    /// Returns credit for bytes the engine accepted.
    pub(crate) fn release(&self, bytes: usize) {
        self.shared.credit.add_permits(bytes);
    }

    /// Hands `bytes` (and the peer's FIN, with `fin`) to the reader through a slot
    /// [`room`](Self::room) reserved: written straight to the relay's TCP connection when
    /// its write half is parked here and nothing is queued before them, queued (a copy)
    /// otherwise.
    pub(crate) fn deliver(&self, _slot: Slot<'_>, bytes: &[u8], fin: bool) {
        if fin {
            self.fin_queued.set(true);
        }
        let reader = {
            let mut down = self.shared.down();
            let rest = match &down.direct {
                Some(half) if down.chunks.is_empty() => write_direct(half, bytes),
                _ => bytes,
            };
            if rest.is_empty() && !fin {
                return;
            }
            let bytes = Bytes::copy_from_slice(rest);
            down.chunks.push_back(Chunk { bytes, fin });
            down.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Ends the tunnel on the tokio side after the engine closed it with `reason`: queued
    /// chunks are still delivered; the relay judges what the close means.
    pub(crate) fn closed(self, reason: CloseReason) {
        let fin_read = self.fin_queued.get();
        self.end(Ending::Closed { reason, fin_read });
    }

    /// Ends the tunnel on the tokio side after a reset: the relay resets its TCP
    /// connection, pending sends fail.
    pub(crate) fn reset(self) {
        self.end(Ending::Reset);
    }

    fn end(self, ending: Ending) {
        // Tell first, then fail the sends (dropping the port): a relay woken by the failed
        // send finds out why.
        let relay = {
            let mut down = self.shared.down();
            down.ending = Some(ending);
            down.relay.take()
        };
        if let Some(relay) = relay {
            relay.wake();
        }
    }
}

impl Drop for TunnelPort {
    fn drop(&mut self) {
        let wakers = {
            let mut down = self.shared.down();
            down.port_gone = true;
            down.take_wakers()
        };
        self.shared.credit.close();
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl Tunnel {
    /// The engine's identifier of this tunnel.
    pub fn id(&self) -> TunnelId {
        self.id
    }

    /// Splits the tunnel into its two directions. The ending notification is not read:
    /// [`TunnelReader::recv`] reports a reset once the queued bytes are read (and a stopped
    /// tunnel reads to its FIN; the writer's sends then fail).
    pub fn split(self) -> (TunnelWriter, TunnelReader) {
        (self.writer, self.reader)
    }

    /// Relays bytes between `tcp` and the tunnel until both directions are finished, or
    /// either side fails. `initial` goes into the tunnel first (bytes the caller already
    /// read from `tcp`, or a request head it wrote).
    ///
    /// When and how it ends is the engine's [`Relay`]: TCP EOF finishes the tunnel and the
    /// tunnel's FIN shuts the TCP write side down; a TCP error aborts the tunnel and a
    /// tunnel reset resets the TCP connection (RST, by `SO_LINGER` 0); a peer that finished
    /// and then stopped our direction gets a clean end after a bounded linger (see
    /// [`RelayOutcome::PeerStopped`]); with [`RelayEnd::AfterPeerFin`] the relay ends once
    /// the tunnel's bytes are all written.
    pub fn relay(self, tcp: TcpStream, initial: Bytes, end: RelayEnd) -> Relaying {
        let Self { writer, reader, .. } = self;
        Relaying::new(Relay::new(end), writer, reader, tcp, initial)
    }
}

impl TunnelWriter {
    /// Hands `bytes` to the tunnel, waiting for credit first. Fails once the tunnel is
    /// reset.
    pub async fn send(&mut self, mut bytes: Bytes) -> Result<(), TunnelReset> {
        if self.done {
            return Err(TunnelReset);
        }
        while !bytes.is_empty() {
            let piece = bytes.split_to(bytes.len().min(self.max_chunk));
            let permits = u32::try_from(piece.len()).map_err(|_| TunnelReset)?;
            let permit = self
                .shared
                .credit
                .acquire_many(permits)
                .await
                .map_err(|_| TunnelReset)?;
            // The driver gives the credit back as the engine takes the bytes.
            permit.forget();
            self.hand_over(piece)?;
        }
        Ok(())
    }

    /// Hands `piece`, whose credit was taken, to the driver.
    fn hand_over(&self, piece: Bytes) -> Result<(), TunnelReset> {
        if self.done {
            return Err(TunnelReset);
        }
        self.commands
            .send(Command::Data {
                tunnel: self.id,
                bytes: piece,
            })
            .map_err(|_| TunnelReset)
    }

    /// Ends this direction: the peer reads EOF (stream FIN) after the bytes sent so far.
    pub fn finish(&mut self) {
        if !self.done {
            self.done = true;
            // A stopped driver has closed every tunnel already.
            let _ = self.commands.send(Command::Finish { tunnel: self.id });
        }
    }

    /// Resets the tunnel in both directions (the target or client connection failed).
    pub fn abort(&mut self) {
        self.done = true;
        let _ = self.commands.send(Command::Abort { tunnel: self.id });
    }
}

impl Drop for TunnelWriter {
    fn drop(&mut self) {
        if !self.done {
            self.abort();
        }
    }
}

impl Drop for TunnelReader {
    fn drop(&mut self) {
        let parked = {
            let mut down = self.shared.down();
            down.reader_gone = true;
            down.chunks = VecDeque::new();
            down.direct.take()
        };
        // A relay dropped while waiting: its connection closes now, not with the port.
        drop(parked);
    }
}

impl TunnelReader {
    /// The next bytes from the peer; `Ok(None)` once the peer has finished (FIN).
    pub async fn recv(&mut self) -> Result<Option<Bytes>, TunnelReset> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv), polled.
    pub fn poll_recv(&mut self, cx: &Context<'_>) -> Poll<Result<Option<Bytes>, TunnelReset>> {
        self.poll_recv_parking(cx, &mut None)
    }

    /// [`poll_recv`](Self::poll_recv) for a relay: while it waits, the write half in
    /// `park` waits with the port, which writes to it directly ([`Down::direct`]); it is
    /// back in `park` once this is ready.
    fn poll_recv_parking(
        &mut self,
        cx: &Context<'_>,
        park: &mut Option<OwnedWriteHalf>,
    ) -> Poll<Result<Option<Bytes>, TunnelReset>> {
        if self.fin {
            return Poll::Ready(Ok(None));
        }
        let (chunk, wake) = std::task::ready!(self.shared.poll_chunk(cx, park))?;
        if wake {
            let _ = self.commands.send(Command::Wake { tunnel: self.id });
        }
        self.fin = chunk.fin;
        if chunk.bytes.is_empty() && chunk.fin {
            return Poll::Ready(Ok(None));
        }
        Poll::Ready(Ok(Some(chunk.bytes)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use veil_engine::H3_CONNECT_ERROR;

    use super::*;

    /// A relay on a real TCP connection and a tunnel whose driver end the test plays:
    /// `app` is the far end of the TCP connection.
    struct Rig {
        app: TcpStream,
        port: Option<TunnelPort>,
        commands: mpsc::UnboundedReceiver<Command>,
        relay: tokio::task::JoinHandle<RelayOutcome>,
    }

    async fn rig(end: RelayEnd) -> Rig {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let app = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (tunnel, port) = pair(TunnelId(7), commands_tx, TunnelLimits::default());
        let relay = tokio::spawn(tunnel.relay(tcp, Bytes::new(), end));
        Rig {
            app,
            port: Some(port),
            commands,
            relay,
        }
    }

    impl Rig {
        /// Delivers bytes from the tunnel's peer, as the driver does.
        fn deliver(&self, bytes: &'static [u8], fin: bool) {
            let port = self.port.as_ref().expect("open");
            let Room::Ready(permit) = port.room() else {
                panic!("the reader has room");
            };
            port.deliver(permit, bytes, fin);
        }

        /// Waits until the relay waits for a chunk with its write half parked with the
        /// port (what it does once it has nothing to write).
        async fn parked(&self) {
            let port = self.port.as_ref().expect("open");
            within(async {
                while port.shared.down().direct.is_none() {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        }

        /// Chunks queued for the relay (not written straight to TCP).
        fn queued(&self) -> usize {
            let port = self.port.as_ref().expect("open");
            port.shared.down().chunks.len()
        }

        /// The engine closed the tunnel, as the driver reports it.
        fn closed(&mut self, reason: CloseReason) {
            self.port.take().expect("open").closed(reason);
        }

        /// The next command the relay sent the driver, ignoring wake-ups.
        async fn command(&mut self) -> Command {
            loop {
                let command = within(self.commands.recv()).await.expect("a command");
                if !matches!(command, Command::Wake { .. }) {
                    return command;
                }
            }
        }

        /// The engine resets the tunnel: the application reads a TCP reset, and the relay
        /// ends with it.
        async fn reset_resets_the_connection(mut self) {
            self.closed(CloseReason::Reset {
                code: H3_CONNECT_ERROR,
            });
            let error = read_to_end(&mut self.app).await.expect_err("a reset");
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
            assert_eq!(self.outcome().await, RelayOutcome::TunnelReset);
        }

        /// The peer's `last` bytes and its FIN reach the application, which half-closes
        /// in turn: the relay finishes the tunnel and ends cleanly.
        async fn ends_cleanly_with(mut self, last: &'static [u8]) {
            self.deliver(last, true);
            assert_eq!(read_to_end(&mut self.app).await.expect("clean EOF"), last);
            self.closed(CloseReason::Finished);
            self.app.shutdown().await.expect("half-close");
            assert!(matches!(self.command().await, Command::Finish { .. }));
            assert_eq!(self.outcome().await, RelayOutcome::Finished);
        }

        async fn outcome(self) -> RelayOutcome {
            within(self.relay).await.expect("the relay task")
        }
    }

    async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .expect("in time")
    }

    /// Everything `app` reads until EOF, or the error that ended it.
    async fn read_to_end(app: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        within(app.read_to_end(&mut bytes)).await.map(|_| bytes)
    }

    #[tokio::test]
    async fn fins_pass_both_ways_as_half_closes() {
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.app.write_all(b"request").await.expect("write");
        rig.app.shutdown().await.expect("half-close");
        assert!(matches!(rig.command().await, Command::Data { bytes, .. } if bytes == "request"));
        assert!(matches!(rig.command().await, Command::Finish { .. }));
        // Our FIN does not end the relay: the answer still comes.
        rig.deliver(b"answer", true);
        assert_eq!(
            read_to_end(&mut rig.app).await.expect("clean EOF"),
            b"answer"
        );
        rig.closed(CloseReason::Finished);
        assert_eq!(rig.outcome().await, RelayOutcome::Finished);
    }

    #[tokio::test]
    async fn a_stop_after_the_fin_delivers_everything_and_closes_without_a_reset() {
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.deliver(b"answer", true);
        // The engine closes it as reset once the FIN was read: the peer stopped ours.
        rig.closed(CloseReason::Reset {
            code: H3_CONNECT_ERROR,
        });
        let mut answer = [0; 6];
        within(rig.app.read_exact(&mut answer))
            .await
            .expect("answer");
        assert_eq!(&answer, b"answer");
        // What the application still sends is read and discarded, then its close ends
        // the linger.
        rig.app.write_all(&vec![1; 100_000]).await.expect("write");
        rig.app.shutdown().await.expect("half-close");
        assert_eq!(read_to_end(&mut rig.app).await.expect("clean EOF"), b"");
        let Rig { commands, .. } = &mut rig;
        assert!(commands.try_recv().is_err(), "nothing for the engine");
        assert_eq!(rig.outcome().await, RelayOutcome::PeerStopped);
    }

    #[tokio::test]
    async fn a_tunnel_reset_resets_the_tcp_connection() {
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.deliver(b"partial", false);
        let mut partial = [0; 7];
        within(rig.app.read_exact(&mut partial))
            .await
            .expect("bytes");
        rig.reset_resets_the_connection().await;
    }

    #[tokio::test]
    async fn a_tcp_reset_aborts_the_tunnel() {
        let rig = rig(RelayEnd::BothFinished).await;
        rig.app.set_zero_linger().expect("SO_LINGER 0");
        let Rig {
            app,
            port,
            mut commands,
            relay,
        } = rig;
        drop(app);
        let command = within(commands.recv()).await.expect("a command");
        assert!(matches!(command, Command::Abort { .. }));
        drop(port);
        assert_eq!(
            within(relay).await.expect("the relay task"),
            RelayOutcome::TcpFailed
        );
    }

    #[tokio::test]
    async fn a_waiting_relay_s_bytes_go_straight_to_tcp_without_a_queue() {
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.parked().await;
        rig.deliver(b"first", false);
        assert_eq!(rig.queued(), 0, "written by the port, nothing queued");
        rig.deliver(b" second", false);
        assert_eq!(rig.queued(), 0);
        let mut answer = [0; 12];
        within(rig.app.read_exact(&mut answer))
            .await
            .expect("bytes");
        assert_eq!(&answer, b"first second");
        // The FIN still goes through the relay, which shuts the TCP write side down.
        rig.ends_cleanly_with(b" last").await;
    }

    #[tokio::test]
    async fn a_relay_that_has_not_run_yet_takes_its_first_bytes_straight_to_tcp() {
        // The rig spawned the relay on this thread and nothing has yielded since: its
        // task has not run. An edge's dial that just succeeded is in this state when the
        // client's early bytes are read from the engine.
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.deliver(b"early", false);
        assert_eq!(rig.queued(), 0, "written by the port before the relay ran");
        let mut early = [0; 5];
        within(rig.app.read_exact(&mut early)).await.expect("bytes");
        assert_eq!(&early, b"early");
        rig.ends_cleanly_with(b" then").await;
    }

    #[tokio::test]
    async fn what_a_full_socket_does_not_take_is_queued_and_written_in_order() {
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.parked().await;
        // The application reads nothing yet: the socket fills and the port queues the
        // rest for the relay, which writes it once there is room.
        let pattern: Vec<u8> = (0..=250u8).cycle().take(64 * 1024).collect();
        let port = rig.port.take().expect("open");
        let mut sent = 0;
        while rig_queue_len(&port) == 0 {
            let Room::Ready(slot) = port.room() else {
                panic!("room while nothing is queued");
            };
            port.deliver(slot, &pattern, false);
            sent += pattern.len();
            assert!(sent < 64 << 20, "the socket never filled");
        }
        // Fill the queue to the reader's limit, then end the tunnel with a FIN.
        while let Room::Ready(slot) = port.room() {
            port.deliver(slot, &pattern, false);
            sent += pattern.len();
        }
        rig.port = Some(port);
        let reader = {
            let mut app = rig.app;
            tokio::spawn(async move { read_to_end(&mut app).await })
        };
        let mut fin_sent = false;
        while !fin_sent {
            let port = rig.port.as_ref().expect("open");
            match port.room() {
                Room::Ready(slot) => {
                    port.deliver(slot, b"", true);
                    fin_sent = true;
                }
                Room::Full => {
                    assert!(matches!(
                        within(rig.commands.recv()).await,
                        Some(Command::Wake { .. })
                    ));
                }
                Room::Gone => panic!("the reader went"),
            }
        }
        let received = within(reader).await.expect("reader").expect("clean EOF");
        assert_eq!(received.len(), sent);
        for (i, piece) in received.chunks(pattern.len()).enumerate() {
            assert_eq!(piece, &pattern[..], "piece {i} in order");
        }
        // The application closed its socket after the EOF: both sides are finished.
        rig.port.take().expect("open").closed(CloseReason::Finished);
        assert_eq!(
            within(rig.relay).await.expect("the relay task"),
            RelayOutcome::Finished
        );
    }

    #[tokio::test]
    async fn a_tunnel_reset_while_the_write_half_is_parked_resets_the_tcp_connection() {
        let rig = rig(RelayEnd::BothFinished).await;
        rig.parked().await;
        rig.reset_resets_the_connection().await;
    }

    #[tokio::test]
    async fn a_relay_dropped_while_its_write_half_is_parked_closes_the_connection() {
        let mut rig = rig(RelayEnd::BothFinished).await;
        rig.parked().await;
        rig.relay.abort();
        // The port still holds the tunnel: the connection must not wait for it.
        assert_eq!(read_to_end(&mut rig.app).await.expect("EOF"), b"");
        assert!(rig.port.is_some());
    }

    fn rig_queue_len(port: &TunnelPort) -> usize {
        port.shared.down().chunks.len()
    }

    #[tokio::test]
    async fn after_peer_fin_ends_with_the_answer() {
        let mut rig = rig(RelayEnd::AfterPeerFin).await;
        rig.deliver(b"answer", true);
        assert_eq!(
            read_to_end(&mut rig.app).await.expect("clean EOF"),
            b"answer"
        );
        assert!(matches!(rig.command().await, Command::Finish { .. }));
        assert_eq!(rig.outcome().await, RelayOutcome::Finished);
    }
}

/// An idle tunnel's relay is a task waiting on its futures, all inline in the task's
/// allocation: their size is most of what an idle tunnel costs on the tokio side
/// (docs/PERFORMANCE.md, "Many tunnels on one connection"). It was 1,504 bytes with tokio's
/// channel, `readable` and an inline timer.
#[cfg(all(test, target_pointer_width = "64"))]
mod relay_size {
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn an_idle_relay_stays_under_384_bytes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _app = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let (commands, _) = mpsc::unbounded_channel();
        let (tunnel, _port) = pair(TunnelId(1), commands, TunnelLimits::default());
        let relay = tunnel.relay(tcp, Bytes::new(), RelayEnd::BothFinished);
        let size = std::mem::size_of_val(&relay);
        // 296 bytes on x86-64 (an `async fn` relay was 984): every idle tunnel is one.
        assert!(size <= 384, "an idle relay of {size} bytes");
    }
}
