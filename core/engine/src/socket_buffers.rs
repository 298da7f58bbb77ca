//! When a host resizes its QUIC socket's buffers: larger while the endpoint has a
//! connection on a path longer than a LAN ([`Endpoint::long_paths`]), and larger again as
//! the flights such a connection receives grow ([`Endpoint::received_flight`]); the size
//! it started with otherwise.
//!
//! Across a long path whose link does not cap the rate, the receiving socket is the path's
//! only queue, and the kernel's default is a small part of the bandwidth-delay product;
//! where every path is short and a receiver is held by its CPU, a larger queue only
//! delays what waits in it (docs/PERFORMANCE.md, "The default socket buffers"). The host
//! asks after every round of its work, so that a long path's first flight already finds
//! the larger queue: losses there end CUBIC's slow start early.
//!
//! [`Endpoint::long_paths`]: crate::Endpoint::long_paths
//! [`Endpoint::received_flight`]: crate::Endpoint::received_flight

/// What the QUIC socket's buffers are asked to be, at least, while the endpoint has a
/// connection on a long path: veil's hosts' default. Linux doubles it for its bookkeeping:
/// 2 MiB of queue each way.
pub const LONG_PATH_BUFFER_MIN: usize = 1 << 20;

/// The most a socket's buffers grow to for long paths, however large the flights: 16 MiB
/// holds 1.3 Gbit/s for 100 ms (the kernel may cap them lower: `net.core.rmem_max`).
pub const LONG_PATH_BUFFER_MAX: usize = 16 << 20;

/// A socket's buffers, as far as growing them for long paths goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AsStarted,
    /// Grown to `size` while a path is long; `from`: the size to go back to (`None`: the
    /// kernel would not say, and they stay).
    Grown {
        from: Option<usize>,
        size: usize,
    },
}

/// One socket's buffer sizes over its endpoint's life.
#[derive(Debug, Clone, Copy)]
pub struct BufferSizer {
    long: Option<usize>,
    state: State,
}

impl BufferSizer {
    /// `long`: the size to ask for (receive and send) when a path becomes long, the
    /// least it grows to; `None`: the buffers are never resized.
    pub fn new(long: Option<usize>) -> Self {
        Self {
            long,
            state: State::AsStarted,
        }
    }

    /// The size to ask the kernel for now, if any, from `endpoint`'s paths
    /// ([`Self::resize`] with its `long_paths` and `received_flight`): what every host asks
    /// after each round of its work.
    pub fn fit(
        &mut self,
        endpoint: &crate::Endpoint,
        reported: impl FnOnce() -> Option<usize>,
    ) -> Option<usize> {
        self.resize(endpoint.long_paths(), endpoint.received_flight(), reported)
    }

    /// The size to ask the kernel for now, if any. `long_paths` and `flight`: from
    /// [`Endpoint::long_paths`](crate::Endpoint::long_paths) and
    /// [`Endpoint::received_flight`](crate::Endpoint::received_flight); `reported`: the
    /// socket's receive buffer as the kernel reports it (`SO_RCVBUF`), read only when the
    /// buffers first grow, to go back to it later.
    ///
    /// While a path is long the buffers hold at least twice the largest flight, rounded
    /// up to a power of two (so that a flight that grows slowly resizes them a few times,
    /// not at every round trip), between `long` and [`LONG_PATH_BUFFER_MAX`]; they never
    /// shrink until no path is long.
    pub fn resize(
        &mut self,
        long_paths: usize,
        flight: usize,
        reported: impl FnOnce() -> Option<usize>,
    ) -> Option<usize> {
        let long = self.long?;
        if long_paths == 0 {
            return match self.state {
                State::Grown { from, .. } => {
                    self.state = State::AsStarted;
                    from
                }
                State::AsStarted => None,
            };
        }
        let wanted = flight
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .clamp(long, LONG_PATH_BUFFER_MAX.max(long));
        match self.state {
            State::AsStarted => {
                // Linux reports twice what was asked for: it counts its bookkeeping.
                let from = reported().map(|kept| kept / 2);
                self.state = State::Grown { from, size: wanted };
                Some(wanted)
            }
            State::Grown { from, size } if wanted > size => {
                self.state = State::Grown { from, size: wanted };
                Some(wanted)
            }
            State::Grown { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn grows_once_for_long_paths_and_goes_back_when_none_is_left() {
        let mut sizer = BufferSizer::new(Some(MIB));
        assert_eq!(
            sizer.resize(0, 0, || Some(212_992)),
            None,
            "short paths: as started"
        );
        assert_eq!(sizer.resize(1, 0, || Some(212_992)), Some(MIB));
        assert_eq!(sizer.resize(2, 0, || unreachable!()), None, "grown already");
        assert_eq!(sizer.resize(0, 0, || unreachable!()), Some(106_496), "back");
        assert_eq!(sizer.resize(0, 0, || unreachable!()), None);
        assert_eq!(sizer.resize(1, 0, || None), Some(MIB));
        assert_eq!(
            sizer.resize(0, 0, || unreachable!()),
            None,
            "size unknown: they stay"
        );
    }

    #[test]
    fn grows_to_twice_the_largest_flight_in_powers_of_two_up_to_the_most() {
        let mut sizer = BufferSizer::new(Some(MIB));
        assert_eq!(sizer.resize(1, 100_000, || Some(212_992)), Some(MIB));
        assert_eq!(sizer.resize(1, MIB / 2, || unreachable!()), None, "fits");
        assert_eq!(
            sizer.resize(1, MIB / 2 + 1, || unreachable!()),
            Some(2 * MIB),
            "twice the flight, rounded up"
        );
        assert_eq!(sizer.resize(1, 3 * MIB, || unreachable!()), Some(8 * MIB));
        assert_eq!(
            sizer.resize(1, MIB, || unreachable!()),
            None,
            "never shrinks"
        );
        assert_eq!(
            sizer.resize(1, usize::MAX, || unreachable!()),
            Some(LONG_PATH_BUFFER_MAX)
        );
        assert_eq!(sizer.resize(1, usize::MAX, || unreachable!()), None);
        assert_eq!(sizer.resize(0, 0, || unreachable!()), Some(106_496), "back");
        assert_eq!(
            sizer.resize(1, 0, || Some(212_992)),
            Some(MIB),
            "a new long path starts again from the least"
        );
    }

    #[test]
    fn a_least_above_the_most_is_kept() {
        let mut sizer = BufferSizer::new(Some(32 * MIB));
        assert_eq!(sizer.resize(1, usize::MAX, || None), Some(32 * MIB));
    }

    #[test]
    fn without_a_long_size_it_never_resizes() {
        let mut sizer = BufferSizer::new(None);
        assert_eq!(sizer.resize(3, MIB, || unreachable!()), None);
        assert_eq!(sizer.resize(0, 0, || unreachable!()), None);
    }
}
