//! A Rust embedder's hooks on the tokio host (`Node::start_with_policy`): a hook that asks
//! the host gets its question through `Node::decisions`, and the answer decides the request
//! exactly as an immediate verdict would.

use std::net::SocketAddr;
use std::time::Duration;

use veil_engine::{
    ClientConfig, Config, EdgeConfig, Name, Policy, Refusal, RefusedReason, Tags, TunnelQuery,
    TunnelTarget, TunnelVerdict, Verify,
};
use veil_tokio::{Decision, Node, OpenFailure, Options, client_bind_addr};

/// Leaves every request to the host.
struct AskTheHost;

impl Policy for AskTheHost {
    fn tunnel(&mut self, _: &TunnelQuery<'_>, _: &mut Tags) -> TunnelVerdict {
        TunnelVerdict::Ask
    }
}

#[tokio::test]
async fn the_embedder_answers_what_the_hook_leaves_to_it() {
    let edge_config = EdgeConfig {
        egress_allow: vec!["127.0.0.0/8".to_owned()],
        ..EdgeConfig::default()
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut edge = Node::start_with_policy(
        Config::edge(edge_config),
        loopback,
        Options::default(),
        AskTheHost,
    )
    .expect("edge");
    let mut decisions = edge.decisions().expect("the decisions");
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let client_config = ClientConfig::new(edge.local_addr(), "localhost", Verify::Pin(pin));
    let client = Node::start(
        Config::client(client_config),
        client_bind_addr(edge.local_addr()),
        Options::default(),
    )
    .expect("client");
    let target = tokio::net::TcpListener::bind(loopback)
        .await
        .expect("target");
    let port = target.local_addr().expect("port").port();

    // The embedder: refuses names, passes addresses.
    tokio::spawn(async move {
        while let Some(decision) = decisions.recv().await {
            if let Decision::Tunnel { target, answer, .. } = decision {
                let verdict = match target.host {
                    veil_engine::Host::Name(_) => TunnelVerdict::Refuse(Refusal::Denied),
                    veil_engine::Host::Ip(_) => TunnelVerdict::Pass,
                };
                let _ = answer.send((verdict, Tags::new()));
            }
        }
    });
    let opener = client.opener();
    let by_name = TunnelTarget::new(Name::new("denied.test").expect("name"), port);
    let refused = tokio::time::timeout(Duration::from_secs(20), opener.open(by_name))
        .await
        .expect("in time");
    match refused {
        Err(OpenFailure::Refused(RefusedReason::Status { status: 403, .. })) => {}
        other => panic!("not refused by the embedder: {other:?}"),
    }
    let by_address = TunnelTarget::new(std::net::IpAddr::from([127, 0, 0, 1]), port);
    let passed = tokio::time::timeout(Duration::from_secs(20), opener.open(by_address))
        .await
        .expect("in time");
    assert!(
        passed.is_ok(),
        "not passed by the embedder: {:?}",
        passed.err()
    );
    let (_accepted, _) = tokio::time::timeout(Duration::from_secs(20), target.accept())
        .await
        .expect("in time")
        .expect("the host dialled");
}
