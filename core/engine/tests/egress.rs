//! The egress policy end to end: every spelling of a refused address, as a client could
//! write it in a request, goes through `classify_host` and `EgressPolicy::check` and is
//! refused with the right class; public addresses pass; the allowlist and own addresses
//! apply to every spelling alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use veil_engine::egress::{
    AddressClass, EgressPolicy, HostError, HostKind, IpNet, Nat64Prefix, classify_host,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn nets(texts: &[&str]) -> Vec<IpNet> {
    texts.iter().map(|t| t.parse().expect("prefix")).collect()
}

/// What the engine would answer for `host`: `Ok(Ok(()))` to dial, `Ok(Err(class))` for a
/// 403, `Err(_)` for a 400. Names (which need a resolver) are a test failure here.
fn decide(policy: &EgressPolicy, host: &str) -> Result<Result<(), AddressClass>, HostError> {
    match classify_host(host)? {
        HostKind::Ip(addr) => Ok(policy.check(addr).map_err(|refusal| refusal.class)),
        HostKind::Name => panic!("{host:?} classified as a name"),
    }
}

/// Every spelling of one IPv4 address a resolver, socket API or URL parser accepts.
fn spellings(addr: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = addr.octets();
    let bits = addr.to_bits();
    let low24 = bits & 0x00ff_ffff;
    let low16 = bits & 0xffff;
    let v6_low = format!("{:x}:{:x}", bits >> 16, bits & 0xffff);
    vec![
        format!("{a}.{b}.{c}.{d}"),
        format!("{a}.{b}.{c}.{d}."),
        format!("{bits}"),
        format!("{bits}."),
        format!("0x{bits:x}"),
        format!("0X{bits:08X}"),
        format!("0{bits:o}"),
        format!("00{bits:o}"),
        format!("{a}.{low24}"),
        format!("{a}.{b}.{low16}"),
        format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
        format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
        format!("0x{a:02x}.{b}.0{c:o}.{d}"),
        format!("0x{a:x}.0x{low24:x}"),
        format!("{a}.0{b:o}.0x{low16:x}"),
        format!("[::ffff:{a}.{b}.{c}.{d}]"),
        format!("::ffff:{a}.{b}.{c}.{d}"),
        format!("[::ffff:{v6_low}]"),
        format!("[0:0:0:0:0:ffff:{a}.{b}.{c}.{d}]"),
        format!("[0000:0000:0000:0000:0000:FFFF:{v6_low}]"),
        format!("[64:ff9b::{a}.{b}.{c}.{d}]"),
        format!("[64:ff9b::{v6_low}]"),
        format!("[2002:{v6_low}::]"),
        format!("[2002:{v6_low}:1234:5678:9abc:def0:1]"),
    ]
}

#[test]
fn every_spelling_of_special_addresses_is_refused_with_its_class() {
    let policy = EgressPolicy::default();
    let cases = [
        ([127, 0, 0, 1], AddressClass::Loopback),
        ([127, 255, 0, 9], AddressClass::Loopback),
        ([10, 0, 0, 1], AddressClass::Private),
        ([172, 16, 5, 4], AddressClass::Private),
        ([192, 168, 1, 1], AddressClass::Private),
        ([169, 254, 169, 254], AddressClass::CloudMetadata),
        ([169, 254, 170, 2], AddressClass::CloudMetadata),
        ([100, 100, 100, 200], AddressClass::CloudMetadata),
        ([168, 63, 129, 16], AddressClass::CloudMetadata),
        ([169, 254, 1, 1], AddressClass::LinkLocal),
        ([100, 64, 0, 1], AddressClass::SharedCgnat),
        ([0, 0, 0, 0], AddressClass::Unspecified),
        ([0, 1, 2, 3], AddressClass::Reserved),
        ([224, 0, 0, 251], AddressClass::Multicast),
        ([255, 255, 255, 255], AddressClass::Broadcast),
        ([240, 0, 0, 1], AddressClass::Reserved),
        ([198, 18, 0, 1], AddressClass::Benchmarking),
        ([192, 0, 2, 1], AddressClass::Documentation),
    ];
    for (octets, class) in cases {
        for host in spellings(Ipv4Addr::from(octets)) {
            assert_eq!(decide(&policy, &host), Ok(Err(class)), "{host}");
        }
    }
}

#[test]
fn every_spelling_of_public_addresses_is_allowed() {
    let policy = EgressPolicy::default();
    for octets in [
        [1, 1, 1, 1],
        [8, 8, 4, 4],
        [93, 184, 216, 34],
        [100, 128, 0, 1],
    ] {
        for host in spellings(Ipv4Addr::from(octets)) {
            assert_eq!(decide(&policy, &host), Ok(Ok(())), "{host}");
        }
    }
    for host in [
        "[2606:4700::1111]",
        "2606:4700:4700::1001",
        "[2001:4860:4860::8888]",
    ] {
        assert_eq!(decide(&policy, host), Ok(Ok(())), "{host}");
    }
}

#[test]
fn ipv6_only_forms_are_refused_with_their_class() {
    let policy = EgressPolicy::default();
    let cases = [
        ("[::1]", AddressClass::Loopback),
        ("[0:0:0:0:0:0:0:1]", AddressClass::Loopback),
        ("[::]", AddressClass::Unspecified),
        ("[::127.0.0.1]", AddressClass::Ipv4Compatible),
        ("[::a00:1]", AddressClass::Ipv4Compatible),
        ("[fe80::1%25eth0]", AddressClass::LinkLocal),
        ("fe80::1%eth0", AddressClass::LinkLocal),
        ("[fd00:ec2::254]", AddressClass::CloudMetadata),
        ("[fd12:3456::1]", AddressClass::UniqueLocal),
        ("[ff02::1]", AddressClass::Multicast),
        (
            "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
            AddressClass::Teredo,
        ),
        ("[64:ff9b:1::a00:1]", AddressClass::Nat64LocalUse),
        ("[2001:db8::1]", AddressClass::Documentation),
        ("[100::1]", AddressClass::Reserved),
        ("[::ffff:0:a00:1]", AddressClass::Reserved),
    ];
    for (host, class) in cases {
        assert_eq!(decide(&policy, host), Ok(Err(class)), "{host}");
    }
}

#[test]
fn localhost_names_are_loopback() {
    let policy = EgressPolicy::default();
    for host in ["localhost", "LOCALHOST.", "app.localhost"] {
        assert_eq!(
            decide(&policy, host),
            Ok(Err(AddressClass::Loopback)),
            "{host}"
        );
    }
    let tests = EgressPolicy::new(nets(&["127.0.0.0/8"]));
    assert_eq!(decide(&tests, "localhost"), Ok(Ok(())));
}

#[test]
fn ambiguous_numeric_hosts_are_malformed() {
    let policy = EgressPolicy::default();
    for host in [
        "1.2.3.4.5",
        "256.1.1.1",
        "127.0.0.1.1",
        "0x1.0x100000000",
        "09.0.0.1",
        "foo.127",
    ] {
        assert_eq!(decide(&policy, host), Err(HostError::NumericName), "{host}");
    }
}

#[test]
fn allowlisted_prefix_allows_every_spelling_of_its_addresses() {
    let policy = EgressPolicy::new(nets(&["127.0.0.0/8", "10.1.0.0/16"]));
    for octets in [[127, 0, 0, 1], [127, 9, 9, 9], [10, 1, 2, 3]] {
        for host in spellings(Ipv4Addr::from(octets)) {
            assert_eq!(decide(&policy, &host), Ok(Ok(())), "{host}");
        }
    }
    for host in spellings(Ipv4Addr::new(10, 2, 0, 1)) {
        assert_eq!(
            decide(&policy, &host),
            Ok(Err(AddressClass::Private)),
            "{host}"
        );
    }
    assert_eq!(decide(&policy, "[::1]"), Ok(Err(AddressClass::Loopback)));
}

#[test]
fn own_addresses_are_refused_in_every_spelling() {
    let policy =
        EgressPolicy::default().with_own_addresses([ip("93.184.216.34"), ip("2a01:4f8::7")]);
    for host in spellings(Ipv4Addr::new(93, 184, 216, 34)) {
        assert_eq!(decide(&policy, &host), Ok(Err(AddressClass::Own)), "{host}");
    }
    assert_eq!(decide(&policy, "[2a01:4f8::7]"), Ok(Err(AddressClass::Own)));
    assert_eq!(decide(&policy, "93.184.216.35"), Ok(Ok(())));
}

#[test]
fn resolved_answers_are_filtered() {
    let policy = EgressPolicy::default();
    let answers = [
        ip("::ffff:127.0.0.1"),
        ip("93.184.216.34"),
        ip("64:ff9b::a00:1"),
    ];
    assert_eq!(
        policy.check_resolved(&answers),
        Ok(vec![ip("93.184.216.34")])
    );
    let refusal = policy
        .check_resolved(&[ip("64:ff9b::a00:1")])
        .expect_err("only a private answer");
    assert_eq!(refusal.class, AddressClass::Private);
    assert_eq!(refusal.checked, ip("10.0.0.1"));
}

#[test]
fn configuration_reads_prefixes_from_strings() {
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error, SeqDeserializer};

    let texts = vec!["127.0.0.0/8", "::1", "2001:db8::/32"];
    let de: SeqDeserializer<_, Error> = texts.into_deserializer();
    let allow = Vec::<IpNet>::deserialize(de).expect("prefixes");
    assert_eq!(allow, nets(&["127.0.0.0/8", "::1/128", "2001:db8::/32"]));

    let de: SeqDeserializer<_, Error> = vec!["64:ff9b:1:fffe::/96"].into_deserializer();
    let nat64 = Vec::<Nat64Prefix>::deserialize(de).expect("NAT64 prefixes");
    let policy = EgressPolicy::new(allow).with_nat64_prefixes(nat64);
    assert_eq!(
        policy
            .check(ip("64:ff9b:1:fffe::a00:1"))
            .map_err(|r| r.class),
        Err(AddressClass::Private)
    );
    assert_eq!(policy.check(ip("64:ff9b:1:fffe::7f00:1")), Ok(()));

    let de: SeqDeserializer<_, Error> = vec!["64:ff9b:1::/80"].into_deserializer();
    let error = Vec::<Nat64Prefix>::deserialize(de).expect_err("bad length");
    assert_eq!(
        error.to_string(),
        "a NAT64 prefix is /32, /40, /48, /56, /64 or /96, not /80 in \"64:ff9b:1::/80\""
    );
}

/// The IPv4 address `v4` under the NAT64 `prefix`, laid out as RFC 6052 §2.2 says: the
/// octets after the prefix, skipping octet 8.
fn nat64(prefix: &Nat64Prefix, v4: Ipv4Addr) -> IpAddr {
    let IpAddr::V6(base) = prefix.net().addr() else {
        unreachable!("NAT64 prefixes are IPv6")
    };
    let mut octets = base.octets();
    let start = usize::from(prefix.net().prefix_len() / 8);
    let positions = (start..16).filter(|&i| i != 8);
    for (index, byte) in positions.zip(v4.octets()) {
        octets[index] = byte;
    }
    Ipv6Addr::from(octets).into()
}

fn six_to_four(v4: Ipv4Addr, suffix: u128) -> IpAddr {
    let bits = (0x2002_u128 << 112) | (u128::from(v4.to_bits()) << 80) | (suffix & ((1 << 80) - 1));
    Ipv6Addr::from_bits(bits).into()
}

fn policies() -> Vec<EgressPolicy> {
    vec![
        EgressPolicy::default(),
        EgressPolicy::new(nets(&["127.0.0.0/8", "10.0.0.0/9", "169.254.169.254/32"]))
            .with_own_addresses([ip("93.184.216.34"), ip("1.1.1.1")]),
    ]
}

proptest! {
    #[test]
    fn every_embedding_is_judged_like_its_ipv4_address(bits: u32, suffix: u128) {
        let v4 = Ipv4Addr::from_bits(bits);
        // One prefix of each RFC 6052 length, none inside another.
        let configured: Vec<Nat64Prefix> = ["3fff:1::/32", "3fff:2:100::/40", "3fff:3:122::/48",
            "3fff:4:122:300::/56", "3fff:5:122:344::/64", "64:ff9b:1:fffe::/96"]
            .iter().map(|t| t.parse().expect("prefix")).collect();
        for policy in policies() {
            let policy = policy.with_nat64_prefixes(configured.clone());
            let expected = policy.check(v4.into()).map_err(|r| r.class);
            let mapped: IpAddr = v4.to_ipv6_mapped().into();
            prop_assert_eq!(policy.check(mapped).map_err(|r| r.class), expected);
            let wkp = nat64(&Nat64Prefix::WELL_KNOWN, v4);
            prop_assert_eq!(policy.check(wkp).map_err(|r| r.class), expected);
            prop_assert_eq!(policy.check(six_to_four(v4, suffix)).map_err(|r| r.class), expected);
            for prefix in &configured {
                let addr = nat64(prefix, v4);
                prop_assert_eq!(policy.check(addr).map_err(|r| r.class), expected, "{}", addr);
            }
        }
    }

    #[test]
    fn every_spelling_classifies_to_the_same_address(bits: u32) {
        let v4 = Ipv4Addr::from_bits(bits);
        for host in spellings(v4).into_iter().take(15) {
            prop_assert_eq!(classify_host(&host), Ok(HostKind::Ip(v4.into())), "{}", host);
        }
    }

    #[test]
    fn classify_host_never_panics(host in ".{0,300}") {
        let _ = classify_host(&host);
    }

    #[test]
    fn classify_host_never_panics_on_address_like_text(host in "[\\[\\]0-9a-fA-FxX.:%]{0,60}") {
        if let Ok(HostKind::Ip(addr)) = classify_host(&host) {
            // Whatever it read, the policy can judge it.
            let _ = EgressPolicy::default().check(addr);
        }
    }

    #[test]
    fn ip_net_text_round_trips(addr: IpAddr, len: u8) {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len % (max + 1);
        let net = match IpNet::new(addr, len) {
            Ok(net) => net,
            Err(veil_engine::egress::IpNetError::HostBitsSet { network }) => network,
            Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
        };
        prop_assert_eq!(net.to_string().parse::<IpNet>(), Ok(net));
        prop_assert!(net.contains(net.addr()));
        prop_assert_eq!(net.contains(addr), true);
    }

    #[test]
    fn ip_net_parse_never_panics(text in ".{0,64}") {
        let _ = text.parse::<IpNet>();
        let _ = text.parse::<Nat64Prefix>();
    }
}

// The choice among a name's resolved addresses (`Endpoint::egress_for`) needs a tunnel:
// tests/engine/policy.rs and tests/engine/rules.rs cover it.

/// How a failed dial or socket is reported is the engine's too, from an `io::Error` or a
/// C host's `errno`.
#[test]
fn dial_errors_become_the_same_refusals_for_every_host() {
    use std::io::{Error, ErrorKind};
    use veil_engine::Refusal;

    let cases = [
        (ErrorKind::ConnectionRefused, Refusal::ConnectionRefused),
        (ErrorKind::TimedOut, Refusal::ConnectionTimeout),
        (ErrorKind::HostUnreachable, Refusal::Unreachable),
        (ErrorKind::NetworkUnreachable, Refusal::Unreachable),
        (ErrorKind::PermissionDenied, Refusal::Internal),
        (ErrorKind::AddrInUse, Refusal::Internal),
    ];
    for (kind, refusal) in cases {
        assert_eq!(
            Refusal::from_io_error(&Error::from(kind)),
            refusal,
            "{kind:?}"
        );
    }
    if !cfg!(target_os = "linux") {
        return;
    }
    // Linux's numbers: ECONNREFUSED 111, ETIMEDOUT 110, EHOSTUNREACH 113, ENETUNREACH 101.
    for (errno, refusal) in [
        (111, Refusal::ConnectionRefused),
        (110, Refusal::ConnectionTimeout),
        (113, Refusal::Unreachable),
        (101, Refusal::Unreachable),
        (1, Refusal::Internal),
    ] {
        assert_eq!(Refusal::from_errno(errno), refusal, "errno {errno}");
    }
}

/// One vocabulary: the refusal an edge sends is the refusal its client reads back.
#[test]
fn every_refusal_survives_the_trip_to_the_client() {
    use veil_engine::{Refusal, RefusedReason};
    for refusal in Refusal::ALL {
        let reason = RefusedReason::Status {
            status: refusal.status(),
            proxy_error: Some(refusal.proxy_error()),
            proxy_status: None,
        };
        assert_eq!(reason.refusal(), Some(refusal));
    }
    let not_a_refusal = RefusedReason::Status {
        status: 407,
        proxy_error: None,
        proxy_status: None,
    };
    assert_eq!(not_a_refusal.refusal(), None);
    assert_eq!(RefusedReason::EdgeUnavailable.refusal(), None);
}
