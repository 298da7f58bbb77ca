//! Hooks on the glommio edge (`Edge::start_with_policy`): every core consults a policy of
//! its own, made by the factory; a question a hook leaves to this host is answered no at
//! once.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use veil_engine::{
    ClientConfig, Config, EdgeConfig, Host, Name, Policy, Refusal, RefusedReason, Tags,
    TunnelQuery, TunnelTarget, TunnelVerdict, Verify,
};
use veil_glommio::{Edge, Options, PolicyFactory};
use veil_tokio::{Node, OpenFailure, client_bind_addr};

/// Refuses `denied.test`, asks the host about `ask.test`, passes the rest.
struct Names(Arc<AtomicUsize>);

impl Policy for Names {
    fn tunnel(&mut self, query: &TunnelQuery<'_>, _: &mut Tags) -> TunnelVerdict {
        self.0.fetch_add(1, Ordering::Relaxed);
        match &query.target.host {
            Host::Name(name) if name.as_str() == "denied.test" => {
                TunnelVerdict::Refuse(Refusal::Denied)
            }
            Host::Name(name) if name.as_str() == "ask.test" => TunnelVerdict::Ask,
            _ => TunnelVerdict::Pass,
        }
    }
}

#[tokio::test]
async fn each_core_consults_its_own_policy() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let factory: PolicyFactory = Arc::new(move || Box::new(Names(counter.clone())));
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let options = Options {
        cores: 1,
        ..Options::default()
    };
    let edge = Edge::start_with_policy(
        Config::edge(EdgeConfig::default()),
        loopback,
        options,
        factory,
    )
    .expect("edge");
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let client = Node::start(
        Config::client(ClientConfig::new(
            edge.local_addr(),
            "localhost",
            Verify::Pin(pin),
        )),
        client_bind_addr(edge.local_addr()),
        veil_tokio::Options::default(),
    )
    .expect("client");
    let opener = client.opener();
    for (name, status) in [("denied.test", 403), ("ask.test", 500)] {
        let target = TunnelTarget::new(Name::new(name).expect("name"), 443);
        let refused = tokio::time::timeout(Duration::from_secs(20), opener.open(target))
            .await
            .expect("in time");
        match refused {
            Err(OpenFailure::Refused(RefusedReason::Status { status: got, .. })) => {
                assert_eq!(got, status, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(asked.load(Ordering::Relaxed), 2);
    let _ = client.shutdown(Duration::ZERO).await;
    let _ = edge.shutdown(Duration::ZERO);
}
