//! `veil_proto::masque::ip`: arbitrary scopes expand into paths that parse back to them;
//! arbitrary address entries and route ranges encode into capsules that decode back to
//! them; and the route encoder accepts exactly the range lists the decoder accepts, with
//! the same error otherwise.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::capsule::types;
use veil_proto::masque::ip::{
    AddressAssign, AddressDecodeError, AddressEncodeError, AddressRequest, AssignedAddress,
    Hostname, IpAddressRange, IpPrefix, IpProto, RequestedAddress, RouteAdvertisement,
    RouteDecodeError, RouteEncodeError, Scope, Target, Template,
};
use veil_proto::varint::VarInt;

use crate::masque_ip::{expand_and_parse, split_capsule};

/// Templates with both variables, one, or none.
const TEMPLATES: &[&str] = &[
    "/.well-known/masque/ip/{target}/{ipproto}/",
    "/masque/ip?t={target}&i={ipproto}",
    "https://proxy.example.org:4443/ip/{ipproto}/x/{target}",
    "/t={target};",
    "/p/{ipproto}",
    "/any",
];

/// Characters a [`Hostname`] may hold, and the dot that separates labels.
const NAME_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

#[derive(Debug, Arbitrary)]
struct Address {
    v6: bool,
    bits: u128,
    prefix_len: u8,
}

impl Address {
    fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bits))
        } else {
            // The low 32 bits.
            #[allow(clippy::cast_possible_truncation)]
            IpAddr::V4(Ipv4Addr::from(self.bits as u32))
        }
    }

    fn prefix(&self) -> IpPrefix {
        let max = if self.v6 { 128 } else { 32 };
        IpPrefix::new_masked(self.ip(), self.prefix_len % (max + 1)).expect("length in range")
    }
}

#[derive(Debug, Arbitrary)]
enum TargetInput {
    Any,
    Prefix(Address),
    /// Indices into [`NAME_ALPHABET`].
    Name(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Entry {
    request_id: u64,
    shift: u8,
    address: Address,
}

#[derive(Debug, Arbitrary)]
struct Range {
    v6: bool,
    start: u128,
    end: u128,
    ip_protocol: u8,
}

#[derive(Debug, Arbitrary)]
struct Input {
    target: TargetInput,
    ipproto: Option<u8>,
    template: u8,
    entries: Vec<Entry>,
    ranges: Vec<Range>,
    /// Sort the ranges into the order the RFC requires, for more valid lists.
    sort: bool,
}

/// Runs the scope, address and route round trips on one arbitrary input.
///
/// # Panics
///
/// When a value does not come back exactly, or encoder and decoder disagree.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    scope(&input);
    addresses(&input.entries);
    routes(&input.ranges, input.sort);
}

fn scope(input: &Input) {
    let target = match &input.target {
        TargetInput::Any => Target::Any,
        TargetInput::Prefix(address) => Target::Prefix(address.prefix()),
        TargetInput::Name(indices) => {
            let text: String = indices
                .iter()
                .map(|&i| char::from(NAME_ALPHABET[usize::from(i) % NAME_ALPHABET.len()]))
                .collect();
            let Ok(name) = Hostname::new(&text) else {
                return;
            };
            assert_eq!(name.as_str(), text);
            Target::Name(name)
        }
    };
    let ipproto = input.ipproto.map_or(IpProto::Any, IpProto::Number);
    let scope = Scope { target, ipproto };
    let text = TEMPLATES[usize::from(input.template) % TEMPLATES.len()];
    let template = Template::new(text).expect("the templates are valid");
    let fits = (scope.target == Target::Any || template.has_target())
        && (scope.ipproto == IpProto::Any || template.has_ipproto());
    if fits {
        expand_and_parse(&template, &scope);
    } else {
        assert!(template.expanded_len(&scope).is_err());
    }
}

/// The wire form of one entry, written here independently of the encoder.
fn write_entry(request_id: VarInt, prefix: IpPrefix, out: &mut Vec<u8>) {
    let mut id = [0; VarInt::MAX_LEN];
    let len = request_id.encode(&mut id).expect("8 bytes hold any varint");
    out.extend_from_slice(&id[..len]);
    match prefix.addr() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.push(prefix.prefix_len());
}

fn addresses(entries: &[Entry]) {
    let entries: Vec<(VarInt, IpPrefix)> = entries
        .iter()
        .filter_map(|e| {
            let id = VarInt::new(e.request_id >> (e.shift % 64)).ok()?;
            Some((id, e.address.prefix()))
        })
        .collect();
    let mut raw = Vec::new();
    for &(id, prefix) in &entries {
        write_entry(id, prefix, &mut raw);
    }

    let assigned: Vec<AssignedAddress> = entries
        .iter()
        .map(|&(request_id, prefix)| AssignedAddress { request_id, prefix })
        .collect();
    let mut out = vec![0; AddressAssign::encoded_len(&assigned)];
    assert_eq!(AddressAssign::encode(&assigned, &mut out), Ok(out.len()));
    let (capsule_type, value) = split_capsule(&out);
    assert_eq!(capsule_type, types::ADDRESS_ASSIGN);
    assert_eq!(value, raw);
    let view = AddressAssign::decode(value).expect("encoded assignment");
    assert!(view.iter().eq(assigned.iter().copied()));

    let requested: Vec<RequestedAddress> = entries
        .iter()
        .map(|&(request_id, prefix)| RequestedAddress { request_id, prefix })
        .collect();
    let decoded = AddressRequest::decode(&raw);
    let zero = requested.iter().any(|e| e.request_id == VarInt::ZERO);
    match decoded {
        Ok(view) => {
            assert!(!requested.is_empty() && !zero);
            assert!(view.iter().eq(requested.iter().copied()));
        }
        Err(AddressDecodeError::NoRequestedAddresses) => assert!(requested.is_empty()),
        Err(AddressDecodeError::ZeroRequestId) => assert!(zero),
        Err(e) => panic!("a well-formed request value refused: {e:?}"),
    }
    let mut out = vec![0; AddressRequest::encoded_len(&requested)];
    match AddressRequest::encode(&requested, &mut out) {
        Ok(len) => {
            assert_eq!(len, out.len());
            let (capsule_type, value) = split_capsule(&out);
            assert_eq!(capsule_type, types::ADDRESS_REQUEST);
            assert_eq!(value, raw);
            assert!(decoded.is_ok(), "the encoder accepted it");
        }
        Err(AddressEncodeError::NoRequestedAddresses) => assert!(requested.is_empty()),
        Err(AddressEncodeError::ZeroRequestId) => assert!(zero),
        // Left to the engine on receipt: only the encoder refuses it.
        Err(AddressEncodeError::DuplicateRequestId(id)) => {
            assert!(requested.iter().filter(|e| e.request_id == id).count() > 1);
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
}

fn range_of(range: &Range) -> IpAddressRange {
    let (start, end) = if range.v6 {
        (
            IpAddr::V6(Ipv6Addr::from(range.start)),
            IpAddr::V6(Ipv6Addr::from(range.end)),
        )
    } else {
        // The low 32 bits.
        #[allow(clippy::cast_possible_truncation)]
        (
            IpAddr::V4(Ipv4Addr::from(range.start as u32)),
            IpAddr::V4(Ipv4Addr::from(range.end as u32)),
        )
    };
    IpAddressRange {
        start,
        end,
        ip_protocol: range.ip_protocol,
    }
}

/// The wire form of ranges, written here independently of the encoder.
fn write_ranges(ranges: &[IpAddressRange]) -> Vec<u8> {
    let mut out = Vec::new();
    for range in ranges {
        match (range.start, range.end) {
            (IpAddr::V4(start), IpAddr::V4(end)) => {
                out.push(4);
                out.extend_from_slice(&start.octets());
                out.extend_from_slice(&end.octets());
            }
            (IpAddr::V6(start), IpAddr::V6(end)) => {
                out.push(6);
                out.extend_from_slice(&start.octets());
                out.extend_from_slice(&end.octets());
            }
            _ => unreachable!("ranges are built with one IP version"),
        }
        out.push(range.ip_protocol);
    }
    out
}

fn routes(ranges: &[Range], sort: bool) {
    let mut ranges: Vec<IpAddressRange> = ranges.iter().map(range_of).collect();
    if sort {
        for range in &mut ranges {
            if range.start > range.end {
                core::mem::swap(&mut range.start, &mut range.end);
            }
        }
        ranges.sort_by_key(|r| (r.start.is_ipv6(), r.ip_protocol, r.start));
    }
    let raw = write_ranges(&ranges);
    let decoded = RouteAdvertisement::decode(&raw);
    let mut out = vec![0; RouteAdvertisement::encoded_len(&ranges)];
    match RouteAdvertisement::encode(&ranges, &mut out) {
        Ok(len) => {
            assert_eq!(len, out.len());
            let (capsule_type, value) = split_capsule(&out);
            assert_eq!(capsule_type, types::ROUTE_ADVERTISEMENT);
            assert_eq!(value, raw);
            let view = decoded.expect("the encoder accepted it");
            assert!(view.iter().eq(ranges.iter().copied()));
        }
        Err(e) => assert_eq!(decoded.err(), Some(decode_error(e)), "{ranges:?}"),
    }
}

/// The decoder's error for the rule the encoder reported broken.
fn decode_error(error: RouteEncodeError) -> RouteDecodeError {
    match error {
        RouteEncodeError::StartAfterEnd => RouteDecodeError::StartAfterEnd,
        RouteEncodeError::VersionsOutOfOrder => RouteDecodeError::VersionsOutOfOrder,
        RouteEncodeError::ProtocolsOutOfOrder => RouteDecodeError::ProtocolsOutOfOrder,
        RouteEncodeError::NotAscending => RouteDecodeError::NotAscending,
        RouteEncodeError::OverlapsAllProtocolsRange => RouteDecodeError::OverlapsAllProtocolsRange,
        e => panic!("unexpected {e:?}"),
    }
}
