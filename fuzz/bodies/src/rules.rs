//! `veil_proto::rules`: a small rule list and queries built with `arbitrary` from a few
//! pools (prefixes near some bases, names from a few labels in mixed case, ports, identities)
//! so that queries hit rules; plus one query aimed at each rule.
//!
//! - `RuleSet::first_match` is the first rule, in order, whose conditions hold, each
//!   evaluated literally by the reference below (its own code: shifted integers, string
//!   suffixes), never through the index.
//! - `first_address_rule` is the first rule with targets, and a name-only answer at or
//!   before it is the answer with the address too.
//! - Nothing panics, whatever the query's name (arbitrary text included).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::rules::{
    IpPrefix, NamePattern, PortRange, Protocol, ProtocolSet, Query, Rule, RuleSet,
};

const LABELS: &[&str] = &["a", "b", "example", "com", "x-y", "_srv", "z9", "B", "123"];
const V4_BASES: &[u32] = &[0x0a00_0000, 0x0a01_0203, 0xc0a8_0100, 0, u32::MAX];
const V6_BASES: &[u128] = &[
    0x2001_0db8 << 96,
    (0x2001_0db8 << 96) | (0xffff << 64),
    0,
    u128::MAX,
    0xffff_0000_0000,
];
const PORTS: &[u16] = &[0, 1, 80, 443, 444, 1000, 65535];
const IDENTITIES: &[&str] = &["alice", "Alice", "bob", ""];

#[derive(Debug, Arbitrary)]
struct AddrInput {
    v6: bool,
    mapped: bool,
    base: u8,
    noise: u128,
    noise_bits: u8,
}

impl AddrInput {
    fn addr(&self) -> IpAddr {
        let bits = u32::from(self.noise_bits % 129);
        let noise = self.noise & 1u128.checked_shl(bits).map_or(u128::MAX, |b| b - 1);
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(pick(V6_BASES, self.base) ^ noise))
        } else {
            #[allow(clippy::cast_possible_truncation)] // The low 32 bits are the noise.
            let v4 = Ipv4Addr::from(pick(V4_BASES, self.base) ^ noise as u32);
            if self.mapped {
                IpAddr::V6(v4.to_ipv6_mapped())
            } else {
                IpAddr::V4(v4)
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
struct PrefixInput {
    addr: AddrInput,
    len: u8,
}

impl PrefixInput {
    fn prefix(&self) -> IpPrefix {
        // An IPv4 input with `mapped` gives an IPv6 prefix in ::ffff:0:0/96, which the
        // matcher never matches (queries are mapped to IPv4 first).
        let addr = self.addr.addr();
        let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let len = self.len % (width + 1);
        let addr = match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(u32::from(32 - len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        IpPrefix::new(addr, len).expect("host bits cleared")
    }
}

#[derive(Debug, Arbitrary)]
enum NameInput {
    /// Labels from the pool; case flips; a trailing dot (or two).
    Labels {
        labels: Vec<u8>,
        case: u16,
        dots: u8,
    },
    Raw(String),
}

impl NameInput {
    fn text(&self) -> String {
        match self {
            NameInput::Raw(text) => text.clone(),
            NameInput::Labels { labels, case, dots } => {
                let labels: Vec<&str> = labels.iter().take(5).map(|&i| pick(LABELS, i)).collect();
                let mut text: String = labels
                    .join(".")
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if case >> (i % 16) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                match dots % 4 {
                    1 => text.push('.'),
                    2 => text.push_str(".."),
                    _ => {}
                }
                text
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
struct PatternInput {
    suffix: bool,
    name: NameInput,
}

impl PatternInput {
    fn pattern(&self) -> Option<NamePattern> {
        let name = self.name.text();
        let text = if self.suffix {
            format!("*.{name}")
        } else {
            name
        };
        let pattern: NamePattern = text.parse().ok()?;
        // What parses displays as itself, normalized, and parses back equal.
        assert_eq!(
            pattern.to_string().parse::<NamePattern>(),
            Ok(pattern.clone())
        );
        Some(pattern)
    }
}

#[derive(Debug, Arbitrary)]
struct RuleInput {
    targets: Vec<PrefixInput>,
    hosts: Vec<PatternInput>,
    ports: Vec<(u8, u8)>,
    protocols: u8,
    identities: Vec<u8>,
    snis: Vec<PatternInput>,
}

impl RuleInput {
    fn rule(&self, action: usize) -> Rule<usize> {
        Rule {
            targets: self
                .targets
                .iter()
                .take(4)
                .map(PrefixInput::prefix)
                .collect(),
            hosts: self
                .hosts
                .iter()
                .take(4)
                .filter_map(PatternInput::pattern)
                .collect(),
            ports: self
                .ports
                .iter()
                .take(3)
                .map(|&(first, span)| {
                    let first = pick(PORTS, first);
                    PortRange::new(first, first.saturating_add(u16::from(span % 8)))
                        .expect("ordered")
                })
                .collect(),
            protocols: if self.protocols & 0b1000 == 0 {
                ProtocolSet::ALL
            } else {
                Protocol::ALL
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| self.protocols >> i & 1 == 1)
                    .map(|(_, p)| p)
                    .collect()
            },
            identities: self
                .identities
                .iter()
                .take(3)
                .map(|&i| pick(IDENTITIES, i).to_owned())
                .collect(),
            snis: self
                .snis
                .iter()
                .take(3)
                .filter_map(PatternInput::pattern)
                .collect(),
            action,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct QueryInput {
    addr: Option<AddrInput>,
    name: Option<NameInput>,
    port: u8,
    protocol: u8,
    identity: Option<u8>,
    sni: Option<NameInput>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    rules: Vec<RuleInput>,
    queries: Vec<QueryInput>,
}

/// An owned query, to aim queries at rules.
#[derive(Debug, Clone)]
struct Owned {
    addr: Option<IpAddr>,
    name: Option<String>,
    port: u16,
    protocol: Protocol,
    identity: Option<String>,
    sni: Option<String>,
}

impl Owned {
    fn query(&self) -> Query<'_> {
        Query {
            addr: self.addr,
            name: self.name.as_deref(),
            port: self.port,
            protocol: self.protocol,
            identity: self.identity.as_deref(),
            sni: self.sni.as_deref(),
        }
    }
}

fn pick<T: Copy>(pool: &[T], index: u8) -> T {
    pool[usize::from(index) % pool.len()]
}

/// Builds rules and queries, and checks every answer against the reference.
///
/// # Panics
///
/// When the matcher and the reference disagree.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let rules: Vec<Rule<usize>> = input
        .rules
        .iter()
        .take(48)
        .enumerate()
        .map(|(at, rule)| rule.rule(at))
        .collect();
    let set = RuleSet::new(rules.clone());
    assert_eq!(set.len(), rules.len());
    assert_eq!(
        set.first_address_rule(),
        rules.iter().position(|r| !r.targets.is_empty())
    );

    let mut queries: Vec<Owned> = input
        .queries
        .iter()
        .take(48)
        .map(|q| Owned {
            addr: q.addr.as_ref().map(AddrInput::addr),
            name: q.name.as_ref().map(NameInput::text),
            port: pick(PORTS, q.port),
            protocol: pick(&Protocol::ALL, q.protocol),
            identity: q.identity.map(|i| pick(IDENTITIES, i).to_owned()),
            sni: q.sni.as_ref().map(NameInput::text),
        })
        .collect();
    // One query aimed at each rule, on top of a generated one.
    if let Some(first) = queries.first().cloned() {
        for rule in &rules {
            queries.push(aimed_at(rule, first.clone()));
        }
    }
    for owned in &queries {
        let query = owned.query();
        let expected = reference(&rules, &query);
        assert_eq!(set.first_match(&query), expected, "{query:?}");
        let name_only = set.first_match(&Query {
            addr: None,
            ..query
        });
        if let Some((at, _)) = name_only {
            if set.first_address_rule().is_none_or(|first| at <= first) {
                assert_eq!(expected.map(|(i, _)| i), Some(at), "early answer");
            }
        }
    }
}

fn aimed_at(rule: &Rule<usize>, mut query: Owned) -> Owned {
    if let Some(target) = rule.targets.first() {
        query.addr = Some(target.addr());
    }
    if let Some(host) = rule.hosts.first() {
        query.name = Some(match host {
            NamePattern::Exact(name) => format!("{}.", name.as_str().to_ascii_uppercase()),
            NamePattern::Suffix(parent) => format!("x.{parent}"),
        });
    }
    if let Some(ports) = rule.ports.first() {
        query.port = ports.first();
    }
    if let Some(protocol) = rule.protocols.iter().last() {
        query.protocol = protocol;
    }
    if let Some(identity) = rule.identities.first() {
        query.identity = Some(identity.clone());
    }
    if let Some(sni) = rule.snis.first() {
        query.sni = Some(format!("a.{}", sni.name()));
    }
    query
}

fn reference<'r>(rules: &'r [Rule<usize>], query: &Query<'_>) -> Option<(usize, &'r usize)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, rule)| holds(rule, query))
        .map(|(at, rule)| (at, &rule.action))
}

fn holds(rule: &Rule<usize>, query: &Query<'_>) -> bool {
    let destination = (rule.targets.is_empty() && rule.hosts.is_empty())
        || query
            .addr
            .is_some_and(|a| rule.targets.iter().any(|p| inside(p, a)))
        || query
            .name
            .is_some_and(|n| rule.hosts.iter().any(|h| name_matches(h, n)));
    destination
        && (rule.ports.is_empty()
            || rule
                .ports
                .iter()
                .any(|r| r.first() <= query.port && query.port <= r.last()))
        && rule.protocols.iter().any(|p| p == query.protocol)
        && (rule.identities.is_empty()
            || query
                .identity
                .is_some_and(|id| rule.identities.iter().any(|i| i == id)))
        && (rule.snis.is_empty()
            || query
                .sni
                .is_some_and(|s| rule.snis.iter().any(|p| name_matches(p, s))))
}

/// IPv4-mapped IPv6 taken as IPv4; then same family and equal leading bits.
fn inside(prefix: &IpPrefix, addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    let keep = |width: u32| width - u32::from(prefix.len());
    match (prefix.addr(), addr) {
        (IpAddr::V4(p), IpAddr::V4(a)) => {
            u32::from(p).checked_shr(keep(32)).unwrap_or(0)
                == u32::from(a).checked_shr(keep(32)).unwrap_or(0)
        }
        (IpAddr::V6(p), IpAddr::V6(a)) => {
            u128::from(p).checked_shr(keep(128)).unwrap_or(0)
                == u128::from(a).checked_shr(keep(128)).unwrap_or(0)
        }
        _ => false,
    }
}

/// Through the pattern's text: the query lowercased, one trailing dot dropped.
fn name_matches(pattern: &NamePattern, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let query = lower.strip_suffix('.').unwrap_or(&lower);
    let text = pattern.to_string();
    match text.strip_prefix("*.") {
        Some(parent) => query.len() > parent.len() + 1 && query.ends_with(&format!(".{parent}")),
        None => query == text,
    }
}
