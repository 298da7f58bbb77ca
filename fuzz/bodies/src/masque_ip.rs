//! `veil_proto::masque::ip` on raw input: byte 0 picks what the rest is.
//!
//! | byte 0 % 4 | rest |
//! |---|---|
//! | 0 | `template \n path` (no line feed: a path for the default template) |
//! | 1 | an `ADDRESS_ASSIGN` capsule value |
//! | 2 | an `ADDRESS_REQUEST` capsule value |
//! | 3 | a `ROUTE_ADVERTISEMENT` capsule value |
//!
//! A scope that parses expands into a path that parses back to it. A capsule value that
//! decodes gives entries that re-encode into a capsule whose value decodes to the same
//! entries (byte for byte for routes, whose fields have fixed sizes); the view's length,
//! iterator and random access agree.

use veil_proto::capsule::types;
use veil_proto::masque::ip::{
    AddressAssign, AddressEncodeError, AddressRequest, AssignedAddress, IpAddressRange,
    RequestedAddress, RouteAdvertisement, Scope, Template,
};
use veil_proto::varint::VarInt;

/// Decodes the input as byte 0 says and checks the round trips.
///
/// # Panics
///
/// When a round trip in the module documentation does not hold.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => scope(rest),
        1 => address_assign(rest),
        2 => address_request(rest),
        _ => route_advertisement(rest),
    }
}

fn scope(data: &[u8]) {
    let (template, path) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (Some(&data[..at]), &data[at + 1..]),
        None => (None, data),
    };
    let template = match template {
        None => Template::DEFAULT,
        Some(text) => {
            let Some(template) = core::str::from_utf8(text)
                .ok()
                .and_then(|text| Template::new(text).ok())
            else {
                return;
            };
            template
        }
    };
    if let Ok(scope) = template.parse(path) {
        expand_and_parse(&template, &scope);
    }
}

/// `scope` expands under `template` into a path that parses back to it.
pub(crate) fn expand_and_parse(template: &Template<'_>, scope: &Scope) {
    let len = template
        .expanded_len(scope)
        .expect("a parsed scope fits its template");
    let mut path = vec![0; len];
    assert_eq!(template.expand(scope, &mut path), Ok(len));
    assert_eq!(
        template.parse(&path).as_ref(),
        Ok(scope),
        "{scope:?} expanded into {:?}",
        String::from_utf8_lossy(&path)
    );
    if len > 0 {
        assert!(template.expand(scope, &mut path[..len - 1]).is_err());
    }
}

/// The type and value of the one capsule `bytes` holds.
pub(crate) fn split_capsule(bytes: &[u8]) -> (VarInt, &[u8]) {
    let (capsule_type, type_len) = VarInt::decode(bytes).expect("a capsule type");
    let (value_len, len_len) = VarInt::decode(&bytes[type_len..]).expect("a capsule length");
    let value = &bytes[type_len + len_len..];
    assert_eq!(value.len() as u64, value_len.into_inner(), "capsule length");
    (capsule_type, value)
}

fn address_assign(value: &[u8]) {
    let Ok(view) = AddressAssign::decode(value) else {
        return;
    };
    let entries: Vec<AssignedAddress> = view.iter().collect();
    assert_eq!(entries.len(), view.len());
    assert_eq!(view.is_empty(), entries.is_empty());
    let mut out = vec![0; AddressAssign::encoded_len(&entries)];
    assert_eq!(AddressAssign::encode(&entries, &mut out), Ok(out.len()));
    let (capsule_type, again) = split_capsule(&out);
    assert_eq!(capsule_type, types::ADDRESS_ASSIGN);
    assert!(again.len() <= value.len(), "re-encoding is never longer");
    let again = AddressAssign::decode(again).expect("re-encoded value");
    assert!(again.iter().eq(entries.iter().copied()));
}

fn address_request(value: &[u8]) {
    let Ok(view) = AddressRequest::decode(value) else {
        return;
    };
    let entries: Vec<RequestedAddress> = view.iter().collect();
    assert_eq!(entries.len(), view.len());
    assert!(!view.is_empty());
    assert!(entries.iter().all(|e| e.request_id != VarInt::ZERO));
    let mut out = vec![0; AddressRequest::encoded_len(&entries)];
    match AddressRequest::encode(&entries, &mut out) {
        Ok(len) => {
            assert_eq!(len, out.len());
            let (capsule_type, again) = split_capsule(&out);
            assert_eq!(capsule_type, types::ADDRESS_REQUEST);
            let again = AddressRequest::decode(again).expect("re-encoded value");
            assert!(again.iter().eq(entries.iter().copied()));
        }
        // The decoder leaves repeated Request IDs to the engine; the encoder refuses them.
        Err(AddressEncodeError::DuplicateRequestId(id)) => {
            assert!(entries.iter().filter(|e| e.request_id == id).count() > 1);
        }
        Err(e) => panic!("a decoded request does not re-encode: {e:?}"),
    }
}

fn route_advertisement(value: &[u8]) {
    let Ok(view) = RouteAdvertisement::decode(value) else {
        return;
    };
    let ranges: Vec<IpAddressRange> = view.iter().collect();
    assert_eq!(ranges.len(), view.len());
    assert_eq!(view.is_empty(), ranges.is_empty());
    for (i, range) in ranges.iter().enumerate() {
        assert_eq!(view.get(i).as_ref(), Some(range));
        assert_eq!(range.start.is_ipv4(), range.end.is_ipv4());
        assert!(range.start <= range.end);
        assert!(range.contains(range.start) && range.contains(range.end));
    }
    assert_eq!(view.get(ranges.len()), None);
    let mut out = vec![0; RouteAdvertisement::encoded_len(&ranges)];
    assert_eq!(RouteAdvertisement::encode(&ranges, &mut out), Ok(out.len()));
    let (capsule_type, again) = split_capsule(&out);
    assert_eq!(capsule_type, types::ROUTE_ADVERTISEMENT);
    assert_eq!(again, value, "fixed-size fields re-encode byte for byte");
}
