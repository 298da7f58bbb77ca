//! Writing one connection's packets into the caller's buffer, batched for UDP GSO.
//!
//! A batch is consecutive packets of one connection and one path (same source and
//! destination), all of the first packet's size except possibly the last, which may be
//! shorter: the shape the kernel splits back into datagrams (`UDP_SEGMENT`). quiche writes
//! each packet straight into its slot of the caller's buffer; the only copy happens when a
//! packet turns out not to fit the batch (another path, or a pacing release time too far
//! ahead): it is kept in the connection's one reusable [`Held`] buffer and goes first next
//! time.

use std::time::Instant;

use crate::types::Transmit;

/// Most segments in one batch (Linux `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;

/// Most bytes in one batch: the largest UDP payload over IPv4.
const MAX_BATCH_BYTES: usize = 65_507;

/// How many more times `send` is asked after a `Done` that may hide a dead head (see
/// [`transmit_batch`]); each call moves one such stream to the back of quiche's queue.
const DEAD_HEAD_RETRIES: usize = 16;

/// What the transmit loop keeps of one connection between calls: one packet quiche
/// produced that could not go out in the batch it was written for, whether stream bytes
/// went to quiche since its `send` last said `Done` and whether quiche ever queued stream
/// bytes again (see [`transmit_batch`]), and what a closing connection has sent since its
/// last input ([`CLOSING_SENDS`]).
#[derive(Default)]
pub(crate) struct Held {
    buf: Vec<u8>,
    packet: Option<quiche::SendInfo>,
    wrote: bool,
    /// A stream may sit in quiche's send queue with nothing to send (a dead head, see
    /// [`transmit_batch`]): quiche queued stream bytes again for a loss or a probe at
    /// least once. It stays set: such a head stays in the queue until its stream is
    /// written again or collected.
    dead_heads_possible: bool,
    /// Packets sent while the connection is closing, since the last datagram it received.
    closing_sent: usize,
    /// The last packet sent was full-size: quiche may have stopped for want of congestion
    /// window rather than of bytes.
    last_full: bool,
}

/// Packets a closing connection may send per datagram it receives (and once after the
/// close): its `CONNECTION_CLOSE`, in each packet number space that needs one.
///
/// quiche 0.30 never says `Done` to a connection closed with an application error while
/// its handshake is unconfirmed and a Handshake-space probe is due: each `send` writes one
/// more ACK-only Handshake packet (the probe's PING is left out while closing, so the
/// probe stays due). A host that sends until `poll_transmit` says `None` would spin there
/// for ever, and quiche's record of sent packets would grow without bound
/// (`fuzz/regressions/engine/closed-mid-handshake-sends-for-ever`).
//# RFC 9000 §10.2.1: "An endpoint in the closing state sends a packet containing a
//# CONNECTION_CLOSE frame in response to any incoming packet that it attributes to the
//# connection." ... "An endpoint SHOULD limit the rate at which it generates packets in
//# the closing state."
const CLOSING_SENDS: usize = 4;

impl Held {
    /// Stream bytes went to quiche: its next `Done` may hide a dead head.
    pub(crate) fn wrote(&mut self) {
        self.wrote = true;
    }

    /// A datagram arrived for the connection: a closing one may answer it.
    pub(crate) fn received(&mut self) {
        self.closing_sent = 0;
    }

    /// Whether a `Done` from `quic` may hide a dead head: stream bytes went to quiche since
    /// its last believed `Done`, and a dead head is possible at all.
    ///
    /// Where none is, the retries are pure cost: on a connection that had lost nothing,
    /// every write paid [`DEAD_HEAD_RETRIES`] empty `send` calls, two thirds of quiche's
    /// calls in a round trip of small messages.
    fn may_hide_dead_head(&mut self, quic: &quiche::Connection) -> bool {
        if !self.wrote {
            return false;
        }
        // Per path: `Connection::stats` sums every stream's buffer on each call.
        if !self.dead_heads_possible {
            self.dead_heads_possible = quic.path_stats().any(|path| path.stream_retrans_bytes > 0);
        }
        self.dead_heads_possible
    }

    /// Nothing is known to wait to leave: no stream bytes written since quiche's last
    /// `Done`, no packet held for pacing, and the last flight ended short of a full packet.
    pub(crate) fn quiet(&self) -> bool {
        !self.wrote && self.packet.is_none() && !self.last_full
    }

    /// When the held packet may leave (quiche's pacing time), if there is one.
    pub(crate) fn release_at(&self) -> Option<Instant> {
        self.packet.map(|info| info.at)
    }

    fn store(&mut self, packet: &[u8], info: quiche::SendInfo) {
        self.buf.clear();
        self.buf.extend_from_slice(packet);
        self.packet = Some(info);
    }
}

/// What one call of [`transmit_batch`] did.
pub(crate) enum Step {
    /// A batch is in the buffer; `more`: the connection may have more to send now.
    Sent {
        transmit: Transmit,
        segments: usize,
        more: bool,
    },
    /// The next packet waits for its pacing time ([`Held::release_at`]).
    Held,
    /// Nothing to send.
    Idle,
}

/// Writes the next batch of `quic`'s packets to the start of `out`.
///
/// `release_by`: with pacing, packets whose release time is later than this are held back.
///
/// `held` also says whether stream bytes went to quiche since its `send` last said
/// `Done` ([`Held::wrote`]; cleared here at the next `Done` believed). quiche 0.30 sends
/// the streams that hold data from a queue, one STREAM frame per packet, from the stream
/// at the head. It can leave a stream with nothing to send at that head: bytes queued
/// again for a probe (PTO), then acknowledged in their first packet before the probe
/// carried them. That head yields no frame, so a packet without other frames is not
/// written and `send` says `Done` although other streams hold bytes; the head is moved to
/// the back only if it is incremental (every tunnel's stream is: `wire::TUNNEL_PRIORITY`).
/// Seen with a quinn client's 50 echo tunnels on a loaded machine: the edge's connection
/// had nothing in flight (no ACK would come to wake it), its send capacity spent on bytes
/// quiche would not send, and every tunnel waited until the idle timeout (engine test
/// `dead_head`). So after a `Done` that may be such a head, `send` is asked again, up to
/// [`DEAD_HEAD_RETRIES`] times: a real `Done` (nothing to send, or the congestion window
/// full) costs a few empty calls, once per write, and only on a connection where such a
/// head can be: quiche has queued stream bytes again (`PathStats::stream_retrans_bytes`).
/// That is the only way quiche 0.30 keeps a stream queued that has nothing to send: bytes
/// written are sent before they can be acknowledged, a stream the peer stopped is dropped
/// from the queue when it reaches the head, a finished one is dropped when quiche collects
/// it, and one we reset (`stream_shutdown(Write)`: its buffer emptied, the stream left in
/// the queue) yields an empty STREAM frame with FIN at its final size when it reaches the
/// head, and is dropped then (engine test `dead_head::a_tunnel_reset_with_bytes_queued_…`).
pub(crate) fn transmit_batch(
    quic: &mut quiche::Connection,
    held: &mut Held,
    out: &mut [u8],
    release_by: Option<Instant>,
) -> Step {
    let limit = out.len().min(MAX_BATCH_BYTES);
    let Some(out) = out.get_mut(..limit) else {
        return Step::Idle;
    };
    let paced = |info: &quiche::SendInfo| release_by.is_some_and(|by| info.at > by);
    let mut batch = Batch::default();

    if let Some(info) = held.packet {
        if paced(&info) {
            return Step::Held;
        }
        held.packet = None;
        // A buffer too small for the held packet loses it; quiche's loss recovery resends.
        if let Some(slot) = out.get_mut(..held.buf.len()) {
            slot.copy_from_slice(&held.buf);
            batch.start(info, held.buf.len());
        }
    }

    // Only full-size packets are worth batching behind: a short first packet (an ACK, a
    // handshake flight) goes alone rather than forcing tiny windows on the packets after it.
    let full_size = quic.max_send_udp_payload_size();
    let mut more = false;
    let mut dead_heads = 0;
    loop {
        let window = match batch.first {
            None => &mut out[..],
            Some(_) if batch.segments >= MAX_SEGMENTS || batch.segment < full_size => {
                more = true;
                break;
            }
            Some(_) => {
                let Some(window) = out.get_mut(batch.len..batch.len + batch.segment) else {
                    more = true;
                    break;
                };
                window
            }
        };
        let closing = quic.local_error().is_some();
        if closing && held.closing_sent >= CLOSING_SENDS {
            more = false;
            break;
        }
        match quic.send(window) {
            Ok((len, info)) => {
                if closing {
                    held.closing_sent += 1;
                }
                let Some(first) = batch.first else {
                    if paced(&info) {
                        held.store(window.get(..len).unwrap_or_default(), info);
                        return Step::Held;
                    }
                    batch.start(info, len);
                    continue;
                };
                if info.to != first.to || info.from != first.from || paced(&info) {
                    held.store(window.get(..len).unwrap_or_default(), info);
                    more = !paced(&info);
                    break;
                }
                batch.len += len;
                batch.segments += 1;
                batch.last = len;
                if len < batch.segment {
                    more = true;
                    break;
                }
            }
            Err(quiche::Error::Done)
                if dead_heads < DEAD_HEAD_RETRIES && held.may_hide_dead_head(quic) =>
            {
                dead_heads += 1;
            }
            Err(quiche::Error::Done) => {
                held.wrote = false;
                break;
            }
            Err(error) => {
                tracing::debug!(%error, "send failed");
                break;
            }
        }
    }
    if batch.first.is_some() {
        held.last_full = batch.last >= full_size;
    }
    batch.finish(more)
}

/// The batch being assembled.
#[derive(Default)]
struct Batch {
    first: Option<quiche::SendInfo>,
    segment: usize,
    len: usize,
    segments: usize,
    /// The last packet's length.
    last: usize,
}

impl Batch {
    fn start(&mut self, info: quiche::SendInfo, len: usize) {
        self.first = Some(info);
        self.segment = len;
        self.len = len;
        self.segments = 1;
        self.last = len;
    }

    fn finish(self, more: bool) -> Step {
        let Some(first) = self.first else {
            return Step::Idle;
        };
        Step::Sent {
            transmit: Transmit {
                to: first.to,
                from: first.from,
                len: self.len,
                segment_size: (self.segments > 1).then_some(self.segment),
            },
            segments: self.segments,
            more,
        }
    }
}
