//! The relay between a TCP connection and a tunnel, as a future written by hand.
//!
//! A proxy holds mostly idle tunnels, and every idle tunnel is a task whose allocation is
//! its future. An `async fn` relay keeps, beside its state, the state of every future it
//! waits on at once (two pumps, the driver's word, the linger's reads and timer, and the
//! `select!` around them): 984 bytes when idle. This one is a struct that polls each
//! source itself: the halves, the engine's [`Relay`], one state per direction, and a box
//! for what only a busy or lingering relay needs (waiting for credit, the linger's timer
//! and discard buffer).
//!
//! It moves bytes and reports what happens to [`Relay`], which says what to do: the rules
//! are the engine's (see [`veil_engine::relay`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Sleep;
use veil_engine::TunnelError;
use veil_engine::relay::{Relay, RelayAction, RelayOutcome};

use super::{Ending, MAX_CHUNK, Shared, TunnelReader, TunnelReset, TunnelWriter};

/// Buffer for what a relay reads from its TCP side only to discard it.
const DISCARD_CHUNK: usize = 16 * 1024;

/// A wait for stream credit: boxed, as only a relay under load waits.
type CreditWait = Pin<Box<dyn Future<Output = Result<(), TunnelReset>> + Send>>;

/// A relay in progress: what [`Tunnel::relay`](super::Tunnel::relay) returns. It resolves
/// to how the relay ended, once [`Relay`] says it is done and its last actions are done.
#[must_use = "a relay does nothing unless polled (spawn it, or await it)"]
pub struct Relaying {
    relay: Relay,
    writer: TunnelWriter,
    reader: TunnelReader,
    /// The TCP connection's read half, until the last actions close or reset it.
    rd: Option<OwnedReadHalf>,
    /// Its write half while the relay holds it. While the relay waits for a chunk with
    /// nothing to write (from the start: see `Relaying::new`), the half is parked with the
    /// driver's port, which writes to it directly; it comes back with the next chunk
    /// (`Shared::poll_chunk`).
    wr: Option<OwnedWriteHalf>,
    up: Up,
    down: Down,
    /// The driver's word on how the tunnel ended has been taken (or its absence noted).
    told: bool,
    /// Actions that need the relay to be over (closing the connection, ending the
    /// tunnel), done once [`Relay`] is done.
    last: Vec<RelayAction>,
    /// What only a relay under load or lingering needs; `None` while idle.
    busy: Option<Box<Busy>>,
    /// The outcome, once given (a poll after it gives it again).
    outcome: Option<RelayOutcome>,
}

/// The TCP → tunnel direction.
enum Up {
    /// Waiting for the TCP side to be readable; nothing allocated.
    Reading,
    /// Bytes read (or given at the start) that the tunnel has not taken yet. While
    /// credit is short, [`Busy::credit`] waits for the next piece's.
    Sending(Bytes),
    /// Over: the TCP side's EOF or error, or the tunnel took no more.
    Ended,
}

/// The tunnel → TCP direction.
enum Down {
    /// Waiting for the next chunk from the engine.
    Reading,
    /// A chunk being written to the TCP side.
    Writing(Bytes),
    /// Over: the tunnel's FIN, a failed write, or the tunnel ended without a FIN.
    Ended,
}

/// The cold part of a relay, allocated the first time it is needed and kept after.
#[derive(Default)]
struct Busy {
    /// Waiting for credit for the next piece of [`Up::Sending`].
    credit: Option<CreditWait>,
    /// The linger's timer, at [`Relay::poll_timeout`].
    timer: Option<Pin<Box<Sleep>>>,
    /// Where a lingering relay reads what it discards.
    discard: Vec<u8>,
}

/// How the TCP → tunnel direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpEnd {
    /// The TCP side's EOF, every byte before it handed to the tunnel.
    Eof,
    /// A read from the TCP side failed.
    ReadFailed,
    /// The tunnel took no more (it ended; the driver's word says how).
    SendFailed,
}

/// How the tunnel → TCP direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownEnd {
    /// The tunnel's FIN, every byte before it written to the TCP side.
    Fin,
    /// A write to the TCP side failed.
    WriteFailed,
    /// The tunnel ended without a FIN (the driver's word says how).
    Gone,
}

/// What happened next, for [`Relay`].
enum Seen {
    Told(Option<Ending>),
    Up(UpEnd),
    Down(DownEnd),
    Discarded(std::io::Result<usize>),
    Timer,
    /// Nothing can happen any more (a bug: the relay would hang).
    Stuck,
}

impl Relaying {
    pub(super) fn new(
        relay: Relay,
        writer: TunnelWriter,
        reader: TunnelReader,
        tcp: tokio::net::TcpStream,
        initial: Bytes,
    ) -> Self {
        // An empty start is not kept for the tunnel's life: it may share a read buffer's
        // allocation.
        let up = if initial.is_empty() {
            Up::Reading
        } else {
            Up::Sending(initial)
        };
        let (rd, wr) = tcp.into_split();
        // The relay starts waiting for a chunk with nothing to write: its write half is
        // parked with the port at once, so that the driver can write the tunnel's first
        // bytes before this task first runs (an edge whose dial just succeeded writes the
        // client's early bytes to the target before its 2xx goes out).
        reader.shared.park(wr);
        Self {
            relay,
            writer,
            reader,
            rd: Some(rd),
            wr: None,
            up,
            down: Down::Reading,
            told: false,
            last: Vec::new(),
            busy: None,
            outcome: None,
        }
    }

    fn shared(&self) -> &Shared {
        &self.reader.shared
    }

    /// Both halves of the connection, the write half back from the port if it is parked
    /// there, for the last actions.
    fn take_tcp(&mut self) -> Option<(OwnedReadHalf, OwnedWriteHalf)> {
        let rd = self.rd.take()?;
        let wr = self.wr.take().or_else(|| self.shared().unpark())?;
        Some((rd, wr))
    }

    /// The next event from any source, in a fixed order: the driver's word first (a send
    /// that fails is explained by it), then each direction, then the linger.
    fn poll_seen(&mut self, cx: &mut Context<'_>) -> Poll<Seen> {
        if !self.told {
            if let Poll::Ready(word) = self.shared().poll_ending(cx) {
                self.told = true;
                return Poll::Ready(Seen::Told(word));
            }
        }
        let Some(rd) = self.rd.as_mut() else {
            return Poll::Ready(Seen::Stuck);
        };
        if !matches!(self.up, Up::Ended) {
            if let Poll::Ready(end) =
                poll_up(&mut self.up, &mut self.busy, rd, &mut self.writer, cx)
            {
                self.up = Up::Ended;
                return Poll::Ready(Seen::Up(end));
            }
        }
        if !matches!(self.down, Down::Ended) {
            if let Poll::Ready(end) = poll_down(&mut self.down, &mut self.reader, &mut self.wr, cx)
            {
                self.down = Down::Ended;
                return Poll::Ready(Seen::Down(end));
            }
        }
        // Past the linger's byte bound the relay waits without reading (its timer ends it).
        let discarding = self.relay.discards_tcp()
            && !self.relay.tcp_reads_paused()
            && matches!(self.up, Up::Ended);
        if discarding {
            let busy = self.busy.get_or_insert_with(Box::default);
            if busy.discard.is_empty() {
                busy.discard = vec![0; DISCARD_CHUNK];
            }
            let mut buf = ReadBuf::new(&mut busy.discard);
            if let Poll::Ready(read) = Pin::new(rd).poll_read(cx, &mut buf) {
                return Poll::Ready(Seen::Discarded(read.map(|()| buf.filled().len())));
            }
        }
        let deadline = self.relay.poll_timeout();
        if let Some(at) = deadline {
            let at = tokio::time::Instant::from_std(at);
            let busy = self.busy.get_or_insert_with(Box::default);
            let timer = busy
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if timer.as_mut().poll(cx).is_ready() {
                // Fired: the next deadline, if any, gets a timer of its own.
                busy.timer = None;
                return Poll::Ready(Seen::Timer);
            }
        }
        let waiting = !self.told
            || !matches!(self.up, Up::Ended)
            || !matches!(self.down, Down::Ended)
            || discarding
            || deadline.is_some();
        if waiting {
            Poll::Pending
        } else {
            Poll::Ready(Seen::Stuck)
        }
    }

    /// Reports `seen` to the relay.
    fn report(&mut self, seen: &Seen, now: std::time::Instant) {
        let relay = &mut self.relay;
        match seen {
            Seen::Told(word) => tell(relay, now, *word),
            Seen::Up(UpEnd::Eof) | Seen::Discarded(Ok(0)) => relay.tcp_eof(now),
            Seen::Up(UpEnd::ReadFailed)
            | Seen::Down(DownEnd::WriteFailed)
            | Seen::Discarded(Err(_)) => relay.tcp_error(now),
            Seen::Up(UpEnd::SendFailed) => {
                // The driver says why before it fails the sends.
                if !self.told {
                    self.told = true;
                    tell(relay, now, self.reader.shared.take_ending());
                }
                // The bytes last read had nowhere to go (uncounted).
                relay.tcp_discarded(now, 0);
            }
            // Every chunk before the FIN was written before it was read.
            Seen::Down(DownEnd::Fin) => {
                relay.tunnel_fin(now);
                relay.tcp_flushed(now);
            }
            Seen::Down(DownEnd::Gone) => {
                if !self.told {
                    self.told = true;
                    tell(relay, now, self.reader.shared.take_ending());
                }
            }
            Seen::Discarded(Ok(len)) => relay.tcp_discarded(now, *len),
            Seen::Timer => relay.on_timeout(now),
            Seen::Stuck => {
                tracing::warn!("relay with nothing left to wait for: failing it");
                relay.tcp_error(now);
            }
        }
    }

    /// Does what the relay says while relaying. Ending the tunnel's write side waits for
    /// the TCP → tunnel direction to be over, and shutting the TCP write side down for the
    /// tunnel → TCP one; everything else (and everything after it, in order) waits for the
    /// end.
    fn act(&mut self, cx: &mut Context<'_>, now: std::time::Instant) {
        while let Some(action) = self.relay.poll_action() {
            match action {
                _ if !self.last.is_empty() => self.last.push(action),
                RelayAction::FinishTunnel if matches!(self.up, Up::Ended) => self.writer.finish(),
                RelayAction::ShutdownTcpWrite if matches!(self.down, Down::Ended) => {
                    // The half is the relay's: the direction is over.
                    if let Some(wr) = self.wr.as_mut() {
                        // tokio's `shutdown(2)` of a TCP write half is never pending.
                        if let Poll::Ready(Err(_)) = Pin::new(wr).poll_shutdown(cx) {
                            self.relay.tcp_error(now);
                        }
                    }
                }
                // Reading to discard starts in `poll_seen`, once the direction is over.
                RelayAction::DiscardTcp => {}
                other => self.last.push(other),
            }
        }
    }

    /// The closing actions, with the relay over; returns the outcome.
    fn finish(&mut self) -> RelayOutcome {
        let mut outcome = RelayOutcome::TcpFailed;
        for action in std::mem::take(&mut self.last) {
            match action {
                RelayAction::FinishTunnel => self.writer.finish(),
                RelayAction::AbortTunnel => self.writer.abort(),
                RelayAction::ResetTcp => {
                    if let Some((rd, wr)) = self.take_tcp() {
                        reset_tcp(wr, rd);
                    }
                }
                RelayAction::CloseTcp => drop(self.take_tcp()),
                RelayAction::Done(done) => outcome = done,
                other => tracing::debug!(?other, "relay action after the end"),
            }
        }
        // The relay said all there was to say to the engine: dropping the writer must not
        // add an abort of its own.
        self.writer.done = true;
        self.busy = None;
        tracing::debug!(tunnel = ?self.writer.id, ?outcome, "relay ended");
        outcome
    }
}

impl Future for Relaying {
    type Output = RelayOutcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RelayOutcome> {
        let this = self.get_mut();
        if let Some(outcome) = this.outcome {
            return Poll::Ready(outcome);
        }
        loop {
            let seen = ready!(this.poll_seen(cx));
            let now = tokio::time::Instant::now().into_std();
            this.report(&seen, now);
            this.act(cx, now);
            if this.relay.outcome().is_some() {
                let outcome = this.finish();
                this.outcome = Some(outcome);
                return Poll::Ready(outcome);
            }
        }
    }
}

/// TCP → tunnel: reads a chunk when the TCP side is readable and hands it to the tunnel
/// as credit allows, until EOF or a failure.
fn poll_up(
    up: &mut Up,
    busy: &mut Option<Box<Busy>>,
    rd: &mut OwnedReadHalf,
    writer: &mut TunnelWriter,
    cx: &mut Context<'_>,
) -> Poll<UpEnd> {
    loop {
        match up {
            Up::Reading => {
                // Wait before allocating: an idle tunnel holds no read buffer.
                // `poll_read_ready` keeps the waker in the socket's registration.
                if ready!(rd.as_ref().poll_read_ready(cx)).is_err() {
                    return Poll::Ready(UpEnd::ReadFailed);
                }
                // Through `AsyncRead`, which notes a short read as "drained" and so spares
                // the system call that would only say "would block".
                let mut chunk = BytesMut::with_capacity(MAX_CHUNK);
                match ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut *rd),
                    cx,
                    &mut chunk
                )) {
                    Ok(0) => return Poll::Ready(UpEnd::Eof),
                    Ok(_) => *up = Up::Sending(chunk.freeze()),
                    Err(e) => {
                        tracing::debug!(tunnel = ?writer.id, error = %e, "TCP read failed");
                        return Poll::Ready(UpEnd::ReadFailed);
                    }
                }
            }
            Up::Sending(bytes) if bytes.is_empty() => *up = Up::Reading,
            Up::Sending(bytes) => {
                let piece = bytes.len().min(writer.max_chunk);
                let Ok(permits) = u32::try_from(piece) else {
                    return Poll::Ready(UpEnd::SendFailed);
                };
                let waiting = busy.as_mut().and_then(|busy| busy.credit.as_mut());
                let credit = match waiting {
                    Some(wait) => {
                        let credit = ready!(wait.as_mut().poll(cx));
                        if let Some(busy) = busy.as_mut() {
                            busy.credit = None;
                        }
                        credit
                    }
                    None => match writer.shared.credit.try_acquire_many(permits) {
                        Ok(permit) => {
                            permit.forget();
                            Ok(())
                        }
                        Err(tokio::sync::TryAcquireError::Closed) => Err(TunnelReset),
                        Err(tokio::sync::TryAcquireError::NoPermits) => {
                            let wait = credit_wait(writer.shared.clone(), permits);
                            busy.get_or_insert_with(Box::default).credit = Some(wait);
                            continue;
                        }
                    },
                };
                if credit
                    .and_then(|()| writer.hand_over(bytes.split_to(piece)))
                    .is_err()
                {
                    return Poll::Ready(UpEnd::SendFailed);
                }
            }
            Up::Ended => return Poll::Ready(UpEnd::SendFailed),
        }
    }
}

/// Waits for `permits` of the tunnel's credit and keeps them (the driver gives them back
/// as the engine takes the bytes).
fn credit_wait(shared: Arc<Shared>, permits: u32) -> CreditWait {
    Box::pin(async move {
        let permit = shared.credit.acquire_many(permits).await;
        permit
            .map(tokio::sync::SemaphorePermit::forget)
            .map_err(|_| TunnelReset)
    })
}

/// Tunnel → TCP: writes each chunk whole, until the FIN or a failure. While it waits for
/// a chunk, the write half is parked with the port, which writes what it can itself.
fn poll_down(
    down: &mut Down,
    reader: &mut TunnelReader,
    wr: &mut Option<OwnedWriteHalf>,
    cx: &mut Context<'_>,
) -> Poll<DownEnd> {
    loop {
        match down {
            Down::Reading => match ready!(reader.poll_recv_parking(cx, wr)) {
                Ok(Some(bytes)) => *down = Down::Writing(bytes),
                Ok(None) => return Poll::Ready(DownEnd::Fin),
                Err(TunnelReset) => return Poll::Ready(DownEnd::Gone),
            },
            Down::Writing(bytes) if bytes.is_empty() => *down = Down::Reading,
            Down::Writing(bytes) => {
                let Some(half) = wr.as_mut() else {
                    // A chunk brings the half back: never without it.
                    tracing::warn!(tunnel = ?reader.id, "relay without its write half");
                    return Poll::Ready(DownEnd::WriteFailed);
                };
                match ready!(Pin::new(half).poll_write(cx, bytes)) {
                    Ok(written) if written > 0 => bytes.advance(written),
                    written => {
                        let error = written.map_or_else(|e| e.to_string(), |_| "wrote zero".into());
                        tracing::debug!(tunnel = ?reader.id, %error, "TCP write failed");
                        return Poll::Ready(DownEnd::WriteFailed);
                    }
                }
            }
            Down::Ended => return Poll::Ready(DownEnd::Gone),
        }
    }
}

/// Tells `relay` the driver's word on how the tunnel ended; no word at all (the driver is
/// gone) means it is dead.
fn tell(relay: &mut Relay, now: std::time::Instant, word: Option<Ending>) {
    match word {
        Some(Ending::Closed { reason, fin_read }) => {
            if fin_read {
                relay.tunnel_fin(now);
            }
            relay.tunnel_closed(now, reason);
        }
        Some(Ending::Reset) | None => relay.tunnel_error(now, TunnelError::Stream),
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
