//! Property tests of HTTP/3 datagram encoding and demultiplexing.

use proptest::prelude::*;
use veil_proto::datagram::{
    self, ContextDatagram, DemuxError, Demuxed, EncodeError, H3Datagram, MAX_PREFIX_LEN,
    MAX_QUARTER_STREAM_ID, MAX_STREAM_ID,
};
use veil_proto::varint::VarInt;

fn stream_id() -> impl Strategy<Value = u64> {
    (0..=MAX_QUARTER_STREAM_ID).prop_map(|q| q * 4)
}

fn context_id() -> impl Strategy<Value = VarInt> {
    (0..=VarInt::MAX.into_inner()).prop_map(|v| VarInt::new(v).unwrap_or(VarInt::MAX))
}

proptest! {
    #[test]
    fn demux_inverts_encode(
        stream_id in stream_id(),
        context_id in context_id(),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut out = [0u8; 256];
        let len = datagram::encode(stream_id, context_id, &payload, &mut out)?;
        prop_assert_eq!(len, datagram::prefix_len(stream_id, context_id)? + payload.len());
        prop_assert_eq!(
            datagram::demux(&out[..len]),
            Ok(Demuxed { stream_id, context_id, payload: &payload })
        );
    }

    #[test]
    fn headroom_and_prefix_encoders_agree_with_encode(
        stream_id in stream_id(),
        context_id in context_id(),
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut plain = [0u8; 256];
        let len = datagram::encode(stream_id, context_id, &payload, &mut plain)?;

        let mut buf = vec![0u8; MAX_PREFIX_LEN + payload.len()];
        buf[MAX_PREFIX_LEN..].copy_from_slice(&payload);
        let start = datagram::encode_in_headroom(&mut buf, MAX_PREFIX_LEN, stream_id, context_id)?;
        prop_assert_eq!(&buf[start..], &plain[..len]);

        let mut prefix = [0u8; MAX_PREFIX_LEN];
        let prefix_len = datagram::encode_prefix(stream_id, context_id, &mut prefix)?;
        prop_assert_eq!(&prefix[..prefix_len], &plain[..len - payload.len()]);
    }

    #[test]
    fn only_client_bidi_stream_ids_encode(stream_id in any::<u64>()) {
        let result = datagram::prefix_len(stream_id, VarInt::ZERO);
        if stream_id % 4 != 0 {
            prop_assert_eq!(result, Err(EncodeError::NotClientBidiStream(stream_id)));
        } else if stream_id > MAX_STREAM_ID {
            prop_assert_eq!(result, Err(EncodeError::StreamIdTooLarge(stream_id)));
        } else {
            prop_assert!(result.is_ok());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
        match datagram::demux(&bytes) {
            Ok(d) => {
                prop_assert_eq!(d.stream_id % 4, 0);
                prop_assert!(d.stream_id <= MAX_STREAM_ID);
                prop_assert!(bytes.ends_with(d.payload));
            }
            Err(DemuxError::ContextIdTruncated { stream_id }) => {
                let h3 = H3Datagram::decode(&bytes);
                prop_assert_eq!(h3.map(|d| d.stream_id), Ok(stream_id));
            }
            Err(DemuxError::Frame(e)) => {
                prop_assert_eq!(H3Datagram::decode(&bytes), Err(e));
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        let _ = ContextDatagram::decode_udp(&bytes);
    }
}
