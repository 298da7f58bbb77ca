//! A header block being gathered from a HEADERS frame and its CONTINUATION frames.

/// The fragments so far, bounded in bytes and in frames: a peer that sends CONTINUATION
/// frames without end would otherwise make us buffer without end (CVE-2024-27316).
#[derive(Debug)]
pub(super) struct HeaderBlock {
    /// The stream the block is on; only CONTINUATION frames on it may follow.
    pub(super) stream_id: u32,
    /// The fragments, concatenated.
    pub(super) buf: Vec<u8>,
    /// The HEADERS frame carried `END_STREAM`.
    pub(super) end_stream: bool,
    /// The HEADERS frame's priority made the stream depend on itself.
    pub(super) self_dependent: bool,
    /// CONTINUATION frames so far.
    pub(super) continuations: u32,
}

/// A bound the block would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flood {
    /// More bytes than the header block limit.
    TooLong,
    /// More CONTINUATION frames than allowed.
    TooManyFrames,
}

impl HeaderBlock {
    pub(super) fn new(
        stream_id: u32,
        fragment: &[u8],
        end_stream: bool,
        self_dependent: bool,
        max_len: usize,
    ) -> Result<Self, Flood> {
        if fragment.len() > max_len {
            return Err(Flood::TooLong);
        }
        Ok(Self {
            stream_id,
            buf: fragment.to_vec(),
            end_stream,
            self_dependent,
            continuations: 0,
        })
    }

    /// Adds a CONTINUATION frame's fragment.
    pub(super) fn append(
        &mut self,
        fragment: &[u8],
        max_len: usize,
        max_frames: u32,
    ) -> Result<(), Flood> {
        self.continuations += 1;
        if self.continuations > max_frames {
            return Err(Flood::TooManyFrames);
        }
        if self.buf.len() + fragment.len() > max_len {
            return Err(Flood::TooLong);
        }
        self.buf.extend_from_slice(fragment);
        Ok(())
    }
}
