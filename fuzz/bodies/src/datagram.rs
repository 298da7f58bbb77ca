//! `veil_proto::datagram` on raw HTTP/3 DATAGRAM frame payloads.
//!
//! The three decoders agree with each other ([`demux`] is [`H3Datagram::decode`] then
//! [`ContextDatagram::decode`]), payloads are the tail of the input, and whatever demuxes
//! re-encodes, in its shortest form, to bytes that demux to the same datagram.

use veil_proto::datagram::{
    self, ContextDatagram, DemuxError, Demuxed, EncodeError, H3Datagram, MAX_PREFIX_LEN,
    MAX_STREAM_ID, MAX_UDP_PAYLOAD_LEN, PayloadError, UDP_PAYLOAD_CONTEXT_ID, demux,
};

/// Decodes `data` as a frame payload and as an HTTP datagram payload.
///
/// # Panics
///
/// When the decoders disagree or a re-encoding does not demux back.
pub fn run(data: &[u8]) {
    match (H3Datagram::decode(data), demux(data)) {
        (Ok(frame), Ok(demuxed)) => {
            assert_eq!(frame.stream_id, demuxed.stream_id);
            assert_eq!(frame.stream_id % 4, 0);
            assert!(frame.stream_id <= MAX_STREAM_ID);
            assert_eq!(frame.quarter_stream_id() * 4, frame.stream_id);
            let inner = ContextDatagram::decode(frame.payload).expect("demux found a Context ID");
            assert_eq!(inner.context_id, demuxed.context_id);
            assert_eq!(inner.payload, demuxed.payload);
            assert!(data.ends_with(demuxed.payload));
            reencode(data, demuxed);
        }
        (Ok(frame), Err(DemuxError::ContextIdTruncated { stream_id })) => {
            assert_eq!(stream_id, frame.stream_id);
            assert_eq!(
                ContextDatagram::decode(frame.payload),
                Err(PayloadError::ContextIdTruncated)
            );
        }
        (Err(frame), Err(DemuxError::Frame(e))) => assert_eq!(frame, e),
        other => panic!("H3Datagram::decode and demux disagree: {other:?}"),
    }
    check_udp_rule(data);
}

/// The shortest encoding of `demuxed` is no longer than `data` and demuxes back to it.
fn reencode(data: &[u8], demuxed: Demuxed<'_>) {
    let mut out = vec![0; MAX_PREFIX_LEN + demuxed.payload.len()];
    match datagram::encode(
        demuxed.stream_id,
        demuxed.context_id,
        demuxed.payload,
        &mut out,
    ) {
        Ok(len) => {
            let prefix = datagram::prefix_len(demuxed.stream_id, demuxed.context_id)
                .expect("encode accepted the stream");
            assert_eq!(len, prefix + demuxed.payload.len());
            assert!(len <= data.len(), "the shortest form is never longer");
            assert_eq!(demux(&out[..len]), Ok(demuxed));
        }
        Err(EncodeError::UdpPayloadTooLong(len)) => {
            assert_eq!(demuxed.context_id, UDP_PAYLOAD_CONTEXT_ID);
            assert!(len > MAX_UDP_PAYLOAD_LEN);
        }
        Err(e) => panic!("a demuxed datagram does not re-encode: {e:?}"),
    }
}

/// `decode_udp` is `decode` plus the UDP payload length rule for Context ID 0.
fn check_udp_rule(data: &[u8]) {
    let plain = ContextDatagram::decode(data);
    let udp = ContextDatagram::decode_udp(data);
    match plain {
        Ok(d)
            if d.context_id == UDP_PAYLOAD_CONTEXT_ID && d.payload.len() > MAX_UDP_PAYLOAD_LEN =>
        {
            assert_eq!(udp, Err(PayloadError::UdpPayloadTooLong(d.payload.len())));
        }
        _ => assert_eq!(udp, plain),
    }
}
