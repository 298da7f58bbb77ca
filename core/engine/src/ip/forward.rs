//! What happens to each CONNECT-IP packet, on the edge and on the client.
//!
//! The edge is a router between the tunnel (a link to the client) and its egress (a TUN
//! device, say). [`edge_from_client`] judges a packet the client sent into the tunnel,
//! [`edge_to_client`] one the egress delivered for the tunnel; each says [`Outcome::Forward`],
//! [`Outcome::Answer`] (an ICMP error about the packet, written into the caller's buffer,
//! to send back where the packet came from) or [`Outcome::Drop`] with a [`DropCause`] for
//! the counters. [`client_to_edge`] and [`client_from_edge`] are the client's checks
//! against what the edge assigned and advertised. All are pure: the caller passes the
//! tunnel's state, the egress policy and the clock, and nothing allocates.
//!
//! # Decisions
//!
//! - **One datagram, one packet.** Bytes after the length the IP header announces make the
//!   packet [`DropCause::Malformed`]: the datagram carries "a full IP packet" and nothing
//!   else (RFC 9484 §6), and forwarding the buffer as it is would send the padding on.
//! - **Source validation** (BCP 38, which RFC 9484 §11 makes a MUST): a client packet from
//!   an address that is not one of the tunnel's is dropped ([`DropCause::SpoofedSource`]),
//!   silently: an ICMP error would go to the forged address.
//! - **Scope** (§4.6): the destination must be in a `target` prefix and the upper-layer
//!   protocol, found after the IPv6 extension headers (§4.8), must be the `ipproto` one or
//!   ICMP. A packet outside it is dropped ([`DropCause::OutOfScope`]), not answered: the
//!   client was told its routes, so such a packet is its own error, not a network
//!   condition worth an ICMP error. A target named by DNS is in scope as the addresses
//!   the edge resolved for it ([`Reach`]).
//! - **Policy** (the edge's egress policy, `permits`): a refused destination is answered
//!   with Destination Unreachable, "communication administratively prohibited" (ICMPv4
//!   type 3 code 13, ICMPv6 type 1 code 1), as §7.2.1 suggests.
//! - **Link-local traffic** (source or destination) never crosses the edge
//!   ([`DropCause::LinkLocal`], §7.2). The edge does not answer packets to link-local
//!   multicast itself (such as the ICMPv6 echo to `ff02::1` that §7.2 suggests for probing
//!   the tunnel MTU); that is left to the caller.
//! - **Hop limit** (§7.2): decremented "upon encapsulation but not upon decapsulation",
//!   so [`edge_to_client`] decrements (answering Time Exceeded toward the egress for a
//!   packet that would leave with 0) and [`edge_from_client`] does not; it only refuses a
//!   packet that arrives with 0 (RFC 4443 §3.3), answering Time Exceeded to the client.
//! - **Packets too big for the tunnel** (§10.1): answered with ICMPv4 Fragmentation Needed
//!   or ICMPv6 Packet Too Big carrying the tunnel's real limit. veil never fragments: an
//!   IPv4 packet without Don't Fragment that does not fit is dropped
//!   ([`DropCause::TooBig`]), as it would be if fragmentation failed.
//! - **ICMP errors** come from the gateway address of the packet's family (the pool's
//!   [`gateway`](super::AddressPool::gateway)), follow veil-proto's rules on when they may
//!   be sent (never about an ICMP error, a multicast packet, ...) and are rate limited by
//!   an [`IcmpLimiter`]. When one may not be sent the packet is dropped under the cause
//!   that would have drawn it; when the limiter refuses, under [`DropCause::RateLimited`].
//!   An ICMP error is at most 576 (IPv4) or 1280 (IPv6) bytes: `answer` should hold
//!   [`ICMPV6_ERROR_MAX_LEN`](veil_proto::ip::ICMPV6_ERROR_MAX_LEN) bytes; a shorter buffer
//!   turns answers it cannot hold into drops.

// "ICMPv4" and "ICMPv6" are protocol names in prose, not code to put in backticks.
#![allow(clippy::doc_markdown)]

use std::net::IpAddr;
use std::time::Instant;

use veil_proto::ip::{
    EncodeIcmpError, HopLimitError, Icmpv4Error, Icmpv4Unreachable, Icmpv6Error, Icmpv6Unreachable,
    IpPacket, IpVersion, Transport, decrement_hop_limit, encode_icmpv4_error, encode_icmpv6_error,
    protocol,
};
use veil_proto::masque::ip::{IpAddressRange, IpProto, Scope, Target};

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Pass the packet on. [`edge_to_client`] changed it in place (hop limit decremented,
    /// IPv4 checksum updated); [`edge_from_client`] left it as it was.
    Forward,
    /// Do not pass it on; `answer[..len]` is an ICMP error to send back where the packet
    /// came from.
    Answer {
        /// Length of the ICMP error packet at the start of `answer`.
        len: usize,
    },
    /// Drop it, counted under this cause.
    Drop(DropCause),
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropCause {
    /// Not one whole, valid IPv4 or IPv6 packet.
    Malformed,
    /// From the client, with a source address the tunnel was not assigned.
    SpoofedSource,
    /// Outside the request's scope (target prefix or IP protocol).
    OutOfScope,
    /// Refused by the egress policy, and no ICMP error could be sent.
    Forbidden,
    /// To an address the tunnel was not assigned.
    NotAssigned,
    /// Client: outside every route the edge advertised.
    NotRouted,
    /// From or to a link-local address, which no router forwards.
    LinkLocal,
    /// The hop limit ran out, and no ICMP error could be sent.
    HopLimitExpired,
    /// Longer than the tunnel carries, and no ICMP error could be sent (or an IPv4 packet
    /// that may be fragmented: veil does not fragment).
    TooBig,
    /// An ICMP error was due, but the rate limit refused it.
    RateLimited,
    /// Of a flow the `ip_flow` hook or a rule on `sni` refused (inside CONNECT-IP: the
    /// SNI of its QUIC Initial packets, `endpoint::ip_sniff`).
    FlowRefused,
    /// Decapsulating edge: a fragment, which it never reassembles.
    Fragment,
    /// Decapsulating edge: of no flow it takes apart (an ICMP message other than an echo
    /// request; TCP or another protocol when no ICMP error could say so).
    NotDecapsulated,
    /// Decapsulating edge: the flow's queue for the host was full.
    QueueFull,
    /// Decapsulating edge: a new flow in a tunnel with as many flows open as it may have.
    FlowLimit,
}

impl DropCause {
    /// Every cause, for metrics that list them all.
    #[cfg(test)]
    pub(crate) const ALL: [Self; 15] = [
        Self::Malformed,
        Self::SpoofedSource,
        Self::OutOfScope,
        Self::Forbidden,
        Self::NotAssigned,
        Self::NotRouted,
        Self::LinkLocal,
        Self::HopLimitExpired,
        Self::TooBig,
        Self::RateLimited,
        Self::FlowRefused,
        Self::Fragment,
        Self::NotDecapsulated,
        Self::QueueFull,
        Self::FlowLimit,
    ];

    /// A stable `snake_case` name, for metric labels and logs.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::SpoofedSource => "spoofed_source",
            Self::OutOfScope => "out_of_scope",
            Self::Forbidden => "forbidden",
            Self::NotAssigned => "not_assigned",
            Self::NotRouted => "not_routed",
            Self::LinkLocal => "link_local",
            Self::HopLimitExpired => "hop_limit_expired",
            Self::TooBig => "too_big",
            Self::RateLimited => "rate_limited",
            Self::FlowRefused => "flow_refused",
            Self::Fragment => "fragment",
            Self::NotDecapsulated => "not_decapsulated",
            Self::QueueFull => "queue_full",
            Self::FlowLimit => "flow_limit",
        }
    }
}

/// A token bucket for the ICMP errors the edge generates: `per_second` on average, up to
/// `burst` at once. Starts full.
//# RFC 4443 §2.4: "(f) Finally, in order to limit the bandwidth and forwarding costs
//# incurred by originating ICMPv6 error messages, an IPv6 node MUST limit the rate of
//# ICMPv6 error messages it originates."
//# RFC 4443 §2.4: "A recommended method for implementing the rate-limiting function is a
//# token bucket, limiting the average rate of transmission to N, where N can be either
//# packets/second or a fraction of the attached link's bandwidth, but allowing up to B
//# error messages to be transmitted in a burst, as long as the long-term average is not
//# exceeded."
#[derive(Debug, Clone)]
pub(crate) struct IcmpLimiter {
    /// Tokens, in units of 1/10^9 token, so that refilling needs no division.
    tokens: u128,
    capacity: u128,
    per_second: u128,
    last: Option<Instant>,
}

/// Units of one token.
const TOKEN: u128 = 1_000_000_000;

impl IcmpLimiter {
    /// A bucket of `burst` tokens refilled at `per_second`. A `burst` of 0 allows nothing.
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let capacity = u128::from(burst) * TOKEN;
        Self {
            tokens: capacity,
            capacity,
            per_second: u128::from(per_second),
            last: None,
        }
    }

    /// Whether one more ICMP error may be sent at `now`; if so, it is counted. A `now`
    /// earlier than a previous one refills nothing.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_nanos();
            // One token per 10^9 / per_second nanoseconds.
            let refill = elapsed.saturating_mul(self.per_second);
            self.tokens = self.tokens.saturating_add(refill).min(self.capacity);
        }
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        if self.tokens >= TOKEN {
            self.tokens -= TOKEN;
            true
        } else {
            false
        }
    }
}

/// Whether a tunnel whose largest datagram payload is `max_len` bytes may carry IPv6: the
/// caller aborts an IPv6 tunnel for which it is false.
//# RFC 9484 §7.2: "IP proxying endpoints that operate as routers and support IPv6 MUST
//# ensure that the IP tunnel link MTU is at least 1280 bytes (i.e., that they can send
//# HTTP Datagrams with payloads of at least 1280 bytes)."
//# RFC 9484 §7.2: "If an endpoint is using QUIC DATAGRAM frames to convey IPv6 packets and
//# it detects that the QUIC MTU is too low to allow sending 1280 bytes, it MUST abort the IP
//# proxying request stream."
pub(crate) const fn ipv6_mtu_ok(max_len: usize) -> bool {
    max_len >= IPV6_MIN_MTU
}

/// Where the checks write an ICMP error they decide to send, and whether they may: the
/// caller's buffer (an [`Outcome::Answer`]'s first bytes), the rate limiter of ICMP errors
/// and the clock it runs on.
pub(crate) struct IcmpOut<'a> {
    pub(crate) answer: &'a mut [u8],
    pub(crate) limiter: &'a mut IcmpLimiter,
    pub(crate) now: Instant,
}

/// The IPv6 minimum link MTU (RFC 8200 §5).
const IPV6_MIN_MTU: usize = 1280;

/// The edge's verdict on a packet the client sent into the tunnel, about to leave the edge
/// toward the egress. `assigned` are the tunnel's addresses, `scope` its request's,
/// `permits` the egress policy, `gateway` the edge's own address per family (IPv6 if
/// `true`). Never changes `packet` (the hop limit is the client's to decrement, §7.2); it
/// takes `&mut` like [`edge_to_client`] so that the caller handles both directions alike.
pub(crate) fn edge_from_client(
    packet: &mut [u8],
    assigned: &[IpAddr],
    scope: Reach<'_>,
    permits: impl Fn(IpAddr) -> bool,
    gateway: impl Fn(bool) -> Option<IpAddr>,
    out: IcmpOut<'_>,
) -> Outcome {
    let Some(parsed) = parse_whole(packet) else {
        return Outcome::Drop(DropCause::Malformed);
    };
    //# RFC 9484 §11: "In particular, there are scenarios where an endpoint knows that its
    //# peer is only allowed to send IP packets from a given prefix. For example, that can
    //# happen through out-of-band configuration information or when allowed prefixes are
    //# shared via ADDRESS_ASSIGN capsules. In such scenarios, endpoints MUST follow the
    //# recommendations from [BCP38] to prevent source address spoofing."
    if !assigned.contains(&parsed.source()) {
        return Outcome::Drop(DropCause::SpoofedSource);
    }
    //# RFC 9484 §7.2: "Implementers need to ensure that they do not forward any link-local
    //# traffic beyond the IP proxying interface that it was received on."
    if is_link_local(parsed.destination()) {
        return Outcome::Drop(DropCause::LinkLocal);
    }
    //# RFC 9484 §7.2: "The endpoint can also choose to drop any received packets instead
    //# of forwarding them."
    if !in_scope(scope, parsed.destination(), &parsed) {
        return Outcome::Drop(DropCause::OutOfScope);
    }
    //# RFC 9484 §7.2.1: "For unroutable destination addresses, send Destination Unreachable
    //# (Section 3.1 of [ICMPv6]) with code 0, "No route to destination", or code 1,
    //# "Communication with destination administratively prohibited"."
    if !permits(parsed.destination()) {
        return icmp_answer(
            &parsed,
            Icmp::Prohibited,
            DropCause::Forbidden,
            &gateway,
            out,
        );
    }
    // The client decremented the hop limit when it put the packet in the tunnel (§7.2), so
    // only a packet that arrives with none left is refused.
    //# RFC 4443 §3.3: "If a router receives a packet with a Hop Limit of zero, or if a
    //# router decrements a packet's Hop Limit to zero, it MUST discard the packet and
    //# originate an ICMPv6 Time Exceeded message with Code 0 to the source of the packet."
    if parsed.hop_limit() == 0 {
        return icmp_answer(
            &parsed,
            Icmp::TimeExceeded,
            DropCause::HopLimitExpired,
            &gateway,
            out,
        );
    }
    Outcome::Forward
}

/// A decapsulating edge's answer to a packet the client sent that passed the checks but
/// that it does not take apart into a flow (TCP, protocols other than UDP and ICMP): an
/// ICMP Destination Unreachable, "communication administratively prohibited", from the
/// gateway of its family, rate limited like every ICMP error; or a drop under
/// [`DropCause::NotDecapsulated`] when none may be sent.
//# RFC 9484 §7.2.1: "For unroutable destination addresses, send Destination Unreachable
//# (Section 3.1 of [ICMPv6]) with code 0, "No route to destination", or code 1,
//# "Communication with destination administratively prohibited"."
pub(crate) fn refuse_undecapsulated(
    packet: &[u8],
    gateway: impl Fn(bool) -> Option<IpAddr>,
    out: IcmpOut<'_>,
) -> Outcome {
    let Some(parsed) = parse_whole(packet) else {
        return Outcome::Drop(DropCause::Malformed);
    };
    icmp_answer(
        &parsed,
        Icmp::Prohibited,
        DropCause::NotDecapsulated,
        &gateway,
        out,
    )
}

/// The edge's verdict on a packet the egress delivered for this tunnel, about to go to the
/// client in an HTTP Datagram. `max_len` is the largest datagram payload the tunnel carries
/// now. On [`Outcome::Forward`] the hop limit has been decremented in place; ICMP errors
/// are addressed to the packet's source, back toward the egress.
pub(crate) fn edge_to_client(
    packet: &mut [u8],
    assigned: &[IpAddr],
    scope: Reach<'_>,
    max_len: usize,
    gateway: impl Fn(bool) -> Option<IpAddr>,
    out: IcmpOut<'_>,
) -> Outcome {
    let Some(parsed) = parse_whole(packet) else {
        return Outcome::Drop(DropCause::Malformed);
    };
    //# RFC 9484 §7.2: "In the other direction, when an endpoint receives an IP packet, it
    //# checks to see if the packet matches the routes mapped for an IP tunnel and performs
    //# the same forwarding checks as above before transmitting the packet over HTTP
    //# Datagrams."
    if !assigned.contains(&parsed.destination()) {
        return Outcome::Drop(DropCause::NotAssigned);
    }
    if is_link_local(parsed.source()) {
        return Outcome::Drop(DropCause::LinkLocal);
    }
    if !source_in_scope(scope, &parsed) {
        return Outcome::Drop(DropCause::OutOfScope);
    }
    // Checked before anything changes, so that an ICMP error quotes the packet as received.
    if parsed.hop_limit() <= 1 {
        return icmp_answer(
            &parsed,
            Icmp::TimeExceeded,
            DropCause::HopLimitExpired,
            &gateway,
            out,
        );
    }
    if packet.len() > max_len {
        // RFC 1191 §4 has the router fragment a packet without DF; veil does not.
        if !parsed.dont_fragment() {
            return Outcome::Drop(DropCause::TooBig);
        }
        //# RFC 9484 §10.1: "In this scenario, the endpoint SHOULD drop the IP packet and send
        //# an ICMP Packet Too Big message to the sender of the dropped packet; see Section 3.2
        //# of [ICMPv6]."
        return icmp_answer(
            &parsed,
            Icmp::TooBig(max_len),
            DropCause::TooBig,
            &gateway,
            out,
        );
    }
    //# RFC 9484 §7.2: "When IP proxying endpoints forward IP packets between different
    //# links, they will decrement the IP Hop Count (or TTL) upon encapsulation but not upon
    //# decapsulation. In other words, the Hop Count is decremented right before an IP packet
    //# is transmitted in an HTTP Datagram."
    match decrement_hop_limit(packet) {
        Ok(_) => Outcome::Forward,
        // Not reached: the packet parsed and its hop limit is above 1.
        Err(HopLimitError::Expired) => Outcome::Drop(DropCause::HopLimitExpired),
        Err(_) => Outcome::Drop(DropCause::Malformed),
    }
}

/// The client's answer to a packet its host sent that the tunnel cannot carry now: longer
/// than `max_len`, the largest datagram payload of the tunnel's path. An ICMP
/// Fragmentation Needed (IPv4 with Don't Fragment) or Packet Too Big (IPv6) carrying that
/// limit, for the host's device, so that its stack lowers the path MTU; or a drop under
/// [`DropCause::TooBig`] (an IPv4 packet that may be fragmented, which veil does not do;
/// an ICMP error itself), or [`DropCause::RateLimited`].
///
/// The error comes "from" the packet's destination: the client owns no address on the far
/// side of the tunnel, and the host's own address as the source would make its kernel
/// drop the error as a martian. The host matches the error by the packet it quotes.
//# RFC 9484 §10.1: "In this scenario, the endpoint SHOULD drop the IP packet and send an
//# ICMP Packet Too Big message to the sender of the dropped packet; see Section 3.2 of
//# [ICMPv6]."
pub(crate) fn client_too_big(packet: &[u8], max_len: usize, out: IcmpOut<'_>) -> Outcome {
    let Some(parsed) = parse_whole(packet) else {
        return Outcome::Drop(DropCause::Malformed);
    };
    if packet.len() <= max_len {
        return Outcome::Forward;
    }
    if parsed.version() == IpVersion::V4 && !parsed.dont_fragment() {
        return Outcome::Drop(DropCause::TooBig);
    }
    let from = parsed.destination();
    icmp_answer(
        &parsed,
        Icmp::TooBig(max_len),
        DropCause::TooBig,
        |_| Some(from),
        out,
    )
}

/// The client's check of a packet it is about to send into the tunnel: from one of the
/// addresses the edge assigned (`assigned`), to a destination in a route the edge
/// advertised (`routes`) for the packet's protocol.
///
/// The client sends packets its own host originates, so it does not decrement the hop
/// limit (§7.2: "This does not apply to IP packets generated by the IP proxying endpoint
/// itself").
pub(crate) fn client_to_edge(
    packet: &[u8],
    assigned: &[IpAddr],
    routes: &[IpAddressRange],
) -> Result<(), DropCause> {
    let parsed = parse_whole(packet).ok_or(DropCause::Malformed)?;
    //# RFC 9484 §4.7.1: "Any of these addresses can be used as the source address on IP
    //# packets originated by the receiver of this capsule."
    if !assigned.contains(&parsed.source()) {
        return Err(DropCause::SpoofedSource);
    }
    //# RFC 9484 §4.7.3: "Any address that is in one of the address ranges can be used as
    //# the destination address on IP packets originated by the receiver of this capsule."
    if !routed(routes, parsed.destination(), &parsed) {
        return Err(DropCause::NotRouted);
    }
    Ok(())
}

/// The client's check of a packet that came out of the tunnel: to one of its addresses,
/// from a source in a route the edge advertised for the packet's protocol, or an ICMP
/// message from anywhere.
pub(crate) fn client_from_edge(
    packet: &[u8],
    assigned: &[IpAddr],
    routes: &[IpAddressRange],
) -> Result<(), DropCause> {
    let parsed = parse_whole(packet).ok_or(DropCause::Malformed)?;
    if !assigned.contains(&parsed.destination()) {
        return Err(DropCause::NotAssigned);
    }
    //# RFC 9484 §7.2.1: "Note that ICMP messages can originate from a source address
    //# different from that of the IP proxying peer and also from outside the target if
    //# scoping is in use (see Section 4.6)."
    if !is_icmp(&parsed) && !routed(routes, parsed.source(), &parsed) {
        return Err(DropCause::NotRouted);
    }
    Ok(())
}

/// `packet` as one whole IP packet, or `None`: malformed, or with bytes after it.
//# RFC 9484 §6: "When the Context ID is set to zero, the Payload field contains a full IP
//# packet (from the IP Version field until the last byte of the IP payload)."
fn parse_whole(packet: &[u8]) -> Option<IpPacket<'_>> {
    IpPacket::new_checked(packet)
        .ok()
        .filter(|parsed| parsed.as_bytes().len() == packet.len())
}

/// Whether the packet's upper layer is ICMP of its own IP version (ICMPv4 in IPv4, ICMPv6
/// in IPv6), after any extension headers.
fn is_icmp(packet: &IpPacket<'_>) -> bool {
    let icmp = match packet.version() {
        IpVersion::V4 => protocol::ICMP,
        IpVersion::V6 => protocol::ICMPV6,
    };
    packet.protocol() == icmp
}

/// Whether `packet`'s upper-layer protocol is the one `ipproto` allows.
//# RFC 9484 §4.6: "The IP protocol indicated in the "ipproto" variable represents an
//# allowable next header value carried in IP headers that are directly sent in HTTP
//# Datagrams (the outermost IP headers). ICMP traffic is always allowed, regardless of the
//# value of this field."
//# RFC 9484 §4.8: "Upon receiving packets, implementations that support scoping or routing
//# by Internet Protocol Number MUST walk the chain of extensions to find the outermost
//# non-extension Internet Protocol Number to match against the scoping rule."
fn protocol_allowed(ipproto: IpProto, packet: &IpPacket<'_>) -> bool {
    match ipproto {
        IpProto::Any => true,
        IpProto::Number(number) => packet.protocol() == number || is_icmp(packet),
    }
}

/// What an IP tunnel may reach, as the per-packet checks read its request's scope
/// (§4.6): any host, the target prefix, or, for a target named by DNS, exactly the
/// addresses the edge resolved for it (none until it has: nothing is in reach).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach<'a> {
    /// The request's scope.
    pub(crate) scope: &'a Scope,
    /// For [`Target::Name`]: the addresses resolved for the name; ignored otherwise.
    pub(crate) resolved: &'a [IpAddr],
}

impl<'a> From<&'a Scope> for Reach<'a> {
    /// A scope whose target is not a name (a name reaches nothing).
    fn from(scope: &'a Scope) -> Self {
        Self {
            scope,
            resolved: &[],
        }
    }
}

impl Reach<'_> {
    /// Whether `addr` is a host the scope's target covers.
    fn holds(&self, addr: IpAddr) -> bool {
        match &self.scope.target {
            Target::Any => true,
            Target::Prefix(prefix) => prefix.contains(addr),
            Target::Name(_) => self.resolved.contains(&addr),
        }
    }
}

/// Whether `addr` (the packet's far end) and the packet's protocol are within `scope`.
fn in_scope(scope: Reach<'_>, addr: IpAddr, packet: &IpPacket<'_>) -> bool {
    scope.holds(addr) && protocol_allowed(scope.scope.ipproto, packet)
}

/// Whether a packet from the egress comes from within `scope`. An ICMP error may come from
/// any router on the way (§7.2.1); it is in scope when the packet it quotes was one the
/// client sent within scope: from the client's address (the error's destination) to the
/// target.
//# RFC 9484 §11: "To avoid this, proxies that forward ICMP on shared external IP addresses
//# MUST inspect the invoking packet included in the ICMP packet and only forward the ICMP
//# packet to the client whose scoping matches the invoking packet."
fn source_in_scope(scope: Reach<'_>, packet: &IpPacket<'_>) -> bool {
    if in_scope(scope, packet.source(), packet) {
        return true;
    }
    let quote = match packet.transport() {
        Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) if icmp.is_error() => icmp.payload(),
        _ => return false,
    };
    let Some((quoted_source, quoted_destination)) = quoted_addresses(packet.version(), quote)
    else {
        return false;
    };
    quoted_source == packet.destination() && scope.holds(quoted_destination)
}

/// The source and destination of the packet an ICMP error quotes (usually truncated, so
/// not parsed as a whole), if the quote holds its fixed header and is of `version`.
fn quoted_addresses(version: IpVersion, quote: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match version {
        IpVersion::V4 => {
            let header = quote.first_chunk::<20>()?;
            if header[0] >> 4 != 4 {
                return None;
            }
            let source: [u8; 4] = header[12..16].try_into().ok()?;
            let destination: [u8; 4] = header[16..20].try_into().ok()?;
            Some((source.into(), destination.into()))
        }
        IpVersion::V6 => {
            let header = quote.first_chunk::<40>()?;
            if header[0] >> 4 != 6 {
                return None;
            }
            let source: [u8; 16] = header[8..24].try_into().ok()?;
            let destination: [u8; 16] = header[24..40].try_into().ok()?;
            Some((source.into(), destination.into()))
        }
    }
}

/// Whether a route in `routes` holds `addr` for the packet's protocol.
//# RFC 9484 §4.7.3: "If the value is 0, all protocols are allowed. If the value is not 0,
//# it represents an allowable next header value carried in IP headers that are sent
//# directly in HTTP Datagrams (the outermost IP headers). ICMP traffic is always allowed,
//# regardless of the value of this field."
fn routed(routes: &[IpAddressRange], addr: IpAddr, packet: &IpPacket<'_>) -> bool {
    routes.iter().any(|route| {
        route.contains(addr)
            && (route.ip_protocol == 0 || route.ip_protocol == packet.protocol() || is_icmp(packet))
    })
}

/// Whether `addr` is link-local: IPv4 169.254/16 or 224.0.0/24, IPv6 fe80::/10 or a
/// multicast address of interface- or link-local scope.
fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let [a0, a1, a2, _] = a.octets();
            a.is_link_local() || (a0, a1, a2) == (224, 0, 0)
        }
        IpAddr::V6(a) => {
            let bits = a.to_bits();
            let unicast = bits >> 118 == 0x3fa; // fe80::/10
            // ffX1::/16 and ffX2::/16: multicast of interface-local or link-local scope.
            let multicast = bits >> 120 == 0xff && matches!((bits >> 112) & 0xf, 1 | 2);
            unicast || multicast
        }
    }
}

/// An ICMP error the edge may answer with.
#[derive(Debug, Clone, Copy)]
enum Icmp {
    /// Destination Unreachable, communication administratively prohibited.
    Prohibited,
    /// Time Exceeded, hop limit exceeded in transit.
    TimeExceeded,
    /// Fragmentation Needed (IPv4) or Packet Too Big (IPv6), with the tunnel's limit.
    TooBig(usize),
}

/// Writes the ICMP error `icmp` about `packet` into `answer`, from the gateway of its
/// family, and returns [`Outcome::Answer`]; or, when it may not or cannot be sent,
/// [`Outcome::Drop`] with `cause`, or [`DropCause::RateLimited`].
fn icmp_answer(
    packet: &IpPacket<'_>,
    icmp: Icmp,
    cause: DropCause,
    gateway: impl Fn(bool) -> Option<IpAddr>,
    out: IcmpOut<'_>,
) -> Outcome {
    let IcmpOut {
        answer,
        limiter,
        now,
    } = out;
    let written: Result<usize, EncodeIcmpError> =
        match (packet.version(), gateway(packet.version() == IpVersion::V6)) {
            (IpVersion::V4, Some(IpAddr::V4(source))) => {
                let message = match icmp {
                    Icmp::Prohibited => Icmpv4Error::DestinationUnreachable(
                        Icmpv4Unreachable::AdministrativelyProhibited,
                    ),
                    Icmp::TimeExceeded => Icmpv4Error::TimeExceeded,
                    //# RFC 1191 §4: "the router MUST include the MTU of that next-hop network in
                    //# the low-order 16 bits of the ICMP header field"
                    Icmp::TooBig(mtu) => Icmpv4Error::DestinationUnreachable(
                        Icmpv4Unreachable::FragmentationNeeded {
                            next_hop_mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
                        },
                    ),
                };
                encode_icmpv4_error(answer, source, packet, message)
            }
            (IpVersion::V6, Some(IpAddr::V6(source))) => {
                let message = match icmp {
                    Icmp::Prohibited => Icmpv6Error::DestinationUnreachable(
                        Icmpv6Unreachable::AdministrativelyProhibited,
                    ),
                    Icmp::TimeExceeded => Icmpv6Error::TimeExceeded,
                    //# RFC 4443 §3.2: "MTU The Maximum Transmission Unit of the next-hop link."
                    Icmp::TooBig(mtu) => Icmpv6Error::PacketTooBig {
                        mtu: u32::try_from(mtu).unwrap_or(u32::MAX),
                    },
                };
                encode_icmpv6_error(answer, source, packet, message)
            }
            // No address of the family to send from.
            _ => return Outcome::Drop(cause),
        };
    match written {
        Ok(len) if limiter.allow(now) => Outcome::Answer { len },
        Ok(_) => Outcome::Drop(DropCause::RateLimited),
        Err(_) => Outcome::Drop(cause),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use veil_proto::ip::IcmpView;
    use veil_proto::masque::ip::IpPrefix;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// The Internet checksum of `bytes` (RFC 1071), written here independently of
    /// veil-proto's so that it can check it.
    fn internet_checksum(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|pair| {
                u32::from(u16::from_be_bytes([
                    pair[0],
                    pair.get(1).copied().unwrap_or(0),
                ]))
            })
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !u16::try_from(sum).expect("folded")
    }

    /// An IPv4 packet, Don't Fragment set, with a correct header checksum.
    fn ipv4(src: &str, dst: &str, ttl: u8, protocol: u8, payload: &[u8]) -> Vec<u8> {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (ip(src), ip(dst)) else {
            panic!("IPv4 addresses");
        };
        let total = u16::try_from(20 + payload.len()).expect("short");
        let mut p = vec![0x45, 0];
        p.extend(total.to_be_bytes());
        p.extend([0, 0, 0x40, 0, ttl, protocol, 0, 0]);
        p.extend(src.octets());
        p.extend(dst.octets());
        let checksum = internet_checksum(&p);
        p[10..12].copy_from_slice(&checksum.to_be_bytes());
        p.extend(payload);
        p
    }

    /// An IPv6 packet whose first header is `next` and whose payload is `payload`.
    fn ipv6(src: &str, dst: &str, hop_limit: u8, next: u8, payload: &[u8]) -> Vec<u8> {
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip(src), ip(dst)) else {
            panic!("IPv6 addresses");
        };
        let len = u16::try_from(payload.len()).expect("short");
        let mut p = vec![0x60, 0, 0, 0];
        p.extend(len.to_be_bytes());
        p.extend([next, hop_limit]);
        p.extend(src.octets());
        p.extend(dst.octets());
        p.extend(payload);
        p
    }

    /// A UDP header and 4 bytes of payload (checksum 0: not checked on this path).
    fn udp() -> Vec<u8> {
        vec![0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]
    }

    /// An ICMP echo request (type 8 for IPv4, 128 for IPv6).
    fn echo(v6: bool) -> Vec<u8> {
        vec![if v6 { 128 } else { 8 }, 0, 0, 0, 0, 1, 0, 1]
    }

    fn udp4(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
        ipv4(src, dst, ttl, protocol::UDP, &udp())
    }

    fn udp6(src: &str, dst: &str, hop_limit: u8) -> Vec<u8> {
        ipv6(src, dst, hop_limit, protocol::UDP, &udp())
    }

    /// An IPv6 UDP packet behind a Hop-by-Hop Options and a Destination Options header.
    fn udp6_with_extensions(src: &str, dst: &str) -> Vec<u8> {
        let mut payload = vec![protocol::DESTINATION_OPTIONS, 0, 1, 4, 0, 0, 0, 0];
        payload.extend([protocol::UDP, 0, 1, 4, 0, 0, 0, 0]);
        payload.extend(udp());
        ipv6(src, dst, 64, protocol::HOP_BY_HOP, &payload)
    }

    const CLIENT4: &str = "10.0.0.2";
    const CLIENT6: &str = "2001:db8::2";
    const REMOTE4: &str = "198.51.100.7";
    const REMOTE6: &str = "2001:db8:ffff::7";

    fn assigned() -> [IpAddr; 2] {
        [ip(CLIENT4), ip(CLIENT6)]
    }

    // The shape `edge_from_client` takes.
    #[allow(clippy::unnecessary_wraps)]
    fn gateway(v6: bool) -> Option<IpAddr> {
        Some(if v6 {
            ip("2001:db8::1")
        } else {
            ip("10.0.0.1")
        })
    }

    fn scope(target: Option<(&str, u8)>, ipproto: Option<u8>) -> Scope {
        Scope {
            target: target.map_or(Target::Any, |(addr, len)| {
                Target::Prefix(IpPrefix::new(ip(addr), len).expect("test prefix"))
            }),
            ipproto: ipproto.map_or(IpProto::Any, IpProto::Number),
        }
    }

    fn limiter() -> IcmpLimiter {
        IcmpLimiter::new(1000, 1000)
    }

    /// [`edge_from_client`] with the test tunnel, permitting everything but `refused`.
    fn from_client(
        packet: &mut [u8],
        scope: &Scope,
        refused: Option<&str>,
        answer: &mut [u8],
    ) -> Outcome {
        let refused = refused.map(ip);
        edge_from_client(
            packet,
            &assigned(),
            scope.into(),
            |addr| Some(addr) != refused,
            gateway,
            IcmpOut {
                answer,
                limiter: &mut limiter(),
                now: Instant::now(),
            },
        )
    }

    fn to_client(packet: &mut [u8], scope: &Scope, max_len: usize, answer: &mut [u8]) -> Outcome {
        edge_to_client(
            packet,
            &assigned(),
            scope.into(),
            max_len,
            gateway,
            IcmpOut {
                answer,
                limiter: &mut limiter(),
                now: Instant::now(),
            },
        )
    }

    /// Parses an answer: its source, destination and ICMP message.
    fn icmp_of(answer: &[u8]) -> (IpAddr, IpAddr, IcmpView<'_>) {
        let packet = IpPacket::new_checked(answer).expect("a valid packet");
        assert_eq!(packet.as_bytes().len(), answer.len());
        match packet.transport() {
            Transport::Icmpv4(icmp) | Transport::Icmpv6(icmp) => {
                assert!(icmp.checksum_valid());
                (packet.source(), packet.destination(), icmp)
            }
            other => panic!("not ICMP: {other:?}"),
        }
    }

    #[test]
    fn malformed_packets_are_dropped() {
        let mut answer = [0; 1280];
        let mut garbage = [0x45, 1, 2, 3];
        assert_eq!(
            from_client(&mut garbage, &Scope::ANY, None, &mut answer),
            Outcome::Drop(DropCause::Malformed)
        );
        // Bytes after the packet: not one whole packet.
        let mut padded = udp4(CLIENT4, REMOTE4, 64);
        padded.push(0);
        assert_eq!(
            from_client(&mut padded, &Scope::ANY, None, &mut answer),
            Outcome::Drop(DropCause::Malformed)
        );
        let mut padded = udp6(REMOTE6, CLIENT6, 64);
        padded.push(0);
        assert_eq!(
            to_client(&mut padded, &Scope::ANY, 1500, &mut answer),
            Outcome::Drop(DropCause::Malformed)
        );
        assert_eq!(
            client_to_edge(&[], &assigned(), &[]),
            Err(DropCause::Malformed)
        );
        assert_eq!(
            client_from_edge(&[0x60], &assigned(), &[]),
            Err(DropCause::Malformed)
        );
    }

    #[test]
    fn client_packets_from_unassigned_sources_are_dropped() {
        let mut answer = [0; 1280];
        let mut packet = udp4("10.0.0.3", REMOTE4, 64);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, None, &mut answer),
            Outcome::Drop(DropCause::SpoofedSource)
        );
        let mut packet = udp6("2001:db8::3", REMOTE6, 64);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, None, &mut answer),
            Outcome::Drop(DropCause::SpoofedSource)
        );
    }

    #[test]
    fn forwards_client_packets_unchanged() {
        let mut answer = [0; 1280];
        for original in [udp4(CLIENT4, REMOTE4, 1), udp6(CLIENT6, REMOTE6, 64)] {
            let mut packet = original.clone();
            assert_eq!(
                from_client(&mut packet, &Scope::ANY, None, &mut answer),
                Outcome::Forward
            );
            // Decapsulation does not decrement (RFC 9484 §7.2).
            assert_eq!(packet, original);
        }
    }

    #[test]
    fn scope_limits_destination_and_protocol() {
        let mut answer = [0; 1280];
        let udp_scope = scope(Some(("198.51.100.0", 24)), Some(17));
        let mut packet = udp4(CLIENT4, REMOTE4, 64);
        assert_eq!(
            from_client(&mut packet, &udp_scope, None, &mut answer),
            Outcome::Forward
        );
        let mut packet = udp4(CLIENT4, "203.0.113.1", 64);
        assert_eq!(
            from_client(&mut packet, &udp_scope, None, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // A prefix of the other family holds no address of this one.
        let mut packet = udp6(CLIENT6, REMOTE6, 64);
        assert_eq!(
            from_client(&mut packet, &udp_scope, None, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        let tcp_scope = scope(None, Some(6));
        let mut packet = udp4(CLIENT4, REMOTE4, 64);
        assert_eq!(
            from_client(&mut packet, &tcp_scope, None, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // ICMP is always allowed.
        let mut packet = ipv4(CLIENT4, REMOTE4, 64, protocol::ICMP, &echo(false));
        assert_eq!(
            from_client(&mut packet, &tcp_scope, None, &mut answer),
            Outcome::Forward
        );
        let mut packet = ipv6(CLIENT6, REMOTE6, 64, protocol::ICMPV6, &echo(true));
        assert_eq!(
            from_client(&mut packet, &tcp_scope, None, &mut answer),
            Outcome::Forward
        );
    }

    #[test]
    fn a_name_reaches_exactly_the_addresses_it_resolved_to() {
        let mut answer = [0; 1280];
        let name = Scope {
            target: Target::Name(
                veil_proto::masque::ip::Hostname::new("example.com").expect("name"),
            ),
            ipproto: IpProto::Any,
        };
        let resolved = [ip(REMOTE4)];
        let reach = Reach {
            scope: &name,
            resolved: &resolved,
        };
        let from_client = |packet: &mut [u8], reach: Reach<'_>, answer: &mut [u8]| {
            edge_from_client(
                packet,
                &assigned(),
                reach,
                |_| true,
                gateway,
                IcmpOut {
                    answer,
                    limiter: &mut limiter(),
                    now: Instant::now(),
                },
            )
        };
        let mut packet = udp4(CLIENT4, REMOTE4, 64);
        assert_eq!(
            from_client(&mut packet, reach, &mut answer),
            Outcome::Forward
        );
        let mut packet = udp4(CLIENT4, "198.51.100.8", 64);
        assert_eq!(
            from_client(&mut packet, reach, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // Unresolved, a name reaches nothing.
        let mut packet = udp4(CLIENT4, REMOTE4, 64);
        assert_eq!(
            from_client(&mut packet, Reach::from(&name), &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // The other way: from a resolved address only, or an ICMP error about a packet to
        // one.
        let to_client = |packet: &mut [u8], answer: &mut [u8]| {
            edge_to_client(
                packet,
                &assigned(),
                reach,
                1500,
                gateway,
                IcmpOut {
                    answer,
                    limiter: &mut limiter(),
                    now: Instant::now(),
                },
            )
        };
        let mut packet = udp4(REMOTE4, CLIENT4, 64);
        assert_eq!(to_client(&mut packet, &mut answer), Outcome::Forward);
        let mut packet = udp4("198.51.100.8", CLIENT4, 64);
        assert_eq!(
            to_client(&mut packet, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        let mut unreachable = vec![3, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend(&udp4(CLIENT4, REMOTE4, 60)[..28]);
        let mut packet = ipv4("192.0.2.1", CLIENT4, 64, protocol::ICMP, &unreachable);
        assert_eq!(to_client(&mut packet, &mut answer), Outcome::Forward);
        let mut unreachable = vec![3, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend(&udp4(CLIENT4, "198.51.100.8", 60)[..28]);
        let mut packet = ipv4("192.0.2.1", CLIENT4, 64, protocol::ICMP, &unreachable);
        assert_eq!(
            to_client(&mut packet, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
    }

    #[test]
    fn scope_protocol_is_found_after_extension_headers() {
        let mut answer = [0; 1280];
        let original = udp6_with_extensions(CLIENT6, REMOTE6);
        let mut packet = original.clone();
        assert_eq!(
            from_client(&mut packet, &scope(None, Some(17)), None, &mut answer),
            Outcome::Forward
        );
        assert_eq!(
            from_client(&mut packet, &scope(None, Some(6)), None, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // Not the first Next Header either.
        assert_eq!(
            from_client(&mut packet, &scope(None, Some(0)), None, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // The other way, the source's protocol too; the hop limit is decremented.
        let mut packet = udp6_with_extensions(REMOTE6, CLIENT6);
        assert_eq!(
            to_client(&mut packet, &scope(None, Some(17)), 1500, &mut answer),
            Outcome::Forward
        );
        assert_eq!(packet[7], 63);
        let mut packet = udp6_with_extensions(REMOTE6, CLIENT6);
        assert_eq!(
            to_client(&mut packet, &scope(None, Some(6)), 1500, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        assert_eq!(original.len(), 40 + 8 + 8 + 12);
    }

    #[test]
    fn refused_destinations_are_answered_prohibited() {
        let mut answer = [0; 1280];
        let original = udp4(CLIENT4, REMOTE4, 64);
        let mut packet = original.clone();
        let Outcome::Answer { len } =
            from_client(&mut packet, &Scope::ANY, Some(REMOTE4), &mut answer)
        else {
            panic!("no answer");
        };
        let (source, destination, icmp) = icmp_of(&answer[..len]);
        assert_eq!((source, destination), (ip("10.0.0.1"), ip(CLIENT4)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (3, 13));
        assert_eq!(icmp.payload(), &original[..]);

        let original = udp6(CLIENT6, REMOTE6, 64);
        let mut packet = original.clone();
        let Outcome::Answer { len } =
            from_client(&mut packet, &Scope::ANY, Some(REMOTE6), &mut answer)
        else {
            panic!("no answer");
        };
        let (source, destination, icmp) = icmp_of(&answer[..len]);
        assert_eq!((source, destination), (ip("2001:db8::1"), ip(CLIENT6)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (1, 1));
        assert_eq!(icmp.payload(), &original[..]);
    }

    #[test]
    fn the_client_answers_too_big_packets_with_the_limit_from_their_destination() {
        let mut answer = [0; 1280];
        let mut limiter = limiter();
        let now = Instant::now();
        let mut too_big = |packet: &[u8], max_len: usize, answer: &mut [u8]| {
            client_too_big(
                packet,
                max_len,
                IcmpOut {
                    answer,
                    limiter: &mut limiter,
                    now,
                },
            )
        };
        let packet = udp4(CLIENT4, REMOTE4, 64);
        assert_eq!(
            too_big(&packet, packet.len(), &mut answer),
            Outcome::Forward
        );
        let Outcome::Answer { len } = too_big(&packet, packet.len() - 1, &mut answer) else {
            panic!("no answer");
        };
        let (from, to, icmp) = icmp_of(&answer[..len]);
        assert_eq!((from, to), (ip(REMOTE4), ip(CLIENT4)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (3, 4));
        // Without Don't Fragment the host never learns from an error: dropped.
        let mut may_fragment = packet.clone();
        may_fragment[6] = 0;
        may_fragment[10..12].fill(0);
        let checksum = internet_checksum(&may_fragment[..20]);
        may_fragment[10..12].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(
            too_big(&may_fragment, packet.len() - 1, &mut answer),
            Outcome::Drop(DropCause::TooBig)
        );
        // An ICMP error is never answered with another.
        let mut unreachable = vec![3, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend(&udp4(REMOTE4, CLIENT4, 60)[..28]);
        let error = ipv4(CLIENT4, REMOTE4, 64, protocol::ICMP, &unreachable);
        assert!(matches!(
            too_big(&error, error.len() - 1, &mut answer),
            Outcome::Drop(_)
        ));
        let packet = udp6(CLIENT6, REMOTE6, 64);
        let Outcome::Answer { len } = too_big(&packet, packet.len() - 1, &mut answer) else {
            panic!("no answer over IPv6");
        };
        let (from, to, icmp) = icmp_of(&answer[..len]);
        assert_eq!((from, to), (ip(REMOTE6), ip(CLIENT6)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (2, 0));
    }

    #[test]
    fn refused_destinations_are_dropped_when_no_icmp_may_be_sent() {
        let mut answer = [0; 1280];
        // No gateway of the family.
        let mut packet = udp4(CLIENT4, REMOTE4, 64);
        let outcome = edge_from_client(
            &mut packet,
            &assigned(),
            (&Scope::ANY).into(),
            |_| false,
            |v6| gateway(v6).filter(|_| v6),
            IcmpOut {
                answer: &mut answer,
                limiter: &mut limiter(),
                now: Instant::now(),
            },
        );
        assert_eq!(outcome, Outcome::Drop(DropCause::Forbidden));
        // About an ICMP error: never.
        let mut unreachable = vec![3, 1, 0, 0, 0, 0, 0, 0];
        unreachable.extend(&udp4(REMOTE4, CLIENT4, 60)[..28]);
        let mut packet = ipv4(CLIENT4, REMOTE4, 64, protocol::ICMP, &unreachable);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, Some(REMOTE4), &mut answer),
            Outcome::Drop(DropCause::Forbidden)
        );
        // To multicast: never.
        let mut packet = udp4(CLIENT4, "239.1.2.3", 64);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, Some("239.1.2.3"), &mut answer),
            Outcome::Drop(DropCause::Forbidden)
        );
        // An answer buffer too small.
        let mut packet = udp4(CLIENT4, REMOTE4, 64);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, Some(REMOTE4), &mut [0; 40]),
            Outcome::Drop(DropCause::Forbidden)
        );
    }

    #[test]
    fn link_local_traffic_stays_on_its_link() {
        let mut answer = [0; 1280];
        for destination in ["fe80::1", "ff02::1"] {
            let mut packet = udp6(CLIENT6, destination, 64);
            assert_eq!(
                from_client(&mut packet, &Scope::ANY, None, &mut answer),
                Outcome::Drop(DropCause::LinkLocal),
                "{destination}"
            );
        }
        let mut packet = udp4(CLIENT4, "169.254.169.254", 64);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, None, &mut answer),
            Outcome::Drop(DropCause::LinkLocal)
        );
        let mut packet = udp4("169.254.1.1", CLIENT4, 64);
        assert_eq!(
            to_client(&mut packet, &Scope::ANY, 1500, &mut answer),
            Outcome::Drop(DropCause::LinkLocal)
        );
        // Site-local multicast is not link-local.
        let mut packet = udp6(CLIENT6, "ff05::1", 64);
        assert_eq!(
            from_client(&mut packet, &Scope::ANY, None, &mut answer),
            Outcome::Forward
        );
    }

    #[test]
    fn client_packet_arriving_with_no_hops_left_gets_time_exceeded() {
        let mut answer = [0; 1280];
        let original = udp4(CLIENT4, REMOTE4, 0);
        let mut packet = original.clone();
        let Outcome::Answer { len } = from_client(&mut packet, &Scope::ANY, None, &mut answer)
        else {
            panic!("no answer");
        };
        let (source, destination, icmp) = icmp_of(&answer[..len]);
        assert_eq!((source, destination), (ip("10.0.0.1"), ip(CLIENT4)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (11, 0));
        assert_eq!(icmp.payload(), &original[..]);
    }

    #[test]
    fn ttl_1_toward_the_client_gets_time_exceeded() {
        let mut answer = [0; 1280];
        let original = udp4(REMOTE4, CLIENT4, 1);
        let mut packet = original.clone();
        let Outcome::Answer { len } = to_client(&mut packet, &Scope::ANY, 1500, &mut answer) else {
            panic!("no answer");
        };
        let (source, destination, icmp) = icmp_of(&answer[..len]);
        assert_eq!((source, destination), (ip("10.0.0.1"), ip(REMOTE4)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (11, 0));
        // The quote is the packet as received, TTL 1.
        assert_eq!(icmp.payload(), &original[..]);
        assert_eq!(packet, original);

        let original = udp6(REMOTE6, CLIENT6, 1);
        let mut packet = original.clone();
        let Outcome::Answer { len } = to_client(&mut packet, &Scope::ANY, 1500, &mut answer) else {
            panic!("no answer");
        };
        let (source, destination, icmp) = icmp_of(&answer[..len]);
        assert_eq!((source, destination), (ip("2001:db8::1"), ip(REMOTE6)));
        assert_eq!((icmp.icmp_type(), icmp.code()), (3, 0));
        assert_eq!(icmp.payload(), &original[..]);
    }

    #[test]
    fn forwarded_packets_have_their_hop_limit_decremented() {
        let mut answer = [0; 1280];
        let mut packet = udp4(REMOTE4, CLIENT4, 2);
        assert_eq!(
            to_client(&mut packet, &Scope::ANY, 1500, &mut answer),
            Outcome::Forward
        );
        assert_eq!(packet[8], 1);
        assert_eq!(internet_checksum(&packet[..20]), 0, "IPv4 header checksum");
        assert!(IpPacket::new_checked(&packet).is_ok());
        let mut packet = udp6(REMOTE6, CLIENT6, 64);
        assert_eq!(
            to_client(&mut packet, &Scope::ANY, 1500, &mut answer),
            Outcome::Forward
        );
        assert_eq!(packet[7], 63);
    }

    #[test]
    fn packets_for_other_addresses_are_not_sent_to_the_client() {
        let mut answer = [0; 1280];
        let mut packet = udp4(REMOTE4, "10.0.0.3", 64);
        assert_eq!(
            to_client(&mut packet, &Scope::ANY, 1500, &mut answer),
            Outcome::Drop(DropCause::NotAssigned)
        );
        let mut packet = udp4(REMOTE4, CLIENT4, 64);
        assert_eq!(
            to_client(
                &mut packet,
                &scope(Some(("203.0.113.0", 24)), None),
                1500,
                &mut answer
            ),
            Outcome::Drop(DropCause::OutOfScope)
        );
    }

    #[test]
    fn icmp_errors_from_outside_the_target_pass_when_they_quote_the_client() {
        let mut answer = [0; 1280];
        let target = scope(Some(("198.51.100.0", 24)), Some(17));
        // A router outside the target reports a packet the client sent to the target.
        let mut quoted = vec![11, 0, 0, 0, 0, 0, 0, 0];
        quoted.extend(&udp4(CLIENT4, REMOTE4, 1)[..28]);
        let mut packet = ipv4("203.0.113.1", CLIENT4, 64, protocol::ICMP, &quoted);
        assert_eq!(
            to_client(&mut packet, &target, 1500, &mut answer),
            Outcome::Forward
        );
        // One quoting a packet to elsewhere does not.
        let mut quoted = vec![11, 0, 0, 0, 0, 0, 0, 0];
        quoted.extend(&udp4(CLIENT4, "203.0.113.9", 1)[..28]);
        let mut packet = ipv4("203.0.113.1", CLIENT4, 64, protocol::ICMP, &quoted);
        assert_eq!(
            to_client(&mut packet, &target, 1500, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // Nor one quoting another client's packet.
        let mut quoted = vec![11, 0, 0, 0, 0, 0, 0, 0];
        quoted.extend(&udp4("10.0.0.3", REMOTE4, 1)[..28]);
        let mut packet = ipv4("203.0.113.1", CLIENT4, 64, protocol::ICMP, &quoted);
        assert_eq!(
            to_client(&mut packet, &target, 1500, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
        // IPv6: Packet Too Big from a router.
        let target6 = scope(Some(("2001:db8:ffff::", 48)), None);
        let mut quoted = vec![2, 0, 0, 0, 0, 0, 5, 0];
        quoted.extend(&udp6(CLIENT6, REMOTE6, 1));
        let mut packet = ipv6("2001:db8:aaaa::1", CLIENT6, 64, protocol::ICMPV6, &quoted);
        assert_eq!(
            to_client(&mut packet, &target6, 1500, &mut answer),
            Outcome::Forward
        );
        // An echo reply from outside is no error: out of scope.
        let mut reply = echo(true);
        reply[0] = 129;
        let mut packet = ipv6("2001:db8:aaaa::1", CLIENT6, 64, protocol::ICMPV6, &reply);
        assert_eq!(
            to_client(&mut packet, &target6, 1500, &mut answer),
            Outcome::Drop(DropCause::OutOfScope)
        );
    }

    #[test]
    fn too_big_packets_get_the_real_limit() {
        let mut answer = [0; 1280];
        let payload = vec![0; 1400];
        for max_len in [1300_usize, 1350] {
            let original = ipv4(REMOTE4, CLIENT4, 64, 253, &payload);
            let mut packet = original.clone();
            let Outcome::Answer { len } = to_client(&mut packet, &Scope::ANY, max_len, &mut answer)
            else {
                panic!("no answer");
            };
            let (source, destination, icmp) = icmp_of(&answer[..len]);
            assert_eq!((source, destination), (ip("10.0.0.1"), ip(REMOTE4)));
            assert_eq!((icmp.icmp_type(), icmp.code()), (3, 4));
            let [_, _, hi, lo] = icmp.rest_of_header();
            assert_eq!(usize::from(u16::from_be_bytes([hi, lo])), max_len);
            assert_eq!(icmp.payload(), &original[..548]);

            let original = ipv6(REMOTE6, CLIENT6, 64, 253, &payload);
            let mut packet = original.clone();
            let Outcome::Answer { len } = to_client(&mut packet, &Scope::ANY, max_len, &mut answer)
            else {
                panic!("no answer");
            };
            let (source, destination, icmp) = icmp_of(&answer[..len]);
            assert_eq!((source, destination), (ip("2001:db8::1"), ip(REMOTE6)));
            assert_eq!((icmp.icmp_type(), icmp.code()), (2, 0));
            let mtu = u32::from_be_bytes(icmp.rest_of_header());
            assert_eq!(usize::try_from(mtu).expect("small"), max_len);
            assert_eq!(len, 1280);
        }
        // Exactly the limit fits.
        let mut packet = ipv4(REMOTE4, CLIENT4, 64, 253, &payload);
        assert_eq!(
            to_client(&mut packet, &Scope::ANY, 1420, &mut answer),
            Outcome::Forward
        );
        // IPv4 without Don't Fragment: dropped, veil does not fragment.
        let mut packet = ipv4(REMOTE4, CLIENT4, 64, 253, &payload);
        packet[6] = 0;
        packet[10..12].fill(0);
        let checksum = internet_checksum(&packet[..20]);
        packet[10..12].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(
            to_client(&mut packet, &Scope::ANY, 1300, &mut answer),
            Outcome::Drop(DropCause::TooBig)
        );
    }

    #[test]
    fn limiter_is_a_token_bucket() {
        let start = Instant::now();
        let mut limiter = IcmpLimiter::new(10, 2);
        assert!(limiter.allow(start));
        assert!(limiter.allow(start));
        assert!(!limiter.allow(start));
        // 10 per second: one token every 100 ms.
        assert!(!limiter.allow(start + Duration::from_millis(99)));
        assert!(limiter.allow(start + Duration::from_millis(100)));
        assert!(!limiter.allow(start + Duration::from_millis(100)));
        // A long pause refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert!(limiter.allow(later));
        assert!(limiter.allow(later));
        assert!(!limiter.allow(later));
        // Time going backwards refills nothing.
        assert!(!limiter.allow(start));
        // No burst: nothing, ever.
        let mut none = IcmpLimiter::new(1000, 0);
        assert!(!none.allow(start));
        assert!(!none.allow(later));
    }

    #[test]
    fn rate_limited_answers_are_dropped() {
        let mut answer = [0; 1280];
        let mut limiter = IcmpLimiter::new(1, 1);
        let now = Instant::now();
        let mut outcome = || {
            let mut packet = udp4(REMOTE4, CLIENT4, 1);
            edge_to_client(
                &mut packet,
                &assigned(),
                (&Scope::ANY).into(),
                1500,
                gateway,
                IcmpOut {
                    answer: &mut answer,
                    limiter: &mut limiter,
                    now,
                },
            )
        };
        assert!(matches!(outcome(), Outcome::Answer { .. }));
        assert_eq!(outcome(), Outcome::Drop(DropCause::RateLimited));
    }

    fn routes() -> [IpAddressRange; 3] {
        [
            IpAddressRange {
                start: ip("198.51.100.0"),
                end: ip("198.51.100.255"),
                ip_protocol: 0,
            },
            IpAddressRange {
                start: ip("203.0.113.0"),
                end: ip("203.0.113.255"),
                ip_protocol: 6,
            },
            IpAddressRange {
                start: ip("2001:db8:ffff::"),
                end: ip("2001:db8:ffff::ff"),
                ip_protocol: 17,
            },
        ]
    }

    #[test]
    fn client_sends_only_from_its_addresses_along_advertised_routes() {
        let ok = |p: &[u8]| client_to_edge(p, &assigned(), &routes());
        assert_eq!(ok(&udp4(CLIENT4, REMOTE4, 64)), Ok(()));
        assert_eq!(ok(&udp6(CLIENT6, REMOTE6, 64)), Ok(()));
        assert_eq!(
            ok(&udp4("10.0.0.9", REMOTE4, 64)),
            Err(DropCause::SpoofedSource)
        );
        assert_eq!(
            ok(&udp4(CLIENT4, "192.0.2.1", 64)),
            Err(DropCause::NotRouted)
        );
        // The 203.0.113.0/24 route is for TCP, and ICMP.
        assert_eq!(
            ok(&udp4(CLIENT4, "203.0.113.5", 64)),
            Err(DropCause::NotRouted)
        );
        assert_eq!(
            ok(&ipv4(
                CLIENT4,
                "203.0.113.5",
                64,
                protocol::ICMP,
                &echo(false)
            )),
            Ok(())
        );
        assert_eq!(ok(&udp6_with_extensions(CLIENT6, REMOTE6)), Ok(()));
        assert_eq!(
            client_to_edge(&udp4(CLIENT4, REMOTE4, 64), &assigned(), &[]),
            Err(DropCause::NotRouted)
        );
    }

    #[test]
    fn client_accepts_only_its_addresses_from_advertised_routes() {
        let ok = |p: &[u8]| client_from_edge(p, &assigned(), &routes());
        assert_eq!(ok(&udp4(REMOTE4, CLIENT4, 64)), Ok(()));
        assert_eq!(
            ok(&udp4(REMOTE4, "10.0.0.9", 64)),
            Err(DropCause::NotAssigned)
        );
        assert_eq!(
            ok(&udp4("192.0.2.1", CLIENT4, 64)),
            Err(DropCause::NotRouted)
        );
        assert_eq!(
            ok(&udp4("203.0.113.5", CLIENT4, 64)),
            Err(DropCause::NotRouted)
        );
        // ICMP from anywhere: errors come from routers on the way.
        assert_eq!(
            ok(&ipv4(
                "192.0.2.1",
                CLIENT4,
                64,
                protocol::ICMP,
                &echo(false)
            )),
            Ok(())
        );
        assert_eq!(
            ok(&ipv6(
                "2001:db8:aaaa::1",
                CLIENT6,
                64,
                protocol::ICMPV6,
                &echo(true)
            )),
            Ok(())
        );
    }

    #[test]
    fn ipv6_needs_a_1280_byte_tunnel() {
        assert!(!ipv6_mtu_ok(1279));
        assert!(ipv6_mtu_ok(1280));
        assert!(ipv6_mtu_ok(65_535));
    }

    #[test]
    fn drop_cause_names_are_distinct() {
        let mut names: Vec<&str> = DropCause::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropCause::ALL.len());
    }

    fn any_packet() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            // A valid packet with a few bytes changed, to get past the first checks.
            (
                proptest::collection::vec((0..68_usize, any::<u8>()), 0..4),
                any::<bool>()
            )
                .prop_map(|(edits, v6)| {
                    let mut p = if v6 {
                        udp6_with_extensions(REMOTE6, CLIENT6)
                    } else {
                        udp4(REMOTE4, CLIENT4, 64)
                    };
                    for (at, byte) in edits {
                        if let Some(b) = p.get_mut(at) {
                            *b = byte;
                        }
                    }
                    p
                }),
        ]
    }

    proptest! {
        /// No input panics, and an answer always fits the buffer and is a valid packet.
        #[test]
        fn never_panics(mut packet in any_packet(), max_len in 0..2000_usize, small in any::<bool>()) {
            let mut answer = vec![0; if small { 64 } else { 1280 }];
            let mut limiter = limiter();
            let now = Instant::now();
            let scopes = [Scope::ANY, scope(Some(("2001:db8:ffff::", 48)), Some(17)), scope(Some(("198.51.100.0", 24)), Some(6))];
            for scope in &scopes {
                let mut copy = packet.clone();
                let outcomes = [
                    edge_from_client(&mut copy, &assigned(), scope.into(), |_| false, gateway, IcmpOut { answer: &mut answer, limiter: &mut limiter, now }),
                    edge_to_client(&mut packet, &assigned(), scope.into(), max_len, gateway, IcmpOut { answer: &mut answer, limiter: &mut limiter, now }),
                ];
                for outcome in outcomes {
                    if let Outcome::Answer { len } = outcome {
                        prop_assert!(len <= answer.len());
                        prop_assert!(IpPacket::new_checked(&answer[..len]).is_ok());
                    }
                }
            }
            let _ = client_to_edge(&packet, &assigned(), &routes());
            let _ = client_from_edge(&packet, &assigned(), &routes());
        }
    }
}
