//! [`sniff`] on real and built `ClientHellos`, HTTP requests and garbage: the answer, and
//! [`Sniffed::NeedMore`] for every truncation of an input that has an answer.

use std::vec;
use std::vec::Vec;

use super::*;

/// A `ClientHello`, field by field (RFC 8446 §4.1.2), to break one field at a time.
#[derive(Clone)]
struct Hello {
    msg_type: u8,
    legacy_version: [u8; 2],
    session_id: Vec<u8>,
    cipher_suites: Vec<u8>,
    compression: Vec<u8>,
    /// `None`: no extensions block at all.
    extensions: Option<Vec<(u16, Vec<u8>)>>,
}

impl Hello {
    fn with_name(name: &[u8]) -> Self {
        Hello {
            msg_type: 1,
            legacy_version: [3, 3],
            session_id: vec![0x5a; 32],
            cipher_suites: vec![0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f],
            compression: vec![0],
            extensions: Some(vec![
                (0xff01, vec![0]), // renegotiation_info
                (0, server_name(&[(0, name)])),
                (43, vec![2, 3, 4]), // supported_versions
            ]),
        }
    }

    /// The Handshake message: type, uint24 length, body.
    fn message(&self) -> Vec<u8> {
        let mut body = self.legacy_version.to_vec();
        body.extend_from_slice(&[0xa5; 32]);
        body.push(u8::try_from(self.session_id.len()).unwrap());
        body.extend_from_slice(&self.session_id);
        body.extend_from_slice(
            &u16::try_from(self.cipher_suites.len())
                .unwrap()
                .to_be_bytes(),
        );
        body.extend_from_slice(&self.cipher_suites);
        body.push(u8::try_from(self.compression.len()).unwrap());
        body.extend_from_slice(&self.compression);
        if let Some(extensions) = &self.extensions {
            let mut block = Vec::new();
            for (kind, data) in extensions {
                block.extend_from_slice(&kind.to_be_bytes());
                block.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
                block.extend_from_slice(data);
            }
            body.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
            body.extend_from_slice(&block);
        }
        let mut message = vec![self.msg_type];
        message.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    /// In one handshake record.
    fn record(&self) -> Vec<u8> {
        records(&self.message(), 16_384)
    }
}

/// A `server_name` extension's data: a `ServerNameList` of (`name_type`, name).
fn server_name(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        list.extend_from_slice(name);
    }
    let mut data = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
    data.extend_from_slice(&list);
    data
}

/// `message` in handshake records of at most `fragment` bytes each.
fn records(message: &[u8], fragment: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(fragment) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The answer for `input`, after checking that its prefixes need more up to some length
/// and give that same answer from there on; and the length of the shortest prefix that
/// answers.
fn sniff_growing_to(input: &[u8]) -> (Sniffed<'_>, usize) {
    let answer = sniff(input);
    let first = (0..=input.len())
        .find(|&end| sniff(&input[..end]) != Sniffed::NeedMore)
        .expect("the whole input answers");
    for end in 0..=input.len() {
        let expected = if end < first {
            Sniffed::NeedMore
        } else {
            answer
        };
        assert_eq!(sniff(&input[..end]), expected, "prefix of {end} bytes");
    }
    (answer, first)
}

fn sniff_growing(input: &[u8]) -> Sniffed<'_> {
    sniff_growing_to(input).0
}

/// Where `needle` ends in `haystack`.
fn end_of(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len()
}

#[test]
fn captured_client_hellos() {
    // `openssl s_client -servername www.example.com` (OpenSSL 3.0) and
    // `curl https://api.Example.org/` (curl 7.88, which lowercases the name), captured on a
    // local listener.
    // The answer comes as soon as the name is complete.
    let openssl = include_bytes!("testdata/openssl-client-hello.bin");
    assert_eq!(
        sniff_growing_to(openssl),
        (
            Sniffed::TlsServerName("www.example.com"),
            end_of(openssl, b"www.example.com")
        )
    );
    let curl = include_bytes!("testdata/curl-client-hello.bin");
    assert_eq!(
        sniff_growing_to(curl),
        (
            Sniffed::TlsServerName("api.example.org"),
            end_of(curl, b"api.example.org")
        )
    );
    // What follows the ClientHello does not change the answer.
    let mut more = openssl.to_vec();
    more.extend_from_slice(&[0; 100]);
    assert_eq!(sniff(&more), Sniffed::TlsServerName("www.example.com"));
}

#[test]
fn built_client_hello_truncated_at_every_length() {
    let hello = Hello::with_name(b"Sub.Example.COM").record();
    assert_eq!(
        sniff_growing(&hello),
        Sniffed::TlsServerName("Sub.Example.COM")
    );
}

#[test]
fn client_hello_fragmented_over_records() {
    let name = b"fragmented.example.net";
    let message = Hello::with_name(name).message();
    let name_at = message.windows(name.len()).position(|w| w == name).unwrap();
    for fragment in 1..=message.len() {
        let input = records(&message, fragment);
        let split = name_at / fragment != (name_at + name.len() - 1) / fragment;
        let expected = if split {
            Sniffed::Nothing
        } else {
            Sniffed::TlsServerName("fragmented.example.net")
        };
        assert_eq!(sniff(&input), expected, "fragments of {fragment}");
        if fragment % 7 == 0 {
            assert_eq!(sniff_growing(&input), expected, "fragments of {fragment}");
        }
    }
}

#[test]
fn client_hellos_without_a_usable_name() {
    let good = Hello::with_name(b"example.com");
    let mut cases: Vec<(&str, Hello)> = Vec::new();
    let mut case = |what, change: &dyn Fn(&mut Hello)| {
        let mut hello = good.clone();
        change(&mut hello);
        cases.push((what, hello));
    };
    case("server hello", &|h| h.msg_type = 2);
    case("legacy_version 2.0", &|h| h.legacy_version = [2, 0]);
    case("session id of 33", &|h| h.session_id = vec![0; 33]);
    case("odd cipher suites", &|h| h.cipher_suites = vec![0; 3]);
    case("no cipher suites", &|h| h.cipher_suites = vec![]);
    case("no compression", &|h| h.compression = vec![]);
    case("no extensions", &|h| h.extensions = None);
    case("no server_name", &|h| {
        h.extensions = Some(vec![(43, vec![2, 3, 4])]);
    });
    case("empty server_name", &|h| {
        h.extensions = Some(vec![(0, vec![])]);
    });
    case("name type 1", &|h| {
        h.extensions = Some(vec![(0, server_name(&[(1, b"example.com")]))]);
    });
    case("empty name", &|h| {
        h.extensions = Some(vec![(0, server_name(&[(0, b"")]))]);
    });
    for bad in [
        &b"exa\0mple.com"[..],
        b"a b.com",
        b"a..b",
        b"\xc3\xa4.com",
        b"x:443",
    ] {
        let data = server_name(&[(0, bad)]);
        let mut hello = good.clone();
        hello.extensions = Some(vec![(0, data)]);
        assert_eq!(sniff(&hello.record()), Sniffed::Nothing, "{bad:?}");
    }
    for (what, hello) in cases {
        assert_eq!(sniff(&hello.record()), Sniffed::Nothing, "{what}");
    }
}

#[test]
fn client_hello_lengths_that_do_not_add_up() {
    let hello = Hello::with_name(b"example.com").record();
    let name_at = hello.windows(11).position(|w| w == b"example.com").unwrap();
    let mut broken: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut set = |what, at: usize, value: &[u8]| {
        let mut bytes = hello.clone();
        bytes[at..at + value.len()].copy_from_slice(value);
        broken.push((what, bytes));
    };
    set("record type 23", 0, &[23]);
    set("record version 2", 1, &[2]);
    set("record of 0 bytes", 3, &[0, 0]);
    set("record of 2^14 + 1 bytes", 3, &[0x40, 0x01]);
    set("message longer than the extensions", 6, &[0xff]);
    set("host name longer than the list", name_at - 2, &[0, 12]);
    set("list shorter than the extension", name_at - 5, &[0, 13]);
    for (what, bytes) in &broken {
        assert_eq!(sniff(bytes), Sniffed::Nothing, "{what}");
    }
    // A host name shorter than its list: what follows it in the list is not read (it could
    // be another ServerName), so the shorter name is the answer.
    let mut shorter = hello.clone();
    shorter[name_at - 2..name_at].copy_from_slice(&[0, 10]);
    assert_eq!(sniff(&shorter), Sniffed::TlsServerName("example.co"));
    // A record header that never says handshake is not TLS at all.
    assert_eq!(sniff(&[22, 2]), Sniffed::Nothing);
    assert_eq!(sniff(&[22, 3, 1, 0, 0]), Sniffed::Nothing);
    assert_eq!(sniff(&[22, 3, 1, 0, 4, 2]), Sniffed::Nothing);
}

#[test]
fn a_name_past_the_limit_is_not_waited_for() {
    // 20 000 bytes of padding before server_name, over two records.
    let mut hello = Hello::with_name(b"late.example.com");
    hello.extensions = Some(vec![
        (21, vec![0; 20_000]),
        (0, server_name(&[(0, b"late.example.com")])),
    ]);
    let input = records(&hello.message(), 16_384);
    assert!(input.len() > SNIFF_LIMIT);
    assert_eq!(sniff(&input[..SNIFF_LIMIT]), Sniffed::NeedMore);
    assert_eq!(sniff(&input[..=SNIFF_LIMIT]), Sniffed::Nothing);
    assert_eq!(sniff(&input), Sniffed::Nothing);
    // Within the limit, the second record is followed.
    hello.extensions = Some(vec![
        (21, vec![0; 16_000]),
        (0, server_name(&[(0, b"late.example.com")])),
    ]);
    let input = records(&hello.message(), 16_000);
    assert!(input.len() < SNIFF_LIMIT);
    assert_eq!(sniff(&input), Sniffed::TlsServerName("late.example.com"));
}

#[test]
fn http_requests() {
    let cases: [(&[u8], Sniffed<'_>); 14] = [
        (b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", Sniffed::HttpHost("example.com")),
        (
            b"GET /a?b HTTP/1.1\r\nUser-Agent: x\r\nhost:  Example.com:8080 \r\nAccept: */*\r\n\r\n",
            Sniffed::HttpHost("Example.com"),
        ),
        (b"GET / HTTP/1.0\r\nHost: 192.0.2.7:80\r\n\r\n", Sniffed::HttpHost("192.0.2.7")),
        (b"GET / HTTP/1.1\r\nHost: [2001:db8::7]:8443\r\n\r\n", Sniffed::HttpHost("2001:db8::7")),
        (
            b"GET http://absolute.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
            Sniffed::HttpHost("absolute.example"),
        ),
        (b"CONNECT tunnel.example:443 HTTP/1.1\r\n\r\n", Sniffed::HttpHost("tunnel.example")),
        (b"OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n", Sniffed::HttpHost("star.example")),
        (b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc", Sniffed::HttpHost("a.example")),
        (b"GET / HTTP/1.1\r\n\r\n", Sniffed::Nothing),
        (b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", Sniffed::Nothing),
        (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", Sniffed::Nothing),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Sniffed::Nothing),
        (b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n", Sniffed::Nothing),
        (b"GET / HTTP/2.0\r\nHost: a.example\r\n\r\n", Sniffed::Nothing),
    ];
    for (request, expected) in cases {
        let text = core::str::from_utf8(request).unwrap();
        if expected == Sniffed::Nothing {
            assert_eq!(sniff(request), expected, "{text:?}");
        } else {
            let head_len = text.find("\r\n\r\n").unwrap() + 4;
            assert_eq!(sniff_growing(&request[..head_len]), expected, "{text:?}");
            assert_eq!(sniff(request), expected, "{text:?}");
        }
    }
}

#[test]
fn too_many_header_fields() {
    let mut request = b"GET / HTTP/1.1\r\nHost: a.example\r\n".to_vec();
    for _ in 0..MAX_HEADERS {
        request.extend_from_slice(b"X: y\r\n");
    }
    request.extend_from_slice(b"\r\n");
    assert_eq!(sniff(&request), Sniffed::Nothing);
}

#[test]
fn garbage_and_other_protocols() {
    let cases: [&[u8]; 9] = [
        b"\0",
        b"\x80\x2e\x01\x03\x01", // an SSL 2.0 compatible ClientHello
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x17\x03\x03\x00\x10",
        b"\x15\x03\x03\x00\x02\x02\x28",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / FTP/1.1\r\n",
        b" GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",
    ];
    for garbage in cases {
        assert_eq!(sniff(garbage), Sniffed::Nothing, "{garbage:?}");
    }
    assert_eq!(sniff(b""), Sniffed::NeedMore);
    assert_eq!(sniff(b"\x16"), Sniffed::NeedMore);
    assert_eq!(sniff(b"GE"), Sniffed::NeedMore);
    // An endless request line is given up at the limit.
    let endless = vec![b'A'; SNIFF_LIMIT + 1];
    assert_eq!(sniff(&endless[..SNIFF_LIMIT]), Sniffed::NeedMore);
    assert_eq!(sniff(&endless), Sniffed::Nothing);
}

/// Every prefix of `input` sniffs to `NeedMore` or to the whole input's answer, and a name
/// is a slice of the input.
fn check_prefixes(input: &[u8]) {
    let whole = sniff(input);
    if let Sniffed::TlsServerName(name) | Sniffed::HttpHost(name) = whole {
        let range = input.as_ptr_range();
        assert!(range.contains(&name.as_ptr()) && name.len() <= input.len());
    }
    for end in 0..input.len() {
        let part = sniff(&input[..end]);
        assert!(
            part == Sniffed::NeedMore || part == whole,
            "{end}: {part:?} vs {whole:?}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn mutated_client_hellos_stay_consistent(
        fragment in 1usize..200,
        flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 0..4),
        cut in 0usize..400,
    ) {
        let mut input = records(&Hello::with_name(b"www.example.com").message(), fragment);
        for (at, value) in flips {
            let len = input.len();
            input[at % len] = value;
        }
        input.truncate(input.len().saturating_sub(cut % 8));
        check_prefixes(&input);
    }

    #[test]
    fn arbitrary_bytes_stay_consistent(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        check_prefixes(&input);
    }
}
