//! How a TCP tunnel ends: both FINs, an abort by the host, a reset or a stop by the peer.
//!
//! # Why an abort never resets a finished direction
//!
//! quiche 0.30 hides a `RESET_STREAM` that arrives after the stream's FIN: `RecvBuf::reset`
//! queues a zero-length buffer to make the reset visible, but `RecvBuf::write` drops empty
//! buffers once the final size is known, so the stream reads as cleanly finished. A peer
//! whose FIN (and perhaps some bytes before it) was overtaken by our reset would read a
//! clean end with bytes missing, or, on a client whose 200 was lost, an end without a
//! response. So once the host finished a tunnel's write side, `tunnel_abort` leaves that
//! side alone (the peer gets every byte and the FIN it was promised) and only stops
//! reading; the peer learns of the abort from the `STOP_SENDING`, and keeps reading what
//! we sent before it closes the tunnel (see [`Endpoint::write_stopped`]).

use super::{
    Endpoint, H3_CONNECT_ERROR, H3_EXCESSIVE_LOAD, H3_REQUEST_CANCELLED, Receiving, RoleState,
    Sending, TunnelState,
};
use crate::error::TunnelError;
use crate::types::{CloseReason, Event, RefusedReason, TunnelId};

/// Requests an HTTP/3 client may reset before they are answered in 10 s, on one
/// connection; HTTP/2's default bound on resets is the same.
pub const MAX_EARLY_RESETS_PER_10S: u32 = 1000;

impl Endpoint {
    /// Aborts a tunnel with `H3_CONNECT_ERROR` (the target connection was reset or failed):
    /// resets our direction (`RESET_STREAM`) and drops what the peer still sends until it
    /// ends its own (see `abort_stream` for why without `STOP_SENDING`), unless
    /// `tunnel_finish` already finished ours, which then delivers every byte and the FIN
    /// while `STOP_SENDING` tells the peer (see the module documentation for why). A client
    /// tunnel still waiting is simply dropped. The id is dead afterwards; no event follows.
    ///
    /// That second form still meets quiche 0.30's gap: when every byte of ours is
    /// acknowledged before the peer's reset arrives, quiche keeps the stream (and, on the
    /// edge, a unit of the client's stream credit) for the connection's life. It needs a
    /// host that finished a tunnel and then aborted it (a target that sent its FIN and then
    /// a TCP reset), and no other signal reaches the peer once our FIN is out. A veil
    /// client notices when such streams hold most of its credit and moves new tunnels to a
    /// fresh connection, letting this one idle out (`credit_withheld`; engine test
    /// `kept`): the edge forgets the streams with the connection.
    pub fn tunnel_abort(&mut self, tunnel: TunnelId) -> Result<(), TunnelError> {
        //# RFC 9114 §4.4: "A TCP connection error is signaled by abruptly terminating the
        //# stream. A proxy treats any error in the TCP connection, which includes receiving
        //# a TCP segment with the RST bit set, as a stream error of type H3_CONNECT_ERROR."
        let entry = self
            .tunnels
            .get(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        let finished = entry.sending.is_over();
        let unanswered = matches!(entry.state, TunnelState::AwaitingResponse { .. });
        self.note_end(tunnel, crate::audit::Ending::Aborted);
        if let Some((handle, stream)) = self.remove_tunnel(tunnel) {
            if let Some(conn) = self.conns.get_mut(handle) {
                if finished && unanswered {
                    // Optimistic: a stop now would make the edge drop the request with
                    // what followed it; it comes with the answer (`endpoint::optimistic`).
                    conn.abandoned.push(stream);
                } else if finished {
                    let _ =
                        conn.wire
                            .stream_shutdown(stream, quiche::Shutdown::Read, H3_CONNECT_ERROR);
                } else {
                    conn.abort_stream(stream, H3_CONNECT_ERROR);
                }
            }
            self.queue_send(handle);
        }
        Ok(())
    }

    /// The peer stopped our direction (`STOP_SENDING`; quiche has already reset it). An
    /// open TCP tunnel keeps reading the peer's direction up to its FIN (the peer may have
    /// finished it and aborted afterwards, see the module documentation) and then closes
    /// as reset with `code`; `tunnel_send` and `tunnel_finish` meanwhile fail with
    /// `WriteClosed`. Anything else ends at once, as a reset.
    pub(super) fn write_stopped(&mut self, handle: u64, stream: u64, code: u64) {
        let id = self
            .conns
            .get(handle)
            .and_then(|conn| conn.streams.get(&stream).copied());
        let tunnel = id.and_then(|id| self.tunnels.get_mut(&id));
        match tunnel {
            Some(tunnel)
                if tunnel.udp.is_none()
                    && matches!(tunnel.state, TunnelState::Open)
                    && tunnel.receiving != Receiving::FinDelivered =>
            {
                tunnel.sending = Sending::Stopped { code };
            }
            _ => self.peer_reset(handle, stream, code),
        }
    }

    /// Notices a `STOP_SENDING` on an open TCP tunnel's direction (see [`Self::write_stopped`]).
    /// quiche reports a stopped stream as writable only if it was not writable before, so
    /// the engine also asks before every read.
    ///
    /// A stream quiche has forgotten was stopped too, its code gone with it: quiche forgets
    /// a stream once both directions are done, and an open tunnel has not finished ours, so
    /// the peer stopped it and our `RESET_STREAM` was acknowledged. That happens before the
    /// host reads when HTTP/3 read the peer's FIN itself (it reads one that follows no data)
    /// and the stop came while the host was busy; without this the tunnel would wait for
    /// its host's bytes forever (`tunnel_send` reads the same from the same error).
    pub(super) fn notice_stopped(&mut self, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get(&id) else {
            return;
        };
        if tunnel.sending.is_over() || tunnel.udp.is_some() {
            return;
        }
        let Some(handle) = tunnel.conn else {
            return;
        };
        let stream = tunnel.stream;
        let open = matches!(tunnel.state, TunnelState::Open);
        let stopped =
            self.conns
                .get_mut(handle)
                .and_then(|conn| match conn.wire.stream_capacity(stream) {
                    Err(quiche::Error::StreamStopped(code)) => Some(code),
                    Err(quiche::Error::InvalidStreamState(_)) if open => Some(H3_REQUEST_CANCELLED),
                    _ => None,
                });
        if let Some(code) = stopped {
            self.write_stopped(handle, stream, code);
        }
    }

    /// Looks, after each batch of input, for a stop of our direction on the tunnels whose
    /// peer has finished.
    ///
    /// quiche reports a stopped stream as writable only if it was not writable before, and
    /// [`Self::notice_stopped`] before each read covers a tunnel only while it still reads.
    /// A tunnel that had read the peer's FIN before the stop came would hear of it only
    /// when it next sends, and by then quiche may have forgotten the stream (once our
    /// `RESET_STREAM` is acknowledged, a round trip after this look): its host would see a
    /// failure instead of the peer's stop, long after it. Only those tunnels are looked at,
    /// one stream lookup each; usually there are none.
    pub(super) fn notice_stops(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if conn.peer_finished.is_empty() {
            return;
        }
        let mut waiting = std::mem::take(&mut conn.peer_finished);
        waiting.retain(|id| {
            self.notice_stopped(*id);
            self.tunnels
                .get(id)
                .is_some_and(|tunnel| !tunnel.sending.is_over())
        });
        if let Some(conn) = self.conns.get_mut(handle) {
            conn.peer_finished = waiting;
        }
    }

    /// The peer reset its direction (`RESET_STREAM`), or stopped ours on a tunnel that
    /// cannot go on reading: the tunnel ends as reset, both directions shut down. A stream
    /// without a tunnel only stops being read: its write side is finished or reset already.
    pub(super) fn peer_reset(&mut self, handle: u64, stream: u64, code: u64) {
        if self.retry_rejected(handle, stream, code) {
            return;
        }
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(&id) = conn.streams.get(&stream) else {
            let _ = conn
                .wire
                .stream_shutdown(stream, quiche::Shutdown::Read, H3_CONNECT_ERROR);
            return;
        };
        conn.abort_stream(stream, H3_CONNECT_ERROR);
        self.note_end(
            id,
            crate::audit::Ending::Closed(CloseReason::Reset { code }),
        );
        let Some(tunnel) = self.tunnels.get(&id) else {
            return;
        };
        let refused = matches!(tunnel.state, TunnelState::AwaitingResponse { .. });
        let early = tunnel.early;
        // Edge: the host (or its hook) was asked to act and has not answered yet.
        let unanswered = matches!(
            tunnel.state,
            TunnelState::Requested { .. } | TunnelState::Deciding { .. } | TunnelState::Accepting
        );
        self.remove_tunnel(id);
        if refused {
            self.report_refused(id, early, RefusedReason::Reset { code });
        } else {
            self.events.push_back(Event::TunnelClosed {
                tunnel: id,
                reason: CloseReason::Reset { code },
            });
        }
        if unanswered {
            self.count_early_reset(handle);
        }
        self.queue_send(handle);
    }

    /// Edge, HTTP/3: a request reset by the peer before it was answered, after the host
    /// was asked to act on it (a dial, a lookup). Past [`MAX_EARLY_RESETS_PER_10S`] in a
    /// window the connection is closed with `H3_EXCESSIVE_LOAD` and counted: the HTTP/3
    /// form of HTTP/2's rapid reset (CVE-2023-44487), where the peer's cost is a frame and
    /// ours a connection to an origin. QUIC's stream limits bound how many requests are
    /// open at once, not how fast they are opened and reset. (HTTP/2 has the same bound in
    /// its session, `h2::Limits::max_resets_per_10s`.)
    fn count_early_reset(&mut self, handle: u64) {
        if !matches!(self.role, RoleState::Edge(_)) {
            return;
        }
        let now = self.clock;
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        if conn.wire.quic().is_none() || !conn.early_resets.hit(now, MAX_EARLY_RESETS_PER_10S) {
            return;
        }
        tracing::info!(
            connection = handle,
            peer = %conn.peer,
            "closing a connection that resets requests faster than {MAX_EARLY_RESETS_PER_10S} in 10 s"
        );
        let _ = conn.wire.close(true, H3_EXCESSIVE_LOAD, b"rapid reset");
        self.stats.http3_rapid_reset_floods += 1;
    }

    /// Closes a tunnel whose both directions are over: `Finished`, or `Reset` when the peer
    /// stopped ours.
    pub(super) fn finish_if_done(&mut self, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get(&id) else {
            return;
        };
        if !(tunnel.sending.is_over() && tunnel.receiving == Receiving::FinDelivered) {
            return;
        }
        let reason = match tunnel.sending {
            Sending::Stopped { code } => CloseReason::Reset { code },
            _ => CloseReason::Finished,
        };
        self.note_end(id, crate::audit::Ending::Closed(reason));
        if let Some((handle, stream)) = self.remove_tunnel(id) {
            // Written is not delivered: a shutdown waits until the peer has the end.
            if let Some(conn) = self.conns.get_mut(handle) {
                if reason == CloseReason::Finished {
                    conn.ended.push(stream);
                }
            }
        }
        self.events
            .push_back(Event::TunnelClosed { tunnel: id, reason });
    }
}
