//! HTTP Datagram payloads (RFC 9297 §2.1) and the CONNECT-UDP Context ID (RFC 9298 §5).
//!
//! A QUIC DATAGRAM frame on an HTTP/3 connection carries one HTTP Datagram; for CONNECT-UDP
//! (and CONNECT-IP, RFC 9484, which reuses the shape) the HTTP Datagram Payload starts with a
//! Context ID:
//!
//! ```text
//! HTTP/3 Datagram {                    // RFC 9297 §2.1
//!   Quarter Stream ID (i),
//!   HTTP Datagram Payload (..),        // RFC 9298 §5:
//! }                                    //   Context ID (i),
//!                                      //   UDP Proxying Payload (..),
//! ```
//!
//! **Receive**: [`demux`] splits a QUIC DATAGRAM frame payload into stream ID, Context ID and
//! payload in one call, borrowing the input. [`H3Datagram`] and [`ContextDatagram`] decode
//! the two layers separately.
//!
//! **Send**: the engine keeps [`MAX_PREFIX_LEN`] bytes of headroom in front of every UDP
//! payload it reads and calls [`encode_in_headroom`], which writes the prefix right before
//! the payload: no copy of the payload is ever made. [`prefix_len`] and [`encode_prefix`]
//! serve callers with other layouts; [`encode`] writes prefix and payload into a caller
//! buffer.

use core::fmt;

use crate::cursor::{Reader, Writer};
use crate::error::BufferTooSmall;
use crate::varint::VarInt;

/// The HTTP/3 error code `H3_DATAGRAM_ERROR` (RFC 9297 §2.1): what the engine closes the
/// connection with when [`H3Datagram::decode`] fails.
pub const H3_DATAGRAM_ERROR: u64 = 0x33;

//# RFC 9297 §2.1: "The largest legal QUIC stream ID value is 2^62-1, so the largest legal
//# value of the Quarter Stream ID field is 2^60-1."
/// The largest legal Quarter Stream ID, 2^60 − 1.
pub const MAX_QUARTER_STREAM_ID: u64 = (1 << 60) - 1;

/// The largest client-initiated bidirectional stream ID, 2^62 − 4: the largest stream ID an
/// HTTP Datagram can name.
pub const MAX_STREAM_ID: u64 = MAX_QUARTER_STREAM_ID * 4;

//# RFC 9298 §5: "UDP packets are encoded using HTTP Datagrams with the Context ID field set
//# to zero."
/// The Context ID whose payload is a whole UDP payload (RFC 9298 §4).
pub const UDP_PAYLOAD_CONTEXT_ID: VarInt = VarInt::ZERO;

//# RFC 9298 §5: "By virtue of the definition of the UDP header [UDP], it is not possible to
//# encode UDP payloads longer than 65527 bytes. Therefore, endpoints MUST NOT send HTTP
//# Datagrams with a UDP Proxying Payload field longer than 65527 using Context ID zero."
/// The longest UDP payload CONNECT-UDP can carry with Context ID 0, 65527 bytes.
pub const MAX_UDP_PAYLOAD_LEN: usize = 65_527;

/// The longest prefix (Quarter Stream ID and Context ID) any datagram needs: the headroom
/// to keep in front of a payload for [`encode_in_headroom`].
pub const MAX_PREFIX_LEN: usize = 2 * VarInt::MAX_LEN;

/// An HTTP/3 Datagram: the payload of one QUIC DATAGRAM frame (RFC 9297 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H3Datagram<'a> {
    /// The client-initiated bidirectional stream the datagram belongs to (Quarter Stream
    /// ID × 4).
    pub stream_id: u64,
    /// The HTTP Datagram Payload; may be empty.
    pub payload: &'a [u8],
}

impl<'a> H3Datagram<'a> {
    /// Decodes a QUIC DATAGRAM frame payload, borrowing the HTTP Datagram Payload from it.
    ///
    /// Every error is an HTTP/3 connection error of type [`H3_DATAGRAM_ERROR`].
    pub fn decode(frame_payload: &'a [u8]) -> Result<Self, H3DatagramError> {
        let mut reader = Reader::new(frame_payload);
        //# RFC 9297 §2.1: "Receipt of a QUIC DATAGRAM frame whose payload is too short to
        //# allow parsing the Quarter Stream ID field MUST be treated as an HTTP/3 connection
        //# error of type H3_DATAGRAM_ERROR (0x33)."
        let quarter = reader
            .varint()
            .map_err(|_| H3DatagramError::QuarterStreamIdTruncated)?
            .into_inner();
        //# RFC 9297 §2.1: "Receipt of an HTTP/3 Datagram that includes a larger value MUST be
        //# treated as an HTTP/3 connection error of type H3_DATAGRAM_ERROR (0x33)."
        if quarter > MAX_QUARTER_STREAM_ID {
            return Err(H3DatagramError::QuarterStreamIdTooLarge(quarter));
        }
        Ok(Self {
            stream_id: quarter * 4,
            payload: reader.take_rest(),
        })
    }

    /// The Quarter Stream ID as it appears on the wire.
    pub const fn quarter_stream_id(&self) -> u64 {
        self.stream_id / 4
    }
}

/// Why a QUIC DATAGRAM frame payload is not an HTTP/3 Datagram.
///
/// RFC 9297 §2.1 makes both an HTTP/3 connection error of type [`H3_DATAGRAM_ERROR`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum H3DatagramError {
    /// The frame payload is empty or ends inside the Quarter Stream ID.
    QuarterStreamIdTruncated,
    /// The Quarter Stream ID is above 2^60 − 1.
    QuarterStreamIdTooLarge(u64),
}

impl fmt::Display for H3DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::QuarterStreamIdTruncated => {
                f.write_str("HTTP/3 datagram too short for its Quarter Stream ID")
            }
            Self::QuarterStreamIdTooLarge(q) => {
                write!(f, "Quarter Stream ID {q} is above 2^60-1")
            }
        }
    }
}

impl core::error::Error for H3DatagramError {}

/// An HTTP Datagram Payload split into its Context ID and the rest (RFC 9298 §5; CONNECT-IP
/// uses the same shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextDatagram<'a> {
    /// The Context ID; [`UDP_PAYLOAD_CONTEXT_ID`] for a UDP payload.
    pub context_id: VarInt,
    /// What follows the Context ID; may be empty.
    pub payload: &'a [u8],
}

impl<'a> ContextDatagram<'a> {
    /// Splits an HTTP Datagram Payload, borrowing the payload from it.
    ///
    /// Checks nothing about the payload, so it serves CONNECT-UDP and CONNECT-IP alike; see
    /// [`ContextDatagram::decode_udp`] for the CONNECT-UDP length rule.
    pub fn decode(http_payload: &'a [u8]) -> Result<Self, PayloadError> {
        let mut reader = Reader::new(http_payload);
        let context_id = reader
            .varint()
            .map_err(|_| PayloadError::ContextIdTruncated)?;
        Ok(Self {
            context_id,
            payload: reader.take_rest(),
        })
    }

    /// Splits the HTTP Datagram Payload of a CONNECT-UDP stream and applies RFC 9298 §5's
    /// length rule to Context ID 0.
    ///
    /// Either error means: abort the stream.
    pub fn decode_udp(http_payload: &'a [u8]) -> Result<Self, PayloadError> {
        let datagram = Self::decode(http_payload)?;
        //# RFC 9298 §5: "An endpoint that receives an HTTP Datagram using Context ID zero
        //# whose UDP Proxying Payload field is longer than 65527 MUST abort the
        //# corresponding stream."
        if exceeds_udp_limit(datagram.context_id, datagram.payload.len()) {
            return Err(PayloadError::UdpPayloadTooLong(datagram.payload.len()));
        }
        Ok(datagram)
    }
}

/// Why an HTTP Datagram Payload is unusable for CONNECT-UDP; the engine aborts the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The payload is empty or ends inside the Context ID.
    ContextIdTruncated,
    /// A Context ID 0 payload longer than [`MAX_UDP_PAYLOAD_LEN`]; holds its length.
    UdpPayloadTooLong(usize),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ContextIdTruncated => f.write_str("HTTP datagram too short for its Context ID"),
            Self::UdpPayloadTooLong(len) => write!(
                f,
                "UDP payload of {len} bytes exceeds the {MAX_UDP_PAYLOAD_LEN}-byte limit"
            ),
        }
    }
}

impl core::error::Error for PayloadError {}

/// A QUIC DATAGRAM frame payload taken apart: which stream, which context, what payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demuxed<'a> {
    /// The client-initiated bidirectional stream the datagram belongs to.
    pub stream_id: u64,
    /// The Context ID; [`UDP_PAYLOAD_CONTEXT_ID`] for a UDP payload.
    pub context_id: VarInt,
    /// The payload after the Context ID, borrowed from the frame; may be empty.
    pub payload: &'a [u8],
}

/// Takes a QUIC DATAGRAM frame payload apart in one call, without copying: the engine's
/// receive path.
///
/// The payload length is not checked against [`MAX_UDP_PAYLOAD_LEN`]: this function does not
/// know whether the stream is CONNECT-UDP or CONNECT-IP, and a payload that rode in a QUIC
/// DATAGRAM frame is always shorter than that limit, since the frame, a QUIC header and an
/// AEAD tag fit in one UDP payload of at most 65527 bytes.
pub fn demux(frame_payload: &[u8]) -> Result<Demuxed<'_>, DemuxError> {
    let datagram = H3Datagram::decode(frame_payload).map_err(DemuxError::Frame)?;
    let inner =
        ContextDatagram::decode(datagram.payload).map_err(|_| DemuxError::ContextIdTruncated {
            stream_id: datagram.stream_id,
        })?;
    Ok(Demuxed {
        stream_id: datagram.stream_id,
        context_id: inner.context_id,
        payload: inner.payload,
    })
}

/// Why [`demux`] failed, and at which scope the engine must react.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DemuxError {
    /// The frame is not an HTTP/3 Datagram: close the connection with
    /// [`H3_DATAGRAM_ERROR`].
    Frame(H3DatagramError),
    /// The HTTP Datagram Payload of `stream_id` has no complete Context ID: a malformed
    /// datagram for that stream only.
    ContextIdTruncated {
        /// The stream the datagram named.
        stream_id: u64,
    },
}

impl fmt::Display for DemuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::ContextIdTruncated { stream_id } => write!(
                f,
                "HTTP datagram for stream {stream_id} too short for its Context ID"
            ),
        }
    }
}

impl core::error::Error for DemuxError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Frame(e) => Some(e),
            Self::ContextIdTruncated { .. } => None,
        }
    }
}

/// Bytes of the prefix (Quarter Stream ID, Context ID) in front of a payload for
/// `stream_id` and `context_id`.
pub fn prefix_len(stream_id: u64, context_id: VarInt) -> Result<usize, EncodeError> {
    Ok(quarter_stream_id(stream_id)?.encoded_len() + context_id.encoded_len())
}

/// Writes the prefix (Quarter Stream ID, Context ID) at the front of `out` and returns its
/// length; the payload goes right after it.
///
/// Checks the stream ID only: the caller owns the payload and its length.
pub fn encode_prefix(
    stream_id: u64,
    context_id: VarInt,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let quarter = quarter_stream_id(stream_id)?;
    let mut writer = Writer::new(out);
    write_prefix(&mut writer, quarter, context_id)?;
    Ok(writer.finish())
}

/// Turns a payload sitting after `headroom` bytes of `buf` into a QUIC DATAGRAM frame
/// payload in place, by writing the prefix into the end of the headroom.
///
/// `buf` is the headroom followed by exactly the payload. Returns where the datagram starts:
/// it is `buf[start..]`. Keeping [`MAX_PREFIX_LEN`] bytes of headroom always suffices.
pub fn encode_in_headroom(
    buf: &mut [u8],
    headroom: usize,
    stream_id: u64,
    context_id: VarInt,
) -> Result<usize, EncodeError> {
    let quarter = quarter_stream_id(stream_id)?;
    let available = buf.len();
    let (room, payload) = buf.split_at_mut_checked(headroom).ok_or(BufferTooSmall {
        needed: headroom,
        available,
    })?;
    check_udp_payload(context_id, payload.len())?;
    let prefix = quarter.encoded_len() + context_id.encoded_len();
    let start = headroom.checked_sub(prefix).ok_or(BufferTooSmall {
        needed: prefix + payload.len(),
        available,
    })?;
    let mut writer = Writer::new(room.get_mut(start..).unwrap_or_default());
    write_prefix(&mut writer, quarter, context_id)?;
    Ok(start)
}

/// Writes a whole QUIC DATAGRAM frame payload (prefix then `payload`) into `out` and returns
/// its length.
pub fn encode(
    stream_id: u64,
    context_id: VarInt,
    payload: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let quarter = quarter_stream_id(stream_id)?;
    check_udp_payload(context_id, payload.len())?;
    let mut writer = Writer::new(out);
    writer.reserve(quarter.encoded_len() + context_id.encoded_len() + payload.len())?;
    write_prefix(&mut writer, quarter, context_id)?;
    writer.bytes(payload)?;
    Ok(writer.finish())
}

/// Why a datagram could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The stream ID is not a multiple of 4, so not a client-initiated bidirectional stream:
    /// HTTP Datagrams belong to requests, which only those streams carry.
    NotClientBidiStream(u64),
    /// The stream ID is above [`MAX_STREAM_ID`].
    StreamIdTooLarge(u64),
    /// A Context ID 0 payload longer than [`MAX_UDP_PAYLOAD_LEN`]; holds its length.
    UdpPayloadTooLong(usize),
    /// The output (or the headroom) is too small.
    BufferTooSmall(BufferTooSmall),
}

impl From<BufferTooSmall> for EncodeError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotClientBidiStream(id) => write!(
                f,
                "stream {id} is not client-initiated bidirectional (not a multiple of 4)"
            ),
            Self::StreamIdTooLarge(id) => write!(f, "stream ID {id} is above 2^62-4"),
            Self::UdpPayloadTooLong(len) => write!(
                f,
                "UDP payload of {len} bytes exceeds the {MAX_UDP_PAYLOAD_LEN}-byte limit"
            ),
            Self::BufferTooSmall(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::BufferTooSmall(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether a payload of `len` bytes breaks RFC 9298 §5's limit for `context_id`.
pub(crate) fn exceeds_udp_limit(context_id: VarInt, len: usize) -> bool {
    context_id == UDP_PAYLOAD_CONTEXT_ID && len > MAX_UDP_PAYLOAD_LEN
}

fn check_udp_payload(context_id: VarInt, len: usize) -> Result<(), EncodeError> {
    if exceeds_udp_limit(context_id, len) {
        return Err(EncodeError::UdpPayloadTooLong(len));
    }
    Ok(())
}

/// The Quarter Stream ID naming `stream_id`, which must be client-initiated bidirectional.
fn quarter_stream_id(stream_id: u64) -> Result<VarInt, EncodeError> {
    if stream_id % 4 != 0 {
        return Err(EncodeError::NotClientBidiStream(stream_id));
    }
    if stream_id > MAX_STREAM_ID {
        return Err(EncodeError::StreamIdTooLarge(stream_id));
    }
    VarInt::new(stream_id / 4).map_err(|_| EncodeError::StreamIdTooLarge(stream_id))
}

fn write_prefix(
    writer: &mut Writer<'_>,
    quarter: VarInt,
    context_id: VarInt,
) -> Result<(), BufferTooSmall> {
    writer.reserve(quarter.encoded_len() + context_id.encoded_len())?;
    writer.varint(quarter)?;
    writer.varint(context_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vi(v: u64) -> VarInt {
        VarInt::new(v).unwrap()
    }

    #[test]
    fn demuxes_a_one_byte_prefixed_udp_datagram() {
        let frame = [
            0x01, // Quarter Stream ID 1 -> stream 4
            0x00, // Context ID 0: a UDP payload
            0xa1, 0xa2, 0xa3, // UDP payload
        ];
        assert_eq!(
            demux(&frame),
            Ok(Demuxed {
                stream_id: 4,
                context_id: UDP_PAYLOAD_CONTEXT_ID,
                payload: &[0xa1, 0xa2, 0xa3],
            })
        );
    }

    #[test]
    fn accepts_non_minimal_varints_and_empty_payloads() {
        let frame = [
            0x40, 0x02, // Quarter Stream ID 2 on two bytes -> stream 8
            0x80, 0x00, 0x00, 0x05, // Context ID 5 on four bytes
        ];
        assert_eq!(
            demux(&frame),
            Ok(Demuxed {
                stream_id: 8,
                context_id: vi(5),
                payload: &[],
            })
        );
    }

    #[test]
    fn largest_quarter_stream_id_is_accepted() {
        let frame = [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2a];
        let datagram = H3Datagram::decode(&frame).unwrap();
        assert_eq!(datagram.stream_id, MAX_STREAM_ID);
        assert_eq!(datagram.quarter_stream_id(), MAX_QUARTER_STREAM_ID);
        assert_eq!(datagram.payload, &[0x2a]);
    }

    #[test]
    fn quarter_stream_id_above_2_pow_60_is_rejected() {
        // 0xd0 00.. = 2^60, the first illegal value.
        let frame = [0xd0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            H3Datagram::decode(&frame),
            Err(H3DatagramError::QuarterStreamIdTooLarge(1 << 60))
        );
        assert_eq!(
            demux(&[0xff; 9]),
            Err(DemuxError::Frame(H3DatagramError::QuarterStreamIdTooLarge(
                VarInt::MAX.into_inner()
            )))
        );
    }

    #[test]
    fn too_short_frames_are_rejected() {
        for frame in [&[][..], &[0x40], &[0x80, 0, 0], &[0xc0, 0, 0, 0, 0, 0, 0]] {
            assert_eq!(
                H3Datagram::decode(frame),
                Err(H3DatagramError::QuarterStreamIdTruncated),
                "{frame:02x?}"
            );
        }
    }

    #[test]
    fn missing_context_id_names_the_stream() {
        assert_eq!(
            demux(&[0x02]),
            Err(DemuxError::ContextIdTruncated { stream_id: 8 })
        );
        assert_eq!(
            demux(&[0x02, 0x40]),
            Err(DemuxError::ContextIdTruncated { stream_id: 8 })
        );
        assert_eq!(
            ContextDatagram::decode(&[]),
            Err(PayloadError::ContextIdTruncated)
        );
    }

    #[test]
    fn udp_length_rule_applies_to_context_zero_only() {
        let mut payload = std::vec![0u8; MAX_UDP_PAYLOAD_LEN + 2];
        payload[0] = 0x00; // Context ID 0, then 65528 bytes
        assert_eq!(
            ContextDatagram::decode_udp(&payload),
            Err(PayloadError::UdpPayloadTooLong(MAX_UDP_PAYLOAD_LEN + 1))
        );
        assert!(ContextDatagram::decode_udp(&payload[..payload.len() - 1]).is_ok());
        payload[0] = 0x02; // Context ID 2: not a UDP payload, no limit
        assert!(ContextDatagram::decode_udp(&payload).is_ok());
    }

    #[test]
    fn encodes_prefix_and_payload() {
        let mut out = [0; 8];
        let len = encode(4, UDP_PAYLOAD_CONTEXT_ID, &[0xa1, 0xa2], &mut out).unwrap();
        assert_eq!(&out[..len], &[0x01, 0x00, 0xa1, 0xa2]);
        // Stream 256 -> Quarter Stream ID 64, which needs two bytes.
        let len = encode(256, vi(1), &[], &mut out).unwrap();
        assert_eq!(&out[..len], &[0x40, 0x40, 0x01]);
    }

    #[test]
    fn rejects_streams_that_cannot_carry_datagrams() {
        let mut out = [0; 32];
        for id in [1, 2, 3, 6] {
            assert_eq!(
                encode(id, VarInt::ZERO, &[], &mut out),
                Err(EncodeError::NotClientBidiStream(id))
            );
        }
        assert_eq!(
            prefix_len(MAX_STREAM_ID + 4, VarInt::ZERO),
            Err(EncodeError::StreamIdTooLarge(MAX_STREAM_ID + 4))
        );
        assert_eq!(prefix_len(MAX_STREAM_ID, VarInt::MAX), Ok(MAX_PREFIX_LEN));
    }

    #[test]
    fn rejects_oversized_udp_payloads() {
        let payload = std::vec![0u8; MAX_UDP_PAYLOAD_LEN + 1];
        let mut out = std::vec![0u8; MAX_UDP_PAYLOAD_LEN + 8];
        assert_eq!(
            encode(0, UDP_PAYLOAD_CONTEXT_ID, &payload, &mut out),
            Err(EncodeError::UdpPayloadTooLong(MAX_UDP_PAYLOAD_LEN + 1))
        );
        assert_eq!(
            encode(0, UDP_PAYLOAD_CONTEXT_ID, &payload[1..], &mut out),
            Ok(MAX_UDP_PAYLOAD_LEN + 2)
        );
    }

    #[test]
    fn encode_reports_the_whole_size_needed() {
        let mut out = [0; 3];
        assert_eq!(
            encode(4, VarInt::ZERO, &[1, 2], &mut out),
            Err(EncodeError::BufferTooSmall(BufferTooSmall {
                needed: 4,
                available: 3
            }))
        );
        assert_eq!(out, [0; 3], "nothing written on failure");
        assert_eq!(
            encode_prefix(256, VarInt::ZERO, &mut out[..2]),
            Err(EncodeError::BufferTooSmall(BufferTooSmall {
                needed: 3,
                available: 2
            }))
        );
    }

    #[test]
    fn headroom_prefix_lands_right_before_the_payload() {
        let mut buf = [0xee; MAX_PREFIX_LEN + 2];
        buf[MAX_PREFIX_LEN..].copy_from_slice(&[0xa1, 0xa2]);
        let start = encode_in_headroom(&mut buf, MAX_PREFIX_LEN, 256, VarInt::ZERO).unwrap();
        assert_eq!(start, MAX_PREFIX_LEN - 3);
        assert_eq!(&buf[start..], &[0x40, 0x40, 0x00, 0xa1, 0xa2]);
        assert!(
            buf[..start].iter().all(|&b| b == 0xee),
            "headroom untouched"
        );
    }

    #[test]
    fn headroom_too_small_is_an_error() {
        let mut buf = [0; 4];
        assert_eq!(
            encode_in_headroom(&mut buf, 1, 256, VarInt::ZERO),
            Err(EncodeError::BufferTooSmall(BufferTooSmall {
                needed: 6,
                available: 4
            }))
        );
        assert_eq!(
            encode_in_headroom(&mut buf, 5, 0, VarInt::ZERO),
            Err(EncodeError::BufferTooSmall(BufferTooSmall {
                needed: 5,
                available: 4
            }))
        );
        assert_eq!(buf, [0; 4]);
    }
}
