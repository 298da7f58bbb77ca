//! Hooks: an embedder's `Policy` decides at ingress and for every request, in the engine.

use std::net::SocketAddr;
use std::time::Instant;

use veil_engine::{
    Endpoint, Event, Host, IngressQuery, IngressVerdict, Policy, Refusal, TunnelKind, TunnelQuery,
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
    fn tunnel(&mut self, query: &TunnelQuery<'_>) -> TunnelVerdict {
        assert_eq!(query.kind, TunnelKind::Stream);
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
