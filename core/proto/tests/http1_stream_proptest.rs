//! Property tests for `veil_proto::http1::RequestStream`: a generated sequence of
//! well-formed requests, cut anywhere, splits into exactly its heads and bodies; heads
//! re-written without edits parse back equal, and edits apply.

use proptest::prelude::*;
use veil_proto::http1::{
    BodyFraming, HeadEdits, Limits, OriginRequest, RequestStream, Step, Version,
};

#[derive(Debug, Clone)]
enum Body {
    None,
    Length(Vec<u8>),
    /// Chunks with their extensions, the last chunk's extension, the trailer fields.
    Chunked(Vec<(Vec<u8>, String)>, String, Vec<(String, String)>),
}

#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    version: Version,
    fields: Vec<(String, String)>,
    body: Body,
}

impl Request {
    /// The fields the head carries, in order: `Host`, the generated ones, the framing field.
    fn head_fields(&self) -> Vec<(String, Vec<u8>)> {
        let mut fields = vec![("Host".to_string(), b"a.example:8080".to_vec())];
        fields.extend(
            self.fields
                .iter()
                .map(|(n, v)| (n.clone(), v.trim_matches([' ', '\t']).as_bytes().to_vec())),
        );
        match &self.body {
            Body::None => {}
            Body::Length(bytes) => {
                fields.push(("Content-Length".into(), bytes.len().to_string().into()));
            }
            Body::Chunked(..) => {
                fields.push(("Transfer-Encoding".into(), b"chunked".to_vec()));
            }
        }
        fields
    }

    fn framing(&self) -> BodyFraming {
        match &self.body {
            Body::None => BodyFraming::None,
            Body::Length(bytes) => BodyFraming::ContentLength(bytes.len() as u64),
            Body::Chunked(..) => BodyFraming::Chunked,
        }
    }

    fn head(&self) -> Vec<u8> {
        let version = match self.version {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        };
        let mut out = format!("{} {} HTTP/{version}\r\n", self.method, self.target).into_bytes();
        for (name, value) in self.head_fields() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn body(&self) -> Vec<u8> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Length(bytes) => bytes.clone(),
            Body::Chunked(chunks, last_ext, trailers) => {
                let mut out = Vec::new();
                for (data, ext) in chunks {
                    out.extend_from_slice(format!("{:x}{ext}\r\n", data.len()).as_bytes());
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(format!("0{last_ext}\r\n").as_bytes());
                for (name, value) in trailers {
                    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
                out
            }
        }
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn field_name() -> impl Strategy<Value = String> {
    token().prop_filter("not a field the generator writes", |name| {
        !["host", "content-length", "transfer-encoding"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
    })
}

fn field_value() -> impl Strategy<Value = String> {
    "[ \t]?[!-~]([ -~\t]{0,20}[!-~])?[ \t]?"
}

fn chunk_ext() -> impl Strategy<Value = String> {
    let one = prop_oneof![
        token().prop_map(|n| format!(";{n}")),
        (token(), token()).prop_map(|(n, v)| format!(" ; {n}={v}")),
        (token(), "[ !#-\\[\\]-~]{0,10}").prop_map(|(n, v)| format!(";{n}=\"{v}\\\"\"")),
    ];
    prop::collection::vec(one, 0..3).prop_map(|exts| exts.concat())
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::None),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Length),
        (
            prop::collection::vec(
                (prop::collection::vec(any::<u8>(), 1..40), chunk_ext()),
                0..5
            ),
            chunk_ext(),
            prop::collection::vec((field_name(), "[!-~]{0,10}"), 0..3),
        )
            .prop_map(|(chunks, last, trailers)| Body::Chunked(chunks, last, trailers)),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        prop_oneof![
            "/[a-z0-9/._~-]{0,20}(\\?[a-z0-9=&]{0,10})?".prop_map(String::from),
            Just("http://a.example:8080/abs?x".to_string()),
        ],
        prop::collection::vec((field_name(), field_value()), 0..8),
        body(),
        any::<bool>(),
    )
        .prop_map(|(method, target, fields, body, http10)| {
            // Transfer-Encoding is refused in HTTP/1.0: only a length-delimited one.
            let version = if http10 && !matches!(body, Body::Chunked(..)) {
                Version::Http10
            } else {
                Version::Http11
            };
            Request {
                method: method.to_string(),
                target,
                version,
                fields,
                body,
            }
        })
}

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Head {
        method: String,
        target: String,
        version: Version,
        fields: Vec<(String, Vec<u8>)>,
        framing: BodyFraming,
        len: usize,
    },
    Body(usize),
}

fn seen_head(request: &OriginRequest<'_>) -> Seen {
    Seen::Head {
        method: request.method().to_string(),
        target: request.target().to_string(),
        version: request.version(),
        fields: request
            .fields()
            .iter()
            .map(|f| (f.name().to_string(), f.value().to_vec()))
            .collect(),
        framing: request.framing(),
        len: request.len(),
    }
}

/// Re-writes a head without edits and with some, and reads both back.
fn check_rewrites(request: &OriginRequest<'_>, remove_index: usize) {
    let wide = Limits {
        max_head_len: usize::MAX,
    };
    let len = request.head_len_with(&HeadEdits::NONE);
    let mut out = vec![0; len];
    assert_eq!(request.write_head(&HeadEdits::NONE, &mut out), Ok(len));
    let Ok(Step::Head(back)) = RequestStream::new(wide).step(&out) else {
        panic!("{:?}", String::from_utf8_lossy(&out))
    };
    assert_eq!(seen_head(&back), {
        let Seen::Head {
            method,
            target,
            version,
            fields,
            framing,
            ..
        } = seen_head(request)
        else {
            unreachable!()
        };
        Seen::Head {
            method,
            target,
            version,
            fields,
            framing,
            len,
        }
    });

    // Remove one of the generated fields (by name, every line of it), add one.
    let protected = ["host", "content-length", "transfer-encoding"];
    let removable: Vec<&str> = request
        .fields()
        .iter()
        .map(veil_proto::http1::HeaderField::name)
        .filter(|n| !protected.iter().any(|p| n.eq_ignore_ascii_case(p)))
        .collect();
    let remove: Vec<&str> = removable
        .get(remove_index % removable.len().max(1))
        .into_iter()
        .copied()
        .collect();
    let add = [("X-Veil-Added", "yes")];
    let edits = HeadEdits::new(&remove, &add).expect("valid edits");
    let len = request.head_len_with(&edits);
    let mut out = vec![0; len];
    assert_eq!(request.write_head(&edits, &mut out), Ok(len));
    let Ok(Step::Head(back)) = RequestStream::new(wide).step(&out) else {
        panic!("{:?}", String::from_utf8_lossy(&out))
    };
    let mut expected: Vec<(String, Vec<u8>)> = request
        .fields()
        .iter()
        .filter(|f| !remove.iter().any(|r| f.is(r)))
        .map(|f| (f.name().to_string(), f.value().to_vec()))
        .collect();
    expected.push(("X-Veil-Added".into(), b"yes".to_vec()));
    let got: Vec<(String, Vec<u8>)> = back
        .fields()
        .iter()
        .map(|f| (f.name().to_string(), f.value().to_vec()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(back.framing(), request.framing());
    assert_eq!(back.host(), request.host());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_streams_split_into_their_requests(
        requests in prop::collection::vec(request(), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        partial in any::<bool>(),
        remove_index in any::<usize>(),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut boundaries = vec![0];
        for request in &requests {
            let head = request.head();
            let body = request.body();
            expected.push(Seen::Head {
                method: request.method.clone(),
                target: request.target.clone(),
                version: request.version,
                fields: request.head_fields(),
                framing: request.framing(),
                len: head.len(),
            });
            if !body.is_empty() {
                expected.push(Seen::Body(body.len()));
            }
            wire.extend_from_slice(&head);
            wire.extend_from_slice(&body);
            boundaries.push(wire.len());
        }
        let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        ends.push(wire.len());
        ends.sort_unstable();

        let mut stream = RequestStream::default();
        let mut seen = Vec::new();
        let mut pos = 0;
        for end in ends {
            loop {
                let input = &wire[pos..end];
                match stream.step(input).expect("a well-formed stream") {
                    Step::Head(request) => {
                        prop_assert!(!stream.at_boundary());
                        check_rewrites(&request, remove_index);
                        seen.push(seen_head(&request));
                        stream.consume(request.len());
                        pos += request.len();
                    }
                    Step::Body { len } => {
                        prop_assert!(len >= 1 && len <= input.len());
                        // Take all of it, or half of it (rounded up) when asked.
                        let take = if partial { len.div_ceil(2) } else { len };
                        match seen.last_mut() {
                            Some(Seen::Body(total)) => *total += take,
                            _ => seen.push(Seen::Body(take)),
                        }
                        stream.consume(take);
                        pos += take;
                    }
                    Step::NeedMore => break,
                }
                prop_assert_eq!(
                    stream.at_boundary(),
                    boundaries.contains(&pos),
                    "at {} of {}", pos, wire.len()
                );
            }
        }
        prop_assert_eq!(pos, wire.len());
        prop_assert!(stream.at_boundary());
        prop_assert_eq!(seen, expected);
    }
}
