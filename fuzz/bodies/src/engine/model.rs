//! What the driver expects of the engine: every tunnel each side has, the bytes each
//! direction of each tunnel carried, and the refusals the edge's host gave.
//!
//! Tunnel bytes are not random but a pattern of (direction, tunnel, offset), so a received
//! byte is checked against the byte that was sent at that offset without keeping copies:
//! a lost, duplicated, reordered or foreign byte shows at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use veil_engine::{Refusal, TunnelId, TunnelTarget};

/// Tunnels a side forgets after they die, at most; they are picked again to check that a
/// dead id stays dead.
const DEAD_KEPT: usize = 16;

/// The byte at `offset` of the stream named `key`.
pub(crate) fn pattern(key: u64, offset: u64) -> u8 {
    let mixed = (offset ^ key.rotate_left(40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed.to_le_bytes()[7]
}

/// Fills `out` with the stream `key` from `offset`.
pub(crate) fn fill(key: u64, offset: u64, out: &mut [u8]) {
    for (byte, at) in out.iter_mut().zip(offset..) {
        *byte = pattern(key, at);
    }
}

/// The position of the first byte of `data` that is not the stream `key` from `offset`.
pub(crate) fn mismatch(key: u64, offset: u64, data: &[u8]) -> Option<u64> {
    data.iter()
        .zip(offset..)
        .find(|&(&byte, at)| byte != pattern(key, at))
        .map(|(_, at)| at)
}

/// Stream keys: the client's bytes of the tunnel with this port, the edge's bytes back,
/// and the edge's bytes to the raw peer.
pub(crate) fn upload_key(port: u16) -> u64 {
    u64::from(port)
}

pub(crate) fn download_key(port: u16) -> u64 {
    1 << 32 | u64::from(port)
}

pub(crate) fn raw_key(tunnel: TunnelId) -> u64 {
    2 << 32 | tunnel.0
}

/// Bytes at the start of every UDP payload the driver sends: sequence number and port.
pub(crate) const DATAGRAM_HEADER: usize = 6;

/// A UDP payload of `len` bytes (at least [`DATAGRAM_HEADER`]): `seq` and `port`, then the
/// pattern of the stream named by direction, port and `seq`.
pub(crate) fn fill_datagram(upload: bool, port: u16, seq: u32, out: &mut [u8]) {
    out[..4].copy_from_slice(&seq.to_le_bytes());
    out[4..DATAGRAM_HEADER].copy_from_slice(&port.to_le_bytes());
    fill(
        datagram_key(upload, port, seq),
        0,
        &mut out[DATAGRAM_HEADER..],
    );
}

fn datagram_key(upload: bool, port: u16, seq: u32) -> u64 {
    3 << 60 | u64::from(upload) << 56 | u64::from(port) << 32 | u64::from(seq)
}

/// The datagrams one direction of a UDP flow sent, by sequence number, and which arrived.
#[derive(Debug, Default)]
pub(crate) struct Datagrams {
    /// Length of each datagram offered to `tunnel_send_datagram` (taken or dropped).
    pub(crate) lengths: Vec<usize>,
    pub(crate) seen: Vec<bool>,
}

impl Datagrams {
    /// The next sequence number, reserved for a datagram of `len` bytes.
    pub(crate) fn reserve(&mut self, len: usize) -> u32 {
        let seq = u32::try_from(self.lengths.len()).expect("few datagrams");
        self.lengths.push(len);
        self.seen.push(false);
        seq
    }

    /// Checks a received payload: one this direction sent, whole, unchanged, once.
    pub(crate) fn receive(&mut self, upload: bool, port: u16, payload: &[u8]) {
        assert!(
            payload.len() >= DATAGRAM_HEADER,
            "a datagram of {} bytes arrived",
            payload.len()
        );
        let seq = u32::from_le_bytes(payload[..4].try_into().expect("4 bytes"));
        let from = u16::from_le_bytes(payload[4..DATAGRAM_HEADER].try_into().expect("2 bytes"));
        assert_eq!(
            from, port,
            "datagram {seq} of flow {from} arrived on flow {port}"
        );
        let index = usize::try_from(seq).expect("u32 fits");
        let Some(&len) = self.lengths.get(index) else {
            panic!("datagram {seq} of flow {port} was never sent");
        };
        assert_eq!(payload.len(), len, "datagram {seq} of flow {port}: length");
        assert!(
            !self.seen[index],
            "datagram {seq} of flow {port} arrived twice"
        );
        self.seen[index] = true;
        let key = datagram_key(upload, port, seq);
        if let Some(at) = mismatch(key, 0, &payload[DATAGRAM_HEADER..]) {
            panic!("datagram {seq} of flow {port}: wrong byte at {at}");
        }
    }
}

/// A tunnel the client opened.
#[derive(Debug)]
// The two directions' flags, one each.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct ClientTunnel {
    /// Names its [`Flow`]: every tunnel the client opens gets its own port.
    pub(crate) port: u16,
    /// A datagram tunnel: CONNECT-UDP, or CONNECT-IP (`ip`).
    pub(crate) udp: bool,
    /// A CONNECT-IP tunnel.
    pub(crate) ip: bool,
    /// CONNECT-IP: the addresses the edge's last `ADDRESS_ASSIGN` gave.
    pub(crate) addresses: Vec<IpAddr>,
    /// `TunnelOpened` came.
    pub(crate) open: bool,
    pub(crate) sent: u64,
    pub(crate) finished: bool,
    /// The edge stopped this direction (`WriteClosed` on a live tunnel): the tunnel lives
    /// on until the edge's FIN is read.
    pub(crate) stopped: bool,
    pub(crate) received: u64,
    pub(crate) fin: bool,
}

/// Who asked the edge for a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The engine's client, for the flow with this port.
    Client(u16),
    /// The engine's client, a CONNECT-IP tunnel: its request names no port, so the flow
    /// is not known.
    ClientIp,
    Raw,
}

/// A tunnel the edge reported.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct EdgeTunnel {
    pub(crate) origin: Origin,
    /// A datagram tunnel: CONNECT-UDP, or CONNECT-IP (`ip`).
    pub(crate) udp: bool,
    /// A CONNECT-IP tunnel.
    pub(crate) ip: bool,
    /// `accept_tunnel` succeeded (the 200 may still wait for room).
    pub(crate) accepted: bool,
    pub(crate) sent: u64,
    pub(crate) finished: bool,
    /// The client stopped this direction (`WriteClosed` on a live tunnel).
    pub(crate) stopped: bool,
    pub(crate) received: u64,
    pub(crate) fin: bool,
}

impl EdgeTunnel {
    /// The stream key of what this tunnel sends.
    pub(crate) fn key(&self, id: TunnelId) -> u64 {
        match self.origin {
            Origin::Client(port) => download_key(port),
            Origin::Raw | Origin::ClientIp => raw_key(id),
        }
    }
}

/// Both directions of one client tunnel, across every edge tunnel that answered it (a
/// request repeated on a new connection can leave a stale twin on the old one).
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Flow {
    pub(crate) target: TunnelTarget,
    /// A CONNECT-UDP (or CONNECT-IP) flow.
    pub(crate) udp: bool,
    /// A CONNECT-IP flow.
    pub(crate) ip: bool,
    /// UDP payloads each way.
    pub(crate) datagrams_up: Datagrams,
    pub(crate) datagrams_down: Datagrams,
    /// Bytes the client's `tunnel_send` took.
    pub(crate) upload_sent: u64,
    /// The client finished after `upload_sent` bytes.
    pub(crate) upload_fin: bool,
    /// Most bytes an edge tunnel of this flow read.
    pub(crate) upload_received: u64,
    /// Most bytes an edge tunnel of this flow sent.
    pub(crate) download_sent: u64,
    /// Lengths at which an edge tunnel of this flow finished.
    pub(crate) download_fins: Vec<u64>,
    /// Bytes the client read.
    pub(crate) download_received: u64,
    /// What the edge's host refused this flow's requests with.
    pub(crate) refusals: Vec<Refusal>,
    /// The client's tunnel of this flow opened.
    pub(crate) opened: bool,
    /// The client read the download's FIN; the edge read the upload's FIN.
    pub(crate) download_fin_read: bool,
    pub(crate) upload_fin_read: bool,
    /// The client, or the edge, aborted a tunnel of this flow after finishing it: the
    /// engine then sends no `RESET_STREAM` on the finished direction (quiche 0.30 would
    /// hide one that follows the FIN), so the peer must still read every byte and the FIN.
    pub(crate) upload_abort_after_fin: bool,
    pub(crate) download_abort_after_fin: bool,
    /// The edge's host accepted a tunnel of this flow. An optimistic client may finish
    /// and abort before that, and a request the edge never accepts delivers nothing.
    pub(crate) edge_accepted: bool,
    /// The client aborted this flow's tunnel (it stops reading the download); the edge's
    /// host aborted or refused one (it stops reading the upload).
    pub(crate) client_gave_up: bool,
    pub(crate) edge_gave_up: bool,
}

impl Flow {
    pub(crate) fn new(target: TunnelTarget, udp: bool) -> Self {
        Self {
            target,
            udp,
            ip: false,
            datagrams_up: Datagrams::default(),
            datagrams_down: Datagrams::default(),
            upload_sent: 0,
            upload_fin: false,
            upload_received: 0,
            download_sent: 0,
            download_fins: Vec::new(),
            download_received: 0,
            refusals: Vec::new(),
            opened: false,
            download_fin_read: false,
            upload_fin_read: false,
            upload_abort_after_fin: false,
            edge_accepted: false,
            download_abort_after_fin: false,
            client_gave_up: false,
            edge_gave_up: false,
        }
    }
}

/// Everything the driver knows.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) client: BTreeMap<TunnelId, ClientTunnel>,
    pub(crate) edge: BTreeMap<TunnelId, EdgeTunnel>,
    pub(crate) client_dead: Vec<TunnelId>,
    pub(crate) edge_dead: Vec<TunnelId>,
    pub(crate) flows: HashMap<u16, Flow>,
    /// The largest tunnel id each side issued so far: ids are never reused.
    pub(crate) client_last: Option<TunnelId>,
    pub(crate) edge_last: Option<TunnelId>,
    /// CONNECT-IP: the packets the client's tunnels sent (as they left, hop limit
    /// decremented) and the edge sent to its clients, not yet received.
    pub(crate) packets_up: Packets,
    pub(crate) packets_down: Packets,
    /// CONNECT-IP: every edge tunnel seen holding each pool address.
    pub(crate) holders: HashMap<IpAddr, BTreeSet<TunnelId>>,
    /// What the edge's host refused the client's CONNECT-IP requests with.
    pub(crate) ip_refusals: Vec<Refusal>,
}

/// A multiset of IP packets.
#[derive(Debug, Default)]
pub(crate) struct Packets(HashMap<Vec<u8>, u32>);

impl Packets {
    pub(crate) fn add(&mut self, packet: &[u8]) {
        *self.0.entry(packet.to_vec()).or_default() += 1;
    }

    /// Takes one copy of `packet`; `false` when none was sent (or all arrived already).
    pub(crate) fn take(&mut self, packet: &[u8]) -> bool {
        match self.0.get_mut(packet) {
            Some(count) if *count > 1 => {
                *count -= 1;
                true
            }
            Some(_) => {
                self.0.remove(packet);
                true
            }
            None => false,
        }
    }
}

impl Model {
    pub(crate) fn new_client(&mut self, id: TunnelId, port: u16, udp: bool, ip: bool) {
        assert!(
            self.client_last.is_none_or(|last| id > last),
            "client reused or reordered tunnel id {id:?}"
        );
        self.client_last = Some(id);
        self.client.insert(
            id,
            ClientTunnel {
                port,
                udp,
                ip,
                addresses: Vec::new(),
                open: false,
                sent: 0,
                finished: false,
                stopped: false,
                received: 0,
                fin: false,
            },
        );
    }

    pub(crate) fn new_edge(&mut self, id: TunnelId, origin: Origin, udp: bool, ip: bool) {
        assert!(
            self.edge_last.is_none_or(|last| id > last),
            "edge reused or reordered tunnel id {id:?}"
        );
        self.edge_last = Some(id);
        self.edge.insert(
            id,
            EdgeTunnel {
                origin,
                udp,
                ip,
                accepted: false,
                sent: 0,
                finished: false,
                stopped: false,
                received: 0,
                fin: false,
            },
        );
    }

    pub(crate) fn kill_client(&mut self, id: TunnelId) -> ClientTunnel {
        let tunnel = self
            .client
            .remove(&id)
            .unwrap_or_else(|| panic!("client tunnel {id:?} is not alive"));
        remember(&mut self.client_dead, id);
        tunnel
    }

    pub(crate) fn kill_edge(&mut self, id: TunnelId) -> EdgeTunnel {
        let tunnel = self
            .edge
            .remove(&id)
            .unwrap_or_else(|| panic!("edge tunnel {id:?} is not alive"));
        remember(&mut self.edge_dead, id);
        tunnel
    }

    pub(crate) fn flow(&mut self, port: u16) -> &mut Flow {
        self.flows
            .get_mut(&port)
            .unwrap_or_else(|| panic!("no flow for port {port}"))
    }
}

fn remember(dead: &mut Vec<TunnelId>, id: TunnelId) {
    if dead.len() == DEAD_KEPT {
        dead.remove(0);
    }
    dead.push(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_differ_by_stream_and_detect_shifts() {
        let mut a = [0; 64];
        fill(upload_key(1), 0, &mut a);
        assert_eq!(mismatch(upload_key(1), 0, &a), None);
        assert!(mismatch(upload_key(2), 0, &a).is_some());
        assert!(mismatch(download_key(1), 0, &a).is_some());
        assert!(mismatch(upload_key(1), 1, &a).is_some());
    }

    #[test]
    fn datagrams_are_checked_whole_and_once() {
        let mut sent = Datagrams::default();
        let seq = sent.reserve(40);
        let mut payload = [0; 40];
        fill_datagram(true, 7, seq, &mut payload);
        sent.receive(true, 7, &payload);
        let again = std::panic::catch_unwind(move || sent.receive(true, 7, &payload));
        assert!(again.is_err(), "a duplicate passed");
    }
}
