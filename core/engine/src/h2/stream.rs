//! One stream's state (RFC 9113 §5.1) and its receive buffer.

use std::collections::VecDeque;

use super::flow::{RecvWindow, SendWindow};

/// An open or half-closed stream. Idle and closed streams have no entry: idle ones are
/// told by their identifier, closed ones are forgotten.
// Each flag is one independent fact of RFC 9113 §5.1's state (a direction closed, a head
// sent or received, an event reported), not a mode that an enum would name better.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub(super) struct Stream {
    /// The peer's credit for this stream.
    pub(super) send: SendWindow,
    /// Our credit for the peer.
    pub(super) recv: RecvWindow,
    /// Body bytes received and not yet read; never more than the receive window, since
    /// the peer cannot send more without a flow-control error.
    pub(super) buf: VecDeque<u8>,
    /// The peer's `END_STREAM` arrived (half-closed remote).
    pub(super) recv_closed: bool,
    /// `Event::Finished` was queued.
    pub(super) finished_reported: bool,
    /// `Event::Data` was queued and the buffer has not been drained since.
    pub(super) data_reported: bool,
    /// The peer's (final) head arrived: always for a stream the peer opened; for one we
    /// opened, once a non-informational response came.
    pub(super) head_received: bool,
    /// We sent our head (request or response).
    pub(super) head_sent: bool,
    /// We sent `END_STREAM` (half-closed local).
    pub(super) send_closed: bool,
}

impl Stream {
    pub(super) fn new(send_window: u32, recv_window: u32) -> Self {
        Self {
            send: SendWindow::new(send_window),
            recv: RecvWindow::new(recv_window),
            buf: VecDeque::new(),
            recv_closed: false,
            finished_reported: false,
            data_reported: false,
            head_received: false,
            head_sent: false,
            send_closed: false,
        }
    }

    /// Both directions are over and everything was read and reported: the stream is
    /// closed (§5.1) and can be forgotten.
    pub(super) fn is_done(&self) -> bool {
        self.send_closed && self.recv_closed && self.buf.is_empty() && self.finished_reported
    }

    /// Copies up to `out.len()` buffered bytes out; returns how many.
    pub(super) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        let (front, back) = self.buf.as_slices();
        let from_front = n.min(front.len());
        out[..from_front].copy_from_slice(&front[..from_front]);
        out[from_front..n].copy_from_slice(&back[..n - from_front]);
        self.buf.drain(..n);
        n
    }
}
