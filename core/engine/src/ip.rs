//! CONNECT-IP (RFC 9484) pieces that need no connection: the request heads
//! ([`request`]), the edge's address pool ([`pool`]), the per-packet forwarding rules
//! of both roles ([`forward`]) and each tunnel's flows with the `ip_flow` hook's verdicts
//! ([`flows`]). The endpoint glue (`endpoint/ip.rs`: capsules, datagrams)
//! calls them; everything here is pure: no quiche, no
//! I/O, the clock passed in.
//!
//! # Why the edge checks every packet
//!
//! RFC 9484 makes a CONNECT-IP tunnel an IP link and each endpoint a router on it (§7).
//! A router on the Internet's edge owes the rest of the network some care, and the RFC
//! spells out which:
//!
//! - **No spoofing.** The edge assigned the client its addresses (§4.7.1); a packet from
//!   any other source is dropped (§11, BCP 38). Assignment is the pool's job: one owner
//!   per address, kept consistent in both directions.
//! - **Scope and routes.** A request may limit itself to a target prefix and an IP protocol
//!   (§4.6), matched against the protocol after the IPv6 extension headers (§4.8), with ICMP
//!   always allowed. The client, for its part, only sends to routes the edge advertised
//!   (§4.7.3) and accepts only packets for its own addresses.
//! - **Router duties** (§7.2): the hop limit is decremented when a packet enters the tunnel,
//!   link-local traffic stays on its link, and forwarding errors are signalled with ICMP
//!   (§7.2.1): administratively prohibited for what the egress policy refuses, Time
//!   Exceeded, and Packet Too Big / Fragmentation Needed carrying the tunnel's real limit
//!   (§10.1), all rate limited (RFC 4443 §2.4 (f)) and sent from the edge's own address in
//!   the pool's prefix.
//!
//! Parsing, checksums and ICMP encoding are veil-proto's ([`veil_proto::ip`]); this module
//! only decides.

pub(crate) mod flows;
pub(crate) mod forward;
pub(crate) mod pool;
pub(crate) mod request;
