//! `QuicConfig::tcp_idle_timeout`: a TCP tunnel with no bytes either way for the timeout is
//! reset and reported closed (`IdleTimeout`); one that keeps moving stays open.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use veil_engine::{CloseReason, Config, EdgeConfig, Endpoint, Event, QuicConfig, TunnelId};

use crate::raw::RawClient;

fn edge_with_idle(timeout: Duration) -> Endpoint {
    let config = Config {
        quic: QuicConfig {
            tcp_idle_timeout: Some(timeout),
            ..QuicConfig::default()
        },
        ..Config::edge(EdgeConfig::default())
    };
    Endpoint::new(config, Instant::now()).expect("edge")
}

#[test]
fn a_silent_tunnel_is_reset_and_a_busy_one_is_not() {
    let timeout = Duration::from_millis(300);
    let mut edge = edge_with_idle(timeout);
    let mut raw = RawClient::new(false);
    let tunnels: RefCell<Vec<TunnelId>> = RefCell::new(Vec::new());
    let closed: RefCell<Vec<(TunnelId, CloseReason)>> = RefCell::new(Vec::new());
    let mut on_edge = |endpoint: &mut Endpoint, event: Event| match event {
        Event::TunnelRequest { tunnel, .. } => {
            endpoint.accept_tunnel(tunnel).expect("accept");
            tunnels.borrow_mut().push(tunnel);
        }
        Event::TunnelReadable { tunnel } => {
            let mut buf = [0u8; 64];
            while let Ok(recv) = endpoint.tunnel_recv(tunnel, &mut buf) {
                if recv.len == 0 {
                    break;
                }
            }
        }
        Event::TunnelClosed { tunnel, reason } => closed.borrow_mut().push((tunnel, reason)),
        _ => {}
    };
    let headers = [(":method", "CONNECT"), (":authority", "93.184.216.34:443")];
    let (silent, status, _) = raw.send_request(&mut edge, &mut on_edge, &headers);
    assert_eq!(status, "200");
    let (busy, status, _) = raw.send_request(&mut edge, &mut on_edge, &headers);
    assert_eq!(status, "200");
    // The busy tunnel sends a byte every 100 ms for well past the timeout.
    let start = Instant::now();
    let last_poke = Cell::new(Instant::now());
    raw.drive(&mut edge, &mut on_edge, |raw| {
        if last_poke.get().elapsed() >= Duration::from_millis(100) {
            last_poke.set(Instant::now());
            let h3 = raw.h3.as_mut()?;
            let _ = h3.send_body(&mut raw.quic, busy, b"x", false);
        }
        (start.elapsed() >= timeout * 3).then_some(())
    });
    let closed = closed.borrow();
    let ids = tunnels.borrow();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        closed.as_slice(),
        [(ids[0], CloseReason::IdleTimeout)],
        "only the silent tunnel closed"
    );
    let code = raw.wait_reset(&mut edge, &mut |_, _| {}, silent);
    assert_eq!(code, 0x010f, "H3_CONNECT_ERROR");
}
