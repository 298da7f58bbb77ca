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

/// The three high bits of a laid-out ID's first byte: this layout's version. An ID without
/// them is not ours (a client-chosen one, or another layout's).
const LAYOUT_TAG: u8 = 0b001;

/// The QUIC version whose long headers [`CidLayout::owner_of_datagram`] reads.
const QUIC_V1: u32 = 1;

/// Where the owning core is written in an issued connection ID.
///
/// Layout of the 16 bytes (the same for every core, so anything that knows it can route):
///
/// | bytes | contents |
/// |---|---|
/// | 0 | `001` in the three high bits (the layout's tag), five random bits |
/// | 1..3 | the owning core, big-endian `u16` |
/// | 3..16 | random (104 bits) |
///
/// The core is written in clear, as QUIC-LB's plaintext scheme writes a server ID: it says
/// which of a host's cores serves the connection, nothing about the client. The 109 random
/// bits keep IDs unpredictable and unlinkable between connections of one core.
///
/// ```
/// use veil_engine::CidLayout;
///
/// let core1 = CidLayout::new(1, 4).expect("core 1 of 4 exists");
/// let id = core1.issue().expect("the RNG works");
/// assert_eq!(core1.owner_of(&id), Some(1));
/// // Every core of the same host decodes the same way.
/// assert_eq!(CidLayout::new(3, 4).expect("valid").owner_of(&id), Some(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidLayout {
    core: u16,
    cores: u16,
}

impl CidLayout {
    /// The layout of `core` among `cores` (numbered from 0). `None` unless
    /// `core < cores`.
    pub fn new(core: u16, cores: u16) -> Option<Self> {
        (core < cores).then_some(Self { core, cores })
    }

    /// The core whose IDs this layout issues.
    pub fn core(self) -> u16 {
        self.core
    }

    /// How many cores share the address.
    pub fn cores(self) -> u16 {
        self.cores
    }

    /// Writes the tag and this layout's core into `random` (16 random bytes), keeping the
    /// other bits as they are.
    pub fn encode(self, mut random: [u8; CID_LEN]) -> [u8; CID_LEN] {
        random[0] = LAYOUT_TAG << 5 | (random[0] & 0x1f);
        random[1..3].copy_from_slice(&self.core.to_be_bytes());
        random
    }

    /// A fresh connection ID owned by this layout's core. `None` only if the RNG fails.
    pub fn issue(self) -> Option<[u8; CID_LEN]> {
        let mut random = [0; CID_LEN];
        boring::rand::rand_bytes(&mut random).ok()?;
        Some(self.encode(random))
    }

    /// The core that issued `cid`, if it has this layout's length and tag and names one of
    /// [`cores`](Self::cores). A client-chosen ID may pass by chance; see
    /// [`owner_of_datagram`](Self::owner_of_datagram) for when that cannot matter.
    pub fn owner_of(self, cid: &[u8]) -> Option<u16> {
        if cid.len() != CID_LEN || cid[0] >> 5 != LAYOUT_TAG {
            return None;
        }
        let core = u16::from_be_bytes([cid[1], cid[2]]);
        (core < self.cores).then_some(core)
    }

    /// The core that owns the connection a received UDP datagram belongs to; `None` means
    /// "the core that received it": the destination ID is not in this layout (a client's
    /// own choice, another layout's), or the packet is not QUIC v1.
    ///
    /// Only the first packet is read: coalesced packets share their destination ID.
    //# RFC 9000 §12.2: "Senders MUST NOT coalesce QUIC packets with different connection
    //# IDs into a single UDP datagram."
    ///
    /// Long-header packets are routed too: once a client has the edge's first Initial it
    /// addresses even its Initial and Handshake packets to the ID the edge chose, and they
    /// must reach the core that holds the keys. A client's first, random, ID rarely has the
    /// tag and a core in range (about 1 in 8 × 65536 / cores); when it does, the core it
    /// names accepts the connection instead of the one that received it, which is as good.
    //# RFC 9000 §7.2: "When an Initial packet is sent by a client that has not previously
    //# received an Initial or Retry packet from the server, the client populates the
    //# Destination Connection ID field with an unpredictable value."
    pub fn owner_of_datagram(self, datagram: &[u8]) -> Option<u16> {
        let first = *datagram.first()?;
        if first & 0x80 == 0 {
            // Short header: the destination ID follows the first byte, its length known
            // only to the endpoint that issued it.
            return self.owner_of(datagram.get(1..=CID_LEN)?);
        }
        let version = u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?);
        if version != QUIC_V1 {
            // Version negotiation is answered by whoever received the packet.
            return None;
        }
        let len = usize::from(*datagram.get(5)?);
        self.owner_of(datagram.get(6..6 + len)?)
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
        ) {
            let layout = CidLayout::new(core, cores).expect("core < cores");
            let id = layout.encode(random);
            prop_assert_eq!(layout.owner_of(&id), Some(core));
            // Any core of the host decodes it the same way.
            let observer = CidLayout::new(observer % cores, cores).expect("valid");
            prop_assert_eq!(observer.owner_of(&id), Some(core));
            // Only the tag and the core are written; the rest stays random.
            prop_assert_eq!(id[0] & 0x1f, random[0] & 0x1f);
            prop_assert_eq!(&id[3..], &random[3..]);
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
