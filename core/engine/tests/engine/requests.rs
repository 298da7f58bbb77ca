//! Every request gets an answer: a kind of tunnel the host does not serve is answered 501
//! by the engine at once, and a request the host leaves unanswered is refused 504 when
//! `EdgeConfig::request_timeout` passes. A late answer finds no tunnel.

use std::time::{Duration, Instant};

use veil_engine::{
    Config, EdgeConfig, Endpoint, Event, TunnelError, TunnelId, TunnelKind, TunnelKinds,
};

use crate::raw::RawClient;

fn edge_with(configure: impl FnOnce(&mut EdgeConfig)) -> Endpoint {
    let mut config = EdgeConfig::default();
    configure(&mut config);
    Endpoint::new(Config::edge(config), Instant::now()).expect("edge")
}

fn connect_udp() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "CONNECT"),
        (":protocol", "connect-udp"),
        (":scheme", "https"),
        (":authority", "localhost:4433"),
        (":path", "/.well-known/masque/udp/example.com/53/"),
    ]
}

fn connect() -> Vec<(&'static str, &'static str)> {
    vec![(":method", "CONNECT"), (":authority", "example.com:443")]
}

/// The 501 of a kind the host does not serve.
const NOT_SERVED: (&str, &str) = ("501", "veil;error=http_request_denied");

#[test]
fn a_kind_the_host_does_not_serve_is_answered_501_by_the_engine() {
    let mut edge = edge_with(|c| c.serves = TunnelKinds::only(TunnelKind::Stream));
    let mut raw = RawClient::new(true);
    let mut requested = Vec::new();
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, kind, .. } = event {
            requested.push(kind);
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    let (_, status, proxy_status) = raw.send_request(&mut edge, &mut host, &connect_udp());
    assert_eq!(
        (status.as_str(), proxy_status.as_deref()),
        (NOT_SERVED.0, Some(NOT_SERVED.1))
    );
    let (_, status, _) = raw.send_request(&mut edge, &mut host, &connect());
    assert_eq!(status, "200", "a served kind still reaches the host");
    assert_eq!(requested, [TunnelKind::Stream]);
    assert_eq!(edge.stats().tunnels_refused, 1);
}

#[test]
fn an_edge_that_serves_nothing_answers_every_request_501() {
    let mut edge = edge_with(|c| c.serves = TunnelKinds::NONE);
    let mut raw = RawClient::new(true);
    for headers in [connect(), connect_udp()] {
        let (status, proxy_status) = raw.request(&mut edge, &headers);
        assert_eq!(
            (status.as_str(), proxy_status.as_deref()),
            (NOT_SERVED.0, Some(NOT_SERVED.1))
        );
    }
    assert_eq!(edge.stats().tunnels_total, 0, "the host saw none of them");
}

#[test]
fn a_request_nobody_answers_is_refused_504_when_its_time_is_up() {
    let timeout = Duration::from_millis(150);
    let mut edge = edge_with(|c| c.request_timeout = timeout);
    let mut raw = RawClient::new(true);
    for headers in [connect(), connect_udp()] {
        let mut ignored: Vec<(TunnelId, Instant)> = Vec::new();
        let mut host = |_: &mut Endpoint, event: Event| {
            if let Event::TunnelRequest { tunnel, .. } = event {
                ignored.push((tunnel, Instant::now()));
            }
        };
        let (_, status, proxy_status) = raw.send_request(&mut edge, &mut host, &headers);
        let answered = Instant::now();
        assert_eq!(
            (status.as_str(), proxy_status.as_deref()),
            ("504", Some("veil;error=connection_timeout"))
        );
        let &[(tunnel, requested)] = ignored.as_slice() else {
            panic!("one request reached the host: {ignored:?}");
        };
        assert!(answered - requested >= timeout, "refused before its time");
        assert_eq!(edge.accept_tunnel(tunnel), Err(TunnelError::UnknownTunnel));
    }
    assert_eq!(edge.stats().tunnels, 0);
}

#[test]
fn an_accepted_request_is_not_refused_when_its_time_is_up() {
    let mut edge = edge_with(|c| c.request_timeout = Duration::from_millis(100));
    let mut raw = RawClient::new(true);
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    let (_, status, _) = raw.send_request(&mut edge, &mut host, &connect());
    assert_eq!(status, "200");
    // Long past the request timeout the tunnel is still open: accepted requests are not
    // refused later.
    std::thread::sleep(Duration::from_millis(200));
    edge.handle_timeout(Instant::now());
    assert_eq!(edge.stats().tunnels, 1);
    assert_eq!(edge.stats().tunnels_refused, 0);
}

#[test]
fn a_named_token_authenticates_by_its_secret_and_identifies_by_its_name() {
    let mut edge = edge_with(|c| {
        c.tokens = vec![
            veil_engine::Token::parse("ops:k1", 1).expect("token"),
            veil_engine::Token::parse("k2", 2).expect("token"),
        ];
    });
    let mut raw = RawClient::new(true);
    let mut seen = Vec::new();
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, client, .. } = event {
            let index = client.token_index.expect("an authenticated client");
            seen.push(endpoint.token_name(index).expect("a name").to_owned());
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    for (credential, status) in [
        ("Bearer k1", "200"),
        ("Bearer k2", "200"),
        ("Bearer ops:k1", "403"),
        ("Bearer ops", "403"),
    ] {
        let mut headers = connect();
        headers.push(("proxy-authorization", credential));
        let (_, answer, _) = raw.send_request(&mut edge, &mut host, &headers);
        assert_eq!(answer, status, "{credential}");
    }
    assert_eq!(seen, ["ops", "token-2"]);
}
