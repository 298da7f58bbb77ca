//! Floods from a client nobody here wrote the way it behaves: HTTP/3 rapid reset.

use std::collections::VecDeque;
use std::time::Instant;

use veil_engine::{Config, EdgeConfig, Endpoint, Event, MAX_EARLY_RESETS_PER_10S};

use crate::raw::RawClient;

/// The HTTP/3 form of rapid reset (CVE-2023-44487): requests that each make the host act
/// (here a name to resolve and dial), reset by the client before their answer. Past
/// `MAX_EARLY_RESETS_PER_10S` in 10 s the edge closes the connection with
/// `H3_EXCESSIVE_LOAD` and counts it; below it, nothing happens.
#[test]
fn an_http3_rapid_reset_flood_closes_the_connection_and_is_counted() {
    let mut edge =
        Endpoint::new(Config::edge(EdgeConfig::default()), Instant::now()).expect("edge");
    let mut raw = RawClient::new(false);
    let headers = [
        quiche::h3::Header::new(b":method", b"CONNECT"),
        quiche::h3::Header::new(b":authority", b"origin.example:443"),
    ];
    let mut requested = 0usize;
    // The host never answers: every request stays AwaitingResponse until the reset.
    let mut on_edge = |_: &mut Endpoint, event: Event| {
        if matches!(event, Event::TunnelRequest { .. }) {
            requested += 1;
        }
    };
    let mut sent: VecDeque<u64> = VecDeque::new();
    let limit = usize::try_from(MAX_EARLY_RESETS_PER_10S).expect("small");
    let code = raw.drive(&mut edge, &mut on_edge, |raw| {
        if let Some(error) = raw.quic.peer_error() {
            return Some(error.error_code);
        }
        let h3 = raw.h3.as_mut()?;
        while h3.poll(&mut raw.quic).is_ok() {}
        // Requests sent in an earlier round have reached the edge by now: reset them.
        while let Some(stream) = sent.pop_front() {
            let _ = raw
                .quic
                .stream_shutdown(stream, quiche::Shutdown::Write, 0x10c);
            let _ = raw
                .quic
                .stream_shutdown(stream, quiche::Shutdown::Read, 0x10c);
        }
        for _ in 0..8 {
            match h3.send_request(&mut raw.quic, &headers, false) {
                Ok(stream) => sent.push_back(stream),
                Err(_) => break,
            }
        }
        None
    });
    assert_eq!(code, 0x107, "closed with H3_EXCESSIVE_LOAD");
    // Not before the bound (every reset up to it passed), and soon after it.
    assert!(
        requested > limit && requested < limit + 200,
        "{requested} requests reached the host"
    );
    assert_eq!(edge.stats().http3_rapid_reset_floods, 1);
    assert!(
        veil_engine::metrics::encode_text(&edge.stats())
            .contains("veil_http3_rapid_reset_floods_total 1")
    );
}
