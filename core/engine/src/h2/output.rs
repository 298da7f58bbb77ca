//! The bytes waiting for the transport, and how many acknowledgements among them the peer
//! provoked but has not read yet.

use std::collections::VecDeque;

use veil_proto::Writer;
use veil_proto::h2::{FRAME_HEADER_LEN, Frame, encode_data_header};

/// Output, as one buffer the caller writes from.
///
/// Frames are encoded straight into it, and body bytes copied once. Control frames the
/// peer provoked are remembered by where they end, so that the session can tell how many
/// the peer leaves unread (a peer that sends PINGs and never reads makes us buffer the
/// answers without bound otherwise).
#[derive(Debug, Default)]
pub(super) struct Output {
    buf: Vec<u8>,
    /// Bytes of `buf` already written to the transport.
    head: usize,
    /// Bytes ever consumed, to compare with `control_ends`.
    consumed: u64,
    /// Where each unread provoked control frame ends, counted from the first byte ever.
    control_ends: VecDeque<u64>,
}

impl Output {
    pub(super) fn pending(&self) -> &[u8] {
        self.buf.get(self.head..).unwrap_or_default()
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Marks `n` bytes as written to the transport (at most what is pending).
    pub(super) fn consume(&mut self, n: usize) {
        let n = n.min(self.len());
        self.head += n;
        self.consumed += n as u64;
        while self
            .control_ends
            .front()
            .is_some_and(|&end| end <= self.consumed)
        {
            self.control_ends.pop_front();
        }
        if self.head == self.buf.len() {
            self.buf.clear();
            self.head = 0;
        } else if self.head >= 64 << 10 && self.head * 2 >= self.buf.len() {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    /// Appends bytes already framed (the connection start).
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Appends a frame.
    pub(super) fn frame(&mut self, frame: &Frame<'_>) {
        let start = self.buf.len();
        self.buf.resize(start + frame.encoded_len(), 0);
        let written = frame.encode(&mut Writer::new(&mut self.buf[start..]));
        debug_assert!(
            written.is_ok(),
            "frames the session builds fit: {written:?}"
        );
        if written.is_err() {
            self.buf.truncate(start);
        }
    }

    /// Appends a control frame the peer provoked; returns how many such frames are now
    /// unread.
    pub(super) fn control(&mut self, frame: &Frame<'_>) -> usize {
        self.frame(frame);
        self.control_ends
            .push_back(self.consumed + self.len() as u64);
        self.control_ends.len()
    }

    /// Appends a DATA frame carrying `data`, which fits the peer's frame size.
    pub(super) fn data(&mut self, stream_id: u32, data: &[u8], end_stream: bool) {
        let start = self.buf.len();
        self.buf.resize(start + FRAME_HEADER_LEN, 0);
        let header = encode_data_header(
            stream_id,
            data.len(),
            end_stream,
            &mut Writer::new(&mut self.buf[start..]),
        );
        debug_assert!(header.is_ok(), "DATA frames the session builds fit");
        if header.is_err() {
            self.buf.truncate(start);
            return;
        }
        self.buf.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_frames_count_until_read() {
        let mut out = Output::default();
        let ping = Frame::Ping {
            ack: true,
            data: [0; 8],
        };
        out.data(1, b"abc", false);
        assert_eq!(out.control(&ping), 1);
        assert_eq!(out.control(&ping), 2);
        assert_eq!(out.len(), 12 + 17 + 17);
        out.consume(12 + 16);
        assert_eq!(out.control(&ping), 3, "the first is not wholly read");
        out.consume(1);
        assert_eq!(out.control(&ping), 3);
        out.consume(usize::MAX);
        assert_eq!(out.len(), 0);
        assert_eq!(out.control(&ping), 1);
    }
}
