//! One frame from the front of a buffer, checked against every rule RFC 9113 §4 and §6 put
//! on a frame by itself.

use core::fmt;

use super::types::{ErrorCode, SettingId, Settings};
use super::{
    DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN, Frame, FrameHeader, MAX_MAX_FRAME_SIZE,
    MAX_WINDOW_SIZE, PriorityFields, flags, frame_type,
};
use crate::cursor::Reader;

/// Why [`decode`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer holds less than a whole frame: `needed` bytes in all (9 while the header
    /// itself is incomplete, then header plus payload). Buffer more and call again.
    Truncated {
        /// Bytes the frame needs from the start of the buffer.
        needed: usize,
    },
    /// A connection error (RFC 9113 §5.4.1): send GOAWAY with `code` and close.
    Connection {
        /// The code for the GOAWAY.
        code: ErrorCode,
        /// What was wrong, for logs.
        reason: &'static str,
    },
    /// A stream error (RFC 9113 §5.4.2): reset `stream_id` with `code`, skip the frame's
    /// `frame_len` bytes, and carry on.
    Stream {
        /// The stream to reset.
        stream_id: u32,
        /// The code for the `RST_STREAM`.
        code: ErrorCode,
        /// What was wrong, for logs.
        reason: &'static str,
        /// The whole frame's length, header included, to skip.
        frame_len: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed } => write!(f, "frame incomplete: {needed} bytes needed"),
            Self::Connection { code, reason } => write!(f, "connection error {code}: {reason}"),
            Self::Stream {
                stream_id,
                code,
                reason,
                ..
            } => write!(f, "stream {stream_id} error {code}: {reason}"),
        }
    }
}

impl core::error::Error for FrameError {}

const fn connection(code: ErrorCode, reason: &'static str) -> FrameError {
    FrameError::Connection { code, reason }
}

const fn protocol(reason: &'static str) -> FrameError {
    connection(ErrorCode::PROTOCOL_ERROR, reason)
}

const fn frame_size(reason: &'static str) -> FrameError {
    connection(ErrorCode::FRAME_SIZE_ERROR, reason)
}

/// Decodes the frame at the front of `input`; returns its length and the frame.
///
/// `max_frame_size` is the `SETTINGS_MAX_FRAME_SIZE` we announced (values below the
/// protocol's 16,384 count as 16,384). A longer frame is refused from its header alone, so
/// a caller that buffers until [`FrameError::Truncated`]'s `needed` never holds more than
/// `9 + max_frame_size` bytes.
///
/// Frames of unknown types decode as [`Frame::Unknown`] for the caller to drop.
//# RFC 9113 §4.2: "An endpoint MUST send an error code of FRAME_SIZE_ERROR if a frame
//# exceeds the size defined in SETTINGS_MAX_FRAME_SIZE, exceeds any limit defined for the
//# frame type, or is too small to contain mandatory frame data."
///
/// A frame that is too long is always a connection error here, whatever its type: its
/// payload is never read, so nothing is left to resume from but the header, and a peer
/// that ignores our SETTINGS is not worth the bookkeeping.
pub fn decode(input: &[u8], max_frame_size: u32) -> Result<(usize, Frame<'_>), FrameError> {
    let Ok(header) = FrameHeader::decode(input) else {
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
        });
    };
    if header.length > max_frame_size.clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE) {
        return Err(frame_size("frame longer than SETTINGS_MAX_FRAME_SIZE"));
    }
    let frame_len = header.frame_len();
    let Some(payload) = input.get(FRAME_HEADER_LEN..frame_len) else {
        return Err(FrameError::Truncated { needed: frame_len });
    };
    let frame = match header.frame_type {
        frame_type::DATA => data(header, payload)?,
        frame_type::HEADERS => headers(header, payload)?,
        frame_type::PRIORITY => priority(header, payload)?,
        frame_type::RST_STREAM => rst_stream(header, payload)?,
        frame_type::SETTINGS => settings(header, payload)?,
        frame_type::PUSH_PROMISE => push_promise(header, payload)?,
        frame_type::PING => ping(header, payload)?,
        frame_type::GOAWAY => goaway(header, payload)?,
        frame_type::WINDOW_UPDATE => window_update(header, payload)?,
        frame_type::CONTINUATION => continuation(header, payload)?,
        _ => Frame::Unknown {
            frame_type: header.frame_type,
            flags: header.flags,
            stream_id: header.stream_id,
            payload,
        },
    };
    Ok((frame_len, frame))
}

const fn has(header: FrameHeader, flag: u8) -> bool {
    header.flags & flag != 0
}

/// Takes the Pad Length and the padding off a DATA, HEADERS or `PUSH_PROMISE` payload.
//# RFC 9113 §6.1: "If the length of the padding is the length of the frame payload or
//# greater, the recipient MUST treat this as a connection error (Section 5.4.1) of type
//# PROTOCOL_ERROR."
fn unpad(header: FrameHeader, payload: &[u8]) -> Result<(&[u8], Option<u8>), FrameError> {
    if !has(header, flags::PADDED) {
        return Ok((payload, None));
    }
    let Some((&pad_len, rest)) = payload.split_first() else {
        return Err(frame_size("PADDED frame without a Pad Length"));
    };
    let Some(content_len) = rest.len().checked_sub(usize::from(pad_len)) else {
        return Err(protocol("padding as long as the payload or longer"));
    };
    Ok((&rest[..content_len], Some(pad_len)))
}

fn read_priority(reader: &mut Reader<'_>) -> Option<PriorityFields> {
    let dependency = reader.u32().ok()?;
    let weight = reader.u8().ok()?;
    Some(PriorityFields {
        exclusive: dependency & !MAX_WINDOW_SIZE != 0,
        dependency: dependency & MAX_WINDOW_SIZE,
        weight,
    })
}

fn data(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.1: "If a DATA frame is received whose Stream Identifier field is 0x00,
    //# the recipient MUST respond with a connection error (Section 5.4.1) of type
    //# PROTOCOL_ERROR."
    if header.stream_id == 0 {
        return Err(protocol("DATA on stream 0"));
    }
    let (data, padding) = unpad(header, payload)?;
    Ok(Frame::Data {
        stream_id: header.stream_id,
        data,
        end_stream: has(header, flags::END_STREAM),
        padding,
    })
}

fn headers(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.2: "If a HEADERS frame is received whose Stream Identifier field is
    //# 0x00, the recipient MUST respond with a connection error (Section 5.4.1) of type
    //# PROTOCOL_ERROR."
    if header.stream_id == 0 {
        return Err(protocol("HEADERS on stream 0"));
    }
    let padded = has(header, flags::PADDED);
    let mut reader = Reader::new(payload);
    let pad_len = if padded {
        let Ok(pad_len) = reader.u8() else {
            return Err(frame_size("PADDED HEADERS without a Pad Length"));
        };
        Some(pad_len)
    } else {
        None
    };
    let priority = if has(header, flags::PRIORITY) {
        let Some(fields) = read_priority(&mut reader) else {
            return Err(frame_size("HEADERS too short for its priority fields"));
        };
        Some(fields)
    } else {
        None
    };
    //# RFC 9113 §6.2: "Padding that exceeds the size remaining for the field block
    //# fragment MUST be treated as a PROTOCOL_ERROR."
    let rest = reader.rest();
    let Some(fragment_len) = rest.len().checked_sub(usize::from(pad_len.unwrap_or(0))) else {
        return Err(protocol(
            "HEADERS padding longer than the field block fragment",
        ));
    };
    Ok(Frame::Headers {
        stream_id: header.stream_id,
        fragment: &rest[..fragment_len],
        end_stream: has(header, flags::END_STREAM),
        end_headers: has(header, flags::END_HEADERS),
        priority,
        padding: pad_len,
    })
}

fn priority(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.3: "If a PRIORITY frame is received with a stream identifier of 0x00,
    //# the recipient MUST respond with a connection error (Section 5.4.1) of type
    //# PROTOCOL_ERROR."
    if header.stream_id == 0 {
        return Err(protocol("PRIORITY on stream 0"));
    }
    let stream_error = |code, reason| FrameError::Stream {
        stream_id: header.stream_id,
        code,
        reason,
        frame_len: header.frame_len(),
    };
    //# RFC 9113 §6.3: "A PRIORITY frame with a length other than 5 octets MUST be treated
    //# as a stream error (Section 5.4.2) of type FRAME_SIZE_ERROR."
    if payload.len() != 5 {
        return Err(stream_error(
            ErrorCode::FRAME_SIZE_ERROR,
            "PRIORITY of a length other than 5",
        ));
    }
    let Some(fields) = read_priority(&mut Reader::new(payload)) else {
        return Err(frame_size("PRIORITY too short"));
    };
    //# RFC 9113 §5.3.1: "A stream cannot depend on itself. An endpoint MUST treat this as
    //# a stream error (Section 5.4.2) of type PROTOCOL_ERROR."
    if fields.depends_on(header.stream_id) {
        return Err(stream_error(
            ErrorCode::PROTOCOL_ERROR,
            "stream depends on itself",
        ));
    }
    Ok(Frame::Priority {
        stream_id: header.stream_id,
        priority: fields,
    })
}

fn rst_stream(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.4: "If a RST_STREAM frame is received with a stream identifier of 0x00,
    //# the recipient MUST treat this as a connection error (Section 5.4.1) of type
    //# PROTOCOL_ERROR."
    if header.stream_id == 0 {
        return Err(protocol("RST_STREAM on stream 0"));
    }
    //# RFC 9113 §6.4: "A RST_STREAM frame with a length other than 4 octets MUST be treated
    //# as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
    let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
        return Err(frame_size("RST_STREAM of a length other than 4"));
    };
    Ok(Frame::RstStream {
        stream_id: header.stream_id,
        error_code: ErrorCode(u32::from_be_bytes(bytes)),
    })
}

fn settings(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.5: "If an endpoint receives a SETTINGS frame whose Stream Identifier
    //# field is anything other than 0x00, the endpoint MUST respond with a connection error
    //# (Section 5.4.1) of type PROTOCOL_ERROR."
    if header.stream_id != 0 {
        return Err(protocol("SETTINGS on a stream"));
    }
    let ack = has(header, flags::ACK);
    //# RFC 9113 §6.5: "Receipt of a SETTINGS frame with the ACK flag set and a length field
    //# value other than 0 MUST be treated as a connection error (Section 5.4.1) of type
    //# FRAME_SIZE_ERROR."
    if ack && !payload.is_empty() {
        return Err(frame_size("SETTINGS ACK with a payload"));
    }
    //# RFC 9113 §6.5: "A SETTINGS frame with a length other than a multiple of 6 octets
    //# MUST be treated as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
    if payload.len() % 6 != 0 {
        return Err(frame_size("SETTINGS length not a multiple of 6"));
    }
    let settings = Settings::new(payload);
    for (id, value) in settings {
        check_setting(id, value)?;
    }
    Ok(Frame::Settings { ack, settings })
}

/// The checks RFC 9113 §6.5.2 and RFC 8441 §3 put on single values.
fn check_setting(id: SettingId, value: u32) -> Result<(), FrameError> {
    match id {
        //# RFC 9113 §6.5.2: "Any value other than 0 or 1 MUST be treated as a connection
        //# error (Section 5.4.1) of type PROTOCOL_ERROR."
        SettingId::ENABLE_PUSH if value > 1 => Err(protocol("SETTINGS_ENABLE_PUSH not 0 or 1")),
        //# RFC 9113 §6.5.2: "Values above the maximum flow-control window size of 2^31-1
        //# MUST be treated as a connection error (Section 5.4.1) of type
        //# FLOW_CONTROL_ERROR."
        SettingId::INITIAL_WINDOW_SIZE if value > MAX_WINDOW_SIZE => Err(connection(
            ErrorCode::FLOW_CONTROL_ERROR,
            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
        )),
        //# RFC 9113 §6.5.2: "Values outside this range MUST be treated as a connection
        //# error (Section 5.4.1) of type PROTOCOL_ERROR."
        SettingId::MAX_FRAME_SIZE
            if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) =>
        {
            Err(protocol("SETTINGS_MAX_FRAME_SIZE out of range"))
        }
        //# RFC 8441 §3: "The value of the parameter MUST be 0 or 1."
        SettingId::ENABLE_CONNECT_PROTOCOL if value > 1 => {
            Err(protocol("SETTINGS_ENABLE_CONNECT_PROTOCOL not 0 or 1"))
        }
        _ => Ok(()),
    }
}

fn push_promise(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.6: "If the Stream Identifier field specifies the value 0x00, a recipient
    //# MUST respond with a connection error (Section 5.4.1) of type PROTOCOL_ERROR."
    if header.stream_id == 0 {
        return Err(protocol("PUSH_PROMISE on stream 0"));
    }
    let (content, padding) = unpad(header, payload)?;
    let mut reader = Reader::new(content);
    let Ok(promised) = reader.u32() else {
        return Err(frame_size("PUSH_PROMISE too short for its promised stream"));
    };
    Ok(Frame::PushPromise {
        stream_id: header.stream_id,
        promised_stream_id: promised & MAX_WINDOW_SIZE,
        fragment: reader.rest(),
        end_headers: has(header, flags::END_HEADERS),
        padding,
    })
}

fn ping(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.7: "If a PING frame is received with a Stream Identifier field value
    //# other than 0x00, the recipient MUST respond with a connection error (Section 5.4.1)
    //# of type PROTOCOL_ERROR."
    if header.stream_id != 0 {
        return Err(protocol("PING on a stream"));
    }
    //# RFC 9113 §6.7: "Receipt of a PING frame with a length field value other than 8 MUST
    //# be treated as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
    let Ok(data) = <[u8; 8]>::try_from(payload) else {
        return Err(frame_size("PING of a length other than 8"));
    };
    Ok(Frame::Ping {
        ack: has(header, flags::ACK),
        data,
    })
}

fn goaway(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.8: "An endpoint MUST treat a GOAWAY frame with a stream identifier other
    //# than 0x00 as a connection error (Section 5.4.1) of type PROTOCOL_ERROR."
    if header.stream_id != 0 {
        return Err(protocol("GOAWAY on a stream"));
    }
    let mut reader = Reader::new(payload);
    let (Ok(last_stream_id), Ok(error_code)) = (reader.u32(), reader.u32()) else {
        return Err(frame_size("GOAWAY shorter than 8 bytes"));
    };
    Ok(Frame::GoAway {
        last_stream_id: last_stream_id & MAX_WINDOW_SIZE,
        error_code: ErrorCode(error_code),
        debug_data: reader.rest(),
    })
}

fn window_update(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.9: "A WINDOW_UPDATE frame with a length other than 4 octets MUST be
    //# treated as a connection error (Section 5.4.1) of type FRAME_SIZE_ERROR."
    let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
        return Err(frame_size("WINDOW_UPDATE of a length other than 4"));
    };
    let increment = u32::from_be_bytes(bytes) & MAX_WINDOW_SIZE;
    //# RFC 9113 §6.9: "A receiver MUST treat the receipt of a WINDOW_UPDATE frame with a
    //# flow-control window increment of 0 as a stream error (Section 5.4.2) of type
    //# PROTOCOL_ERROR; errors on the connection flow-control window MUST be treated as a
    //# connection error (Section 5.4.1)."
    if increment == 0 {
        let reason = "WINDOW_UPDATE with an increment of 0";
        return Err(if header.stream_id == 0 {
            protocol(reason)
        } else {
            FrameError::Stream {
                stream_id: header.stream_id,
                code: ErrorCode::PROTOCOL_ERROR,
                reason,
                frame_len: header.frame_len(),
            }
        });
    }
    Ok(Frame::WindowUpdate {
        stream_id: header.stream_id,
        increment,
    })
}

fn continuation(header: FrameHeader, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    //# RFC 9113 §6.10: "If a CONTINUATION frame is received with a Stream Identifier field
    //# of 0x00, the recipient MUST respond with a connection error (Section 5.4.1) of type
    //# PROTOCOL_ERROR."
    if header.stream_id == 0 {
        return Err(protocol("CONTINUATION on stream 0"));
    }
    Ok(Frame::Continuation {
        stream_id: header.stream_id,
        fragment: payload,
        end_headers: has(header, flags::END_HEADERS),
    })
}
