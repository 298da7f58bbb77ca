//! `ADDRESS_ASSIGN` (RFC 9484 §4.7.1) and `ADDRESS_REQUEST` (§4.7.2) capsules.
//!
//! ```text
//! Assigned Address / Requested Address {
//!   Request ID (i),
//!   IP Version (8),
//!   IP Address (32..128),
//!   IP Prefix Length (8),
//! }
//! ```
//!
//! Decoding validates a whole capsule value once and returns a view that iterates its
//! entries without allocating. Encoding writes a whole capsule (header and value) and
//! refuses entries the decoder would refuse.
//!
//! What is left to the engine, because it needs state across capsules: that an Assigned
//! Address's Request ID matches a request (or is zero), and that Request IDs are never
//! reused (RFC 9484 §4.7.2: "Request IDs MUST NOT be reused by an endpoint"). The decoder
//! does not look for a repeated Request ID inside one capsule either: the engine's check
//! across capsules catches it, in linear time, where a check here would be quadratic. The
//! encoder does refuse one, since the endpoint sending it is bound by that rule.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::capsule_len;
use super::prefix::{IpPrefix, PrefixError};
use crate::capsule::{encode_header, types};
use crate::cursor::{Reader, Writer};
use crate::error::BufferTooSmall;
use crate::varint::VarInt;

/// One Assigned Address: a prefix the receiver may use as source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssignedAddress {
    /// The Request ID this answers, or zero for an unsolicited assignment.
    ///
    /// RFC 9484 §4.7.1: "If this address assignment is in response to an Address Request
    /// (see Section 4.7.2), then this field SHALL contain the value of the corresponding
    /// field in the request. Otherwise, this field SHALL be zero."
    pub request_id: VarInt,
    /// The assigned prefix. `0.0.0.0/32` or `::/128` in answer to a request means that
    /// nothing was assigned.
    pub prefix: IpPrefix,
}

/// One Requested Address: a prefix the sender would like to be assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestedAddress {
    /// Identifies this request; never zero.
    pub request_id: VarInt,
    /// The preferred prefix. An all-zero address asks for any address of that IP version,
    /// with the prefix length still stating the preferred length.
    pub prefix: IpPrefix,
}

/// Why an `ADDRESS_ASSIGN` or `ADDRESS_REQUEST` capsule value is malformed. The engine
/// treats it as a malformed capsule and aborts the stream (RFC 9297 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressDecodeError {
    /// The value ends inside an entry.
    Truncated,
    /// An IP Version other than 4 or 6.
    UnknownIpVersion(u8),
    /// An IP Prefix Length longer than the address.
    PrefixTooLong {
        /// The length given.
        len: u8,
        /// The address's length in bits.
        max: u8,
    },
    /// An IP Address with bits set past the prefix length.
    HostBitsSet,
    /// A Requested Address with Request ID zero.
    ZeroRequestId,
    /// An `ADDRESS_REQUEST` with no Requested Address.
    NoRequestedAddresses,
}

impl fmt::Display for AddressDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("address capsule ends inside an entry"),
            Self::UnknownIpVersion(v) => write!(f, "address capsule has IP version {v}"),
            Self::PrefixTooLong { len, max } => {
                write!(f, "address capsule prefix length {len} exceeds {max}")
            }
            Self::HostBitsSet => f.write_str("address capsule prefix has host bits set"),
            Self::ZeroRequestId => f.write_str("requested address has request ID 0"),
            Self::NoRequestedAddresses => f.write_str("ADDRESS_REQUEST capsule is empty"),
        }
    }
}

impl core::error::Error for AddressDecodeError {}

/// Why an `ADDRESS_ASSIGN` or `ADDRESS_REQUEST` capsule was not encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressEncodeError {
    /// A Requested Address with Request ID zero.
    ZeroRequestId,
    /// An `ADDRESS_REQUEST` with no Requested Address.
    NoRequestedAddresses,
    /// Two Requested Addresses share this Request ID.
    DuplicateRequestId(VarInt),
    /// The output buffer is too small; nothing was written.
    BufferTooSmall(BufferTooSmall),
}

impl From<BufferTooSmall> for AddressEncodeError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for AddressEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroRequestId => f.write_str("requested address has request ID 0"),
            Self::NoRequestedAddresses => f.write_str("ADDRESS_REQUEST capsule is empty"),
            Self::DuplicateRequestId(id) => write!(f, "request ID {id} is used twice"),
            Self::BufferTooSmall(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for AddressEncodeError {}

/// A validated `ADDRESS_ASSIGN` capsule value: the full list of prefixes assigned to the
/// receiver. An empty list withdraws every address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressAssign<'a> {
    value: &'a [u8],
    count: usize,
}

impl<'a> AddressAssign<'a> {
    /// Validates an `ADDRESS_ASSIGN` capsule value (after the capsule header).
    pub fn decode(value: &'a [u8]) -> Result<Self, AddressDecodeError> {
        //# RFC 9484 §4.7.1: "The ADDRESS_ASSIGN capsule contains a sequence of zero or more
        //# Assigned Addresses."
        let count = validate(value, |_| Ok(()))?;
        Ok(Self { value, count })
    }

    /// Number of Assigned Addresses.
    pub const fn len(&self) -> usize {
        self.count
    }

    /// Whether the capsule assigns nothing (every address is withdrawn).
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The Assigned Addresses, in capsule order.
    pub fn iter(&self) -> AssignedAddresses<'a> {
        AssignedAddresses(Entries::new(self.value, self.count))
    }

    /// Writes an `ADDRESS_ASSIGN` capsule (header and value) holding `entries`.
    pub fn encode(
        entries: &[AssignedAddress],
        out: &mut [u8],
    ) -> Result<usize, AddressEncodeError> {
        let value_len = entries
            .iter()
            .map(|e| entry_len(e.request_id, e.prefix))
            .sum();
        let entries = entries.iter().map(|e| (e.request_id, e.prefix));
        encode(types::ADDRESS_ASSIGN, value_len, entries, out)
    }

    /// Bytes [`AddressAssign::encode`] writes for `entries`.
    pub fn encoded_len(entries: &[AssignedAddress]) -> usize {
        capsule_len(
            types::ADDRESS_ASSIGN,
            entries
                .iter()
                .map(|e| entry_len(e.request_id, e.prefix))
                .sum(),
        )
    }
}

impl<'a> IntoIterator for &AddressAssign<'a> {
    type Item = AssignedAddress;
    type IntoIter = AssignedAddresses<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A validated `ADDRESS_REQUEST` capsule value: one or more Requested Addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRequest<'a> {
    value: &'a [u8],
    count: usize,
}

impl<'a> AddressRequest<'a> {
    /// Validates an `ADDRESS_REQUEST` capsule value (after the capsule header).
    pub fn decode(value: &'a [u8]) -> Result<Self, AddressDecodeError> {
        //# RFC 9484 §4.7.2: "Request IDs MUST NOT be reused by an endpoint and MUST NOT be
        //# zero."
        let count = validate(value, |id| {
            if id == VarInt::ZERO {
                Err(AddressDecodeError::ZeroRequestId)
            } else {
                Ok(())
            }
        })?;
        //# RFC 9484 §4.7.2: "If an endpoint receives an ADDRESS_REQUEST capsule that
        //# contains zero Requested Addresses, it MUST abort the IP proxying request stream."
        if count == 0 {
            return Err(AddressDecodeError::NoRequestedAddresses);
        }
        Ok(Self { value, count })
    }

    /// Number of Requested Addresses (at least one).
    pub const fn len(&self) -> usize {
        self.count
    }

    /// Always false: a valid `ADDRESS_REQUEST` holds at least one entry.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The Requested Addresses, in capsule order (which carries no meaning).
    pub fn iter(&self) -> RequestedAddresses<'a> {
        RequestedAddresses(Entries::new(self.value, self.count))
    }

    /// Writes an `ADDRESS_REQUEST` capsule (header and value) holding `entries`.
    ///
    /// Refuses an empty list, a zero Request ID and a Request ID used twice.
    pub fn encode(
        entries: &[RequestedAddress],
        out: &mut [u8],
    ) -> Result<usize, AddressEncodeError> {
        check_requests(entries)?;
        let value_len = entries
            .iter()
            .map(|e| entry_len(e.request_id, e.prefix))
            .sum();
        let entries = entries.iter().map(|e| (e.request_id, e.prefix));
        encode(types::ADDRESS_REQUEST, value_len, entries, out)
    }

    /// Bytes [`AddressRequest::encode`] writes for `entries`.
    pub fn encoded_len(entries: &[RequestedAddress]) -> usize {
        capsule_len(
            types::ADDRESS_REQUEST,
            entries
                .iter()
                .map(|e| entry_len(e.request_id, e.prefix))
                .sum(),
        )
    }
}

impl<'a> IntoIterator for &AddressRequest<'a> {
    type Item = RequestedAddress;
    type IntoIter = RequestedAddresses<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the entries of an [`AddressAssign`].
#[derive(Debug, Clone)]
pub struct AssignedAddresses<'a>(Entries<'a>);

impl Iterator for AssignedAddresses<'_> {
    type Item = AssignedAddress;
    fn next(&mut self) -> Option<Self::Item> {
        let (request_id, prefix) = self.0.next()?;
        Some(AssignedAddress { request_id, prefix })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for AssignedAddresses<'_> {}

/// Iterator over the entries of an [`AddressRequest`].
#[derive(Debug, Clone)]
pub struct RequestedAddresses<'a>(Entries<'a>);

impl Iterator for RequestedAddresses<'_> {
    type Item = RequestedAddress;
    fn next(&mut self) -> Option<Self::Item> {
        let (request_id, prefix) = self.0.next()?;
        Some(RequestedAddress { request_id, prefix })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for RequestedAddresses<'_> {}

/// Reads entries back from a value that [`validate`] accepted.
#[derive(Debug, Clone)]
struct Entries<'a> {
    reader: Reader<'a>,
    remaining: usize,
}

impl<'a> Entries<'a> {
    const fn new(value: &'a [u8], count: usize) -> Self {
        Self {
            reader: Reader::new(value),
            remaining: count,
        }
    }

    fn next(&mut self) -> Option<(VarInt, IpPrefix)> {
        // The value was validated, so reading cannot fail while entries remain.
        let entry = read_entry(&mut self.reader).ok()?;
        self.remaining = self.remaining.saturating_sub(1);
        Some(entry)
    }

    const fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Checks every entry of `value`, applying `check_id` to each Request ID, and counts them.
fn validate(
    value: &[u8],
    check_id: impl Fn(VarInt) -> Result<(), AddressDecodeError>,
) -> Result<usize, AddressDecodeError> {
    let mut reader = Reader::new(value);
    let mut count = 0;
    while !reader.is_empty() {
        let (request_id, _) = read_entry(&mut reader)?;
        check_id(request_id)?;
        count += 1;
    }
    Ok(count)
}

/// Reads one Assigned or Requested Address.
fn read_entry(reader: &mut Reader<'_>) -> Result<(VarInt, IpPrefix), AddressDecodeError> {
    let truncated = |_| AddressDecodeError::Truncated;
    let request_id = reader.varint().map_err(truncated)?;
    //# RFC 9484 §4.7.1: "IP Version of this address assignment, encoded as an unsigned
    //# 8-bit integer. It MUST be either 4 or 6."
    let addr = match reader.u8().map_err(truncated)? {
        4 => IpAddr::V4(Ipv4Addr::from(reader.array::<4>().map_err(truncated)?)),
        6 => IpAddr::V6(Ipv6Addr::from(reader.array::<16>().map_err(truncated)?)),
        version => return Err(AddressDecodeError::UnknownIpVersion(version)),
    };
    let len = reader.u8().map_err(truncated)?;
    //# RFC 9484 §4.7.1: "This MUST be less than or equal to the length of the IP Address
    //# field in bits." ... "If the prefix length is strictly less than the length of the
    //# IP address in bits, the lower bits of the IP Address field that are not covered by
    //# the prefix length MUST all be set to 0."
    let prefix = IpPrefix::new(addr, len).map_err(|e| match e {
        PrefixError::LengthTooLong { len, max } => AddressDecodeError::PrefixTooLong { len, max },
        PrefixError::HostBitsSet => AddressDecodeError::HostBitsSet,
    })?;
    Ok((request_id, prefix))
}

/// Bytes one entry takes on the wire.
fn entry_len(request_id: VarInt, prefix: IpPrefix) -> usize {
    let addr_len = match prefix.addr() {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    };
    request_id.encoded_len() + 1 + addr_len + 1
}

fn check_requests(entries: &[RequestedAddress]) -> Result<(), AddressEncodeError> {
    //# RFC 9484 §4.7.2: "The ADDRESS_REQUEST capsule contains a sequence of one or more
    //# Requested Addresses."
    if entries.is_empty() {
        return Err(AddressEncodeError::NoRequestedAddresses);
    }
    for (i, entry) in entries.iter().enumerate() {
        if entry.request_id == VarInt::ZERO {
            return Err(AddressEncodeError::ZeroRequestId);
        }
        //# RFC 9484 §4.7.2: "Each request from a given endpoint carries a different
        //# identifier."
        let earlier = entries.get(..i).unwrap_or_default();
        if earlier.iter().any(|e| e.request_id == entry.request_id) {
            return Err(AddressEncodeError::DuplicateRequestId(entry.request_id));
        }
    }
    Ok(())
}

/// Writes a capsule of `capsule_type` holding `entries`, whose value is `value_len` bytes.
fn encode(
    capsule_type: VarInt,
    value_len: usize,
    entries: impl Iterator<Item = (VarInt, IpPrefix)>,
    out: &mut [u8],
) -> Result<usize, AddressEncodeError> {
    let mut writer = Writer::new(out);
    writer.reserve(capsule_len(capsule_type, value_len))?;
    encode_header(capsule_type, value_len, &mut writer)?;
    for (request_id, prefix) in entries {
        writer.varint(request_id)?;
        match prefix.addr() {
            IpAddr::V4(v4) => {
                writer.u8(4)?;
                writer.bytes(&v4.octets())?;
            }
            IpAddr::V6(v6) => {
                writer.u8(6)?;
                writer.bytes(&v6.octets())?;
            }
        }
        writer.u8(prefix.prefix_len())?;
    }
    Ok(writer.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(addr: &str, len: u8) -> IpPrefix {
        IpPrefix::new(addr.parse().unwrap(), len).unwrap()
    }

    fn assigned(id: u32, addr: &str, len: u8) -> AssignedAddress {
        AssignedAddress {
            request_id: VarInt::from_u32(id),
            prefix: prefix(addr, len),
        }
    }

    fn requested(id: u32, addr: &str, len: u8) -> RequestedAddress {
        RequestedAddress {
            request_id: VarInt::from_u32(id),
            prefix: prefix(addr, len),
        }
    }

    fn encode_assign(entries: &[AssignedAddress]) -> std::vec::Vec<u8> {
        let mut buf = [0; 256];
        let len = AddressAssign::encode(entries, &mut buf).unwrap();
        assert_eq!(AddressAssign::encoded_len(entries), len);
        buf[..len].to_vec()
    }

    /// RFC 9484 §8.1, Figure 15: the client's `ADDRESS_REQUEST`.
    #[test]
    fn rfc_remote_access_request() {
        let bytes = [
            0x02, 0x07, // type ADDRESS_REQUEST, length 7
            0x01, // Request ID 1
            0x04, // IP Version 4
            0x00, 0x00, 0x00, 0x00, // IP Address 0.0.0.0 (any address)
            0x20, // IP Prefix Length 32
        ];
        let entries = [requested(1, "0.0.0.0", 32)];
        let mut buf = [0; 16];
        let len = AddressRequest::encode(&entries, &mut buf).unwrap();
        assert_eq!(&buf[..len], bytes);
        let view = AddressRequest::decode(&bytes[2..]).unwrap();
        assert_eq!(view.iter().collect::<std::vec::Vec<_>>(), entries);
    }

    /// RFC 9484 §8.1, Figure 15: the proxy's `ADDRESS_ASSIGN` answering request 1.
    #[test]
    fn rfc_remote_access_assign() {
        let bytes = [
            0x01, 0x07, // type ADDRESS_ASSIGN, length 7
            0x01, // Request ID 1
            0x04, // IP Version 4
            0xc0, 0x00, 0x02, 0x0b, // IP Address 192.0.2.11
            0x20, // IP Prefix Length 32
        ];
        let entries = [assigned(1, "192.0.2.11", 32)];
        assert_eq!(encode_assign(&entries), bytes);
        let view = AddressAssign::decode(&bytes[2..]).unwrap();
        assert_eq!(view.len(), 1);
        assert_eq!(view.iter().collect::<std::vec::Vec<_>>(), entries);
    }

    /// RFC 9484 §8.4, Figure 22: an unsolicited IPv4 and IPv6 assignment in one capsule.
    #[test]
    fn rfc_connection_racing_assign() {
        let bytes = [
            0x01, 0x1a, // type ADDRESS_ASSIGN, length 26
            0x00, 0x04, 0xc0, 0x00, 0x02, 0x03, 0x20, // ID 0, v4, 192.0.2.3, /32
            0x00, 0x06, // ID 0, v6
            0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // 2001:db8::
            0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x12, 0x34, // ::1234:1234
            0x80, // /128
        ];
        let entries = [
            assigned(0, "192.0.2.3", 32),
            assigned(0, "2001:db8::1234:1234", 128),
        ];
        assert_eq!(encode_assign(&entries), bytes);
        let view = AddressAssign::decode(&bytes[2..]).unwrap();
        assert_eq!(view.iter().len(), 2);
        assert_eq!((&view).into_iter().collect::<std::vec::Vec<_>>(), entries);
    }

    #[test]
    fn empty_assign_withdraws_everything() {
        assert_eq!(encode_assign(&[]), [0x01, 0x00]);
        let view = AddressAssign::decode(&[]).unwrap();
        assert!(view.is_empty());
        assert_eq!(view.iter().next(), None);
    }

    #[test]
    fn accepts_non_minimal_varint_request_ids() {
        // Request ID 1 on two bytes, then v4 0.0.0.0/0.
        let view = AddressRequest::decode(&[0x40, 0x01, 0x04, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(view.iter().next(), Some(requested(1, "0.0.0.0", 0)));
    }

    #[test]
    fn decode_refuses_truncated_entries() {
        let full = [0x05, 0x04, 192, 0, 2, 1, 32];
        for len in 1..full.len() {
            assert_eq!(
                AddressAssign::decode(&full[..len]),
                Err(AddressDecodeError::Truncated),
                "{len}"
            );
        }
        // A good entry, then a lone byte.
        assert_eq!(
            AddressAssign::decode(&[0x05, 0x04, 192, 0, 2, 1, 32, 0x00]),
            Err(AddressDecodeError::Truncated)
        );
    }

    #[test]
    fn decode_refuses_unknown_ip_version() {
        assert_eq!(
            AddressAssign::decode(&[0x00, 0x05, 0, 0, 0, 0, 0]),
            Err(AddressDecodeError::UnknownIpVersion(5))
        );
        assert_eq!(
            AddressRequest::decode(&[0x01, 0x00]),
            Err(AddressDecodeError::UnknownIpVersion(0))
        );
    }

    #[test]
    fn decode_refuses_prefix_longer_than_address() {
        assert_eq!(
            AddressAssign::decode(&[0x00, 0x04, 0, 0, 0, 0, 33]),
            Err(AddressDecodeError::PrefixTooLong { len: 33, max: 32 })
        );
        let mut v6 = [0u8; 19];
        v6[0] = 1; // Request ID 1
        v6[1] = 6; // IP Version 6, then the 16 bytes of ::
        v6[18] = 129; // IP Prefix Length 129
        assert_eq!(
            AddressRequest::decode(&v6),
            Err(AddressDecodeError::PrefixTooLong { len: 129, max: 128 })
        );
    }

    #[test]
    fn decode_refuses_host_bits_past_prefix() {
        assert_eq!(
            AddressAssign::decode(&[0x00, 0x04, 192, 0, 2, 1, 24]),
            Err(AddressDecodeError::HostBitsSet)
        );
        assert_eq!(
            AddressRequest::decode(&[0x01, 0x04, 0, 0, 0, 1, 0]),
            Err(AddressDecodeError::HostBitsSet)
        );
    }

    #[test]
    fn decode_refuses_zero_request_id_in_requests_only() {
        let entry = [0x00, 0x04, 0, 0, 0, 0, 32];
        assert_eq!(
            AddressRequest::decode(&entry),
            Err(AddressDecodeError::ZeroRequestId)
        );
        assert!(AddressAssign::decode(&entry).is_ok());
    }

    #[test]
    fn decode_refuses_empty_request() {
        assert_eq!(
            AddressRequest::decode(&[]),
            Err(AddressDecodeError::NoRequestedAddresses)
        );
    }

    #[test]
    fn encode_refuses_empty_request() {
        assert_eq!(
            AddressRequest::encode(&[], &mut [0; 16]),
            Err(AddressEncodeError::NoRequestedAddresses)
        );
    }

    #[test]
    fn encode_refuses_zero_request_id() {
        assert_eq!(
            AddressRequest::encode(&[requested(0, "::", 64)], &mut [0; 64]),
            Err(AddressEncodeError::ZeroRequestId)
        );
    }

    #[test]
    fn encode_refuses_duplicate_request_ids() {
        let entries = [
            requested(7, "0.0.0.0", 32),
            requested(8, "::", 128),
            requested(7, "::", 64),
        ];
        assert_eq!(
            AddressRequest::encode(&entries, &mut [0; 128]),
            Err(AddressEncodeError::DuplicateRequestId(VarInt::from_u32(7)))
        );
    }

    #[test]
    fn encode_reports_total_size_and_writes_nothing() {
        let entries = [assigned(0, "2001:db8::", 32)];
        let mut buf = [0xaa; 20];
        assert_eq!(
            AddressAssign::encode(&entries, &mut buf),
            Err(AddressEncodeError::BufferTooSmall(BufferTooSmall {
                needed: 21,
                available: 20
            }))
        );
        assert_eq!(buf, [0xaa; 20]);
    }
}
