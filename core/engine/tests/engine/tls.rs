//! How the client trusts the edge: pinned fingerprint, CA, or explicitly not at all.

use std::time::{Duration, Instant};

use boring::asn1::Asn1Time;
use boring::bn::BigNum;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::x509::extension::{BasicConstraints, SubjectAlternativeName};
use boring::x509::{X509, X509NameBuilder};
use veil_engine::{ClientConfig, Config, EdgeConfig, Endpoint, Event, Pem, RefusedReason, Verify};

use crate::harness::Net;
use crate::hosts::{EdgeHost, OneTunnel};
use crate::{BUDGET, client_config, target};

/// Runs a client with `verify` against `edge` until its tunnel opens or is refused.
fn attempt(edge: Endpoint, mut config: ClientConfig) -> OneTunnel {
    config.pending_deadline = Duration::from_secs(3);
    config.reconnect_initial = Duration::from_millis(50);
    let client = Endpoint::new(Config::client(config), Instant::now()).expect("client");
    let mut net = Net::new(client, edge);
    let mut client = OneTunnel::to(target("echo.test", 443));
    let mut edge = EdgeHost::default();
    let done = net.run_until(&mut client, &mut edge, BUDGET, |c, _| {
        c.opened || c.refused.is_some()
    });
    assert!(done, "no outcome");
    client
}

fn established(client: &OneTunnel) -> bool {
    client
        .connection_events
        .iter()
        .any(|e| matches!(e, Event::ConnectionEstablished { .. }))
}

#[test]
fn the_right_pin_connects() {
    let edge = crate::edge(&[]);
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let client = attempt(edge, client_config(Verify::Pin(pin), None));
    assert!(client.opened);
    let Some(Event::ConnectionEstablished { peer, .. }) = client.connection_events.first() else {
        panic!("no ConnectionEstablished: {:?}", client.connection_events);
    };
    assert_eq!(peer.to_string(), crate::harness::EDGE_ADDR);
}

#[test]
fn a_wrong_pin_fails_the_handshake_and_the_tunnel_gives_up() {
    let edge = crate::edge(&[]);
    let mut pin = edge.certificate_fingerprint().expect("fingerprint");
    pin[0] ^= 1;
    let client = attempt(edge, client_config(Verify::Pin(pin), None));
    assert!(!client.opened && !established(&client));
    assert_eq!(client.refused, Some(RefusedReason::EdgeUnavailable));
    // The handshake failed on our side with a TLS alert (bad_certificate, 0x12a).
    let Some(Event::ConnectionLost { reason, .. }) = client.connection_events.first() else {
        panic!("no ConnectionLost: {:?}", client.connection_events);
    };
    assert_eq!(reason, "closed locally (transport error 0x12a)");
}

#[test]
fn insecure_connects_to_anything() {
    let client = attempt(crate::edge(&[]), client_config(Verify::Insecure, None));
    assert!(client.opened);
}

/// A CA, and a leaf for `localhost` and 127.0.0.1 signed by it, as PEM text.
pub(crate) fn ca_and_leaf() -> (String, String, String, Vec<u8>) {
    let key = || -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
        PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
    };
    let name = |cn: &str| {
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
        name.build()
    };
    let certificate =
        |subject: &str, issuer: &str, key: &PKey<Private>, signer: &PKey<Private>, ca: bool| {
            let mut cert = X509::builder().expect("builder");
            cert.set_version(2).expect("version");
            let serial = BigNum::from_u32(if ca { 1 } else { 2 }).expect("serial");
            cert.set_serial_number(&serial.to_asn1_integer().expect("serial"))
                .expect("serial");
            cert.set_subject_name(&name(subject)).expect("subject");
            cert.set_issuer_name(&name(issuer)).expect("issuer");
            cert.set_pubkey(key).expect("pubkey");
            cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
                .expect("not before");
            cert.set_not_after(&Asn1Time::days_from_now(30).expect("time"))
                .expect("not after");
            let mut constraints = BasicConstraints::new();
            if ca {
                constraints.critical().ca();
            }
            cert.append_extension(&constraints.build().expect("constraints"))
                .expect("constraints");
            if !ca {
                let san = SubjectAlternativeName::new()
                    .dns("localhost")
                    .ip("127.0.0.1")
                    .build(&cert.x509v3_context(None, None))
                    .expect("san");
                cert.append_extension(&san).expect("san");
            }
            cert.sign(signer, MessageDigest::sha256()).expect("sign");
            cert.build()
        };
    let ca_key = key();
    let leaf_key = key();
    let ca = certificate("veil test CA", "veil test CA", &ca_key, &ca_key, true);
    let leaf = certificate("localhost", "veil test CA", &leaf_key, &ca_key, false);
    let pem = |bytes: Vec<u8>| String::from_utf8(bytes).expect("pem");
    (
        pem(ca.to_pem().expect("pem")),
        pem(leaf.to_pem().expect("pem")),
        pem(leaf_key.private_key_to_pem_pkcs8().expect("pem")),
        leaf.to_der().expect("der"),
    )
}

fn edge_with(cert: &str, key: &str) -> Endpoint {
    let config = EdgeConfig {
        cert: Some(Pem::Text(cert.to_owned())),
        key: Some(Pem::Text(key.to_owned())),
        ..EdgeConfig::default()
    };
    Endpoint::new(Config::edge(config), Instant::now()).expect("edge")
}

#[test]
fn a_ca_verifies_the_chain_and_the_name() {
    let (ca, leaf, key, leaf_der) = ca_and_leaf();
    let edge = edge_with(&leaf, &key);
    assert_eq!(
        edge.certificate_fingerprint(),
        Some(boring::sha::sha256(&leaf_der))
    );
    let client = attempt(edge, client_config(Verify::Ca(Pem::Text(ca.clone())), None));
    assert!(client.opened);

    let mut config = client_config(Verify::Ca(Pem::Text(ca)), None);
    config.server_name = "other.test".to_owned();
    let client = attempt(edge_with(&leaf, &key), config);
    assert!(!client.opened && !established(&client));

    // A CA that did not sign the leaf.
    let (other_ca, ..) = ca_and_leaf();
    let client = attempt(
        edge_with(&leaf, &key),
        client_config(Verify::Ca(Pem::Text(other_ca)), None),
    );
    assert!(!client.opened && !established(&client));
}

#[test]
fn a_ca_verifies_an_edge_known_by_its_address() {
    let (ca, leaf, key, _) = ca_and_leaf();
    for (server_name, opens) in [
        ("127.0.0.1", true),
        ("127.0.0.2", false),
        ("::1", false),
        ("[::1]", false),
    ] {
        let mut config = client_config(Verify::Ca(Pem::Text(ca.clone())), None);
        config.server_name = server_name.to_owned();
        let client = attempt(edge_with(&leaf, &key), config);
        assert_eq!(client.opened, opens, "server name {server_name}");
        assert_eq!(established(&client), opens, "server name {server_name}");
    }
}

/// Notes the certificate identity every request carries.
struct SeenIdentities(std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>);

impl veil_engine::Policy for SeenIdentities {
    fn tunnel(
        &mut self,
        query: &veil_engine::TunnelQuery<'_>,
        _: &mut veil_engine::Tags,
    ) -> veil_engine::TunnelVerdict {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(query.certificate_identity.map(str::to_owned));
        }
        veil_engine::TunnelVerdict::Pass
    }
}

/// An edge that asks clients for a certificate chaining to `client_ca`.
fn mutual_edge(
    client_ca: &str,
    rules: Vec<veil_engine::rules::RuleSpec<veil_engine::rules::EdgeAction>>,
) -> Endpoint {
    let config = EdgeConfig {
        client_ca: Some(Pem::Text(client_ca.to_owned())),
        rules,
        ..EdgeConfig::default()
    };
    Endpoint::new(Config::edge(config), Instant::now()).expect("edge")
}

#[test]
fn mutual_tls_admits_only_certified_clients_and_names_them() {
    let (ca, leaf, key, _) = ca_and_leaf();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let edge = mutual_edge(&ca, Vec::new()).with_policy(SeenIdentities(seen.clone()));
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let mut config = client_config(Verify::Pin(pin), None);
    config.certificate = Some((Pem::Text(leaf.clone()), Pem::Text(key.clone())));
    let client = attempt(edge, config);
    assert!(client.opened, "a certified client was refused");
    // The leaf's first DNS name is its identity.
    assert_eq!(*seen.lock().expect("lock"), [Some("localhost".to_owned())]);

    // No certificate: the handshake fails.
    let edge = mutual_edge(&ca, Vec::new());
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let client = attempt(edge, client_config(Verify::Pin(pin), None));
    assert!(
        !client.opened,
        "a client without a certificate got in: {:?} {:?}",
        client.connection_events, client.refused
    );

    // A certificate from another CA: the handshake fails.
    let (_, other_leaf, other_key, _) = ca_and_leaf();
    let edge = mutual_edge(&ca, Vec::new());
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let mut config = client_config(Verify::Pin(pin), None);
    config.certificate = Some((Pem::Text(other_leaf), Pem::Text(other_key)));
    let client = attempt(edge, config);
    assert!(
        !client.opened,
        "a foreign certificate got in: {:?} {:?}",
        client.connection_events, client.refused
    );
}

#[test]
fn rules_match_the_certificate_identity() {
    use veil_engine::rules::{EdgeAction, RuleSpec};
    let (ca, leaf, key, _) = ca_and_leaf();
    let deny_localhost = RuleSpec {
        target: Vec::new(),
        host: Vec::new(),
        ports: Vec::new(),
        protocol: Vec::new(),
        identity: vec!["localhost".to_owned()],
        sni: Vec::new(),
        proxy_protocol: None,
        idle_timeout_ms: None,
        max_duration_ms: None,
        action: EdgeAction::Deny,
    };
    let edge = mutual_edge(&ca, vec![deny_localhost]);
    let pin = edge.certificate_fingerprint().expect("fingerprint");
    let mut config = client_config(Verify::Pin(pin), None);
    config.certificate = Some((Pem::Text(leaf), Pem::Text(key)));
    let client = attempt(edge, config);
    assert!(established(&client), "the handshake failed");
    match client.refused {
        Some(RefusedReason::Status { status: 403, .. }) => {}
        other => panic!("not refused by the rule: {other:?}"),
    }
}
