//! Property tests of the capsule decoder and assemblers: any chunking of a stream, down to
//! one byte at a time, gives what one-shot decoding gives; arbitrary bytes never panic.

use proptest::prelude::*;
use veil_proto::Writer;
#[cfg(feature = "alloc")]
use veil_proto::capsule::VecCapsuleAssembler;
use veil_proto::capsule::{
    self, Capsule, CapsuleAssembler, CapsuleError, Decoder, DecoderConfig, Event, types,
};
use veil_proto::datagram::{ContextDatagram, UDP_PAYLOAD_CONTEXT_ID};
use veil_proto::varint::VarInt;

/// CONNECT-IP's known types, with a small maximum so that `TooLong` shows up.
const SMALL_IP: DecoderConfig = DecoderConfig::new(types::CONNECT_IP, 200);

/// An event with its value copied out, to compare runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Header(u64, u64),
    Value(Vec<u8>),
    End,
}

/// Everything a decoder reported over a run: events (adjacent value chunks merged, since
/// how a value is cut depends on the chunking) and how the run ended.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    events: Vec<Owned>,
    outcome: Result<(), CapsuleError>,
}

fn push_event(events: &mut Vec<Owned>, event: Event<'_>) {
    match (event, events.last_mut()) {
        (Event::Value(v), Some(Owned::Value(prev))) => prev.extend_from_slice(v),
        (Event::Value(v), _) => events.push(Owned::Value(v.to_vec())),
        (
            Event::Header {
                capsule_type,
                value_len,
            },
            _,
        ) => events.push(Owned::Header(capsule_type.into_inner(), value_len)),
        (Event::End, _) => events.push(Owned::End),
    }
}

/// Cuts `bytes` into pieces of the given sizes, cycling through them.
fn chunks<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fn decode_all(config: DecoderConfig, pieces: &[&[u8]]) -> Run {
    let mut decoder = Decoder::new(config);
    let mut events = Vec::new();
    for &piece in pieces {
        let mut input = piece;
        loop {
            match decoder.decode(input) {
                Err(e) => {
                    return Run {
                        events,
                        outcome: Err(e),
                    };
                }
                Ok((used, event)) => {
                    assert!(used <= input.len());
                    input = &input[used..];
                    let Some(event) = event else {
                        assert!(input.is_empty(), "None before the input was used up");
                        break;
                    };
                    if let Event::Value(v) = event {
                        assert!(!v.is_empty(), "empty value chunk");
                    }
                    push_event(&mut events, event);
                }
            }
        }
    }
    Run {
        events,
        outcome: decoder.finish(),
    }
}

/// Whole capsules as owned pairs, and how the run ended.
type Assembled = (Vec<(u64, Vec<u8>)>, Result<(), CapsuleError>);

fn assemble_heapless<const N: usize>(config: DecoderConfig, pieces: &[&[u8]]) -> Assembled {
    let mut assembler = CapsuleAssembler::<N>::new(config);
    let mut found = Vec::new();
    for &piece in pieces {
        let mut input = piece;
        loop {
            match assembler.decode(input) {
                Err(e) => return (found, Err(e)),
                Ok((used, capsule)) => {
                    input = &input[used..];
                    let Some(capsule) = capsule else { break };
                    found.push(owned(capsule));
                }
            }
        }
    }
    (found, assembler.finish())
}

#[cfg(feature = "alloc")]
fn assemble_vec(config: DecoderConfig, pieces: &[&[u8]]) -> Assembled {
    let mut assembler = VecCapsuleAssembler::new(config);
    let mut found = Vec::new();
    for &piece in pieces {
        let mut input = piece;
        loop {
            match assembler.decode(input) {
                Err(e) => return (found, Err(e)),
                Ok((used, capsule)) => {
                    input = &input[used..];
                    let Some(capsule) = capsule else { break };
                    found.push(owned(capsule));
                }
            }
        }
    }
    (found, assembler.finish())
}

fn owned(capsule: Capsule<'_>) -> (u64, Vec<u8>) {
    (capsule.capsule_type.into_inner(), capsule.value.to_vec())
}

/// Capsule types to draw from: the four CONNECT-IP types, a reserved (greasing) type and
/// unknown types with two- and eight-byte encodings.
fn capsule_type() -> impl Strategy<Value = u64> {
    prop::sample::select(&[0u64, 1, 2, 3, 0x17, 0x29 + 0x17, 0x3fff, 0x1_0000_0000][..])
}

fn capsules() -> impl Strategy<Value = Vec<(u64, Vec<u8>)>> {
    prop::collection::vec(
        (capsule_type(), prop::collection::vec(any::<u8>(), 0..300)),
        0..8,
    )
}

/// Encodes capsules back to back; returns the stream and the offsets where capsules end.
fn encode_stream(capsules: &[(u64, Vec<u8>)]) -> (Vec<u8>, Vec<usize>) {
    let mut stream = Vec::new();
    let mut boundaries = vec![0];
    for (capsule_type, value) in capsules {
        let mut header = [0u8; 16];
        let mut writer = Writer::new(&mut header);
        let Ok(capsule_type) = VarInt::new(*capsule_type) else {
            unreachable!("capsule_type() draws varints only")
        };
        let Ok(len) = capsule::encode_header(capsule_type, value.len(), &mut writer) else {
            unreachable!("a header fits in 16 bytes")
        };
        stream.extend_from_slice(&header[..len]);
        stream.extend_from_slice(value);
        boundaries.push(stream.len());
    }
    (stream, boundaries)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..64, 1..16)
}

proptest! {
    #[test]
    fn any_chunking_gives_the_one_shot_events(
        capsules in capsules(),
        sizes in chunk_sizes(),
    ) {
        let (stream, _) = encode_stream(&capsules);
        let one_shot = decode_all(SMALL_IP, &[&stream]);
        prop_assert_eq!(&decode_all(SMALL_IP, &chunks(&stream, &sizes)), &one_shot);
        prop_assert_eq!(&decode_all(SMALL_IP, &chunks(&stream, &[1])), &one_shot);
    }

    #[test]
    fn decoder_reports_known_capsules_and_nothing_else(capsules in capsules()) {
        let config = DecoderConfig::new(types::CONNECT_IP, 300);
        let (stream, _) = encode_stream(&capsules);
        let mut expected = Vec::new();
        for (capsule_type, value) in capsules.iter().filter(|(t, _)| *t <= 3) {
            expected.push(Owned::Header(*capsule_type, value.len() as u64));
            if !value.is_empty() {
                expected.push(Owned::Value(value.clone()));
            }
            expected.push(Owned::End);
        }
        prop_assert_eq!(decode_all(config, &[&stream]), Run { events: expected, outcome: Ok(()) });
    }

    #[test]
    fn assemblers_yield_the_known_capsules_in_any_chunking(
        capsules in capsules(),
        sizes in chunk_sizes(),
    ) {
        let config = DecoderConfig::new(types::CONNECT_IP, 300);
        let (stream, _) = encode_stream(&capsules);
        let known: Vec<_> = capsules.iter().filter(|(t, _)| *t <= 3).cloned().collect();
        let expected = (known, Ok(()));
        let pieces = chunks(&stream, &sizes);
        prop_assert_eq!(&assemble_heapless::<300>(config, &[&stream]), &expected);
        prop_assert_eq!(&assemble_heapless::<300>(config, &pieces), &expected);
        prop_assert_eq!(&assemble_heapless::<300>(config, &chunks(&stream, &[1])), &expected);
        #[cfg(feature = "alloc")]
        prop_assert_eq!(&assemble_vec(config, &pieces), &expected);
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn assemblers_agree_with_each_other_on_errors(
        capsules in capsules(),
        sizes in chunk_sizes(),
    ) {
        let (stream, _) = encode_stream(&capsules);
        let one_shot = assemble_vec(SMALL_IP, &[&stream]);
        prop_assert_eq!(&assemble_heapless::<200>(SMALL_IP, &chunks(&stream, &sizes)), &one_shot);
        prop_assert_eq!(&assemble_vec(SMALL_IP, &chunks(&stream, &sizes)), &one_shot);
    }

    #[test]
    fn a_stream_cut_inside_a_capsule_is_truncated(
        capsules in capsules(),
        cut in any::<prop::sample::Index>(),
    ) {
        let config = DecoderConfig::new(types::CONNECT_IP, 300);
        let (stream, boundaries) = encode_stream(&capsules);
        let cut = cut.index(stream.len() + 1);
        let outcome = decode_all(config, &[&stream[..cut]]).outcome;
        if boundaries.contains(&cut) {
            prop_assert_eq!(outcome, Ok(()));
        } else {
            prop_assert!(matches!(
                outcome,
                Err(CapsuleError::TruncatedHeader | CapsuleError::TruncatedValue { .. })
            ), "{:?}", outcome);
        }
    }

    #[test]
    fn arbitrary_bytes_in_any_chunking_never_panic_and_agree(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        sizes in chunk_sizes(),
    ) {
        let one_shot = decode_all(SMALL_IP, &[&bytes]);
        prop_assert_eq!(&decode_all(SMALL_IP, &chunks(&bytes, &sizes)), &one_shot);
        let assembled = assemble_heapless::<200>(SMALL_IP, &[&bytes]);
        prop_assert_eq!(&assemble_heapless::<200>(SMALL_IP, &chunks(&bytes, &sizes)), &assembled);
        #[cfg(feature = "alloc")]
        prop_assert_eq!(&assemble_vec(SMALL_IP, &chunks(&bytes, &sizes)), &assembled);
    }

    #[test]
    fn datagram_capsules_round_trip(
        context_id in 0..=VarInt::MAX.into_inner(),
        payload in prop::collection::vec(any::<u8>(), 0..600),
        sizes in chunk_sizes(),
    ) {
        let context_id = VarInt::new(context_id)?;
        let mut out = vec![0u8; 700];
        let len = capsule::encode_datagram(context_id, &payload, &mut out)?;
        prop_assert_eq!(len, capsule::datagram_header_len(context_id, payload.len()) + payload.len());

        let mut split = vec![0u8; 700];
        let header = capsule::encode_datagram_header(context_id, payload.len(), &mut split)?;
        split[header..header + payload.len()].copy_from_slice(&payload);
        prop_assert_eq!(&split[..len], &out[..len]);

        let (found, outcome) =
            assemble_heapless::<700>(DecoderConfig::CONNECT_UDP, &chunks(&out[..len], &sizes));
        prop_assert_eq!(outcome, Ok(()));
        prop_assert_eq!(found.len(), 1);
        let capsule = Capsule { capsule_type: VarInt::new(found[0].0)?, value: &found[0].1 };
        prop_assert_eq!(
            capsule.udp_datagram(),
            Some(Ok(ContextDatagram { context_id, payload: &payload }))
        );
    }
}

#[test]
fn udp_payload_of_the_maximal_length_fits_the_connect_udp_limit() {
    let payload = vec![0xa5; veil_proto::datagram::MAX_UDP_PAYLOAD_LEN];
    let mut out = vec![0u8; payload.len() + 8];
    let len = capsule::encode_datagram(UDP_PAYLOAD_CONTEXT_ID, &payload, &mut out).unwrap();
    let (found, outcome) =
        assemble_heapless::<65_535>(DecoderConfig::CONNECT_UDP, &chunks(&out[..len], &[1500]));
    assert_eq!(outcome, Ok(()));
    assert_eq!(found, [(0, [&[0x00][..], &payload].concat())]);
}
