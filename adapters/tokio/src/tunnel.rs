//! One tunnel's byte streams on the tokio side, and the relay between a TCP connection and
//! a tunnel.
//!
//! The driver task owns the engine; a [`Tunnel`] talks to it over channels whose contents
//! are bounded per tunnel:
//!
//! - **towards the engine**, a [`TunnelWriter`] spends credit (a semaphore of bytes) for
//!   every chunk it hands over; the driver returns the credit as the engine accepts the
//!   bytes, so at most [`TunnelLimits::credit`] bytes wait in the driver per tunnel;
//! - **from the engine**, the driver reads a tunnel only while its chunk channel (of
//!   [`TunnelLimits::chunks`] slots) has room; when it is full the driver stops reading, and
//!   QUIC flow control holds the peer back. The reader asks for a wake-up as it drains.
//!
//! A tunnel whose peer finished its direction and then stopped ours (`STOP_SENDING`, or a
//! reset once its FIN was read) is *stopped*, not reset: every byte the peer sent and its
//! FIN still reach the TCP side, and the relay then closes that connection without a reset
//! (see [`RelayOutcome::PeerStopped`]).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use veil_engine::{CloseReason, TunnelId};

use crate::driver::Command;

/// Largest chunk read from a TCP connection at once.
const MAX_CHUNK: usize = 64 * 1024;

/// After a [`RelayOutcome::PeerStopped`], how long the relay goes on reading (and
/// discarding) what the TCP side sends, waiting for it to close: at most this long in all,
/// and at most [`LINGER_IDLE`] without a byte. The same bounds as a lingering close in an
/// HTTP server.
const LINGER_TOTAL: Duration = Duration::from_secs(30);
/// See [`LINGER_TOTAL`].
const LINGER_IDLE: Duration = Duration::from_secs(5);

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
    ending: oneshot::Receiver<Ending>,
}

/// How the driver ended a tunnel whose directions were not both finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Reset (by the peer, by the engine, or with its connection): unread bytes are lost.
    Reset,
    /// The peer's bytes and FIN are all queued for the reader; the peer stopped ours.
    Stopped,
}

/// The sending half of a [`Tunnel`].
#[derive(Debug)]
pub struct TunnelWriter {
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    credit: Arc<Semaphore>,
    max_chunk: usize,
    done: bool,
}

/// The receiving half of a [`Tunnel`].
#[derive(Debug)]
pub struct TunnelReader {
    id: TunnelId,
    commands: mpsc::UnboundedSender<Command>,
    chunks: mpsc::Receiver<Chunk>,
    wake: Arc<AtomicBool>,
    fin: bool,
}

/// The driver's end of one tunnel.
#[derive(Debug)]
pub(crate) struct TunnelPort {
    chunks: mpsc::Sender<Chunk>,
    credit: Arc<Semaphore>,
    wake: Arc<AtomicBool>,
    ending: Option<oneshot::Sender<Ending>>,
    /// The chunk carrying the peer's FIN went to the reader (a `Cell`: it is set while a
    /// reserved slot borrows the port).
    fin_queued: Cell<bool>,
}

/// What the driver may do with bytes the engine has for a tunnel.
pub(crate) enum Room<'a> {
    /// A slot is reserved: read one chunk and send it through the permit.
    Ready(mpsc::Permit<'a, Chunk>),
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
    let credit = Arc::new(Semaphore::new(credit_bytes));
    let (chunk_tx, chunk_rx) = mpsc::channel(limits.chunks.max(1));
    let wake = Arc::new(AtomicBool::new(false));
    let (ending_tx, ending_rx) = oneshot::channel();
    let tunnel = Tunnel {
        id,
        writer: TunnelWriter {
            id,
            commands: commands.clone(),
            credit: credit.clone(),
            max_chunk: credit_bytes.min(MAX_CHUNK),
            done: false,
        },
        reader: TunnelReader {
            id,
            commands,
            chunks: chunk_rx,
            wake: wake.clone(),
            fin: false,
        },
        ending: ending_rx,
    };
    let port = TunnelPort {
        chunks: chunk_tx,
        credit,
        wake,
        ending: Some(ending_tx),
        fin_queued: Cell::new(false),
    };
    (tunnel, port)
}

impl TunnelPort {
    /// Reserves room for one chunk towards the reader, or arranges a wake-up when there is
    /// none.
    pub(crate) fn room(&self) -> Room<'_> {
        if let Ok(permit) = self.chunks.try_reserve() {
            return Room::Ready(permit);
        }
        // Ask first, then look again: a reader that drained in between sees the flag.
        self.wake.store(true, Ordering::SeqCst);
        match self.chunks.try_reserve() {
            Ok(permit) => Room::Ready(permit),
            Err(mpsc::error::TrySendError::Full(())) => Room::Full,
            Err(mpsc::error::TrySendError::Closed(())) => Room::Gone,
        }
    }

    /// Returns credit for bytes the engine accepted.
    pub(crate) fn release(&self, bytes: usize) {
        self.credit.add_permits(bytes);
    }

    /// Hands one chunk to the reader through a slot [`room`](Self::room) reserved.
    pub(crate) fn deliver(&self, permit: mpsc::Permit<'_, Chunk>, chunk: Chunk) {
        if chunk.fin {
            self.fin_queued.set(true);
        }
        permit.send(chunk);
    }

    /// Ends the tunnel on the tokio side after the engine closed it with `reason`.
    pub(crate) fn closed(self, reason: CloseReason) {
        match reason {
            CloseReason::Finished => self.close(),
            // The engine reports a stop of our direction once the peer's FIN was read
            // (and a reset after that FIN changes nothing the peer sent): what it sent is
            // whole.
            CloseReason::Reset { .. } if self.fin_queued.get() => self.end(Ending::Stopped),
            _ => self.end(Ending::Reset),
        }
    }

    /// Ends the tunnel on the tokio side after a reset: the relay resets its TCP
    /// connection, pending sends fail.
    pub(crate) fn reset(self) {
        self.end(Ending::Reset);
    }

    fn end(mut self, ending: Ending) {
        // Tell first, then fail the sends: a relay woken by the failed send finds out why.
        if let Some(tell) = self.ending.take() {
            // The tunnel may already be gone; then nobody needs telling.
            let _ = tell.send(ending);
        }
        self.credit.close();
    }

    /// Ends the tunnel on the tokio side after both directions finished: queued chunks
    /// are still delivered.
    pub(crate) fn close(self) {
        self.credit.close();
    }
}

impl Tunnel {
    /// The engine's identifier of this tunnel.
    pub fn id(&self) -> TunnelId {
        self.id
    }

    /// Splits the tunnel into its two directions. The ending notification is dropped:
    /// [`TunnelReader::recv`] reports a reset once the queued bytes are read (and a stopped
    /// tunnel reads to its FIN; the writer's sends then fail).
    pub fn split(self) -> (TunnelWriter, TunnelReader) {
        (self.writer, self.reader)
    }

    /// Relays bytes between `tcp` and the tunnel until both directions are finished, or
    /// either side fails. `initial` goes into the tunnel first (bytes the caller already
    /// read from `tcp`, or a request head it wrote).
    ///
    /// - TCP EOF finishes the tunnel (FIN); tunnel FIN shuts the TCP write side down.
    /// - A TCP error resets the tunnel; a tunnel reset resets the TCP connection (RST, by
    ///   `SO_LINGER` 0).
    /// - A peer that finished and then stopped our direction gets a clean end instead:
    ///   see [`RelayOutcome::PeerStopped`].
    /// - With [`RelayEnd::AfterPeerFin`], the relay ends as soon as the tunnel's bytes
    ///   are all written, finishing the tunnel and closing `tcp` even if the TCP side has
    ///   not finished: for a request forwarded over a one-request tunnel.
    pub async fn relay(self, tcp: TcpStream, initial: Bytes, end: RelayEnd) -> RelayOutcome {
        let Self {
            mut writer,
            mut reader,
            mut ending,
            ..
        } = self;
        let (mut rd, mut wr) = tcp.into_split();
        let outcome = {
            let up = pump_up(&mut rd, &mut writer, initial);
            let down = pump_down(&mut reader, &mut wr);
            join_directions(up, down, &mut ending, end).await
        };
        match outcome {
            RelayOutcome::Finished => {
                if !writer.done {
                    writer.finish();
                }
            }
            RelayOutcome::PeerStopped => {
                // The engine has closed the tunnel already: nothing to send it.
                writer.done = true;
                linger(rd).await;
            }
            RelayOutcome::TunnelReset => reset_tcp(wr, rd),
            RelayOutcome::TcpFailed => {
                writer.abort();
                reset_tcp(wr, rd);
            }
        }
        outcome
    }
}

/// When [`Tunnel::relay`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// When both directions are finished (a CONNECT tunnel).
    BothFinished,
    /// When the tunnel's side has finished and everything it sent is written.
    AfterPeerFin,
}

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayOutcome {
    /// Both sides finished cleanly (or, with [`RelayEnd::AfterPeerFin`], the tunnel did).
    Finished,
    /// The tunnel's peer finished (every byte and its FIN reached the TCP side, which was
    /// half-closed) and then stopped reading ours: a server that answered and closed with
    /// part of the request unread, say. The relay read and discarded what the TCP side
    /// still sent until it closed (for at most 30 s), then closed without a reset: closing
    /// with unread bytes would make the kernel send RST and drop the tail of the answer.
    PeerStopped,
    /// The tunnel was reset; the TCP connection was reset too.
    TunnelReset,
    /// The TCP connection failed; the tunnel was reset.
    TcpFailed,
}

/// How one direction of a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Finished,
    TunnelReset,
    TcpFailed,
}

/// What [`join_directions`] saw next.
enum Seen {
    Up(Direction),
    Down(Direction),
    Told(Result<Ending, oneshot::error::RecvError>),
}

async fn join_directions(
    up: impl Future<Output = Direction>,
    down: impl Future<Output = Direction>,
    ending: &mut oneshot::Receiver<Ending>,
    end: RelayEnd,
) -> RelayOutcome {
    let mut up = std::pin::pin!(up);
    let mut down = std::pin::pin!(down);
    let (mut up_done, mut down_done) = (false, false);
    let mut ending_armed = true;
    let mut stopped = false;
    loop {
        let seen = tokio::select! {
            direction = &mut up, if !up_done => { up_done = true; Seen::Up(direction) }
            direction = &mut down, if !down_done => { down_done = true; Seen::Down(direction) }
            told = &mut *ending, if ending_armed => { ending_armed = false; Seen::Told(told) }
        };
        match seen {
            Seen::Told(Ok(Ending::Reset)) => return RelayOutcome::TunnelReset,
            Seen::Told(Ok(Ending::Stopped)) => stopped = true,
            // A failed send may be the first sign of a stop: the driver tells, then fails
            // the sends, but the two wake-ups may be seen in either order.
            Seen::Up(Direction::TunnelReset)
                if ending_armed && ending.try_recv() == Ok(Ending::Stopped) =>
            {
                ending_armed = false;
                stopped = true;
            }
            // `Told(Err)`: the driver closed the tunnel cleanly, no ending will come.
            Seen::Told(Err(_))
            | Seen::Up(Direction::Finished)
            | Seen::Down(Direction::Finished) => {}
            Seen::Up(Direction::TunnelReset) | Seen::Down(Direction::TunnelReset) => {
                return RelayOutcome::TunnelReset;
            }
            Seen::Up(Direction::TcpFailed) | Seen::Down(Direction::TcpFailed) => {
                return RelayOutcome::TcpFailed;
            }
        }
        if stopped {
            // Our direction has nowhere to go; the peer's delivers what is queued, up to
            // its FIN.
            up_done = true;
            if down_done {
                return RelayOutcome::PeerStopped;
            }
        } else if down_done && (up_done || end == RelayEnd::AfterPeerFin) {
            return RelayOutcome::Finished;
        }
    }
}

/// After [`RelayOutcome::PeerStopped`]: the TCP write side is shut down already; reads and
/// discards until the TCP side closes, it fails, or the linger bounds pass, so that
/// dropping the socket afterwards finds nothing unread and closes without RST.
async fn linger(mut rd: OwnedReadHalf) {
    let give_up = Instant::now() + LINGER_TOTAL;
    let mut discard = vec![0; 16 * 1024];
    let mut discarded = 0usize;
    loop {
        let wait = give_up.min(Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(wait, rd.read(&mut discard)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => discarded = discarded.saturating_add(n),
        }
    }
    if discarded > 0 {
        tracing::debug!(discarded, "the peer had stopped reading: bytes discarded");
    }
}

/// TCP → tunnel.
async fn pump_up(rd: &mut OwnedReadHalf, writer: &mut TunnelWriter, initial: Bytes) -> Direction {
    if !initial.is_empty() && writer.send(initial).await.is_err() {
        return Direction::TunnelReset;
    }
    loop {
        // Wait before allocating: an idle tunnel holds no read buffer. The read itself goes
        // through `AsyncRead`, which notes a short read as "drained" and so spares the
        // system call that would only say "would block".
        let mut chunk = BytesMut::new();
        let read = match rd.readable().await {
            Ok(()) => {
                chunk.reserve(MAX_CHUNK);
                rd.read_buf(&mut chunk).await
            }
            Err(e) => Err(e),
        };
        match read {
            Ok(0) => {
                writer.finish();
                return Direction::Finished;
            }
            Ok(_) => {
                if writer.send(chunk.freeze()).await.is_err() {
                    return Direction::TunnelReset;
                }
            }
            Err(e) => {
                tracing::debug!(tunnel = ?writer.id, error = %e, "TCP read failed");
                return Direction::TcpFailed;
            }
        }
    }
}

/// Tunnel → TCP.
async fn pump_down(reader: &mut TunnelReader, wr: &mut OwnedWriteHalf) -> Direction {
    loop {
        match reader.recv().await {
            Ok(Some(bytes)) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    tracing::debug!(tunnel = ?reader.id, error = %e, "TCP write failed");
                    return Direction::TcpFailed;
                }
            }
            Ok(None) => {
                // The peer's FIN becomes ours: half-close, the other direction goes on.
                return match wr.shutdown().await {
                    Ok(()) => Direction::Finished,
                    Err(_) => Direction::TcpFailed,
                };
            }
            Err(TunnelReset) => return Direction::TunnelReset,
        }
    }
}

/// Closes with RST: `SO_LINGER` 0 makes the kernel reset the connection when its socket
/// is closed. The write half must not send a FIN first (dropping it would), or the peer
/// reads a clean EOF before the reset.
fn reset_tcp(wr: OwnedWriteHalf, rd: OwnedReadHalf) {
    if let Err(e) = wr.as_ref().set_zero_linger() {
        tracing::debug!(error = %e, "SO_LINGER 0 failed; the TCP connection closes with FIN");
    }
    wr.forget();
    drop(rd);
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
            let permit: OwnedSemaphorePermit = self
                .credit
                .clone()
                .acquire_many_owned(permits)
                .await
                .map_err(|_| TunnelReset)?;
            // The driver gives the credit back as the engine takes the bytes.
            permit.forget();
            self.commands
                .send(Command::Data {
                    tunnel: self.id,
                    bytes: piece,
                })
                .map_err(|_| TunnelReset)?;
        }
        Ok(())
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

impl TunnelReader {
    /// The next bytes from the peer; `Ok(None)` once the peer has finished (FIN).
    pub async fn recv(&mut self) -> Result<Option<Bytes>, TunnelReset> {
        if self.fin {
            return Ok(None);
        }
        let chunk = self.chunks.recv().await.ok_or(TunnelReset)?;
        if self.wake.swap(false, Ordering::SeqCst) {
            let _ = self.commands.send(Command::Wake { tunnel: self.id });
        }
        self.fin = chunk.fin;
        if chunk.bytes.is_empty() && chunk.fin {
            return Ok(None);
        }
        Ok(Some(chunk.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Finished, TcpFailed, TunnelReset};

    /// Runs `join_directions` with directions that end as given (`None`: never) and the
    /// driver's word already sent (`None`: not yet), many times: `select!` polls its
    /// branches in a random order, and every order must give the same outcome. `None`: the
    /// relay was still running after 50 ms.
    fn joined(
        up: Option<Direction>,
        down: Option<Direction>,
        told: Option<Ending>,
        end: RelayEnd,
    ) -> Option<RelayOutcome> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let outcomes: Vec<Option<RelayOutcome>> = (0..16)
            .map(|_| {
                runtime.block_on(async {
                    let (tell, mut ending) = oneshot::channel();
                    // A word not sent is held to the end: a dropped sender means a clean
                    // close.
                    let unsent = match told {
                        Some(told) => {
                            tell.send(told).expect("receiver alive");
                            None
                        }
                        None => Some(tell),
                    };
                    let direction = |ends: Option<Direction>| async move {
                        match ends {
                            Some(direction) => direction,
                            None => std::future::pending().await,
                        }
                    };
                    let joined = join_directions(direction(up), direction(down), &mut ending, end);
                    let outcome = tokio::time::timeout(Duration::from_millis(50), joined).await;
                    drop(unsent);
                    outcome.ok()
                })
            })
            .collect();
        assert!(
            outcomes.windows(2).all(|pair| pair[0] == pair[1]),
            "{outcomes:?}"
        );
        outcomes[0]
    }

    #[test]
    fn a_stop_after_the_fin_ends_cleanly_whichever_wake_up_comes_first() {
        let (both, stopped) = (RelayEnd::BothFinished, Some(Ending::Stopped));
        // The FIN was written; the stop shows as the driver's word, with or without a
        // failed send.
        let clean = Some(RelayOutcome::PeerStopped);
        assert_eq!(
            joined(Some(TunnelReset), Some(Finished), stopped, both),
            clean
        );
        assert_eq!(joined(None, Some(Finished), stopped, both), clean);
        // The bytes before the FIN are still being written: the relay waits for them.
        assert_eq!(joined(Some(TunnelReset), None, stopped, both), None);
        // A write that fails meanwhile is a TCP failure still.
        let failed = Some(RelayOutcome::TcpFailed);
        assert_eq!(
            joined(Some(TunnelReset), Some(TcpFailed), stopped, both),
            failed
        );
    }

    #[test]
    fn a_reset_ends_the_relay_at_once() {
        let (both, reset) = (RelayEnd::BothFinished, Some(Ending::Reset));
        let outcome = Some(RelayOutcome::TunnelReset);
        assert_eq!(joined(None, None, reset, both), outcome);
        assert_eq!(joined(Some(TunnelReset), None, None, both), outcome);
        assert_eq!(joined(None, Some(TunnelReset), None, both), outcome);
    }

    #[test]
    fn finished_directions_end_the_relay_as_asked() {
        let finished = Some(RelayOutcome::Finished);
        let both = RelayEnd::BothFinished;
        assert_eq!(joined(Some(Finished), Some(Finished), None, both), finished);
        assert_eq!(joined(None, Some(Finished), None, both), None);
        assert_eq!(joined(Some(Finished), None, None, both), None);
        let after_fin = RelayEnd::AfterPeerFin;
        assert_eq!(joined(None, Some(Finished), None, after_fin), finished);
    }
}
