//! `veil_proto::datagram`: every encoder's output demuxes back to what was encoded, the
//! three encoders agree byte for byte, and invalid stream IDs and short buffers are refused
//! with the right error.

use arbitrary::{Arbitrary, Unstructured};
use veil_proto::BufferTooSmall;
use veil_proto::datagram::{
    self, ContextDatagram, Demuxed, EncodeError, MAX_PREFIX_LEN, MAX_STREAM_ID,
    MAX_UDP_PAYLOAD_LEN, demux,
};
use veil_proto::varint::VarInt;

#[derive(Debug, Arbitrary)]
struct Input {
    /// Stream ID before the shift; any value, so that invalid ones are tried too.
    stream_id: u64,
    stream_shift: u8,
    context_id: u64,
    context_shift: u8,
    /// Spare headroom beyond the prefix for `encode_in_headroom`.
    spare: u8,
    payload: Vec<u8>,
}

/// Encodes an arbitrary datagram with each encoder and demuxes it back.
///
/// # Panics
///
/// When a datagram does not come back exactly or an encoder misreports.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let stream_id = input.stream_id >> (input.stream_shift % 64);
    let Ok(context_id) = VarInt::new(input.context_id >> (input.context_shift % 64)) else {
        return;
    };
    let payload = input.payload.as_slice();
    let mut out = vec![0; MAX_PREFIX_LEN + payload.len()];
    let len = match datagram::encode(stream_id, context_id, payload, &mut out) {
        Ok(len) => len,
        Err(e) => {
            check_refusal(stream_id, e);
            return;
        }
    };
    let expected = Demuxed {
        stream_id,
        context_id,
        payload,
    };
    assert_eq!(demux(&out[..len]), Ok(expected));
    let prefix = datagram::prefix_len(stream_id, context_id).expect("encode accepted it");
    assert_eq!(len, prefix + payload.len());
    assert_eq!(
        ContextDatagram::decode_udp(&out[prefix - context_id.encoded_len()..len])
            .map(|d| (d.context_id, d.payload)),
        Ok((context_id, payload))
    );

    let mut alone = [0; MAX_PREFIX_LEN];
    assert_eq!(
        datagram::encode_prefix(stream_id, context_id, &mut alone),
        Ok(prefix)
    );
    assert_eq!(alone[..prefix], out[..prefix]);

    let headroom = prefix + usize::from(input.spare);
    let mut buf = vec![0xee; headroom];
    buf.extend_from_slice(payload);
    let start = datagram::encode_in_headroom(&mut buf, headroom, stream_id, context_id)
        .expect("the headroom holds the prefix");
    assert_eq!(start, usize::from(input.spare));
    assert_eq!(buf[start..], out[..len]);

    if len > 0 {
        let short = datagram::encode(stream_id, context_id, payload, &mut out[..len - 1]);
        assert_eq!(
            short,
            Err(EncodeError::BufferTooSmall(BufferTooSmall {
                needed: len,
                available: len - 1
            }))
        );
    }
}

/// Only invalid stream IDs (and oversized UDP payloads) are refused, each with its own
/// error.
fn check_refusal(stream_id: u64, error: EncodeError) {
    match error {
        EncodeError::NotClientBidiStream(id) => {
            assert_eq!(id, stream_id);
            assert_ne!(stream_id % 4, 0);
        }
        EncodeError::StreamIdTooLarge(id) => {
            assert_eq!(id, stream_id);
            assert_eq!(stream_id % 4, 0);
            assert!(stream_id > MAX_STREAM_ID);
        }
        EncodeError::UdpPayloadTooLong(len) => assert!(len > MAX_UDP_PAYLOAD_LEN),
        e => panic!("refused stream {stream_id}: {e:?}"),
    }
}
