//! The registries HTTP/2 frames carry values from: error codes (RFC 9113 §7) and settings
//! (§6.5.2, RFC 8441 §3), and the view over a SETTINGS payload.

use core::fmt;

/// An HTTP/2 error code (RFC 9113 §7), as carried by `RST_STREAM` and GOAWAY.
///
/// Codes outside the registry are legal and mean `INTERNAL_ERROR` to the receiver (§7), so
/// this is an open newtype, not an enum.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Graceful shutdown, or no error.
    pub const NO_ERROR: Self = Self(0x0);
    /// An unspecific protocol error.
    pub const PROTOCOL_ERROR: Self = Self(0x1);
    /// An unexpected internal error.
    pub const INTERNAL_ERROR: Self = Self(0x2);
    /// The peer broke flow control.
    pub const FLOW_CONTROL_ERROR: Self = Self(0x3);
    /// A SETTINGS frame was not acknowledged in time.
    pub const SETTINGS_TIMEOUT: Self = Self(0x4);
    /// A frame arrived after the stream was half-closed.
    pub const STREAM_CLOSED: Self = Self(0x5);
    /// A frame had an invalid size.
    pub const FRAME_SIZE_ERROR: Self = Self(0x6);
    /// The stream was refused before any application processing.
    pub const REFUSED_STREAM: Self = Self(0x7);
    /// The stream is no longer needed.
    pub const CANCEL: Self = Self(0x8);
    /// The field section compression context cannot be maintained.
    pub const COMPRESSION_ERROR: Self = Self(0x9);
    /// The connection of a CONNECT request was reset or abnormally closed.
    pub const CONNECT_ERROR: Self = Self(0xa);
    /// The peer is generating excessive load.
    pub const ENHANCE_YOUR_CALM: Self = Self(0xb);
    /// The transport does not meet minimum security requirements.
    pub const INADEQUATE_SECURITY: Self = Self(0xc);
    /// HTTP/1.1 must be used instead.
    pub const HTTP_1_1_REQUIRED: Self = Self(0xd);

    /// The registry name of a known code.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{:#x}", self.0),
        }
    }
}

/// A SETTINGS parameter identifier (RFC 9113 §6.5.2; RFC 8441 §3).
///
/// Unknown identifiers are legal and ignored by the receiver (§6.5.2), so this is an open
/// newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SettingId(pub u16);

impl SettingId {
    /// The largest HPACK dynamic table the sender's decoder allows.
    pub const HEADER_TABLE_SIZE: Self = Self(0x1);
    /// Whether server push is allowed (0 or 1).
    pub const ENABLE_PUSH: Self = Self(0x2);
    /// How many streams the sender lets its peer open at once.
    pub const MAX_CONCURRENT_STREAMS: Self = Self(0x3);
    /// The sender's initial stream receive window.
    pub const INITIAL_WINDOW_SIZE: Self = Self(0x4);
    /// The largest frame payload the sender accepts.
    pub const MAX_FRAME_SIZE: Self = Self(0x5);
    /// The largest field section the sender is prepared to accept (advisory).
    pub const MAX_HEADER_LIST_SIZE: Self = Self(0x6);
    /// Whether the sender (a server) accepts the extended CONNECT method (RFC 8441 §3).
    pub const ENABLE_CONNECT_PROTOCOL: Self = Self(0x8);
}

/// The parameters of a SETTINGS frame: its payload, whose length is a multiple of 6 and
/// whose known values were checked when it was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings<'a> {
    payload: &'a [u8],
}

impl<'a> Settings<'a> {
    /// Wraps a payload that [`super::decode`] checked.
    pub(super) const fn new(payload: &'a [u8]) -> Self {
        Self { payload }
    }

    /// The raw payload.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.payload
    }

    /// Whether there is no parameter.
    pub const fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// The (identifier, value) pairs, in order. A later value for the same identifier
    /// overrides an earlier one (§6.5.3: "processed in the order in which they appear").
    pub fn iter(&self) -> SettingsIter<'a> {
        SettingsIter {
            chunks: self.payload.chunks_exact(6),
        }
    }
}

impl<'a> IntoIterator for Settings<'a> {
    type Item = (SettingId, u32);
    type IntoIter = SettingsIter<'a>;

    fn into_iter(self) -> SettingsIter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &Settings<'a> {
    type Item = (SettingId, u32);
    type IntoIter = SettingsIter<'a>;

    fn into_iter(self) -> SettingsIter<'a> {
        self.iter()
    }
}

/// Iterator over a SETTINGS frame's (identifier, value) pairs.
#[derive(Debug, Clone)]
pub struct SettingsIter<'a> {
    chunks: core::slice::ChunksExact<'a, u8>,
}

impl Iterator for SettingsIter<'_> {
    type Item = (SettingId, u32);

    fn next(&mut self) -> Option<Self::Item> {
        let chunk = self.chunks.next()?;
        let [i0, i1, v0, v1, v2, v3] = <[u8; 6]>::try_from(chunk).ok()?;
        Some((
            SettingId(u16::from_be_bytes([i0, i1])),
            u32::from_be_bytes([v0, v1, v2, v3]),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for SettingsIter<'_> {}
