//! `veil_proto::http1::RequestStream` on a client's request stream inside a tunnel, fed in
//! arbitrary chunks (see [`crate::chunks`]). Flags: bits 0-1 pick [`Limits::max_head_len`];
//! bit 2 consumes each `Body` by halves; bit 3 consumes each head in two parts (its rest
//! then comes back as `Body`).
//!
//! - The transcript (heads, bytes passed through between them, the error, bytes consumed,
//!   `at_boundary` at the end) is the same in any chunking as in one piece; consuming bodies
//!   by halves changes nothing either.
//! - Every `Body` is within the input and non-empty; stepping again without consuming gives
//!   the same answer; errors are sticky; never a panic.
//! - Every head re-written with no edits has the announced length and parses back to the
//!   same method, target, version, fields and framing; with a field removed and one added,
//!   to exactly that.

use veil_proto::http1::{
    BodyFraming, HeadEdits, Limits, MAX_HEADERS, OriginRequest, RequestStream, Step, StreamError,
    Version,
};

use crate::chunks::Chunked;

fn limits(flags: u8) -> Limits {
    let max_head_len = match flags & 0b11 {
        0 => Limits::DEFAULT_MAX_HEAD_LEN,
        1 => 64,
        2 => 256,
        _ => 1024,
    };
    Limits { max_head_len }
}

/// How the driver consumes what the stream reports.
#[derive(Clone, Copy)]
struct Policy {
    body_halves: bool,
    head_in_two: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    version: Version,
    fields: Vec<(String, Vec<u8>)>,
    framing: BodyFraming,
    len: usize,
}

impl Head {
    fn of(request: &OriginRequest<'_>) -> Self {
        Self {
            method: request.method().to_owned(),
            target: request.target().to_owned(),
            version: request.version(),
            fields: request
                .fields()
                .iter()
                .map(|f| (f.name().to_owned(), f.value().to_vec()))
                .collect(),
            framing: request.framing(),
            len: request.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Head(Head),
    Body(usize),
    Error(StreamError),
}

#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    events: Vec<Event>,
    consumed: usize,
    at_boundary: bool,
}

/// Drives a stream over `stream` as it grows to each of `ends`.
fn drive(limits: Limits, stream: &[u8], ends: &[usize], policy: Policy) -> Transcript {
    let mut splitter = RequestStream::new(limits);
    let mut events = Vec::new();
    let mut pos = 0;
    'arrivals: for &end in ends {
        loop {
            let input = &stream[pos..end];
            let step = splitter.step(input);
            assert_eq!(splitter.step(input), step, "stepping again");
            match step {
                Ok(Step::Head(request)) => {
                    assert!(request.len() <= input.len());
                    assert!(request.fields().len() <= MAX_HEADERS);
                    assert!(!splitter.at_boundary());
                    check_rewrites(&request);
                    events.push(Event::Head(Head::of(&request)));
                    let len = request.len();
                    let first = if policy.head_in_two { len / 2 } else { len };
                    splitter.consume(first);
                    pos += first;
                    if first < len {
                        let rest = &stream[pos..end];
                        assert_eq!(splitter.step(rest), Ok(Step::Body { len: len - first }));
                        splitter.consume(len - first);
                        pos += len - first;
                    }
                }
                Ok(Step::Body { len }) => {
                    assert!(
                        len >= 1 && len <= input.len(),
                        "Body {len} of {}",
                        input.len()
                    );
                    let take = if policy.body_halves {
                        len.div_ceil(2)
                    } else {
                        len
                    };
                    match events.last_mut() {
                        Some(Event::Body(total)) => *total += take,
                        _ => events.push(Event::Body(take)),
                    }
                    splitter.consume(take);
                    pos += take;
                }
                Ok(Step::NeedMore) => continue 'arrivals,
                Err(error) => {
                    assert_eq!(splitter.error(), Some(error));
                    assert_eq!(splitter.step(&stream[pos..]), Err(error), "sticky");
                    assert!(!splitter.at_boundary());
                    events.push(Event::Error(error));
                    break 'arrivals;
                }
            }
            assert!(pos <= end);
        }
    }
    Transcript {
        events,
        consumed: pos,
        at_boundary: splitter.at_boundary(),
    }
}

/// Splits and checks as the module documentation says.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some(input) = Chunked::parse(data) else {
        return;
    };
    let stream = input.stream;
    let limits = limits(input.flags);
    let policy = Policy {
        body_halves: input.flags & 0b100 != 0,
        head_in_two: input.flags & 0b1000 != 0,
    };
    let whole = drive(limits, stream, &[stream.len()], policy);
    let grown = drive(limits, stream, &input.prefix_lens(), policy);
    assert_eq!(grown, whole, "chunked vs one piece");
    if !policy.head_in_two {
        let full = Policy {
            body_halves: false,
            head_in_two: false,
        };
        assert_eq!(
            drive(limits, stream, &input.prefix_lens(), full),
            whole,
            "bodies by halves vs whole"
        );
    }
    assert!(whole.consumed <= stream.len());
}

const PROTECTED: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// The head re-written parses back as itself; an edit applies exactly.
fn check_rewrites(request: &OriginRequest<'_>) {
    let written = write(request, &HeadEdits::NONE);
    let back = reparse(&written).expect("a re-written head parses");
    let mut expected = Head::of(request);
    expected.len = written.len();
    assert_eq!(Head::of(&back), expected);
    assert_eq!(back.host(), request.host());
    assert_eq!(back.target_form(), request.target_form());

    let remove: Vec<&str> = request
        .fields()
        .iter()
        .map(veil_proto::http1::HeaderField::name)
        .filter(|n| !PROTECTED.iter().any(|p| n.eq_ignore_ascii_case(p)))
        .take(1)
        .collect();
    let add = [("X-Veil", "1")];
    let edits = HeadEdits::new(&remove, &add).expect("a received name is a token");
    let written = write(request, &edits);
    let mut fields: Vec<(String, Vec<u8>)> = request
        .fields()
        .iter()
        .filter(|f| !remove.iter().any(|r| f.is(r)))
        .map(|f| (f.name().to_owned(), f.value().to_vec()))
        .collect();
    fields.push(("X-Veil".to_owned(), b"1".to_vec()));
    match reparse(&written) {
        Ok(back) => {
            assert_eq!(Head::of(&back).fields, fields);
            assert_eq!(back.framing(), request.framing());
            assert_eq!(back.host(), request.host());
        }
        Err(error) => {
            assert_eq!(error, StreamError::TooManyHeaders);
            assert!(fields.len() > MAX_HEADERS);
        }
    }
    for name in PROTECTED {
        assert!(HeadEdits::new(&[name], &[]).is_err());
        assert!(HeadEdits::new(&[], &[(name, "1")]).is_err());
    }
}

fn write(request: &OriginRequest<'_>, edits: &HeadEdits<'_>) -> Vec<u8> {
    let len = request.head_len_with(edits);
    let mut out = vec![0; len];
    assert_eq!(request.write_head(edits, &mut out), Ok(len));
    assert!(request.write_head(edits, &mut out[..len - 1]).is_err());
    out
}

fn reparse(written: &[u8]) -> Result<OriginRequest<'_>, StreamError> {
    let wide = Limits {
        max_head_len: usize::MAX,
    };
    match RequestStream::new(wide).step(written)? {
        Step::Head(back) => {
            assert_eq!(back.len(), written.len());
            Ok(back)
        }
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(written)),
    }
}
