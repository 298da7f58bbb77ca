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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use veil_engine::TunnelId;

use crate::driver::Command;

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
    reset: oneshot::Receiver<()>,
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
    reset: Option<oneshot::Sender<()>>,
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
    let (reset_tx, reset_rx) = oneshot::channel();
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
        reset: reset_rx,
    };
    let port = TunnelPort {
        chunks: chunk_tx,
        credit,
        wake,
        reset: Some(reset_tx),
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

    /// Ends the tunnel on the tokio side after a reset: the relay resets its TCP
    /// connection, pending sends fail.
    pub(crate) fn reset(mut self) {
        self.credit.close();
        if let Some(reset) = self.reset.take() {
            // The tunnel may already be gone; then nobody needs telling.
            let _ = reset.send(());
        }
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

    /// Splits the tunnel into its two directions. The reset notification is dropped:
    /// [`TunnelReader::recv`] reports a reset once the queued bytes are read.
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
    /// - With [`RelayEnd::AfterPeerFin`], the relay ends as soon as the tunnel's bytes
    ///   are all written, finishing the tunnel and closing `tcp` even if the TCP side has
    ///   not finished: for a request forwarded over a one-request tunnel.
    pub async fn relay(self, tcp: TcpStream, initial: Bytes, end: RelayEnd) -> RelayOutcome {
        let Self {
            mut writer,
            mut reader,
            mut reset,
            ..
        } = self;
        let (mut rd, mut wr) = tcp.into_split();
        let outcome = {
            let up = pump_up(&mut rd, &mut writer, initial);
            let down = pump_down(&mut reader, &mut wr);
            join_directions(up, down, &mut reset, end).await
        };
        match outcome {
            RelayOutcome::Finished => {
                if !writer.done {
                    writer.finish();
                }
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
pub enum RelayOutcome {
    /// Both sides finished cleanly (or, with [`RelayEnd::AfterPeerFin`], the tunnel did).
    Finished,
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

async fn join_directions(
    up: impl Future<Output = Direction>,
    down: impl Future<Output = Direction>,
    reset: &mut oneshot::Receiver<()>,
    end: RelayEnd,
) -> RelayOutcome {
    let mut up = std::pin::pin!(up);
    let mut down = std::pin::pin!(down);
    let (mut up_done, mut down_done) = (false, false);
    let mut reset_armed = true;
    loop {
        let finished = tokio::select! {
            direction = &mut up, if !up_done => { up_done = true; direction }
            direction = &mut down, if !down_done => {
                down_done = true;
                if direction == Direction::Finished && end == RelayEnd::AfterPeerFin {
                    return RelayOutcome::Finished;
                }
                direction
            }
            signal = &mut *reset, if reset_armed => {
                if signal.is_ok() {
                    return RelayOutcome::TunnelReset;
                }
                // The driver closed the tunnel cleanly: no reset will come.
                reset_armed = false;
                continue;
            }
        };
        match finished {
            Direction::Finished if up_done && down_done => return RelayOutcome::Finished,
            Direction::Finished => {}
            Direction::TunnelReset => return RelayOutcome::TunnelReset,
            Direction::TcpFailed => return RelayOutcome::TcpFailed,
        }
    }
}

/// TCP → tunnel.
async fn pump_up(rd: &mut OwnedReadHalf, writer: &mut TunnelWriter, initial: Bytes) -> Direction {
    if !initial.is_empty() && writer.send(initial).await.is_err() {
        return Direction::TunnelReset;
    }
    loop {
        let mut chunk = BytesMut::with_capacity(MAX_CHUNK);
        match rd.read_buf(&mut chunk).await {
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
