//! Edge: the server name a QUIC flow inside a CONNECT-IP tunnel asks for, read from its
//! client's Initial packets (veil-proto `sniff::quic`) before the flow is judged, so that
//! rules on `sni` and the `ip_flow` hook can route HTTP/3 that arrives as raw IP by name.
//!
//! # Decisions
//!
//! - **When.** Only for a new UDP flow, and only when something wants the name: a rule on
//!   `sni` comes before the first rule that matches the packet's destination without one
//!   (`EdgeState::needs_sni`), or the hook asks for names (`Policy::ip_flow_wants_sni`).
//!   Otherwise nothing is decrypted and nothing held. The cost when it is wanted: one
//!   HKDF derivation, one AES block and one AES-GCM decryption of about 1.2 KB per new
//!   QUIC flow (microseconds), and one look at the first byte for any other UDP flow.
//! - **Where.** At the flow's verdict (`Endpoint::flow_verdict`), which both off-ramps
//!   share: `tun` (`tunnel_recv_packet`) and `decap` (`decapsulate_due`).
//! - **Holding.** A `ClientHello` longer than one Initial (Chrome's with post-quantum key
//!   shares) needs the flow's next packets: they are held, copied, in the tunnel
//!   ([`HeldFlow`]) until the name is in, [`MAX_HELD_PACKETS`] packets are held, or
//!   `IpFlowQuery::SNI_WAIT` passes; then the flow is judged (with the name, or without
//!   one) and its packets released in order (to the host's `tunnel_recv_packet`, with a
//!   `TunnelDatagrams` event, or taken apart for `decap`) or dropped, counted
//!   `flow_refused`. At most [`MAX_HELD_FLOWS`] flows per tunnel wait at once; a new one
//!   beyond is judged without a name. So a tunnel holds at most 8 × 4 packets and 8 × 4 KiB
//!   of `ClientHello`, about 80 KiB.
//! - **Rules.** A packet whose destination a rule on `sni` may decide passes the
//!   per-packet checks (`ip/forward.rs`), and its flow is judged with the name:
//!   `permits_named` (the rules with `sni`, else egress policy) refuses it, or lets the hook
//!   judge it. Packets of no flow (fragments, ICMP errors) are judged at once without a
//!   name; a refused one is dropped (`flow_refused`), not answered with an ICMP error.

use std::time::Instant;

use veil_proto::ip::{FlowKey, IpPacket, Transport};
use veil_proto::sniff::quic::{CRYPTO_LIMIT, InitialSniffer, QuicSniffed};

use super::Endpoint;
use super::ip::count_drop;
use crate::ip::forward::DropCause;
use crate::policy::{IpFlowQuery, IpFlowVerdict};
use crate::types::{Event, TunnelId};

/// The most packets of one flow held while its `ClientHello` comes in.
pub(super) const MAX_HELD_PACKETS: usize = 4;
/// The most flows of one tunnel whose packets are held at once.
pub(super) const MAX_HELD_FLOWS: usize = 8;

/// A flow whose first packets wait for the rest of its `ClientHello`.
#[derive(Debug, Clone)]
pub(super) struct HeldFlow {
    sniffer: InitialSniffer,
    crypto: Box<[u8]>,
    /// The flow's packets, whole, oldest first.
    packets: Vec<Vec<u8>>,
    deadline: Instant,
}

/// What a flow's first look gives.
enum First {
    /// The name, or no name to wait for.
    Decided(Option<String>),
    /// An Initial whose `ClientHello` continues in later packets.
    Wait(Box<HeldFlow>),
}

/// The verdict on a packet's flow, or that the packet is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlowDecision {
    Pass,
    Refuse,
    /// Kept with its flow: it is released or dropped with the flow's verdict.
    Held,
}

impl From<IpFlowVerdict> for FlowDecision {
    fn from(verdict: IpFlowVerdict) -> Self {
        match verdict {
            IpFlowVerdict::Refuse => Self::Refuse,
            _ => Self::Pass,
        }
    }
}

/// The UDP payload of a packet, if it is UDP.
fn udp_payload(packet: &[u8]) -> Option<&[u8]> {
    match IpPacket::new_checked(packet).ok()?.transport() {
        Transport::Udp(udp) => Some(udp.payload()),
        _ => None,
    }
}

/// Reads a new flow's first UDP payload.
fn first_look(payload: &[u8], now: Instant) -> First {
    let mut sniffer = InitialSniffer::new();
    let mut crypto = vec![0; CRYPTO_LIMIT].into_boxed_slice();
    match sniffer.sniff(&mut payload.to_vec(), &mut crypto) {
        QuicSniffed::ServerName(name) => First::Decided(Some(name.to_owned())),
        QuicSniffed::Nothing => First::Decided(None),
        QuicSniffed::NeedMore => First::Wait(Box::new(HeldFlow {
            sniffer,
            crypto,
            packets: Vec::new(),
            deadline: now + IpFlowQuery::SNI_WAIT,
        })),
    }
}

impl Endpoint {
    /// Edge: the first packet of a new flow, `key`, that something wants the name of: its
    /// verdict now, or held until its `ClientHello` is in.
    pub(super) fn sniff_new_flow(
        &mut self,
        tunnel: TunnelId,
        key: FlowKey,
        packet: &[u8],
    ) -> FlowDecision {
        let Some(payload) = udp_payload(packet) else {
            return self.judge_flow(tunnel, packet, None).into();
        };
        let mut held = match first_look(payload, self.clock) {
            First::Decided(name) => return self.judge_flow(tunnel, packet, name.as_deref()).into(),
            First::Wait(held) => held,
        };
        let Some(ip) = self
            .tunnels
            .get_mut(&tunnel)
            .and_then(|t| t.ip.as_deref_mut())
        else {
            return FlowDecision::Refuse;
        };
        if ip.sniffing.len() >= MAX_HELD_FLOWS {
            return self.judge_flow(tunnel, packet, None).into();
        }
        held.packets.push(packet.to_vec());
        self.ip_sniff_deadlines.insert((held.deadline, tunnel));
        ip.sniffing.insert(key, held);
        FlowDecision::Held
    }

    /// Edge: a later packet of a held flow: held with the others, and the flow judged when
    /// its name is in or no more packets may wait.
    pub(super) fn sniff_held_flow(
        &mut self,
        tunnel: TunnelId,
        key: FlowKey,
        packet: &[u8],
    ) -> FlowDecision {
        let Some(held) = self
            .tunnels
            .get_mut(&tunnel)
            .and_then(|t| t.ip.as_deref_mut())
            .and_then(|ip| ip.sniffing.get_mut(&key))
        else {
            return FlowDecision::Refuse;
        };
        held.packets.push(packet.to_vec());
        let answer = match udp_payload(packet) {
            Some(payload) => held.sniffer.sniff(&mut payload.to_vec(), &mut held.crypto),
            None => QuicSniffed::NeedMore,
        };
        let name = match answer {
            QuicSniffed::ServerName(name) => Some(name.to_owned()),
            QuicSniffed::NeedMore if held.packets.len() < MAX_HELD_PACKETS => {
                return FlowDecision::Held;
            }
            QuicSniffed::NeedMore | QuicSniffed::Nothing => None,
        };
        self.settle_held_flow(tunnel, key, name.as_deref());
        FlowDecision::Held
    }

    /// Edge: judges every held flow whose wait is over at `now`, without a name.
    pub(super) fn expire_ip_sniffing(&mut self, now: Instant) {
        while let Some(&(at, tunnel)) = self.ip_sniff_deadlines.first() {
            if at > now {
                break;
            }
            self.ip_sniff_deadlines.pop_first();
            let due: Vec<FlowKey> = self
                .tunnels
                .get(&tunnel)
                .and_then(|t| t.ip.as_deref())
                .map(|ip| {
                    ip.sniffing
                        .iter()
                        .filter(|(_, held)| held.deadline <= now)
                        .map(|(key, _)| *key)
                        .collect()
                })
                .unwrap_or_default();
            for key in due {
                self.settle_held_flow(tunnel, key, None);
            }
        }
    }

    /// Edge: judges a held flow and releases its packets in order, or drops them.
    fn settle_held_flow(&mut self, tunnel: TunnelId, key: FlowKey, name: Option<&str>) {
        let Some(held) = self
            .tunnels
            .get_mut(&tunnel)
            .and_then(|t| t.ip.as_deref_mut())
            .and_then(|ip| ip.sniffing.remove(&key))
        else {
            return;
        };
        let first = held.packets.first().map(Vec::as_slice).unwrap_or_default();
        let verdict = self.judge_flow(tunnel, first, name);
        if verdict == IpFlowVerdict::Refuse {
            for _ in &held.packets {
                count_drop(&mut self.stats, DropCause::FlowRefused);
            }
            return;
        }
        let decap = self
            .tunnels
            .get(&tunnel)
            .and_then(|t| t.ip.as_deref())
            .is_some_and(|ip| ip.decap.is_some());
        if decap {
            for packet in &held.packets {
                self.decapsulate(tunnel, packet);
            }
        } else if let Some(ip) = self
            .tunnels
            .get_mut(&tunnel)
            .and_then(|t| t.ip.as_deref_mut())
        {
            ip.released.extend(held.packets);
            self.events.push_back(Event::TunnelDatagrams { tunnel });
        }
    }
}
