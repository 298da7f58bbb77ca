//! Every connection ID a real edge [`Endpoint`] issues names its core: a client and an edge
//! with a [`CidLayout`] exchange datagrams in memory, and every ID the edge hands out (the
//! source ID of its long-header packets) and every datagram the client sends to an ID it
//! learned decode to the edge's core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use veil_engine::{
    CidLayout, ClientConfig, Config, EdgeConfig, Endpoint, Event, Name, RecvMeta, TunnelTarget,
    Verify,
};

const EDGE: &str = "192.0.2.1:4433";
const CLIENT: &str = "192.0.2.2:50000";

/// What the run saw.
#[derive(Default)]
struct Seen {
    /// Source IDs of the edge's long-header packets.
    edge_scids: Vec<Vec<u8>>,
    /// Owners `owner_of_datagram` gave for the client's datagrams (`None`: stays put).
    client_routes: Vec<Option<u16>>,
    established: bool,
}

/// The datagrams of a transmit (GSO batches split).
fn datagrams(buf: &[u8], len: usize, segment: Option<usize>) -> Vec<Vec<u8>> {
    let bytes = &buf[..len];
    match segment {
        Some(size) => bytes.chunks(size).map(<[u8]>::to_vec).collect(),
        None => vec![bytes.to_vec()],
    }
}

/// The source ID of a long-header packet.
fn long_header_scid(packet: &[u8]) -> Option<Vec<u8>> {
    if packet.first()? & 0x80 == 0 {
        return None;
    }
    let dcid_len = usize::from(*packet.get(5)?);
    let scid_at = 6 + dcid_len;
    let scid_len = usize::from(*packet.get(scid_at)?);
    packet
        .get(scid_at + 1..scid_at + 1 + scid_len)
        .map(<[u8]>::to_vec)
}

/// Runs a handshake and a little traffic between a client and an edge laid out as
/// `layout`; returns what crossed the wire.
fn drive(layout: CidLayout) -> Seen {
    let now = Instant::now();
    let edge_addr: SocketAddr = EDGE.parse().expect("address");
    let client_addr: SocketAddr = CLIENT.parse().expect("address");
    let mut edge = Endpoint::new(Config::edge(EdgeConfig::default()), now)
        .expect("edge")
        .with_cid_layout(layout);
    assert_eq!(edge.cid_layout(), Some(layout));
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let mut config = ClientConfig::new(edge_addr, "localhost", Verify::Pin(pin));
    config.local_addr = Some(client_addr);
    let mut client = Endpoint::new(Config::client(config), now).expect("client");
    let target = TunnelTarget::new(Name::new("example.com").expect("name"), 80);
    client.open_tunnel(now, &target).expect("open");

    let mut seen = Seen::default();
    let mut buf = vec![0; 65536];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut quiet_rounds = 0;
    while quiet_rounds < 3 && Instant::now() < deadline {
        let now = Instant::now();
        let mut moved = false;
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            for mut datagram in datagrams(&buf, t.len, t.segment_size) {
                moved = true;
                seen.client_routes.push(layout.owner_of_datagram(&datagram));
                let meta = RecvMeta {
                    from: client_addr,
                    to: edge_addr,
                };
                edge.handle_datagram(now, meta, &mut datagram);
            }
        }
        while let Some(t) = edge.poll_transmit(now, &mut buf) {
            for mut datagram in datagrams(&buf, t.len, t.segment_size) {
                moved = true;
                seen.edge_scids.extend(long_header_scid(&datagram));
                let meta = RecvMeta {
                    from: edge_addr,
                    to: client_addr,
                };
                client.handle_datagram(now, meta, &mut datagram);
            }
        }
        while let Some(event) = edge.poll_event() {
            moved = true;
            match event {
                Event::ConnectionEstablished { .. } => seen.established = true,
                Event::TunnelRequest { tunnel, .. } => {
                    edge.refuse_tunnel(tunnel, veil_engine::Refusal::Prohibited)
                        .expect("refuse");
                }
                _ => {}
            }
        }
        while client.poll_event().is_some() {
            moved = true;
        }
        quiet_rounds = if moved { 0 } else { quiet_rounds + 1 };
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn every_id_the_edge_issues_names_its_core(
        (cores, core) in (1u16..=64).prop_flat_map(|cores| (Just(cores), 0..cores)),
    ) {
        let layout = CidLayout::new(core, cores).expect("core < cores");
        let seen = drive(layout);
        prop_assert!(seen.established, "the handshake completed");
        prop_assert!(!seen.edge_scids.is_empty());
        for scid in &seen.edge_scids {
            prop_assert_eq!(layout.owner_of(scid), Some(core), "issued ID {:02x?}", scid);
        }
        // After its first Initial the client addresses the edge by an ID the edge issued:
        // its later datagrams route to the edge's core, none elsewhere.
        let routed = seen.client_routes.iter().flatten().count();
        prop_assert!(routed > 0, "some client datagrams carried an issued ID");
        for route in seen.client_routes.iter().flatten() {
            prop_assert_eq!(*route, core);
        }
    }
}

#[test]
fn without_a_layout_ids_stay_fully_random() {
    let edge = Endpoint::new(Config::edge(EdgeConfig::default()), Instant::now()).expect("edge");
    assert_eq!(edge.cid_layout(), None);
}
