//! CONNECT-UDP request rules seen from a raw HTTP/3 client: numeric spellings of
//! addresses get the answer a CONNECT gets (403 with Proxy-Status when forbidden, 400 when
//! no address at all), `capsule-protocol` is optional, and content fields make a request
//! malformed.

use veil_engine::{Event, Host, TunnelTarget};

use crate::raw::RawClient;

fn request(path: &str, extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let headers: Vec<(String, String)> = [
        (":method", "CONNECT"),
        (":protocol", "connect-udp"),
        (":scheme", "https"),
        (":authority", "localhost:4433"),
        (":path", path),
    ]
    .iter()
    .chain(extra)
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    headers
}

fn refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

fn connect(authority: &str) -> Vec<(String, String)> {
    vec![
        (":method".to_owned(), "CONNECT".to_owned()),
        (":authority".to_owned(), authority.to_owned()),
    ]
}

const PROHIBITED: &str = "veil;error=destination_ip_prohibited";
const MALFORMED: &str = "veil;error=http_request_error";

#[test]
fn numeric_spellings_of_addresses_get_the_answer_a_connect_gets() {
    let mut edge = crate::edge(&[]);
    let mut raw = RawClient::new(false);
    for (host, status, proxy_status) in [
        ("2130706433", "403", PROHIBITED),
        ("0x7f.1", "403", PROHIBITED),
        ("127.1", "403", PROHIBITED),
        ("2852039166", "403", PROHIBITED), // 169.254.169.254, cloud metadata
        ("1.2.3.4.5", "400", MALFORMED),
    ] {
        let path = format!("/.well-known/masque/udp/{host}/53/");
        let udp = raw.request(&mut edge, &refs(&request(&path, &[])));
        let tcp = raw.request(&mut edge, &refs(&connect(&format!("{host}:53"))));
        let expected = (status.to_owned(), Some(proxy_status.to_owned()));
        assert_eq!(udp, expected, "CONNECT-UDP to {host}");
        assert_eq!(tcp, expected, "CONNECT to {host}");
    }
    assert_eq!(edge.stats().tunnels_total, 0, "the host saw none of them");
}

#[test]
fn an_allowed_numeric_spelling_reaches_the_host_as_its_address() {
    let config = veil_engine::EdgeConfig {
        egress_allow: vec!["127.0.0.0/8".to_owned()],
        ..veil_engine::EdgeConfig::default()
    };
    let mut edge =
        veil_engine::Endpoint::new(veil_engine::Config::edge(config), std::time::Instant::now())
            .expect("edge");
    let mut raw = RawClient::new(false);
    let mut seen = Vec::new();
    let headers = request("/.well-known/masque/udp/2130706433/5353/", &[]);
    raw.send_request(
        &mut edge,
        &mut |endpoint, event| {
            if let Event::TunnelRequest { tunnel, target, .. } = event {
                seen.push(target);
                endpoint
                    .refuse_tunnel(tunnel, veil_engine::Refusal::ConnectionRefused)
                    .expect("refuse");
            }
        },
        &refs(&headers),
    );
    let loopback = TunnelTarget::new(Host::Ip("127.0.0.1".parse().expect("ip")), 5353);
    assert_eq!(seen, [loopback]);
}

#[test]
fn capsule_protocol_is_optional_and_content_fields_are_malformed() {
    let mut edge = crate::edge(&[]);
    let mut raw = RawClient::new(false);
    let good = "/.well-known/masque/udp/example.com/53/";
    let mut requested = 0;
    for extra in [&[][..], &[("capsule-protocol", "?1")][..]] {
        let headers = request(good, extra);
        raw.send_request(
            &mut edge,
            &mut |endpoint, event| {
                if let Event::TunnelRequest { tunnel, .. } = event {
                    requested += 1;
                    endpoint
                        .refuse_tunnel(tunnel, veil_engine::Refusal::ConnectionRefused)
                        .expect("refuse");
                }
            },
            &refs(&headers),
        );
    }
    assert_eq!(requested, 2, "a request without capsule-protocol is whole");
    for field in [
        ("content-length", "0"),
        ("content-type", "application/octet-stream"),
        ("transfer-encoding", "chunked"),
    ] {
        let answer = raw.request(&mut edge, &refs(&request(good, &[field])));
        assert_eq!(
            answer,
            ("400".to_owned(), Some(MALFORMED.to_owned())),
            "{field:?}"
        );
    }
}
