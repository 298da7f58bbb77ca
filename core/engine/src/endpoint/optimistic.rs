//! Client: optimistic TCP tunnels (`ClientConfig::optimistic`).
//!
//! A new tunnel normally costs a round trip to the edge before its first byte leaves: the
//! host hears `TunnelOpened` at the edge's 2xx, answers its application (a SOCKS5 reply,
//! an HTTP `200 Connection established`), and only then reads what the application sends.
//! In optimistic mode the host hears `TunnelOpened` as soon as the request is written to
//! its stream, and the bytes it then sends follow the request on the same stream, before
//! any answer. The edge reads them once it has answered (`Receiving::Deferred`).
//!
//! The same idea, for datagrams, is in the MASQUE RFCs:
//!
//!# RFC 9298 §5: "A client MAY optimistically start sending UDP packets in HTTP
//!# Datagrams before receiving the response to its UDP proxying request."
//!
//! For a CONNECT stream over HTTP/3 or HTTP/2 it is safe in a way it is not over HTTP/1.1
//! (where bytes sent after a refused request would be read as the next request): the
//! bytes travel in DATA frames of the request's own stream, which the edge discards with
//! the stream when it refuses.
//!
//! What changes for the host is what a refusal looks like. The application was already
//! told that its connection is open, so a non-2xx answer ends the tunnel with
//! `TunnelClosed { reason: Refused { status } }` (the host resets the TCP side), and a
//! connection lost before the answer with `TunnelClosed { ConnectionLost }`. A request
//! that nothing has followed yet is sent again on the next connection, as without
//! optimism; once bytes or the FIN followed it, they cannot be sent again, and the tunnel
//! is lost with its connection.

use quiche::h3;

use super::{CloseReason, Endpoint, Event, RefusedReason, Sending, TunnelId, TunnelState};
use crate::endpoint::H3_MESSAGE_ERROR;

/// How far a client's TCP tunnel went before the edge's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Early {
    /// Not optimistic (or not yet sent): the host hears `TunnelOpened` at the 2xx.
    #[default]
    Off,
    /// The host heard `TunnelOpened` when the request left. Nothing of its followed yet,
    /// so the request may still be sent again on a new connection.
    Opened,
    /// Bytes or the FIN followed the request before the answer. They cannot be sent
    /// again: if the request is lost, the tunnel is lost with it.
    Sent,
}

impl Early {
    /// The host was told the tunnel is open before the edge answered.
    pub(super) fn told_open(self) -> bool {
        self != Self::Off
    }
}

impl Endpoint {
    /// Client: tunnel `id`'s request has just been written on connection `handle`. An
    /// optimistic TCP tunnel is reported open now; one reported open before (its request
    /// went on a connection that was lost) is told it can write again, and a FIN it queued
    /// meanwhile follows the request.
    pub(super) fn request_sent(&mut self, optimistic: bool, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        if tunnel.udp.is_some() {
            return;
        }
        match tunnel.early {
            Early::Off if optimistic => {
                tunnel.early = Early::Opened;
                self.events.push_back(Event::TunnelOpened { tunnel: id });
            }
            Early::Off | Early::Sent => {}
            Early::Opened => match tunnel.sending {
                Sending::Open { blocked: true } => {
                    tunnel.sending = Sending::Open { blocked: false };
                    self.events.push_back(Event::TunnelWritable { tunnel: id });
                }
                Sending::FinQueued => {
                    tunnel.sending = Sending::Open { blocked: false };
                    let _ = self.tunnel_finish(id);
                }
                _ => {}
            },
        }
    }

    /// Reports that tunnel `id` will not open, and counts it: `TunnelRefused`, or, for a
    /// tunnel whose host was told it is open (`early`), `TunnelClosed` with the nearest
    /// reason. The tunnel must already be removed (or about to be).
    pub(super) fn report_refused(&mut self, id: TunnelId, early: Early, reason: RefusedReason) {
        self.stats.tunnels_refused += 1;
        if !early.told_open() {
            self.events
                .push_back(Event::TunnelRefused { tunnel: id, reason });
            return;
        }
        let reason = match reason {
            RefusedReason::Status { status, .. } => CloseReason::Refused { status },
            RefusedReason::Reset { code } => CloseReason::Reset { code },
            RefusedReason::MalformedResponse => CloseReason::Reset {
                code: H3_MESSAGE_ERROR,
            },
            // Edge unavailable, connection lost; nothing else reaches a TCP tunnel.
            _ => CloseReason::ConnectionLost,
        };
        self.events
            .push_back(Event::TunnelClosed { tunnel: id, reason });
    }

    /// Client: how `tunnel_send` treats a tunnel the edge has not answered yet. `None`:
    /// send on the stream as on an open tunnel (the request is out and the host was told
    /// the tunnel is open). `Some(result)`: answer with it.
    pub(super) fn early_send(
        &mut self,
        tunnel: TunnelId,
    ) -> Option<Result<usize, super::TunnelError>> {
        let entry = self.tunnels.get_mut(&tunnel)?;
        if !entry.early.told_open() {
            return Some(Err(super::TunnelError::InvalidState));
        }
        if entry.sending.is_closed() {
            return Some(Err(super::TunnelError::WriteClosed));
        }
        if matches!(entry.state, TunnelState::AwaitingResponse { .. }) {
            return None;
        }
        // Requeued after a lost connection: the bytes wait for the request to leave.
        entry.sending = Sending::Open { blocked: true };
        Some(Ok(0))
    }

    /// Client: `tunnel_finish` on a tunnel the edge has not answered yet. `true`: write
    /// the FIN now (the request is out); `false`: it was queued or refused (`result`).
    pub(super) fn early_finish(&mut self, tunnel: TunnelId) -> Result<bool, super::TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(super::TunnelError::UnknownTunnel)?;
        if !entry.early.told_open() {
            return Err(super::TunnelError::InvalidState);
        }
        if matches!(entry.state, TunnelState::AwaitingResponse { .. }) {
            entry.early = Early::Sent;
            return Ok(true);
        }
        entry.sending = Sending::FinQueued;
        Ok(false)
    }

    /// Client: the answer to a request on a stream without a tunnel. When the host had
    /// finished that tunnel and then aborted it before the answer (`tunnel_abort`), the
    /// edge got the request, the bytes and the FIN, and delivers them if it accepts; only
    /// now is our read stopped, as for a finished tunnel aborted once open. Stopping it
    /// earlier would have the edge drop an unanswered request with what followed it.
    pub(super) fn answer_abandoned(&mut self, handle: u64, stream: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(index) = conn.abandoned.iter().position(|&s| s == stream) else {
            return;
        };
        conn.abandoned.swap_remove(index);
        let _ = conn
            .wire
            .stream_shutdown(stream, quiche::Shutdown::Read, crate::H3_CONNECT_ERROR);
        self.queue_send(handle);
    }

    /// A send error on a request stream before the answer: an edge that refuses stops
    /// our direction and answers; the answer closes the tunnel, so the host only waits.
    pub(super) fn early_send_stopped(&mut self, tunnel: TunnelId, error: &h3::Error) -> bool {
        let Some(entry) = self.tunnels.get_mut(&tunnel) else {
            return false;
        };
        let stopped = matches!(
            error,
            h3::Error::TransportError(quiche::Error::StreamStopped(_))
        );
        if stopped && matches!(entry.state, TunnelState::AwaitingResponse { .. }) {
            entry.sending = Sending::Open { blocked: true };
            return true;
        }
        false
    }
}
