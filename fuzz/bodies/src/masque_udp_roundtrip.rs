//! `veil_proto::masque::udp`: an arbitrary target (IPv4, IPv6 or a DNS name built from the
//! name alphabet, and a port) expands under each of a set of valid templates into a path
//! that matches back to the same target.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::num::NonZeroU16;

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::masque::udp::{Host, Name, PathTemplate, Target};

use crate::masque_udp::expand_and_match;

/// Templates of every supported shape: simple and form-style expansion, either order.
const TEMPLATES: &[&str] = &[
    "/.well-known/masque/udp/{target_host}/{target_port}/",
    "/masque?h={target_host}&p={target_port}",
    "/masque{?target_host,target_port}",
    "/masque?v=1{&target_host,target_port}",
    "/udp/{target_host,target_port}/",
    "/p/{target_port}/h/{target_host}",
    "/{target_port}/{target_host}",
];

/// Characters a [`Name`] may hold, and the dot that separates labels.
const NAME_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

#[derive(Debug, Arbitrary)]
enum HostInput {
    V4([u8; 4]),
    V6([u8; 16]),
    /// Indices into [`NAME_ALPHABET`].
    Name(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    host: HostInput,
    port: NonZeroU16,
    template: u8,
}

/// Expands an arbitrary target and matches it back.
///
/// # Panics
///
/// When the target does not come back exactly.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let host = match input.host {
        HostInput::V4(octets) => Host::Ip(IpAddr::V4(Ipv4Addr::from(octets))),
        HostInput::V6(octets) => Host::Ip(IpAddr::V6(Ipv6Addr::from(octets))),
        HostInput::Name(indices) => {
            let text: String = indices
                .iter()
                .map(|&i| char::from(NAME_ALPHABET[usize::from(i) % NAME_ALPHABET.len()]))
                .collect();
            let Ok(name) = Name::new(&text) else {
                return;
            };
            assert_eq!(
                name.as_str(),
                text.strip_suffix('.').unwrap_or(&text).to_ascii_lowercase()
            );
            Host::Name(name)
        }
    };
    let target = Target::new(host, input.port);
    let text = TEMPLATES[usize::from(input.template) % TEMPLATES.len()];
    let template = PathTemplate::new(text).expect("the templates are valid");
    expand_and_match(&template, &target);
}
