//! The endpoint on its own: what it drops, what it answers without a connection, misuse of
//! the API, configuration errors, graceful close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use veil_engine::{
    ClientConfig, CloseReason, Config, ConfigError, EdgeConfig, Endpoint, Event, OpenError, Pem,
    QuicConfig, RecvMeta, Refusal, Role, TunnelError, TunnelId, Verify,
};

use crate::harness::{CLIENT_ADDR, EDGE_ADDR};
use crate::hosts::{EdgeHost, OneTunnel};
use crate::{BUDGET, client_config, pair, target};

fn meta() -> RecvMeta {
    RecvMeta {
        from: CLIENT_ADDR.parse().expect("address"),
        to: EDGE_ADDR.parse().expect("address"),
    }
}

/// A long-header packet of `version`, `len` bytes long (zero padding after the header).
fn long_header(version: u32, len: usize) -> Vec<u8> {
    let mut packet = vec![0xc0];
    packet.extend_from_slice(&version.to_be_bytes());
    packet.push(8);
    packet.extend_from_slice(&[1; 8]);
    packet.push(8);
    packet.extend_from_slice(&[2; 8]);
    packet.resize(len, 0);
    packet
}

#[test]
fn an_unsupported_version_gets_version_negotiation_once_big_enough() {
    let mut edge = crate::edge(&[]);
    let now = Instant::now();
    edge.handle_datagram(now, meta(), &mut long_header(0x1a2a_3a4a, 1199));
    let mut out = vec![0; 1500];
    assert!(
        edge.poll_transmit(now, &mut out).is_none(),
        "too small to answer"
    );

    edge.handle_datagram(now, meta(), &mut long_header(0x1a2a_3a4a, 1200));
    let transmit = edge
        .poll_transmit(now, &mut out)
        .expect("version negotiation");
    assert_eq!(transmit.to, meta().from);
    assert_eq!(transmit.from, meta().to);
    let packet = &out[..transmit.len];
    // Version 0 marks Version Negotiation; the IDs come back swapped (RFC 9000 §17.2.1).
    assert_eq!(&packet[1..5], &[0, 0, 0, 0]);
    assert_eq!(&packet[5..14], &[&[8u8][..], &[2; 8]].concat()[..]);
    assert_eq!(&packet[14..23], &[&[8u8][..], &[1; 8]].concat()[..]);
    let stats = edge.stats();
    assert_eq!((stats.version_negotiations, stats.connections), (1, 0));
    assert!(edge.is_closed());
}

#[test]
fn datagrams_that_start_nothing_are_dropped_and_counted() {
    let mut edge = crate::edge(&[]);
    let now = Instant::now();
    // A short Initial of version 1, a short-header packet for nobody, garbage, nothing.
    edge.handle_datagram(now, meta(), &mut long_header(1, 1000));
    let mut short = vec![0x40; 100];
    edge.handle_datagram(now, meta(), &mut short);
    edge.handle_datagram(now, meta(), &mut [0xff, 0x00]);
    edge.handle_datagram(now, meta(), &mut []);
    let stats = edge.stats();
    assert_eq!(stats.datagrams_received, 4);
    assert_eq!(stats.datagrams_dropped, 4);
    assert_eq!(stats.connections_total, 0);
    // The short-header packet alone is answered: a Stateless Reset (RFC 9000 §10.3),
    // shorter than its trigger, that looks like a short-header packet.
    assert_eq!(stats.stateless_resets, 1);
    let mut out = [0; 1500];
    let reset = edge.poll_transmit(now, &mut out).expect("stateless reset");
    assert_eq!((reset.to, reset.from), (meta().from, meta().to));
    assert_eq!(reset.len, 64);
    assert_eq!(out[0] & 0xc0, 0x40);
    assert!(edge.poll_transmit(now, &mut out).is_none());
    assert!(edge.poll_event().is_none());
}

#[test]
fn calls_that_do_not_fit_the_role_or_state_fail_cleanly() {
    let now = Instant::now();
    let mut edge = crate::edge(&[]);
    assert_eq!(edge.role(), Role::Edge);
    assert_eq!(
        edge.open_tunnel(now, &target("a.test", 1)),
        Err(OpenError::NotClient)
    );
    assert_eq!(
        edge.open_udp_tunnel(now, &target("a.test", 1)),
        Err(OpenError::NotClient)
    );
    assert_eq!(
        edge.tunnel_recv_datagram(TunnelId(0), &mut [0; 8]),
        Err(TunnelError::UnknownTunnel)
    );
    assert_eq!(edge.tunnel_max_datagram_payload(TunnelId(0)), None);
    assert_eq!(
        edge.accept_tunnel(TunnelId(0)),
        Err(TunnelError::UnknownTunnel)
    );
    assert_eq!(edge.local_addr(), None);

    let mut config = client_config(Verify::Insecure, None);
    config.max_pending_tunnels = 2;
    let mut client = Endpoint::new(Config::client(config), now).expect("client");
    assert_eq!(client.role(), Role::Client);
    assert_eq!(client.certificate_fingerprint(), None);
    assert_eq!(
        client.open_udp_tunnel(now, &target("a.test", 0)),
        Err(OpenError::InvalidTarget)
    );
    let first = client.open_tunnel(now, &target("a.test", 1)).expect("open");
    let udp = client
        .open_udp_tunnel(now, &target("b.test", 1))
        .expect("open");
    assert_eq!(
        client.tunnel_recv_datagram(udp, &mut [0; 8]),
        Err(TunnelError::InvalidState)
    );
    assert_eq!(client.tunnel_max_datagram_payload(udp), None);
    assert_eq!(
        client.open_tunnel(now, &target("c.test", 1)),
        Err(OpenError::QueueFull)
    );
    assert_eq!(
        client.tunnel_send(first, b"x"),
        Err(TunnelError::InvalidState)
    );
    assert_eq!(
        client.tunnel_recv(first, &mut [0; 8]),
        Err(TunnelError::InvalidState)
    );
    assert_eq!(client.accept_tunnel(first), Err(TunnelError::InvalidState));
    assert_eq!(
        client.refuse_tunnel(first, Refusal::Denied),
        Err(TunnelError::InvalidState)
    );
    // Aborting a waiting tunnel just forgets it.
    client.tunnel_abort(first).expect("abort");
    assert_eq!(client.tunnel_abort(first), Err(TunnelError::UnknownTunnel));
    // The first open started a connection: an Initial is ready.
    let transmit = client.poll_transmit(now, &mut [0; 1500]).expect("Initial");
    assert_eq!(transmit.to.to_string(), EDGE_ADDR);
    assert!(transmit.len >= 1200);
    client.close(now, 0, b"");
    assert!(matches!(
        client.poll_event(),
        Some(Event::TunnelRefused { .. })
    ));
    assert_eq!(
        client.open_tunnel(now, &target("d.test", 1)),
        Err(OpenError::Closing)
    );
}

#[test]
fn bad_configurations_are_refused_by_name() {
    let now = Instant::now();
    let mut config = Config::edge(EdgeConfig {
        egress_allow: vec!["10.0.0.0/40".to_owned()],
        ..EdgeConfig::default()
    });
    assert!(matches!(
        Endpoint::new(config.clone(), now),
        Err(ConfigError::InvalidEgressPrefix(prefix)) if prefix == "10.0.0.0/40"
    ));
    config = Config::edge(EdgeConfig::default());
    config.quic = QuicConfig {
        max_send_udp_payload_size: 1000,
        ..QuicConfig::default()
    };
    assert!(matches!(
        Endpoint::new(config, now),
        Err(ConfigError::InvalidValue {
            field: "max_send_udp_payload_size"
        })
    ));
    let no_variables = Config::edge(EdgeConfig {
        udp_path_template: "/udp/".to_owned(),
        ..EdgeConfig::default()
    });
    assert!(matches!(
        Endpoint::new(no_variables, now),
        Err(ConfigError::InvalidValue {
            field: "udp_path_template"
        })
    ));
    let mut no_queue = Config::edge(EdgeConfig::default());
    no_queue.quic.udp_tunnel_queue_len = 0;
    assert!(matches!(
        Endpoint::new(no_queue, now),
        Err(ConfigError::InvalidValue {
            field: "udp_tunnel_queue_len"
        })
    ));
    let missing = Config::edge(EdgeConfig {
        cert: Some(Pem::Path("/nonexistent/veil-cert.pem".into())),
        key: Some(Pem::Path("/nonexistent/veil-key.pem".into())),
        ..EdgeConfig::default()
    });
    assert!(matches!(
        Endpoint::new(missing, now),
        Err(ConfigError::ReadFile { .. })
    ));
    let edge_addr: SocketAddr = EDGE_ADDR.parse().expect("address");
    let client = Config::client(ClientConfig::new(
        edge_addr,
        "localhost",
        Verify::Ca(Pem::Text("x".into())),
    ));
    assert!(matches!(
        Endpoint::new(client, now),
        Err(ConfigError::InvalidPem { what: "verify.ca" })
    ));
}

#[test]
fn close_drains_both_sides_and_ends_their_tunnels() {
    let mut net = pair(&[], None);
    let mut client = OneTunnel::to(target("echo.test", 1));
    let mut edge = EdgeHost::default();
    assert!(net.run_until(&mut client, &mut edge, BUDGET, |c, _| c.opened));

    net.client.close(Instant::now(), 0, b"bye");
    let closed = net.run_until(&mut client, &mut edge, BUDGET, |c, e| {
        c.closed.is_some() && !e.closed.is_empty()
    });
    assert!(closed, "tunnels not ended");
    assert_eq!(client.closed, Some(CloseReason::ConnectionLost));
    assert_eq!(edge.closed[0].1, CloseReason::ConnectionLost);
    // Both sides drain (closing and draining periods of a few PTOs) and forget the connection.
    let start = Instant::now();
    while !(net.client.is_closed() && net.edge.is_closed()) {
        assert!(start.elapsed() < BUDGET, "not drained");
        net.run_until(&mut client, &mut edge, Duration::from_millis(20), |_, _| {
            false
        });
    }
    // The step that reaped the connections may have ended before the host polled the
    // events it queued (seen under load): one more step hands them over.
    net.run_until(&mut client, &mut edge, Duration::from_millis(20), |_, _| {
        false
    });
    let lost = client.connection_events.last();
    assert!(
        matches!(lost, Some(Event::ConnectionLost { reason, .. }) if reason == "closed locally (application error 0x0)"),
        "{lost:?}"
    );
    assert_eq!(net.edge.stats().connections_lost, 1);
    // What the connection counted outlives it: its packets, and its round-trip time.
    let stats = net.edge.stats();
    assert_eq!(stats.quic_rtt.count(), 1);
    assert!(stats.quic_packets_sent > 0);
    assert_eq!(net.client.stats().quic_rtt.count(), 1);
}
