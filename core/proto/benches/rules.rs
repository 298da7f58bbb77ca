//! Lookups in a [`RuleSet`] of 100 000 rules: addresses (hit and miss) and names (exact
//! hit, suffix hit, miss). The aims: at most 100 ns per address lookup and 300 ns per name
//! lookup.
//!
//! Run: `cargo bench -p veil-proto --bench rules`. Criterion reports each batch of
//! [`BATCH`] lookups (and its element throughput); a plain timing loop then prints ns per
//! lookup for each case.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{Criterion, Throughput};
use veil_proto::rules::{PortRange, Protocol, ProtocolSet, Query, Rule, RuleSet};

const RULES: usize = 100_000;
const BATCH: usize = 1024;
const BATCH_U32: u32 = 1024;

/// A small deterministic generator, so every run looks up the same queries.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % n as u64).expect("small")
    }
}

fn v4_24(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).expect("small");
    Ipv4Addr::from(0x0a00_0000 | (i << 8))
}

fn v4_32(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).expect("small");
    Ipv4Addr::from(0x6440_0000 | i) // 100.64.0.0/10
}

fn v6_48(i: usize) -> Ipv6Addr {
    let i = u16::try_from(i).expect("small");
    Ipv6Addr::new(0x2001, 0x0db8, i, 0, 0, 0, 0, 0)
}

fn exact_name(i: usize) -> String {
    format!("host{i}.svc{}.example.com", i % 97)
}

fn suffix_parent(i: usize) -> String {
    format!("zone{i}.example.net")
}

/// 100 000 rules of five kinds, interleaved: IPv4 /24s, IPv4 /32s, IPv6 /48s, exact names
/// and `*.` names, a third of them with ports; a catch-all last.
fn rules() -> Vec<Rule<u32>> {
    let ports = [
        vec![],
        vec![PortRange::single(443)],
        vec![PortRange::single(80), PortRange::single(443)],
        vec![PortRange::new(7100, 7200).expect("ordered")],
    ];
    let mut rules = Vec::with_capacity(RULES);
    for at in 0..RULES - 1 {
        let n = at / 5;
        let mut rule = Rule::any(u32::try_from(at).expect("small"));
        match at % 5 {
            0 => rule.targets = vec![format!("{}/24", v4_24(n)).parse().expect("prefix")],
            1 => rule.targets = vec![IpAddr::V4(v4_32(n)).to_string().parse().expect("prefix")],
            2 => rule.targets = vec![format!("{}/48", v6_48(n)).parse().expect("prefix")],
            3 => rule.hosts = vec![exact_name(n).parse().expect("name")],
            _ => rule.hosts = vec![format!("*.{}", suffix_parent(n)).parse().expect("name")],
        }
        rule.ports.clone_from(&ports[n % 4 % 3 * (n % 2)]);
        if n % 7 == 0 {
            rule.protocols = ProtocolSet::from(Protocol::Tcp);
        }
        rules.push(rule);
    }
    rules.push(Rule::any(u32::MAX));
    rules
}

struct Case {
    name: &'static str,
    addrs: Vec<Option<IpAddr>>,
    names: Vec<Option<String>>,
}

fn cases() -> Vec<Case> {
    let per_kind = RULES / 5;
    let mut rng = Lcg(7);
    let mut addr_case = |name, f: &mut dyn FnMut(&mut Lcg) -> IpAddr| Case {
        name,
        addrs: (0..BATCH).map(|_| Some(f(&mut rng))).collect(),
        names: vec![None; BATCH],
    };
    let mut cases = vec![
        addr_case("address hit v4 /24", &mut |r| {
            IpAddr::V4(Ipv4Addr::from(u32::from(v4_24(r.below(per_kind))) | 0x4d))
        }),
        addr_case("address hit v4 /32", &mut |r| {
            IpAddr::V4(v4_32(r.below(per_kind)))
        }),
        addr_case("address hit v6 /48", &mut |r| {
            IpAddr::V6(Ipv6Addr::from(
                u128::from(v6_48(r.below(per_kind))) | 0xbeef,
            ))
        }),
        addr_case("address miss v4", &mut |r| {
            IpAddr::V4(Ipv4Addr::from(
                0xc612_0000 | u32::try_from(r.below(1 << 16)).expect("small"),
            ))
        }),
        addr_case("address miss v6", &mut |r| {
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb9,
                u16::try_from(r.below(1 << 16)).expect("small"),
                0,
                0,
                0,
                0,
                1,
            ))
        }),
    ];
    let mut name_case = |name, f: &mut dyn FnMut(&mut Lcg) -> String| Case {
        name,
        addrs: vec![None; BATCH],
        names: (0..BATCH).map(|_| Some(f(&mut rng))).collect(),
    };
    cases.push(name_case("name hit exact", &mut |r| {
        exact_name(r.below(per_kind))
    }));
    cases.push(name_case("name hit exact, mixed case + dot", &mut |r| {
        format!("{}.", exact_name(r.below(per_kind)).to_ascii_uppercase())
    }));
    cases.push(name_case("name hit suffix", &mut |r| {
        format!("www.api.{}", suffix_parent(r.below(per_kind)))
    }));
    cases.push(name_case("name miss", &mut |r| {
        format!("www.unknown{}.example.org", r.below(1 << 20))
    }));
    cases
}

/// Looks up every query of the case once; returns a sum of the matched indices.
fn run(set: &RuleSet<u32>, case: &Case) -> usize {
    let mut sum = 0;
    for (addr, name) in case.addrs.iter().zip(&case.names) {
        let query = Query {
            addr: *addr,
            name: name.as_deref(),
            port: 443,
            protocol: Protocol::Tcp,
            identity: None,
            sni: None,
        };
        if let Some((at, _)) = set.first_match(black_box(&query)) {
            sum += at;
        }
    }
    sum
}

fn main() {
    let started = Instant::now();
    let set = RuleSet::new(rules());
    println!("compiled {} rules in {:?}", set.len(), started.elapsed());
    let cases = cases();
    for case in &cases {
        // Each case's queries really take the path it is named after.
        let catch_all = RULES - 1;
        let misses = case.name.contains("miss");
        for (addr, name) in case.addrs.iter().zip(&case.names) {
            let query = Query {
                addr: *addr,
                name: name.as_deref(),
                port: 443,
                protocol: Protocol::Tcp,
                identity: None,
                sni: None,
            };
            let (at, _) = set.first_match(&query).expect("the catch-all");
            assert_eq!(at == catch_all, misses, "{}: {query:?}", case.name);
        }
    }

    let mut criterion = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .configure_from_args();
    let mut group = criterion.benchmark_group("rules_100k");
    group.throughput(Throughput::Elements(BATCH as u64));
    for case in &cases {
        group.bench_function(case.name, |b| b.iter(|| run(&set, case)));
    }
    group.finish();
    criterion.final_summary();

    println!(
        "\nns per lookup ({RULES} rules, {BATCH} distinct queries per case, best of 5 x 2000 rounds):"
    );
    for case in &cases {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let started = Instant::now();
            for _ in 0..2000 {
                black_box(run(&set, case));
            }
            let ns = started.elapsed().as_secs_f64() * 1e9 / f64::from(2000 * BATCH_U32);
            best = best.min(ns);
        }
        println!("  {:<34} {best:>7.1} ns", case.name);
    }
}
