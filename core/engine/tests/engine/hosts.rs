//! Host logic for the tests: an edge that plays several kinds of target, and a client that
//! moves checksummed bytes through many tunnels.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use veil_engine::{
    ClientIdentity, CloseReason, Endpoint, Event, Host as TargetHost, Recv, Refusal, RefusedReason,
    TunnelId, TunnelTarget,
};

use crate::harness::Host;

/// Byte `index` of the stream numbered `seed`: varied enough that a misplaced, repeated or
/// lost chunk shows.
pub(crate) fn pattern(seed: u64, index: u64) -> u8 {
    let mixed = index
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(seed.wrapping_mul(0x85eb_ca6b))
        .rotate_left(13)
        ^ (index >> 7);
    mixed.to_le_bytes()[0]
}

/// Fills `out` with the pattern of `seed` from `offset`.
pub(crate) fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = pattern(seed, offset + i as u64);
    }
}

/// How the edge host answers a target, chosen by the target's name.
fn behaviour(target: &TunnelTarget) -> Behaviour {
    let TargetHost::Name(name) = &target.host else {
        return Behaviour::Echo;
    };
    let name = name.as_str();
    if let Some(kind) = name
        .strip_prefix("refuse-")
        .and_then(|n| n.strip_suffix(".test"))
    {
        let refusal = Refusal::ALL
            .into_iter()
            .find(|r| format!("{r:?}").to_lowercase() == kind)
            .expect("a refusal kind in the target name");
        return Behaviour::Refuse(refusal);
    }
    match name {
        "reset.test" => Behaviour::ResetOnData,
        "source.test" => Behaviour::Source,
        "sink.test" => Behaviour::SinkThenReply,
        "reply-reset.test" => Behaviour::ReplyThenReset,
        _ => Behaviour::Echo,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Echo,
    Refuse(Refusal),
    /// Accept, and reset the target as soon as bytes arrive.
    ResetOnData,
    /// Accept, send `source_len` bytes of pattern then FIN, and read what comes.
    Source,
    /// Accept, read until FIN, then answer `b"world"` and FIN.
    SinkThenReply,
    /// Accept, answer `b"bye"` and FIN at once, and reset the target as soon as bytes
    /// arrive (a server that closed, and then received data: a FIN, then a TCP reset).
    ReplyThenReset,
}

/// Per-tunnel state of the edge host.
struct Target {
    behaviour: Behaviour,
    /// Bytes read and not yet written back (echo), bounded by `ECHO_WINDOW`.
    pending: Vec<u8>,
    readable: bool,
    fin_received: bool,
    fin_sent: bool,
    received: Vec<u8>,
    sent: u64,
    /// The last send was short: wait for `TunnelWritable`.
    blocked: bool,
}

/// Most bytes the echo target holds per tunnel: a slow client reader stalls its tunnel.
const ECHO_WINDOW: usize = 64 * 1024;

/// The edge's host: accepts or refuses by target name and plays the target.
#[derive(Default)]
pub(crate) struct EdgeHost {
    pub(crate) requests: Vec<(TunnelTarget, ClientIdentity)>,
    pub(crate) closed: Vec<(TunnelId, CloseReason)>,
    /// Bytes a `source.test` target sends.
    pub(crate) source_len: u64,
    /// `source.test` sends zeros instead of the pattern (for throughput runs).
    pub(crate) zero_source: bool,
    /// What `source.test` and `sink.test` tunnels received, by tunnel, once finished.
    pub(crate) finished_data: HashMap<TunnelId, Vec<u8>>,
    targets: HashMap<TunnelId, Target>,
    buf: Vec<u8>,
}

impl Host for EdgeHost {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelRequest {
                tunnel,
                target,
                client,
                ..
            } => {
                let behaviour = behaviour(&target);
                self.requests.push((target, client));
                if let Behaviour::Refuse(refusal) = behaviour {
                    endpoint.refuse_tunnel(tunnel, refusal).expect("refuse");
                    return;
                }
                endpoint.accept_tunnel(tunnel).expect("accept");
                self.targets.insert(
                    tunnel,
                    Target {
                        behaviour,
                        pending: Vec::new(),
                        readable: false,
                        fin_received: false,
                        fin_sent: false,
                        received: Vec::new(),
                        sent: 0,
                        blocked: false,
                    },
                );
            }
            Event::TunnelReadable { tunnel } => {
                if let Some(target) = self.targets.get_mut(&tunnel) {
                    target.readable = true;
                }
            }
            Event::TunnelWritable { tunnel } => {
                if let Some(target) = self.targets.get_mut(&tunnel) {
                    target.blocked = false;
                }
            }
            Event::TunnelClosed { tunnel, reason } => {
                self.closed.push((tunnel, reason));
                self.targets.remove(&tunnel);
            }
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        let mut busy = false;
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(16 * 1024, 0);
        let ids: Vec<TunnelId> = self.targets.keys().copied().collect();
        for id in ids {
            let Some(target) = self.targets.get_mut(&id) else {
                continue;
            };
            if target.behaviour == Behaviour::ReplyThenReset && !target.fin_sent {
                endpoint.tunnel_send(id, b"bye").expect("send");
                endpoint.tunnel_finish(id).expect("finish");
                target.fin_sent = true;
                busy = true;
            }
            busy |= target.step(endpoint, id, &mut buf, self.source_len, self.zero_source);
            if target.fin_received
                && matches!(
                    target.behaviour,
                    Behaviour::Source | Behaviour::SinkThenReply
                )
                && !self.finished_data.contains_key(&id)
            {
                self.finished_data.insert(id, target.received.clone());
            }
            if matches!(
                target.behaviour,
                Behaviour::ResetOnData | Behaviour::ReplyThenReset
            ) && !target.received.is_empty()
            {
                let aborted = endpoint.tunnel_abort(id);
                // (A replying target's tunnel may have ended on both FINs already.)
                if target.behaviour == Behaviour::ResetOnData {
                    aborted.expect("abort");
                }
                self.targets.remove(&id);
                busy = true;
            }
        }
        self.buf = buf;
        busy
    }
}

impl Target {
    /// Moves bytes for one tunnel; returns whether anything happened.
    fn step(
        &mut self,
        endpoint: &mut Endpoint,
        id: TunnelId,
        buf: &mut [u8],
        source_len: u64,
        zero_source: bool,
    ) -> bool {
        let mut busy = false;
        // Write side first: it frees room for reading.
        match self.behaviour {
            Behaviour::Echo => {
                while !self.pending.is_empty() && !self.blocked {
                    let Ok(taken) = endpoint.tunnel_send(id, &self.pending) else {
                        return busy;
                    };
                    self.blocked = taken < self.pending.len();
                    self.pending.drain(..taken);
                    busy |= taken > 0;
                }
            }
            Behaviour::Source => {
                while self.sent < source_len {
                    let chunk = usize::try_from(source_len - self.sent)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    if zero_source {
                        buf[..chunk].fill(0);
                    } else {
                        fill(id.0, self.sent, &mut buf[..chunk]);
                    }
                    let Ok(taken) = endpoint.tunnel_send(id, &buf[..chunk]) else {
                        return busy;
                    };
                    if taken == 0 {
                        break;
                    }
                    self.sent += taken as u64;
                    busy = true;
                }
                if self.sent == source_len && !self.fin_sent {
                    endpoint.tunnel_finish(id).expect("finish");
                    self.fin_sent = true;
                    busy = true;
                }
            }
            Behaviour::SinkThenReply if self.fin_received && !self.fin_sent => {
                let taken = endpoint.tunnel_send(id, b"world").expect("reply");
                assert_eq!(taken, 5);
                endpoint.tunnel_finish(id).expect("finish");
                self.fin_sent = true;
                busy = true;
            }
            _ => {}
        }
        if self.behaviour == Behaviour::Echo
            && self.fin_received
            && self.pending.is_empty()
            && !self.fin_sent
            && endpoint.tunnel_finish(id).is_ok()
        {
            self.fin_sent = true;
            busy = true;
        }
        // Read side, bounded by the echo window.
        while self.readable && self.pending.len() < ECHO_WINDOW {
            let room = (ECHO_WINDOW - self.pending.len()).min(buf.len());
            let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut buf[..room]) else {
                self.readable = false;
                break;
            };
            match self.behaviour {
                Behaviour::Echo => self.pending.extend_from_slice(&buf[..len]),
                _ => self.received.extend_from_slice(&buf[..len]),
            }
            if fin {
                self.fin_received = true;
                self.readable = false;
            } else if len == 0 {
                self.readable = false;
            }
            busy |= len > 0 || fin;
        }
        busy
    }
}

/// Per-tunnel state of [`Transfers`].
#[derive(Default)]
struct Flow {
    open: bool,
    sent: u64,
    fin_sent: bool,
    received: u64,
    fin_received: bool,
    readable: bool,
    /// The last send was short: wait for `TunnelWritable`.
    blocked: bool,
    mismatch: Option<u64>,
    /// The host aborted it (`Transfers::abort_after`).
    aborted: bool,
}

/// A client that opens `count` tunnels to `target`, sends `size` bytes of pattern on each,
/// finishes, and checks that the echo comes back byte for byte, then FIN.
pub(crate) struct Transfers {
    pub(crate) target: TunnelTarget,
    pub(crate) count: usize,
    pub(crate) size: u64,
    pub(crate) started: bool,
    flows: HashMap<TunnelId, Flow>,
    pub(crate) finished: usize,
    pub(crate) refused: Vec<(TunnelId, RefusedReason)>,
    pub(crate) other_closes: Vec<(TunnelId, CloseReason)>,
    /// Do not read this tunnel (the nth opened), to play a slow reader.
    pub(crate) unread: Option<usize>,
    /// Tunnels opened so far.
    pub(crate) opened: usize,
    /// Abort each tunnel (`tunnel_abort`, as an application's reset) once this many echoed
    /// bytes arrived, with bytes still in flight both ways; such tunnels are never
    /// finished, as an application that resets without having half-closed.
    pub(crate) abort_after: Option<u64>,
    /// Tunnels aborted by `abort_after`.
    pub(crate) aborted: usize,
    /// A tunnel that ends cleanly must have carried the echo of what was sent (false: the
    /// target answers something else).
    pub(crate) check_echo: bool,
    /// Bytes each tunnel offers per send (32 KiB). Each offer is made afresh, which in a
    /// debug build is most of a long test's time, and a short send wastes what it did not
    /// take: tests of many tunnels offer less.
    pub(crate) send_chunk: usize,
    order: Vec<TunnelId>,
    buf: Vec<u8>,
}

impl Transfers {
    pub(crate) fn new(target: TunnelTarget, count: usize, size: u64) -> Self {
        Self {
            target,
            count,
            size,
            started: false,
            flows: HashMap::new(),
            finished: 0,
            refused: Vec::new(),
            other_closes: Vec::new(),
            unread: None,
            opened: 0,
            abort_after: None,
            aborted: 0,
            check_echo: true,
            send_chunk: 32 * 1024,
            order: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Bytes verified on the tunnel opened `nth`.
    pub(crate) fn received(&self, nth: usize) -> u64 {
        self.order
            .get(nth)
            .and_then(|id| self.flows.get(id))
            .map_or(0, |flow| flow.received)
    }

    pub(crate) fn ids(&self) -> &[TunnelId] {
        &self.order
    }
}

impl Host for Transfers {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelOpened { tunnel } => {
                self.flows.entry(tunnel).or_default().open = true;
                self.opened += 1;
            }
            Event::TunnelReadable { tunnel } => {
                self.flows.entry(tunnel).or_default().readable = true;
            }
            Event::TunnelWritable { tunnel } => {
                self.flows.entry(tunnel).or_default().blocked = false;
            }
            Event::TunnelClosed {
                reason: CloseReason::Finished,
                ..
            } if !self.check_echo => self.finished += 1,
            Event::TunnelClosed {
                tunnel,
                reason: CloseReason::Finished,
            } => {
                let flow = self.flows.get(&tunnel).expect("known tunnel");
                assert_eq!(
                    flow.mismatch, None,
                    "echo differs at byte {:?}",
                    flow.mismatch
                );
                assert_eq!(flow.received, self.size, "echo length");
                assert!(flow.fin_received && flow.fin_sent);
                self.finished += 1;
            }
            Event::TunnelClosed { tunnel, reason } => self.other_closes.push((tunnel, reason)),
            Event::TunnelRefused { tunnel, reason } => self.refused.push((tunnel, reason)),
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        let mut busy = false;
        if !self.started {
            self.started = true;
            for _ in 0..self.count {
                let id = endpoint.open_tunnel(now, &self.target).expect("open");
                self.order.push(id);
                self.flows.insert(id, Flow::default());
            }
            busy = true;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(self.send_chunk.max(32 * 1024), 0);
        for (nth, id) in self.order.iter().enumerate() {
            let Some(flow) = self.flows.get_mut(id) else {
                continue;
            };
            if !flow.open || flow.aborted {
                continue;
            }
            while flow.sent < self.size {
                let chunk = usize::try_from(self.size - flow.sent)
                    .unwrap_or(usize::MAX)
                    .min(self.send_chunk);
                fill(id.0, flow.sent, &mut buf[..chunk]);
                let Ok(taken) = endpoint.tunnel_send(*id, &buf[..chunk]) else {
                    break;
                };
                if taken == 0 {
                    break;
                }
                flow.sent += taken as u64;
                busy = true;
            }
            if flow.sent == self.size
                && !flow.fin_sent
                && self.abort_after.is_none()
                && endpoint.tunnel_finish(*id).is_ok()
            {
                flow.fin_sent = true;
                busy = true;
            }
            if self.unread == Some(nth) {
                continue;
            }
            while flow.readable {
                let Ok(Recv { len, fin }) = endpoint.tunnel_recv(*id, &mut buf) else {
                    flow.readable = false;
                    break;
                };
                for (i, &byte) in buf[..len].iter().enumerate() {
                    let index = flow.received + i as u64;
                    if flow.mismatch.is_none() && byte != pattern(id.0, index) {
                        flow.mismatch = Some(index);
                    }
                }
                flow.received += len as u64;
                flow.fin_received |= fin;
                if self.abort_after.is_some_and(|after| flow.received >= after) {
                    endpoint.tunnel_abort(*id).expect("abort");
                    flow.aborted = true;
                    self.aborted += 1;
                    break;
                }
                if len == 0 || fin {
                    flow.readable = false;
                }
                busy |= len > 0 || fin;
            }
        }
        self.buf = buf;
        busy
    }

    fn done(&self) -> bool {
        self.finished == self.count
    }
}

/// A client with one scripted tunnel.
#[derive(Default)]
pub(crate) struct OneTunnel {
    pub(crate) target: Option<TunnelTarget>,
    /// Bytes to send once the tunnel is open.
    pub(crate) send: Vec<u8>,
    /// Send only after the peer's FIN arrived (the peer half-closes first).
    pub(crate) send_after_fin: bool,
    /// FIN after `send`.
    pub(crate) finish: bool,
    /// Abort as soon as the tunnel opens.
    pub(crate) abort_on_open: bool,
    pub(crate) id: Option<TunnelId>,
    pub(crate) opened: bool,
    pub(crate) received: Vec<u8>,
    pub(crate) fin_received: bool,
    pub(crate) sent: usize,
    pub(crate) closed: Option<CloseReason>,
    pub(crate) refused: Option<RefusedReason>,
    /// `ConnectionEstablished` and `ConnectionLost` events, in order.
    pub(crate) connection_events: Vec<Event>,
    readable: bool,
    fin_sent: bool,
}

impl OneTunnel {
    pub(crate) fn to(target: TunnelTarget) -> Self {
        Self {
            target: Some(target),
            ..Self::default()
        }
    }
}

impl Host for OneTunnel {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        match event {
            Event::TunnelOpened { tunnel } => {
                assert_eq!(Some(tunnel), self.id);
                self.opened = true;
                if self.abort_on_open {
                    endpoint.tunnel_abort(tunnel).expect("abort");
                }
            }
            Event::TunnelReadable { .. } => self.readable = true,
            Event::TunnelClosed { reason, .. } => self.closed = Some(reason),
            Event::TunnelRefused { reason, .. } => self.refused = Some(reason),
            event @ (Event::ConnectionEstablished { .. } | Event::ConnectionLost { .. }) => {
                self.connection_events.push(event);
            }
            _ => {}
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        if let Some(target) = self.target.take() {
            self.id = Some(endpoint.open_tunnel(now, &target).expect("open"));
            return true;
        }
        let Some(id) = self.id else {
            return false;
        };
        if !self.opened || self.abort_on_open || self.closed.is_some() {
            return false;
        }
        let mut busy = false;
        let mut buf = [0; 4096];
        while self.readable {
            let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut buf) else {
                self.readable = false;
                break;
            };
            self.received.extend_from_slice(&buf[..len]);
            self.fin_received |= fin;
            self.readable = len > 0 && !fin;
            busy |= len > 0 || fin;
        }
        if self.send_after_fin && !self.fin_received {
            return busy;
        }
        if self.sent < self.send.len() {
            let taken = endpoint
                .tunnel_send(id, &self.send[self.sent..])
                .expect("send");
            self.sent += taken;
            busy |= taken > 0;
        }
        if self.finish && self.sent == self.send.len() && !self.fin_sent {
            endpoint.tunnel_finish(id).expect("finish");
            self.fin_sent = true;
            busy = true;
        }
        busy
    }
}

/// A client host that reads a tunnel only when told it is readable, as event-driven hosts
/// do (`TunnelReadable` is edge-triggered), counting what each tunnel delivered and which
/// ended.
#[derive(Default)]
pub(crate) struct EventReaders {
    readable: HashSet<TunnelId>,
    pub(crate) received: HashMap<TunnelId, usize>,
    pub(crate) fins: HashSet<TunnelId>,
}

impl Host for EventReaders {
    fn on_event(&mut self, _endpoint: &mut Endpoint, _now: Instant, event: Event) {
        if let Event::TunnelReadable { tunnel } = event {
            self.readable.insert(tunnel);
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, _now: Instant) -> bool {
        let mut buf = vec![0; 64 * 1024];
        let mut busy = false;
        for id in self.readable.drain().collect::<Vec<_>>() {
            while let Ok(Recv { len, fin }) = endpoint.tunnel_recv(id, &mut buf) {
                *self.received.entry(id).or_default() += len;
                busy |= len > 0;
                if fin {
                    self.fins.insert(id);
                }
                if len == 0 || fin {
                    break;
                }
            }
        }
        busy
    }
}
