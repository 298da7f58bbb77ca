//! When a host resizes its QUIC socket's buffers: larger while the endpoint has a
//! connection on a path longer than a LAN ([`Endpoint::long_paths`]), the size it started
//! with otherwise.
//!
//! Across a long path whose link does not cap the rate, the receiving socket is the path's
//! only queue, and the kernel's default is a small part of the bandwidth-delay product;
//! where every path is short and a receiver is held by its CPU, a larger queue only
//! delays what waits in it (docs/PERFORMANCE.md, "The default socket buffers"). The host
//! asks after every round of its work, so that a long path's first flight already finds
//! the larger queue: losses there end CUBIC's slow start early.
//!
//! [`Endpoint::long_paths`]: crate::Endpoint::long_paths

/// A socket's buffers, as far as growing them for long paths goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AsStarted,
    /// Grown while a path is long; `from`: the size to go back to (`None`: the kernel
    /// would not say, and they stay).
    Grown {
        from: Option<usize>,
    },
}

/// One socket's buffer sizes over its endpoint's life.
#[derive(Debug, Clone, Copy)]
pub struct BufferSizer {
    long: Option<usize>,
    state: State,
}

impl BufferSizer {
    /// `long`: the size to ask for (receive and send) while a path is long; `None`: the
    /// buffers are never resized.
    pub fn new(long: Option<usize>) -> Self {
        Self {
            long,
            state: State::AsStarted,
        }
    }

    /// The size to ask the kernel for now, if any. `long_paths`: from
    /// [`Endpoint::long_paths`](crate::Endpoint::long_paths); `reported`: the socket's
    /// receive buffer as the kernel reports it (`SO_RCVBUF`), read only when the buffers
    /// grow, to go back to it later.
    pub fn resize(
        &mut self,
        long_paths: usize,
        reported: impl FnOnce() -> Option<usize>,
    ) -> Option<usize> {
        let long = self.long?;
        match (long_paths > 0, self.state) {
            (true, State::AsStarted) => {
                // Linux reports twice what was asked for: it counts its bookkeeping.
                let from = reported().map(|kept| kept / 2);
                self.state = State::Grown { from };
                Some(long)
            }
            (false, State::Grown { from }) => {
                self.state = State::AsStarted;
                from
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_once_for_long_paths_and_goes_back_when_none_is_left() {
        let mut sizer = BufferSizer::new(Some(1 << 20));
        assert_eq!(
            sizer.resize(0, || Some(212_992)),
            None,
            "short paths: as started"
        );
        assert_eq!(sizer.resize(1, || Some(212_992)), Some(1 << 20));
        assert_eq!(sizer.resize(2, || unreachable!()), None, "grown already");
        assert_eq!(sizer.resize(0, || unreachable!()), Some(106_496), "back");
        assert_eq!(sizer.resize(0, || unreachable!()), None);
        assert_eq!(sizer.resize(1, || None), Some(1 << 20));
        assert_eq!(
            sizer.resize(0, || unreachable!()),
            None,
            "size unknown: they stay"
        );
    }

    #[test]
    fn without_a_long_size_it_never_resizes() {
        let mut sizer = BufferSizer::new(None);
        assert_eq!(sizer.resize(3, || unreachable!()), None);
        assert_eq!(sizer.resize(0, || unreachable!()), None);
    }
}
