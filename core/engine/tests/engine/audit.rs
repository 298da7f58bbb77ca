//! Audit records (`EdgeConfig::audit`): one per finished tunnel, with the token's name
//! (never its secret), the target, the address dialled, the bytes each way and how it
//! ended; refusals too.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Instant;

use veil_engine::rules::{EdgeAction, RuleSpec};
use veil_engine::{AuditRecord, Config, EdgeConfig, Endpoint, Event, Refusal, Token};

use crate::raw::RawClient;

fn audited_edge() -> Endpoint {
    let deny = RuleSpec {
        target: Vec::new(),
        host: vec!["denied.test".to_owned()],
        ports: Vec::new(),
        protocol: Vec::new(),
        identity: Vec::new(),
        sni: Vec::new(),
        proxy_protocol: None,
        idle_timeout_ms: None,
        max_duration_ms: None,
        action: EdgeAction::Deny,
    };
    let config = EdgeConfig {
        audit: true,
        tokens: vec![Token::parse("ops:s3cret", 1).expect("token")],
        rules: vec![deny],
        ..EdgeConfig::default()
    };
    Endpoint::new(Config::edge(config), Instant::now()).expect("edge")
}

fn records(edge: &mut Endpoint) -> Vec<AuditRecord> {
    std::iter::from_fn(|| edge.poll_audit()).collect()
}

#[test]
fn a_finished_tunnel_is_recorded_with_its_bytes_and_names() {
    let mut edge = audited_edge();
    let mut raw = RawClient::new(false);
    let closed = Cell::new(false);
    let read = RefCell::new(Vec::new());
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::TunnelRequest { tunnel, .. } => {
            let dialed: SocketAddr = "93.184.216.34:443".parse().expect("address");
            endpoint.egress_for(tunnel, &[dialed]).expect("egress");
            endpoint.accept_tunnel(tunnel).expect("accept");
        }
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 64];
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                read.borrow_mut().extend_from_slice(&buf[..recv.len]);
                if recv.fin {
                    endpoint.tunnel_send(tunnel, b"pong!").expect("send");
                    endpoint.tunnel_finish(tunnel).expect("finish");
                }
                if recv.len == 0 {
                    break;
                }
            }
        }
        Event::TunnelClosed { .. } => closed.set(true),
        _ => {}
    };
    let headers = [
        (":method", "CONNECT"),
        (":authority", "example.com:443"),
        ("proxy-authorization", "Bearer s3cret"),
    ];
    let (stream, status, _) = raw.send_request(&mut edge, &mut on_edge, &headers);
    assert_eq!(status, "200");
    raw.h3
        .as_mut()
        .expect("h3")
        .send_body(&mut raw.quic, stream, b"ping", true)
        .expect("body");
    raw.drive(&mut edge, &mut on_edge, |raw| {
        if let Some(h3) = raw.h3.as_mut() {
            while let Ok((id, event)) = h3.poll(&mut raw.quic) {
                if id == stream && matches!(event, quiche::h3::Event::Data) {
                    let mut sink = [0u8; 64];
                    while h3.recv_body(&mut raw.quic, id, &mut sink).is_ok() {}
                }
            }
        }
        closed.get().then_some(())
    });
    let all = records(&mut edge);
    let [record] = all.as_slice() else {
        panic!("one record: {all:?}");
    };
    assert_eq!(record.kind, "tcp");
    assert_eq!(record.token.as_deref(), Some("ops"));
    assert_eq!(record.target, "example.com:443");
    assert_eq!(
        record.dialed,
        Some("93.184.216.34:443".parse().expect("address"))
    );
    assert_eq!((record.bytes_from_client, record.bytes_to_client), (4, 5));
    assert_eq!(record.outcome, "finished");
    assert!(record.setup_ms.is_some() && record.tunnel.is_some());
    let json = format!("{record:?}");
    assert!(!json.contains("s3cret"), "a secret in the record: {json}");
}

#[test]
fn refusals_are_recorded_with_their_status() {
    let mut edge = audited_edge();
    let mut raw = RawClient::new(false);
    let mut host = |endpoint: &mut Endpoint, event: Event| {
        if let Event::TunnelRequest { tunnel, .. } = event {
            endpoint
                .refuse_tunnel(tunnel, Refusal::ConnectionRefused)
                .expect("refuse");
        }
    };
    for authority in ["denied.test:443", "example.com:443"] {
        let headers = [
            (":method", "CONNECT"),
            (":authority", authority),
            ("proxy-authorization", "Bearer s3cret"),
        ];
        let _ = raw.send_request(&mut edge, &mut host, &headers);
    }
    let all = records(&mut edge);
    let outcomes: Vec<_> = all
        .iter()
        .map(|r| {
            (
                r.target.as_str(),
                r.tunnel.is_some(),
                r.outcome,
                r.status,
                r.proxy_error,
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                "denied.test:443",
                false,
                "refused",
                Some(403),
                Some("http_request_denied")
            ),
            (
                "example.com:443",
                true,
                "refused",
                Some(502),
                Some("connection_refused")
            ),
        ]
    );
    // The same refusals, by error type, in the counters.
    let text = veil_engine::metrics::encode_text(&edge.stats());
    for line in [
        "veil_refusals_total{error=\"http_request_denied\"} 1",
        "veil_refusals_total{error=\"connection_refused\"} 1",
        "veil_refusals_total{error=\"dns_error\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}
