//! `veil_proto::capsule` on a raw capsule stream, fed in arbitrary chunks (see
//! [`crate::chunks`]; flags bits 0-1 pick the [`DecoderConfig`]).
//!
//! - The [`Decoder`] reports the same events, the same error and the same `finish` verdict
//!   in any chunking as in one piece; `used` never exceeds the input; value chunks are
//!   never empty and add up to the announced length; errors are sticky.
//! - [`VecCapsuleAssembler`] yields exactly the capsules the decoder delimits, and
//!   [`CapsuleAssembler`] those of a decoder capped at its capacity, in any chunking.
//! - Every DATAGRAM capsule whose value splits into a Context ID and payload re-encodes with
//!   [`encode_datagram`] into a capsule that assembles back to the same value.

use veil_proto::capsule::{
    Capsule, CapsuleAssembler, CapsuleError, Decoder, DecoderConfig, Event, VecCapsuleAssembler,
    encode_datagram, types,
};
use veil_proto::varint::VarInt;

use crate::chunks::Chunked;

/// Capacity of the fixed assembler under test: small, so that its cap is reached.
const FIXED_CAPACITY: usize = 64;

/// One decoder event, owned; consecutive value chunks are merged, since only their
/// concatenation is independent of the chunking.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Header { capsule_type: u64, value_len: u64 },
    Value(Vec<u8>),
    End,
}

/// What a decoder made of a whole stream.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    events: Vec<Owned>,
    error: Option<CapsuleError>,
    finish: Result<(), CapsuleError>,
}

/// What an assembler made of a whole stream.
#[derive(Debug, PartialEq, Eq)]
struct Assembled {
    capsules: Vec<(u64, Vec<u8>)>,
    error: Option<CapsuleError>,
    finish: Result<(), CapsuleError>,
}

fn config(flags: u8) -> DecoderConfig {
    match flags & 0b11 {
        0 => DecoderConfig::CONNECT_UDP,
        1 => DecoderConfig::new(types::CONNECT_IP, 200),
        2 => DecoderConfig::new(types::CONNECT_IP, 16),
        _ => DecoderConfig::new(&[], 0),
    }
}

/// Decodes the stream in its chunking and in one piece, then assembles it both ways.
///
/// # Panics
///
/// When an invariant in the module documentation breaks.
pub fn run(data: &[u8]) {
    let Some(input) = Chunked::parse(data) else {
        return;
    };
    let config = config(input.flags);
    let chunks = input.chunks();
    let whole = [input.stream];

    let chunked = decode(config, &chunks);
    check_events(config, &chunked);
    assert_eq!(chunked, decode(config, &whole), "chunked vs one-shot");

    let vec_chunked = assemble(VecCapsuleAssembler::new(config), &chunks);
    assert_eq!(vec_chunked, capsules_of(&chunked), "VecCapsuleAssembler");
    assert_eq!(
        vec_chunked,
        assemble(VecCapsuleAssembler::new(config), &whole)
    );

    let capped = DecoderConfig::new(
        config.known_types,
        config.max_value_len.min(FIXED_CAPACITY as u64),
    );
    let expected = capsules_of(&decode(capped, &whole));
    let fixed = || CapsuleAssembler::<FIXED_CAPACITY>::new(config);
    assert_eq!(assemble(fixed(), &chunks), expected, "CapsuleAssembler");
    assert_eq!(assemble(fixed(), &whole), expected);

    for (capsule_type, value) in &vec_chunked.capsules {
        reencode_datagram(*capsule_type, value);
    }
}

fn decode(config: DecoderConfig, chunks: &[&[u8]]) -> Run {
    let mut decoder = Decoder::new(config);
    let mut events = Vec::new();
    let mut error = None;
    'stream: for chunk in chunks {
        let mut input = *chunk;
        loop {
            match decoder.decode(input) {
                Ok((used, event)) => {
                    assert!(used <= input.len(), "used {used} of {}", input.len());
                    input = &input[used..];
                    let Some(event) = event else {
                        assert!(input.is_empty(), "None with input left");
                        break;
                    };
                    push(&mut events, event);
                }
                Err(e) => {
                    assert_eq!(decoder.decode(input), Err(e), "errors are sticky");
                    assert_eq!(decoder.decode(&[]), Err(e), "errors are sticky");
                    error = Some(e);
                    break 'stream;
                }
            }
        }
    }
    Run {
        events,
        error,
        finish: decoder.finish(),
    }
}

fn push(events: &mut Vec<Owned>, event: Event<'_>) {
    match event {
        Event::Header {
            capsule_type,
            value_len,
        } => events.push(Owned::Header {
            capsule_type: capsule_type.into_inner(),
            value_len,
        }),
        Event::Value(chunk) => {
            assert!(!chunk.is_empty(), "empty value chunk");
            if let Some(Owned::Value(value)) = events.last_mut() {
                value.extend_from_slice(chunk);
            } else {
                events.push(Owned::Value(chunk.to_vec()));
            }
        }
        Event::End => events.push(Owned::End),
    }
}

/// Headers name known types within the maximum, values add up to their header's length,
/// and `finish` reports what the last capsule misses.
fn check_events(config: DecoderConfig, run: &Run) {
    let mut open: Option<(u64, u64, u64)> = None; // type, announced, received
    for event in &run.events {
        match (event, &mut open) {
            (
                Owned::Header {
                    capsule_type,
                    value_len,
                },
                None,
            ) => {
                let known = VarInt::new(*capsule_type).expect("a decoded type is a varint");
                assert!(config.known_types.contains(&known), "unknown type reported");
                assert!(*value_len <= config.max_value_len, "too long a capsule");
                open = Some((*capsule_type, *value_len, 0));
            }
            (Owned::Value(value), Some((_, announced, received))) => {
                *received += value.len() as u64;
                assert!(*received <= *announced, "value longer than announced");
            }
            (Owned::End, Some((_, announced, received))) => {
                assert_eq!(announced, received, "End before the value is complete");
                open = None;
            }
            (event, open) => panic!("{event:?} out of sequence ({open:?})"),
        }
    }
    if let Some(error) = run.error {
        assert_eq!(run.finish, Err(error));
        return;
    }
    match (open, run.finish) {
        (None, Ok(()) | Err(CapsuleError::TruncatedHeader)) => {}
        (Some((capsule_type, announced, received)), finish) => assert_eq!(
            finish,
            Err(CapsuleError::TruncatedValue {
                capsule_type: VarInt::new(capsule_type).expect("a decoded type is a varint"),
                missing: announced - received,
            })
        ),
        // Inside an unknown capsule, which is skipped without events.
        (None, Err(CapsuleError::TruncatedValue { capsule_type, .. }))
            if !config.known_types.contains(&capsule_type) => {}
        (None, finish) => panic!("finish between capsules: {finish:?}"),
    }
}

/// The whole capsules a decoder run delimits, as an assembler should yield them.
fn capsules_of(run: &Run) -> Assembled {
    let mut capsules = Vec::new();
    let mut current: Option<(u64, Vec<u8>)> = None;
    for event in &run.events {
        match event {
            Owned::Header { capsule_type, .. } => current = Some((*capsule_type, Vec::new())),
            Owned::Value(value) => {
                if let Some((_, buf)) = current.as_mut() {
                    buf.extend_from_slice(value);
                }
            }
            Owned::End => capsules.extend(current.take()),
        }
    }
    Assembled {
        capsules,
        error: run.error,
        finish: run.finish,
    }
}

/// The two assemblers, behind one interface.
trait Assembler {
    fn next<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Capsule<'a>>), CapsuleError>;
    fn finish(&self) -> Result<(), CapsuleError>;
}

impl<const N: usize> Assembler for CapsuleAssembler<N> {
    fn next<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Capsule<'a>>), CapsuleError> {
        self.decode(input)
    }
    fn finish(&self) -> Result<(), CapsuleError> {
        CapsuleAssembler::finish(self)
    }
}

impl Assembler for VecCapsuleAssembler {
    fn next<'a>(
        &'a mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Capsule<'a>>), CapsuleError> {
        self.decode(input)
    }
    fn finish(&self) -> Result<(), CapsuleError> {
        VecCapsuleAssembler::finish(self)
    }
}

fn assemble(mut assembler: impl Assembler, chunks: &[&[u8]]) -> Assembled {
    let mut capsules = Vec::new();
    let mut error = None;
    'stream: for chunk in chunks {
        let mut input = *chunk;
        loop {
            match assembler.next(input) {
                Ok((used, Some(capsule))) => {
                    assert!(used <= input.len(), "used {used} of {}", input.len());
                    capsules.push((capsule.capsule_type.into_inner(), capsule.value.to_vec()));
                    input = &input[used..];
                }
                Ok((used, None)) => {
                    assert_eq!(used, input.len(), "None with input left");
                    break;
                }
                Err(e) => {
                    error = Some(e);
                    break 'stream;
                }
            }
        }
    }
    Assembled {
        capsules,
        error,
        finish: assembler.finish(),
    }
}

/// A DATAGRAM capsule with a valid value re-encodes into one that assembles back to it.
fn reencode_datagram(capsule_type: u64, value: &[u8]) {
    let Ok(capsule_type) = VarInt::new(capsule_type) else {
        return;
    };
    let capsule = Capsule {
        capsule_type,
        value,
    };
    let Some(Ok(datagram)) = capsule.udp_datagram() else {
        return;
    };
    let mut out = vec![0; 2 * VarInt::MAX_LEN + value.len()];
    let len = encode_datagram(datagram.context_id, datagram.payload, &mut out)
        .expect("a decoded datagram re-encodes");
    let mut assembler = VecCapsuleAssembler::new(DecoderConfig::CONNECT_UDP);
    let (used, again) = assembler.decode(&out[..len]).expect("re-encoded capsule");
    assert_eq!(used, len);
    let again = again.expect("a whole capsule");
    assert_eq!(again.capsule_type, types::DATAGRAM);
    assert_eq!(again.udp_datagram(), Some(Ok(datagram)));
}
