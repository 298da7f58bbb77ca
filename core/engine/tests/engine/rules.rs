//! `[[rule]]` at the edge: first match wins, `deny` refuses (403 `http_request_denied`),
//! `allow` opens what egress policy forbids by default, no match leaves egress policy to
//! judge; names are judged before resolving when no address rule comes first, and each
//! resolved address with the name.

use std::net::SocketAddr;
use std::time::Instant;

use veil_engine::rules::{EdgeAction, PortSpec, RuleSpec};
use veil_engine::{Config, ConfigError, EdgeConfig, Endpoint, Event, Refusal, Token};

use crate::raw::RawClient;

/// A rule with `action` and no condition (it matches everything until one is set).
pub(crate) fn rule(action: EdgeAction) -> RuleSpec<EdgeAction> {
    RuleSpec {
        target: Vec::new(),
        host: Vec::new(),
        ports: Vec::new(),
        protocol: Vec::new(),
        identity: Vec::new(),
        sni: Vec::new(),
        proxy_protocol: None,
        idle_timeout_ms: None,
        max_duration_ms: None,
        action,
    }
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

fn edge_with(rules: Vec<RuleSpec<EdgeAction>>, tokens: &[&str]) -> Endpoint {
    let config = EdgeConfig {
        rules,
        tokens: tokens
            .iter()
            .enumerate()
            .map(|(i, t)| Token::parse(t, i + 1).expect("token"))
            .collect(),
        ..EdgeConfig::default()
    };
    Endpoint::new(Config::edge(config), Instant::now()).expect("edge")
}

fn connect(authority: &str, token: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (":method", "CONNECT".to_owned()),
        (":authority", authority.to_owned()),
    ];
    if let Some(token) = token {
        headers.push(("proxy-authorization", format!("Bearer {token}")));
    }
    headers
}

/// Sends each request; returns "STATUS ERROR" per request and what the host saw.
fn answers(edge: &mut Endpoint, requests: &[(&str, Option<&str>)]) -> (Vec<String>, Vec<String>) {
    let mut raw = RawClient::new(false);
    let mut seen = Vec::new();
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, target, .. } = event {
            seen.push(target.to_string());
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    let mut out = Vec::new();
    for (authority, token) in requests {
        let headers = connect(authority, *token);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (_, status, proxy_status) = raw.send_request(edge, &mut host, &refs);
        let error = proxy_status
            .as_deref()
            .and_then(|p| p.split("error=").nth(1))
            .unwrap_or("")
            .to_owned();
        out.push(format!("{status} {error}").trim().to_owned());
    }
    (out, seen)
}

#[test]
fn deny_allow_and_no_match_at_the_request() {
    let mut deny_names = rule(EdgeAction::Deny);
    deny_names.host = strings(&["*.blocked.test"]);
    let mut deny_port = rule(EdgeAction::Deny);
    deny_port.target = strings(&["127.0.0.3/32"]);
    deny_port.ports = vec![
        PortSpec::Text("7003".into()),
        PortSpec::Text("7100-7200".into()),
    ];
    deny_port.protocol = strings(&["tcp"]);
    let mut allow_loopback = rule(EdgeAction::Allow);
    allow_loopback.target = strings(&["127.0.0.0/8"]);
    let mut edge = edge_with(vec![deny_names, deny_port, allow_loopback], &[]);
    let (answers, seen) = answers(
        &mut edge,
        &[
            ("www.blocked.test:443", None),
            ("blocked.test:443", None),
            ("127.0.0.3:7003", None),
            ("127.0.0.3:7150", None),
            ("127.0.0.3:7004", None),
            ("127.0.0.1:22", None),
            ("10.0.0.1:22", None),
            ("example.com:443", None),
        ],
    );
    assert_eq!(
        answers,
        [
            "403 http_request_denied",
            "200",
            "403 http_request_denied",
            "403 http_request_denied",
            "200",
            "200",
            "403 destination_ip_prohibited",
            "200",
        ]
    );
    assert_eq!(
        seen,
        [
            "blocked.test:443",
            "127.0.0.3:7004",
            "127.0.0.1:22",
            "example.com:443"
        ]
    );
}

#[test]
fn identities_are_token_names_never_secrets() {
    let mut deny_guests = rule(EdgeAction::Deny);
    deny_guests.identity = strings(&["guest"]);
    deny_guests.host = strings(&["*.internal.test"]);
    let mut edge = edge_with(vec![deny_guests], &["ops:s3cret", "guest:welcome"]);
    let (answers, _) = answers(
        &mut edge,
        &[
            ("db.internal.test:5432", Some("s3cret")),
            ("db.internal.test:5432", Some("welcome")),
            ("example.com:443", Some("welcome")),
        ],
    );
    assert_eq!(answers, ["200", "403 http_request_denied", "200"]);
}

#[test]
fn resolved_addresses_are_judged_with_the_name() {
    // An address rule first: the name cannot be judged alone, it waits for the egress.
    let mut deny_range = rule(EdgeAction::Deny);
    deny_range.target = strings(&["8.8.8.0/24"]);
    let mut allow_private = rule(EdgeAction::Allow);
    allow_private.host = strings(&["intranet.test"]);
    let mut edge = edge_with(vec![deny_range, allow_private], &[]);
    let mut raw = RawClient::new(false);
    let mut chosen = Vec::new();
    let resolved: Vec<SocketAddr> = ["8.8.8.8:80", "10.1.2.3:80", "9.9.9.9:80"]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, .. } = event {
            chosen.push(endpoint.egress_for(tunnel, &resolved).map(|e| e.to));
            chosen.push(endpoint.egress_for(tunnel, &resolved[..1]).map(|e| e.to));
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    for authority in ["intranet.test:80", "example.com:80"] {
        let headers = [(":method", "CONNECT"), (":authority", authority)];
        let _ = raw.send_request(&mut edge, &mut host, &headers);
    }
    assert_eq!(
        chosen,
        [
            // intranet.test: 8.8.8.8 denied by the first rule, 10.1.2.3 allowed by name.
            Ok("10.1.2.3:80".parse().expect("address")),
            Err(Refusal::Prohibited),
            // example.com: 8.8.8.8 denied, 10.1.2.3 private (no rule), 9.9.9.9 public.
            Ok("9.9.9.9:80".parse().expect("address")),
            Err(Refusal::Prohibited),
        ]
    );
}

#[test]
fn a_rule_that_does_not_compile_names_itself() {
    let mut bad = rule(EdgeAction::Deny);
    bad.target = strings(&["10.0.0.1/8"]);
    let config = EdgeConfig {
        rules: vec![rule(EdgeAction::Allow), bad],
        ..EdgeConfig::default()
    };
    let Err(ConfigError::InvalidRule(error)) = Endpoint::new(Config::edge(config), Instant::now())
    else {
        panic!("a bad prefix was accepted");
    };
    assert_eq!(
        (error.rule, error.field, error.value.as_str()),
        (2, "target", "10.0.0.1/8")
    );
    let text = error.to_string();
    assert!(text.starts_with("rule 2: target \"10.0.0.1/8\""), "{text}");
}

/// A `ClientHello` for `api.example.org`, as curl sent it.
const CLIENT_HELLO: &[u8] =
    include_bytes!("../../../proto/src/sniff/testdata/curl-client-hello.bin");

/// What one sniffed request came to: the status, whether the edge then reset the stream
/// (and with what), and what the host read of the tunnel.
#[derive(Debug, Default)]
struct SniffOutcome {
    status: String,
    reset: Option<u64>,
    host_read: Vec<u8>,
    requests: usize,
}

/// Sends CONNECT `authority`, then `first` (if any) once the 200 is in; the host accepts
/// every request it sees and reads everything.
fn sniffed_request(edge: &mut Endpoint, authority: &str, first: Option<&[u8]>) -> SniffOutcome {
    use std::cell::RefCell;
    let mut raw = RawClient::new(false);
    let outcome = RefCell::new(SniffOutcome::default());
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::TunnelRequest { tunnel, .. } => {
            outcome.borrow_mut().requests += 1;
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 1024];
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                outcome
                    .borrow_mut()
                    .host_read
                    .extend_from_slice(&buf[..recv.len]);
                if recv.len == 0 {
                    break;
                }
            }
        }
        _ => {}
    };
    let headers = [(":method", "CONNECT"), (":authority", authority)];
    let (stream, status, _) = raw.send_request(edge, &mut on_edge, &headers);
    outcome.borrow_mut().status = status;
    if let Some(first) = first {
        let h3 = raw.h3.as_mut().expect("h3");
        h3.send_body(&mut raw.quic, stream, first, false)
            .expect("body");
    }
    let expected = first.map(<[u8]>::len).unwrap_or_default();
    let start = Instant::now();
    raw.drive(edge, &mut on_edge, |raw| {
        let h3 = raw.h3.as_mut()?;
        loop {
            match h3.poll(&mut raw.quic) {
                Ok((id, quiche::h3::Event::Reset(code))) if id == stream => {
                    outcome.borrow_mut().reset = Some(code);
                    return Some(());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Err(quiche::Error::StreamStopped(code)) = raw.quic.stream_writable(stream, 1) {
            outcome.borrow_mut().reset = Some(code);
            return Some(());
        }
        let read_all =
            outcome.borrow().requests == 1 && outcome.borrow().host_read.len() >= expected;
        (read_all && start.elapsed() > std::time::Duration::from_millis(50)).then_some(())
    });
    outcome.into_inner()
}

fn sni_edge() -> Endpoint {
    let mut deny = rule(EdgeAction::Deny);
    deny.sni = strings(&["*.blocked.test", "api.example.org"]);
    edge_with(vec![deny], &[])
}

#[test]
fn a_server_name_in_the_first_bytes_is_denied_by_a_sni_rule() {
    let request = b"GET / HTTP/1.1\r\nHost: www.blocked.test\r\n\r\n";
    let mut edge = sni_edge();
    let outcome = sniffed_request(&mut edge, "93.184.216.34:80", Some(request));
    assert_eq!(outcome.status, "200", "the engine answers before it reads");
    assert_eq!(outcome.reset, Some(0x010f), "H3_CONNECT_ERROR: {outcome:?}");
    assert_eq!(outcome.requests, 0, "the host saw a denied request");

    let mut edge = sni_edge();
    let outcome = sniffed_request(&mut edge, "93.184.216.34:443", Some(CLIENT_HELLO));
    assert_eq!(
        outcome.reset,
        Some(0x010f),
        "TLS SNI api.example.org: {outcome:?}"
    );
    assert_eq!(outcome.requests, 0);
}

#[test]
fn the_first_bytes_of_an_allowed_tunnel_reach_the_host_whole() {
    let request = b"GET / HTTP/1.1\r\nHost: fine.test\r\n\r\n";
    let mut edge = sni_edge();
    let outcome = sniffed_request(&mut edge, "93.184.216.34:80", Some(request));
    assert_eq!((outcome.status.as_str(), outcome.reset), ("200", None));
    assert_eq!(outcome.requests, 1);
    assert_eq!(
        outcome.host_read, request,
        "the sniffed bytes, once, in order"
    );

    // A client that waits for its server to speak first: decided without a name, later.
    let mut edge = sni_edge();
    let start = Instant::now();
    let outcome = sniffed_request(&mut edge, "93.184.216.34:22", None);
    assert_eq!((outcome.requests, outcome.reset), (1, None));
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(900),
        "decided before the wait"
    );
}

#[test]
fn requests_the_name_cannot_change_are_not_sniffed() {
    // The first rule decides on the port alone: no sniffing, the host answers the 200.
    let mut allow_web = rule(EdgeAction::Allow);
    allow_web.ports = vec![PortSpec::Number(80)];
    let mut deny = rule(EdgeAction::Deny);
    deny.sni = strings(&["*.blocked.test"]);
    let mut edge = edge_with(vec![allow_web, deny], &[]);
    let mut raw = RawClient::new(false);
    let mut requested = 0;
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, .. } = event {
            requested += 1;
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    let headers = [(":method", "CONNECT"), (":authority", "93.184.216.34:80")];
    let (_, status, _) = raw.send_request(&mut edge, &mut host, &headers);
    assert_eq!(
        (status.as_str(), requested),
        ("200", 1),
        "the host saw it before the 200"
    );
}

/// A rule's `proxy_protocol` decides the PROXY header toward the address it matches: its
/// version, or none (`off`); where no rule names one, the global setting holds.
#[test]
fn a_rule_chooses_the_proxy_header_toward_the_origins_it_matches() {
    use veil_engine::ProxyProtocolVersion;
    use veil_engine::rules::RuleProxyProtocol;

    let with = |target: &str, proxy_protocol| RuleSpec {
        target: strings(&[target]),
        proxy_protocol,
        ..rule(EdgeAction::Allow)
    };
    let config = EdgeConfig {
        rules: vec![
            with("192.0.2.10/32", Some(RuleProxyProtocol::V1)),
            with("192.0.2.20/32", Some(RuleProxyProtocol::Off)),
            with("192.0.2.0/24", None),
        ],
        egress_proxy_protocol: Some(ProxyProtocolVersion::V2),
        ..EdgeConfig::default()
    };
    let mut edge = Endpoint::new(Config::edge(config), Instant::now()).expect("edge");
    let mut raw = RawClient::new(false);
    let mut preambles = Vec::new();
    for target in ["192.0.2.10:80", "192.0.2.20:80", "192.0.2.30:80"] {
        let mut host = |endpoint: &mut Endpoint, event: Event| {
            if let Event::TunnelRequest { tunnel, .. } = event {
                let dialed: SocketAddr = target.parse().expect("addr");
                preambles.push(endpoint.egress_preamble(tunnel, dialed));
                endpoint.accept_tunnel(tunnel).expect("accept");
            }
        };
        let headers = connect(target, None);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let (_, status, _) = raw.send_request(&mut edge, &mut host, &refs);
        assert_eq!(status, "200", "{target}");
    }
    assert_eq!(preambles.len(), 3);
    let v1 = preambles[0].as_deref().expect("rule 1: a v1 line");
    assert!(
        v1.starts_with(b"PROXY TCP4 "),
        "{:?}",
        String::from_utf8_lossy(v1)
    );
    assert_eq!(preambles[1], None, "rule 2 turns the header off");
    let v2 = preambles[2]
        .as_deref()
        .expect("rule 3: the global v2 header");
    assert!(v2.starts_with(b"\r\n\r\n\0\r\nQUIT\n"), "{v2:?}");
}

#[test]
fn a_client_rule_cannot_choose_a_proxy_header() {
    use veil_engine::rules::{ClientAction, ClientRules, RuleProxyProtocol};
    let spec = RuleSpec {
        target: Vec::new(),
        host: strings(&["example.com"]),
        ports: Vec::new(),
        protocol: Vec::new(),
        identity: Vec::new(),
        sni: Vec::new(),
        proxy_protocol: Some(RuleProxyProtocol::V2),
        idle_timeout_ms: None,
        max_duration_ms: None,
        action: ClientAction::Direct,
    };
    let error = ClientRules::new(&[spec]).expect_err("refused");
    assert_eq!((error.rule, error.field), (1, "proxy_protocol"));
}

#[test]
fn a_client_rule_cannot_time_tunnels() {
    use veil_engine::rules::{ClientAction, ClientRules};
    for (idle, max, field) in [
        (Some(1000), None, "idle_timeout_ms"),
        (None, Some(0), "max_duration_ms"),
    ] {
        let spec = RuleSpec {
            target: Vec::new(),
            host: strings(&["example.com"]),
            ports: Vec::new(),
            protocol: Vec::new(),
            identity: Vec::new(),
            sni: Vec::new(),
            proxy_protocol: None,
            idle_timeout_ms: idle,
            max_duration_ms: max,
            action: ClientAction::Direct,
        };
        let error = ClientRules::new(&[spec]).expect_err("refused");
        assert_eq!((error.rule, error.field), (1, field));
    }
}
