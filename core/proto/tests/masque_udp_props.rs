//! `masque::udp` properties: expand → match round trips, and no input ever panics.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::num::NonZeroU16;

use proptest::prelude::*;
use veil_proto::masque::udp::{
    Host, HostError, Name, PathTemplate, PortError, Target, UriTemplate, decode_port,
};

/// The default template, a literal-query one and a form-style one (RFC 9298 §2, Figure 1),
/// plus a port-first one.
const TEMPLATES: [&str; 4] = [
    "/.well-known/masque/udp/{target_host}/{target_port}/",
    "/masque?h={target_host}&p={target_port}",
    "/masque{?target_host,target_port}",
    "/{target_port}/{target_host}",
];

/// DNS names of 1–4 labels whose last label starts with a letter, in mixed case and
/// sometimes with a trailing dot.
fn name() -> impl Strategy<Value = (String, Name)> {
    let label = "[a-zA-Z0-9_-]{1,63}";
    let last = "[a-zA-Z][a-zA-Z0-9_-]{0,62}";
    (prop::collection::vec(label, 0..4), last, any::<bool>()).prop_filter_map(
        "names fit in 253 characters",
        |(mut labels, last, dot)| {
            labels.push(last);
            let mut text = labels.join(".");
            let name = Name::new(&text).ok()?;
            if dot {
                text.push('.');
            }
            Some((text, name))
        },
    )
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| Host::Ip(IpAddr::V4(Ipv4Addr::from(b)))),
        any::<[u8; 16]>().prop_map(|b| Host::Ip(IpAddr::V6(Ipv6Addr::from(b)))),
        name().prop_map(|(_, name)| Host::Name(name)),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    (host(), 1..=u16::MAX).prop_map(|(host, port)| {
        Target::new(host, NonZeroU16::new(port).expect("ports start at 1"))
    })
}

fn round_trip(template: &PathTemplate<'_>, target: &Target) -> Result<(), TestCaseError> {
    let mut out = [0; 512];
    let len = template
        .expand(target, &mut out)
        .expect("512 bytes hold any expansion");
    prop_assert_eq!(len, template.expanded_len(target));
    let matched = template.match_path(&out[..len]);
    prop_assert_eq!(matched.as_ref(), Ok(target));
    Ok(())
}

/// Template-shaped text: literals from the whole RFC 6570 literal set, mostly starting
/// with a delimiter, and expressions that may or may not be valid, so that about one in
/// ten is accepted.
fn template_text() -> impl Strategy<Value = String> {
    let literal = prop_oneof![
        4 => "[/?&=;:,@!$()*+][a-zA-Z0-9/?&=;:,@!$()*+.~_-]{0,3}",
        1 => "[a-zA-Z0-9/?&=;:,@!$()*+.~_-]{0,4}",
    ];
    let expression = prop::sample::select(
        &[
            "{target_host}",
            "{target_port}",
            "{target_host,target_port}",
            "{target_port,target_host}",
            "{?target_host,target_port}",
            "{?target_port}",
            "{&target_host}",
            "{&target_host,target_port}",
            "{+target_host}",
            "{other}",
            "",
        ][..],
    );
    (
        literal.clone(),
        expression.clone(),
        literal.clone(),
        expression,
        literal,
    )
        .prop_map(|(a, x, b, y, c)| format!("/{a}{x}{b}{y}{c}"))
}

proptest! {
    #[test]
    fn expand_then_match_round_trips(target in target()) {
        for template in TEMPLATES {
            round_trip(&PathTemplate::new(template).expect("valid template"), &target)?;
        }
    }

    #[test]
    fn every_valid_template_round_trips(text in template_text(), target in target()) {
        if let Ok(template) = PathTemplate::new(&text) {
            round_trip(&template, &target)?;
        }
    }

    #[test]
    fn names_are_lowercased_without_their_trailing_dot((text, name) in name()) {
        let expected = text.strip_suffix('.').unwrap_or(&text).to_ascii_lowercase();
        prop_assert_eq!(name.as_str(), expected.as_str());
        prop_assert_eq!(Host::decode(text.as_bytes()), Ok(Host::Name(name)));
    }

    #[test]
    fn every_port_has_one_spelling(port in 1..=u16::MAX) {
        let expected = NonZeroU16::new(port).expect("ports start at 1");
        prop_assert_eq!(decode_port(port.to_string().as_bytes()), Ok(expected));
        prop_assert_eq!(
            decode_port(format!("0{port}").as_bytes()),
            Err(PortError::LeadingZero)
        );
    }

    #[test]
    fn arbitrary_paths_never_panic(path in prop::collection::vec(any::<u8>(), 0..80)) {
        for template in TEMPLATES {
            let template = PathTemplate::new(template).expect("valid template");
            if let Ok(target) = template.match_path(&path) {
                // Whatever is accepted expands back to a path that names it.
                round_trip(&template, &target)?;
            }
        }
    }

    #[test]
    fn template_shaped_paths_never_panic(value in "[a-zA-Z0-9%:.\\[\\]_~/-]{0,40}") {
        let path = format!("/.well-known/masque/udp/{value}/443/");
        let _ = PathTemplate::DEFAULT.match_path(path.as_bytes());
    }

    #[test]
    fn arbitrary_hosts_and_ports_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_port(&bytes);
        match Host::decode(&bytes) {
            Ok(Host::Name(name)) => prop_assert!(name.as_str().len() <= 253),
            Ok(Host::Ip(_)) | Err(_) => {}
        }
        if let Ok(text) = core::str::from_utf8(&bytes) {
            let _ = text.parse::<Host>();
            let parsed: Result<Name, HostError> = Name::new(text);
            let _ = parsed;
        }
    }

    #[test]
    fn arbitrary_templates_never_panic(text in "\\PC{0,60}") {
        let _ = PathTemplate::new(&text);
        let _ = UriTemplate::new(&text);
        let _ = UriTemplate::new(&format!("https://example.org{text}"));
    }
}
