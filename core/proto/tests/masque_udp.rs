//! `masque::udp`: RFC 9298 examples, template validation, and every malformed target the
//! proxy refuses, each with its exact error.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::num::NonZeroU16;

use veil_proto::BufferTooSmall;
use veil_proto::masque::udp::{
    DEFAULT_PATH_TEMPLATE, Host, HostError, Name, PathError, PathTemplate, PortError, Target,
    TemplateError, UriTemplate, Variable, decode_port,
};

fn port(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).expect("ports start at 1")
}

fn v4_target() -> Target {
    Target::new(Host::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 6))), port(443))
}

fn v6_target() -> Target {
    Target::new(
        Host::Ip("2001:db8::42".parse().expect("an IPv6 address")),
        port(443),
    )
}

fn name_target(name: &str, p: u16) -> Target {
    Target::new(Host::Name(Name::new(name).expect("a valid name")), port(p))
}

fn expand(template: &PathTemplate<'_>, target: &Target) -> String {
    let mut out = [0; 512];
    let len = template
        .expand(target, &mut out)
        .expect("512 bytes hold any expansion");
    assert_eq!(len, template.expanded_len(target));
    String::from_utf8(out[..len].to_vec()).expect("expansions are ASCII")
}

/// Matches `path` against RFC 9298's default template.
fn match_default(path: &str) -> Result<Target, PathError> {
    PathTemplate::DEFAULT.match_path(path.as_bytes())
}

/// Puts `host` in the `target_host` position of the default template, port 443.
fn match_host(host: &str) -> Result<Target, PathError> {
    match_default(&format!("/.well-known/masque/udp/{host}/443/"))
}

/// Puts `port` in the `target_port` position of the default template, host example.com.
fn match_port(port: &str) -> Result<Target, PathError> {
    match_default(&format!("/.well-known/masque/udp/example.com/{port}/"))
}

// ---- RFC 9298 examples ----

/// RFC 9298 §2, Figure 1: the three example templates.
const RFC9298_FIGURE_1: [&str; 3] = [
    "https://example.org/.well-known/masque/udp/{target_host}/{target_port}/",
    "https://proxy.example.org:4443/masque?h={target_host}&p={target_port}",
    "https://proxy.example.org:4443/masque{?target_host,target_port}",
];

#[test]
fn rfc9298_figure_1_templates_are_accepted_and_split() {
    let parts: Vec<_> = RFC9298_FIGURE_1
        .iter()
        .map(|t| {
            let t = UriTemplate::new(t).unwrap();
            (
                t.scheme(),
                t.authority(),
                t.path().as_str(),
                t.path().has_query(),
            )
        })
        .collect();
    assert_eq!(
        parts,
        [
            (
                "https",
                "example.org",
                "/.well-known/masque/udp/{target_host}/{target_port}/",
                false
            ),
            (
                "https",
                "proxy.example.org:4443",
                "/masque?h={target_host}&p={target_port}",
                true
            ),
            (
                "https",
                "proxy.example.org:4443",
                "/masque{?target_host,target_port}",
                true
            ),
        ]
    );
}

#[test]
fn rfc9298_figure_1_templates_expand_and_match_back() {
    let expected = [
        [
            "/.well-known/masque/udp/192.0.2.6/443/",
            "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/",
        ],
        [
            "/masque?h=192.0.2.6&p=443",
            "/masque?h=2001%3Adb8%3A%3A42&p=443",
        ],
        [
            "/masque?target_host=192.0.2.6&target_port=443",
            "/masque?target_host=2001%3Adb8%3A%3A42&target_port=443",
        ],
    ];
    for (template, paths) in RFC9298_FIGURE_1.iter().zip(expected) {
        let template = UriTemplate::new(template).unwrap().path();
        for (target, path) in [v4_target(), v6_target()].iter().zip(paths) {
            assert_eq!(expand(&template, target), path);
            assert_eq!(template.match_path(path.as_bytes()).as_ref(), Ok(target));
        }
    }
}

/// RFC 9298 §3.2 (Figure 3) and §3.4 (Figure 5): template
/// `https://example.org/.well-known/masque/udp/{target_host}/{target_port}/`, target
/// 192.0.2.6:443, giving `:scheme = https`, `:authority = example.org` and
/// `:path = /.well-known/masque/udp/192.0.2.6/443/`.
#[test]
fn rfc9298_figures_3_and_5_request() {
    let template = UriTemplate::new(RFC9298_FIGURE_1[0]).unwrap();
    assert_eq!(template.scheme(), "https");
    assert_eq!(template.authority(), "example.org");
    assert_eq!(
        expand(&template.path(), &v4_target()),
        "/.well-known/masque/udp/192.0.2.6/443/"
    );
    let target = template
        .path()
        .match_path(b"/.well-known/masque/udp/192.0.2.6/443/")
        .unwrap();
    assert_eq!(target, v4_target());
    assert_eq!(target.to_string(), "192.0.2.6:443");
}

/// RFC 9298 §3: "if the target host is `2001:db8::42`, it will be encoded in the URI as
/// `2001%3Adb8%3A%3A42`."
#[test]
fn rfc9298_section_3_ipv6_encoding() {
    let path = expand(&PathTemplate::DEFAULT, &v6_target());
    assert_eq!(path, "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
    assert_eq!(match_default(&path), Ok(v6_target()));
}

#[test]
fn default_template_constant_is_the_parsed_default() {
    assert_eq!(
        PathTemplate::new(DEFAULT_PATH_TEMPLATE),
        Ok(PathTemplate::DEFAULT)
    );
    assert_eq!(PathTemplate::default(), PathTemplate::DEFAULT);
    assert_eq!(PathTemplate::DEFAULT.to_string(), DEFAULT_PATH_TEMPLATE);
}

// ---- Other template shapes ----

#[test]
fn other_supported_template_shapes_round_trip() {
    let cases = [
        // Simple expansion with two variables: comma-separated values.
        ("/udp/{target_host,target_port}/", "/udp/192.0.2.6,443/"),
        // Continuation of a literal query.
        (
            "/masque?v=1{&target_host,target_port}",
            "/masque?v=1&target_host=192.0.2.6&target_port=443",
        ),
        // Port first, host last with nothing after it.
        ("/p/{target_port}/h/{target_host}", "/p/443/h/192.0.2.6"),
        // A colon is a delimiter: host values never hold a raw colon.
        ("/{target_host}:{target_port}", "/192.0.2.6:443"),
        // Percent-encoded literal text is kept and compared as written.
        (
            "/ma%73que/{target_host}/{target_port}",
            "/ma%73que/192.0.2.6/443",
        ),
    ];
    for (template, path) in cases {
        let template = PathTemplate::new(template).unwrap();
        assert_eq!(expand(&template, &v4_target()), path);
        assert_eq!(template.match_path(path.as_bytes()), Ok(v4_target()));
    }
}

#[test]
fn names_expand_as_they_are() {
    let target = name_target("_dns._udp.Example.COM.", 53);
    assert_eq!(
        expand(&PathTemplate::DEFAULT, &target),
        "/.well-known/masque/udp/_dns._udp.example.com/53/"
    );
    assert_eq!(target.to_string(), "_dns._udp.example.com:53");
}

#[test]
fn expand_reports_the_size_it_needs_and_writes_nothing() {
    let mut out = [0xaa; 37];
    assert_eq!(
        PathTemplate::DEFAULT.expand(&v4_target(), &mut out),
        Err(BufferTooSmall {
            needed: 38,
            available: 37
        })
    );
    assert_eq!(out, [0xaa; 37]);
    let mut out = [0; 38];
    assert_eq!(PathTemplate::DEFAULT.expand(&v4_target(), &mut out), Ok(38));
}

// ---- Template errors ----

/// Literal text: a leading slash, RFC 6570 literal characters in 0x21–0x7E, well-formed
/// escapes, no fragment.
#[test]
fn template_literals_errors() {
    use TemplateError as E;
    let cases: &[(&str, TemplateError)] = &[
        ("", E::MissingLeadingSlash),
        ("masque/{target_host}/{target_port}", E::MissingLeadingSlash),
        (
            "/a b/{target_host}/{target_port}",
            E::InvalidCharacter { offset: 2 },
        ),
        (
            "/é/{target_host}/{target_port}",
            E::InvalidCharacter { offset: 1 },
        ),
        (
            "/%2/{target_host}/{target_port}",
            E::MalformedPercentEncoding { offset: 1 },
        ),
        (
            "/%zz/{target_host}/{target_port}",
            E::MalformedPercentEncoding { offset: 1 },
        ),
        (
            "/{target_host}/{target_port}/%",
            E::MalformedPercentEncoding { offset: 29 },
        ),
        (
            "/a#b/{target_host}/{target_port}",
            E::Fragment { offset: 2 },
        ),
    ];
    for (template, error) in cases {
        assert_eq!(PathTemplate::new(template), Err(*error), "{template:?}");
    }
    // Printable ASCII that RFC 6570 keeps out of literals, and a control character.
    for byte in *b"\"'<>\\^`|\t" {
        let template = format!("/{}/{{target_host}}/{{target_port}}", char::from(byte));
        assert_eq!(
            PathTemplate::new(&template),
            Err(E::InvalidCharacter { offset: 1 }),
            "{template:?}"
        );
    }
}

/// Expressions: closed braces, a known operator, no level-4 modifier, RFC 6570 names.
#[test]
fn template_expressions_errors() {
    use TemplateError as E;
    let cases: &[(&str, TemplateError)] = &[
        (
            "/{target_host}/{target_port",
            E::UnclosedExpression { offset: 15 },
        ),
        (
            "/target_host}/{target_port}",
            E::UnmatchedClosingBrace { offset: 12 },
        ),
        (
            "/{}/{target_host}/{target_port}",
            E::EmptyExpression { offset: 1 },
        ),
        (
            "/{target_host/{target_port}",
            E::InvalidVariableName { offset: 1 },
        ),
        (
            "/{target-host}/{target_port}",
            E::InvalidVariableName { offset: 1 },
        ),
        (
            "/{target_host,}/{target_port}",
            E::InvalidVariableName { offset: 1 },
        ),
        (
            "/{?}/{target_host}/{target_port}",
            E::InvalidVariableName { offset: 1 },
        ),
        (
            "/{.target_host}/{target_port}",
            E::UnsupportedOperator {
                offset: 1,
                operator: b'.',
            },
        ),
        (
            "/{target_host:3}/{target_port}",
            E::UnsupportedModifier { offset: 1 },
        ),
        (
            "/{target_host*}/{target_port}",
            E::UnsupportedModifier { offset: 1 },
        ),
    ];
    for (template, error) in cases {
        assert_eq!(PathTemplate::new(template), Err(*error), "{template:?}");
    }
}

/// Variables: each of the two exactly once, each followed by a delimiter.
#[test]
fn template_variables_errors() {
    use TemplateError as E;
    let cases: &[(&str, TemplateError)] = &[
        (
            "/{user}/{target_host}/{target_port}",
            E::UnknownVariable { offset: 1 },
        ),
        (
            "/{Target_Host}/{target_port}",
            E::UnknownVariable { offset: 1 },
        ),
        (
            "/{target_host}/{target_host}/{target_port}",
            E::DuplicateVariable(Variable::TargetHost),
        ),
        (
            "/{target_host,target_port,target_host}",
            E::DuplicateVariable(Variable::TargetHost),
        ),
        ("/", E::MissingVariable(Variable::TargetHost)),
        ("/{target_host}/", E::MissingVariable(Variable::TargetPort)),
        ("/{target_port}/", E::MissingVariable(Variable::TargetHost)),
        (
            "/{target_host}{target_port}/",
            E::UndelimitedVariable {
                variable: Variable::TargetHost,
                offset: 14,
            },
        ),
        (
            "/{target_host}.x/{target_port}",
            E::UndelimitedVariable {
                variable: Variable::TargetHost,
                offset: 14,
            },
        ),
        (
            "/{target_host}%2F{target_port}",
            E::UndelimitedVariable {
                variable: Variable::TargetHost,
                offset: 14,
            },
        ),
        (
            "/{target_host}/{target_port}~",
            E::UndelimitedVariable {
                variable: Variable::TargetPort,
                offset: 28,
            },
        ),
    ];
    for (template, error) in cases {
        assert_eq!(PathTemplate::new(template), Err(*error), "{template:?}");
    }
}

#[test]
fn every_forbidden_operator_is_refused() {
    // RFC 9298 §2 forbids + # . / ; and RFC 6570 reserves = , ! @ |.
    for operator in *b"+#./;=,!@|" {
        let template = format!("/{{{}target_host}}/{{target_port}}", char::from(operator));
        assert_eq!(
            PathTemplate::new(&template),
            Err(TemplateError::UnsupportedOperator {
                offset: 1,
                operator
            }),
            "{template}"
        );
    }
}

#[test]
fn uri_template_errors() {
    use TemplateError as E;
    let cases: &[(&str, TemplateError)] = &[
        (DEFAULT_PATH_TEMPLATE, E::NotAbsolute),
        (
            "https//example.org/{target_host}/{target_port}",
            E::NotAbsolute,
        ),
        (
            "1https://example.org/{target_host}/{target_port}",
            E::NotAbsolute,
        ),
        ("https:///{target_host}/{target_port}", E::EmptyAuthority),
        ("https://example.org", E::MissingPath),
        (
            "https://example.org?h={target_host}&p={target_port}",
            E::MissingPath,
        ),
        (
            "https://{target_host}/{target_port}/",
            E::VariableOutsidePathOrQuery { offset: 8 },
        ),
        (
            "https://exa mple.org/{target_host}/{target_port}",
            E::InvalidCharacter { offset: 11 },
        ),
        // Offsets inside the path count from the start of the whole template.
        (
            "https://example.org/{user}/{target_host}/{target_port}",
            E::UnknownVariable { offset: 20 },
        ),
    ];
    for (template, error) in cases {
        assert_eq!(UriTemplate::new(template), Err(*error), "{template:?}");
    }
}

#[test]
fn template_errors_say_where_and_why() {
    assert_eq!(
        TemplateError::UnsupportedOperator {
            offset: 1,
            operator: b'+'
        }
        .to_string(),
        "URI template uses the unsupported operator '+' at byte 1"
    );
    assert_eq!(
        TemplateError::MissingVariable(Variable::TargetPort).to_string(),
        "URI template lacks target_port"
    );
}

// ---- Matching the layout of a :path ----

#[test]
fn literal_mismatches_report_the_first_differing_byte() {
    assert_eq!(
        match_default("/.well-known/masque/tcp/h.example/443/"),
        Err(PathError::Mismatch { offset: 24 - 4 })
    );
    assert_eq!(match_default(""), Err(PathError::Mismatch { offset: 0 }));
    assert_eq!(match_default("*"), Err(PathError::Mismatch { offset: 0 }));
    // No trailing slash: the port runs to the end, then "/" is missing.
    assert_eq!(
        match_default("/.well-known/masque/udp/h.example/443"),
        Err(PathError::Mismatch { offset: 37 })
    );
    // Text after the template's end.
    assert_eq!(
        match_default("/.well-known/masque/udp/h.example/443/x"),
        Err(PathError::Mismatch { offset: 38 })
    );
}

#[test]
fn a_query_is_ignored_when_the_template_has_none() {
    assert_eq!(
        match_default("/.well-known/masque/udp/192.0.2.6/443/?token=abc&x"),
        Ok(v4_target())
    );
    assert_eq!(
        match_default("/.well-known/masque/udp/192.0.2.6/443/?"),
        Ok(v4_target())
    );
    // The query is cut before matching, so it cannot complete a truncated path.
    assert_eq!(
        match_default("/.well-known/masque/udp/192.0.2.6/443?/"),
        Err(PathError::Mismatch { offset: 37 })
    );
}

#[test]
fn a_query_template_matches_the_whole_query() {
    let template = PathTemplate::new("/masque?h={target_host}&p={target_port}").unwrap();
    assert_eq!(
        template.match_path(b"/masque?h=192.0.2.6&p=443"),
        Ok(v4_target())
    );
    assert_eq!(
        template.match_path(b"/masque?h=192.0.2.6&p=443&extra=1"),
        Err(PathError::Port(PortError::NotDecimal))
    );
    assert_eq!(
        template.match_path(b"/masque?p=443&h=192.0.2.6"),
        Err(PathError::Mismatch { offset: 8 })
    );
    assert_eq!(
        template.match_path(b"/masque"),
        Err(PathError::Mismatch { offset: 7 })
    );
    let form = PathTemplate::new("/masque{?target_host,target_port}").unwrap();
    assert_eq!(
        form.match_path(b"/masque?target_host=192.0.2.6&target_pert=443"),
        Err(PathError::Mismatch { offset: 38 })
    );
}

#[test]
fn layout_errors_come_before_value_errors() {
    assert_eq!(
        match_default("/.well-known/masque/udp/%zz/0/x"),
        Err(PathError::Mismatch { offset: 30 })
    );
}

// ---- target_host ----

#[test]
fn accepted_hosts() {
    let v6 = |s: &str| Host::Ip(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()));
    let name = |s: &str| Host::Name(Name::new(s).unwrap());
    let label63 = "a".repeat(63);
    let name253 = [
        &*"a".repeat(63),
        &"b".repeat(63),
        &"c".repeat(63),
        &"d".repeat(61),
    ]
    .join(".");
    let cases = [
        ("192.0.2.6", Host::Ip(Ipv4Addr::new(192, 0, 2, 6).into())),
        ("0.0.0.0", Host::Ip(Ipv4Addr::UNSPECIFIED.into())),
        ("2001%3Adb8%3A%3A42", v6("2001:db8::42")),
        // Lowercase hex digits decode the same (RFC 3986 §2.1).
        ("2001%3adb8%3a%3a42", v6("2001:db8::42")),
        ("%3A%3A1", v6("::1")),
        ("%3A%3Affff%3A192.0.2.1", v6("::ffff:192.0.2.1")),
        ("example.com", name("example.com")),
        // Lowercased, trailing dot dropped.
        ("Example.COM.", name("example.com")),
        // Percent-encoded unreserved characters decode.
        ("%65xample.com", name("example.com")),
        ("_dns._udp.example", name("_dns._udp.example")),
        ("-a-.b_", name("-a-.b_")),
        ("xn--bcher-kva.example", name("xn--bcher-kva.example")),
        ("localhost", name("localhost")),
        ("1.2.3.example", name("1.2.3.example")),
        (&label63, name(&label63)),
        (&name253, name(&name253)),
    ];
    for (encoded, host) in cases {
        assert_eq!(
            Host::decode(encoded.as_bytes()),
            Ok(host.clone()),
            "{encoded}"
        );
        assert_eq!(
            match_host(encoded),
            Ok(Target::new(host, port(443))),
            "{encoded}"
        );
    }
    let dotted = format!("{name253}.");
    assert_eq!(Host::decode(dotted.as_bytes()), Ok(name(&name253)));
}

#[test]
fn refused_hosts() {
    use HostError as E;
    let label64 = "a".repeat(64);
    let name254 = [
        &*"a".repeat(63),
        &"b".repeat(63),
        &"c".repeat(63),
        &"d".repeat(62),
    ]
    .join(".");
    let cases: &[(&str, HostError)] = &[
        ("", E::Empty),
        ("%", E::MalformedPercentEncoding),
        ("exa%2mple", E::MalformedPercentEncoding),
        ("%G0", E::MalformedPercentEncoding),
        ("exémple", E::NonAscii),
        ("ex%C3%A9mple", E::NonAscii),
        ("a%2Fb", E::InvalidCharacter(b'/')),
        ("a~b", E::InvalidCharacter(b'~')),
        ("a%20b", E::InvalidCharacter(b' ')),
        ("a%25b", E::InvalidCharacter(b'%')),
        ("a!b", E::InvalidCharacter(b'!')),
        ("a%00b", E::InvalidCharacter(0)),
        ("2001:db8::42", E::UnencodedColon),
        ("2001%3Adb8:%3A42", E::UnencodedColon),
        ("[2001%3Adb8%3A%3A42]", E::Bracketed),
        ("[2001:db8::42]", E::Bracketed),
        ("%5B2001%3Adb8%3A%3A42%5D", E::Bracketed),
        ("fe80%3A%3A1%25eth0", E::ZoneId),
        ("fe80%3A%3A1%2525eth0", E::ZoneId),
        ("2001%3Adb8%3A%3A%3A42", E::InvalidIpv6),
        ("1%3A2", E::InvalidIpv6),
        ("example.com%3A443", E::InvalidIpv6),
        (&name254, E::TooLong),
        (".example.com", E::EmptyLabel),
        ("example..com", E::EmptyLabel),
        (".", E::EmptyLabel),
        ("example.com..", E::EmptyLabel),
        (&label64, E::LabelTooLong),
        ("1.2.3.256", E::NumericName),
        ("127.1", E::NumericName),
        ("01.2.3.4", E::NumericName),
        ("0x7f.1", E::NumericName),
        ("192.0.2.6.", E::NumericName),
        ("example.123", E::NumericName),
        ("4294967295", E::NumericName),
    ];
    for (encoded, error) in cases {
        assert_eq!(Host::decode(encoded.as_bytes()), Err(*error), "{encoded:?}");
        assert_eq!(
            match_host(encoded),
            Err(PathError::Host(*error)),
            "{encoded:?}"
        );
    }
    // A value too long for any host stops decoding as soon as it is too long.
    assert_eq!(Host::decode(&[b'a'; 10_000]), Err(E::TooLong));
}

#[test]
fn plain_text_hosts_and_names() {
    assert_eq!(
        "2001:db8::42".parse::<Host>(),
        Ok(Host::Ip("2001:db8::42".parse().unwrap()))
    );
    assert_eq!("[::1]".parse::<Host>(), Err(HostError::Bracketed));
    assert_eq!("fe80::1%eth0".parse::<Host>(), Err(HostError::ZoneId));
    assert_eq!("".parse::<Host>(), Err(HostError::Empty));
    assert_eq!(Name::new("Example.COM").unwrap().as_str(), "example.com");
    assert_eq!(Name::new("192.0.2.1"), Err(HostError::NumericName));
    assert_eq!(Name::new("a:b"), Err(HostError::InvalidCharacter(b':')));
    assert_eq!(Name::new(""), Err(HostError::Empty));
    assert_eq!(Name::new("é.example"), Err(HostError::NonAscii));
}

// ---- target_port ----

#[test]
fn accepted_ports() {
    for (encoded, value) in [("1", 1), ("443", 443), ("65535", 65535), ("%34%34%33", 443)] {
        assert_eq!(
            decode_port(encoded.as_bytes()),
            Ok(port(value)),
            "{encoded}"
        );
        assert_eq!(
            match_port(encoded),
            Ok(name_target("example.com", value)),
            "{encoded}"
        );
    }
}

#[test]
fn refused_ports() {
    use PortError as E;
    let cases: &[(&str, PortError)] = &[
        ("", E::Empty),
        ("%3", E::MalformedPercentEncoding),
        ("4%", E::MalformedPercentEncoding),
        ("+443", E::NotDecimal),
        ("%2B443", E::NotDecimal),
        ("-1", E::NotDecimal),
        ("44%203", E::NotDecimal),
        ("443a", E::NotDecimal),
        ("https", E::NotDecimal),
        ("٤٤٣", E::NotDecimal),
        ("0443", E::LeadingZero),
        ("00", E::LeadingZero),
        ("0", E::Zero),
        ("65536", E::OutOfRange),
        ("99999999999999999999999", E::OutOfRange),
    ];
    for (encoded, error) in cases {
        assert_eq!(decode_port(encoded.as_bytes()), Err(*error), "{encoded:?}");
        assert_eq!(
            match_port(encoded),
            Err(PathError::Port(*error)),
            "{encoded:?}"
        );
    }
}

// ---- Display for logs ----

#[test]
fn targets_display_as_host_and_port() {
    assert_eq!(v4_target().to_string(), "192.0.2.6:443");
    assert_eq!(v6_target().to_string(), "[2001:db8::42]:443");
    assert_eq!(name_target("Example.com", 53).to_string(), "example.com:53");
}

#[test]
fn path_errors_display_their_reason() {
    assert_eq!(
        match_host("fe80%3A%3A1%25eth0").unwrap_err().to_string(),
        "target_host has an IPv6 zone identifier"
    );
    assert_eq!(
        match_host("a%00b").unwrap_err().to_string(),
        "target_host has a character no host name or address contains: '\\u{0}'"
    );
    assert_eq!(match_port("0").unwrap_err().to_string(), "target_port is 0");
    assert_eq!(
        match_default("/x").unwrap_err().to_string(),
        "request path does not match the URI template at byte 1"
    );
}
