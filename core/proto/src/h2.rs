//! HTTP/2 framing (RFC 9113 §4 and §6), for the on-ramp that carries CONNECT tunnels over
//! TCP+TLS where UDP is blocked.
//!
//! ```text
//! HTTP Frame {
//!   Length (24),
//!   Type (8),
//!   Flags (8),
//!   Reserved (1),
//!   Stream Identifier (31),
//!   Frame Payload (..),
//! }
//! ```
//!
//! - [`decode`] reads one whole frame from the front of a buffer into a borrowed [`Frame`],
//!   after checking every rule RFC 9113 §6 puts on the frame by itself (lengths, stream 0,
//!   padding, setting values). It says how many bytes a frame needs once its header is
//!   there ([`FrameError::Truncated`]), refuses a frame longer than our
//!   `SETTINGS_MAX_FRAME_SIZE` before its payload is buffered, and says whether a violation
//!   is a connection error or a stream error, with its [`ErrorCode`].
//! - [`Frame::encode`], [`encode_settings`] and [`encode_data_header`] write frames into a
//!   caller buffer.
//!
//! Rules that need connection state (stream states, flow-control windows, header blocks
//! across CONTINUATION frames, HPACK) are the session's, in veil-engine.

mod decode;
mod encode;
mod types;

pub use decode::{FrameError, decode};
pub use encode::{EncodeError, encode_data_header, encode_settings};
pub use types::{ErrorCode, SettingId, Settings, SettingsIter};

/// The length of every frame header.
pub const FRAME_HEADER_LEN: usize = 9;

/// What a client sends first, before its SETTINGS frame.
//# RFC 9113 §3.4: "the connection preface starts with the string
//# PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n."
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `SETTINGS_MAX_FRAME_SIZE` before a peer says otherwise, and its smallest legal value.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// The largest legal `SETTINGS_MAX_FRAME_SIZE`: the 24-bit length field's maximum.
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

/// `SETTINGS_INITIAL_WINDOW_SIZE` and the connection window before any change.
pub const DEFAULT_WINDOW_SIZE: u32 = 65_535;

/// The largest flow-control window, and the largest stream identifier.
pub const MAX_WINDOW_SIZE: u32 = (1 << 31) - 1;

/// Frame types (RFC 9113 §6; §11.2).
pub mod frame_type {
    /// DATA (§6.1).
    pub const DATA: u8 = 0x0;
    /// HEADERS (§6.2).
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY (§6.3).
    pub const PRIORITY: u8 = 0x2;
    /// `RST_STREAM` (§6.4).
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS (§6.5).
    pub const SETTINGS: u8 = 0x4;
    /// `PUSH_PROMISE` (§6.6).
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING (§6.7).
    pub const PING: u8 = 0x6;
    /// GOAWAY (§6.8).
    pub const GOAWAY: u8 = 0x7;
    /// `WINDOW_UPDATE` (§6.9).
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION (§6.10).
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6). Each is defined only for some frame types.
pub mod flags {
    /// DATA, HEADERS: the last frame the sender sends on this stream.
    pub const END_STREAM: u8 = 0x01;
    /// SETTINGS, PING: an acknowledgement.
    pub const ACK: u8 = 0x01;
    /// HEADERS, `PUSH_PROMISE`, CONTINUATION: the field block ends in this frame.
    pub const END_HEADERS: u8 = 0x04;
    /// DATA, HEADERS, `PUSH_PROMISE`: a Pad Length byte and padding are present.
    pub const PADDED: u8 = 0x08;
    /// HEADERS: the deprecated priority fields are present.
    pub const PRIORITY: u8 = 0x20;
}

/// A frame's fixed 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub length: u32,
    /// Frame type; see [`frame_type`].
    pub frame_type: u8,
    /// Type-specific flags; see [`flags`].
    pub flags: u8,
    /// Stream identifier (31 bits; 0 is the connection).
    pub stream_id: u32,
}

impl FrameHeader {
    /// Reads a frame header from the front of `input`.
    //# RFC 9113 §4.1: "The semantics of this bit are undefined, and the bit MUST remain
    //# unset (0x00) when sending and MUST be ignored when receiving."
    pub fn decode(input: &[u8]) -> Result<Self, crate::Truncated> {
        let mut reader = crate::Reader::new(input);
        let [l0, l1, l2, frame_type, flags] = reader.array()?;
        let stream_id = reader.u32()? & MAX_WINDOW_SIZE;
        Ok(Self {
            length: u32::from_be_bytes([0, l0, l1, l2]),
            frame_type,
            flags,
            stream_id,
        })
    }

    /// The whole frame's length: header and payload.
    pub const fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.length as usize
    }
}

/// The deprecated priority fields of HEADERS and PRIORITY frames (RFC 9113 §5.3.2, §6.3).
///
/// veil validates them and otherwise ignores them, as RFC 9113 §5.3.2 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityFields {
    /// The E flag.
    pub exclusive: bool,
    /// The stream this one depends on (31 bits).
    pub dependency: u32,
    /// The weight, minus one.
    pub weight: u8,
}

/// One frame, borrowed from the buffer it was decoded from.
///
/// Padding and priority fields are taken off the payload (`padding` and `priority` record
/// them, so that a frame re-encodes to the same bytes up to the padding's content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// DATA (§6.1).
    Data {
        /// A stream other than 0.
        stream_id: u32,
        /// The data, padding removed.
        data: &'a [u8],
        /// `END_STREAM`.
        end_stream: bool,
        /// The Pad Length, if the PADDED flag was set.
        padding: Option<u8>,
    },
    /// HEADERS (§6.2).
    Headers {
        /// A stream other than 0.
        stream_id: u32,
        /// The field block fragment, padding and priority removed.
        fragment: &'a [u8],
        /// `END_STREAM`.
        end_stream: bool,
        /// `END_HEADERS`: no CONTINUATION follows.
        end_headers: bool,
        /// The priority fields, if the PRIORITY flag was set. A dependency on the frame's
        /// own stream decodes (the field block must still reach HPACK); see
        /// [`PriorityFields::depends_on`].
        priority: Option<PriorityFields>,
        /// The Pad Length, if the PADDED flag was set.
        padding: Option<u8>,
    },
    /// PRIORITY (§6.3): deprecated, validated, ignored.
    Priority {
        /// A stream other than 0, not the one it depends on.
        stream_id: u32,
        /// Its fields.
        priority: PriorityFields,
    },
    /// `RST_STREAM` (§6.4).
    RstStream {
        /// A stream other than 0.
        stream_id: u32,
        /// Why the stream ends.
        error_code: ErrorCode,
    },
    /// SETTINGS (§6.5), on stream 0.
    Settings {
        /// An acknowledgement (then `settings` is empty).
        ack: bool,
        /// The parameters, each value already checked against §6.5.2.
        settings: Settings<'a>,
    },
    /// `PUSH_PROMISE` (§6.6). veil never enables push, so a session refuses it; it decodes
    /// so that the refusal can say why.
    PushPromise {
        /// A stream other than 0.
        stream_id: u32,
        /// The stream it reserves.
        promised_stream_id: u32,
        /// The field block fragment, padding removed.
        fragment: &'a [u8],
        /// `END_HEADERS`.
        end_headers: bool,
        /// The Pad Length, if the PADDED flag was set.
        padding: Option<u8>,
    },
    /// PING (§6.7), on stream 0.
    Ping {
        /// An acknowledgement of the peer's PING with this data.
        ack: bool,
        /// Opaque data, echoed in the acknowledgement.
        data: [u8; 8],
    },
    /// GOAWAY (§6.8), on stream 0.
    GoAway {
        /// The highest stream the sender might have processed.
        last_stream_id: u32,
        /// Why the connection ends.
        error_code: ErrorCode,
        /// Opaque diagnostics.
        debug_data: &'a [u8],
    },
    /// `WINDOW_UPDATE` (§6.9); stream 0 is the connection window.
    WindowUpdate {
        /// The stream, or 0.
        stream_id: u32,
        /// Credit to add, 1 to 2^31-1.
        increment: u32,
    },
    /// CONTINUATION (§6.10).
    Continuation {
        /// A stream other than 0.
        stream_id: u32,
        /// The next field block fragment.
        fragment: &'a [u8],
        /// `END_HEADERS`.
        end_headers: bool,
    },
    /// A frame of a type this module does not know.
    //# RFC 9113 §4.1: "Implementations MUST ignore and discard frames of unknown types."
    Unknown {
        /// Its type.
        frame_type: u8,
        /// Its flags.
        flags: u8,
        /// Its stream.
        stream_id: u32,
        /// Its payload.
        payload: &'a [u8],
    },
}

impl PriorityFields {
    /// Whether these fields make `stream_id` depend on itself, which RFC 9113 §5.3.1 makes
    /// a stream error of type `PROTOCOL_ERROR`.
    pub const fn depends_on(&self, stream_id: u32) -> bool {
        self.dependency == stream_id
    }
}

impl Frame<'_> {
    /// The stream the frame is on (0 for the connection).
    pub const fn stream_id(&self) -> u32 {
        match *self {
            Self::Data { stream_id, .. }
            | Self::Headers { stream_id, .. }
            | Self::Priority { stream_id, .. }
            | Self::RstStream { stream_id, .. }
            | Self::PushPromise { stream_id, .. }
            | Self::WindowUpdate { stream_id, .. }
            | Self::Continuation { stream_id, .. }
            | Self::Unknown { stream_id, .. } => stream_id,
            Self::Settings { .. } | Self::Ping { .. } | Self::GoAway { .. } => 0,
        }
    }

    /// How much of the flow-control windows the frame uses: a DATA frame's whole payload,
    /// padding included; 0 for every other type.
    //# RFC 9113 §6.1: "The entire DATA frame payload is included in flow control, including
    //# the Pad Length and Padding fields if present."
    pub fn flow_controlled_len(&self) -> u32 {
        match *self {
            Self::Data { data, padding, .. } => {
                let padded = padding.map_or(0, |pad| 1 + usize::from(pad));
                u32::try_from(data.len() + padded).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests;
