//! Connection IDs this endpoint issues, and the layout that names their owning core.
//!
//! Every source connection ID comes from [`new_connection_id`], and every incoming packet is
//! routed by looking its destination connection ID up in a table. A thread-per-core driver
//! runs one [`Endpoint`](crate::Endpoint) per core on sockets that share one address; the
//! kernel spreads datagrams over them by 4-tuple, so a peer whose address changes (NAT
//! rebinding, migration) lands on another core. With a [`CidLayout`] the endpoint writes
//! its core into every connection ID it issues, so that the receiving core (or a
//! QUIC-aware load balancer in front of several hosts) can find the owner from the
//! datagram's bytes alone, without the table.

use quiche::ConnectionId;

/// Length of every connection ID this endpoint issues, in bytes.
///
/// 16 bytes of randomness make IDs unguessable and collisions negligible; RFC 9000 allows
/// up to 20.
pub(crate) const CID_LEN: usize = 16;

/// The three high bits of a laid-out ID's first byte: QUIC-LB's config rotation codepoint,
/// here this layout's version. An ID without them is not ours (a client-chosen one, or
/// another layout's).
const LAYOUT_TAG: u8 = CidLayout::TAG;

/// Where the generation byte sits in an issued ID (see [`CidLayout`]): what a kernel
/// steering program reads to tell an upgraded process's connections from its predecessor's.
pub const GENERATION_BYTE: usize = 2;

/// The QUIC version whose long headers [`CidLayout::owner_of_datagram`] reads.
const QUIC_V1: u32 = 1;

/// What an issued connection ID says about its owner: which edge, which generation of the
/// edge's process, which core.
///
/// Layout of the 16 bytes, QUIC-LB's plaintext format (draft-ietf-quic-load-balancers §5.2)
/// with a 4-byte server ID and an 11-byte nonce, the same for every core and process of an
/// edge, so that anything that knows it can route:
///
/// | bytes | contents |
/// |---|---|
/// | 0 | `001` in the three high bits (config rotation 1, the layout's tag), five random bits |
/// | 1 | the edge (`--edge-id`): which edge behind a load balancer |
/// | 2 | the generation: which process of that edge, counting upgrades in place |
/// | 3..5 | the owning core, big-endian `u16` |
/// | 5..16 | random (88 bits, the nonce) |
///
/// Bytes 1..5 are the QUIC-LB server ID. They say which edge, process and core serve the
/// connection, nothing about the client; the 93 random bits keep IDs unpredictable and
/// unlinkable between connections.
//# draft-ietf-quic-load-balancers §2.2: "The first two bits of any connection ID MUST
//# encode an identifier for the configuration that the connection ID uses."
///
/// (Three bits in later drafts: the config rotation bits; `111` is reserved for IDs of no
/// configuration, which ours never use.)
///
/// ```
/// use veil_engine::CidLayout;
///
/// let core1 = CidLayout::new(1, 4).expect("core 1 of 4 exists").with_server(7, 2);
/// let id = core1.issue().expect("the RNG works");
/// assert_eq!(core1.owner_of(&id), Some(1));
/// assert_eq!(CidLayout::server_of(&id), Some((7, 2)));
/// // Every core of the same process decodes the same way.
/// assert_eq!(CidLayout::new(3, 4).expect("valid").with_server(7, 2).owner_of(&id), Some(1));
/// // Another generation's process does not claim it.
/// assert_eq!(CidLayout::new(3, 4).expect("valid").with_server(7, 3).owner_of(&id), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidLayout {
    core: u16,
    cores: u16,
    edge: u8,
    generation: u8,
}

impl CidLayout {
    /// The config rotation bits every issued ID starts with.
    pub const TAG: u8 = 0b001;

    /// The layout of `core` among `cores` (numbered from 0), of edge 0, generation 0.
    /// `None` unless `core < cores`.
    pub fn new(core: u16, cores: u16) -> Option<Self> {
        (core < cores).then_some(Self {
            core,
            cores,
            edge: 0,
            generation: 0,
        })
    }

    /// The same layout for edge `edge` (its QUIC-LB server ID byte) in its process of
    /// generation `generation`.
    #[must_use]
    pub fn with_server(self, edge: u8, generation: u8) -> Self {
        Self {
            edge,
            generation,
            ..self
        }
    }

    /// The core whose IDs this layout issues.
    pub fn core(self) -> u16 {
        self.core
    }

    /// How many cores share the address.
    pub fn cores(self) -> u16 {
        self.cores
    }

    /// The edge named in issued IDs.
    pub fn edge(self) -> u8 {
        self.edge
    }

    /// The process generation named in issued IDs.
    pub fn generation(self) -> u8 {
        self.generation
    }

    /// Writes the tag, edge, generation and core into `random` (16 random bytes), keeping
    /// the other bits as they are.
    pub fn encode(self, mut random: [u8; CID_LEN]) -> [u8; CID_LEN] {
        random[0] = LAYOUT_TAG << 5 | (random[0] & 0x1f);
        random[1] = self.edge;
        random[GENERATION_BYTE] = self.generation;
        random[3..5].copy_from_slice(&self.core.to_be_bytes());
        random
    }

    /// A fresh connection ID owned by this layout's core. `None` only if the RNG fails.
    pub fn issue(self) -> Option<[u8; CID_LEN]> {
        let mut random = [0; CID_LEN];
        boring::rand::rand_bytes(&mut random).ok()?;
        Some(self.encode(random))
    }

    /// The edge and generation named by `cid`, if it has this layout's length and tag:
    /// what a load balancer in front of several edges reads.
    pub fn server_of(cid: &[u8]) -> Option<(u8, u8)> {
        (cid.len() == CID_LEN && cid[0] >> 5 == LAYOUT_TAG).then(|| (cid[1], cid[GENERATION_BYTE]))
    }

    /// The core that issued `cid`, if it has this layout's length and tag, names this
    /// layout's edge and generation, and one of [`cores`](Self::cores). A client-chosen
    /// ID may pass by chance; see [`owner_of_datagram`](Self::owner_of_datagram) for when
    /// that cannot matter.
    pub fn owner_of(self, cid: &[u8]) -> Option<u16> {
        if Self::server_of(cid)? != (self.edge, self.generation) {
            return None;
        }
        let core = u16::from_be_bytes([cid[3], cid[4]]);
        (core < self.cores).then_some(core)
    }

    /// The destination connection ID of a received UDP datagram's first packet, if it is
    /// a short-header packet (whose ID has our length: only its issuer knows it) or a QUIC
    /// v1 long-header one.
    ///
    /// Only the first packet is read: coalesced packets share their destination ID.
    //# RFC 9000 §12.2: "Senders MUST NOT coalesce QUIC packets with different connection
    //# IDs into a single UDP datagram."
    pub fn destination_id(datagram: &[u8]) -> Option<&[u8]> {
        let first = *datagram.first()?;
        if first & 0x80 == 0 {
            // Short header: the destination ID follows the first byte, its length known
            // only to the endpoint that issued it.
            return datagram.get(1..=CID_LEN);
        }
        let version = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
        if version != QUIC_V1 {
            // Version negotiation is answered by whoever received the packet.
            return None;
        }
        let len = usize::from(*datagram.get(5)?);
        datagram.get(6..6 + len)
    }

    /// The core that owns the connection a received UDP datagram belongs to; `None` means
    /// "the core that received it": the destination ID is not in this layout (a client's
    /// own choice, another layout's), or the packet is not QUIC v1.
    ///
    /// Long-header packets are routed too: once a client has the edge's first Initial it
    /// addresses even its Initial and Handshake packets to the ID the edge chose, and they
    /// must reach the core that holds the keys. A client's first, random, ID rarely has the
    /// tag, edge, generation and a core in range (about 1 in 8 × 2^16 × 65536 / cores);
    /// when it does, the core it names accepts the connection instead of the one that
    /// received it, which is as good.
    //# RFC 9000 §7.2: "When an Initial packet is sent by a client that has not previously
    //# received an Initial or Retry packet from the server, the client populates the
    //# Destination Connection ID field with an unpredictable value."
    pub fn owner_of_datagram(self, datagram: &[u8]) -> Option<u16> {
        self.owner_of(Self::destination_id(datagram)?)
    }
}

/// A fresh connection ID: [`CID_LEN`] bytes from `BoringSSL`'s random generator, laid out
/// by `layout` when there is one.
///
/// `None` only if the RNG fails, which `BoringSSL` treats as fatal; the caller then drops the
/// packet that needed the ID.
pub(crate) fn new_connection_id(layout: Option<CidLayout>) -> Option<ConnectionId<'static>> {
    let mut id = [0; CID_LEN];
    boring::rand::rand_bytes(&mut id).ok()?;
    if let Some(layout) = layout {
        id = layout.encode(id);
    }
    Some(ConnectionId::from_vec(id.to_vec()))
}

impl crate::Endpoint {
    /// Issues every connection ID from now on with `layout`, so that they name this
    /// endpoint's core. Set it before the first datagram; IDs issued before keep theirs.
    #[must_use]
    pub fn with_cid_layout(mut self, layout: CidLayout) -> Self {
        self.cid_layout = Some(layout);
        self
    }

    /// The layout set with [`with_cid_layout`](Self::with_cid_layout).
    pub fn cid_layout(&self) -> Option<CidLayout> {
        self.cid_layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_have_the_fixed_length_and_differ() {
        let a = new_connection_id(None).expect("rng");
        let b = new_connection_id(None).expect("rng");
        assert_eq!(a.len(), CID_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn a_layout_needs_its_core_among_the_cores() {
        assert!(CidLayout::new(0, 1).is_some());
        assert!(CidLayout::new(1, 1).is_none());
        assert!(CidLayout::new(0, 0).is_none());
    }

    #[test]
    fn foreign_ids_have_no_owner() {
        let layout = CidLayout::new(0, 2).expect("valid");
        let mut id = layout.encode([0xff; CID_LEN]);
        assert_eq!(layout.owner_of(&id), Some(0));
        assert_eq!(layout.owner_of(&id[..8]), None, "wrong length");
        id[0] = 0xff;
        assert_eq!(layout.owner_of(&id), None, "wrong tag");
        let other = CidLayout::new(5, 6).expect("valid").encode([0; CID_LEN]);
        assert_eq!(
            layout.owner_of(&other),
            None,
            "core beyond this host's cores"
        );
        let other_generation = layout.with_server(0, 1).encode([0; CID_LEN]);
        assert_eq!(layout.owner_of(&other_generation), None, "a successor's ID");
        let other_edge = layout.with_server(1, 0).encode([0; CID_LEN]);
        assert_eq!(layout.owner_of(&other_edge), None, "another edge's ID");
        assert_eq!(CidLayout::server_of(&other_edge), Some((1, 0)));
    }

    /// A datagram of `first` byte, version and destination ID, padded.
    fn long_header(first: u8, version: u32, dcid: &[u8]) -> Vec<u8> {
        let mut packet = vec![first];
        packet.extend_from_slice(&version.to_be_bytes());
        packet.push(u8::try_from(dcid.len()).expect("short"));
        packet.extend_from_slice(dcid);
        packet.extend_from_slice(&[0; 40]);
        packet
    }

    #[test]
    fn long_headers_route_by_their_destination_id() {
        let layout = CidLayout::new(0, 2).expect("valid");
        let id = CidLayout::new(1, 2).expect("valid").encode([7; CID_LEN]);
        for (first, kind) in [(0xc0, "Initial"), (0xd0, "0-RTT"), (0xe0, "Handshake")] {
            assert_eq!(
                layout.owner_of_datagram(&long_header(first, 1, &id)),
                Some(1),
                "{kind}"
            );
        }
        // A client's random first ID without the tag stays where it arrived.
        let random = [0xff; CID_LEN];
        assert_eq!(
            layout.owner_of_datagram(&long_header(0xc0, 1, &random)),
            None
        );
        assert_eq!(
            layout.owner_of_datagram(&long_header(0xe0, 0x6b33_43cf, &id)),
            None,
            "another version"
        );
        assert_eq!(layout.owner_of_datagram(&[]), None);
        assert_eq!(layout.owner_of_datagram(&[0x40, 1, 2]), None, "truncated");
    }

    proptest! {
        #[test]
        fn every_issued_id_decodes_to_its_core(
            (cores, core) in (1u16..=u16::MAX).prop_flat_map(|cores| (Just(cores), 0..cores)),
            random in any::<[u8; CID_LEN]>(),
            observer in any::<u16>(),
            (edge, generation) in any::<(u8, u8)>(),
        ) {
            let layout = CidLayout::new(core, cores).expect("core < cores").with_server(edge, generation);
            let id = layout.encode(random);
            prop_assert_eq!(layout.owner_of(&id), Some(core));
            // Any core of the host decodes it the same way.
            let observer = CidLayout::new(observer % cores, cores).expect("valid").with_server(edge, generation);
            prop_assert_eq!(CidLayout::server_of(&id), Some((edge, generation)));
            prop_assert_eq!(id[GENERATION_BYTE], generation);
            prop_assert_eq!(observer.owner_of(&id), Some(core));
            // Only the tag and the server ID are written; the rest stays random.
            prop_assert_eq!(id[0] & 0x1f, random[0] & 0x1f);
            prop_assert_eq!(&id[5..], &random[5..]);
            // A short-header packet carrying it routes to the same core.
            let mut packet = vec![0x41];
            packet.extend_from_slice(&id);
            packet.extend_from_slice(&random);
            prop_assert_eq!(observer.owner_of_datagram(&packet), Some(core));
            // And so does the engine's own generator.
            let issued = new_connection_id(Some(layout)).expect("rng");
            prop_assert_eq!(layout.owner_of(&issued), Some(core));
        }

        #[test]
        fn any_bytes_route_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let layout = CidLayout::new(0, 2).expect("valid");
            let _ = layout.owner_of_datagram(&bytes);
            let _ = layout.owner_of(&bytes);
        }
    }
}
