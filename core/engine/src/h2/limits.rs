//! What one HTTP/2 connection may cost us, and the counters that enforce the flood bounds.

use std::time::{Duration, Instant};

use veil_proto::h2::{
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW_SIZE, MAX_MAX_FRAME_SIZE, MAX_WINDOW_SIZE,
};

/// The bounds of one session. Every buffer the session keeps is bounded by one of these.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Our `SETTINGS_MAX_CONCURRENT_STREAMS`: streams the peer may have open at once; more
    /// are refused with `RST_STREAM(REFUSED_STREAM)`.
    pub max_concurrent_streams: u32,
    /// Our `SETTINGS_INITIAL_WINDOW_SIZE`: the most body bytes a stream buffers unread.
    pub stream_window: u32,
    /// Our connection receive window, announced with a `WINDOW_UPDATE` on stream 0 right
    /// after SETTINGS (values below the protocol's 65,535 count as 65,535: a window cannot
    /// shrink).
    pub connection_window: u32,
    /// Our `SETTINGS_MAX_FRAME_SIZE` (16,384 to 2^24-1); a partial frame is buffered up to
    /// this plus 9 bytes.
    pub max_frame_size: u32,
    /// Our `SETTINGS_MAX_HEADER_LIST_SIZE`, counted as RFC 9113 §6.5.2 does (name + value +
    /// 32 per field). A larger list is refused; its header block may be twice as long.
    pub max_header_list_size: u32,
    /// Output the session keeps before `send_body` reports no capacity.
    pub max_send_buffer: usize,
    /// Streams the peer may open and then reset (or have refused) in 10 s before the
    /// connection is closed with `ENHANCE_YOUR_CALM` (rapid reset, CVE-2023-44487).
    pub max_resets_per_10s: u32,
    /// Acknowledgements and resets we owe the peer (SETTINGS and PING ACKs, `RST_STREAM`)
    /// that may wait unread in the output before the connection is closed with
    /// `ENHANCE_YOUR_CALM` (a peer that provokes them and never reads).
    pub max_control_frames_queued: u32,
    /// CONTINUATION frames one header block may have (CVE-2024-27316 family).
    pub max_continuation_frames: u32,
    /// Server: announce `SETTINGS_ENABLE_CONNECT_PROTOCOL = 1` (RFC 8441), for extended
    /// CONNECT (`:protocol connect-udp`).
    pub enable_connect_protocol: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: 16 << 10,
            max_send_buffer: 1 << 20,
            max_resets_per_10s: 1000,
            max_control_frames_queued: 10_000,
            max_continuation_frames: 32,
            enable_connect_protocol: true,
        }
    }
}

impl Limits {
    /// The same limits moved into the ranges the protocol allows.
    pub(super) fn sanitized(mut self) -> Self {
        self.stream_window = self.stream_window.clamp(1, MAX_WINDOW_SIZE);
        self.connection_window = self
            .connection_window
            .clamp(DEFAULT_WINDOW_SIZE, MAX_WINDOW_SIZE);
        self.max_frame_size = self
            .max_frame_size
            .clamp(DEFAULT_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
        self
    }

    /// The longest header block (all its fragments together) we accumulate: twice the
    /// header list limit, since HPACK rarely expands and a block that big is abuse.
    pub(super) fn max_header_block(&self) -> usize {
        usize::try_from(self.max_header_list_size)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
    }
}

/// How long one counting window of [`RateWindow`] lasts.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Events counted over fixed windows of [`RATE_WINDOW`], starting at the first event.
///
/// Fixed windows let a peer reach at most twice the limit across a window boundary, which
/// is still a bound; a sliding window would need a timestamp per event.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    start: Option<Instant>,
    count: u32,
}

impl RateWindow {
    /// Counts one event at `now`; true when the window now holds more than `limit`.
    pub(crate) fn hit(&mut self, now: Instant, limit: u32) -> bool {
        match self.start {
            Some(start) if now.saturating_duration_since(start) < RATE_WINDOW => {}
            _ => {
                self.start = Some(now);
                self.count = 0;
            }
        }
        self.count = self.count.saturating_add(1);
        self.count > limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_counts_within_ten_seconds() {
        let t0 = Instant::now();
        let mut window = RateWindow::default();
        assert!(!window.hit(t0, 2));
        assert!(!window.hit(t0 + Duration::from_secs(9), 2));
        assert!(window.hit(t0 + Duration::from_secs(9), 2));
        // A new window starts at the first event after ten seconds.
        assert!(!window.hit(t0 + Duration::from_secs(10), 2));
    }

    #[test]
    fn limits_are_clamped_into_protocol_ranges() {
        let limits = Limits {
            stream_window: u32::MAX,
            connection_window: 1,
            max_frame_size: 1,
            ..Limits::default()
        }
        .sanitized();
        assert_eq!(limits.stream_window, MAX_WINDOW_SIZE);
        assert_eq!(limits.connection_window, DEFAULT_WINDOW_SIZE);
        assert_eq!(limits.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
    }
}
