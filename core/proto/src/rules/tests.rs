//! The matcher against a naive reference: the first rule, in order, whose conditions hold,
//! each evaluated literally from the module documentation with its own code (string
//! suffixes, shifted integers), not with the index nor the types' `contains`/`matches`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn reference<'r, A>(rules: &'r [Rule<A>], query: &Query<'_>) -> Option<(usize, &'r A)> {
    rules
        .iter()
        .enumerate()
        .find(|(_, rule)| reference_holds(rule, query))
        .map(|(at, rule)| (at, &rule.action))
}

fn reference_holds<A>(rule: &Rule<A>, query: &Query<'_>) -> bool {
    let destination = (rule.targets.is_empty() && rule.hosts.is_empty())
        || query
            .addr
            .is_some_and(|addr| rule.targets.iter().any(|p| reference_inside(p, addr)))
        || query
            .name
            .is_some_and(|name| rule.hosts.iter().any(|h| reference_name(h, name)));
    let ports = rule.ports.is_empty()
        || rule
            .ports
            .iter()
            .any(|r| (r.first()..=r.last()).contains(&query.port));
    let protocols = rule.protocols.iter().any(|p| p == query.protocol);
    let identities = rule.identities.is_empty()
        || query
            .identity
            .is_some_and(|id| rule.identities.iter().any(|i| i.as_str() == id));
    let snis = rule.snis.is_empty()
        || query
            .sni
            .is_some_and(|sni| rule.snis.iter().any(|p| reference_name(p, sni)));
    destination && ports && protocols && identities && snis
}

/// `::ffff:a.b.c.d` is `a.b.c.d`; then same family and the same leading bits.
fn reference_inside(prefix: &IpPrefix, addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => {
            let o = v6.octets();
            if o[..10].iter().all(|&b| b == 0) && o[10] == 0xff && o[11] == 0xff {
                IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
            } else {
                IpAddr::V6(v6)
            }
        }
        v4 @ IpAddr::V4(_) => v4,
    };
    let drop = |width: u32| width - u32::from(prefix.len());
    match (prefix.addr(), addr) {
        (IpAddr::V4(p), IpAddr::V4(a)) => {
            u32::from(p).checked_shr(drop(32)).unwrap_or(0)
                == u32::from(a).checked_shr(drop(32)).unwrap_or(0)
        }
        (IpAddr::V6(p), IpAddr::V6(a)) => {
            u128::from(p).checked_shr(drop(128)).unwrap_or(0)
                == u128::from(a).checked_shr(drop(128)).unwrap_or(0)
        }
        _ => false,
    }
}

/// Through the pattern's text: lowercase the query, drop one trailing dot, compare.
fn reference_name(pattern: &NamePattern, name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let query = lower.strip_suffix('.').unwrap_or(&lower);
    let text = pattern.to_string();
    match text.strip_prefix("*.") {
        Some(parent) => query.ends_with(&format!(".{parent}")) && query.len() > parent.len() + 1,
        None => query == text,
    }
}

const LABELS: &[&str] = &["a", "b", "example", "com", "x-y", "_srv", "z9", "B"];

/// A name from a few labels, in random case, sometimes with a trailing dot (or two, or an
/// empty label, which patterns refuse and queries may carry).
fn name_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(LABELS), 1..4),
        any::<u8>(),
        0u8..8,
    )
        .prop_map(|(labels, case, dots)| {
            let mut text: String = labels
                .join(".")
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if case >> (i % 8) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            match dots {
                0 | 1 => text.push('.'),
                2 => text.push_str(".."),
                3 => text.insert(0, '.'),
                _ => {}
            }
            text
        })
}

fn pattern() -> impl Strategy<Value = NamePattern> {
    (any::<bool>(), name_text()).prop_filter_map("a valid pattern", |(suffix, name)| {
        let text = if suffix { format!("*.{name}") } else { name };
        text.parse().ok()
    })
}

const V4_BASES: &[u32] = &[
    0x0a00_0000,
    0x0a01_0203,
    0xc0a8_0100,
    0xc0a8_01ff,
    0,
    u32::MAX,
];
const V6_BASES: &[u128] = &[
    0x2001_0db8 << 96,
    (0x2001_0db8 << 96) | (0xffff << 64),
    0,
    u128::MAX,
    0xffff_0000_0000, // ::ffff:0.0.0.0
];

fn v4_near() -> impl Strategy<Value = u32> {
    (prop::sample::select(V4_BASES), any::<u32>(), 0u32..33).prop_map(|(base, noise, bits)| {
        base ^ (noise & 1u32.checked_shl(bits).map_or(u32::MAX, |b| b - 1))
    })
}

fn v6_near() -> impl Strategy<Value = u128> {
    (prop::sample::select(V6_BASES), any::<u128>(), 0u32..129).prop_map(|(base, noise, bits)| {
        base ^ (noise & 1u128.checked_shl(bits).map_or(u128::MAX, |b| b - 1))
    })
}

fn prefix() -> impl Strategy<Value = IpPrefix> {
    prop_oneof![
        (v4_near(), 0u8..=32).prop_map(|(bits, len)| {
            let masked = bits & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpPrefix::new(IpAddr::V4(masked.into()), len).unwrap()
        }),
        (v6_near(), 0u8..=128).prop_map(|(bits, len)| {
            let masked = bits & u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpPrefix::new(IpAddr::V6(masked.into()), len).unwrap()
        }),
    ]
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4_near().prop_map(|b| IpAddr::V4(b.into())),
        v6_near().prop_map(|b| IpAddr::V6(b.into())),
        v4_near().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

const PORTS: &[u16] = &[0, 1, 80, 443, 444, 1000, 1005, 65535];

fn port_range() -> impl Strategy<Value = PortRange> {
    (prop::sample::select(PORTS), 0u16..10)
        .prop_map(|(first, span)| PortRange::new(first, first.saturating_add(span)).unwrap())
}

const IDENTITIES: &[&str] = &["alice", "Alice", "bob", "carol"];

fn protocols() -> impl Strategy<Value = ProtocolSet> {
    prop_oneof![
        4 => Just(ProtocolSet::ALL),
        1 => (0u8..8).prop_map(|bits| {
            Protocol::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| bits >> i & 1 == 1)
                .map(|(_, p)| p)
                .collect()
        }),
    ]
}

fn some_of<T: core::fmt::Debug>(
    item: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = Vec<T>> {
    prop_oneof![
        2 => Just(()).prop_map(|()| Vec::new()),
        1 => prop::collection::vec(item, 1..=max),
    ]
}

fn rule() -> impl Strategy<Value = Rule<usize>> {
    (
        some_of(prefix(), 3),
        some_of(pattern(), 3),
        some_of(port_range(), 2),
        protocols(),
        some_of(prop::sample::select(IDENTITIES).prop_map(String::from), 2),
        some_of(pattern(), 2),
    )
        .prop_map(
            |(targets, hosts, ports, protocols, identities, snis)| Rule {
                targets,
                hosts,
                ports,
                protocols,
                identities,
                snis,
                action: 0,
            },
        )
}

fn rules() -> impl Strategy<Value = Vec<Rule<usize>>> {
    prop::collection::vec(rule(), 0..40).prop_map(|mut rules| {
        for (at, rule) in rules.iter_mut().enumerate() {
            rule.action = at;
        }
        rules
    })
}

#[derive(Debug, Clone)]
struct OwnedQuery {
    addr: Option<IpAddr>,
    name: Option<String>,
    port: u16,
    protocol: Protocol,
    identity: Option<String>,
    sni: Option<String>,
}

impl OwnedQuery {
    fn borrow(&self) -> Query<'_> {
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

fn query() -> impl Strategy<Value = OwnedQuery> {
    (
        prop::option::weighted(0.7, address()),
        prop::option::weighted(0.7, name_text()),
        prop::sample::select(PORTS),
        prop::sample::select(&Protocol::ALL[..]),
        prop::option::weighted(0.7, prop::sample::select(IDENTITIES).prop_map(String::from)),
        prop::option::weighted(0.7, name_text()),
    )
        .prop_map(|(addr, name, port, protocol, identity, sni)| OwnedQuery {
            addr,
            name,
            port,
            protocol,
            identity,
            sni,
        })
}

fn check(rules: &[Rule<usize>], set: &RuleSet<usize>, query: &Query<'_>) {
    let expected = reference(rules, query);
    assert_eq!(set.first_match(query), expected, "{query:?}");
    // A name-only lookup answered at or before the first address rule is final.
    if let Some((at, _)) = set.first_match(&Query {
        addr: None,
        ..*query
    }) {
        if set.first_address_rule().is_none_or(|first| at <= first) {
            assert_eq!(
                expected.map(|(i, _)| i),
                Some(at),
                "early answer for {query:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn first_match_is_the_reference(rules in rules(), queries in prop::collection::vec(query(), 1..16)) {
        let set = RuleSet::new(rules.clone());
        prop_assert_eq!(set.len(), rules.len());
        prop_assert_eq!(
            set.first_address_rule(),
            rules.iter().position(|r| !r.targets.is_empty())
        );
        for query in &queries {
            check(&rules, &set, &query.borrow());
        }
        // Queries built from the rules themselves, so that most of them hit something.
        for (rule, query) in rules.iter().zip(queries.iter().cycle()) {
            let mut hit = query.clone();
            if let Some(target) = rule.targets.first() {
                hit.addr = Some(target.addr());
            }
            if let Some(host) = rule.hosts.first() {
                hit.name = Some(match host {
                    NamePattern::Exact(name) => name.as_str().to_ascii_uppercase(),
                    NamePattern::Suffix(parent) => format!("x.{parent}."),
                });
            }
            if let Some(ports) = rule.ports.first() {
                hit.port = ports.last();
            }
            if let Some(protocol) = rule.protocols.iter().next() {
                hit.protocol = protocol;
            }
            if let Some(identity) = rule.identities.first() {
                hit.identity = Some(identity.clone());
            }
            if let Some(sni) = rule.snis.first() {
                hit.sni = Some(format!("www.{}", sni.name()));
            }
            check(&rules, &set, &hit.borrow());
        }
    }

    #[test]
    fn display_parses_back(p in prefix(), n in pattern(), r in port_range()) {
        prop_assert_eq!(p.to_string().parse::<IpPrefix>(), Ok(p));
        prop_assert_eq!(n.to_string().parse::<NamePattern>(), Ok(n.clone()));
        prop_assert_eq!(r.to_string().parse::<PortRange>(), Ok(r));
    }
}

#[test]
fn empty_set_matches_nothing() {
    let set: RuleSet<()> = RuleSet::empty();
    assert!(set.is_empty() && set.rules().is_empty());
    let query = Query {
        addr: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        name: Some("example.com"),
        port: 1,
        protocol: Protocol::Udp,
        identity: None,
        sni: None,
    };
    assert_eq!(set.first_match(&query), None);
    assert_eq!(set.first_address_rule(), None);
}

#[test]
fn destination_is_one_condition_and_order_wins() {
    let mut web = Rule::any("web");
    web.targets = vec!["192.0.2.0/24".parse().unwrap()];
    web.hosts = vec!["*.example.com".parse().unwrap()];
    web.ports = vec!["443".parse().unwrap()];
    let mut alice = Rule::any("alice");
    alice.identities = vec!["alice".into()];
    alice.snis = vec!["secret.example.org".parse().unwrap()];
    let mut udp = Rule::any("udp");
    udp.protocols = Protocol::Udp.into();
    let mut never = Rule::any("never");
    never.protocols = ProtocolSet::EMPTY;
    let set: RuleSet<&str> = [web, alice, udp, never, Rule::any("rest")]
        .into_iter()
        .collect();

    let base = Query {
        addr: None,
        name: None,
        port: 443,
        protocol: Protocol::Tcp,
        identity: None,
        sni: None,
    };
    let at = |q: Query<'_>| set.first_match(&q).map(|(i, a)| (i, *a));
    assert_eq!(at(base), Some((4, "rest")));
    // Either the address or the name meets the destination condition.
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    assert_eq!(
        at(Query {
            addr: Some(v4),
            ..base
        }),
        Some((0, "web"))
    );
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
    assert_eq!(
        at(Query {
            addr: Some(mapped),
            ..base
        }),
        Some((0, "web"))
    );
    assert_eq!(
        at(Query {
            name: Some("A.EXAMPLE.COM."),
            ..base
        }),
        Some((0, "web"))
    );
    assert_eq!(
        at(Query {
            name: Some("example.com"),
            ..base
        }),
        Some((4, "rest"))
    );
    let other = IpAddr::V4(Ipv4Addr::new(192, 0, 3, 9));
    let both = Query {
        addr: Some(other),
        name: Some("www.example.com"),
        ..base
    };
    assert_eq!(at(both), Some((0, "web")));
    assert_eq!(at(Query { port: 80, ..both }), Some((4, "rest")));
    // Identity is case-sensitive; SNI is a name.
    let alice = Query {
        identity: Some("alice"),
        sni: Some("Secret.Example.org."),
        ..base
    };
    assert_eq!(at(alice), Some((1, "alice")));
    assert_eq!(
        at(Query {
            identity: Some("Alice"),
            ..alice
        }),
        Some((4, "rest"))
    );
    assert_eq!(at(Query { sni: None, ..alice }), Some((4, "rest")));
    assert_eq!(
        at(Query {
            protocol: Protocol::Udp,
            ..base
        }),
        Some((2, "udp"))
    );
    assert_eq!(set.first_address_rule(), Some(0));
}

#[test]
fn many_prefix_lengths_and_suffix_depths() {
    let mut rules = Vec::new();
    for len in (0..=32).rev() {
        let mut rule = Rule::any(len);
        let bits = 0xc0a8_0101u32 & u32::MAX.checked_shl(32 - len).unwrap_or(0);
        rule.targets =
            vec![IpPrefix::new(IpAddr::V4(bits.into()), u8::try_from(len).unwrap()).unwrap()];
        rule.ports = vec![PortRange::single(u16::try_from(len).unwrap())];
        rules.push(rule);
    }
    let labels: Vec<String> = (0..40).map(|i| format!("l{i}")).collect();
    for depth in 1..40 {
        let mut rule = Rule::any(100 + u32::try_from(depth).unwrap());
        rule.hosts = vec![format!("*.{}", labels[depth..].join(".")).parse().unwrap()];
        rule.ports = vec![PortRange::single(u16::try_from(100 + depth).unwrap())];
        rules.push(rule);
    }
    let set = RuleSet::new(rules.clone());
    let name = labels.join(".");
    for port in 0..200 {
        let query = Query {
            addr: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))),
            name: Some(&name),
            port,
            protocol: Protocol::Ip,
            identity: None,
            sni: None,
        };
        assert_eq!(
            set.first_match(&query),
            reference(&rules, &query),
            "port {port}"
        );
        assert_eq!(
            set.first_match(&query).is_some(),
            port <= 32 || (101..140).contains(&port)
        );
    }
}
