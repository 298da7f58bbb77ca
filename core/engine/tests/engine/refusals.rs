//! What a client sees when the edge says no: host refusals, authentication, forbidden
//! addresses, malformed requests.

use std::time::{Duration, Instant};

use quiche::h3::NameValue as _;
use veil_engine::{Endpoint, ProxyErrorType, RecvMeta, Refusal, RefusedReason, TunnelTarget};

use crate::harness::{CLIENT_ADDR, EDGE_ADDR};
use crate::hosts::{EdgeHost, OneTunnel};
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
    assert_eq!(reason, status(407, None));
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

/// A bare quiche HTTP/3 client, to send requests the engine's client never would.
struct RawClient {
    quic: quiche::Connection,
    h3: Option<quiche::h3::Connection>,
}

impl RawClient {
    fn new() -> Self {
        let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("config");
        config
            .set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
            .expect("alpn");
        config.verify_peer(false);
        config.set_initial_max_data(1 << 20);
        config.set_initial_max_stream_data_bidi_local(1 << 20);
        config.set_initial_max_stream_data_bidi_remote(1 << 20);
        config.set_initial_max_stream_data_uni(1 << 20);
        config.set_initial_max_streams_bidi(10);
        config.set_initial_max_streams_uni(10);
        config.set_max_idle_timeout(5_000);
        let scid = quiche::ConnectionId::from_ref(&[7; 16]);
        let quic = quiche::connect(
            Some("localhost"),
            &scid,
            CLIENT_ADDR.parse().expect("address"),
            EDGE_ADDR.parse().expect("address"),
            &mut config,
        )
        .expect("connect");
        Self { quic, h3: None }
    }

    /// Exchanges datagrams with `edge` until `until` returns a value.
    fn drive<T>(
        &mut self,
        edge: &mut Endpoint,
        mut until: impl FnMut(&mut Self) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        let mut buf = vec![0; 65536];
        let edge_meta = RecvMeta {
            from: CLIENT_ADDR.parse().expect("address"),
            to: EDGE_ADDR.parse().expect("address"),
        };
        let client_info = quiche::RecvInfo {
            from: edge_meta.to,
            to: edge_meta.from,
        };
        loop {
            assert!(start.elapsed() < BUDGET, "raw client timed out");
            while let Ok((len, _)) = self.quic.send(&mut buf) {
                edge.handle_datagram(Instant::now(), edge_meta, &mut buf[..len]);
            }
            while let Some(transmit) = edge.poll_transmit(Instant::now(), &mut buf) {
                let size = transmit.segment_size.unwrap_or(transmit.len);
                for segment in buf[..transmit.len].chunks_mut(size) {
                    let _ = self.quic.recv(segment, client_info);
                }
            }
            while edge.poll_event().is_some() {}
            if self.quic.is_established() && self.h3.is_none() {
                let config = quiche::h3::Config::new().expect("h3 config");
                self.h3 = Some(
                    quiche::h3::Connection::with_transport(&mut self.quic, &config).expect("h3"),
                );
            }
            if let Some(value) = until(self) {
                return value;
            }
            if edge.poll_timeout().is_some_and(|at| at <= Instant::now()) {
                edge.handle_timeout(Instant::now());
            }
            if self.quic.timeout().is_some_and(|t| t.is_zero()) {
                self.quic.on_timeout();
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Sends `headers` once HTTP/3 is up and returns the response's `:status` and
    /// `proxy-status`.
    fn request(
        &mut self,
        edge: &mut Endpoint,
        headers: &[(&str, &str)],
    ) -> (String, Option<String>) {
        let headers: Vec<quiche::h3::Header> = headers
            .iter()
            .map(|(name, value)| quiche::h3::Header::new(name.as_bytes(), value.as_bytes()))
            .collect();
        let mut stream = None;
        self.drive(edge, |raw| {
            let h3 = raw.h3.as_mut()?;
            if stream.is_none() {
                stream = Some(
                    h3.send_request(&mut raw.quic, &headers, false)
                        .expect("request"),
                );
            }
            match h3.poll(&mut raw.quic) {
                Ok((id, quiche::h3::Event::Headers { list, .. })) if Some(id) == stream => {
                    let field = |name: &[u8]| {
                        list.iter()
                            .find(|h| h.name() == name)
                            .map(|h| String::from_utf8_lossy(h.value()).into_owned())
                    };
                    Some((field(b":status").expect("status"), field(b"proxy-status")))
                }
                _ => None,
            }
        })
    }
}

#[test]
fn malformed_connect_requests_get_400() {
    let mut edge = crate::edge(&[]);
    let mut raw = RawClient::new();
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
