//! First-match routing rules, compiled for lookups that never allocate (needs `alloc`).
//!
//! A [`RuleSet`] holds an ordered list of [`Rule`]s, each a set of conditions and an action
//! of the caller's type. [`RuleSet::first_match`] answers a [`Query`] (one request) with the
//! first rule, by index, that matches it. Compiling allocates; a lookup does not, and its
//! cost depends on the query's shape (the number of prefix lengths in use, the labels of
//! the name) rather than on the number of rules.
//!
//! # Semantics
//!
//! A rule matches a query when every condition the rule sets holds. An empty list sets no
//! condition, and neither does [`ProtocolSet::ALL`].
//!
//! - **Destination** (`targets` and `hosts`, one condition): when either list is non-empty,
//!   it holds if `query.addr` is inside one of `targets` **or** `query.name` matches one of
//!   `hosts`. An absent address is inside no prefix; an absent name matches no pattern.
//!   Before the comparison an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is taken as
//!   the IPv4 address it maps ([`IpAddr::to_canonical`]): it reaches the same host, so a
//!   rule on `192.0.2.0/24` must not be sidestepped by the other spelling. Prefixes
//!   themselves compare literally (an IPv6 prefix inside `::ffff:0:0/96` therefore matches
//!   no query address).
//! - **Ports**: `query.port` is in one of `ports` (inclusive ranges).
//! - **Protocols**: `protocols` contains `query.protocol` ([`ProtocolSet::EMPTY`] holds
//!   none, so a rule with it never matches).
//! - **Identities**: `query.identity` is present and equal, byte for byte (case-sensitive),
//!   to one of `identities`.
//! - **SNIs**: `query.sni` is present and matches one of `snis`.
//! - **Order**: the first matching rule (lowest index) wins; there is no other priority.
//!
//! Names ([`NamePattern::matches`]): patterns are stored lowercased without a trailing
//! dot; a query name (or SNI) is compared ASCII case-insensitively after dropping one
//! trailing dot. `example.com` matches `example.com`, `EXAMPLE.com.`, not `www.example.com`
//! nor `example.com..`; `*.example.com` matches any name that ends in `.example.com` with
//! at least one byte before that dot (`a.example.com`, `a.b.example.com`), never
//! `example.com` itself. Query names are not validated: a name no pattern could spell
//! simply matches nothing.
//!
//! ```
//! use veil_proto::rules::{Protocol, ProtocolSet, Query, Rule, RuleSet};
//!
//! let rule = |targets: &[&str], hosts: &[&str], action| Rule {
//!     targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
//!     hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
//!     ports: Vec::new(),
//!     protocols: ProtocolSet::ALL,
//!     identities: Vec::new(),
//!     snis: Vec::new(),
//!     action,
//! };
//! let rules = RuleSet::new(vec![
//!     rule(&["10.0.0.0/8"], &["*.internal.example"], "refuse"),
//!     rule(&[], &["example.com", "*.example.com"], "via-eu"),
//!     rule(&[], &[], "direct"),
//! ]);
//! let query = Query {
//!     addr: None,
//!     name: Some("WWW.Example.com."),
//!     port: 443,
//!     protocol: Protocol::Tcp,
//!     identity: None,
//!     sni: None,
//! };
//! assert_eq!(rules.first_match(&query), Some((1, &"via-eu")));
//! let query = Query { addr: Some("10.1.2.3".parse().unwrap()), name: None, ..query };
//! assert_eq!(rules.first_match(&query), Some((0, &"refuse")));
//! assert_eq!(rules.first_address_rule(), Some(0));
//! ```
//!
//! # Costs
//!
//! A lookup probes one hash table per prefix length in use in the query's family, one
//! per label boundary of the query name for which some `*.` parent has that many labels,
//! and one for the exact name; then it walks, in order, the rules each probe found and the
//! rules without a destination condition, testing the other conditions, and stops each walk
//! at the best match so far. Two shapes stay linear: many rules without `targets` or
//! `hosts` (each is tried until one matches), and many rules naming the same prefix or
//! name with other conditions that fail (say one prefix with a thousand port rules). Both
//! are unusual in routing tables; put catch-alls last.
//!
//! # Deciding on a name before resolving it
//!
//! A caller that has a name but no address yet may look up with `addr: None`. Any answer
//! at or before [`RuleSet::first_address_rule`] is final: no earlier rule needs an address.
//! A later answer (or none) may be preempted by an address rule once the name resolves.

mod address_index;
mod hash;
mod name;
mod name_index;
mod port;
mod postings;
mod prefix;
mod protocol;
mod set;
#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

pub use name::{DomainName, MAX_LABEL_LEN, MAX_NAME_LEN, NameError, NamePattern};
pub use port::{PortRange, PortRangeError};
pub use prefix::{IpPrefix, PrefixError};
pub use protocol::{Protocol, ProtocolSet, UnknownProtocol};
pub use set::RuleSet;

/// One rule: conditions, all of which must hold, and the action taken when they do.
///
/// An empty list (and [`ProtocolSet::ALL`]) sets no condition; see the
/// [module documentation](self) for each condition's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<A> {
    /// Destination addresses; with `hosts`, one condition: either may hold.
    pub targets: Vec<IpPrefix>,
    /// Destination names; with `targets`, one condition: either may hold.
    pub hosts: Vec<NamePattern>,
    /// Destination ports.
    pub ports: Vec<PortRange>,
    /// Transports; [`ProtocolSet::ALL`] for any.
    pub protocols: ProtocolSet,
    /// Client identities (token names, certificate subjects), compared exactly.
    pub identities: Vec<String>,
    /// TLS server names the client sent inside its tunnel.
    pub snis: Vec<NamePattern>,
    /// What to do with a request the rule matches.
    pub action: A,
}

impl<A> Rule<A> {
    /// A rule with no condition: it matches every request.
    pub fn any(action: A) -> Self {
        Rule {
            targets: Vec::new(),
            hosts: Vec::new(),
            ports: Vec::new(),
            protocols: ProtocolSet::ALL,
            identities: Vec::new(),
            snis: Vec::new(),
            action,
        }
    }

    /// Whether every condition holds but the destination, which the index has checked.
    fn holds_besides_destination(&self, query: &Query<'_>) -> bool {
        self.protocols.contains(query.protocol)
            && (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(query.port)))
            && (self.identities.is_empty()
                || query
                    .identity
                    .is_some_and(|id| self.identities.iter().any(|i| i == id)))
            && (self.snis.is_empty()
                || query
                    .sni
                    .is_some_and(|sni| self.snis.iter().any(|p| p.matches(sni))))
    }
}

/// What a rule looks at in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The destination address, when known: an IP literal, or a resolved address.
    pub addr: Option<IpAddr>,
    /// The destination DNS name, when the request named one.
    pub name: Option<&'a str>,
    /// The destination port.
    pub port: u16,
    /// The transport asked for.
    pub protocol: Protocol,
    /// The client's identity, when authenticated.
    pub identity: Option<&'a str>,
    /// The TLS server name seen inside the tunnel (see [`crate::sniff`]).
    pub sni: Option<&'a str>,
}
