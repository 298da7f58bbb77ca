//! `Endpoint::long_paths`: connections whose handshake's smallest round trip took longer
//! than `LONG_PATH_RTT` (or, after the peer moved, the new path's), for which hosts grow
//! their sockets' buffers; and `Endpoint::received_flight`, what such a connection
//! receives in a round trip, which they grow them by.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use veil_engine::{Event, LONG_PATH_RTT};

use crate::harness::{Host, Net, drain_events};
use crate::hosts::{EdgeHost, EventReaders};
use crate::{BUDGET, pair, target};

/// One way across the slow link: over half of `LONG_PATH_RTT`, so that a round trip
/// through it is longer than a LAN's.
const ONE_WAY: Duration = Duration::from_millis(4);

/// One exchange across a link that delays every datagram by `one_way`: the client's
/// datagrams to the edge, the edge's back, then due timers. Returns whether the client
/// and the edge reported their connection established meanwhile (other events dropped).
fn step_across(net: &mut Net, one_way: Duration) -> [bool; 2] {
    net.send_from_client(Instant::now());
    std::thread::sleep(one_way);
    net.deliver_to_edge(Instant::now());
    net.send_from_edge(Instant::now());
    std::thread::sleep(one_way);
    net.deliver_to_client(Instant::now());
    [&mut net.client, &mut net.edge].map(|endpoint| {
        if endpoint
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            endpoint.handle_timeout(Instant::now());
        }
        let mut up = false;
        while let Some(event) = endpoint.poll_event() {
            up |= matches!(event, Event::ConnectionEstablished { .. });
        }
        up
    })
}

/// Until both ends report the connection established, every datagram waits `one_way` on
/// the link. Returns whether they did within the budget.
fn handshake_across(net: &mut Net, one_way: Duration) -> bool {
    let started = Instant::now();
    let (mut client_up, mut edge_up) = (false, false);
    while !(client_up && edge_up) && started.elapsed() < BUDGET {
        let [client, edge] = step_across(net, one_way);
        client_up |= client;
        edge_up |= edge;
    }
    client_up && edge_up
}

/// A pair connected across a link that delays every datagram by `one_way`, a tunnel to
/// `name` opened first (it gives the handshake its reason).
fn connected_across(one_way: Duration, name: &str) -> Net {
    let mut net = pair(&[], None);
    net.client
        .open_tunnel(Instant::now(), &target(name, 443))
        .expect("open");
    assert!(
        handshake_across(&mut net, one_way),
        "no handshake: {:?}",
        net.stats
    );
    net
}

#[test]
fn a_handshake_across_a_slow_link_counts_a_long_path_at_both_ends_until_it_closes() {
    assert!(ONE_WAY * 2 > LONG_PATH_RTT);
    let mut net = connected_across(ONE_WAY, "far.test");
    assert_eq!(net.client.long_paths(), 1);
    assert_eq!(net.edge.long_paths(), 1);

    net.client.close(Instant::now(), 0, b"done");
    let mut readers = (EventReaders::default(), EventReaders::default());
    let forgotten = net.run_until_net(&mut readers.0, &mut readers.1, BUDGET, |net, _, _| {
        net.client.long_paths() == 0 && net.edge.long_paths() == 0
    });
    assert!(
        forgotten,
        "closed, still counted: client {}, edge {}",
        net.client.long_paths(),
        net.edge.long_paths()
    );
}

#[test]
fn a_handshake_across_the_harness_link_is_short() {
    let mut net = connected_across(Duration::ZERO, "near.test");
    assert!(counted_short(&mut net));
}

/// A download across the harness's link, whose round trips take far less than
/// `LONG_PATH_RTT`, until neither end counts a long path. Returns whether it came to that.
///
/// A handshake alone may count as long where the host is busy (as when the tests run in
/// parallel with a build): its round trips carry certificate work. The exchanges after it
/// measure less, and the engine measures the path again.
fn counted_short(net: &mut Net) -> bool {
    let mut client = EventReaders::default();
    let mut edge = EdgeHost::default();
    edge.source_len = 100_000;
    net.client
        .open_tunnel(Instant::now(), &target("source.test", 443))
        .expect("open");
    net.run_until_net(&mut client, &mut edge, BUDGET, |net, _, _| {
        net.client.long_paths() == 0 && net.edge.long_paths() == 0
    })
}

/// The client's datagrams come from a new address (a NAT rebinding) and cross a link
/// that delays each by `one_way`; a download on a new tunnel gives both ends something
/// to send, and so round trips to measure the new path by. Returns whether the edge
/// counted the path as its length says within the budget.
fn move_client(net: &mut Net, one_way: Duration) -> bool {
    let moved: SocketAddr = "192.0.2.2:40999".parse().expect("address");
    net.client_seen_as = moved;
    let (mut client, mut edge) = (EventReaders::default(), EdgeHost::default());
    edge.source_len = 1 << 20;
    net.client
        .open_tunnel(Instant::now(), &target("source.test", 443))
        .expect("open");
    let expected = usize::from(one_way * 2 > LONG_PATH_RTT);
    let started = Instant::now();
    while net.edge.long_paths() != expected && started.elapsed() < BUDGET {
        round_across(net, one_way, &mut client, &mut edge);
    }
    net.edge.long_paths() == expected
}

#[test]
fn a_peer_that_moves_to_a_slow_path_is_counted_long() {
    let mut net = connected_across(Duration::ZERO, "near.test");
    assert!(counted_short(&mut net));
    assert!(
        move_client(&mut net, ONE_WAY),
        "moved to a slow path, still short: {:?}",
        net.stats
    );
}

#[test]
fn a_peer_that_moves_to_a_fast_path_is_counted_short() {
    let mut net = connected_across(ONE_WAY, "far.test");
    assert_eq!(net.edge.long_paths(), 1);
    assert!(
        move_client(&mut net, Duration::ZERO),
        "moved to a fast path, still long: {:?}",
        net.stats
    );
}

/// One round trip across a link that delays each datagram by `one_way`: the client's
/// datagrams to the edge, whose host then reads and writes, the edge's back, whose host
/// then does the same; then due timers.
pub(crate) fn round_across(
    net: &mut Net,
    one_way: Duration,
    client: &mut impl Host,
    edge: &mut impl Host,
) {
    net.send_from_client(Instant::now());
    std::thread::sleep(one_way);
    net.deliver_to_edge(Instant::now());
    drain_events(&mut net.edge, edge, Instant::now());
    edge.poll(&mut net.edge, Instant::now());
    net.send_from_edge(Instant::now());
    std::thread::sleep(one_way);
    net.deliver_to_client(Instant::now());
    drain_events(&mut net.client, client, Instant::now());
    client.poll(&mut net.client, Instant::now());
    for endpoint in [&mut net.client, &mut net.edge] {
        if endpoint
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            endpoint.handle_timeout(Instant::now());
        }
    }
}

/// Moves a download from `source.test` across a link that delays each datagram by
/// `one_way`, one round trip at a time (the hosts read and write between them), until
/// the client has `bytes` of it. Returns what the client received in each round trip.
fn download_across(net: &mut Net, one_way: Duration, bytes: usize) -> Vec<usize> {
    let mut client = EventReaders::default();
    let mut edge = EdgeHost::default();
    edge.source_len = u64::try_from(bytes).expect("size") * 2;
    edge.zero_source = true;
    let id = net
        .client
        .open_tunnel(Instant::now(), &target("source.test", 443))
        .expect("open");
    let started = Instant::now();
    let received = |client: &EventReaders| client.received.get(&id).copied().unwrap_or(0);
    let mut rounds = Vec::new();
    while received(&client) < bytes && started.elapsed() < BUDGET {
        let before = received(&client);
        round_across(net, one_way, &mut client, &mut edge);
        rounds.push(received(&client) - before);
    }
    assert!(
        received(&client) >= bytes,
        "the download stalled: {:?}",
        net.stats
    );
    rounds
}

#[test]
fn a_download_across_a_slow_link_is_measured_by_the_flight_the_receiver_gets() {
    let mut net = connected_across(ONE_WAY, "far.test");
    assert_eq!(net.client.received_flight(), 0, "nothing received yet");
    let rounds = download_across(&mut net, ONE_WAY, 2 << 20);
    // Each round trip of this link carries one flight of the download at once (what the
    // edge's congestion and flow control let it send), and the largest is what counts.
    // A flight is measured when the next one begins, so the last is not; the meter
    // counts datagrams, whose packet and frame headers the tunnel's bytes do not carry.
    let most = rounds
        .split_last()
        .and_then(|(_, measured)| measured.iter().max().copied())
        .unwrap_or(0);
    let flight = net.client.received_flight();
    assert!(
        most > 0 && flight >= most && flight <= most + most / 10,
        "flight {flight} bytes, received in each round trip {rounds:?}"
    );
    // The edge received acknowledgements only.
    assert!(
        net.edge.received_flight() < flight / 10,
        "the edge: {} bytes a round trip",
        net.edge.received_flight()
    );

    net.client.close(Instant::now(), 0, b"done");
    let mut readers = (EventReaders::default(), EventReaders::default());
    let forgotten = net.run_until_net(&mut readers.0, &mut readers.1, BUDGET, |net, _, _| {
        net.client.long_paths() == 0 && net.edge.long_paths() == 0
    });
    assert!(forgotten, "closed, still counted");
    assert_eq!(
        (net.client.received_flight(), net.edge.received_flight()),
        (0, 0),
        "no long path left: the flights are forgotten"
    );
}

#[test]
fn a_download_across_the_harness_link_measures_no_flight() {
    let mut net = connected_across(Duration::ZERO, "near.test");
    assert!(counted_short(&mut net));
    download_across(&mut net, Duration::ZERO, 1 << 20);
    assert_eq!(
        net.client.received_flight(),
        0,
        "a short path is not measured"
    );
}

#[test]
fn a_handshake_slowed_by_a_busy_host_is_counted_short_once_exchanges_measure_less() {
    // The handshake's round trips took over `LONG_PATH_RTT`, as on a loaded host.
    let mut net = connected_across(ONE_WAY, "far.test");
    assert_eq!((net.client.long_paths(), net.edge.long_paths()), (1, 1));
    // Then a download across the harness's link, whose round trips take far less.
    assert!(
        counted_short(&mut net),
        "still long: client {}, edge {}",
        net.client.long_paths(),
        net.edge.long_paths()
    );
}
