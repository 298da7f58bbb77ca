//! Frames into a caller buffer.
//!
//! Every encoder computes the whole frame's length first and reserves it, so that a failed
//! encode leaves nothing half-written (see [`crate::Writer::reserve`]).

use core::fmt;

use super::types::SettingId;
use super::{
    FRAME_HEADER_LEN, Frame, FrameHeader, MAX_MAX_FRAME_SIZE, MAX_WINDOW_SIZE, PriorityFields,
    flags, frame_type,
};
use crate::cursor::Writer;
use crate::error::BufferTooSmall;

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The caller's buffer is too small; nothing was written.
    BufferTooSmall(BufferTooSmall),
    /// The payload does not fit the 24-bit length field (the caller must split it, at the
    /// peer's `SETTINGS_MAX_FRAME_SIZE` anyway).
    PayloadTooLong {
        /// The payload length asked for.
        len: usize,
    },
}

impl From<BufferTooSmall> for EncodeError {
    fn from(e: BufferTooSmall) -> Self {
        Self::BufferTooSmall(e)
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall(e) => e.fmt(f),
            Self::PayloadTooLong { len } => {
                write!(f, "a frame payload of {len} bytes exceeds 2^24-1")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

impl FrameHeader {
    /// Writes the header. The stream identifier's reserved bit is always sent as 0.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if self.length > MAX_MAX_FRAME_SIZE {
            return Err(EncodeError::PayloadTooLong {
                len: self.length as usize,
            });
        }
        w.reserve(FRAME_HEADER_LEN)?;
        let [_, l0, l1, l2] = self.length.to_be_bytes();
        w.bytes(&[l0, l1, l2, self.frame_type, self.flags])?;
        w.u32(self.stream_id & MAX_WINDOW_SIZE)?;
        Ok(())
    }
}

/// Writes a frame header for `length` bytes and reserves room for the whole frame.
fn start(
    w: &mut Writer<'_>,
    frame_type: u8,
    flags: u8,
    stream_id: u32,
    length: usize,
) -> Result<(), EncodeError> {
    let Ok(length32) = u32::try_from(length) else {
        return Err(EncodeError::PayloadTooLong { len: length });
    };
    if length32 > MAX_MAX_FRAME_SIZE {
        return Err(EncodeError::PayloadTooLong { len: length });
    }
    w.reserve(FRAME_HEADER_LEN + length)?;
    FrameHeader {
        length: length32,
        frame_type,
        flags,
        stream_id,
    }
    .encode(w)
}

/// Writes the header of a DATA frame carrying `len` bytes, without padding; the caller
/// appends the bytes themselves (so that they are copied once, into the output).
pub fn encode_data_header(
    stream_id: u32,
    len: usize,
    end_stream: bool,
    w: &mut Writer<'_>,
) -> Result<usize, EncodeError> {
    let Ok(length) = u32::try_from(len) else {
        return Err(EncodeError::PayloadTooLong { len });
    };
    let before = w.position();
    FrameHeader {
        length,
        frame_type: frame_type::DATA,
        flags: if end_stream { flags::END_STREAM } else { 0 },
        stream_id,
    }
    .encode(w)?;
    Ok(w.position() - before)
}

/// Writes a SETTINGS frame with these parameters, in order (or an acknowledgement, when
/// `ack` is set and `settings` is empty).
pub fn encode_settings(
    ack: bool,
    settings: &[(SettingId, u32)],
    w: &mut Writer<'_>,
) -> Result<usize, EncodeError> {
    let before = w.position();
    start(
        w,
        frame_type::SETTINGS,
        if ack { flags::ACK } else { 0 },
        0,
        settings.len().saturating_mul(6),
    )?;
    for &(id, value) in settings {
        w.u16(id.0)?;
        w.u32(value)?;
    }
    Ok(w.position() - before)
}

fn padded_len(padding: Option<u8>) -> usize {
    padding.map_or(0, |pad| 1 + usize::from(pad))
}

fn flag(set: bool, flag: u8) -> u8 {
    if set { flag } else { 0 }
}

fn write_priority(fields: PriorityFields, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
    let exclusive = if fields.exclusive {
        !MAX_WINDOW_SIZE
    } else {
        0
    };
    w.u32(fields.dependency & MAX_WINDOW_SIZE | exclusive)?;
    w.u8(fields.weight)
}

fn write_padding(padding: Option<u8>, w: &mut Writer<'_>) -> Result<(), BufferTooSmall> {
    if let Some(pad) = padding {
        for _ in 0..pad {
            w.u8(0)?;
        }
    }
    Ok(())
}

impl Frame<'_> {
    /// DATA and HEADERS, the frames with padding before and after their content.
    fn encode_padded(&self, len: usize, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let (kind, stream_id, content, flags, padding, priority) = match *self {
            Self::Data {
                stream_id,
                data,
                end_stream,
                padding,
            } => (
                frame_type::DATA,
                stream_id,
                data,
                flag(end_stream, flags::END_STREAM),
                padding,
                None,
            ),
            Self::Headers {
                stream_id,
                fragment,
                end_stream,
                end_headers,
                priority,
                padding,
            } => (
                frame_type::HEADERS,
                stream_id,
                fragment,
                flag(end_stream, flags::END_STREAM)
                    | flag(end_headers, flags::END_HEADERS)
                    | flag(priority.is_some(), flags::PRIORITY),
                padding,
                priority,
            ),
            _ => return Ok(()),
        };
        let flags = flags | flag(padding.is_some(), flags::PADDED);
        start(w, kind, flags, stream_id, len)?;
        if let Some(pad) = padding {
            w.u8(pad)?;
        }
        if let Some(fields) = priority {
            write_priority(fields, w)?;
        }
        w.bytes(content)?;
        write_padding(padding, w)?;
        Ok(())
    }

    /// The payload length this frame encodes to.
    pub fn payload_len(&self) -> usize {
        match *self {
            Self::Data { data, padding, .. } => data.len() + padded_len(padding),
            Self::Headers {
                fragment,
                priority,
                padding,
                ..
            } => fragment.len() + padded_len(padding) + if priority.is_some() { 5 } else { 0 },
            Self::Priority { .. } => 5,
            Self::RstStream { .. } | Self::WindowUpdate { .. } => 4,
            Self::Settings { settings, .. } => settings.as_bytes().len(),
            Self::PushPromise {
                fragment, padding, ..
            } => 4 + fragment.len() + padded_len(padding),
            Self::Ping { .. } => 8,
            Self::GoAway { debug_data, .. } => 8 + debug_data.len(),
            Self::Continuation { fragment, .. } => fragment.len(),
            Self::Unknown { payload, .. } => payload.len(),
        }
    }

    /// The whole frame's length once encoded, header included.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload_len()
    }

    /// Writes the frame; returns the bytes written. Padding is written as zeros.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<usize, EncodeError> {
        let before = w.position();
        let len = self.payload_len();
        match *self {
            Self::Data { .. } | Self::Headers { .. } => self.encode_padded(len, w)?,
            Self::Priority {
                stream_id,
                priority,
            } => {
                start(w, frame_type::PRIORITY, 0, stream_id, len)?;
                write_priority(priority, w)?;
            }
            Self::RstStream {
                stream_id,
                error_code,
            } => {
                start(w, frame_type::RST_STREAM, 0, stream_id, len)?;
                w.u32(error_code.0)?;
            }
            Self::Settings { ack, settings } => {
                start(w, frame_type::SETTINGS, flag(ack, flags::ACK), 0, len)?;
                w.bytes(settings.as_bytes())?;
            }
            Self::PushPromise {
                stream_id,
                promised_stream_id,
                fragment,
                end_headers,
                padding,
            } => {
                let flags =
                    flag(end_headers, flags::END_HEADERS) | flag(padding.is_some(), flags::PADDED);
                start(w, frame_type::PUSH_PROMISE, flags, stream_id, len)?;
                if let Some(pad) = padding {
                    w.u8(pad)?;
                }
                w.u32(promised_stream_id & MAX_WINDOW_SIZE)?;
                w.bytes(fragment)?;
                write_padding(padding, w)?;
            }
            Self::Ping { ack, data } => {
                start(w, frame_type::PING, flag(ack, flags::ACK), 0, len)?;
                w.bytes(&data)?;
            }
            Self::GoAway {
                last_stream_id,
                error_code,
                debug_data,
            } => {
                start(w, frame_type::GOAWAY, 0, 0, len)?;
                w.u32(last_stream_id & MAX_WINDOW_SIZE)?;
                w.u32(error_code.0)?;
                w.bytes(debug_data)?;
            }
            Self::WindowUpdate {
                stream_id,
                increment,
            } => {
                start(w, frame_type::WINDOW_UPDATE, 0, stream_id, len)?;
                w.u32(increment & MAX_WINDOW_SIZE)?;
            }
            Self::Continuation {
                stream_id,
                fragment,
                end_headers,
            } => {
                let flags = flag(end_headers, flags::END_HEADERS);
                start(w, frame_type::CONTINUATION, flags, stream_id, len)?;
                w.bytes(fragment)?;
            }
            Self::Unknown {
                frame_type,
                flags,
                stream_id,
                payload,
            } => {
                start(w, frame_type, flags, stream_id, len)?;
                w.bytes(payload)?;
            }
        }
        Ok(w.position() - before)
    }
}
