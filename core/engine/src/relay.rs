//! How a relay between a TCP connection and a TCP tunnel ends: one sans-IO state machine
//! that every host drives, so that the rules are written once.
//!
//! A host relays bytes between a TCP connection (the target, on an edge; the local
//! application, on a client) and a tunnel. Moving the bytes is the host's; when a
//! direction ends, how, and what the other side is told is [`Relay`]'s:
//!
//! - a FIN is a half-close passed on: the TCP side's EOF finishes the tunnel
//!   ([`RelayAction::FinishTunnel`]), the tunnel's FIN shuts the TCP write side down
//!   ([`RelayAction::ShutdownTcpWrite`]), each after every byte before it;
//! - an error on one side resets the other: a TCP error aborts the tunnel
//!   ([`RelayAction::AbortTunnel`], `H3_CONNECT_ERROR`), a tunnel reset resets the TCP
//!   connection ([`RelayAction::ResetTcp`], RST);
//! - a peer that finished its direction and then stopped reading ours (`STOP_SENDING`) is
//!   not a failure: every byte it sent still reaches the TCP side, whose write side is then
//!   shut down, and the relay lingers (reads and discards what the TCP side still sends)
//!   for at most [`LINGER_TOTAL`], and at most [`LINGER_IDLE`] without a byte, before it
//!   closes the connection without a reset ([`RelayOutcome::PeerStopped`]); past
//!   [`LINGER_BYTES`] discarded it stops reading and only waits;
//! - the relay is done when both directions are finished (or, with
//!   [`RelayEnd::AfterPeerFin`], the tunnel's), or one side failed.
//!
//! No I/O and no clock: every input takes the host's `now`, deadlines come out of
//! [`Relay::poll_timeout`], and what the host must do comes out of [`Relay::poll_action`],
//! in order. Inputs that do not apply in the current state are ignored, so a host may
//! report a fact twice; everything after [`RelayAction::Done`] is ignored.
//!
//! ```
//! use std::time::Instant;
//! use veil_engine::relay::{Relay, RelayAction, RelayEnd, RelayOutcome};
//!
//! let now = Instant::now();
//! let mut relay = Relay::new(RelayEnd::BothFinished);
//! relay.tcp_eof(now); // read() returned 0
//! assert_eq!(relay.poll_action(), Some(RelayAction::FinishTunnel));
//! relay.tunnel_fin(now); // tunnel_recv reported the FIN…
//! relay.tcp_flushed(now); // …and every byte before it is written
//! assert_eq!(relay.poll_action(), Some(RelayAction::ShutdownTcpWrite));
//! assert_eq!(relay.poll_action(), Some(RelayAction::CloseTcp));
//! assert_eq!(
//!     relay.poll_action(),
//!     Some(RelayAction::Done(RelayOutcome::Finished))
//! );
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::TunnelError;
use crate::types::CloseReason;

/// Once a peer that finished its direction has stopped reading ours, and every byte it
/// sent is written to the TCP side, the relay reads and discards what the TCP side still
/// sends for at most this long in all, then closes.
///
/// Why linger at all: Linux answers `close()` on a socket with unread bytes with RST,
/// and a reset makes the far end drop what it has not yet read of ours (the tail of an
/// answer, typically). Reading until the TCP side closes lets it read everything first.
/// Why a bound: a TCP side that never closes must not hold the connection forever. 30 s is
/// the bound an HTTP server gives a lingering close.
pub const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// While lingering (see [`LINGER_TOTAL`]), the relay closes once the TCP side has sent
/// nothing for this long: a TCP side that stopped sending but does not close has nothing
/// more that a reset could spoil, and waiting longer only holds the connection.
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// While lingering (see [`LINGER_TOTAL`]), the relay stops reading the TCP side once it
/// has discarded this many bytes ([`Relay::tcp_reads_paused`]), and waits out
/// [`LINGER_TOTAL`] instead. A side that is still sending that much is not about to close,
/// and reading it at local speed would pull gigabytes for nobody: measured before this
/// bound, an edge spent a whole core for 30 s draining each download whose client had
/// half-closed and gone. It must not close early either: a close with unread bytes is a
/// reset, and a reset destroys what the far end has not read yet (an application that
/// keeps uploading while it has not read the answer loses the answer's tail). Not
/// reading costs nothing: the far end's sends stall under flow control.
pub const LINGER_BYTES: u64 = 1 << 20;

/// When a relay is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayEnd {
    /// When both directions are finished (a CONNECT tunnel).
    #[default]
    BothFinished,
    /// When the tunnel's direction has finished and everything it sent is written: the
    /// tunnel is then finished and the TCP connection closed even if the TCP side has not
    /// finished (a request forwarded over a one-request tunnel).
    AfterPeerFin,
}

/// How a relay ended ([`RelayAction::Done`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayOutcome {
    /// Both sides finished cleanly (or, with [`RelayEnd::AfterPeerFin`], the tunnel did).
    Finished,
    /// The tunnel's peer finished (every byte and its FIN reached the TCP side, which was
    /// half-closed) and then stopped reading ours: a server that answered and closed with
    /// part of the request unread, say. The TCP connection was closed without a reset,
    /// after lingering (see [`LINGER_TOTAL`]).
    PeerStopped,
    /// The tunnel was reset (or failed, or its connection was lost); the TCP connection
    /// was reset too.
    TunnelReset,
    /// The TCP connection failed; the tunnel was aborted.
    TcpFailed,
}

/// What the host must do next ([`Relay::poll_action`]), in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayAction {
    /// Finish the tunnel (`tunnel_finish`): the peer reads EOF after the bytes handed over
    /// so far.
    FinishTunnel,
    /// Shut the TCP write side down (`shutdown(SHUT_WR)`): the TCP side reads EOF after the
    /// bytes written so far, and may still send.
    ShutdownTcpWrite,
    /// The tunnel takes no more bytes (its peer stopped reading): drop what waits for it,
    /// and from now on read the TCP side only to discard what it sends, reporting each read
    /// with [`Relay::tcp_discarded`] and its EOF with [`Relay::tcp_eof`]. A host that
    /// cannot read yet may start when the relay lingers, and must by then.
    DiscardTcp,
    /// Abort the tunnel (`tunnel_abort`): the engine resets it with `H3_CONNECT_ERROR`
    /// (only stopping the peer's direction if ours was finished already).
    AbortTunnel,
    /// Close the TCP connection normally (its write side is shut down already, or it
    /// failed): no reset.
    CloseTcp,
    /// Close the TCP connection with RST: set `SO_LINGER` to 0 and close, without a
    /// `shutdown` first (that would send a FIN, and the TCP side would read a clean EOF
    /// before the reset).
    ResetTcp,
    /// The relay is over; nothing more will come. The host releases what it holds.
    Done(RelayOutcome),
}

/// TCP → tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Up {
    /// The TCP side's bytes go to the tunnel.
    Open,
    /// The TCP side's EOF became the tunnel's FIN.
    Finished,
    /// The peer stopped reading this direction: the TCP side's bytes are read and
    /// discarded until its EOF.
    Discarding,
    /// The peer stopped reading this direction, and the TCP side has nothing more to send
    /// (its EOF came, before or after the stop).
    Drained,
}

/// Tunnel → TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// The tunnel's bytes go to the TCP side.
    Open,
    /// The tunnel's FIN was read; bytes before it may still be on their way to the TCP
    /// side.
    FinRead,
    /// Every byte is written and the TCP write side is shut down.
    Finished,
}

/// Whether the engine still holds the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tunnel {
    /// Open, as far as the relay knows: an abort still means something.
    Open,
    /// The engine closed it (`TunnelClosed`), or the relay aborted it: its id is dead.
    Gone,
}

/// Where the relay as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Bytes move; no deadline.
    Relaying,
    /// The peer stopped ours and everything of its is written: the TCP side is read and
    /// discarded until its EOF or the first of the two deadlines.
    Lingering {
        /// `LINGER_TOTAL` after the linger began.
        give_up: Instant,
        /// `LINGER_IDLE` after the last byte read (or the start); `give_up` once the reads
        /// are paused.
        idle: Instant,
        /// Bytes discarded since the linger began; at `LINGER_BYTES` the reads pause.
        discarded: u64,
    },
    /// Over.
    Done(RelayOutcome),
}

/// How one relay between a TCP connection and a tunnel ends. See the [module
/// documentation](self).
#[derive(Debug, Clone)]
pub struct Relay {
    end: RelayEnd,
    up: Up,
    down: Down,
    tunnel: Tunnel,
    phase: Phase,
    actions: VecDeque<RelayAction>,
}

impl Relay {
    /// A relay whose two directions are open, ending as `end` says.
    pub fn new(end: RelayEnd) -> Self {
        Self {
            end,
            up: Up::Open,
            down: Down::Open,
            tunnel: Tunnel::Open,
            phase: Phase::Relaying,
            actions: VecDeque::new(),
        }
    }

    /// The next thing to do, in order; `None` when there is nothing now.
    pub fn poll_action(&mut self) -> Option<RelayAction> {
        self.actions.pop_front()
    }

    /// When [`on_timeout`](Self::on_timeout) is due: only while lingering.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Lingering { give_up, idle, .. } => Some(give_up.min(idle)),
            Phase::Relaying | Phase::Done(_) => None,
        }
    }

    /// How the relay ended, once it has ([`RelayAction::Done`] is queued or was taken).
    pub fn outcome(&self) -> Option<RelayOutcome> {
        match self.phase {
            Phase::Done(outcome) => Some(outcome),
            Phase::Relaying | Phase::Lingering { .. } => None,
        }
    }

    /// Whether the relay is lingering: the TCP side is read and discarded, against the
    /// deadline of [`poll_timeout`](Self::poll_timeout).
    pub fn is_lingering(&self) -> bool {
        matches!(self.phase, Phase::Lingering { .. })
    }

    /// Whether the host should read the TCP side only to discard what it reads (from
    /// [`RelayAction::DiscardTcp`] until the TCP side's EOF or the end).
    pub fn discards_tcp(&self) -> bool {
        self.up == Up::Discarding && self.outcome().is_none()
    }

    /// A read from the TCP side returned EOF. Every byte read before it must have been
    /// handed to the tunnel (or, after [`RelayAction::DiscardTcp`], discarded): a host that
    /// reads only when the tunnel took the previous bytes has that for free.
    pub fn tcp_eof(&mut self, now: Instant) {
        if self.outcome().is_some() {
            return;
        }
        match self.up {
            Up::Open => {
                //# RFC 9114 §4.4: "When the proxy receives a packet with the FIN bit set, it
                //# will close the send stream that it sends to the client."
                self.up = Up::Finished;
                self.actions.push_back(RelayAction::FinishTunnel);
            }
            Up::Discarding => self.up = Up::Drained,
            Up::Finished | Up::Drained => {}
        }
        self.advance(now);
    }

    /// Whether the host should stop reading the TCP side: lingering, with
    /// [`LINGER_BYTES`] discarded already. The relay then ends at its `LINGER_TOTAL`
    /// deadline (or sooner on an error); a host that reads on anyway only spends CPU.
    pub fn tcp_reads_paused(&self) -> bool {
        matches!(self.phase, Phase::Lingering { discarded, .. } if discarded >= LINGER_BYTES)
    }

    /// `len` bytes read from the TCP side were discarded (after
    /// [`RelayAction::DiscardTcp`]): while lingering, the idle deadline starts again, and
    /// past [`LINGER_BYTES`] in all the reads pause ([`Self::tcp_reads_paused`]). A host
    /// that cannot count gives 0.
    pub fn tcp_discarded(&mut self, now: Instant, len: usize) {
        if let Phase::Lingering {
            give_up, discarded, ..
        } = self.phase
        {
            let discarded = discarded.saturating_add(len as u64);
            let idle = if discarded >= LINGER_BYTES {
                give_up
            } else {
                now + LINGER_IDLE
            };
            self.phase = Phase::Lingering {
                give_up,
                idle,
                discarded,
            };
        }
    }

    /// A read, write or shutdown on the TCP side failed (a reset, a timeout, …).
    ///
    /// While lingering this ends the linger (there is nothing left to protect); otherwise
    /// the relay fails: the tunnel is aborted and the TCP connection reset.
    pub fn tcp_error(&mut self, now: Instant) {
        let _ = now;
        match self.phase {
            Phase::Done(_) => {}
            Phase::Lingering { .. } => self.done(RelayOutcome::PeerStopped),
            //# RFC 9114 §4.4: "A TCP connection error is signaled by abruptly terminating
            //# the stream. A proxy treats any error in the TCP connection, which includes
            //# receiving a TCP segment with the RST bit set, as a stream error of type
            //# H3_CONNECT_ERROR."
            Phase::Relaying => self.done(RelayOutcome::TcpFailed),
        }
    }

    /// Every byte read from the tunnel so far is written to the TCP side. After
    /// [`tunnel_fin`](Self::tunnel_fin), this passes the FIN on
    /// ([`RelayAction::ShutdownTcpWrite`]); before, it changes nothing. A host that writes
    /// each chunk before it reads the next reports this together with the FIN.
    pub fn tcp_flushed(&mut self, now: Instant) {
        if self.outcome().is_some() {
            return;
        }
        if self.down == Down::FinRead {
            //# RFC 9114 §4.4: "When the client ends the request stream (that is, the
            //# receive stream at the proxy enters the "Data Recvd" state), the proxy will
            //# set the FIN bit on its connection to the TCP server."
            self.down = Down::Finished;
            self.actions.push_back(RelayAction::ShutdownTcpWrite);
        }
        self.advance(now);
    }

    /// `tunnel_recv` reported the peer's FIN (the bytes before it may still wait to be
    /// written: [`tcp_flushed`](Self::tcp_flushed) says when they are).
    pub fn tunnel_fin(&mut self, now: Instant) {
        if self.outcome().is_some() {
            return;
        }
        if self.down == Down::Open {
            self.down = Down::FinRead;
        }
        self.advance(now);
    }

    /// A call on the tunnel failed with `error`.
    ///
    /// [`TunnelError::WriteClosed`] from `tunnel_send` or `tunnel_finish` means the peer
    /// stopped reading our direction (`STOP_SENDING`) while its own goes on: the relay
    /// discards the TCP side's bytes from then on and keeps delivering the peer's up to
    /// its FIN (the engine reads on, see `tunnel_abort`). Any other error means the tunnel
    /// is dead: the relay ends as [`RelayOutcome::TunnelReset`]. While lingering, nothing
    /// the tunnel says changes anything.
    pub fn tunnel_error(&mut self, now: Instant, error: TunnelError) {
        // Lingering, everything the peer sent is written: a reset now would only make the
        // TCP side drop what it has not read yet.
        if !matches!(self.phase, Phase::Relaying) {
            return;
        }
        match error {
            //# RFC 9000 §3.5: "An endpoint that receives a STOP_SENDING frame MUST send a
            //# RESET_STREAM frame if the stream is in the "Ready" or "Send" state."
            // quiche sends that reset itself; what is left for the relay is to stop
            // handing bytes over.
            TunnelError::WriteClosed => self.stopped(now),
            _ => self.done(RelayOutcome::TunnelReset),
        }
    }

    /// The engine closed the tunnel (`TunnelClosed`) with `reason`; its id is dead.
    ///
    /// - `Finished`: both directions are over in the engine; the relay goes on until the
    ///   peer's bytes are all written.
    /// - `Reset` after the FIN was read ([`tunnel_fin`](Self::tunnel_fin)): the peer
    ///   finished and then stopped reading ours (the engine reports a stop that way, and a
    ///   reset after the FIN changes nothing the peer sent): as a stop, see
    ///   [`RelayOutcome::PeerStopped`].
    /// - `Reset` before the FIN, a lost connection, anything else: the relay ends as
    ///   [`RelayOutcome::TunnelReset`], resetting the TCP connection.
    ///
    /// While lingering, the tunnel has nothing more to say: the close changes nothing.
    pub fn tunnel_closed(&mut self, now: Instant, reason: CloseReason) {
        if matches!(self.phase, Phase::Done(_)) {
            return;
        }
        self.tunnel = Tunnel::Gone;
        // Lingering, as in `tunnel_error`: the tunnel has nothing more to say.
        if self.is_lingering() {
            return;
        }
        match reason {
            // The engine closes a tunnel as finished only once the host has read the FIN.
            CloseReason::Finished => self.tunnel_fin(now),
            CloseReason::Reset { .. } if self.down != Down::Open => self.stopped(now),
            //# RFC 9114 §4.4: "Correspondingly, if a proxy detects an error with the
            //# stream or the QUIC connection, it MUST close the TCP connection. [...] In
            //# all these cases, if the underlying TCP implementation permits it, the proxy
            //# SHOULD send a TCP segment with the RST bit set."
            _ => self.done(RelayOutcome::TunnelReset),
        }
    }

    /// The deadline of [`poll_timeout`](Self::poll_timeout) may have come (early is
    /// harmless): a linger past either bound ends, closing the TCP connection normally.
    pub fn on_timeout(&mut self, now: Instant) {
        if let Phase::Lingering { give_up, idle, .. } = self.phase {
            if now >= give_up.min(idle) {
                self.done(RelayOutcome::PeerStopped);
            }
        }
    }

    /// The peer stopped reading our direction.
    ///
    /// RFC 9114 §4.4 asks a proxy to close the TCP connection, with RST, when the client
    /// aborts reading ("If the proxy detects that the client has reset the stream or
    /// aborted reading from the stream, it MUST close the TCP connection."). The relay
    /// closes it, but only after every byte the peer sent is written, and without a reset:
    /// the engine reports a stop only on a peer whose own direction ends in a FIN (a peer
    /// that finished and then aborted), and a reset would make the TCP side drop the tail
    /// of what that peer sent.
    fn stopped(&mut self, now: Instant) {
        match self.up {
            Up::Open => {
                self.up = Up::Discarding;
                self.actions.push_back(RelayAction::DiscardTcp);
            }
            Up::Finished => self.up = Up::Drained,
            Up::Discarding | Up::Drained => {}
        }
        self.advance(now);
    }

    /// Ends the relay, or starts the linger, when the directions say so.
    fn advance(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Done(_)) || self.down != Down::Finished {
            return;
        }
        match (self.up, self.phase) {
            (Up::Drained, _) => self.done(RelayOutcome::PeerStopped),
            (Up::Discarding, Phase::Relaying) => {
                self.phase = Phase::Lingering {
                    give_up: now + LINGER_TOTAL,
                    idle: now + LINGER_IDLE,
                    discarded: 0,
                };
            }
            (Up::Finished, _) => self.done(RelayOutcome::Finished),
            (Up::Open, _) if self.end == RelayEnd::AfterPeerFin => {
                self.up = Up::Finished;
                self.actions.push_back(RelayAction::FinishTunnel);
                self.done(RelayOutcome::Finished);
            }
            _ => {}
        }
    }

    /// Queues the closing actions of `outcome` and ends the relay.
    fn done(&mut self, outcome: RelayOutcome) {
        match outcome {
            RelayOutcome::Finished | RelayOutcome::PeerStopped => {
                self.actions.push_back(RelayAction::CloseTcp);
            }
            RelayOutcome::TunnelReset | RelayOutcome::TcpFailed => {
                // A tunnel the engine closed has nothing to abort; one that only failed a
                // call is aborted anyway, so that the engine lets go of it.
                if self.tunnel == Tunnel::Open {
                    self.tunnel = Tunnel::Gone;
                    self.actions.push_back(RelayAction::AbortTunnel);
                }
                //# RFC 9114 §4.4: "If the stream is reset or reading is aborted by the
                //# client, a proxy SHOULD perform the same operation on the other direction
                //# in order to ensure that both directions of the stream are cancelled."
                self.actions.push_back(RelayAction::ResetTcp);
            }
        }
        self.phase = Phase::Done(outcome);
        self.actions.push_back(RelayAction::Done(outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RelayAction::{
        AbortTunnel, CloseTcp, DiscardTcp, Done, FinishTunnel, ResetTcp, ShutdownTcpWrite,
    };
    use RelayOutcome::{Finished, PeerStopped, TcpFailed, TunnelReset};

    /// One input, as a host reports it.
    #[derive(Debug, Clone, Copy)]
    enum In {
        TcpEof,
        TcpDiscarded,
        TcpError,
        TcpFlushed,
        TunnelFin,
        TunnelError(TunnelError),
        TunnelClosed(CloseReason),
        Timeout,
    }
    use In::{TcpDiscarded, TcpEof, TcpError, TcpFlushed, Timeout, TunnelFin};

    const STOPPED: In = In::TunnelError(TunnelError::WriteClosed);
    const STREAM_FAILED: In = In::TunnelError(TunnelError::Stream);
    const CLOSED_FINISHED: In = In::TunnelClosed(CloseReason::Finished);
    const CLOSED_RESET: In = In::TunnelClosed(CloseReason::Reset {
        code: crate::H3_CONNECT_ERROR,
    });
    const CLOSED_LOST: In = In::TunnelClosed(CloseReason::ConnectionLost);

    /// A relay and a clock the test moves by hand.
    struct Bench {
        relay: Relay,
        now: Instant,
    }

    impl Bench {
        fn new(end: RelayEnd) -> Self {
            Self {
                relay: Relay::new(end),
                now: Instant::now(),
            }
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
        }

        /// Feeds `input` and returns every action it queued.
        fn feed(&mut self, input: In) -> Vec<RelayAction> {
            let (relay, now) = (&mut self.relay, self.now);
            match input {
                TcpEof => relay.tcp_eof(now),
                TcpDiscarded => relay.tcp_discarded(now, 1),
                TcpError => relay.tcp_error(now),
                TcpFlushed => relay.tcp_flushed(now),
                TunnelFin => relay.tunnel_fin(now),
                In::TunnelError(error) => relay.tunnel_error(now, error),
                In::TunnelClosed(reason) => relay.tunnel_closed(now, reason),
                Timeout => relay.on_timeout(now),
            }
            std::iter::from_fn(|| self.relay.poll_action()).collect()
        }

        /// Feeds every input, returning every action queued along the way.
        fn run(&mut self, inputs: &[In]) -> Vec<RelayAction> {
            inputs.iter().flat_map(|input| self.feed(*input)).collect()
        }
    }

    /// Runs `inputs` on a fresh relay and returns the actions (all of them, in order).
    fn run(end: RelayEnd, inputs: &[In]) -> Vec<RelayAction> {
        Bench::new(end).run(inputs)
    }

    #[test]
    fn fins_pass_both_ways_in_every_order_and_end_the_relay_once() {
        let both = RelayEnd::BothFinished;
        let cases: &[(&[In], &[RelayAction])] = &[
            // TCP side first.
            (
                &[TcpEof, TunnelFin, TcpFlushed],
                &[FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(Finished)],
            ),
            // Tunnel side first; the FIN waits for the bytes before it.
            (
                &[TunnelFin, TcpFlushed, TcpEof],
                &[ShutdownTcpWrite, FinishTunnel, CloseTcp, Done(Finished)],
            ),
            // Flushed before the FIN changes nothing; the engine's close is no news.
            (
                &[TcpFlushed, TunnelFin, TcpEof, CLOSED_FINISHED, TcpFlushed],
                &[FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(Finished)],
            ),
            // The engine's close implies the FIN was read.
            (
                &[TcpEof, CLOSED_FINISHED, TcpFlushed],
                &[FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(Finished)],
            ),
            // Every fact twice.
            (
                &[TcpEof, TcpEof, TunnelFin, TunnelFin, TcpFlushed, TcpFlushed],
                &[FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(Finished)],
            ),
        ];
        for (inputs, expected) in cases {
            assert_eq!(run(both, inputs), *expected, "{inputs:?}");
        }
    }

    #[test]
    fn one_fin_alone_is_a_half_close_not_an_end() {
        let mut bench = Bench::new(RelayEnd::BothFinished);
        assert_eq!(bench.feed(TcpEof), [FinishTunnel]);
        assert_eq!(bench.relay.outcome(), None);
        let mut bench = Bench::new(RelayEnd::BothFinished);
        assert_eq!(bench.run(&[TunnelFin, TcpFlushed]), [ShutdownTcpWrite]);
        assert_eq!(bench.relay.outcome(), None);
        assert_eq!(bench.relay.poll_timeout(), None);
    }

    #[test]
    fn after_peer_fin_ends_with_the_tunnels_fin_and_finishes_ours() {
        let after = RelayEnd::AfterPeerFin;
        assert_eq!(
            run(after, &[TunnelFin, TcpFlushed]),
            [ShutdownTcpWrite, FinishTunnel, CloseTcp, Done(Finished)]
        );
        // The TCP side finished first: no second FIN.
        assert_eq!(
            run(after, &[TcpEof, TunnelFin, TcpFlushed]),
            [FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(Finished)]
        );
        // A stop still lingers.
        let mut bench = Bench::new(after);
        assert_eq!(
            bench.run(&[TunnelFin, CLOSED_RESET, TcpFlushed]),
            [DiscardTcp, ShutdownTcpWrite]
        );
        assert!(bench.relay.is_lingering());
    }

    #[test]
    fn failures_reset_the_other_side() {
        let both = RelayEnd::BothFinished;
        let cases: &[(&[In], &[RelayAction])] = &[
            // TCP errors abort the tunnel and reset TCP, in every state before the end.
            (&[TcpError], &[AbortTunnel, ResetTcp, Done(TcpFailed)]),
            (
                &[TcpEof, TcpError],
                &[FinishTunnel, AbortTunnel, ResetTcp, Done(TcpFailed)],
            ),
            (
                &[TunnelFin, TcpError],
                &[AbortTunnel, ResetTcp, Done(TcpFailed)],
            ),
            // The engine closed the tunnel (a stop after the FIN): nothing to abort.
            (
                &[TunnelFin, CLOSED_RESET, TcpError],
                &[DiscardTcp, ResetTcp, Done(TcpFailed)],
            ),
            // A reset before the FIN resets TCP; the tunnel is gone already.
            (&[CLOSED_RESET], &[ResetTcp, Done(TunnelReset)]),
            (
                &[TcpEof, CLOSED_RESET],
                &[FinishTunnel, ResetTcp, Done(TunnelReset)],
            ),
            // A lost connection resets, even after the FIN was read.
            (&[TunnelFin, CLOSED_LOST], &[ResetTcp, Done(TunnelReset)]),
            (
                &[TunnelFin, TcpFlushed, CLOSED_LOST],
                &[ShutdownTcpWrite, ResetTcp, Done(TunnelReset)],
            ),
            (
                &[In::TunnelClosed(CloseReason::IdleTimeout)],
                &[ResetTcp, Done(TunnelReset)],
            ),
            // A failed call: the tunnel is dead; abort so that the engine lets go.
            (
                &[STREAM_FAILED],
                &[AbortTunnel, ResetTcp, Done(TunnelReset)],
            ),
            (
                &[In::TunnelError(TunnelError::UnknownTunnel)],
                &[AbortTunnel, ResetTcp, Done(TunnelReset)],
            ),
            // A failure after another changes nothing.
            (
                &[TcpError, CLOSED_RESET, STREAM_FAILED, TcpEof, Timeout],
                &[AbortTunnel, ResetTcp, Done(TcpFailed)],
            ),
            (
                &[CLOSED_RESET, TcpError, TunnelFin, TcpFlushed],
                &[ResetTcp, Done(TunnelReset)],
            ),
        ];
        for (inputs, expected) in cases {
            assert_eq!(run(both, inputs), *expected, "{inputs:?}");
        }
    }

    #[test]
    fn a_finished_relay_ignores_late_news() {
        let mut bench = Bench::new(RelayEnd::BothFinished);
        bench.run(&[TcpEof, TunnelFin, TcpFlushed]);
        assert_eq!(bench.relay.outcome(), Some(Finished));
        for input in [TcpError, CLOSED_RESET, CLOSED_LOST, STREAM_FAILED, STOPPED] {
            assert_eq!(bench.feed(input), [], "{input:?}");
        }
        assert_eq!(bench.relay.outcome(), Some(Finished));
    }

    #[test]
    fn a_stop_after_the_fin_delivers_everything_then_lingers_and_closes_cleanly() {
        let mut bench = Bench::new(RelayEnd::BothFinished);
        // The FIN was read; the bytes before it are still being written.
        assert!(!bench.relay.discards_tcp());
        assert_eq!(bench.run(&[TunnelFin, CLOSED_RESET]), [DiscardTcp]);
        assert!(bench.relay.discards_tcp());
        assert!(!bench.relay.is_lingering());
        assert_eq!(bench.relay.poll_timeout(), None);
        // Discarding before the linger starts no clock.
        assert_eq!(bench.feed(TcpDiscarded), []);
        assert_eq!(bench.relay.poll_timeout(), None);
        // Written: half-close, then linger from now.
        assert_eq!(bench.feed(TcpFlushed), [ShutdownTcpWrite]);
        let start = bench.now;
        assert_eq!(bench.relay.poll_timeout(), Some(start + LINGER_IDLE));
        // The TCP side closes: done, no reset.
        assert_eq!(bench.feed(TcpEof), [CloseTcp, Done(PeerStopped)]);
        assert!(!bench.relay.discards_tcp());
        assert_eq!(bench.relay.poll_timeout(), None);
    }

    #[test]
    fn a_stop_seen_as_a_failed_send_is_a_stop_too() {
        // The peer stopped ours before its FIN came: the engine reads on to the FIN.
        let mut bench = Bench::new(RelayEnd::BothFinished);
        assert_eq!(bench.feed(STOPPED), [DiscardTcp]);
        assert_eq!(bench.feed(STOPPED), []);
        assert_eq!(bench.run(&[TunnelFin, TcpFlushed]), [ShutdownTcpWrite]);
        assert!(bench.relay.is_lingering());
        // Then the engine closes it as reset, after the FIN: no news.
        assert_eq!(bench.feed(CLOSED_RESET), []);
        assert_eq!(bench.feed(TcpEof), [CloseTcp, Done(PeerStopped)]);
        // Refused at our FIN: the TCP side has ended already, no linger.
        assert_eq!(
            run(
                RelayEnd::BothFinished,
                &[TcpEof, STOPPED, TunnelFin, TcpFlushed]
            ),
            [FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(PeerStopped)]
        );
        // A reset of the peer's direction after a stop is a reset still.
        assert_eq!(
            run(RelayEnd::BothFinished, &[STOPPED, CLOSED_RESET]),
            [DiscardTcp, ResetTcp, Done(TunnelReset)]
        );
        assert_eq!(
            run(RelayEnd::BothFinished, &[STOPPED, STREAM_FAILED]),
            [DiscardTcp, AbortTunnel, ResetTcp, Done(TunnelReset)]
        );
    }

    #[test]
    fn a_stop_after_both_fins_needs_no_linger() {
        assert_eq!(
            run(
                RelayEnd::BothFinished,
                &[TcpEof, TunnelFin, CLOSED_RESET, TcpFlushed]
            ),
            [FinishTunnel, ShutdownTcpWrite, CloseTcp, Done(PeerStopped)]
        );
        // The TCP side's EOF came while discarding, before the FIN was written.
        assert_eq!(
            run(
                RelayEnd::BothFinished,
                &[TunnelFin, CLOSED_RESET, TcpEof, TcpFlushed]
            ),
            [DiscardTcp, ShutdownTcpWrite, CloseTcp, Done(PeerStopped)]
        );
    }

    /// A relay lingering since `bench.now`.
    fn lingering() -> Bench {
        let mut bench = Bench::new(RelayEnd::BothFinished);
        bench.run(&[TunnelFin, TcpFlushed, CLOSED_RESET]);
        assert!(bench.relay.is_lingering());
        bench
    }

    #[test]
    fn a_linger_ends_after_five_quiet_seconds() {
        let mut bench = lingering();
        let start = bench.now;
        bench.advance(Duration::from_millis(4_999));
        assert_eq!(bench.feed(Timeout), [], "early is harmless");
        bench.advance(Duration::from_millis(1));
        assert_eq!(bench.relay.poll_timeout(), Some(start + LINGER_IDLE));
        assert_eq!(bench.feed(Timeout), [CloseTcp, Done(PeerStopped)]);
    }

    #[test]
    fn each_discarded_read_restarts_the_idle_deadline_but_not_the_total() {
        let mut bench = lingering();
        let start = bench.now;
        // A byte every 4 s keeps the linger going…
        while bench.now + Duration::from_secs(4) < start + LINGER_TOTAL {
            bench.advance(Duration::from_secs(4));
            assert_eq!(bench.feed(Timeout), []);
            assert_eq!(bench.feed(TcpDiscarded), []);
            let deadline = (bench.now + LINGER_IDLE).min(start + LINGER_TOTAL);
            assert_eq!(bench.relay.poll_timeout(), Some(deadline));
        }
        // …for 30 s in all.
        assert_eq!(bench.relay.poll_timeout(), Some(start + LINGER_TOTAL));
        bench.now = start + Duration::from_millis(29_999);
        assert_eq!(bench.feed(Timeout), []);
        bench.now = start + LINGER_TOTAL;
        assert_eq!(bench.feed(Timeout), [CloseTcp, Done(PeerStopped)]);
    }

    #[test]
    fn past_a_mebibyte_discarded_the_reads_pause_and_the_linger_waits_out_its_total() {
        let mut bench = lingering();
        let start = bench.now;
        let chunk = 64 * 1024;
        let chunks = usize::try_from(LINGER_BYTES).expect("a mebibyte") / chunk;
        for _ in 0..chunks - 1 {
            bench.relay.tcp_discarded(bench.now, chunk);
        }
        assert!(!bench.relay.tcp_reads_paused());
        bench.relay.tcp_discarded(bench.now, chunk);
        assert!(bench.relay.tcp_reads_paused());
        // No close, no reset: what the far end has not read stays readable.
        assert!(bench.relay.poll_action().is_none());
        assert_eq!(bench.relay.poll_timeout(), Some(start + LINGER_TOTAL));
        bench.advance(LINGER_IDLE * 2);
        assert_eq!(bench.feed(Timeout), [], "no idle bound while paused");
        bench.now = start + LINGER_TOTAL;
        assert_eq!(bench.feed(Timeout), [CloseTcp, Done(PeerStopped)]);
        // A host that cannot count keeps reading, under the time bounds alone.
        let mut bench = lingering();
        for _ in 0..1000 {
            bench.relay.tcp_discarded(bench.now, 0);
        }
        assert!(!bench.relay.tcp_reads_paused());
    }

    #[test]
    fn a_linger_ends_early_on_eof_or_error_without_a_reset() {
        let mut bench = lingering();
        assert_eq!(bench.feed(TcpEof), [CloseTcp, Done(PeerStopped)]);
        let mut bench = lingering();
        assert_eq!(bench.feed(TcpError), [CloseTcp, Done(PeerStopped)]);
        // A lost connection while lingering: everything of the peer's is written already.
        let mut bench = lingering();
        assert_eq!(bench.feed(CLOSED_LOST), []);
        assert!(bench.relay.is_lingering());
    }

    #[test]
    fn timeouts_outside_a_linger_do_nothing() {
        let mut bench = Bench::new(RelayEnd::BothFinished);
        bench.advance(LINGER_TOTAL * 2);
        assert_eq!(bench.feed(Timeout), []);
        assert_eq!(bench.feed(TcpDiscarded), []);
        assert_eq!(bench.relay.poll_timeout(), None);
    }
}
