//! What a client sees when the edge says no: host refusals, authentication, forbidden
//! addresses, malformed requests.

use veil_engine::{ProxyErrorType, Refusal, RefusedReason, TunnelTarget};

use crate::hosts::{EdgeHost, OneTunnel};
use crate::raw::RawClient;
use crate::{BUDGET, pair, target};

/// Runs one tunnel to `target` and returns how the client saw its refusal.
fn refusal_of(net: &mut crate::harness::Net, target: TunnelTarget) -> (RefusedReason, EdgeHost) {
    let mut client = OneTunnel::to(target);
    let mut edge = EdgeHost::default();
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| {
        c.refused.is_some() || c.opened
    });
    assert!(done, "no answer");
    (client.refused.expect("refused, not opened"), edge)
}

fn status(status: u16, error: Option<ProxyErrorType>) -> RefusedReason {
    RefusedReason::Status {
        status,
        proxy_error: error,
        proxy_status: error.map(|error| format!("veil;error={}", error.token())),
    }
}

#[test]
fn every_host_refusal_reaches_the_client_with_its_status_and_proxy_status() {
    let expected = [
        (Refusal::Prohibited, 403, "destination_ip_prohibited"),
        (Refusal::Denied, 403, "http_request_denied"),
        (Refusal::DnsError, 502, "dns_error"),
        (Refusal::DnsTimeout, 504, "dns_timeout"),
        (Refusal::ConnectionRefused, 502, "connection_refused"),
        (Refusal::ConnectionTimeout, 504, "connection_timeout"),
        (Refusal::Unreachable, 502, "destination_ip_unroutable"),
        (Refusal::ConnectionLimit, 503, "connection_limit_reached"),
        (Refusal::Internal, 500, "proxy_internal_error"),
    ];
    assert_eq!(expected.len(), Refusal::ALL.len());
    let mut net = pair(&[], None);
    for (refusal, code, token) in expected {
        let name = format!("refuse-{}.test", format!("{refusal:?}").to_lowercase());
        let (reason, edge) = refusal_of(&mut net, target(&name, 443));
        let RefusedReason::Status {
            status,
            proxy_error,
            proxy_status,
        } = reason
        else {
            panic!("{refusal:?}: {reason:?}");
        };
        assert_eq!(status, code, "{refusal:?}");
        assert_eq!(proxy_error.map(ProxyErrorType::token), Some(token));
        assert_eq!(
            proxy_status.as_deref(),
            Some(format!("veil;error={token}").as_str())
        );
        assert_eq!(edge.requests.len(), 1);
    }
    // All on one connection; the edge counted every refusal.
    assert_eq!(net.client.stats().connections_total, 1);
    assert_eq!(net.edge.stats().tunnels_refused, 9);
}

#[test]
fn a_missing_token_is_407_a_wrong_one_403_and_the_right_one_opens() {
    let mut net = pair(&["right", "other"], None);
    let (reason, edge) = refusal_of(&mut net, target("echo.test", 443));
    assert_eq!(reason, status(407, Some(ProxyErrorType::HttpRequestDenied)));
    assert!(edge.requests.is_empty());

    let mut net = pair(&["right", "other"], Some("wrong"));
    let (reason, edge) = refusal_of(&mut net, target("echo.test", 443));
    assert_eq!(reason, status(403, Some(ProxyErrorType::HttpRequestDenied)));
    assert!(edge.requests.is_empty());
    assert_eq!(net.edge.stats().auth_failures, 1);

    let mut net = pair(&["right", "other"], Some("other"));
    let mut client = OneTunnel::to(target("echo.test", 443));
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.opened));
    assert_eq!(edge.requests[0].1.token_index, Some(1));
}

#[test]
fn a_forbidden_ip_literal_is_refused_by_the_engine() {
    let mut net = pair(&[], None);
    for host in ["127.0.0.1", "::1", "10.1.2.3"] {
        let ip: std::net::IpAddr = host.parse().expect("ip");
        let (reason, edge) = refusal_of(&mut net, TunnelTarget::new(ip, 22));
        assert_eq!(
            reason,
            status(403, Some(ProxyErrorType::DestinationIpProhibited))
        );
        assert!(edge.requests.is_empty(), "the host never saw {host}");
    }
    // A public address (not a documentation range: those are refused) is the host's to decide.
    let ip: std::net::IpAddr = "1.1.1.1".parse().expect("ip");
    let mut client = OneTunnel::to(TunnelTarget::new(ip, 80));
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.opened));
    assert_eq!(
        net.edge.check_egress("127.0.0.1".parse().expect("ip")),
        Err(Refusal::Prohibited)
    );
}

#[test]
fn malformed_connect_requests_get_400() {
    let mut edge = crate::edge(&[]);
    let mut raw = RawClient::new(false);
    for authority in [
        "no-port.test",
        "bad host.test:443",
        "[::1:443",
        "host.test:99999",
    ] {
        let answer = raw.request(
            &mut edge,
            &[(":method", "CONNECT"), (":authority", authority)],
        );
        assert_eq!(
            answer,
            (
                "400".to_owned(),
                Some("veil;error=http_request_error".to_owned())
            ),
            "{authority}"
        );
    }
    let answer = raw.request(&mut edge, &[(":method", "CONNECT")]);
    assert_eq!(answer.0, "400");
    let answer = raw.request(
        &mut edge,
        &[
            (":method", "CONNECT"),
            (":authority", "a.test:1"),
            (":path", "/"),
        ],
    );
    assert_eq!(answer.0, "400");
    let answer = raw.request(&mut edge, &[(":method", "GET"), (":authority", "a.test:1")]);
    assert_eq!(answer.0, "405");
    // The connection survived every refusal, and the host never heard of them.
    assert!(raw.quic.is_established() && !raw.quic.is_closed());
    assert_eq!(edge.stats().tunnels_total, 0);
}
