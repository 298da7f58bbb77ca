//! CONNECT-IP on the endpoint (RFC 9484): addresses, routes and IP packets.
//!
//! - An IP tunnel is a datagram tunnel (its [`UdpFlow`] carries [`Carries::Ip`]) with an
//!   [`IpTunnel`]: the scope it asked for, the addresses assigned to the client and the
//!   routes the edge advertised. Everything about datagrams (frames or capsules, queues,
//!   idle timer) is CONNECT-UDP's, in `endpoint/udp.rs`.
//! - Edge: the engine assigns the client one address per family from `EdgeConfig::ip_pools`
//!   when the host accepts the tunnel (503 when a pool is exhausted), tells the client in
//!   an `ADDRESS_ASSIGN` capsule right after the 2xx, with a `ROUTE_ADVERTISEMENT` of its
//!   scope, and answers its `ADDRESS_REQUEST`s. Each packet the client sends is checked
//!   (`crate::ip::forward`: assigned source, scope, egress policy, hop limit) before the
//!   host gets it from [`Endpoint::tunnel_recv_packet`], and so is its flow: the first
//!   packet of each goes to the `ip_flow` hook, whose verdict the tunnel's
//!   [`FlowTable`] keeps for the later ones (a refused flow's packets are dropped,
//!   `flow_refused`); each packet the host's off-ramp
//!   hands to [`Endpoint::ip_deliver`] goes to the tunnel that owns its destination.
//! - Client: [`Endpoint::open_ip_tunnel`] asks for a scope; the addresses and routes the
//!   edge sends come as [`Event::IpTunnelConfigured`] and are read with
//!   [`Endpoint::ip_tunnel_addresses`] and [`Endpoint::ip_tunnel_routes`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use veil_proto::capsule::types;
use veil_proto::ip::FlowKey;
use veil_proto::masque::ip::{
    AddressAssign, AddressRequest, AssignedAddress, IpAddressRange, IpPrefix, RouteAdvertisement,
    Scope, Target, Template,
};
use veil_proto::varint::VarInt;

use super::ip_sniff::{FlowDecision, HeldFlow};
use super::{Endpoint, RoleState};
use crate::error::{OpenError, TunnelError};
use crate::ip::flows::FlowTable;
use crate::ip::forward::{self, DropCause, Outcome};
use crate::ip::request;
use crate::map::HashMap;
use crate::policy::{IpFlowQuery, IpFlowVerdict, Tags};
use crate::types::{EndpointStats, Event, IpFlowId, Refusal, TunnelId};
use crate::udp::flow::{Carries, Control, H3_MESSAGE_ERROR};

/// One IP tunnel's addresses and routes.
#[derive(Debug, Clone)]
pub(super) struct IpTunnel {
    /// What the request asked to reach.
    pub(super) scope: Scope,
    /// Edge: the addresses assigned to the client, each with the Request ID it answered
    /// (zero when unsolicited). Client: what the edge's last `ADDRESS_ASSIGN` said.
    pub(super) assigned: Vec<AssignedAddress>,
    /// Edge: what it advertised. Client: what the edge's last `ROUTE_ADVERTISEMENT` said.
    pub(super) routes: Vec<IpAddressRange>,
    /// Edge, for a scope whose target is a DNS name: the addresses the host resolved that
    /// egress policy permits ([`Endpoint::ip_scope_resolved`]); `None` until then.
    resolved: Option<Vec<IpAddr>>,
    /// The first address of each assigned prefix, for the per-packet checks (kept with
    /// `assigned` by [`IpTunnel::assign`]).
    addresses: Vec<IpAddr>,
    /// Edge: the flows the client sent, with the `ip_flow` hook's verdict on each (empty,
    /// and never filled, on a client).
    flows: FlowTable<IpFlowVerdict>,
    /// Edge with `EdgeConfig::ip_decap`: the flows taken out of this tunnel, by 5-tuple
    /// (`endpoint::decap`); `None` otherwise.
    pub(super) decap: Option<HashMap<FlowKey, IpFlowId>>,
    /// Edge: new QUIC flows whose packets wait for the rest of their `ClientHello`
    /// (`endpoint::ip_sniff`), at most `ip_sniff::MAX_HELD_FLOWS`.
    pub(super) sniffing: HashMap<FlowKey, Box<HeldFlow>>,
    /// Edge, `tun` off-ramp: packets of flows judged after they were held, which
    /// `tunnel_recv_packet` returns before any other.
    pub(super) released: VecDeque<Vec<u8>>,
}

impl IpTunnel {
    pub(super) fn new(scope: Scope, flows: FlowTable<IpFlowVerdict>) -> Self {
        Self {
            scope,
            assigned: Vec::new(),
            routes: Vec::new(),
            resolved: None,
            addresses: Vec::new(),
            flows,
            decap: None,
            sniffing: HashMap::default(),
            released: VecDeque::new(),
        }
    }

    /// The same scope, with nothing assigned or advertised yet: a client's request sent
    /// again on a new connection.
    pub(super) fn for_a_new_request(self: Box<Self>) -> Box<Self> {
        let Self { scope, flows, .. } = *self;
        Box::new(Self::new(scope, flows))
    }

    /// Whether the engine takes this tunnel's packets apart (`EdgeConfig::ip_decap`).
    pub(super) fn decaps(&self) -> bool {
        self.decap.is_some()
    }

    /// What the per-packet checks let this tunnel reach.
    pub(super) fn reach(&self) -> forward::Reach<'_> {
        forward::Reach {
            scope: &self.scope,
            resolved: self.resolved.as_deref().unwrap_or_default(),
        }
    }

    /// Replaces the assigned addresses.
    fn assign(&mut self, assigned: Vec<AssignedAddress>) {
        self.addresses = assigned.iter().map(|a| a.prefix.addr()).collect();
        self.assigned = assigned;
    }
}

/// The most addresses a name-scoped IP tunnel reaches (and routes it is advertised): more
/// than a name's answer holds in practice, few enough that checking a packet against them
/// one by one costs nothing.
pub const MAX_RESOLVED: usize = 32;

/// What became of a packet the edge's off-ramp handed to [`Endpoint::ip_deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpDelivery {
    /// Sent into this tunnel.
    Sent(TunnelId),
    /// Not sent: the first `len` bytes of the answer buffer hold an ICMP error to hand
    /// back to the off-ramp (Packet Too Big, Time Exceeded).
    Answer {
        /// Its length.
        len: usize,
    },
    /// Dropped, and counted.
    Dropped,
}

impl Endpoint {
    /// Client: opens a CONNECT-IP tunnel (RFC 9484) for `scope` ([`Scope::ANY`] for a
    /// full tunnel), with the same waiting and reconnect rules as `open_tunnel`. The answer
    /// comes as `TunnelOpened` or `TunnelRefused`; the addresses and routes the edge gives
    /// come as `IpTunnelConfigured`; then packets flow with `tunnel_send_packet` and
    /// `tunnel_recv_packet`.
    pub fn open_ip_tunnel(&mut self, now: Instant, scope: &Scope) -> Result<TunnelId, OpenError> {
        if !matches!(self.role, RoleState::Client(_)) {
            return Err(OpenError::NotClient);
        }
        //# RFC 9484 §4.6: "the client SHALL perform URI Template expansion to determine
        //# the path and query of its request"
        let path =
            request::expand_path(&Template::DEFAULT, scope).ok_or(OpenError::InvalidTarget)?;
        let flow = self.udp.new_flow_carrying(path, now, Carries::Ip);
        let target = request::target_of(scope);
        let id = self.open_with(now, &target, Some(flow))?;
        if let Some(tunnel) = self.tunnels.get_mut(&id) {
            // A client judges no flows: its table stays empty, and allocates nothing.
            let flows = FlowTable::new(1, self.udp.idle_timeout());
            tunnel.ip = Some(Box::new(IpTunnel::new(scope.clone(), flows)));
        }
        Ok(id)
    }

    /// Client: the address prefixes the edge assigned to an IP tunnel (empty until its
    /// `ADDRESS_ASSIGN`). `None`: not an IP tunnel.
    pub fn ip_tunnel_addresses(&self, tunnel: TunnelId) -> Option<Vec<IpPrefix>> {
        let ip = self.tunnels.get(&tunnel)?.ip.as_deref()?;
        Some(ip.assigned.iter().map(|a| a.prefix).collect())
    }

    /// The routes of an IP tunnel: on a client, what the edge advertised (empty until its
    /// `ROUTE_ADVERTISEMENT`); on the edge, what it advertised. `None`: not an IP tunnel.
    pub fn ip_tunnel_routes(&self, tunnel: TunnelId) -> Option<&[IpAddressRange]> {
        Some(&self.tunnels.get(&tunnel)?.ip.as_deref()?.routes)
    }

    /// Edge: how many flows an IP tunnel's table remembers now (at most
    /// `EdgeConfig::ip_flows_per_tunnel`). `None`: not an IP tunnel.
    pub fn ip_tunnel_flows(&self, tunnel: TunnelId) -> Option<usize> {
        Some(self.tunnels.get(&tunnel)?.ip.as_deref()?.flows.len())
    }

    /// Edge: the addresses the host resolved for an IP tunnel whose scope names its target
    /// by DNS (`/.well-known/masque/ip/example.com/*/`), to call before
    /// [`accept_tunnel`](Self::accept_tunnel): the tunnel reaches those of them egress
    /// policy permits (at most [`MAX_RESOLVED`] of them), and the edge advertises a route
    /// to each in a family it assigned an address of. `Err` is the refusal to give the
    /// request: nothing resolved ([`Refusal::DnsError`]), nothing permitted
    /// ([`Refusal::Prohibited`]), nothing in an assigned family
    /// ([`Refusal::Unreachable`]). A name-scoped tunnel accepted without this reaches
    /// nothing.
    //# RFC 9484 §4.6: "If the target is a hostname, the IP proxy is expected to perform DNS
    //# resolution to determine which route(s) to advertise to the client."
    pub fn ip_scope_resolved(&mut self, tunnel: TunnelId, addrs: &[IpAddr]) -> Result<(), Refusal> {
        let RoleState::Edge(edge) = &self.role else {
            return Err(Refusal::Internal);
        };
        let entry = self.tunnels.get_mut(&tunnel).ok_or(Refusal::Internal)?;
        let (Some(ip), Some(request)) = (entry.ip.as_deref_mut(), entry.request.as_deref()) else {
            return Err(Refusal::Internal);
        };
        if !matches!(ip.scope.target, Target::Name(_)) {
            return Err(Refusal::Internal);
        }
        if addrs.is_empty() {
            return Err(Refusal::DnsError);
        }
        let mut permitted: Vec<IpAddr> = addrs
            .iter()
            .copied()
            .filter(|&addr| edge.permits(request, addr))
            .collect();
        permitted.sort_unstable();
        permitted.dedup();
        permitted.truncate(MAX_RESOLVED);
        if permitted.is_empty() {
            return Err(Refusal::Prohibited);
        }
        let routes = routes_for(&ip.scope, &ip.addresses, &permitted);
        if routes.is_empty() {
            return Err(Refusal::Unreachable);
        }
        ip.routes = routes;
        ip.resolved = Some(permitted);
        Ok(())
    }

    /// Client: sends one IP packet into an open IP tunnel, after the checks: source
    /// assigned, destination in the advertised routes; its hop limit is decremented in
    /// place (a packet whose hop limit runs out is dropped and counted). `Ok(false)`:
    /// dropped and counted. The edge sends through [`ip_deliver`](Self::ip_deliver).
    pub fn tunnel_send_packet(
        &mut self,
        tunnel: TunnelId,
        packet: &mut [u8],
    ) -> Result<bool, TunnelError> {
        let entry = self
            .tunnels
            .get(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        let ip = entry.ip.as_deref().ok_or(TunnelError::NotIp)?;
        if matches!(self.role, RoleState::Client(_)) {
            if let Err(cause) = forward::client_to_edge(packet, &ip.addresses, &ip.routes) {
                count_drop(&mut self.stats, cause);
                return Ok(false);
            }
            //# RFC 9484 §7.2: "IP proxying endpoints MUST decrement the IP Hop Count (or
            //# TTL) upon encapsulation but not upon decapsulation."
            if veil_proto::ip::decrement_hop_limit(packet).is_err() {
                count_drop(&mut self.stats, DropCause::HopLimitExpired);
                return Ok(false);
            }
        }
        let sent = self.tunnel_send_datagram(tunnel, packet);
        if sent == Ok(true) {
            self.stats.ip_packets_forwarded += 1;
        }
        sent
    }

    /// Client: [`tunnel_send_packet`](Self::tunnel_send_packet), but a packet too big
    /// for the tunnel's path now is answered instead of dropped: ICMP Fragmentation Needed
    /// or Packet Too Big with the tunnel's real limit, written into `answer` for the host's
    /// device (give it [`veil_proto::ip::ICMPV6_ERROR_MAX_LEN`] bytes), so that the host
    /// lowers its path MTU at once rather than after its own probing times out. (The
    /// device's MTU follows the tunnel's limit, but the limit can shrink after it is set.)
    pub fn tunnel_send_packet_or_answer(
        &mut self,
        tunnel: TunnelId,
        packet: &mut [u8],
        answer: &mut [u8],
    ) -> Result<IpDelivery, TunnelError> {
        // Only a packet longer than the tunnel's room is looked at twice (parsed for its
        // ICMP answer); the rest go straight to `tunnel_send_packet`'s checks.
        let too_long = matches!(self.role, RoleState::Client(_))
            .then(|| self.tunnel_max_datagram_payload(tunnel))
            .flatten()
            .filter(|&max_len| packet.len() > max_len);
        if let Some(max_len) = too_long {
            let out = forward::IcmpOut {
                answer,
                limiter: &mut self.icmp_limiter,
                now: self.clock,
            };
            match forward::client_too_big(packet, max_len, out) {
                Outcome::Forward => {}
                Outcome::Answer { len } => {
                    self.stats.ip_icmp_answers += 1;
                    return Ok(IpDelivery::Answer { len });
                }
                Outcome::Drop(cause) => {
                    count_drop(&mut self.stats, cause);
                    return Ok(IpDelivery::Dropped);
                }
            }
        }
        Ok(if self.tunnel_send_packet(tunnel, packet)? {
            IpDelivery::Sent(tunnel)
        } else {
            IpDelivery::Dropped
        })
    }

    /// Moves the next IP packet the peer sent on an IP tunnel into `out`, skipping (and
    /// counting) the ones its role's checks drop. On the edge a packet that must be
    /// answered (hop limit expired, destination forbidden) is answered into the tunnel
    /// with an ICMP error and skipped. `Ok(None)`: none queued (wait for
    /// `TunnelDatagrams`). `out` too short: `Err(BufferTooSmall { needed })`, the packet
    /// stays queued.
    pub fn tunnel_recv_packet(
        &mut self,
        tunnel: TunnelId,
        out: &mut [u8],
    ) -> Result<Option<usize>, TunnelError> {
        let entry = self
            .tunnels
            .get(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        if entry.ip.is_none() {
            // A UDP tunnel's datagrams stay for `tunnel_recv_datagram`.
            return Err(TunnelError::NotIp);
        }
        loop {
            if let Some(len) = self.recv_released(tunnel, out)? {
                return Ok(Some(len));
            }
            let Some(len) = self.tunnel_recv_datagram(tunnel, out)? else {
                return Ok(None);
            };
            let packet = out.get_mut(..len).unwrap_or_default();
            match self.check_received_packet(tunnel, packet) {
                Ok(()) => {
                    self.stats.ip_packets_forwarded += 1;
                    return Ok(Some(len));
                }
                Err(None) => {}
                Err(Some(answer)) => {
                    let _ = self.tunnel_send_datagram(tunnel, &answer);
                }
            }
        }
    }

    /// The checks a received packet passes before the host sees it: `Err(None)` to drop
    /// it (counted), `Err(Some(icmp))` to answer it instead.
    pub(super) fn check_received_packet(
        &mut self,
        tunnel: TunnelId,
        packet: &mut [u8],
    ) -> Result<(), Option<Vec<u8>>> {
        let Some(entry) = self.tunnels.get(&tunnel) else {
            return Err(None);
        };
        let Some(ip) = entry.ip.as_deref() else {
            return Err(None);
        };
        let outcome = match &mut self.role {
            RoleState::Client(_) => {
                match forward::client_from_edge(packet, &ip.addresses, &ip.routes) {
                    Ok(()) => Outcome::Forward,
                    Err(cause) => Outcome::Drop(cause),
                }
            }
            RoleState::Edge(edge) => {
                let request = entry.request.as_deref();
                let pool = &edge.ip_pool;
                let mut answer = [0; veil_proto::ip::ICMPV6_ERROR_MAX_LEN];
                let outcome = forward::edge_from_client(
                    packet,
                    edge.ip_pool.addresses_of(tunnel),
                    ip.reach(),
                    // A destination a rule on `sni` may decide is judged per flow, with
                    // the name (`flow_verdict`).
                    |dest| {
                        request.is_some_and(|r| edge.permits(r, dest) || edge.needs_sni(r, dest))
                    },
                    |v6| pool.gateway(v6),
                    forward::IcmpOut {
                        answer: &mut answer,
                        limiter: &mut self.icmp_limiter,
                        now: self.clock,
                    },
                );
                if let Outcome::Answer { len } = outcome {
                    self.stats.ip_icmp_answers += 1;
                    return Err(Some(answer.get(..len).unwrap_or_default().to_vec()));
                }
                outcome
            }
        };
        let outcome = match outcome {
            Outcome::Forward => match self.flow_verdict(tunnel, packet) {
                FlowDecision::Pass => Outcome::Forward,
                FlowDecision::Refuse => Outcome::Drop(DropCause::FlowRefused),
                FlowDecision::Held => return Err(None),
            },
            other => other,
        };
        match outcome {
            Outcome::Forward => Ok(()),
            Outcome::Drop(cause) => {
                count_drop(&mut self.stats, cause);
                Err(None)
            }
            Outcome::Answer { .. } => Err(None),
        }
    }

    /// Edge: the verdict on the flow of a packet the client sent and the checks passed:
    /// the one remembered, or, for a new flow, the rules on `sni` and the `ip_flow`
    /// hook's (then remembered), or that the packet is held while its flow's name comes
    /// in (`endpoint::ip_sniff`). Packets of no flow (ICMP errors, fragments, other
    /// protocols) pass unless a rule on `sni` refuses their destination without a name;
    /// so does everything on a client.
    fn flow_verdict(&mut self, tunnel: TunnelId, packet: &[u8]) -> FlowDecision {
        let RoleState::Edge(edge) = &self.role else {
            return FlowDecision::Pass;
        };
        let Some(view) = veil_proto::ip::IpPacket::new_checked(packet).ok() else {
            return FlowDecision::Pass; // not reached: `edge_from_client` parsed it
        };
        let Some(entry) = self.tunnels.get_mut(&tunnel) else {
            return FlowDecision::Pass;
        };
        let (Some(ip), Some(request)) = (entry.ip.as_deref_mut(), entry.request.as_deref()) else {
            return FlowDecision::Pass;
        };
        let destination = view.destination();
        let needs_sni = edge.needs_sni(request, destination);
        let Some(key) = view.flow_key() else {
            return if needs_sni && !edge.permits(request, destination) {
                FlowDecision::Refuse
            } else {
                FlowDecision::Pass
            };
        };
        if let Some(verdict) = ip.flows.touch(&key, self.clock) {
            return verdict.into();
        }
        if ip.sniffing.contains_key(&key) {
            return self.sniff_held_flow(tunnel, key, packet);
        }
        if needs_sni || self.policy.ip_flow_wants_sni() {
            return self.sniff_new_flow(tunnel, key, packet);
        }
        self.judge_flow(tunnel, packet, None).into()
    }

    /// Edge: judges the new flow whose first packet is `packet` (the checks passed), with
    /// the server name its QUIC client asked for if one was read: the rules on `sni` when
    /// one may decide its destination, then the `ip_flow` hook; remembers the verdict.
    pub(super) fn judge_flow(
        &mut self,
        tunnel: TunnelId,
        packet: &[u8],
        sni: Option<&str>,
    ) -> IpFlowVerdict {
        let RoleState::Edge(edge) = &self.role else {
            return IpFlowVerdict::Pass;
        };
        let Some(view) = veil_proto::ip::IpPacket::new_checked(packet).ok() else {
            return IpFlowVerdict::Pass;
        };
        let Some(key) = view.flow_key() else {
            return IpFlowVerdict::Pass;
        };
        let Some(entry) = self.tunnels.get_mut(&tunnel) else {
            return IpFlowVerdict::Pass;
        };
        let (Some(ip), Some(request)) = (entry.ip.as_deref_mut(), entry.request.as_deref()) else {
            return IpFlowVerdict::Pass;
        };
        let now = self.clock;
        let payload = match view.transport() {
            veil_proto::ip::Transport::Udp(udp) => udp.payload(),
            veil_proto::ip::Transport::Tcp(tcp) => tcp.payload(),
            veil_proto::ip::Transport::Icmpv4(icmp) | veil_proto::ip::Transport::Icmpv6(icmp) => {
                icmp.payload()
            }
            _ => &[],
        };
        let destination = key.destination.ip();
        let mut tags = Tags::new();
        let verdict = if edge.needs_sni(request, destination)
            && !edge.permits_named(request, destination, sni)
        {
            IpFlowVerdict::Refuse
        } else {
            let query = IpFlowQuery {
                tunnel,
                client: request.client,
                token_name: edge.token_name(request.client.token_index),
                certificate_identity: request.certificate_identity.as_deref(),
                tunnel_tags: &request.tags,
                protocol: key.protocol,
                source: key.source,
                destination: key.destination,
                packet_len: packet.len(),
                payload: payload
                    .get(..IpFlowQuery::PAYLOAD_PREFIX)
                    .unwrap_or(payload),
                sni,
            };
            self.policy.ip_flow(&query, &mut tags)
        };
        let inserted = ip.flows.insert(key, verdict, now);
        self.stats.ip_flows += 1;
        if inserted.evicted {
            self.stats.ip_flows_evicted += 1;
        }
        tracing::debug!(
            ?tunnel,
            protocol = ?key.protocol,
            source = %key.source,
            destination = %key.destination,
            sni,
            ?verdict,
            %tags,
            "new IP flow"
        );
        verdict
    }

    /// Edge: moves the next packet a held flow released into `out` (`tun` off-ramp).
    fn recv_released(
        &mut self,
        tunnel: TunnelId,
        out: &mut [u8],
    ) -> Result<Option<usize>, TunnelError> {
        let Some(released) = self
            .tunnels
            .get_mut(&tunnel)
            .and_then(|t| t.ip.as_deref_mut())
            .map(|ip| &mut ip.released)
        else {
            return Ok(None);
        };
        let Some(packet) = released.front() else {
            return Ok(None);
        };
        let len = packet.len();
        out.get_mut(..len)
            .ok_or(TunnelError::BufferTooSmall { needed: len })?
            .copy_from_slice(packet);
        released.pop_front();
        self.stats.ip_packets_forwarded += 1;
        Ok(Some(len))
    }

    /// Edge: a packet from the off-ramp (a TUN device, a decapsulated flow's answer) to
    /// the client that owns its destination address, after the checks
    /// (`crate::ip::forward::edge_to_client`: source in the tunnel's scope, hop limit, the
    /// tunnel's datagram size). An ICMP error to hand back to the off-ramp is written to
    /// `answer`.
    pub fn ip_deliver(&mut self, packet: &mut [u8], answer: &mut [u8]) -> IpDelivery {
        let RoleState::Edge(edge) = &mut self.role else {
            return IpDelivery::Dropped;
        };
        let Ok(view) = veil_proto::ip::IpPacket::new_checked(packet) else {
            count_drop(&mut self.stats, DropCause::Malformed);
            return IpDelivery::Dropped;
        };
        let destination = view.destination();
        let Some(tunnel) = edge.ip_pool.owner(destination) else {
            count_drop(&mut self.stats, DropCause::NotAssigned);
            return IpDelivery::Dropped;
        };
        let Some(ip) = self.tunnels.get(&tunnel).and_then(|t| t.ip.as_deref()) else {
            count_drop(&mut self.stats, DropCause::NotAssigned);
            return IpDelivery::Dropped;
        };
        let max_len = self
            .tunnel_max_datagram_payload(tunnel)
            .unwrap_or(crate::udp::flow::MAX_IP_PACKET_LEN);
        let RoleState::Edge(edge) = &mut self.role else {
            return IpDelivery::Dropped;
        };
        let pool = &edge.ip_pool;
        let outcome = forward::edge_to_client(
            packet,
            pool.addresses_of(tunnel),
            ip.reach(),
            max_len,
            |v6| pool.gateway(v6),
            forward::IcmpOut {
                answer,

                limiter: &mut self.icmp_limiter,
                now: self.clock,
            },
        );
        match outcome {
            Outcome::Forward => match self.tunnel_send_datagram(tunnel, packet) {
                Ok(true) => {
                    self.stats.ip_packets_forwarded += 1;
                    IpDelivery::Sent(tunnel)
                }
                Ok(false) | Err(_) => IpDelivery::Dropped,
            },
            Outcome::Answer { len } => {
                self.stats.ip_icmp_answers += 1;
                IpDelivery::Answer { len }
            }
            Outcome::Drop(cause) => {
                count_drop(&mut self.stats, cause);
                IpDelivery::Dropped
            }
        }
    }
}

// Glue called from the endpoint's processing.
impl Endpoint {
    /// Edge: gives a removed tunnel's addresses back to the pool and closes the flows
    /// taken out of it (`EdgeConfig::ip_decap`), however it ended.
    pub(super) fn release_ip_addresses(&mut self, id: TunnelId, tunnel: &super::Tunnel) {
        if let (Some(_), RoleState::Edge(edge)) = (&tunnel.ip, &mut self.role) {
            edge.ip_pool.release(id);
        }
        if let Some(flows) = tunnel.ip.as_deref().and_then(|ip| ip.decap.as_ref()) {
            self.close_decap_flows(flows);
        }
    }

    /// Edge: the addresses for an IP tunnel the host accepts, one per family the pools
    /// have, within its scope's family; `Err(ConnectionLimit)` when none is free.
    pub(super) fn assign_ip_addresses(&mut self, id: TunnelId) -> Result<(), Refusal> {
        let RoleState::Edge(edge) = &mut self.role else {
            return Ok(());
        };
        let Some(ip) = self.tunnels.get_mut(&id).and_then(|t| t.ip.as_deref_mut()) else {
            return Ok(());
        };
        let mut assigned = Vec::new();
        for v6 in [false, true] {
            if !edge.ip_pool.has_family(v6) {
                continue;
            }
            if let Target::Prefix(prefix) = &ip.scope.target {
                if prefix.addr().is_ipv6() != v6 {
                    continue;
                }
            }
            if let Some(addr) = edge.ip_pool.assign(id, v6, None) {
                assigned.push(AssignedAddress {
                    request_id: VarInt::from_u32(0),
                    prefix: host_prefix(addr),
                });
            }
        }
        if assigned.is_empty() {
            return Err(Refusal::ConnectionLimit);
        }
        ip.assign(assigned);
        ip.routes = routes_for(&ip.scope, &ip.addresses, &[]);
        Ok(())
    }

    /// Edge: an IP tunnel's 2xx is out: its addresses and routes follow at once.
    //# RFC 9484 §4.7.1: "the IP proxy can send an ADDRESS_ASSIGN capsule [...] to assign
    //# addresses without a request"
    pub(super) fn ip_opened(&mut self, handle: u64, id: TunnelId) {
        if !matches!(self.role, RoleState::Edge(_)) {
            return;
        }
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let (Some(ip), Some(flow)) = (tunnel.ip.as_deref(), tunnel.udp.as_deref_mut()) else {
            return;
        };
        let ipv6 = ip.addresses.iter().any(IpAddr::is_ipv6);
        append_assign(&ip.assigned, &mut flow.capsule_backlog);
        append_routes(&ip.routes, &mut flow.capsule_backlog);
        let frames = flow.encoding == Some(crate::udp::flow::Encoding::Frames);
        let too_small = ipv6
            && frames
            && self
                .tunnel_max_datagram_payload(id)
                .is_some_and(|max| !forward::ipv6_mtu_ok(max));
        if too_small {
            //# RFC 9484 §7.2: "If an endpoint is using QUIC DATAGRAM frames to convey IPv6
            //# packets and it detects that the QUIC MTU is too low to allow sending 1280
            //# bytes, it MUST abort the IP proxying request stream."
            tracing::debug!(
                ?id,
                "the path's datagrams cannot carry 1280-byte IPv6 packets"
            );
            self.abort_with(id, veil_proto::datagram::H3_DATAGRAM_ERROR);
            return;
        }
        self.flush_capsule_backlog(handle, id);
    }

    /// Acts on the address and route capsules read from an IP tunnel's stream. A
    /// malformed one aborts the stream.
    //# RFC 9484 §4.7: "If any of the capsule types defined in this protocol are sent on a
    //# stream that is not a CONNECT-IP stream or if they are malformed, the receiver MUST
    //# treat it as a malformed message"
    pub(super) fn ip_controls(&mut self, handle: u64, id: TunnelId) {
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let Some(flow) = tunnel.udp.as_deref_mut() else {
            return;
        };
        let controls = std::mem::take(&mut flow.controls);
        for control in controls {
            let handled = match self.role {
                RoleState::Edge(_) => self.edge_control(handle, id, &control),
                RoleState::Client(_) => self.client_control(id, &control),
            };
            if !handled {
                tracing::debug!(?id, capsule = ?control.capsule_type, "malformed CONNECT-IP capsule");
                self.abort_with(id, H3_MESSAGE_ERROR);
                return;
            }
        }
    }

    /// Edge: answers an `ADDRESS_REQUEST`; the client's own assignments and routes are
    /// checked and ignored (the edge routes to no address behind a client). `false`:
    /// malformed.
    fn edge_control(&mut self, handle: u64, id: TunnelId, control: &Control) -> bool {
        match control.capsule_type {
            types::ADDRESS_REQUEST => {
                let Ok(requests) = AddressRequest::decode(&control.value) else {
                    return false;
                };
                let RoleState::Edge(edge) = &mut self.role else {
                    return true;
                };
                let Some(tunnel) = self.tunnels.get_mut(&id) else {
                    return true;
                };
                let (Some(ip), Some(flow)) = (tunnel.ip.as_deref_mut(), tunnel.udp.as_deref_mut())
                else {
                    return true;
                };
                let mut unanswered = Vec::new();
                for wanted in &requests {
                    let v6 = wanted.prefix.addr().is_ipv6();
                    let preferred = Some(wanted.prefix.addr()).filter(|a| !a.is_unspecified());
                    let existing = ip
                        .assigned
                        .iter_mut()
                        .find(|a| a.prefix.addr().is_ipv6() == v6);
                    match existing {
                        Some(entry) => entry.request_id = wanted.request_id,
                        None => match edge.ip_pool.assign(id, v6, preferred) {
                            Some(addr) => {
                                let mut assigned = ip.assigned.clone();
                                assigned.push(AssignedAddress {
                                    request_id: wanted.request_id,
                                    prefix: host_prefix(addr),
                                });
                                ip.assign(assigned);
                            }
                            //# RFC 9484 §4.7.1: "If the IP proxy is not able to assign an
                            //# address [...] it MUST respond with an Assigned Address
                            //# containing [...] an IP Address field of all zeroes"
                            None => unanswered.push(AssignedAddress {
                                request_id: wanted.request_id,
                                prefix: unassigned(v6, wanted.prefix.prefix_len()),
                            }),
                        },
                    }
                }
                ip.routes = routes_for(
                    &ip.scope,
                    &ip.addresses,
                    ip.resolved.as_deref().unwrap_or_default(),
                );
                let mut entries = ip.assigned.clone();
                entries.extend(unanswered);
                append_assign(&entries, &mut flow.capsule_backlog);
                append_routes(&ip.routes, &mut flow.capsule_backlog);
                self.flush_capsule_backlog(handle, id);
                true
            }
            types::ADDRESS_ASSIGN => AddressAssign::decode(&control.value).is_ok(),
            types::ROUTE_ADVERTISEMENT => RouteAdvertisement::decode(&control.value).is_ok(),
            _ => true,
        }
    }

    /// Client: takes the edge's addresses and routes, each capsule replacing the last.
    fn client_control(&mut self, id: TunnelId, control: &Control) -> bool {
        let Some(ip) = self.tunnels.get_mut(&id).and_then(|t| t.ip.as_deref_mut()) else {
            return true;
        };
        match control.capsule_type {
            //# RFC 9484 §4.7.1: "If an ADDRESS_ASSIGN capsule does not contain an address
            //# that was previously transmitted in another ADDRESS_ASSIGN capsule, it
            //# indicates that the address has been removed."
            types::ADDRESS_ASSIGN => {
                let Ok(assign) = AddressAssign::decode(&control.value) else {
                    return false;
                };
                ip.assign(
                    assign
                        .iter()
                        .filter(|a| !a.prefix.addr().is_unspecified())
                        .collect(),
                );
            }
            //# RFC 9484 §4.7.3: "each ROUTE_ADVERTISEMENT contains the full list of
            //# address ranges"
            types::ROUTE_ADVERTISEMENT => {
                let Ok(routes) = RouteAdvertisement::decode(&control.value) else {
                    return false;
                };
                ip.routes = routes.iter().collect();
            }
            types::ADDRESS_REQUEST => {
                // veil's client assigns nothing to its edge.
                return AddressRequest::decode(&control.value).is_ok();
            }
            _ => return true,
        }
        self.events
            .push_back(Event::IpTunnelConfigured { tunnel: id });
        true
    }
}

/// The full-length prefix of one address.
fn host_prefix(addr: IpAddr) -> IpPrefix {
    IpPrefix::host(addr)
}

/// The all-zero prefix of a family of length `len` (clamped): "nothing assigned", or with
/// length 0 every address of the family.
fn unassigned(v6: bool, len: u8) -> IpPrefix {
    let zero = if v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    IpPrefix::new_masked(zero, len.min(if v6 { 128 } else { 32 }))
        .unwrap_or_else(|_| IpPrefix::host(zero))
}

/// What the edge routes for a tunnel: its scope's prefix, or every address, of each family
/// it has an address in, for its scope's protocol (0: all).
//# RFC 9484 §4.7.3: "Upon receiving the ROUTE_ADVERTISEMENT capsule, an endpoint MAY
//# update its local state regarding what its peer is willing to route"
//# RFC 9484 §4.6: "The IP proxy SHOULD send a ROUTE_ADVERTISEMENT capsule that includes
//# routes for all addresses that were resolved for the requested hostname, that are
//# accessible to the IP proxy, and belong to an address family for which the IP proxy
//# also sends an Address Assignment."
fn routes_for(scope: &Scope, addresses: &[IpAddr], resolved: &[IpAddr]) -> Vec<IpAddressRange> {
    let protocol = match scope.ipproto {
        veil_proto::masque::ip::IpProto::Any => 0,
        veil_proto::masque::ip::IpProto::Number(n) => n,
    };
    let mut families: Vec<bool> = addresses.iter().map(IpAddr::is_ipv6).collect();
    families.sort_unstable();
    families.dedup();
    if matches!(scope.target, Target::Name(_)) {
        let mut routes: Vec<IpAddressRange> = resolved
            .iter()
            .filter(|addr| families.contains(&addr.is_ipv6()))
            .map(|&addr| IpAddressRange::from_prefix(host_prefix(addr), protocol))
            .collect();
        // Ascending and without overlap, as §4.7.3 requires of a ROUTE_ADVERTISEMENT
        // (IPv4 addresses order before IPv6 ones).
        routes.sort_by_key(|route| route.start);
        routes.dedup();
        return routes;
    }
    let mut routes: Vec<IpAddressRange> = families
        .into_iter()
        .filter_map(|v6| {
            let prefix = match &scope.target {
                Target::Prefix(prefix) if prefix.addr().is_ipv6() == v6 => *prefix,
                Target::Prefix(_) => return None,
                _ => unassigned(v6, 0),
            };
            Some(IpAddressRange::from_prefix(prefix, protocol))
        })
        .collect();
    routes.sort_by_key(|r| r.start.is_ipv6());
    routes
}

/// Appends an `ADDRESS_ASSIGN` capsule listing `entries` to `out`.
fn append_assign(entries: &[AssignedAddress], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + AddressAssign::encoded_len(entries), 0);
    match AddressAssign::encode(entries, out.get_mut(start..).unwrap_or_default()) {
        Ok(len) => out.truncate(start + len),
        Err(error) => {
            tracing::warn!(?error, "cannot encode ADDRESS_ASSIGN");
            out.truncate(start);
        }
    }
}

/// Appends a `ROUTE_ADVERTISEMENT` capsule listing `routes` to `out`.
fn append_routes(routes: &[IpAddressRange], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + RouteAdvertisement::encoded_len(routes), 0);
    match RouteAdvertisement::encode(routes, out.get_mut(start..).unwrap_or_default()) {
        Ok(len) => out.truncate(start + len),
        Err(error) => {
            tracing::warn!(?error, "cannot encode ROUTE_ADVERTISEMENT");
            out.truncate(start);
        }
    }
}

/// Counts a dropped packet under its cause.
pub(super) fn count_drop(stats: &mut EndpointStats, cause: DropCause) {
    stats.ip_dropped.add(cause.as_str());
}

#[cfg(test)]
mod tests {
    use crate::ip::forward::DropCause;
    use crate::types::IP_DROP_CAUSES;

    #[test]
    fn every_drop_cause_has_its_counter() {
        assert_eq!(DropCause::ALL.map(DropCause::as_str), IP_DROP_CAUSES);
    }
}
