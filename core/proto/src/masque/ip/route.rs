//! `ROUTE_ADVERTISEMENT` capsules (RFC 9484 §4.7.3).
//!
//! ```text
//! IP Address Range {
//!   IP Version (8),
//!   Start IP Address (32..128),
//!   End IP Address (32..128),
//!   IP Protocol (8),
//! }
//! ```
//!
//! The decoder checks every rule of §4.7.3, including the one the RFC makes optional to
//! check: that no range with IP Protocol 0 (all protocols) overlaps a range of the same IP
//! version with a specific protocol. The ordering rules put every IPv4 range (10 bytes)
//! before every IPv6 range (34 bytes), so a validated value allows random access
//! ([`RouteAdvertisement::get`]), and that check is a binary search per range.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::capsule_len;
use super::prefix::IpPrefix;
use crate::capsule::{encode_header, types};
use crate::cursor::{Reader, Writer};
use crate::error::BufferTooSmall;

/// Wire size of an IPv4 IP Address Range.
const V4_LEN: usize = 1 + 4 + 4 + 1;
/// Wire size of an IPv6 IP Address Range.
const V6_LEN: usize = 1 + 16 + 16 + 1;

/// One IP Address Range: destinations the sender of the capsule will route.
///
/// Decoded ranges always have `start` and `end` of the same IP version with
/// `start <= end`; the encoder refuses anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpAddressRange {
    /// First address of the range, inclusive.
    pub start: IpAddr,
    /// Last address of the range, inclusive.
    pub end: IpAddr,
    /// The Internet Protocol Number allowed to this range, or 0 for every protocol. ICMP
    /// is always allowed besides.
    pub ip_protocol: u8,
}

impl IpAddressRange {
    /// The range covering exactly `prefix`.
    pub fn from_prefix(prefix: IpPrefix, ip_protocol: u8) -> Self {
        Self {
            start: prefix.addr(),
            end: prefix.last(),
            ip_protocol,
        }
    }

    /// Whether `addr` is in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.start.is_ipv4() && self.start <= addr && addr <= self.end
    }

    /// The IP Version field: 4 or 6.
    const fn version(&self) -> u8 {
        match self.start {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 6,
        }
    }

    const fn wire_len(&self) -> usize {
        match self.start {
            IpAddr::V4(_) => V4_LEN,
            IpAddr::V6(_) => V6_LEN,
        }
    }
}

/// Why a `ROUTE_ADVERTISEMENT` capsule value is malformed. The engine aborts the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteDecodeError {
    /// The value ends inside a range.
    Truncated,
    /// An IP Version other than 4 or 6.
    UnknownIpVersion(u8),
    /// A range whose Start IP Address is above its End IP Address.
    StartAfterEnd,
    /// An IPv6 range before an IPv4 range.
    VersionsOutOfOrder,
    /// Within one IP version, a range before one with a lower IP Protocol.
    ProtocolsOutOfOrder,
    /// Within one IP version and protocol, a range that does not end strictly before the
    /// next one starts: overlapping or unsorted.
    NotAscending,
    /// A range with a specific IP Protocol overlapping a range with IP Protocol 0.
    OverlapsAllProtocolsRange,
}

impl fmt::Display for RouteDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("route advertisement ends inside a range"),
            Self::UnknownIpVersion(v) => write!(f, "route advertisement has IP version {v}"),
            Self::StartAfterEnd => f.write_str(START_AFTER_END),
            Self::VersionsOutOfOrder => f.write_str(VERSIONS_OUT_OF_ORDER),
            Self::ProtocolsOutOfOrder => f.write_str(PROTOCOLS_OUT_OF_ORDER),
            Self::NotAscending => f.write_str(NOT_ASCENDING),
            Self::OverlapsAllProtocolsRange => f.write_str(OVERLAPS_ALL_PROTOCOLS_RANGE),
        }
    }
}

impl core::error::Error for RouteDecodeError {}

/// Why a `ROUTE_ADVERTISEMENT` capsule was not encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteEncodeError {
    /// A range whose start and end are of different IP versions.
    MixedVersions,
    /// A range whose start is above its end.
    StartAfterEnd,
    /// An IPv6 range before an IPv4 range.
    VersionsOutOfOrder,
    /// Within one IP version, a range before one with a lower IP Protocol.
    ProtocolsOutOfOrder,
    /// Within one IP version and protocol, a range that does not end strictly before the
    /// next one starts: overlapping or unsorted.
    NotAscending,
    /// A range with a specific IP Protocol overlapping a range with IP Protocol 0.
    OverlapsAllProtocolsRange,
    /// The output buffer is too small; nothing was written.
    BufferTooSmall(BufferTooSmall),
}

impl From<BufferTooSmall> for RouteEncodeError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for RouteEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MixedVersions => f.write_str("route start and end are of different IP versions"),
            Self::StartAfterEnd => f.write_str(START_AFTER_END),
            Self::VersionsOutOfOrder => f.write_str(VERSIONS_OUT_OF_ORDER),
            Self::ProtocolsOutOfOrder => f.write_str(PROTOCOLS_OUT_OF_ORDER),
            Self::NotAscending => f.write_str(NOT_ASCENDING),
            Self::OverlapsAllProtocolsRange => f.write_str(OVERLAPS_ALL_PROTOCOLS_RANGE),
            Self::BufferTooSmall(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for RouteEncodeError {}

/// A rule of RFC 9484 §4.7.3 that both the decoder and the encoder enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Violation {
    StartAfterEnd,
    VersionsOutOfOrder,
    ProtocolsOutOfOrder,
    NotAscending,
    OverlapsAllProtocolsRange,
}

const START_AFTER_END: &str = "route starts after it ends";
const VERSIONS_OUT_OF_ORDER: &str = "IPv6 route before an IPv4 route";
const PROTOCOLS_OUT_OF_ORDER: &str = "routes are not sorted by IP protocol";
const NOT_ASCENDING: &str = "routes of one protocol overlap or are not sorted";
const OVERLAPS_ALL_PROTOCOLS_RANGE: &str = "route overlaps an all-protocols route";

impl From<Violation> for RouteDecodeError {
    fn from(v: Violation) -> Self {
        match v {
            Violation::StartAfterEnd => Self::StartAfterEnd,
            Violation::VersionsOutOfOrder => Self::VersionsOutOfOrder,
            Violation::ProtocolsOutOfOrder => Self::ProtocolsOutOfOrder,
            Violation::NotAscending => Self::NotAscending,
            Violation::OverlapsAllProtocolsRange => Self::OverlapsAllProtocolsRange,
        }
    }
}

impl From<Violation> for RouteEncodeError {
    fn from(v: Violation) -> Self {
        match v {
            Violation::StartAfterEnd => Self::StartAfterEnd,
            Violation::VersionsOutOfOrder => Self::VersionsOutOfOrder,
            Violation::ProtocolsOutOfOrder => Self::ProtocolsOutOfOrder,
            Violation::NotAscending => Self::NotAscending,
            Violation::OverlapsAllProtocolsRange => Self::OverlapsAllProtocolsRange,
        }
    }
}

/// A validated `ROUTE_ADVERTISEMENT` capsule value: the full list of ranges the sender
/// routes, superseding any earlier advertisement. An empty list withdraws every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteAdvertisement<'a> {
    value: &'a [u8],
    v4_count: usize,
    v6_count: usize,
}

impl<'a> RouteAdvertisement<'a> {
    /// Validates a `ROUTE_ADVERTISEMENT` capsule value (after the capsule header).
    pub fn decode(value: &'a [u8]) -> Result<Self, RouteDecodeError> {
        //# RFC 9484 §4.7.3: "The ROUTE_ADVERTISEMENT capsule contains a sequence of zero or
        //# more IP Address Ranges."
        let mut reader = Reader::new(value);
        let mut view = Self {
            value,
            v4_count: 0,
            v6_count: 0,
        };
        let mut previous = None;
        while !reader.is_empty() {
            let range = read_range(&mut reader)?;
            check_in_sequence(previous.as_ref(), &range)?;
            match range.start {
                IpAddr::V4(_) => view.v4_count += 1,
                IpAddr::V6(_) => view.v6_count += 1,
            }
            previous = Some(range);
        }
        //# RFC 9484 §4.7.3: "Validating this requirement is OPTIONAL, but if an endpoint
        //# detects the violation, it MUST abort the IP proxying request stream."
        check_no_all_protocols_overlap(|i| view.get(i))?;
        Ok(view)
    }

    /// Number of ranges.
    pub const fn len(&self) -> usize {
        self.v4_count + self.v6_count
    }

    /// Whether no range is advertised (every route is withdrawn).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The range at `index`, in capsule order.
    pub fn get(&self, index: usize) -> Option<IpAddressRange> {
        if index >= self.len() {
            return None;
        }
        let offset = match index.checked_sub(self.v4_count) {
            None => index.checked_mul(V4_LEN)?,
            Some(v6_index) => {
                (self.v4_count.checked_mul(V4_LEN)?).checked_add(v6_index.checked_mul(V6_LEN)?)?
            }
        };
        read_range(&mut Reader::new(self.value.get(offset..)?)).ok()
    }

    /// The ranges, in capsule order: IPv4 before IPv6, then by protocol, then by address.
    pub fn iter(&self) -> IpAddressRanges<'a> {
        IpAddressRanges {
            reader: Reader::new(self.value),
            remaining: self.len(),
        }
    }

    /// Writes a `ROUTE_ADVERTISEMENT` capsule (header and value) holding `ranges`.
    ///
    /// Refuses ranges the decoder would refuse: `ranges` must be sorted by IP version, then
    /// IP protocol, then address, without overlap within one protocol, and without a
    /// specific-protocol range overlapping an all-protocols (0) range.
    pub fn encode(ranges: &[IpAddressRange], out: &mut [u8]) -> Result<usize, RouteEncodeError> {
        let mut previous = None;
        for range in ranges {
            if range.start.is_ipv4() != range.end.is_ipv4() {
                return Err(RouteEncodeError::MixedVersions);
            }
            check_in_sequence(previous, range)?;
            previous = Some(range);
        }
        //# RFC 9484 §4.7.3: "Endpoints MUST NOT send a ROUTE_ADVERTISEMENT capsule with
        //# routes that overlap in such a way."
        check_no_all_protocols_overlap(|i| ranges.get(i).copied())?;
        let value_len = value_len(ranges);
        let mut writer = Writer::new(out);
        writer.reserve(capsule_len(types::ROUTE_ADVERTISEMENT, value_len))?;
        encode_header(types::ROUTE_ADVERTISEMENT, value_len, &mut writer)?;
        for range in ranges {
            write_range(range, &mut writer)?;
        }
        Ok(writer.finish())
    }

    /// Bytes [`RouteAdvertisement::encode`] writes for `ranges`.
    pub fn encoded_len(ranges: &[IpAddressRange]) -> usize {
        capsule_len(types::ROUTE_ADVERTISEMENT, value_len(ranges))
    }
}

impl<'a> IntoIterator for &RouteAdvertisement<'a> {
    type Item = IpAddressRange;
    type IntoIter = IpAddressRanges<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the ranges of a [`RouteAdvertisement`].
#[derive(Debug, Clone)]
pub struct IpAddressRanges<'a> {
    reader: Reader<'a>,
    remaining: usize,
}

impl Iterator for IpAddressRanges<'_> {
    type Item = IpAddressRange;
    fn next(&mut self) -> Option<Self::Item> {
        // The value was validated, so reading cannot fail while ranges remain.
        let range = read_range(&mut self.reader).ok()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(range)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for IpAddressRanges<'_> {}

fn value_len(ranges: &[IpAddressRange]) -> usize {
    ranges.iter().map(IpAddressRange::wire_len).sum()
}

/// Reads one IP Address Range, checking only its IP Version.
fn read_range(reader: &mut Reader<'_>) -> Result<IpAddressRange, RouteDecodeError> {
    let truncated = |_| RouteDecodeError::Truncated;
    //# RFC 9484 §4.7.3: "IP Version of this range, encoded as an unsigned 8-bit integer.
    //# It MUST be either 4 or 6."
    let (start, end) = match reader.u8().map_err(truncated)? {
        4 => (
            IpAddr::V4(Ipv4Addr::from(reader.array::<4>().map_err(truncated)?)),
            IpAddr::V4(Ipv4Addr::from(reader.array::<4>().map_err(truncated)?)),
        ),
        6 => (
            IpAddr::V6(Ipv6Addr::from(reader.array::<16>().map_err(truncated)?)),
            IpAddr::V6(Ipv6Addr::from(reader.array::<16>().map_err(truncated)?)),
        ),
        version => return Err(RouteDecodeError::UnknownIpVersion(version)),
    };
    let ip_protocol = reader.u8().map_err(truncated)?;
    Ok(IpAddressRange {
        start,
        end,
        ip_protocol,
    })
}

fn write_range(range: &IpAddressRange, writer: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
    writer.u8(range.version())?;
    for addr in [range.start, range.end] {
        match addr {
            IpAddr::V4(v4) => writer.bytes(&v4.octets())?,
            IpAddr::V6(v6) => writer.bytes(&v6.octets())?,
        }
    }
    writer.u8(range.ip_protocol)
}

/// Checks `range` on its own and against the range just before it.
fn check_in_sequence(
    previous: Option<&IpAddressRange>,
    range: &IpAddressRange,
) -> Result<(), Violation> {
    //# RFC 9484 §4.7.3: "The Start IP Address MUST be less than or equal to the End IP
    //# Address."
    if range.start > range.end {
        return Err(Violation::StartAfterEnd);
    }
    // Each rule relates a range to every later one; checking neighbours is enough, since
    // each ordering is transitive and the start <= end of every range chains them.
    let Some(previous) = previous else {
        return Ok(());
    };
    //# RFC 9484 §4.7.3: "If an IP Address Range A precedes an IP Address Range B in the
    //# same ROUTE_ADVERTISEMENT capsule, they MUST follow these requirements:"
    //# "The IP Version of A MUST be less than or equal to the IP Version of B."
    if previous.version() > range.version() {
        return Err(Violation::VersionsOutOfOrder);
    }
    if previous.version() < range.version() {
        return Ok(());
    }
    //# "If the IP Version of A and B are equal, the IP Protocol of A MUST be less than or
    //# equal to the IP Protocol of B."
    if previous.ip_protocol > range.ip_protocol {
        return Err(Violation::ProtocolsOutOfOrder);
    }
    //# "If the IP Version and IP Protocol of A and B are both equal, the End IP Address of
    //# A MUST be strictly less than the Start IP Address of B."
    if previous.ip_protocol == range.ip_protocol && previous.end >= range.start {
        return Err(Violation::NotAscending);
    }
    Ok(())
}

/// Checks that no specific-protocol range overlaps an all-protocols range of its version.
///
/// `get` reads the ranges (`None` past the last) of a list that already passed
/// [`check_in_sequence`]: each version's ranges are contiguous and start with its
/// protocol-0 ranges, which are sorted and disjoint, so their ends ascend and a binary
/// search finds the one to compare. The whole check is O(n log n).
fn check_no_all_protocols_overlap(
    get: impl Fn(usize) -> Option<IpAddressRange>,
) -> Result<(), Violation> {
    //# RFC 9484 §4.7.3: "Since setting the IP protocol to zero indicates all protocols are
    //# allowed, the requirements above make it possible for two routes to overlap when one
    //# has its IP protocol set to zero and the other has it set to non-zero."
    let mut block_start = 0;
    while let Some(first) = get(block_start) {
        let same_version = |r: &IpAddressRange| r.version() == first.version();
        let mut zeros_end = block_start;
        while get(zeros_end).is_some_and(|r| same_version(&r) && r.ip_protocol == 0) {
            zeros_end += 1;
        }
        let mut i = zeros_end;
        while let Some(range) = get(i).filter(same_version) {
            if overlaps_any(&range, block_start, zeros_end, &get) {
                return Err(Violation::OverlapsAllProtocolsRange);
            }
            i += 1;
        }
        block_start = i;
    }
    Ok(())
}

/// Whether `range` overlaps one of the sorted, disjoint ranges at indices `lo..hi`.
fn overlaps_any(
    range: &IpAddressRange,
    lo: usize,
    hi: usize,
    get: &impl Fn(usize) -> Option<IpAddressRange>,
) -> bool {
    // Find the first range that does not end before `range` starts.
    let (mut left, mut right) = (lo, hi);
    while left < right {
        let mid = left + (right - left) / 2;
        if get(mid).is_some_and(|r| r.end < range.start) {
            left = mid + 1;
        } else {
            right = mid;
        }
    }
    left < hi && get(left).is_some_and(|r| r.start <= range.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: &str, end: &str, ip_protocol: u8) -> IpAddressRange {
        IpAddressRange {
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            ip_protocol,
        }
    }

    fn encode(ranges: &[IpAddressRange]) -> Result<std::vec::Vec<u8>, RouteEncodeError> {
        let mut buf = [0; 512];
        let len = RouteAdvertisement::encode(ranges, &mut buf)?;
        assert_eq!(RouteAdvertisement::encoded_len(ranges), len);
        Ok(buf[..len].to_vec())
    }

    /// Value bytes of `ranges`, written without any check, to feed the decoder.
    fn raw(ranges: &[IpAddressRange]) -> std::vec::Vec<u8> {
        let mut buf = [0; 512];
        let mut w = Writer::new(&mut buf);
        for r in ranges {
            write_range(r, &mut w).unwrap();
        }
        w.written().to_vec()
    }

    fn decoded(value: &[u8]) -> std::vec::Vec<IpAddressRange> {
        RouteAdvertisement::decode(value).unwrap().iter().collect()
    }

    /// RFC 9484 §8.1, Figure 15: a full-tunnel IPv4 route.
    #[test]
    fn rfc_full_tunnel() {
        let bytes = [
            0x03, 0x0a, // type ROUTE_ADVERTISEMENT, length 10
            0x04, // IP Version 4
            0x00, 0x00, 0x00, 0x00, // Start 0.0.0.0
            0xff, 0xff, 0xff, 0xff, // End 255.255.255.255
            0x00, // IP Protocol 0: any
        ];
        let ranges = [range("0.0.0.0", "255.255.255.255", 0)];
        assert_eq!(encode(&ranges).unwrap(), bytes);
        assert_eq!(decoded(&bytes[2..]), ranges);
    }

    /// RFC 9484 §8.1, Figure 16: a split tunnel around the client's own address.
    #[test]
    fn rfc_split_tunnel() {
        let bytes = [
            0x03, 0x14, // type ROUTE_ADVERTISEMENT, length 20
            0x04, 0xc0, 0x00, 0x02, 0x00, 0xc0, 0x00, 0x02, 0x29, 0x00, // v4 .0–.41, any
            0x04, 0xc0, 0x00, 0x02, 0x2b, 0xc0, 0x00, 0x02, 0xff, 0x00, // v4 .43–.255, any
        ];
        let ranges = [
            range("192.0.2.0", "192.0.2.41", 0),
            range("192.0.2.43", "192.0.2.255", 0),
        ];
        assert_eq!(encode(&ranges).unwrap(), bytes);
        assert_eq!(decoded(&bytes[2..]), ranges);
    }

    /// RFC 9484 §8.3, Figure 20: one IPv6 host, SCTP only.
    #[test]
    fn rfc_sctp_flow() {
        let bytes = [
            0x03, 0x22, // type ROUTE_ADVERTISEMENT, length 34
            0x06, // IP Version 6
            0x20, 0x01, 0x0d, 0xb8, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, // start
            0x20, 0x01, 0x0d, 0xb8, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b, // end
            0x84, // IP Protocol 132 (SCTP)
        ];
        let ranges = [range("2001:db8:3456::b", "2001:db8:3456::b", 132)];
        assert_eq!(encode(&ranges).unwrap(), bytes);
        assert_eq!(decoded(&bytes[2..]), ranges);
    }

    /// RFC 9484 §8.4, Figure 22: an IPv4 and an IPv6 host, UDP only.
    #[test]
    fn rfc_connection_racing() {
        let ranges = [
            range("198.51.100.2", "198.51.100.2", 17),
            range("2001:db8:3456::b", "2001:db8:3456::b", 17),
        ];
        let bytes = encode(&ranges).unwrap();
        assert_eq!(&bytes[..2], [0x03, 0x2c]); // length 10 + 34
        let view = RouteAdvertisement::decode(&bytes[2..]).unwrap();
        assert_eq!(view.get(0), Some(ranges[0]));
        assert_eq!(view.get(1), Some(ranges[1]));
        assert_eq!(view.get(2), None);
        assert_eq!((&view).into_iter().len(), 2);
    }

    #[test]
    fn empty_advertisement_withdraws_everything() {
        assert_eq!(encode(&[]).unwrap(), [0x03, 0x00]);
        assert!(RouteAdvertisement::decode(&[]).unwrap().is_empty());
    }

    #[test]
    fn accepts_adjacent_ranges_and_zero_protocol_beside_others() {
        let ranges = [
            range("10.0.0.0", "10.0.0.9", 0),
            range("10.0.0.20", "10.0.0.29", 0),
            range("10.0.0.10", "10.0.0.19", 6),
            range("10.0.0.30", "10.0.0.30", 6),
            range("10.0.0.10", "10.0.0.19", 17),
            range("::", "::ffff", 0),
            range("::1:0", "::1:0", 6),
        ];
        assert_eq!(decoded(&raw(&ranges)), ranges);
        assert!(encode(&ranges).is_ok());
    }

    fn assert_refused(
        ranges: &[IpAddressRange],
        decode: RouteDecodeError,
        encode_err: RouteEncodeError,
    ) {
        assert_eq!(RouteAdvertisement::decode(&raw(ranges)), Err(decode));
        assert_eq!(encode(ranges), Err(encode_err));
    }

    #[test]
    fn refuses_start_after_end() {
        assert_refused(
            &[range("10.0.0.2", "10.0.0.1", 0)],
            RouteDecodeError::StartAfterEnd,
            RouteEncodeError::StartAfterEnd,
        );
    }

    #[test]
    fn refuses_ipv6_before_ipv4() {
        assert_refused(
            &[range("::", "::", 0), range("0.0.0.0", "0.0.0.0", 0)],
            RouteDecodeError::VersionsOutOfOrder,
            RouteEncodeError::VersionsOutOfOrder,
        );
    }

    #[test]
    fn refuses_protocols_out_of_order() {
        assert_refused(
            &[
                range("10.0.0.0", "10.0.0.0", 17),
                range("10.0.0.1", "10.0.0.1", 6),
            ],
            RouteDecodeError::ProtocolsOutOfOrder,
            RouteEncodeError::ProtocolsOutOfOrder,
        );
    }

    #[test]
    fn refuses_overlapping_ranges_of_one_protocol() {
        assert_refused(
            &[
                range("10.0.0.0", "10.0.0.9", 6),
                range("10.0.0.9", "10.0.0.20", 6),
            ],
            RouteDecodeError::NotAscending,
            RouteEncodeError::NotAscending,
        );
    }

    #[test]
    fn refuses_unsorted_ranges_of_one_protocol() {
        assert_refused(
            &[range("::2", "::2", 6), range("::1", "::1", 6)],
            RouteDecodeError::NotAscending,
            RouteEncodeError::NotAscending,
        );
    }

    #[test]
    fn refuses_overlap_with_all_protocols_range() {
        assert_refused(
            &[
                range("10.0.0.0", "10.0.0.9", 0),
                range("10.0.1.0", "10.0.1.255", 0),
                range("10.0.2.0", "10.0.2.9", 0),
                range("10.0.0.10", "10.0.0.255", 6),
                range("10.0.1.255", "10.0.1.255", 17),
            ],
            RouteDecodeError::OverlapsAllProtocolsRange,
            RouteEncodeError::OverlapsAllProtocolsRange,
        );
        assert_refused(
            &[range("::", "::ff", 0), range("::80", "::1:0", 58)],
            RouteDecodeError::OverlapsAllProtocolsRange,
            RouteEncodeError::OverlapsAllProtocolsRange,
        );
    }

    #[test]
    fn decode_refuses_unknown_ip_version() {
        let mut value = raw(&[range("10.0.0.0", "10.0.0.1", 0)]);
        value[0] = 5;
        assert_eq!(
            RouteAdvertisement::decode(&value),
            Err(RouteDecodeError::UnknownIpVersion(5))
        );
    }

    #[test]
    fn decode_refuses_truncated_ranges() {
        let value = raw(&[range("::", "::1", 0)]);
        for len in 1..value.len() {
            assert_eq!(
                RouteAdvertisement::decode(&value[..len]),
                Err(RouteDecodeError::Truncated),
                "{len}"
            );
        }
    }

    #[test]
    fn encode_refuses_mixed_versions() {
        assert_eq!(
            encode(&[range("0.0.0.0", "::", 0)]),
            Err(RouteEncodeError::MixedVersions)
        );
    }

    #[test]
    fn encode_reports_total_size_and_writes_nothing() {
        let mut buf = [0xaa; 11];
        assert_eq!(
            RouteAdvertisement::encode(&[range("0.0.0.0", "0.0.0.0", 0)], &mut buf),
            Err(RouteEncodeError::BufferTooSmall(BufferTooSmall {
                needed: 12,
                available: 11
            }))
        );
        assert_eq!(buf, [0xaa; 11]);
    }

    #[test]
    fn range_helpers() {
        let prefix = IpPrefix::new("192.0.2.0".parse().unwrap(), 24).unwrap();
        let r = IpAddressRange::from_prefix(prefix, 0);
        assert_eq!(r, range("192.0.2.0", "192.0.2.255", 0));
        assert!(r.contains("192.0.2.128".parse().unwrap()));
        assert!(!r.contains("192.0.3.0".parse().unwrap()));
        assert!(!r.contains("::".parse().unwrap()));
    }
}
