//! The edge's `decap` off-ramp for CONNECT-IP (`EdgeConfig::ip_decap`): the engine takes
//! the client's packets apart into flows, and the host relays each flow through an ordinary
//! socket, without a TUN device or privileges.
//!
//! # Why
//!
//! The `tun` off-ramp hands whole packets to a TUN device and lets the kernel route them,
//! which needs `CAP_NET_ADMIN`, forwarding and NAT. Most of what a CONNECT-IP client sends
//! besides TCP (which it can carry as CONNECT streams) is UDP and ping; both map onto
//! sockets any process may open (a connected UDP socket; a `SOCK_DGRAM` ping socket). So
//! the engine, which already parses and checks every packet, keeps the flows and the host
//! only moves payloads.
//!
//! # Decisions
//!
//! - **Where.** A decapsulating tunnel's datagrams are not announced to the host
//!   (`TunnelDatagrams`); the tunnel is put on a list instead, and drained at the end of
//!   processing (`decapsulate_due`, after each connection's processing and after
//!   `accept_tunnel`, for packets that came before the 200). Each packet passes the same
//!   checks as for `tunnel_recv_packet` (`check_received_packet`: source, scope, egress
//!   policy and rules, hop limit, the `ip_flow` hook) before it is taken apart.
//! - **What becomes a flow.** UDP, by 5-tuple; ICMP and ICMPv6 echo requests, by addresses
//!   and Identifier (the ping socket's identifier replaces it on the way out, and the
//!   engine puts the client's back on the way in). Each flow gets a new [`IpFlowId`],
//!   never reused, and a bounded queue of payloads for the host (`udp_tunnel_queue_len`,
//!   like a UDP tunnel's; a full queue drops, counted `queue_full`).
//! - **TCP and other protocols** are answered with ICMP Destination Unreachable,
//!   "communication administratively prohibited" (ICMPv4 3/13, ICMPv6 1/1), rate limited
//!   like every ICMP error the edge sends. The engine would need a TCP stack to terminate
//!   TCP here; the `tun` off-ramp carries TCP, and TCP clients are better served by
//!   CONNECT streams (no TCP-over-QUIC-stream meltdown). "Protocol unreachable" would claim
//!   that the destination does not speak the protocol; the truth is that this router's
//!   policy does not forward it, which is what code 13 / code 1 say. An answer that may
//!   not be sent (rate limit, no gateway address) is a drop, counted.
//! - **Other ICMP** (errors the client sends about answers, echo replies, ...) is dropped,
//!   counted `not_decapsulated`: it belongs to no socket the host has.
//! - **Fragments** are dropped, counted `fragment`: nothing reassembles them, and a UDP
//!   socket sends whole datagrams only.
//! - **Bounds.** At most `EdgeConfig::ip_flows_per_tunnel` flows per tunnel: a new flow in
//!   a full tunnel is dropped (`flow_limit`) rather than evicting a live one, whose host
//!   socket may still await an answer; idle flows free their room.
//! - **Idle timeout.** A flow with no packet either way for `QuicConfig::udp_idle_timeout`
//!   closes (`IpFlowClosed`), as a CONNECT-UDP tunnel would; timers are re-armed lazily.
//! - **Ends.** Every flow of a tunnel closes when the tunnel goes, however it goes
//!   (`release_ip_addresses` runs on every removal path); the host may close a flow whose
//!   socket failed (`ip_flow_close`); both report `IpFlowClosed`.
//! - **Answers** are built as the destination would have sent them (source: the flow's
//!   destination; destination: the client's address and port or identifier), then go
//!   through the same checks as a TUN device's packets (`forward::edge_to_client`: the
//!   client's address still assigned, scope, hop limit decremented on encapsulation) and
//!   the tunnel's datagram path. One too big for the tunnel is dropped and counted: no
//!   ICMP error can reach the far end, which is a socket.

// "ICMPv4" and "ICMPv6" are protocol names in prose, not code to put in backticks.
#![allow(clippy::doc_markdown)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use veil_proto::ip::{FlowKey, IpPacket, IpVersion, Transport};

use super::ip::count_drop;
use super::{Endpoint, RoleState};
use crate::config::QuicConfig;
use crate::error::TunnelError;
use crate::ip::forward::{self, DropCause, Outcome};
use crate::map::HashMap;
use crate::types::{Event, IpFlowId, IpFlowProtocol, TunnelId};
use crate::udp::flow::MAX_IP_PACKET_LEN;

/// ICMP echo request and reply types: ICMPv4 (RFC 792), ICMPv6 (RFC 4443 §4).
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// The length of an ICMP echo header: type, code, checksum, identifier, sequence.
const ECHO_HEADER_LEN: usize = 8;

/// One flow taken out of a tunnel.
struct DecapFlow {
    tunnel: TunnelId,
    key: FlowKey,
    protocol: IpFlowProtocol,
    /// Payloads for the host, oldest first.
    queue: VecDeque<Vec<u8>>,
    /// An `IpFlowReadable` is outstanding: the host has not emptied the queue since.
    notified: bool,
    /// The last packet either way (or the flow's start).
    last_activity: Instant,
}

/// The endpoint's decapsulated flows, their idle timers, and the tunnels whose packets
/// wait to be taken apart.
pub(super) struct DecapFlows {
    flows: HashMap<IpFlowId, DecapFlow>,
    /// When to look at a flow's idleness next: early entries are re-armed, entries of
    /// closed flows fall out when due.
    timers: BinaryHeap<Reverse<(Instant, IpFlowId)>>,
    next: u64,
    queue_len: usize,
    idle: Duration,
    /// IP tunnels with packets queued for decapsulation, each at most once (their flow's
    /// `notified`).
    pub(super) due: Vec<TunnelId>,
    /// Reused buffer for one packet.
    buf: Vec<u8>,
}

impl DecapFlows {
    pub(super) fn new(quic: &QuicConfig) -> Self {
        Self {
            flows: HashMap::default(),
            timers: BinaryHeap::new(),
            next: 0,
            queue_len: quic.udp_tunnel_queue_len,
            idle: quic.udp_idle_timeout,
            due: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// The next idle check.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// How many flows are open.
    pub(super) fn len(&self) -> usize {
        self.flows.len()
    }
}

impl Endpoint {
    /// The next payload the client sent on this flow: a UDP payload, or for ICMP echo the
    /// whole ICMP message (type, code, checksum, identifier, sequence, data) as a ping
    /// socket takes it. `Ok(None)`: none queued (wait for `IpFlowReadable`). `out` shorter
    /// than the payload: `Err(BufferTooSmall { needed })`, and the payload stays queued.
    /// `Err(UnknownTunnel)`: no such flow (closed, or never opened).
    pub fn ip_flow_recv(
        &mut self,
        flow: IpFlowId,
        out: &mut [u8],
    ) -> Result<Option<usize>, TunnelError> {
        let entry = self
            .decap
            .flows
            .get_mut(&flow)
            .ok_or(TunnelError::UnknownTunnel)?;
        let Some(payload) = entry.queue.front() else {
            entry.notified = false;
            return Ok(None);
        };
        let len = payload.len();
        out.get_mut(..len)
            .ok_or(TunnelError::BufferTooSmall { needed: len })?
            .copy_from_slice(payload);
        entry.queue.pop_front();
        Ok(Some(len))
    }

    /// What the destination answered: a UDP payload from the flow's destination, or an
    /// ICMP echo reply message as the ping socket returned it (its identifier is the
    /// socket's: the engine puts the client's back and computes the checksum). The engine
    /// builds the IP packet (source: the flow's destination; destination: the client's
    /// address and port), decrements the hop limit on encapsulation (RFC 9484 §7.2) and
    /// sends it into the tunnel. `Ok(false)`: dropped and counted (too big for the tunnel,
    /// which no ICMP error can tell a socket; not an echo reply; a queue full).
    /// `Err(UnknownTunnel)`: no such flow.
    pub fn ip_flow_send(&mut self, flow: IpFlowId, payload: &[u8]) -> Result<bool, TunnelError> {
        let entry = self
            .decap
            .flows
            .get_mut(&flow)
            .ok_or(TunnelError::UnknownTunnel)?;
        entry.last_activity = self.clock;
        let (tunnel, key, protocol) = (entry.tunnel, entry.key, entry.protocol);
        let mut packet = vec![0; payload.len() + 64];
        let built = match protocol {
            IpFlowProtocol::Udp => {
                veil_proto::ip::encode_udp(&mut packet, key.destination, key.source, payload).ok()
            }
            IpFlowProtocol::IcmpEcho => echo_reply(&mut packet, &key, payload),
        };
        let Some(len) = built else {
            count_drop(&mut self.stats, DropCause::Malformed);
            return Ok(false);
        };
        packet.truncate(len);
        self.send_decap_answer(tunnel, &mut packet)
    }

    /// The host's socket for this flow failed or is gone: the engine forgets the flow (a
    /// new packet of the same 5-tuple opens a new one) and reports `IpFlowClosed`.
    /// `Err(UnknownTunnel)`: no such flow.
    pub fn ip_flow_close(&mut self, flow: IpFlowId) -> Result<(), TunnelError> {
        if self.close_decap_flow(flow) {
            Ok(())
        } else {
            Err(TunnelError::UnknownTunnel)
        }
    }
}

// Glue called from the endpoint's processing.
impl Endpoint {
    /// Takes apart the packets queued on the tunnels due (see the module documentation).
    pub(super) fn decapsulate_due(&mut self) {
        if self.decap.due.is_empty() {
            return;
        }
        let mut buf = std::mem::take(&mut self.decap.buf);
        buf.resize(MAX_IP_PACKET_LEN, 0);
        for id in std::mem::take(&mut self.decap.due) {
            // Until the queue is empty, which clears its `notified`; an error means the
            // tunnel is gone or not open, and its packets with it.
            while let Ok(Some(len)) = self.tunnel_recv_datagram(id, &mut buf) {
                let packet = buf.get_mut(..len).unwrap_or_default();
                match self.check_received_packet(id, packet) {
                    Ok(()) => self.decapsulate(id, packet),
                    Err(None) => {}
                    Err(Some(answer)) => {
                        let _ = self.tunnel_send_datagram(id, &answer);
                    }
                }
            }
        }
        self.decap.buf = buf;
    }

    /// One packet that passed the checks: into its flow, answered, or dropped.
    pub(super) fn decapsulate(&mut self, tunnel: TunnelId, packet: &[u8]) {
        let Ok(view) = IpPacket::new_checked(packet) else {
            count_drop(&mut self.stats, DropCause::Malformed);
            return;
        };
        let key = view.flow_key();
        match (view.transport(), key) {
            (Transport::Udp(udp), Some(key)) => {
                self.queue_on_flow(tunnel, key, IpFlowProtocol::Udp, udp.payload());
            }
            (Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp), Some(key))
                if is_echo_request(view.version(), icmp.icmp_type()) =>
            {
                let mut message = Vec::with_capacity(ECHO_HEADER_LEN + icmp.payload().len());
                let [c0, c1] = icmp.checksum().to_be_bytes();
                message.extend_from_slice(&[icmp.icmp_type(), icmp.code(), c0, c1]);
                message.extend_from_slice(&icmp.rest_of_header());
                message.extend_from_slice(icmp.payload());
                self.queue_on_flow(tunnel, key, IpFlowProtocol::IcmpEcho, &message);
            }
            (Transport::Fragment, _) => count_drop(&mut self.stats, DropCause::Fragment),
            (Transport::Icmpv4(_) | Transport::Icmpv6(_), _) => {
                count_drop(&mut self.stats, DropCause::NotDecapsulated);
            }
            // TCP and every other protocol: administratively prohibited (module docs).
            _ => self.refuse_undecapsulated(tunnel, packet),
        }
    }

    /// Answers a packet of no flow the engine takes apart with ICMP "administratively
    /// prohibited", or counts its drop.
    fn refuse_undecapsulated(&mut self, tunnel: TunnelId, packet: &[u8]) {
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        let pool = &edge.ip_pool;
        let mut answer = [0; veil_proto::ip::ICMPV6_ERROR_MAX_LEN];
        let outcome = forward::refuse_undecapsulated(
            packet,
            |v6| pool.gateway(v6),
            forward::IcmpOut {
                answer: &mut answer,
                limiter: &mut self.icmp_limiter,
                now: self.clock,
            },
        );
        match outcome {
            Outcome::Answer { len } => {
                self.stats.ip_icmp_answers += 1;
                let _ = self.tunnel_send_datagram(tunnel, answer.get(..len).unwrap_or_default());
            }
            Outcome::Drop(cause) => count_drop(&mut self.stats, cause),
            Outcome::Forward => {}
        }
    }

    /// Queues `payload` on `key`'s flow in `tunnel`, opening the flow if it is new.
    fn queue_on_flow(
        &mut self,
        tunnel: TunnelId,
        key: FlowKey,
        protocol: IpFlowProtocol,
        payload: &[u8],
    ) {
        let now = self.clock;
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        let per_tunnel = edge.ip_flows_per_tunnel.max(1);
        let Some(index) = self
            .tunnels
            .get_mut(&tunnel)
            .and_then(|t| t.ip.as_deref_mut())
            .and_then(|ip| ip.decap.as_mut())
        else {
            return;
        };
        let flow = if let Some(&flow) = index.get(&key) {
            flow
        } else {
            if index.len() >= per_tunnel {
                count_drop(&mut self.stats, DropCause::FlowLimit);
                return;
            }
            let flow = IpFlowId(self.decap.next);
            self.decap.next += 1;
            index.insert(key, flow);
            self.decap.flows.insert(
                flow,
                DecapFlow {
                    tunnel,
                    key,
                    protocol,
                    queue: VecDeque::new(),
                    notified: false,
                    last_activity: now,
                },
            );
            self.decap
                .timers
                .push(Reverse((now + self.decap.idle, flow)));
            self.stats.ip_decap_flows_opened += 1;
            let destination = match protocol {
                IpFlowProtocol::IcmpEcho => SocketAddr::new(key.destination.ip(), 0),
                _ => key.destination,
            };
            tracing::debug!(?tunnel, ?flow, ?protocol, %destination, "decapsulated flow opened");
            self.events.push_back(Event::IpFlowOpened {
                flow,
                tunnel,
                protocol,
                destination,
            });
            flow
        };
        let Some(entry) = self.decap.flows.get_mut(&flow) else {
            return;
        };
        entry.last_activity = now;
        if entry.queue.len() >= self.decap.queue_len {
            count_drop(&mut self.stats, DropCause::QueueFull);
            return;
        }
        entry.queue.push_back(payload.to_vec());
        self.stats.ip_packets_forwarded += 1;
        if !entry.notified {
            entry.notified = true;
            self.events.push_back(Event::IpFlowReadable { flow });
        }
    }

    /// Sends an answer built for a flow into its tunnel, after the checks a TUN device's
    /// packets pass (`forward::edge_to_client`, which decrements the hop limit).
    fn send_decap_answer(
        &mut self,
        tunnel: TunnelId,
        packet: &mut [u8],
    ) -> Result<bool, TunnelError> {
        let max_len = self
            .tunnel_max_datagram_payload(tunnel)
            .ok_or(TunnelError::InvalidState)?;
        if packet.len() > max_len {
            // The far end is a socket on the host: no ICMP error can reach it.
            //# RFC 9484 §10.1: "In this scenario, the endpoint SHOULD drop the IP packet
            //# and send an ICMP Packet Too Big message to the sender of the dropped packet"
            count_drop(&mut self.stats, DropCause::TooBig);
            return Ok(false);
        }
        let RoleState::Edge(edge) = &self.role else {
            return Err(TunnelError::InvalidState);
        };
        let ip = self
            .tunnels
            .get(&tunnel)
            .and_then(|t| t.ip.as_deref())
            .ok_or(TunnelError::UnknownTunnel)?;
        let pool = &edge.ip_pool;
        let mut answer = [0; veil_proto::ip::ICMPV6_ERROR_MAX_LEN];
        //# RFC 9484 §7.2: "the Hop Count is decremented right before an IP packet is
        //# transmitted in an HTTP Datagram."
        let outcome = forward::edge_to_client(
            packet,
            pool.addresses_of(tunnel),
            ip.reach(),
            max_len,
            |v6| pool.gateway(v6),
            forward::IcmpOut {
                answer: &mut answer,
                limiter: &mut self.icmp_limiter,
                now: self.clock,
            },
        );
        match outcome {
            Outcome::Forward => {
                let sent = self.tunnel_send_datagram(tunnel, packet);
                if sent == Ok(true) {
                    self.stats.ip_packets_forwarded += 1;
                }
                sent
            }
            // Not reached: a built packet leaves with a full hop limit and fits. Its ICMP
            // error would be for a socket: dropped.
            Outcome::Answer { .. } => {
                count_drop(&mut self.stats, DropCause::HopLimitExpired);
                Ok(false)
            }
            Outcome::Drop(cause) => {
                count_drop(&mut self.stats, cause);
                Ok(false)
            }
        }
    }

    /// Closes the flows idle at `now`.
    pub(super) fn expire_idle_decap(&mut self, now: Instant) {
        while let Some(&Reverse((at, flow))) = self.decap.timers.peek() {
            if at > now {
                return;
            }
            self.decap.timers.pop();
            let Some(entry) = self.decap.flows.get(&flow) else {
                continue;
            };
            let deadline = entry.last_activity + self.decap.idle;
            if deadline > now {
                self.decap.timers.push(Reverse((deadline, flow)));
                continue;
            }
            tracing::debug!(?flow, "decapsulated flow idle");
            self.close_decap_flow(flow);
        }
    }

    /// Forgets one flow, in its tunnel's index too, and reports it closed. Returns whether
    /// it was open.
    fn close_decap_flow(&mut self, flow: IpFlowId) -> bool {
        let Some(entry) = self.decap.flows.remove(&flow) else {
            return false;
        };
        if let Some(index) = self
            .tunnels
            .get_mut(&entry.tunnel)
            .and_then(|t| t.ip.as_deref_mut())
            .and_then(|ip| ip.decap.as_mut())
        {
            index.remove(&entry.key);
        }
        self.events.push_back(Event::IpFlowClosed { flow });
        true
    }

    /// Closes every flow of a tunnel that is gone (`flows`: its index), oldest first.
    pub(super) fn close_decap_flows(&mut self, flows: &HashMap<FlowKey, IpFlowId>) {
        let mut ids: Vec<IpFlowId> = flows.values().copied().collect();
        ids.sort_unstable();
        for flow in ids {
            if self.decap.flows.remove(&flow).is_some() {
                self.events.push_back(Event::IpFlowClosed { flow });
            }
        }
    }
}

/// Whether an ICMP message of `icmp_type` is an echo request of `version`'s ICMP.
fn is_echo_request(version: IpVersion, icmp_type: u8) -> bool {
    match version {
        IpVersion::V4 => icmp_type == ECHO_REQUEST_V4,
        IpVersion::V6 => icmp_type == ECHO_REQUEST_V6,
    }
}

/// The echo reply to the client for the reply message `message` a ping socket returned:
/// its sequence and data, the client's identifier (the key's source "port"). `None`: not an
/// echo reply of the flow's family, or too long.
fn echo_reply(out: &mut [u8], key: &FlowKey, message: &[u8]) -> Option<usize> {
    let (header, data) = message.split_first_chunk::<ECHO_HEADER_LEN>()?;
    let reply = if key.source.is_ipv4() {
        ECHO_REPLY_V4
    } else {
        ECHO_REPLY_V6
    };
    if header[0] != reply || header[1] != 0 {
        return None;
    }
    let sequence = u16::from_be_bytes([header[6], header[7]]);
    //# RFC 792: "The identifier and sequence number may be used by the echo sender to aid
    //# in matching the replies with the echo requests."
    veil_proto::ip::encode_icmp_echo_reply(
        out,
        key.destination.ip(),
        key.source.ip(),
        key.source.port(),
        sequence,
        data,
    )
    .ok()
}
