//! The `engine` target's input: a setup, then a sequence of actions.
//!
//! The layout is read with [`Unstructured`], but by hand rather than by derive, so that it
//! stays simple enough for `fuzz/seed.py` to write seeds in and stable when actions are
//! added: every action is one tag byte (`tag % 64` picks it; tags without an action pump
//! the link) followed by fixed fields (`u8`, little-endian `u16`) and byte strings (a
//! length byte, then that many bytes or what is left). Missing bytes read as zeros, so
//! every input is valid.
//!
//! | tag | action | fields |
//! |---:|---|---|
//! | 0 | `Open` | host kind, then: name index / 4 IPv4 octets / 16 IPv6 octets / name bytes |
//! | 1 | `Accept` | side, pick |
//! | 2 | `Refuse` | side, pick, refusal |
//! | 3 | `Send` | side, pick, length (`u16`) |
//! | 4 | `Recv` | side, pick, buffer size (`u16`) |
//! | 5 | `Finish` | side, pick |
//! | 6 | `Abort` | side, pick |
//! | 7 | `Deliver` | direction, count (0: all) |
//! | 8 | `Drop` | direction, pick |
//! | 9 | `Duplicate` | direction, pick |
//! | 10 | `Reorder` | direction, pick |
//! | 11 | `Corrupt` | direction, pick, position (`u16`), xor mask |
//! | 12 | `Inject` | direction, bytes |
//! | 13 | `Advance` | milliseconds (`u16`) |
//! | 14 | `Pump` | rounds |
//! | 15 | `ReadAll` | side |
//! | 16 | `Close` | side, error code (`u16`), reason bytes |
//! | 17 | `RawRequest` | header count, headers (name, value: a vocabulary index, or ≥ 0xe0 and bytes), FIN |
//! | 18 | `RawBody` | pick, FIN, bytes |
//! | 19 | `RawStream` | stream, FIN, bytes |
//! | 20 | `RawUni` | kind, bytes |
//! | 21 | `RawDatagram` | bytes |
//! | 22 | `RawReset` | pick, direction, error code (`u16`) |
//! | 23 | `AdvanceSecs` | seconds |
//! | 24 | `Timeout` | — |
//! | 25 | `OpenMany` | count |
//! | 26 | `RawClose` | error code (`u16`) |
//! | 27 | `Sleep` | milliseconds of real time (byte % 64; at most 100 ms per input) |
//! | 28 | `OpenUdp` | as `Open`, for a CONNECT-UDP tunnel |
//! | 29 | `SendDatagram` | side, pick, length (`u16`) |
//! | 30 | `RecvDatagram` | side, pick, buffer size (`u16`) |
//! | 31 | `RawHttpDatagram` | request pick, Context ID, payload bytes |
//! | 32 | `ReadDatagrams` | side |
//! | 33 | `OpenIp` | scope kind, then: list index / 4 IPv4 octets and length / 16 IPv6 octets and length; protocol (0: any, n: n - 1) |
//! | 34 | `SendPacket` | side, pick, packet (below) |
//! | 35 | `RecvPacket` | side, pick, buffer size (`u16`) |
//! | 36 | `ReadPackets` | side |
//! | 37 | `IpDeliver` | pick (whose address), packet (below), answer buffer size |
//! | 38 | `RawIpRequest` | path (a vocabulary index into `IP_PATHS`, or ≥ 0xe0 and bytes), flags: token, FIN, no `capsule-protocol`, wrong authority |
//! | 39 | `RawCapsule` | request pick, type (below 0xc0 modulo 4: DATAGRAM, `ADDRESS_ASSIGN`, `ADDRESS_REQUEST`, `ROUTE_ADVERTISEMENT`; from 0xc0 the byte itself), mode (bit 0 built from the bytes, bit 1 a DATAGRAM as a QUIC DATAGRAM frame), bytes |
//!
//! A packet: its form (`% 4`: 0 UDP, 1 ICMP error, 2 raw bytes, 3 raw bytes that bypass the
//! sender's checks (`tunnel_send_datagram`)); for the raw forms the bytes, for the built
//! ones a flags byte (bit 0 IPv6), source and destination (selector `% 3`: 0 an assigned
//! address by index, 1 a vocabulary address by index, 2 a literal of the family's length),
//! hop limit, payload bytes; then zero padding (`u16`, modulo 2048) for every form.
//!
//! Sides: even byte client, odd edge. Picks choose a live tunnel (or queued packet) modulo
//! their number; a pick of 0xf8 or more names a dead or never-issued tunnel instead.
//! Directions: byte % 3 is to the edge, to the client, to the raw peer.

use arbitrary::Unstructured;

/// Tags are read modulo this; the ones no action has yet pump the link.
const TAGS: u8 = 64;

/// How the two endpoints are configured, from the first two bytes.
#[derive(Debug, Clone, Copy)]
// The setup byte's flags, one each.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Setup {
    pub(crate) auth: Auth,
    /// Stream windows of a few KiB instead of megabytes, so flow control bites.
    pub(crate) small_windows: bool,
    /// QUIC DATAGRAM frames off on both endpoints.
    pub(crate) no_datagrams: bool,
    /// A client queue of 4 waiting tunnels instead of 1024.
    pub(crate) small_queue: bool,
    /// An edge that takes a single connection.
    pub(crate) one_connection: bool,
    /// `egress_allow = ["127.0.0.0/8"]` on the edge.
    pub(crate) allow_loopback: bool,
    /// 0 CUBIC, 1 `BBRv2`, 2 Reno.
    pub(crate) congestion: u8,
    /// The edge's CONNECT-IP pools: 0 an IPv4 /30 (one address) and an IPv6 /126 (two),
    /// 1 the IPv4 /30 alone, 2 the IPv6 /126 alone, 3 none (CONNECT-IP answered 501).
    pub(crate) pools: u8,
    /// An optimistic client (`ClientConfig::optimistic`): TCP tunnels open to the host
    /// when their request leaves, and refusals close them.
    pub(crate) optimistic: bool,
}

/// Tokens on the edge, and what the client presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No tokens configured.
    Open,
    /// The client sends the configured token.
    Token,
    /// The client sends another token.
    WrongToken,
    /// The client sends none.
    NoToken,
}

impl Setup {
    pub(crate) fn read(u: &mut Unstructured<'_>) -> Self {
        let flags = byte(u);
        let more = byte(u);
        Self {
            auth: match flags & 3 {
                0 => Auth::Open,
                1 => Auth::Token,
                2 => Auth::WrongToken,
                _ => Auth::NoToken,
            },
            small_windows: flags & 4 != 0,
            no_datagrams: flags & 8 != 0,
            small_queue: flags & 16 != 0,
            one_connection: flags & 32 != 0,
            allow_loopback: flags & 64 != 0,
            congestion: (more & 0x0f) % 3,
            pools: (more >> 4) & 3,
            optimistic: more & 0x40 != 0,
        }
    }
}

/// Which endpoint a tunnel action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Edge,
}

/// A direction of the in-memory link, by where it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Edge,
    Client,
    Raw,
}

/// The host of a tunnel the client opens.
#[derive(Debug, Clone)]
pub(crate) enum HostInput {
    /// An entry of [`NAMES`](crate::engine::NAMES).
    Listed(u8),
    V4([u8; 4]),
    V6([u8; 16]),
    /// Bytes mapped onto name characters.
    Bytes(Vec<u8>),
}

/// The scope of a CONNECT-IP tunnel the client opens.
#[derive(Debug, Clone)]
pub(crate) enum ScopeInput {
    Any,
    /// An entry of [`IP_SCOPES`](crate::engine::IP_SCOPES).
    Listed(u8),
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

/// An address of a built packet.
#[derive(Debug, Clone)]
pub(crate) enum AddrInput {
    /// One the tunnel was assigned (or a pool address when it has none), by index.
    Assigned(u8),
    /// An entry of the family's vocabulary (`V4_ADDRESSES`, `V6_ADDRESSES`).
    Listed(u8),
    /// Octets: the first 4 for IPv4.
    Literal([u8; 16]),
}

/// An IP packet from the input.
#[derive(Debug, Clone)]
pub(crate) enum PacketInput {
    /// A UDP datagram (`encode_udp`) or an ICMP error about one, with its fields.
    Built {
        icmp: bool,
        v6: bool,
        source: AddrInput,
        destination: AddrInput,
        hop_limit: u8,
        payload: Vec<u8>,
        pad: u16,
    },
    /// Bytes as they are; `bypass`: sent with `tunnel_send_datagram`, past the sender's
    /// checks.
    Raw {
        bypass: bool,
        bytes: Vec<u8>,
        pad: u16,
    },
}

/// A header field of a raw request: a vocabulary index, or bytes of its own.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    Listed(u8),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Open(HostInput),
    Accept(Side, u8),
    Refuse(Side, u8, u8),
    Send(Side, u8, u16),
    Recv(Side, u8, u16),
    Finish(Side, u8),
    Abort(Side, u8),
    Deliver(Dir, u8),
    Drop(Dir, u8),
    Duplicate(Dir, u8),
    Reorder(Dir, u8),
    Corrupt(Dir, u8, u16, u8),
    Inject(Dir, Vec<u8>),
    Advance(u16),
    Pump(u8),
    ReadAll(Side),
    Close(Side, u16, Vec<u8>),
    RawRequest(Vec<(Field, Field)>, bool),
    RawBody(u8, bool, Vec<u8>),
    RawStream(u8, bool, Vec<u8>),
    RawUni(u8, Vec<u8>),
    RawDatagram(Vec<u8>),
    RawReset(u8, u8, u16),
    AdvanceSecs(u8),
    Timeout,
    OpenMany(u8),
    RawClose(u16),
    Sleep(u8),
    OpenUdp(HostInput),
    SendDatagram(Side, u8, u16),
    RecvDatagram(Side, u8, u16),
    RawHttpDatagram(u8, u8, Vec<u8>),
    ReadDatagrams(Side),
    OpenIp(ScopeInput, u8),
    SendPacket(Side, u8, PacketInput),
    RecvPacket(Side, u8, u16),
    ReadPackets(Side),
    IpDeliver(u8, PacketInput, u8),
    RawIpRequest(Field, u8),
    RawCapsule(u8, u8, u8, Vec<u8>),
}

impl Action {
    pub(crate) fn read(u: &mut Unstructured<'_>) -> Self {
        match byte(u) % TAGS {
            0 => Self::Open(host(u)),
            1 => Self::Accept(side(u), byte(u)),
            2 => Self::Refuse(side(u), byte(u), byte(u)),
            3 => Self::Send(side(u), byte(u), word(u)),
            4 => Self::Recv(side(u), byte(u), word(u)),
            5 => Self::Finish(side(u), byte(u)),
            6 => Self::Abort(side(u), byte(u)),
            7 => Self::Deliver(dir(u), byte(u)),
            8 => Self::Drop(dir(u), byte(u)),
            9 => Self::Duplicate(dir(u), byte(u)),
            10 => Self::Reorder(dir(u), byte(u)),
            11 => Self::Corrupt(dir(u), byte(u), word(u), byte(u)),
            12 => Self::Inject(dir(u), bytes(u)),
            13 => Self::Advance(word(u)),
            14 => Self::Pump(byte(u)),
            15 => Self::ReadAll(side(u)),
            16 => Self::Close(side(u), word(u), bytes(u)),
            17 => {
                let count = byte(u) % 9;
                let fields = (0..count).map(|_| (field(u), field(u))).collect();
                Self::RawRequest(fields, byte(u) & 1 == 1)
            }
            18 => Self::RawBody(byte(u), byte(u) & 1 == 1, bytes(u)),
            19 => Self::RawStream(byte(u), byte(u) & 1 == 1, bytes(u)),
            20 => Self::RawUni(byte(u), bytes(u)),
            21 => Self::RawDatagram(bytes(u)),
            22 => Self::RawReset(byte(u), byte(u), word(u)),
            23 => Self::AdvanceSecs(byte(u)),
            24 => Self::Timeout,
            25 => Self::OpenMany(byte(u)),
            26 => Self::RawClose(word(u)),
            27 => Self::Sleep(byte(u)),
            28 => Self::OpenUdp(host(u)),
            29 => Self::SendDatagram(side(u), byte(u), word(u)),
            30 => Self::RecvDatagram(side(u), byte(u), word(u)),
            31 => Self::RawHttpDatagram(byte(u), byte(u), bytes(u)),
            32 => Self::ReadDatagrams(side(u)),
            33 => Self::OpenIp(scope(u), byte(u)),
            34 => Self::SendPacket(side(u), byte(u), packet(u)),
            35 => Self::RecvPacket(side(u), byte(u), word(u)),
            36 => Self::ReadPackets(side(u)),
            37 => Self::IpDeliver(byte(u), packet(u), byte(u)),
            38 => Self::RawIpRequest(field(u), byte(u)),
            39 => Self::RawCapsule(byte(u), byte(u), byte(u), bytes(u)),
            _ => Self::Pump(1),
        }
    }
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u.arbitrary().unwrap_or(0)
}

fn word(u: &mut Unstructured<'_>) -> u16 {
    u.arbitrary().unwrap_or(0)
}

fn bytes(u: &mut Unstructured<'_>) -> Vec<u8> {
    let len = usize::from(byte(u)).min(u.len());
    u.bytes(len).map(<[u8]>::to_vec).unwrap_or_default()
}

fn side(u: &mut Unstructured<'_>) -> Side {
    if byte(u) & 1 == 0 {
        Side::Client
    } else {
        Side::Edge
    }
}

fn dir(u: &mut Unstructured<'_>) -> Dir {
    match byte(u) % 3 {
        0 => Dir::Edge,
        1 => Dir::Client,
        _ => Dir::Raw,
    }
}

fn host(u: &mut Unstructured<'_>) -> HostInput {
    match byte(u) % 4 {
        0 => HostInput::Listed(byte(u)),
        1 => HostInput::V4(u.arbitrary().unwrap_or_default()),
        2 => HostInput::V6(u.arbitrary().unwrap_or_default()),
        _ => HostInput::Bytes(bytes(u)),
    }
}

fn field(u: &mut Unstructured<'_>) -> Field {
    match byte(u) {
        index @ 0..0xe0 => Field::Listed(index),
        _ => Field::Bytes(bytes(u)),
    }
}

fn scope(u: &mut Unstructured<'_>) -> ScopeInput {
    match byte(u) % 4 {
        0 => ScopeInput::Any,
        1 => ScopeInput::Listed(byte(u)),
        2 => ScopeInput::V4(u.arbitrary().unwrap_or_default(), byte(u)),
        _ => ScopeInput::V6(u.arbitrary().unwrap_or_default(), byte(u)),
    }
}

fn address(u: &mut Unstructured<'_>, v6: bool) -> AddrInput {
    match byte(u) % 3 {
        0 => AddrInput::Assigned(byte(u)),
        1 => AddrInput::Listed(byte(u)),
        _ => {
            let mut octets = [0; 16];
            let len = if v6 { 16 } else { 4 };
            for octet in &mut octets[..len] {
                *octet = byte(u);
            }
            AddrInput::Literal(octets)
        }
    }
}

fn packet(u: &mut Unstructured<'_>) -> PacketInput {
    let form = byte(u) % 4;
    if form >= 2 {
        return PacketInput::Raw {
            bypass: form == 3,
            bytes: bytes(u),
            pad: word(u),
        };
    }
    let v6 = byte(u) & 1 == 1;
    PacketInput::Built {
        icmp: form == 1,
        v6,
        source: address(u, v6),
        destination: address(u, v6),
        hop_limit: byte(u),
        payload: bytes(u),
        pad: word(u),
    }
}
