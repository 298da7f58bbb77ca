//! Property tests for `masque::ip` through its public API: round trips of scopes and of the
//! three CONNECT-IP capsules, encoder/decoder agreement on every rule, and arbitrary input
//! never panicking.

// Test helpers and strategies live outside #[test] functions; a failed unwrap fails the test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use veil_proto::masque::ip::{
    AddressAssign, AddressDecodeError, AddressEncodeError, AddressRequest, AssignedAddress,
    Hostname, IpAddressRange, IpPrefix, IpProto, RequestedAddress, RouteAdvertisement,
    RouteDecodeError, RouteEncodeError, Scope, ScopeError, Target, Template,
};
use veil_proto::varint::VarInt;

// ---- strategies ----

/// Addresses from the whole space, or from a tiny one so that ranges collide.
fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        (0u32..48).prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        (0u128..48).prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn prefix() -> impl Strategy<Value = IpPrefix> {
    (ip_addr(), any::<u8>()).prop_map(|(addr, len)| {
        let max = if addr.is_ipv4() { 33 } else { 129 };
        IpPrefix::new_masked(addr, len % max).unwrap()
    })
}

fn varint() -> impl Strategy<Value = VarInt> {
    prop_oneof![0u64..70, 0..=VarInt::MAX.into_inner()].prop_map(|v| VarInt::new(v).unwrap())
}

fn assigned_list() -> impl Strategy<Value = Vec<AssignedAddress>> {
    prop::collection::vec(
        (varint(), prefix())
            .prop_map(|(request_id, prefix)| AssignedAddress { request_id, prefix }),
        0..8,
    )
}

/// Valid request lists: one or more entries, distinct non-zero IDs.
fn requested_list() -> impl Strategy<Value = Vec<RequestedAddress>> {
    prop::collection::btree_set(1..=VarInt::MAX.into_inner(), 1..8).prop_flat_map(|ids| {
        let n = ids.len();
        prop::collection::vec(prefix(), n).prop_map(move |prefixes| {
            ids.iter()
                .zip(prefixes)
                .map(|(&id, prefix)| RequestedAddress {
                    request_id: VarInt::new(id).unwrap(),
                    prefix,
                })
                .collect()
        })
    })
}

/// A range with both ends of one IP version, in either order, and a common protocol.
fn any_range() -> impl Strategy<Value = IpAddressRange> {
    (
        ip_addr(),
        any::<u128>(),
        prop::sample::select(&[0u8, 0, 6, 17, 58][..]),
    )
        .prop_map(|(start, other, ip_protocol)| {
            let end = match start {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(other % 48).unwrap())),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(other % 48)),
            };
            IpAddressRange {
                start,
                end,
                ip_protocol,
            }
        })
}

fn overlap(a: &IpAddressRange, b: &IpAddressRange) -> bool {
    a.start.is_ipv4() == b.start.is_ipv4() && a.start <= b.end && b.start <= a.end
}

/// Turns arbitrary ranges into a valid advertisement: ordered, and without the overlaps
/// RFC 9484 §4.7.3 forbids.
fn normalize(ranges: Vec<IpAddressRange>) -> Vec<IpAddressRange> {
    let mut ranges: Vec<_> = ranges
        .into_iter()
        .map(|r| IpAddressRange {
            start: r.start.min(r.end),
            end: r.start.max(r.end),
            ip_protocol: r.ip_protocol,
        })
        .collect();
    ranges.sort_by_key(|r| (r.start.is_ipv6(), r.ip_protocol, r.start));
    let mut ordered: Vec<IpAddressRange> = Vec::new();
    for r in ranges {
        let clashes = ordered
            .last()
            .is_some_and(|last| last.ip_protocol == r.ip_protocol && overlap(last, &r));
        if !clashes {
            ordered.push(r);
        }
    }
    let zeros: Vec<_> = ordered
        .iter()
        .filter(|r| r.ip_protocol == 0)
        .copied()
        .collect();
    ordered.retain(|r| r.ip_protocol == 0 || !zeros.iter().any(|z| overlap(z, r)));
    ordered
}

/// A valid advertisement with at most one targeted defect, so that every rule is hit.
fn mutated_ranges() -> impl Strategy<Value = Vec<IpAddressRange>> {
    (
        prop::collection::vec(any_range(), 0..10).prop_map(normalize),
        0..6u8,
        any::<prop::sample::Index>(),
        prop::sample::select(&[0u8, 6, 17, 58][..]),
    )
        .prop_map(|(mut ranges, mutation, index, ip_protocol)| {
            if ranges.is_empty() {
                return ranges;
            }
            let i = index.index(ranges.len());
            let next = (i + 1).min(ranges.len() - 1);
            match mutation {
                0 => ranges.swap(i, next),
                1 => ranges.insert(i, ranges[i]),
                2 => ranges[i].ip_protocol = ip_protocol,
                3 => {
                    let r = &mut ranges[i];
                    (r.start, r.end) = (r.end, r.start);
                }
                4 if ranges[i].start.is_ipv4() == ranges[next].end.is_ipv4() => {
                    ranges[i].end = ranges[next].end.max(ranges[i].start);
                }
                _ => {}
            }
            ranges
        })
}

/// Raw `target` text: an address or prefix, encoded in the ways a client may, and
/// sometimes with a longer prefix length or a stray host bit.
fn address_text() -> impl Strategy<Value = String> {
    (prefix(), any::<bool>(), 0..4u8).prop_map(|(prefix, lowercase, defect)| {
        let colon = if lowercase { "%3a" } else { "%3A" };
        let mut text = prefix.addr().to_string().replace(':', colon);
        let len = prefix.prefix_len();
        match defect {
            0 => {}
            1 => text = format!("{text}%2F{}", u16::from(len) + 1),
            2 => text = prefix.last().to_string().replace(':', colon) + &format!("%2f{len}"),
            _ => text = format!("{text}%2F{len}"),
        }
        text
    })
}

/// Raw `target` text built from pieces that matter to the parser.
fn target_text() -> impl Strategy<Value = String> {
    let pieces = &[
        "0", "1", "2", "9", "10", "128", "255", "a", "f", "db8", "x", ".", "-", "_", "*", "%3A",
        "%3a", "%2F", "%2f", "%25", "%2A", "%", "%G", ":", "/",
    ][..];
    prop::collection::vec(prop::sample::select(pieces), 0..12).prop_map(|p| p.concat())
}

fn hostname() -> impl Strategy<Value = Hostname> {
    "([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,8}[a-zA-Z0-9_])?\\.){0,3}[a-zA-Z_]([a-zA-Z0-9_-]{0,8}[a-zA-Z0-9_])?"
        .prop_map(|name| Hostname::new(&name).unwrap())
}

fn scope() -> impl Strategy<Value = Scope> {
    let target = prop_oneof![
        Just(Target::Any),
        prefix().prop_map(Target::Prefix),
        hostname().prop_map(Target::Name),
    ];
    let ipproto = prop_oneof![Just(IpProto::Any), any::<u8>().prop_map(IpProto::Number)];
    (target, ipproto).prop_map(|(target, ipproto)| Scope { target, ipproto })
}

const TEMPLATES: &[&str] = &[
    "/.well-known/masque/ip/{target}/{ipproto}/",
    "/masque/ip?t={target}&i={ipproto}",
    "https://proxy.example.org:4443/ip/{ipproto}/x/{target}",
    "/t={target};",
];

// ---- helpers ----

/// Capsule value bytes of address entries, written with no checks.
fn raw_addresses(entries: &[(VarInt, IpPrefix)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, prefix) in entries {
        let mut varint = [0; 8];
        let n = id.encode(&mut varint).unwrap();
        out.extend_from_slice(&varint[..n]);
        match prefix.addr() {
            IpAddr::V4(a) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(6);
                out.extend_from_slice(&a.octets());
            }
        }
        out.push(prefix.prefix_len());
    }
    out
}

/// Capsule value bytes of ranges, written with no checks.
fn raw_ranges(ranges: &[IpAddressRange]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in ranges {
        out.push(if r.start.is_ipv4() { 4 } else { 6 });
        for addr in [r.start, r.end] {
            match addr {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        out.push(r.ip_protocol);
    }
    out
}

/// Splits an encoded capsule into its type, and its value after checking the length.
fn split_capsule(bytes: &[u8]) -> (VarInt, &[u8]) {
    let (capsule_type, n) = VarInt::decode(bytes).unwrap();
    let (len, m) = VarInt::decode(&bytes[n..]).unwrap();
    let value = &bytes[n + m..];
    assert_eq!(u64::try_from(value.len()).unwrap(), len.into_inner());
    (capsule_type, value)
}

fn same_rule(encode: RouteEncodeError, decode: RouteDecodeError) -> bool {
    matches!(
        (encode, decode),
        (
            RouteEncodeError::StartAfterEnd,
            RouteDecodeError::StartAfterEnd
        ) | (
            RouteEncodeError::VersionsOutOfOrder,
            RouteDecodeError::VersionsOutOfOrder
        ) | (
            RouteEncodeError::ProtocolsOutOfOrder,
            RouteDecodeError::ProtocolsOutOfOrder
        ) | (
            RouteEncodeError::NotAscending,
            RouteDecodeError::NotAscending
        ) | (
            RouteEncodeError::OverlapsAllProtocolsRange,
            RouteDecodeError::OverlapsAllProtocolsRange
        )
    )
}

// ---- end-to-end examples ----

/// RFC 9484 §8.1, Figure 15, as a byte stream from the proxy: the capsules a client would
/// read one after another.
#[test]
fn rfc_remote_access_capsule_stream() {
    let stream = [
        0x01, 0x07, 0x01, 0x04, 0xc0, 0x00, 0x02, 0x0b, 0x20, // ADDRESS_ASSIGN
        0x03, 0x0a, 0x04, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, // ROUTE_ADV.
    ];
    let (assign_type, assign_value) = split_capsule(&stream[..9]);
    assert_eq!(assign_type, VarInt::from_u32(1));
    let assign = AddressAssign::decode(assign_value).unwrap();
    let assigned: Vec<_> = assign.iter().collect();
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].request_id, VarInt::from_u32(1));
    assert_eq!(
        assigned[0].prefix,
        IpPrefix::host("192.0.2.11".parse().unwrap())
    );

    let (route_type, route_value) = split_capsule(&stream[9..]);
    assert_eq!(route_type, VarInt::from_u32(3));
    let routes = RouteAdvertisement::decode(route_value).unwrap();
    let route = routes.get(0).unwrap();
    assert!(route.contains("203.0.113.9".parse().unwrap()));
    assert!(!route.contains("2001:db8::1".parse().unwrap()));
}

/// A proxy answering RFC 9484 §8.1's request: a rejected IPv6 request uses `::/128`.
#[test]
fn answers_requests_with_a_rejection() {
    let requests = [
        RequestedAddress {
            request_id: VarInt::from_u32(1),
            prefix: IpPrefix::host("0.0.0.0".parse().unwrap()),
        },
        RequestedAddress {
            request_id: VarInt::from_u32(2),
            prefix: IpPrefix::new("::".parse().unwrap(), 64).unwrap(),
        },
    ];
    let mut buf = [0; 64];
    let len = AddressRequest::encode(&requests, &mut buf).unwrap();
    let (_, value) = split_capsule(&buf[..len]);
    let answers: Vec<_> = AddressRequest::decode(value)
        .unwrap()
        .iter()
        .map(|r| AssignedAddress {
            request_id: r.request_id,
            prefix: if r.prefix.addr().is_ipv4() {
                IpPrefix::host("192.0.2.11".parse().unwrap())
            } else {
                IpPrefix::host("::".parse().unwrap())
            },
        })
        .collect();
    let len = AddressAssign::encode(&answers, &mut buf).unwrap();
    let (_, value) = split_capsule(&buf[..len]);
    assert_eq!(
        AddressAssign::decode(value)
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        answers
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // ---- round trips ----

    #[test]
    fn address_assign_round_trips(entries in assigned_list()) {
        let mut buf = vec![0; AddressAssign::encoded_len(&entries)];
        let len = AddressAssign::encode(&entries, &mut buf).unwrap();
        prop_assert_eq!(len, buf.len());
        let (capsule_type, value) = split_capsule(&buf);
        prop_assert_eq!(capsule_type, VarInt::from_u32(1));
        let view = AddressAssign::decode(value).unwrap();
        prop_assert_eq!(view.len(), entries.len());
        prop_assert_eq!(view.iter().collect::<Vec<_>>(), entries);
    }

    #[test]
    fn address_request_round_trips(entries in requested_list()) {
        let mut buf = vec![0; AddressRequest::encoded_len(&entries)];
        let len = AddressRequest::encode(&entries, &mut buf).unwrap();
        prop_assert_eq!(len, buf.len());
        let (capsule_type, value) = split_capsule(&buf);
        prop_assert_eq!(capsule_type, VarInt::from_u32(2));
        let view = AddressRequest::decode(value).unwrap();
        prop_assert_eq!(view.iter().collect::<Vec<_>>(), entries);
    }

    #[test]
    fn route_advertisement_round_trips(ranges in prop::collection::vec(any_range(), 0..16)) {
        let ranges = normalize(ranges);
        let mut buf = vec![0; RouteAdvertisement::encoded_len(&ranges)];
        let len = RouteAdvertisement::encode(&ranges, &mut buf).unwrap();
        prop_assert_eq!(len, buf.len());
        let (capsule_type, value) = split_capsule(&buf);
        prop_assert_eq!(capsule_type, VarInt::from_u32(3));
        let view = RouteAdvertisement::decode(value).unwrap();
        prop_assert_eq!(view.iter().collect::<Vec<_>>(), ranges.clone());
        for (i, range) in ranges.iter().enumerate() {
            prop_assert_eq!(view.get(i), Some(*range));
        }
        prop_assert_eq!(view.get(ranges.len()), None);
    }

    #[test]
    fn scope_round_trips(mut scope in scope(), template in prop::sample::select(TEMPLATES)) {
        let template = Template::new(template).unwrap();
        // A variable the template lacks can only carry the wildcard.
        if !template.has_target() {
            scope.target = Target::Any;
        }
        if !template.has_ipproto() {
            scope.ipproto = IpProto::Any;
        }
        let mut buf = [0; 512];
        let len = template.expand(&scope, &mut buf).unwrap();
        prop_assert_eq!(template.expanded_len(&scope), Ok(len));
        prop_assert_eq!(template.parse(&buf[..len]), Ok(scope));
    }

    // ---- the encoder and the decoder apply the same rules ----

    #[test]
    fn route_rules_agree(ranges in mutated_ranges()) {
        // The wire has one IP Version per range: mixed versions cannot be sent at all.
        prop_assume!(ranges.iter().all(|r| r.start.is_ipv4() == r.end.is_ipv4()));
        let raw = raw_ranges(&ranges);
        let decoded = RouteAdvertisement::decode(&raw);
        let mut buf = [0; 256];
        match (RouteAdvertisement::encode(&ranges, &mut buf), decoded) {
            (Ok(len), Ok(view)) => {
                prop_assert_eq!(split_capsule(&buf[..len]).1, raw.as_slice());
                for i in 0..=ranges.len() {
                    prop_assert_eq!(view.get(i), view.iter().nth(i));
                }
                prop_assert_eq!(view.iter().collect::<Vec<_>>(), ranges);
            }
            (Err(e), Err(d)) => prop_assert!(same_rule(e, d), "{:?} vs {:?}", e, d),
            (e, d) => prop_assert!(false, "encoder {:?} but decoder {:?}", e, d),
        }
    }

    #[test]
    fn address_request_rules_agree(
        entries in prop::collection::vec(((0u64..4).prop_map(|v| VarInt::new(v).unwrap()), prefix()), 0..4),
    ) {
        let requests: Vec<_> = entries
            .iter()
            .map(|&(request_id, prefix)| RequestedAddress { request_id, prefix })
            .collect();
        let raw = raw_addresses(&entries);
        let decoded = AddressRequest::decode(&raw);
        let encoded = AddressRequest::encode(&requests, &mut [0; 256]);
        let distinct = entries.iter().map(|(id, _)| *id).collect::<BTreeSet<_>>().len();
        match encoded {
            Ok(_) => prop_assert_eq!(decoded.map(|v| v.iter().collect::<Vec<_>>()), Ok(requests)),
            Err(AddressEncodeError::ZeroRequestId) => {
                prop_assert_eq!(decoded, Err(AddressDecodeError::ZeroRequestId));
            }
            Err(AddressEncodeError::NoRequestedAddresses) => {
                prop_assert_eq!(decoded, Err(AddressDecodeError::NoRequestedAddresses));
            }
            // Repeats are the engine's to catch, across capsules; the decoder accepts them
            // (though it may stop at a zero ID later in the list).
            Err(AddressEncodeError::DuplicateRequestId(_)) => {
                prop_assert!(distinct < entries.len());
                let has_zero = entries.iter().any(|(id, _)| *id == VarInt::ZERO);
                match decoded {
                    Ok(_) => prop_assert!(!has_zero),
                    Err(e) => prop_assert!(has_zero && e == AddressDecodeError::ZeroRequestId),
                }
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    // ---- arbitrary input never panics ----

    #[test]
    fn arbitrary_capsule_values_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(view) = AddressAssign::decode(&bytes) {
            let entries: Vec<_> = view.iter().collect();
            prop_assert_eq!(entries.len(), view.len());
            let mut buf = vec![0; AddressAssign::encoded_len(&entries)];
            prop_assert!(AddressAssign::encode(&entries, &mut buf).is_ok());
        }
        if let Ok(view) = AddressRequest::decode(&bytes) {
            prop_assert!(!view.is_empty());
            prop_assert_eq!(view.iter().count(), view.len());
        }
        if let Ok(view) = RouteAdvertisement::decode(&bytes) {
            let ranges: Vec<_> = view.iter().collect();
            prop_assert_eq!(ranges.len(), view.len());
            let mut buf = vec![0; RouteAdvertisement::encoded_len(&ranges)];
            let len = RouteAdvertisement::encode(&ranges, &mut buf).unwrap();
            prop_assert_eq!(split_capsule(&buf[..len]).1, bytes.as_slice());
        }
    }

    #[test]
    fn arbitrary_paths_never_panic(
        path in prop::collection::vec(any::<u8>(), 0..64),
        template in prop::sample::select(TEMPLATES),
    ) {
        let template = Template::new(template).unwrap();
        let _ = template.parse(&path);
    }

    #[test]
    fn parsed_scopes_expand_to_an_equivalent_path(
        target in prop_oneof![target_text(), address_text()],
        ipproto in "[0-9*%3]{0,4}",
    ) {
        let path = format!("/.well-known/masque/ip/{target}/{ipproto}/");
        if let Ok(scope) = Template::DEFAULT.parse(path.as_bytes()) {
            let mut buf = [0; 512];
            let len = Template::DEFAULT.expand(&scope, &mut buf).unwrap();
            prop_assert_eq!(Template::DEFAULT.parse(&buf[..len]), Ok(scope));
        }
    }

    #[test]
    fn arbitrary_templates_never_panic(template in "[ -~]{0,40}") {
        if let Ok(template) = Template::new(&template) {
            let mut buf = [0; 128];
            if let Ok(len) = template.expand(&Scope::ANY, &mut buf) {
                let parsed = template.parse(&buf[..len]);
                prop_assert!(matches!(parsed, Ok(ref s) if *s == Scope::ANY), "{:?}", parsed);
            }
        }
    }

    #[test]
    fn template_shaped_strings_never_panic(template in "(/|[a-z]{1,3}|\\{|\\}|target|ipproto|[?&=#%+./;,:*]){0,12}") {
        let _ = Template::new(&template).map(|t| t.parse(b"/"));
    }
}

#[test]
fn no_match_is_distinct_from_a_malformed_value() {
    assert_eq!(Template::DEFAULT.parse(b"/other"), Err(ScopeError::NoMatch));
}
