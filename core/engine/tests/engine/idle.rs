//! `QuicConfig::tcp_idle_timeout`: a TCP tunnel with no bytes either way for the timeout is
//! reset and reported closed (`IdleTimeout`); one that keeps moving stays open.
//! `QuicConfig::tunnel_max_duration`: a tunnel is reset at its maximum duration however
//! busy (`MaxDuration`). An edge rule's `idle_timeout_ms` and `max_duration_ms` replace
//! both for the requests it matches.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use veil_engine::rules::{EdgeAction, RuleSpec};
use veil_engine::{CloseReason, Config, EdgeConfig, Endpoint, Event, QuicConfig, TunnelId};

use crate::raw::RawClient;

fn edge_with_idle(timeout: Duration) -> Endpoint {
    let config = Config {
        quic: QuicConfig {
            tcp_idle_timeout: Some(timeout),
            ..QuicConfig::default()
        },
        ..Config::edge(EdgeConfig::default())
    };
    Endpoint::new(config, Instant::now()).expect("edge")
}

#[test]
fn a_silent_tunnel_is_reset_and_a_busy_one_is_not() {
    let timeout = Duration::from_millis(300);
    let mut edge = edge_with_idle(timeout);
    let target = "93.184.216.34:443";
    // The busy tunnel sends a byte every 100 ms for well past the timeout.
    let Ran {
        ids,
        closed,
        mut raw,
        streams,
    } = run_tunnels(&mut edge, &[target, target], &[1], timeout * 3);
    assert_eq!(
        closed,
        [(ids[0], CloseReason::IdleTimeout)],
        "only the silent tunnel closed"
    );
    let code = raw.wait_reset(&mut edge, &mut |_, _| {}, streams[0]);
    assert_eq!(code, 0x010f, "H3_CONNECT_ERROR");
}

/// An `allow` rule for `target` with the given timeouts.
fn timed_rule(target: &str, idle_ms: Option<u64>, max_ms: Option<u64>) -> RuleSpec<EdgeAction> {
    RuleSpec {
        target: vec![target.to_owned()],
        idle_timeout_ms: idle_ms,
        max_duration_ms: max_ms,
        ..crate::rules::rule(EdgeAction::Allow)
    }
}

/// What [`run_tunnels`] saw: the edge's tunnel IDs (in the order of the targets), the
/// closes it reported, and the raw client with its streams (in the same order).
struct Ran {
    ids: Vec<TunnelId>,
    closed: Vec<(TunnelId, CloseReason)>,
    raw: RawClient,
    streams: Vec<u64>,
}

/// Opens one tunnel to each of `targets` through a raw client and pokes those named in
/// `busy` with a byte every 100 ms for `run`.
fn run_tunnels(edge: &mut Endpoint, targets: &[&str], busy: &[usize], run: Duration) -> Ran {
    let mut raw = RawClient::new(false);
    let tunnels: RefCell<Vec<TunnelId>> = RefCell::new(Vec::new());
    let closed: RefCell<Vec<(TunnelId, CloseReason)>> = RefCell::new(Vec::new());
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::TunnelRequest { tunnel, .. } => {
            endpoint.accept_tunnel(tunnel).expect("accept");
            tunnels.borrow_mut().push(tunnel);
        }
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 64];
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                if recv.len == 0 {
                    break;
                }
            }
        }
        Event::TunnelClosed { tunnel, reason } => closed.borrow_mut().push((tunnel, reason)),
        _ => {}
    };
    let streams: Vec<u64> = targets
        .iter()
        .map(|target| {
            let headers = [(":method", "CONNECT"), (":authority", *target)];
            let (stream, status, _) = raw.send_request(edge, &mut on_edge, &headers);
            assert_eq!(status, "200", "{target}");
            stream
        })
        .collect();
    let start = Instant::now();
    let last_poke = Cell::new(Instant::now());
    raw.drive(edge, &mut on_edge, |raw| {
        if last_poke.get().elapsed() >= Duration::from_millis(100) {
            last_poke.set(Instant::now());
            let h3 = raw.h3.as_mut()?;
            for &index in busy {
                let _ = h3.send_body(&mut raw.quic, streams[index], b"x", false);
            }
        }
        (start.elapsed() >= run).then_some(())
    });
    let ids = tunnels.into_inner();
    assert_eq!(ids.len(), targets.len());
    Ran {
        ids,
        closed: closed.into_inner(),
        raw,
        streams,
    }
}

#[test]
fn a_busy_tunnel_ends_at_its_maximum_duration_unless_its_rule_lifts_it() {
    let limit = Duration::from_millis(300);
    let config = Config {
        quic: QuicConfig {
            tunnel_max_duration: Some(limit),
            ..QuicConfig::default()
        },
        ..Config::edge(EdgeConfig {
            rules: vec![timed_rule("93.184.216.35/32", None, Some(0))],
            ..EdgeConfig::default()
        })
    };
    let mut edge = Endpoint::new(config, Instant::now()).expect("edge");
    let targets = ["93.184.216.34:443", "93.184.216.35:443"];
    let Ran {
        ids,
        closed,
        mut raw,
        streams,
    } = run_tunnels(&mut edge, &targets, &[0, 1], limit * 3);
    assert_eq!(
        closed,
        [(ids[0], CloseReason::MaxDuration)],
        "only the tunnel under the global limit ended, busy as it was"
    );
    let code = raw.wait_reset(&mut edge, &mut |_, _| {}, streams[0]);
    assert_eq!(code, 0x010f, "H3_CONNECT_ERROR");
}

#[test]
fn a_rule_sets_the_idle_timeout_of_the_tunnels_it_matches() {
    // No global idle timeout; the rule gives its tunnels 300 ms.
    let config = Config::edge(EdgeConfig {
        rules: vec![timed_rule("93.184.216.36/32", Some(300), None)],
        ..EdgeConfig::default()
    });
    let mut edge = Endpoint::new(config, Instant::now()).expect("edge");
    let targets = ["93.184.216.34:443", "93.184.216.36:443"];
    let Ran { ids, closed, .. } = run_tunnels(&mut edge, &targets, &[], Duration::from_millis(900));
    assert_eq!(closed, [(ids[1], CloseReason::IdleTimeout)]);

    // And a rule lifts a global one.
    let config = Config {
        quic: QuicConfig {
            tcp_idle_timeout: Some(Duration::from_millis(300)),
            ..QuicConfig::default()
        },
        ..Config::edge(EdgeConfig {
            rules: vec![timed_rule("93.184.216.36/32", Some(0), None)],
            ..EdgeConfig::default()
        })
    };
    let mut edge = Endpoint::new(config, Instant::now()).expect("edge");
    let Ran { ids, closed, .. } = run_tunnels(&mut edge, &targets, &[], Duration::from_millis(900));
    assert_eq!(closed, [(ids[0], CloseReason::IdleTimeout)]);
}
