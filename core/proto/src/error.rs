//! Error types shared by every codec in the crate.

use core::fmt;

/// An encoder was handed a buffer that cannot hold what it has to write.
///
/// Nothing meaningful has been written when this is returned; the caller may retry with a
/// buffer of at least `needed` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the whole encoding needs.
    pub needed: usize,
    /// Bytes the caller's buffer had.
    pub available: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buffer too small: need {} bytes, have {}",
            self.needed, self.available
        )
    }
}

impl core::error::Error for BufferTooSmall {}

/// Input ended before a complete item could be read.
///
/// For incremental decoders this means "feed me more"; for one-shot decoders over a whole
/// message it is a malformed-input error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("input truncated")
    }
}

impl core::error::Error for Truncated {}
