//! CONNECT-UDP on the endpoint (RFC 9298): opening UDP tunnels, their datagrams both ways
//! and their idle timers.
//!
//! - A UDP tunnel is a request stream like a TCP tunnel, with a [`UdpFlow`]. When it opens
//!   (client: the 2xx arrives; edge: the 2xx is sent) it picks how it sends for its whole
//!   life: QUIC DATAGRAM frames when both sides sent `SETTINGS_H3_DATAGRAM = 1`, DATAGRAM
//!   capsules on the stream otherwise. It receives both ways whatever it picked.
//! - Received QUIC DATAGRAM frames are taken from quiche once per processed batch, after
//!   the HTTP/3 events (so a request in the same batch is known), and queued on their
//!   tunnel without a copy. The engine reads a UDP tunnel's stream itself, for capsules.
//! - Every received payload waits in its tunnel's bounded queue; everything dropped is
//!   counted in [`EndpointStats`](crate::EndpointStats).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use quiche::h3;
use veil_proto::capsule;
use veil_proto::datagram::{
    self, DemuxError, H3_DATAGRAM_ERROR, H3Datagram, UDP_PAYLOAD_CONTEXT_ID,
};
use veil_proto::masque::udp::PathTemplate;
use veil_proto::varint::VarInt;

use super::{
    Endpoint, H3_INTERNAL_ERROR, H3_REQUEST_CANCELLED, RoleState, Sending, Tunnel, TunnelState,
};
use crate::config::QuicConfig;
use crate::error::{ConfigError, OpenError, TunnelError};
use crate::types::{CloseReason, Event, TunnelId, TunnelKind, TunnelTarget};
use crate::udp::flow::{Abort, Carries, Encoding, Pushed, Tally, UdpFlow};
use crate::udp::request;
use crate::wire::{Http, Wire};

/// The endpoint's CONNECT-UDP settings and the idle timers of its UDP tunnels.
pub(super) struct UdpSettings {
    /// The path template: the client expands it, the edge matches requests against it.
    /// Validated at start.
    template: String,
    idle_timeout: Duration,
    queue_len: usize,
    /// This endpoint sends `SETTINGS_H3_DATAGRAM = 1` (QUIC DATAGRAM frames are on).
    h3_datagrams: bool,
    /// When to look at a UDP tunnel's idleness next. An entry may come early (the tunnel
    /// was active since), never late; entries of closed tunnels fall out when due.
    timers: BinaryHeap<Reverse<(Instant, TunnelId)>>,
}

impl UdpSettings {
    pub(super) fn new(quic: &QuicConfig, template: String) -> Result<Self, ConfigError> {
        PathTemplate::new(&template).map_err(|_| ConfigError::InvalidValue {
            field: "udp_path_template",
        })?;
        Ok(Self {
            template,
            idle_timeout: quic.udp_idle_timeout,
            queue_len: quic.udp_tunnel_queue_len,
            h3_datagrams: quic.enable_datagrams,
            timers: BinaryHeap::new(),
        })
    }

    /// The configured template (validated in `new`).
    pub(super) fn template(&self) -> PathTemplate<'_> {
        PathTemplate::new(&self.template).unwrap_or_default()
    }

    /// A new tunnel's datagram state.
    pub(super) fn new_flow(&self, path: String, now: Instant) -> Box<UdpFlow> {
        Box::new(UdpFlow::new(self.queue_len, path, now))
    }

    /// How long a UDP tunnel may stay quiet (`QuicConfig::udp_idle_timeout`); also how
    /// long an IP tunnel remembers a quiet flow.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A new flow carrying `carries`.
    pub(super) fn new_flow_carrying(
        &self,
        path: String,
        now: Instant,
        carries: Carries,
    ) -> Box<UdpFlow> {
        Box::new(UdpFlow::new(self.queue_len, path, now).carrying(carries))
    }

    /// The next idle check.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }
}

/// What became of one payload offered for sending.
enum Sent {
    Yes,
    Oversize,
    QueueFull,
    /// The stream broke; the tunnel must go.
    Failed,
}

impl Endpoint {
    /// Client: opens a CONNECT-UDP tunnel (RFC 9298) to `target`, with the same waiting and
    /// reconnect rules as `open_tunnel`. The answer comes as `TunnelOpened` or
    /// `TunnelRefused`; then datagrams flow with `tunnel_send_datagram` and
    /// `tunnel_recv_datagram`.
    pub fn open_udp_tunnel(
        &mut self,
        now: Instant,
        target: &TunnelTarget,
    ) -> Result<TunnelId, OpenError> {
        if !matches!(self.role, RoleState::Client(_)) {
            return Err(OpenError::NotClient);
        }
        //# RFC 9298 §3: "When sending its UDP proxying request, the client SHALL perform URI
        //# Template expansion to determine the path and query of its request."
        let path =
            request::expand_path(&self.udp.template(), target).ok_or(OpenError::InvalidTarget)?;
        let flow = self.udp.new_flow(path, now);
        self.open_with(now, target, Some(flow))
    }

    /// Sends one UDP payload on an open UDP tunnel: in a QUIC DATAGRAM frame, or in a
    /// DATAGRAM capsule when HTTP/3 datagrams were not negotiated. `Ok(false)`: dropped and
    /// counted, as UDP would: too large for the connection's current datagram size (never
    /// fragmented), or a queue (or the stream's credit) is full. Before the tunnel is open:
    /// `Err(InvalidState)`.
    pub fn tunnel_send_datagram(
        &mut self,
        tunnel: TunnelId,
        payload: &[u8],
    ) -> Result<bool, TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        let flow = entry.udp.as_deref_mut().ok_or(TunnelError::NotUdp)?;
        match entry.state {
            TunnelState::Open => {}
            // Accepted, but the 2xx waits for room: nothing may follow it yet.
            TunnelState::Accepting => {
                self.stats.udp_dropped_queue_full += 1;
                return Ok(false);
            }
            _ => return Err(TunnelError::InvalidState),
        }
        if entry.sending.is_closed() {
            return Err(TunnelError::WriteClosed);
        }
        let encoding = flow.encoding.ok_or(TunnelError::InvalidState)?;
        let (handle, stream) = (entry.conn.ok_or(TunnelError::InvalidState)?, entry.stream);
        let conn = self.conns.get_mut(handle).ok_or(TunnelError::Stream)?;
        //# RFC 9298 §5: "endpoints MUST NOT send HTTP Datagrams with a Payload field longer
        //# than 65527 using Context ID zero."
        let sent = if payload.len() > flow.carries.max_payload() {
            Sent::Oversize
        } else {
            match encoding {
                Encoding::Frames => match conn.wire.quic_mut() {
                    Some(quic) => send_frame(quic, stream, payload),
                    None => Sent::Failed,
                },
                Encoding::Capsules => match conn.http.as_mut() {
                    Some(h3) => {
                        // Whatever of it did not go waits in the backlog: either way, the
                        // stream may hold bytes now.
                        conn.held.wrote();
                        send_capsule(
                            h3,
                            &mut conn.wire,
                            stream,
                            payload,
                            &mut flow.capsule_backlog,
                        )
                    }
                    None => Sent::Failed,
                },
            }
        };
        match sent {
            Sent::Yes => {
                flow.last_activity = self.clock;
                self.stats.udp_datagrams_sent += 1;
                if let Some(trail) = self.tunnels.get_mut(&tunnel).and_then(|t| t.trail.as_mut()) {
                    trail.datagrams_to_client += 1;
                }
                if encoding == Encoding::Capsules {
                    self.stats.udp_capsule_datagrams += 1;
                }
                self.queue_send(handle);
                Ok(true)
            }
            Sent::Oversize => {
                self.stats.udp_dropped_oversize += 1;
                Ok(false)
            }
            Sent::QueueFull => {
                self.stats.udp_dropped_queue_full += 1;
                Ok(false)
            }
            Sent::Failed => {
                self.fail_tunnel(tunnel);
                Err(TunnelError::Stream)
            }
        }
    }

    /// Moves the next received UDP payload of a UDP tunnel into `out`. `Ok(None)`: none
    /// queued (wait for `TunnelDatagrams`). `out` shorter than the payload:
    /// `Err(BufferTooSmall { needed })`, and the payload stays queued; 65527 bytes always
    /// suffice.
    pub fn tunnel_recv_datagram(
        &mut self,
        tunnel: TunnelId,
        out: &mut [u8],
    ) -> Result<Option<usize>, TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        let flow = entry.udp.as_deref_mut().ok_or(TunnelError::NotUdp)?;
        if !matches!(entry.state, TunnelState::Open) {
            return Err(TunnelError::InvalidState);
        }
        match flow.pop_into(out) {
            Ok(Some(len)) => {
                if let Some(trail) = entry.trail.as_mut() {
                    trail.datagrams_from_client += 1;
                }
                Ok(Some(len))
            }
            Ok(None) => {
                flow.notified = false;
                Ok(None)
            }
            Err(needed) => Err(TunnelError::BufferTooSmall { needed }),
        }
    }

    /// The largest UDP payload `tunnel_send_datagram` can send on this tunnel now: what fits
    /// in one QUIC DATAGRAM frame on the connection's current path after the HTTP Datagram
    /// prefix, or 65527 for a tunnel that sends capsules. `None` when the tunnel is
    /// unknown, not UDP or not open.
    pub fn tunnel_max_datagram_payload(&self, tunnel: TunnelId) -> Option<usize> {
        let entry = self.tunnels.get(&tunnel)?;
        let flow = entry.udp.as_deref()?;
        if !matches!(entry.state, TunnelState::Open) {
            return None;
        }
        let max = flow.carries.max_payload();
        match flow.encoding? {
            Encoding::Capsules => Some(max),
            Encoding::Frames => {
                let conn = self.conns.get(entry.conn?)?;
                let prefix = datagram::prefix_len(entry.stream, UDP_PAYLOAD_CONTEXT_ID).ok()?;
                let room = conn
                    .wire
                    .quic()?
                    .dgram_max_writable_len()?
                    .checked_sub(prefix)?;
                Some(room.min(max))
            }
        }
    }

    /// What a live tunnel carries; `None` for an unknown tunnel.
    pub fn tunnel_kind(&self, tunnel: TunnelId) -> Option<TunnelKind> {
        self.tunnels.get(&tunnel).map(|entry| {
            if entry.ip.is_some() {
                TunnelKind::Ip
            } else if entry.udp.is_some() {
                TunnelKind::Udp
            } else {
                TunnelKind::Stream
            }
        })
    }
}

// Glue called from the endpoint's processing.
impl Endpoint {
    /// Takes every QUIC DATAGRAM frame quiche received on a connection and queues each UDP
    /// payload on its tunnel; drops (and counts) the rest.
    pub(super) fn take_quic_datagrams(&mut self, now: Instant, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let mut aborts = Vec::new();
        let taken_before = conn.datagrams_taken;
        let Some(quic) = conn.wire.quic_mut() else {
            return;
        };
        while let Ok(frame) = quic.dgram_recv_buf() {
            conn.datagrams_taken += 1;
            let (stream, context_id, start) = match datagram::demux(&frame) {
                Ok(d) => (d.stream_id, d.context_id, frame.len() - d.payload.len()),
                Err(DemuxError::Frame(error)) => {
                    tracing::debug!(connection = handle, %error, "malformed HTTP/3 datagram");
                    //# RFC 9297 §2.1: "Receipt of a QUIC DATAGRAM frame whose payload is too
                    //# short to allow parsing the Quarter Stream ID field MUST be treated as
                    //# an HTTP/3 connection error of type H3_DATAGRAM_ERROR (0x33)."
                    let _ = quic.close(true, H3_DATAGRAM_ERROR, b"");
                    break;
                }
                // A datagram without a whole Context ID names its stream but carries nothing.
                Err(_) => {
                    self.stats.udp_dropped_malformed += 1;
                    continue;
                }
            };
            //# RFC 9297 §2.1: "If an HTTP/3 Datagram is received and its Quarter Stream ID
            //# field maps to a stream that has not yet been created, the receiver SHALL
            //# either drop that datagram silently or buffer it temporarily (on the order of
            //# a round trip) while awaiting the creation of the corresponding stream."
            // Dropped (and counted): a request arriving in the same batch is known by now,
            // since HTTP/3 events are processed first. The same holds for closed streams.
            //# RFC 9297 §2.1: "If an HTTP/3 Datagram is received and its Quarter Stream ID
            //# maps to a stream that cannot be created due to client-initiated bidirectional
            //# stream limits, it SHOULD be treated as an HTTP/3 connection error of type
            //# H3_ID_ERROR. Generating an error is not mandatory in this case because HTTP/3
            //# implementations might have practical barriers to determining the active
            //# stream concurrency limit that is applied by the QUIC layer."
            // quiche 0.30 is such a barrier: it raises the limit it grants the peer as streams
            // complete and exposes neither that limit nor the count, so such datagrams are
            // dropped and counted like any other for an unknown stream.
            let tunnel = conn
                .streams
                .get(&stream)
                .and_then(|id| Some((*id, self.tunnels.get_mut(id)?)));
            let Some((id, tunnel)) = tunnel else {
                self.stats.udp_dropped_unknown_tunnel += 1;
                continue;
            };
            let Some(flow) = tunnel.udp.as_deref_mut() else {
                //# RFC 9297 §2: "If an HTTP Datagram is received and it is associated with a
                //# request that has no known semantics for HTTP Datagrams, the receiver MUST
                //# terminate the request. If HTTP/3 is in use, the request stream MUST be
                //# aborted with H3_DATAGRAM_ERROR (0x33)."
                self.stats.udp_dropped_unknown_tunnel += 1;
                aborts.push(id);
                continue;
            };
            flow.last_activity = now;
            //# RFC 9298 §5: "If an HTTP/3 datagram which carries an unknown Context ID is
            //# received, the receiver SHALL either drop that datagram silently or buffer it
            //# temporarily (on the order of a round trip) while awaiting the registration of
            //# the corresponding Context ID."
            // No extension registers Context IDs here: they are dropped.
            if context_id != UDP_PAYLOAD_CONTEXT_ID {
                self.stats.udp_dropped_unknown_context += 1;
                continue;
            }
            match flow.push(frame, start) {
                Pushed::Queued => self.stats.udp_datagrams_received += 1,
                Pushed::Full => {
                    self.stats.udp_dropped_queue_full += 1;
                    continue;
                }
            }
            // Datagrams that beat the response (client) or the host's answer (edge) wait:
            // the event comes when the tunnel opens.
            if matches!(tunnel.state, TunnelState::Open) && !flow.notified {
                flow.notified = true;
                if tunnel
                    .ip
                    .as_deref()
                    .is_some_and(super::ip::IpTunnel::decaps)
                {
                    // The engine takes the packets apart itself, at the end of processing.
                    self.decap.due.push(id);
                } else {
                    self.events.push_back(Event::TunnelDatagrams { tunnel: id });
                }
            }
        }
        if conn.datagrams_taken != taken_before {
            // quiche drops the oldest frame when its receive queue is full (a batch larger
            // than `datagram_queue_len`): count those too.
            let received = conn.wire.quic().map_or(0, |quic| quic.stats().dgram_recv);
            let lost = received.saturating_sub(conn.datagrams_taken);
            conn.datagrams_taken = received;
            self.stats.udp_dropped_queue_full += u64::try_from(lost).unwrap_or(u64::MAX);
        }
        for id in aborts {
            self.abort_with(id, H3_DATAGRAM_ERROR);
        }
    }

    /// A UDP tunnel just opened: fix how it sends, start its idle timer, and tell the host
    /// about datagrams that arrived early.
    pub(super) fn udp_opened(&mut self, handle: u64, id: TunnelId) {
        //# RFC 9297 §2.1.1: "Endpoints MUST NOT send QUIC DATAGRAM frames until they have
        //# both sent and received the H3_DATAGRAM SETTINGS parameter with a value of 1."
        // When the peer's SETTINGS have not arrived yet (reordering), capsules it is: they
        // need no negotiation beyond the Capsule-Protocol field both heads carry.
        let peer = self.conns.get(handle).is_some_and(|conn| {
            conn.http
                .as_ref()
                .is_some_and(|h3| h3.dgram_enabled_by_peer(&conn.wire))
        });
        let encoding = if self.udp.h3_datagrams && peer {
            Encoding::Frames
        } else {
            Encoding::Capsules
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let decaps = tunnel
            .ip
            .as_deref()
            .is_some_and(super::ip::IpTunnel::decaps);
        let idle = tunnel.udp_idle(self.udp.idle_timeout);
        let Some(flow) = tunnel.udp.as_deref_mut() else {
            return;
        };
        flow.encoding = Some(encoding);
        flow.last_activity = self.clock;
        if let Some(idle) = idle {
            self.udp.timers.push(Reverse((self.clock + idle, id)));
        }
        if flow.has_queued() && !flow.notified {
            flow.notified = true;
            if decaps {
                self.decap.due.push(id);
            } else {
                self.events.push_back(Event::TunnelDatagrams { tunnel: id });
            }
        }
    }

    /// Reads what the peer sent on an open UDP tunnel's stream: capsules, then maybe its
    /// FIN, which ends the tunnel.
    pub(super) fn read_capsules(&mut self, handle: u64, id: TunnelId) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let (Some(h3), Some(flow)) = (conn.http.as_mut(), tunnel.udp.as_deref_mut()) else {
            return;
        };
        let stream = tunnel.stream;
        let mut tally = Tally::default();
        let mut outcome = Ok(());
        let mut reset = None;
        loop {
            match h3.recv_body(&mut conn.wire, stream, &mut self.scratch) {
                Ok(0) | Err(h3::Error::Done) => break,
                Ok(len) => {
                    let bytes = self.scratch.get(..len).unwrap_or_default();
                    if let Err(abort) = flow.read_capsules(bytes, &mut tally) {
                        outcome = Err(abort);
                        break;
                    }
                }
                Err(h3::Error::TransportError(quiche::Error::StreamReset(code))) => {
                    reset = Some(code);
                    break;
                }
                Err(error) => {
                    tracing::debug!(?id, %error, "reading a UDP tunnel's stream failed");
                    outcome = Err(Abort {
                        code: H3_INTERNAL_ERROR,
                    });
                    break;
                }
            }
        }
        let finished = outcome.is_ok() && reset.is_none() && conn.wire.stream_finished(stream);
        if finished {
            outcome = flow.finish_capsules();
        }
        self.stats.udp_datagrams_received += tally.queued;
        self.stats.udp_capsule_datagrams += tally.queued;
        self.stats.udp_dropped_queue_full += tally.queue_full;
        self.stats.udp_dropped_unknown_context += tally.unknown_context;
        if tally.queued + tally.queue_full + tally.unknown_context > 0 {
            flow.last_activity = self.clock;
        }
        if tally.queued > 0 && !flow.notified {
            flow.notified = true;
            if tunnel
                .ip
                .as_deref()
                .is_some_and(super::ip::IpTunnel::decaps)
            {
                self.decap.due.push(id);
            } else {
                self.events.push_back(Event::TunnelDatagrams { tunnel: id });
            }
        }
        let controls = !flow.controls.is_empty();
        self.queue_send(handle);
        if controls {
            self.ip_controls(handle, id);
        }
        if let Some(code) = reset {
            self.peer_reset(handle, stream, code);
        } else if let Err(abort) = outcome {
            tracing::debug!(?id, code = abort.code, "malformed capsule stream");
            self.abort_with(id, abort.code);
        } else if finished {
            self.udp_peer_finished(id);
        }
    }

    /// The peer finished a UDP tunnel's stream: the tunnel ends with it, and our side
    /// finishes too.
    //# RFC 9298 §3.1: "The lifetime of the socket is tied to the request stream."
    fn udp_peer_finished(&mut self, id: TunnelId) {
        self.end_udp_tunnel(id, CloseReason::Finished);
    }

    /// Closes UDP tunnels that carried nothing for the idle timeout.
    pub(super) fn expire_idle_udp(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.udp.timers.peek() {
            if at > now {
                return;
            }
            self.udp.timers.pop();
            let Some((flow, idle)) = self
                .tunnels
                .get(&id)
                .filter(|tunnel| matches!(tunnel.state, TunnelState::Open))
                .and_then(|tunnel| {
                    Some((
                        tunnel.udp.as_deref()?,
                        tunnel.udp_idle(self.udp.idle_timeout)?,
                    ))
                })
            else {
                continue;
            };
            let deadline = flow.last_activity + idle;
            if deadline > now {
                self.udp.timers.push(Reverse((deadline, id)));
                continue;
            }
            //# RFC 9298 §3.1: "UDP proxies MAY choose to close sockets due to a period of
            //# inactivity, but they MUST close the request stream when closing the socket."
            self.end_udp_tunnel(id, CloseReason::IdleTimeout);
        }
    }

    /// Sends what the stream now has room for of the capsules that wait; then the FIN, if
    /// `tunnel_finish` waited for them.
    pub(super) fn flush_capsule_backlog(&mut self, handle: u64, id: TunnelId) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let (Some(h3), Some(flow)) = (conn.http.as_mut(), tunnel.udp.as_deref_mut()) else {
            return;
        };
        if flow.capsule_backlog.is_empty() {
            return;
        }
        if let Ok(taken) = h3.send_body(&mut conn.wire, tunnel.stream, &flow.capsule_backlog, false)
        {
            flow.capsule_backlog.drain(..taken);
            if taken > 0 {
                conn.held.wrote();
            }
        }
        if !flow.capsule_backlog.is_empty() {
            let _ = conn.wire.stream_writable(tunnel.stream, WRITABLE_HINT);
        } else if tunnel.sending == Sending::FinQueued {
            // The queued FIN goes now, through `tunnel_finish` (which ignores a queued one).
            tunnel.sending = Sending::Open { blocked: false };
            let _ = self.tunnel_finish(id);
        }
        self.queue_send(handle);
    }

    /// Finishes our side of a UDP tunnel's stream (unless done already), forgets the
    /// tunnel and reports it closed for `reason`. Whatever the peer still sends on the
    /// stream is read and dropped.
    pub(super) fn end_udp_tunnel(&mut self, id: TunnelId, reason: CloseReason) {
        self.note_end(id, crate::audit::Ending::Closed(reason));
        let Some(tunnel) = self.tunnels.get(&id) else {
            return;
        };
        let local_fin = tunnel.sending.is_over();
        let cut = tunnel
            .udp
            .as_ref()
            .is_some_and(|flow| !flow.capsule_backlog.is_empty());
        let Some((handle, stream)) = self.remove_tunnel(id) else {
            return;
        };
        if cut {
            // A FIN now would cut a capsule in two: reset our side instead.
            if let Some(conn) = self.conns.get_mut(handle) {
                conn.abort_stream(stream, H3_REQUEST_CANCELLED);
            }
        } else if !local_fin {
            // Owed even though the tunnel is gone: it waits for credit if it must.
            let _ = self.write_fin(handle, stream);
        }
        self.queue_send(handle);
        self.events
            .push_back(Event::TunnelClosed { tunnel: id, reason });
    }

    /// Resets a tunnel both ways with `code` and reports it closed.
    pub(super) fn abort_with(&mut self, id: TunnelId, code: u64) {
        self.note_end(
            id,
            crate::audit::Ending::Closed(CloseReason::Reset { code }),
        );
        if let Some((handle, stream)) = self.remove_tunnel(id) {
            if let Some(conn) = self.conns.get_mut(handle) {
                conn.abort_stream(stream, code);
            }
            self.queue_send(handle);
            self.events.push_back(Event::TunnelClosed {
                tunnel: id,
                reason: CloseReason::Reset { code },
            });
        }
    }
}

impl Tunnel {
    /// A tunnel for a client's or an edge's UDP request.
    pub(super) fn udp(conn: Option<u64>, state: TunnelState, flow: Box<UdpFlow>) -> Self {
        let mut tunnel = Self::new(conn, state);
        tunnel.udp = Some(flow);
        tunnel
    }
}

/// Drops the DATAGRAM frames quiche still holds for `stream`, whose send side is closing.
//# RFC 9297 §2.1: "Endpoints MUST NOT send HTTP/3 datagrams unless the corresponding
//# stream's send side is open."
pub(super) fn purge_datagrams(wire: &mut Wire, stream: u64) {
    let Some(quic) = wire.quic_mut() else {
        return;
    };
    quic.dgram_purge_outgoing(|frame| {
        H3Datagram::decode(frame).is_ok_and(|datagram| datagram.stream_id == stream)
    });
}

/// Queues `payload` in a QUIC DATAGRAM frame, prefix written in front of it.
fn send_frame(quic: &mut quiche::Connection, stream: u64, payload: &[u8]) -> Sent {
    let Ok(prefix) = datagram::prefix_len(stream, UDP_PAYLOAD_CONTEXT_ID) else {
        return Sent::Failed;
    };
    let Some(room) = quic.dgram_max_writable_len() else {
        return Sent::Oversize;
    };
    if prefix + payload.len() > room {
        return Sent::Oversize;
    }
    let mut frame = vec![0; prefix + payload.len()];
    let Some((head, body)) = frame.split_at_mut_checked(prefix) else {
        return Sent::Failed;
    };
    if datagram::encode_prefix(stream, UDP_PAYLOAD_CONTEXT_ID, head).is_err() {
        return Sent::Failed;
    }
    body.copy_from_slice(payload);
    match quic.dgram_send_buf(frame) {
        Ok(()) => Sent::Yes,
        Err(quiche::Error::BufferTooShort) => Sent::Oversize,
        Err(_) => Sent::QueueFull,
    }
}

/// Room a blocked stream must have before quiche reports it writable again: a DATA frame
/// header and a byte.
const WRITABLE_HINT: usize = 1 + VarInt::MAX_LEN + 1;

/// Bytes of encoded DATAGRAM capsules that may wait for stream credit behind a tunnel's
/// stream (a burst of about 200 full-size payloads); beyond it payloads are dropped,
/// counted, as a congested UDP path would drop them.
const CAPSULE_BACKLOG: usize = 256 * 1024;

/// Writes `payload` as a DATAGRAM capsule on the stream. What the stream has no room for
/// (its credit and the congestion window bound it) waits in `backlog`, in order, and goes
/// out as the stream's flow control lets it (`flush_capsule_backlog`): capsules travel on
/// a reliable stream, so a burst the stream cannot take at once is queued, not lost, up to
/// [`CAPSULE_BACKLOG`] bytes. A capsule is never cut in two: the stream would be
/// unparsable.
fn send_capsule(
    h3: &mut Http,
    wire: &mut Wire,
    stream: u64,
    payload: &[u8],
    backlog: &mut Vec<u8>,
) -> Sent {
    let len = capsule::datagram_header_len(UDP_PAYLOAD_CONTEXT_ID, payload.len()) + payload.len();
    if !backlog.is_empty() {
        // Behind the capsules already waiting, in order.
        if backlog.len() + len > CAPSULE_BACKLOG {
            return Sent::QueueFull;
        }
        let start = backlog.len();
        backlog.resize(start + len, 0);
        let encoded =
            capsule::encode_datagram(UDP_PAYLOAD_CONTEXT_ID, payload, &mut backlog[start..]);
        if encoded.is_err() {
            backlog.truncate(start);
            return Sent::Failed;
        }
        return Sent::Yes;
    }
    let mut bytes = vec![0; len];
    if capsule::encode_datagram(UDP_PAYLOAD_CONTEXT_ID, payload, &mut bytes).is_err() {
        return Sent::Failed;
    }
    let taken = match h3.send_body(wire, stream, &bytes, false) {
        Ok(taken) => taken,
        Err(h3::Error::Done | h3::Error::StreamBlocked) => 0,
        Err(_) => return Sent::Failed,
    };
    if taken < len {
        bytes.drain(..taken);
        *backlog = bytes;
        let _ = wire.stream_writable(stream, WRITABLE_HINT);
    }
    Sent::Yes
}
