//! `veil_proto::capsule`: a stream of DATAGRAM capsules, with unknown capsules between
//! them, encoded and then assembled in an arbitrary chunking, gives back exactly the
//! datagrams; the header-only encoder agrees with the whole-capsule one.

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::Writer;
use veil_proto::capsule::{
    CapsuleAssembler, DecoderConfig, VecCapsuleAssembler, datagram_header_len, encode_datagram,
    encode_datagram_header, encode_header, types,
};
use veil_proto::datagram::{ContextDatagram, MAX_UDP_PAYLOAD_LEN, PayloadError};
use veil_proto::varint::VarInt;

use crate::chunks::split;

#[derive(Debug, Arbitrary)]
enum Item {
    Datagram {
        context_id: u64,
        shift: u8,
        payload: Vec<u8>,
    },
    /// A capsule CONNECT-UDP does not know, which the assemblers skip.
    Unknown {
        capsule_type: u64,
        shift: u8,
        value: Vec<u8>,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    items: Vec<Item>,
    /// Chunk sizes, cycled; 0 means 1.
    chunk_sizes: Vec<u8>,
}

/// Encodes the stream, assembles it back, and compares.
///
/// # Panics
///
/// When a datagram does not come back exactly.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for item in &input.items {
        match item {
            Item::Datagram {
                context_id,
                shift,
                payload,
            } => {
                let Ok(context_id) = VarInt::new(context_id >> (shift % 64)) else {
                    continue;
                };
                if payload.len() > MAX_UDP_PAYLOAD_LEN {
                    continue;
                }
                stream.extend_from_slice(&encode_one(context_id, payload));
                expected.push((context_id, payload.clone()));
            }
            Item::Unknown {
                capsule_type,
                shift,
                value,
            } => {
                let Ok(capsule_type) = VarInt::new(capsule_type >> (shift % 64)) else {
                    continue;
                };
                if capsule_type != types::DATAGRAM {
                    encode_unknown(capsule_type, value, &mut stream);
                }
            }
        }
    }
    let chunks = split(&stream, &input.chunk_sizes);
    assert_eq!(
        assemble_vec(&chunks),
        expected,
        "VecCapsuleAssembler, {chunks:02x?}"
    );
    let fits = |(context_id, payload): &(VarInt, Vec<u8>)| {
        context_id.encoded_len() + payload.len() <= FIXED_CAPACITY
    };
    if expected.iter().all(fits) {
        assert_eq!(
            assemble_fixed(&chunks),
            expected,
            "CapsuleAssembler, {chunks:02x?}"
        );
    }
}

/// One DATAGRAM capsule, written both ways, which must agree.
fn encode_one(context_id: VarInt, payload: &[u8]) -> Vec<u8> {
    let header_len = datagram_header_len(context_id, payload.len());
    let mut whole = vec![0; header_len + payload.len()];
    let len = encode_datagram(context_id, payload, &mut whole).expect("sized by header_len");
    assert_eq!(len, whole.len());
    let mut header = vec![0; header_len];
    assert_eq!(
        encode_datagram_header(context_id, payload.len(), &mut header),
        Ok(header_len)
    );
    assert_eq!(header, whole[..header_len]);
    assert!(encode_datagram(context_id, payload, &mut whole[..len - 1]).is_err());
    whole
}

fn encode_unknown(capsule_type: VarInt, value: &[u8], stream: &mut Vec<u8>) {
    let mut header = [0; 2 * VarInt::MAX_LEN];
    let mut writer = Writer::new(&mut header);
    let len = encode_header(capsule_type, value.len(), &mut writer).expect("16 bytes suffice");
    assert_eq!(writer.finish(), len);
    stream.extend_from_slice(&header[..len]);
    stream.extend_from_slice(value);
}

type Datagrams = Vec<(VarInt, Vec<u8>)>;

/// Capacity of the fixed assembler: libFuzzer's default 4 KiB inputs fit.
const FIXED_CAPACITY: usize = 4096;

fn assemble_vec(chunks: &[&[u8]]) -> Datagrams {
    let mut assembler = VecCapsuleAssembler::new(DecoderConfig::CONNECT_UDP);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let (used, capsule) = assembler.decode(input).expect("a valid stream");
            input = &input[used..];
            let Some(capsule) = capsule else { break };
            out.push(datagram(capsule.udp_datagram()));
        }
    }
    assert_eq!(assembler.finish(), Ok(()));
    out
}

fn assemble_fixed(chunks: &[&[u8]]) -> Datagrams {
    let mut assembler = CapsuleAssembler::<FIXED_CAPACITY>::new(DecoderConfig::CONNECT_UDP);
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let (used, capsule) = assembler.decode(input).expect("a valid stream");
            input = &input[used..];
            let Some(capsule) = capsule else { break };
            out.push(datagram(capsule.udp_datagram()));
        }
    }
    assert_eq!(assembler.finish(), Ok(()));
    out
}

fn datagram(decoded: Option<Result<ContextDatagram<'_>, PayloadError>>) -> (VarInt, Vec<u8>) {
    let datagram = decoded
        .expect("only DATAGRAM capsules are known")
        .expect("a valid DATAGRAM value");
    (datagram.context_id, datagram.payload.to_vec())
}
