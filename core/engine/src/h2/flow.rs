//! Flow-control windows (RFC 9113 §5.2, §6.9), one kind per direction.

use veil_proto::h2::MAX_WINDOW_SIZE;

/// The window we may send into: the peer's credit for one stream or the connection.
///
/// Signed, because a smaller `SETTINGS_INITIAL_WINDOW_SIZE` takes credit away from open
/// streams, possibly below zero.
//# RFC 9113 §6.9.2: "A change to SETTINGS_INITIAL_WINDOW_SIZE can cause the available space
//# in a flow-control window to become negative."
#[derive(Debug, Clone, Copy)]
pub(super) struct SendWindow(i64);

/// The window went above 2^31-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Overflow;

impl SendWindow {
    pub(super) fn new(initial: u32) -> Self {
        Self(i64::from(initial))
    }

    /// Bytes that may be sent now (0 while the window is negative).
    pub(super) fn available(self) -> usize {
        usize::try_from(self.0.max(0)).unwrap_or(usize::MAX)
    }

    /// Adds credit (a `WINDOW_UPDATE`, or a change of the initial window size, which may
    /// be negative).
    //# RFC 9113 §6.9.1: "A sender MUST NOT allow a flow-control window to exceed 2^31-1
    //# octets."
    pub(super) fn adjust(&mut self, delta: i64) -> Result<(), Overflow> {
        let next = self.0.saturating_add(delta);
        if next > i64::from(MAX_WINDOW_SIZE) {
            return Err(Overflow);
        }
        self.0 = next;
        Ok(())
    }

    /// Takes `n` bytes of credit, which the caller checked were [`Self::available`].
    pub(super) fn consume(&mut self, n: usize) {
        self.0 = self.0.saturating_sub(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// The window the peer sends into: what it may still send, and what we have taken off the
/// buffer but not yet handed back.
///
/// Credit goes back in one `WINDOW_UPDATE` once half the window has been released, not per
/// read: small reads would otherwise cost a frame each.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecvWindow {
    /// Bytes the peer may still send.
    available: u32,
    /// Bytes released (read, or dropped) and not yet returned.
    released: u32,
    /// The window we keep up.
    size: u32,
}

impl RecvWindow {
    pub(super) fn new(size: u32) -> Self {
        Self {
            available: size,
            released: 0,
            size,
        }
    }

    /// Accounts for `n` received bytes; `Err` when they exceed what the peer was given.
    pub(super) fn receive(&mut self, n: u32) -> Result<(), Overflow> {
        self.available = self.available.checked_sub(n).ok_or(Overflow)?;
        Ok(())
    }

    /// Releases `n` received bytes; returns the increment to send in a `WINDOW_UPDATE`
    /// once half the window is waiting to be returned.
    pub(super) fn release(&mut self, n: u32) -> Option<u32> {
        self.released = self.released.saturating_add(n);
        if self.released < self.size.div_ceil(2) {
            return None;
        }
        let increment = self.released;
        self.available = self.available.saturating_add(increment);
        self.released = 0;
        Some(increment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_window_goes_negative_and_refuses_overflow() {
        let mut window = SendWindow::new(100);
        window.adjust(-150).unwrap();
        assert_eq!(window.available(), 0);
        window.consume(0);
        window.adjust(60).unwrap();
        assert_eq!(window.available(), 10);
        let mut full = SendWindow::new(MAX_WINDOW_SIZE);
        assert_eq!(full.adjust(1), Err(Overflow));
        assert_eq!(full.available(), MAX_WINDOW_SIZE as usize);
    }

    #[test]
    fn recv_window_returns_credit_at_half() {
        let mut window = RecvWindow::new(100);
        window.receive(100).unwrap();
        assert_eq!(window.receive(1), Err(Overflow));
        assert_eq!(window.release(49), None);
        assert_eq!(window.release(1), Some(50));
        window.receive(50).unwrap();
        assert_eq!(window.receive(1), Err(Overflow));
    }
}
