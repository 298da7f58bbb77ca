//! The edge's cache of resolved names: the host asks it before a lookup
//! (`Endpoint::cached_addresses`); what it hands to `egress_plan` for a name is kept, and
//! so is a name refused as a DNS error, so that the next request for the name costs no
//! lookup.

use std::net::SocketAddr;
use std::time::Instant;

use veil_engine::{Endpoint, Event, Refusal, RefusedReason};

use crate::harness::Host;
use crate::hosts::OneTunnel;
use crate::{BUDGET, pair, target};

/// An edge host that resolves names itself (`nx.test` to nothing, others to one address)
/// unless the engine's cache answers, then refuses every tunnel (no dial needed here).
#[derive(Default)]
struct ResolvingEdge {
    lookups: usize,
}

impl Host for ResolvingEdge {
    fn on_event(&mut self, endpoint: &mut Endpoint, _now: Instant, event: Event) {
        let Event::TunnelRequest { tunnel, target, .. } = event else {
            return;
        };
        let addrs = endpoint.cached_addresses(tunnel).unwrap_or_else(|| {
            self.lookups += 1;
            if target.host.to_string() == "nx.test" {
                Vec::new()
            } else {
                vec![SocketAddr::from(([203, 0, 113, 80], target.port))]
            }
        });
        let refusal = match endpoint.egress_plan(tunnel, &addrs) {
            Ok(_) => Refusal::ConnectionRefused,
            Err(refusal) => refusal,
        };
        endpoint.refuse_tunnel(tunnel, refusal).expect("refuse");
    }
}

/// Opens a tunnel to `name` and waits for its refusal's status.
fn status_of(net: &mut crate::harness::Net, edge: &mut ResolvingEdge, name: &str) -> u16 {
    let mut client = OneTunnel::to(target(name, 80));
    assert!(net.run_until(&mut client, edge, BUDGET, |c, _| c.refused.is_some()));
    match client.refused {
        Some(RefusedReason::Status { status, .. }) => status,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn a_name_is_looked_up_once_for_a_burst_of_requests() {
    let mut net = pair(&[], None);
    let mut edge = ResolvingEdge::default();
    for _ in 0..3 {
        status_of(&mut net, &mut edge, "cached.test");
    }
    assert_eq!(edge.lookups, 1, "one lookup for three requests");
    let stats = net.edge.stats();
    assert_eq!((stats.dns_cache_hits, stats.dns_cache_misses), (2, 1));
    // Another name: its own lookup.
    status_of(&mut net, &mut edge, "other.test");
    assert_eq!(edge.lookups, 2);
}

#[test]
fn a_name_that_did_not_resolve_is_refused_again_without_a_lookup() {
    let mut net = pair(&[], None);
    let mut edge = ResolvingEdge::default();
    assert_eq!(status_of(&mut net, &mut edge, "nx.test"), 502);
    assert_eq!(status_of(&mut net, &mut edge, "nx.test"), 502);
    assert_eq!(edge.lookups, 1);
}
