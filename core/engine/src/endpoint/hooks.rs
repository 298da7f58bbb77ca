//! Edge: where the engine consults the [`Policy`](crate::Policy) hooks, and the host's
//! answers to the questions the hooks put to it.
//!
//! A request that passed the engine's own checks goes to the tunnel hook. Its verdict —
//! given at once, or later by the host through [`Endpoint::decide_tunnel`] — is applied
//! here, the same way either way: a refusal is sent, a pass or a redirect becomes an
//! [`Event::TunnelRequest`] for the host to serve. When the host has resolved the target,
//! [`Endpoint::egress_for`] asks the egress hook which address to dial.

use std::net::{IpAddr, SocketAddr};

use super::requests::Question;
use super::{Endpoint, Ingress, RoleState, Tunnel, TunnelState, send_error_response};
use crate::config::Token;
use crate::connect::ErrorResponse;
use crate::error::TunnelError;
use crate::policy::{
    Egress, EgressQuery, EgressVerdict, IngressVerdict, Tags, TunnelQuery, TunnelVerdict,
};
use crate::rules::{self, EdgeAction, Query};
use crate::types::{
    ClientIdentity, ConnectionHandle, Event, Host, Refusal, TunnelId, TunnelKind, TunnelTarget,
};

/// How long a Happy Eyeballs attempt runs alone before the next one starts.
//# RFC 8305 §5: "A simple implementation can have a fixed delay for how long to wait
//# before starting the next connection attempt. [...] The recommended value for a default
//# delay is 250 milliseconds."
pub const CONNECTION_ATTEMPT_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// Where a TCP tunnel dials, in order ([`Endpoint::egress_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// The attempts, first the engine's choice.
    pub attempts: Vec<Egress>,
    /// How long each attempt runs alone before the next one starts.
    pub attempt_delay: std::time::Duration,
}

/// What the edge keeps of a request while its tunnel lives: what the hooks and rules
/// look at after the request head is gone.
#[derive(Debug, Clone)]
pub(super) struct EdgeRequest {
    pub(super) kind: TunnelKind,
    /// CONNECT-IP: the scope the request asked for.
    pub(super) ip_scope: Option<Box<veil_proto::masque::ip::Scope>>,
    /// Where the tunnel goes (after any redirect).
    pub(super) target: TunnelTarget,
    pub(super) client: ClientIdentity,
    pub(super) tags: Tags,
    /// The identity of the client's certificate (mutual TLS), if any.
    pub(super) certificate_identity: Option<Box<str>>,
    /// The server name the tunnel's first bytes asked for (TLS SNI, HTTP/1 Host), once
    /// sniffed (`endpoint::sniffing`).
    pub(super) sni: Option<Box<str>>,
    /// The first bytes have been looked at (whatever they said).
    pub(super) sniffed: bool,
    /// The tunnel hook asked to see its HTTP/1.1 requests (`TunnelVerdict::Inspect`).
    pub(super) inspect: bool,
}

/// What the rules make of a request as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Screening {
    /// On to the tunnel hook.
    Pass,
    /// A rule on the server name comes first: read the tunnel's first bytes.
    Sniff,
}

impl Endpoint {
    /// Edge: answers an [`Event::TunnelDecision`] with the verdict the tunnel hook deferred
    /// (`Pass`, `Refuse` or `Redirect`; `Ask` again is `InvalidState`), and labels the
    /// tunnel with `tags`. A pass or redirect then becomes an [`Event::TunnelRequest`].
    pub fn decide_tunnel(
        &mut self,
        tunnel: TunnelId,
        verdict: TunnelVerdict,
        tags: Tags,
    ) -> Result<(), TunnelError> {
        let entry = self
            .tunnels
            .get_mut(&tunnel)
            .ok_or(TunnelError::UnknownTunnel)?;
        let TunnelState::Deciding { deadline } = entry.state else {
            return Err(TunnelError::InvalidState);
        };
        if matches!(verdict, TunnelVerdict::Ask) {
            return Err(TunnelError::InvalidState);
        }
        self.unanswered.remove(deadline, Question::Tunnel(tunnel));
        let Some(request) = entry.request.as_mut() else {
            return Err(TunnelError::InvalidState);
        };
        request.tags.merge(tags);
        self.settle_tunnel(tunnel, verdict);
        Ok(())
    }

    /// Edge: answers an [`Event::IngressDecision`]: `Accept` serves the connection (its
    /// requests are read from now on), `Close` closes it (`Ask` again is
    /// `InvalidState`). `UnknownTunnel` names a connection that is gone.
    pub fn decide_ingress(
        &mut self,
        connection: ConnectionHandle,
        verdict: IngressVerdict,
    ) -> Result<(), TunnelError> {
        let handle = connection.0;
        let conn = self
            .conns
            .get_mut(handle)
            .ok_or(TunnelError::UnknownTunnel)?;
        let Ingress::Asked { deadline } = conn.ingress else {
            return Err(TunnelError::InvalidState);
        };
        match verdict {
            IngressVerdict::Ask => return Err(TunnelError::InvalidState),
            IngressVerdict::Accept => conn.ingress = Ingress::Accepted,
            IngressVerdict::Close { error_code } => {
                conn.ingress = Ingress::Decided;
                tracing::debug!(connection = handle, "ingress decision: closed");
                let _ = conn.wire.close(true, error_code, b"");
            }
        }
        self.unanswered.remove(deadline, Question::Ingress(handle));
        let now = self.clock;
        self.process(now, handle);
        Ok(())
    }

    /// Edge: which of a tunnel's resolved addresses to dial, and from where: the egress
    /// hook's verdict (by default the first address the edge's egress policy permits, in
    /// the resolver's order). The host dials exactly this address, so that no second
    /// lookup can swap in one that was not checked. `DnsError` when `candidates` is empty;
    /// `Internal` for a tunnel that is not waiting for its egress. A client dials the first
    /// candidate.
    pub fn egress_for(
        &mut self,
        tunnel: TunnelId,
        candidates: &[SocketAddr],
    ) -> Result<Egress, Refusal> {
        // The cache keeps the whole answer; policy and rules judge it below, every time.
        self.remember_resolved(tunnel, candidates);
        let RoleState::Edge(edge) = &self.role else {
            return candidates
                .first()
                .map(|&to| Egress { to, from: None })
                .ok_or(Refusal::DnsError);
        };
        let Some(request) = self
            .tunnels
            .get(&tunnel)
            .and_then(|entry| entry.request.as_deref())
        else {
            return Err(Refusal::Internal);
        };
        // Nothing resolved is a fact, not a choice: no hook is asked.
        if candidates.is_empty() {
            return Err(Refusal::DnsError);
        }
        let permitted: Vec<SocketAddr> = candidates
            .iter()
            .copied()
            .filter(|addr| edge.permits(request, addr.ip()))
            .collect();
        let query = EgressQuery {
            tunnel,
            kind: request.kind,
            target: &request.target,
            client: request.client,
            token_name: edge.token_name(request.client.token_index),
            certificate_identity: request.certificate_identity.as_deref(),
            candidates,
            permitted: &permitted,
            tags: &request.tags,
        };
        match self.policy.egress(&query) {
            EgressVerdict::Dial(egress) if candidates.contains(&egress.to) => {
                if let Some(trail) = self.tunnels.get_mut(&tunnel).and_then(|t| t.trail.as_mut()) {
                    trail.dialed = Some(egress.to);
                }
                Ok(egress)
            }
            EgressVerdict::Dial(egress) => {
                tracing::warn!(
                    tunnel = ?tunnel,
                    to = %egress.to,
                    "the egress hook chose an address the host did not resolve; refused"
                );
                Err(Refusal::Internal)
            }
            EgressVerdict::Refuse(refusal) => Err(refusal),
        }
    }

    /// Edge: what the cache of resolved names (`EdgeConfig::dns_cache`) knows of the name
    /// a tunnel asks for, as addresses with its port: `Some` to hand to
    /// [`egress_plan`](Self::egress_plan) instead of a lookup (empty when the name did not
    /// resolve a moment ago: the engine refuses it as a DNS error), `None` to look the
    /// name up (not cached, not a name, not a tunnel waiting for its egress, a client).
    pub fn cached_addresses(&mut self, tunnel: TunnelId) -> Option<Vec<SocketAddr>> {
        let (name, port) = self.requested_name(tunnel)?;
        let RoleState::Edge(edge) = &mut self.role else {
            return None;
        };
        match edge.dns.get(&name, self.clock) {
            crate::dns::Cached::Unknown => {
                self.stats.dns_cache_misses += 1;
                None
            }
            crate::dns::Cached::Unresolved => {
                self.stats.dns_cache_hits += 1;
                Some(Vec::new())
            }
            crate::dns::Cached::Addresses(addrs) => {
                self.stats.dns_cache_hits += 1;
                Some(
                    addrs
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect(),
                )
            }
        }
    }

    /// The name (and port) a tunnel's request targets, if it names one.
    fn requested_name(&self, tunnel: TunnelId) -> Option<(String, u16)> {
        let request = self.tunnels.get(&tunnel)?.request.as_deref()?;
        match &request.target.host {
            crate::types::Host::Name(name) => Some((name.as_str().to_owned(), request.target.port)),
            crate::types::Host::Ip(_) => None,
        }
    }

    /// Keeps what a tunnel's name resolved to, unless the cache has a fresh answer (the
    /// host may have taken it from there: its time must not start again).
    fn remember_resolved(&mut self, tunnel: TunnelId, candidates: &[SocketAddr]) {
        if candidates.is_empty() {
            return;
        }
        let Some((name, _)) = self.requested_name(tunnel) else {
            return;
        };
        let RoleState::Edge(edge) = &mut self.role else {
            return;
        };
        if edge.dns.get(&name, self.clock) == crate::dns::Cached::Unknown {
            let ips: Vec<std::net::IpAddr> = candidates.iter().map(SocketAddr::ip).collect();
            edge.dns.resolved(&name, &ips, self.clock);
        }
    }

    /// Keeps that a tunnel's name did not resolve, unless the cache knows it already.
    pub(super) fn remember_unresolved(&mut self, tunnel: TunnelId) {
        let Some((name, _)) = self.requested_name(tunnel) else {
            return;
        };
        let RoleState::Edge(edge) = &mut self.role else {
            return;
        };
        if edge.dns.get(&name, self.clock) == crate::dns::Cached::Unknown {
            edge.dns.unresolved(&name, self.clock);
        }
    }

    /// Edge: the identity of a connection's client certificate (mutual TLS,
    /// `EdgeConfig::client_ca`): its first URI or DNS name, else its common name.
    pub fn certificate_identity(&self, connection: ConnectionHandle) -> Option<&str> {
        self.conns
            .get(connection.0)
            .and_then(|conn| conn.certificate_identity.as_deref())
    }

    /// Edge: [`egress_for`](Self::egress_for) as a Happy Eyeballs plan (RFC 8305): the
    /// chosen address first, then the other addresses the edge permits, families
    /// interleaved, each attempt started [`CONNECTION_ATTEMPT_DELAY`] after the one before
    /// (or at once when it fails); the first connection that succeeds wins. A chosen
    /// source address (the egress hook's) keeps the plan to its one address.
    pub fn egress_plan(
        &mut self,
        tunnel: TunnelId,
        candidates: &[SocketAddr],
    ) -> Result<EgressPlan, Refusal> {
        let first = self.egress_for(tunnel, candidates)?;
        let mut attempts = vec![first];
        if first.from.is_none() {
            if let (RoleState::Edge(edge), Some(request)) = (
                &self.role,
                self.tunnels
                    .get(&tunnel)
                    .and_then(|entry| entry.request.as_deref()),
            ) {
                let others = candidates
                    .iter()
                    .copied()
                    .filter(|addr| *addr != first.to && edge.permits(request, addr.ip()));
                attempts.extend(
                    interleave_families(first.to, others)
                        .into_iter()
                        .map(|to| Egress { to, from: None }),
                );
            }
        }
        Ok(EgressPlan {
            attempts,
            attempt_delay: CONNECTION_ATTEMPT_DELAY,
        })
    }

    /// Edge: the host connected `tunnel` to `to` (the attempt of its plan that won), for
    /// the audit record's `dialed`.
    pub fn egress_connected(&mut self, tunnel: TunnelId, to: SocketAddr) {
        if let Some(trail) = self.tunnels.get_mut(&tunnel).and_then(|t| t.trail.as_mut()) {
            trail.dialed = Some(to);
        }
    }

    /// Edge: the labels the tunnel hook put on a tunnel (empty for none, and on a client).
    pub fn tunnel_tags(&self, tunnel: TunnelId) -> Option<&Tags> {
        self.tunnels
            .get(&tunnel)
            .and_then(|entry| entry.request.as_deref())
            .map(|request| &request.tags)
    }

    /// A request that passed the engine's checks, on `stream` of `handle`: the tunnel
    /// hook's verdict, applied at once or asked of the host. A request refused at once
    /// never becomes a tunnel.
    pub(super) fn consult_tunnel_hook(&mut self, handle: u64, stream: u64, request: EdgeRequest) {
        let mut request = request;
        let verdict = self.ask_tunnel_hook(&mut request);
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        let asked = matches!(verdict, TunnelVerdict::Ask);
        if !asked {
            if let Err(refusal) = edge.apply(&mut request, verdict) {
                self.stats.refused(Some(refusal.proxy_error()));
                if let Some(conn) = self.conns.get_mut(handle) {
                    send_error_response(conn, stream, ErrorResponse::from_refusal(refusal));
                }
                return;
            }
        }
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let id = TunnelId(self.next_tunnel);
        self.next_tunnel += 1;
        conn.streams.insert(stream, id);
        let deadline = self.clock + edge.request_timeout;
        let event = if asked {
            Event::TunnelDecision {
                tunnel: id,
                kind: request.kind,
                target: request.target.clone(),
                client: request.client,
            }
        } else {
            Event::TunnelRequest {
                tunnel: id,
                kind: request.kind,
                target: request.target.clone(),
                client: request.client,
            }
        };
        let state = if asked {
            TunnelState::Deciding { deadline }
        } else {
            TunnelState::Requested { deadline }
        };
        let trail = self.new_trail();
        let mut tunnel = Tunnel::new(Some(handle), state);
        tunnel.stream = stream;
        tunnel.trail = trail;
        tunnel.created = Some(self.clock);
        tunnel.udp = match request.kind {
            TunnelKind::Udp => Some(self.udp.new_flow(String::new(), self.clock)),
            TunnelKind::Ip => Some(self.udp.new_flow_carrying(
                String::new(),
                self.clock,
                crate::udp::flow::Carries::Ip,
            )),
            _ => None,
        };
        let flows =
            crate::ip::flows::FlowTable::new(edge.ip_flows_per_tunnel, self.udp.idle_timeout());
        let decap = edge.ip_decap;
        tunnel.ip = request.ip_scope.as_deref().map(|scope| {
            let mut ip = super::ip::IpTunnel::new(scope.clone(), flows);
            if decap {
                ip.decap = Some(crate::map::HashMap::default());
            }
            Box::new(ip)
        });
        tunnel.request = Some(Box::new(request));
        self.tunnels.insert(id, tunnel);
        self.stats.tunnels_total += 1;
        // An IP tunnel's addresses are held from the start: a full pool is a refusal the
        // host never has to see.
        if let Err(refusal) = self.assign_ip_addresses(id) {
            self.reject_deciding(id, refusal);
            return;
        }
        self.unanswered.insert(deadline, Question::Tunnel(id));
        self.events.push_back(event);
    }

    /// The tunnel hook's verdict on `request` (which it may tag).
    pub(super) fn ask_tunnel_hook(&mut self, request: &mut EdgeRequest) -> TunnelVerdict {
        let RoleState::Edge(edge) = &self.role else {
            return TunnelVerdict::Pass;
        };
        let query = TunnelQuery {
            kind: request.kind,
            target: &request.target,
            client: request.client,
            token_name: edge.token_name(request.client.token_index),
            certificate_identity: request.certificate_identity.as_deref(),
            sni: request.sni.as_deref(),
        };
        self.policy.tunnel(&query, &mut request.tags)
    }

    /// The tunnel hook's verdict on a tunnel that exists already (its first bytes were
    /// sniffed): applied at once, or asked of the host.
    pub(super) fn consult_tunnel_hook_again(&mut self, id: TunnelId) {
        let Some(mut request) = self.tunnels.get_mut(&id).and_then(|t| t.request.take()) else {
            return;
        };
        let verdict = self.ask_tunnel_hook(&mut request);
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        let deadline = self.clock + edge.request_timeout;
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        if matches!(verdict, TunnelVerdict::Ask) {
            tunnel.state = TunnelState::Deciding { deadline };
            self.unanswered.insert(deadline, Question::Tunnel(id));
            self.events.push_back(Event::TunnelDecision {
                tunnel: id,
                kind: request.kind,
                target: request.target.clone(),
                client: request.client,
            });
            tunnel.request = Some(request);
            return;
        }
        tunnel.request = Some(request);
        self.settle_tunnel(id, verdict);
    }

    /// Applies the host's verdict to a tunnel the hook asked about: refuse, or report it to
    /// the host as a request (with the redirect's target, if it passes egress policy).
    fn settle_tunnel(&mut self, id: TunnelId, verdict: TunnelVerdict) {
        let RoleState::Edge(edge) = &self.role else {
            return;
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return;
        };
        let Some(request) = tunnel.request.as_deref_mut() else {
            return;
        };
        if let Err(refusal) = edge.apply(request, verdict) {
            self.reject_deciding(id, refusal);
            return;
        }
        let event = Event::TunnelRequest {
            tunnel: id,
            kind: request.kind,
            target: request.target.clone(),
            client: request.client,
        };
        let deadline = self.clock + edge.request_timeout;
        tunnel.state = TunnelState::Requested { deadline };
        self.unanswered.insert(deadline, Question::Tunnel(id));
        self.events.push_back(event);
    }

    /// Removes a tunnel the host has not been asked to serve and sends its refusal.
    pub(super) fn reject_deciding(&mut self, id: TunnelId, refusal: Refusal) {
        self.note_end(id, crate::audit::Ending::Refused(refusal));
        if self.tunnels.get(&id).is_some_and(|t| t.sniffed.is_some()) {
            // Its 200 went out before the first bytes were read: it can only be reset.
            self.stats.refused(Some(refusal.proxy_error()));
            self.reset_answered(id);
            return;
        }
        let Some((handle, stream)) = self.remove_tunnel(id) else {
            return;
        };
        self.stats.refused(Some(refusal.proxy_error()));
        if let Some(conn) = self.conns.get_mut(handle) {
            send_error_response(conn, stream, ErrorResponse::from_refusal(refusal));
        }
        self.queue_send(handle);
    }
}

impl super::Edge {
    /// A final tunnel verdict applied to `request`: its new target for a redirect (which
    /// egress policy checks again: a hook cannot open what the edge forbids), or the
    /// refusal to send.
    fn apply(&self, request: &mut EdgeRequest, verdict: TunnelVerdict) -> Result<(), Refusal> {
        match verdict {
            TunnelVerdict::Pass => Ok(()),
            // Only a TCP tunnel carries HTTP/1.1; a UDP one is passed as it is.
            TunnelVerdict::Inspect => {
                request.inspect = request.kind == TunnelKind::Stream;
                Ok(())
            }
            TunnelVerdict::Refuse(refusal) => Err(refusal),
            TunnelVerdict::Redirect(target) => {
                request.target = target;
                match request.target.host {
                    Host::Ip(ip) if !self.permits(request, ip) => Err(Refusal::Prohibited),
                    _ => Ok(()),
                }
            }
            // Asking is not a final verdict: `decide_tunnel` refuses it before this.
            TunnelVerdict::Ask => Err(Refusal::Internal),
        }
    }

    /// The name of the token at `index`, if any.
    pub(super) fn token_name(&self, index: Option<usize>) -> Option<&str> {
        index
            .and_then(|index| self.tokens.get(index))
            .map(Token::name)
    }

    /// The rules' and egress policy's verdict on a request as it arrives (and again once
    /// its first bytes are sniffed), before any hook: a target address (or a name, when a
    /// rule decides on the name alone) that a rule denies is `Denied`; an address no rule
    /// allows and egress policy forbids is `Prohibited`; a TCP request that a rule on the
    /// server name could decide is sniffed first.
    pub(super) fn screen(&self, request: &EdgeRequest) -> Result<Screening, Refusal> {
        let query = self.rule_query(request);
        let ruling = self.rules.on_request(&query);
        if request.kind == TunnelKind::Ip {
            // A scope is not a destination: egress policy and address rules judge each
            // packet (`endpoint::ip`); a rule that denies the request itself still holds.
            return match ruling.action {
                Some(EdgeAction::Deny) if !ruling.needs_address => Err(Refusal::Denied),
                _ => Ok(Screening::Pass),
            };
        }
        if ruling.needs_sni && request.kind == TunnelKind::Stream && !request.sniffed {
            return Ok(Screening::Sniff);
        }
        if ruling.needs_address {
            // Judged again, address by address, when the host resolved the name.
            return Ok(Screening::Pass);
        }
        match ruling.action {
            Some(EdgeAction::Deny) => Err(Refusal::Denied),
            Some(EdgeAction::Allow) => Ok(Screening::Pass),
            None => match request.target.host {
                Host::Ip(ip) if self.egress.check(ip).is_err() => Err(Refusal::Prohibited),
                _ => Ok(Screening::Pass),
            },
        }
    }

    /// Whether this edge lets `request` go to `ip`: the first rule that matches the
    /// request at that address, or else the egress policy (loopback, private, link-local
    /// and metadata addresses refused unless configured).
    pub(super) fn permits(&self, request: &EdgeRequest, ip: IpAddr) -> bool {
        self.permits_named(request, ip, None)
    }

    /// [`permits`](Self::permits) with the server name a flow inside the tunnel asked for
    /// (a QUIC `ClientHello`'s SNI inside a CONNECT-IP tunnel), when one was read.
    pub(super) fn permits_named(
        &self,
        request: &EdgeRequest,
        ip: IpAddr,
        sni: Option<&str>,
    ) -> bool {
        let query = Query {
            sni: sni.or(request.sni.as_deref()),
            ..self.rule_query(request)
        };
        match self.rules.on_address(&query, ip) {
            Some(EdgeAction::Allow) => true,
            Some(EdgeAction::Deny) => false,
            None => self.egress.check(ip).is_ok(),
        }
    }

    /// Whether a rule on the server name comes before the first rule that matches
    /// `request` at `ip` without one: only the name can decide a packet to `ip` then. Such
    /// packets pass the per-packet checks and are judged per flow, with the name their flow
    /// asks for if it is QUIC (`endpoint::ip_sniff`).
    pub(super) fn needs_sni(&self, request: &EdgeRequest, ip: IpAddr) -> bool {
        let query = Query {
            addr: Some(ip),
            ..self.rule_query(request)
        };
        self.rules.on_request(&query).needs_sni
    }

    /// What the rules see of a request. Its identity is the client certificate's when
    /// the client presented one (mutual TLS), else the name of its token.
    pub(super) fn rule_query<'a>(&'a self, request: &'a EdgeRequest) -> Query<'a> {
        let identity = request
            .certificate_identity
            .as_deref()
            .or_else(|| self.token_name(request.client.token_index));
        rules::query_for(
            &request.target,
            rules::protocol_of(request.kind),
            identity,
            request.sni.as_deref(),
        )
    }
}

/// The addresses after `first`, in their order within each family, families alternating
/// and starting with the family `first` is not of.
//# RFC 8305 §4: "the client SHOULD modify the ordered list to interleave address
//# families. Whichever address family is first in the list should be followed by an
//# address of the other address family"
fn interleave_families(
    first: SocketAddr,
    others: impl Iterator<Item = SocketAddr>,
) -> Vec<SocketAddr> {
    let (same, other): (Vec<_>, Vec<_>) =
        others.partition(|addr| addr.is_ipv6() == first.is_ipv6());
    let (mut same, mut other) = (same.into_iter(), other.into_iter());
    let mut out = Vec::with_capacity(same.len() + other.len());
    loop {
        match (other.next(), same.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::interleave_families;
    use std::net::SocketAddr;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_after_the_first_choice() {
        let first: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let others = addrs(&[
            "[2001:db8::2]:443",
            "[2001:db8::3]:443",
            "192.0.2.1:443",
            "192.0.2.2:443",
            "192.0.2.3:443",
        ]);
        assert_eq!(
            interleave_families(first, others.into_iter()),
            addrs(&[
                "192.0.2.1:443",
                "[2001:db8::2]:443",
                "192.0.2.2:443",
                "[2001:db8::3]:443",
                "192.0.2.3:443",
            ])
        );
    }

    #[test]
    fn one_family_keeps_its_order() {
        let first: SocketAddr = "192.0.2.9:80".parse().unwrap();
        let others = addrs(&["192.0.2.1:80", "192.0.2.2:80"]);
        assert_eq!(
            interleave_families(first, others.clone().into_iter()),
            others
        );
    }
}
