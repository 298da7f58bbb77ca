//! Hooks: an embedder's `Policy` decides at ingress and for every request, in the engine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use veil_engine::{
    Config, EdgeConfig, Egress, EgressQuery, EgressVerdict, Endpoint, Event, Host, IngressQuery,
    IngressVerdict, Policy, Refusal, TagError, Tags, TunnelError, TunnelKind, TunnelQuery,
    TunnelTarget, TunnelVerdict,
};

use crate::harness::{Host as HarnessHost, Net};
use crate::hosts::{EdgeHost, Transfers};
use crate::raw::RawClient;
use crate::{BUDGET, client_for, target};

/// Refuses `blocked.test`, sends `old.test` to `echo.test` and `loop.test` to loopback.
#[derive(Default)]
struct Rules;

impl Policy for Rules {
    fn tunnel(&mut self, query: &TunnelQuery<'_>, tags: &mut Tags) -> TunnelVerdict {
        assert_eq!(query.kind, TunnelKind::Stream);
        tags.push("seen-by:rules").expect("a valid tag");
        assert_eq!(query.token_name, None, "an edge without tokens");
        let Host::Name(name) = &query.target.host else {
            return TunnelVerdict::Pass;
        };
        match name.as_str() {
            "blocked.test" => TunnelVerdict::Refuse(Refusal::Denied),
            "old.test" => TunnelVerdict::Redirect(target("echo.test", query.target.port)),
            "loop.test" => TunnelVerdict::Redirect(TunnelTarget::new(
                "127.0.0.1".parse::<std::net::IpAddr>().expect("ip"),
                80,
            )),
            _ => TunnelVerdict::Pass,
        }
    }
}

fn connect(authority: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "CONNECT".to_owned()),
        (":authority", authority.to_owned()),
    ]
}

fn refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

#[test]
fn the_tunnel_hook_refuses_redirects_and_passes_before_the_host_sees_a_request() {
    let mut edge = crate::edge(&[]).with_policy(Rules);
    let mut raw = RawClient::new(false);
    let mut seen = Vec::new();
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, target, .. } = event {
            let tags = endpoint
                .tunnel_tags(tunnel)
                .expect("an edge tunnel")
                .to_string();
            assert_eq!(
                tags, "seen-by:rules",
                "the hook's tags stay with the tunnel"
            );
            seen.push(target.to_string());
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
    };
    for (authority, status, proxy_status) in [
        (
            "blocked.test:443",
            "403",
            Some("veil;error=http_request_denied"),
        ),
        ("old.test:7", "200", None),
        (
            "loop.test:80",
            "403",
            Some("veil;error=destination_ip_prohibited"),
        ),
        ("other.test:443", "200", None),
    ] {
        let headers = connect(authority);
        let (_, answer, field) = raw.send_request(&mut edge, &mut host, &refs(&headers));
        assert_eq!(
            (answer.as_str(), field.as_deref()),
            (status, proxy_status),
            "{authority}"
        );
    }
    // The host saw the passed request and the redirect's new target, nothing else.
    assert_eq!(seen, ["echo.test:7", "other.test:443"]);
}

/// Closes every connection from the harness's client address.
struct NoClients {
    refused: SocketAddr,
}

impl Policy for NoClients {
    fn ingress(&mut self, query: &IngressQuery<'_>) -> IngressVerdict {
        assert_eq!(query.alpn, b"h3");
        assert_eq!(query.server_name, Some("localhost"));
        if query.peer == self.refused {
            IngressVerdict::Close { error_code: 0x0101 }
        } else {
            IngressVerdict::Accept
        }
    }
}

/// Notes connection losses.
#[derive(Default)]
struct Losses {
    inner: Option<Transfers>,
    lost: Vec<String>,
}

impl HarnessHost for Losses {
    fn on_event(&mut self, endpoint: &mut Endpoint, now: Instant, event: Event) {
        if let Event::ConnectionLost { reason, .. } = &event {
            self.lost.push(reason.clone());
        }
        if let Some(inner) = self.inner.as_mut() {
            inner.on_event(endpoint, now, event);
        }
    }

    fn poll(&mut self, endpoint: &mut Endpoint, now: Instant) -> bool {
        self.inner
            .as_mut()
            .is_some_and(|inner| inner.poll(endpoint, now))
    }
}

#[test]
fn the_ingress_hook_closes_a_connection_before_any_request_is_read() {
    let edge = crate::edge(&[]).with_policy(NoClients {
        refused: crate::harness::CLIENT_ADDR.parse().expect("address"),
    });
    let client = client_for(&edge, None);
    let mut net = Net::new(client, edge);
    let mut client = Losses {
        inner: Some(Transfers::new(target("echo.test", 7), 1, 1024)),
        lost: Vec::new(),
    };
    let mut edge = EdgeHost::default();
    let closed = net.run_until(&mut client, &mut edge, BUDGET, |c, _| !c.lost.is_empty());
    assert!(closed, "the client's connection was never closed");
    assert!(
        client.lost[0].contains("0x101"),
        "closed for another reason: {:?}",
        client.lost
    );
    assert!(edge.requests.is_empty(), "a request reached the host");
}

/// Asks the host about every request and every connection.
struct AskHost;

impl Policy for AskHost {
    fn ingress(&mut self, _: &IngressQuery<'_>) -> IngressVerdict {
        IngressVerdict::Ask
    }

    fn tunnel(&mut self, _: &TunnelQuery<'_>, tags: &mut Tags) -> TunnelVerdict {
        tags.push("asked").expect("a valid tag");
        TunnelVerdict::Ask
    }
}

fn edge_asking(timeout: Duration) -> Endpoint {
    let config = EdgeConfig {
        request_timeout: timeout,
        ..EdgeConfig::default()
    };
    Endpoint::new(Config::edge(config), Instant::now())
        .expect("edge")
        .with_policy(AskHost)
}

#[test]
fn verdicts_the_hooks_leave_to_the_host_have_the_same_outcomes_as_immediate_ones() {
    let mut edge = edge_asking(Duration::from_secs(30));
    let mut raw = RawClient::new(false);
    let mut log: Vec<String> = Vec::new();
    let mut host = |endpoint: &mut Endpoint, event: Event| match event {
        Event::IngressDecision {
            connection,
            server_name,
            ..
        } => {
            assert_eq!(server_name.as_deref(), Some("localhost"));
            log.push("ingress".to_owned());
            endpoint
                .decide_ingress(connection, IngressVerdict::Accept)
                .expect("decide");
            assert_eq!(
                endpoint.decide_ingress(connection, IngressVerdict::Accept),
                Err(TunnelError::InvalidState),
                "a connection is decided once"
            );
        }
        Event::TunnelDecision { tunnel, target, .. } => {
            log.push(format!("decide {target}"));
            let mut tags = Tags::new();
            tags.push("by:host").expect("a valid tag");
            let verdict = match target.to_string().as_str() {
                "blocked.test:443" => TunnelVerdict::Refuse(Refusal::Denied),
                "old.test:7" => TunnelVerdict::Redirect(target_of("echo.test", 7)),
                "loop.test:80" => TunnelVerdict::Redirect(TunnelTarget::new(
                    "127.0.0.1".parse::<std::net::IpAddr>().expect("ip"),
                    80,
                )),
                _ => TunnelVerdict::Pass,
            };
            assert_eq!(
                endpoint.decide_tunnel(tunnel, TunnelVerdict::Ask, Tags::new()),
                Err(TunnelError::InvalidState),
                "asking again is not an answer"
            );
            endpoint
                .decide_tunnel(tunnel, verdict, tags)
                .expect("decide");
        }
        Event::TunnelRequest { tunnel, target, .. } => {
            let tags = endpoint.tunnel_tags(tunnel).expect("an edge tunnel");
            log.push(format!("request {target} [{tags}]"));
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
        _ => {}
    };
    let mut answers = Vec::new();
    for authority in [
        "blocked.test:443",
        "old.test:7",
        "loop.test:80",
        "other.test:443",
    ] {
        let headers = connect(authority);
        let (_, status, proxy_status) = raw.send_request(&mut edge, &mut host, &refs(&headers));
        answers.push(format!("{status} {}", proxy_status.unwrap_or_default()));
    }
    assert_eq!(
        answers,
        [
            "403 veil;error=http_request_denied",
            "200 ",
            "403 veil;error=destination_ip_prohibited",
            "200 ",
        ]
    );
    assert_eq!(
        log,
        [
            "ingress",
            "decide blocked.test:443",
            "decide old.test:7",
            "request echo.test:7 [asked,by:host]",
            "decide loop.test:80",
            "decide other.test:443",
            "request other.test:443 [asked,by:host]",
        ]
    );
}

#[test]
fn a_decision_the_host_never_gives_refuses_the_request_or_closes_the_connection() {
    let timeout = Duration::from_millis(150);
    // The tunnel question: accepted connection, request never decided → 504.
    let mut edge = edge_asking(timeout);
    let mut raw = RawClient::new(false);
    let mut undecided = Vec::new();
    let mut host = |endpoint: &mut Endpoint, event: Event| match event {
        Event::IngressDecision { connection, .. } => {
            endpoint
                .decide_ingress(connection, IngressVerdict::Accept)
                .expect("decide");
        }
        Event::TunnelDecision { tunnel, .. } => undecided.push(tunnel),
        _ => {}
    };
    let headers = connect("example.com:443");
    let (_, status, proxy_status) = raw.send_request(&mut edge, &mut host, &refs(&headers));
    assert_eq!(
        (status.as_str(), proxy_status.as_deref()),
        ("504", Some("veil;error=connection_timeout"))
    );
    let &[tunnel] = undecided.as_slice() else {
        panic!("one decision asked: {undecided:?}");
    };
    assert_eq!(
        edge.decide_tunnel(tunnel, TunnelVerdict::Pass, Tags::new()),
        Err(TunnelError::UnknownTunnel),
        "a late answer finds no tunnel"
    );
    assert_eq!(edge.stats().tunnels, 0);

    // The ingress question, never answered: the connection closes, no request is read.
    let mut edge = edge_asking(timeout);
    let mut raw = RawClient::new(false);
    let mut requests = 0;
    raw.drive(
        &mut edge,
        &mut |_, event| {
            if matches!(
                event,
                Event::TunnelDecision { .. } | Event::TunnelRequest { .. }
            ) {
                requests += 1;
            }
        },
        |raw| raw.quic.is_closed().then_some(()),
    );
    assert_eq!(requests, 0);
    let error = raw.quic.peer_error().expect("closed by the edge");
    assert_eq!(error.error_code, 0x0102, "H3_INTERNAL_ERROR");
}

/// Dials the last permitted address from a fixed local address; refuses port 25.
struct LastAddress;

impl Policy for LastAddress {
    fn egress(&mut self, query: &EgressQuery<'_>) -> EgressVerdict {
        if query.target.port == 25 {
            return EgressVerdict::Refuse(Refusal::Denied);
        }
        if query.target.port == 26 {
            // Not one of the candidates: the engine refuses it.
            return EgressVerdict::Dial(Egress {
                to: "192.0.2.99:26".parse().expect("address"),
                from: None,
            });
        }
        match query.permitted.last() {
            Some(&to) => EgressVerdict::Dial(Egress {
                to,
                from: Some("192.0.2.7:0".parse().expect("address")),
            }),
            None => query.default_verdict(),
        }
    }
}

#[test]
fn the_egress_hook_chooses_among_the_permitted_addresses_and_can_refuse() {
    for (policy, port, expect) in [
        // The default: the first address egress policy permits (loopback is not).
        (
            false,
            443,
            Ok(Egress {
                to: "8.8.8.8:443".parse().expect("address"),
                from: None,
            }),
        ),
        (
            true,
            443,
            Ok(Egress {
                to: "9.9.9.9:443".parse().expect("address"),
                from: Some("192.0.2.7:0".parse().expect("address")),
            }),
        ),
        (true, 25, Err(Refusal::Denied)),
        (true, 26, Err(Refusal::Internal)),
    ] {
        let mut edge = crate::edge(&[]);
        if policy {
            edge.set_policy(LastAddress);
        }
        let mut raw = RawClient::new(false);
        let mut chosen = None;
        let mut host = |endpoint: &mut Endpoint, event: Event| {
            if let Event::TunnelRequest { tunnel, target, .. } = event {
                let resolved: Vec<SocketAddr> = ["127.0.0.1", "8.8.8.8", "10.0.0.1", "9.9.9.9"]
                    .iter()
                    .map(|ip| SocketAddr::new(ip.parse().expect("ip"), target.port))
                    .collect();
                chosen = Some(endpoint.egress_for(tunnel, &resolved));
                assert_eq!(endpoint.egress_for(tunnel, &[]), Err(Refusal::DnsError));
                endpoint.accept_tunnel(tunnel).expect("accept");
            }
        };
        let headers = connect(&format!("resolved.test:{port}"));
        let _ = raw.send_request(&mut edge, &mut host, &refs(&headers));
        assert_eq!(chosen, Some(expect), "policy {policy}, port {port}");
    }
}

/// Happy Eyeballs (RFC 8305): the plan is the engine's first choice, then every other
/// permitted address, families alternating; forbidden addresses never enter it, and a
/// hook's chosen source address keeps the plan to that one attempt.
#[test]
fn the_egress_plan_races_permitted_addresses_families_interleaved() {
    let addr = |text: &str| -> SocketAddr { text.parse().expect("address") };
    let resolved = [
        addr("[2606:4700::1111]:443"),
        addr("[::1]:443"),
        addr("[2620:fe::fe]:443"),
        addr("8.8.8.8:443"),
        addr("10.0.0.1:443"),
        addr("9.9.9.9:443"),
    ];
    for (policy, expect) in [
        (
            false,
            vec![
                addr("[2606:4700::1111]:443"),
                addr("8.8.8.8:443"),
                addr("[2620:fe::fe]:443"),
                addr("9.9.9.9:443"),
            ],
        ),
        (true, vec![addr("9.9.9.9:443")]),
    ] {
        let mut edge = crate::edge(&[]);
        if policy {
            edge.set_policy(LastAddress);
        }
        let mut raw = RawClient::new(false);
        let mut plan = None;
        let mut host = |endpoint: &mut Endpoint, event: Event| {
            if let Event::TunnelRequest { tunnel, .. } = event {
                plan = Some(endpoint.egress_plan(tunnel, &resolved).expect("plan"));
                endpoint.accept_tunnel(tunnel).expect("accept");
            }
        };
        let _ = raw.send_request(&mut edge, &mut host, &refs(&connect("resolved.test:443")));
        let plan = plan.expect("a tunnel request");
        let attempts: Vec<SocketAddr> = plan.attempts.iter().map(|e| e.to).collect();
        assert_eq!(attempts, expect, "policy {policy}");
        assert_eq!(plan.attempt_delay, veil_engine::CONNECTION_ATTEMPT_DELAY);
    }
}

#[test]
fn tags_are_bounded_and_safe_for_logs() {
    let mut tags = Tags::new();
    assert_eq!(tags.push(""), Err(TagError::BadLength));
    assert_eq!(tags.push(&"x".repeat(65)), Err(TagError::BadLength));
    assert_eq!(tags.push("a b"), Err(TagError::BadCharacter));
    assert_eq!(tags.push("a\nb"), Err(TagError::BadCharacter));
    for i in 0..Tags::MAX {
        tags.push(&format!("t{i}")).expect("room");
    }
    tags.push("t0")
        .expect("a label already there is not added twice");
    assert_eq!(tags.push("one-more"), Err(TagError::TooMany));
    assert_eq!(tags.len(), Tags::MAX);
    assert_eq!(tags.to_string(), "t0,t1,t2,t3,t4,t5,t6,t7");
}

fn target_of(name: &str, port: u16) -> TunnelTarget {
    target(name, port)
}

#[test]
fn bytes_that_arrive_while_the_host_decides_are_read_after_the_answer() {
    use std::cell::{Cell, RefCell};
    let mut edge = edge_asking(Duration::from_secs(30));
    let mut raw = RawClient::new(false);
    let asked: Cell<Option<veil_engine::TunnelId>> = Cell::new(None);
    let received: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::IngressDecision { connection, .. } => {
            endpoint
                .decide_ingress(connection, IngressVerdict::Accept)
                .expect("decide");
        }
        // Not decided here: the test answers once the bytes are in.
        Event::TunnelDecision { tunnel, .. } => asked.set(Some(tunnel)),
        Event::TunnelRequest { tunnel, .. } => endpoint.accept_tunnel(tunnel).expect("accept"),
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 64];
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                received.borrow_mut().extend_from_slice(&buf[..recv.len]);
                if recv.len == 0 {
                    break;
                }
            }
        }
        _ => {}
    };
    let headers = connect("example.com:443");
    let headers: Vec<quiche::h3::Header> = refs(&headers)
        .iter()
        .map(|(n, v)| quiche::h3::Header::new(n.as_bytes(), v.as_bytes()))
        .collect();
    // The request and its first bytes, then time for them to reach the edge.
    let mut stream = None;
    let mut rounds_after = 0;
    raw.drive(&mut edge, &mut on_edge, |raw| {
        let h3 = raw.h3.as_mut()?;
        if stream.is_none() {
            let _ = h3.poll(&mut raw.quic);
            let id = h3
                .send_request(&mut raw.quic, &headers, false)
                .expect("request");
            h3.send_body(&mut raw.quic, id, b"hello", false)
                .expect("body");
            stream = Some(id);
        }
        let _ = h3.poll(&mut raw.quic);
        rounds_after += 1;
        (rounds_after > 50 && asked.get().is_some()).then_some(())
    });
    let tunnel = asked.get().expect("a decision was asked");
    assert!(received.borrow().is_empty(), "read before the answer");
    edge.decide_tunnel(tunnel, TunnelVerdict::Pass, Tags::new())
        .expect("decide");
    raw.drive(&mut edge, &mut on_edge, |raw| {
        let _ = raw.h3.as_mut().map(|h3| h3.poll(&mut raw.quic));
        (received.borrow().as_slice() == b"hello").then_some(())
    });
}

/// Inspects every tunnel: denies `/admin`, strips `Cookie` and adds `X-Veil` on the rest.
struct HttpRules {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Policy for HttpRules {
    fn tunnel(&mut self, _: &TunnelQuery<'_>, _: &mut Tags) -> TunnelVerdict {
        TunnelVerdict::Inspect
    }

    fn http_request(
        &mut self,
        query: &veil_engine::HttpRequestQuery<'_>,
    ) -> veil_engine::HttpVerdict {
        let request = query.request;
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(format!("{} {}", request.method(), request.target()));
        }
        if request.target() == "/admin" {
            return veil_engine::HttpVerdict::Deny { status: 403 };
        }
        veil_engine::HttpVerdict::Edit {
            remove: vec!["cookie".to_owned()],
            add: vec![("X-Veil".to_owned(), "1".to_owned())],
        }
    }
}

#[test]
fn the_http_request_hook_sees_edits_and_denies_requests_inside_a_tunnel() {
    use std::cell::RefCell;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut edge = crate::edge(&[]).with_policy(HttpRules { seen: seen.clone() });
    let mut raw = RawClient::new(false);
    let host_read: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    let host_fin = std::cell::Cell::new(false);
    let answered = std::cell::Cell::new(false);
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::TunnelRequest { tunnel, .. } => endpoint.accept_tunnel(tunnel).expect("accept"),
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 7]; // small: heads and bodies cross reads
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                host_read.borrow_mut().extend_from_slice(&buf[..recv.len]);
                if recv.fin {
                    host_fin.set(true);
                }
                if recv.len == 0 {
                    break;
                }
            }
            // The origin answers the two requests it got, then closes.
            if host_fin.get() && !answered.get() {
                answered.set(true);
                let answers = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
                assert_eq!(endpoint.tunnel_send(tunnel, answers), Ok(answers.len()));
                endpoint.tunnel_finish(tunnel).expect("finish");
            }
        }
        _ => {}
    };
    let headers = [(":method", "CONNECT"), (":authority", "93.184.216.34:80")];
    let (stream, status, _) = raw.send_request(&mut edge, &mut on_edge, &headers);
    assert_eq!(status, "200");
    let requests: &[u8] = b"GET /a HTTP/1.1\r\nHost: h.test\r\nCookie: secret\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
GET /admin HTTP/1.1\r\nHost: h.test\r\n\r\n\
GET /after HTTP/1.1\r\nHost: h.test\r\n\r\n";
    raw.h3
        .as_mut()
        .expect("h3")
        .send_body(&mut raw.quic, stream, requests, false)
        .expect("body");
    let client_read: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    raw.drive(&mut edge, &mut on_edge, |raw| {
        let h3 = raw.h3.as_mut()?;
        loop {
            match h3.poll(&mut raw.quic) {
                Ok((id, quiche::h3::Event::Data)) if id == stream => {
                    let mut buf = [0u8; 4096];
                    while let Ok(len) = h3.recv_body(&mut raw.quic, id, &mut buf) {
                        client_read.borrow_mut().extend_from_slice(&buf[..len]);
                    }
                }
                Ok((id, quiche::h3::Event::Finished)) if id == stream => return Some(()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    });
    assert_eq!(
        String::from_utf8_lossy(&host_read.borrow()),
        "GET /a HTTP/1.1\r\nHost: h.test\r\nX-Veil: 1\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h.test\r\nTransfer-Encoding: chunked\r\nX-Veil: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "the origin got the edited heads and the body as sent, nothing after the denial"
    );
    assert!(host_fin.get());
    let client = String::from_utf8_lossy(&client_read.borrow()).into_owned();
    assert!(
        client.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\nHTTP/1.1 403 Forbidden\r\n"),
        "the origin's answers, then the denial: {client:?}"
    );
    assert!(
        client.contains("Proxy-Status: veil;error=http_request_denied"),
        "{client:?}"
    );
    assert_eq!(
        *seen.lock().expect("lock"),
        ["GET /a", "POST /b", "GET /admin"],
        "the hook saw each request once, and none after the denial"
    );
}

/// Inspects every tunnel and allows every request.
struct SeeAll;

impl Policy for SeeAll {
    fn tunnel(&mut self, _: &TunnelQuery<'_>, _: &mut Tags) -> TunnelVerdict {
        TunnelVerdict::Inspect
    }
}

#[test]
fn after_an_upgrade_the_rest_of_the_stream_passes_as_it_is() {
    use std::cell::RefCell;
    let mut edge = crate::edge(&[]).with_policy(SeeAll);
    let mut raw = RawClient::new(false);
    let host_read: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::TunnelRequest { tunnel, .. } => endpoint.accept_tunnel(tunnel).expect("accept"),
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 64];
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                host_read.borrow_mut().extend_from_slice(&buf[..recv.len]);
                if recv.len == 0 {
                    break;
                }
            }
        }
        _ => {}
    };
    let headers = [(":method", "CONNECT"), (":authority", "93.184.216.34:80")];
    let (stream, _, _) = raw.send_request(&mut edge, &mut on_edge, &headers);
    let sent: &[u8] = b"GET /chat HTTP/1.1\r\nHost: h.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello not http at all\r\n\r\n";
    raw.h3
        .as_mut()
        .expect("h3")
        .send_body(&mut raw.quic, stream, sent, false)
        .expect("body");
    raw.drive(&mut edge, &mut on_edge, |_| {
        (host_read.borrow().len() >= sent.len()).then_some(())
    });
    assert_eq!(
        host_read.borrow().as_slice(),
        sent,
        "the frames after the upgrade, as sent"
    );
}
