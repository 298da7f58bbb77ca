//! Connection timers in one ordered set, so that `poll_timeout` and `handle_timeout` cost
//! O(log n) per connection touched instead of a scan of every connection.
//!
//! A connection's deadline is the earliest of quiche's timer, its held packet's release
//! time and its keep-alive. Each of them changes only when the engine calls into that
//! connection: quiche moves its timers in `recv`, `send`, `on_timeout` and `close`; the
//! held packet and the keep-alive change in `poll_transmit` and `handle_timeout`. The
//! endpoint refreshes a connection's entry after each such call ([`Endpoint::refresh_timer`]).
//! Debug builds check every `poll_timeout` against a full scan.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Conn, Endpoint};

/// Every connection's deadline, earliest first, as `(deadline, handle)`.
#[derive(Default)]
pub(super) struct ConnTimers {
    set: BTreeSet<(Instant, u64)>,
}

impl ConnTimers {
    /// The earliest deadline of any connection.
    pub(super) fn first(&self) -> Option<Instant> {
        self.set.first().map(|&(at, _)| at)
    }

    /// Connections whose deadline is at or before `by`.
    pub(super) fn due(&self, by: Instant) -> Vec<u64> {
        self.set
            .iter()
            .take_while(|&&(at, _)| at <= by)
            .map(|&(_, handle)| handle)
            .collect()
    }

    fn replace(&mut self, handle: u64, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            self.set.remove(&(at, handle));
        }
        if let Some(at) = new {
            self.set.insert((at, handle));
        }
    }
}

impl Conn {
    /// The earliest of this connection's timers, computed afresh.
    pub(super) fn deadline(&self) -> Option<Instant> {
        [
            self.wire.timeout_instant(),
            self.held.release_at(),
            self.lead.ends_at(),
            self.keep_alive_at.filter(|_| self.http.is_some()),
            self.credit.recheck_at(),
            self.ack.due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Endpoint {
    /// Brings a connection's entry in the timer set up to date (after any call into it).
    pub(super) fn refresh_timer(&mut self, handle: u64) {
        let Some(conn) = self.conns.get_mut(handle) else {
            return;
        };
        let new = conn.deadline();
        let old = std::mem::replace(&mut conn.timer, new);
        self.conn_timers.replace(handle, old, new);
    }

    /// Drops a removed connection's entry.
    pub(super) fn forget_timer(&mut self, handle: u64, timer: Option<Instant>) {
        self.conn_timers.replace(handle, timer, None);
    }

    /// The earliest connection deadline by a scan of every connection: what the set must
    /// agree with.
    pub(super) fn scanned_conn_deadline(&self) -> Option<Instant> {
        self.conns.values().filter_map(Conn::deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of updates leaves the set agreeing with a plain map of deadlines:
        /// the same earliest deadline and the same due connections.
        #[test]
        fn the_set_agrees_with_a_scan(
            updates in proptest::collection::vec((0u64..16, proptest::option::of(0u64..50)), 0..200),
            by in 0u64..60,
        ) {
            let base = Instant::now();
            let at = |ms: u64| base + Duration::from_millis(ms);
            let mut timers = ConnTimers::default();
            let mut naive: HashMap<u64, Option<Instant>> = HashMap::new();
            for (handle, deadline) in updates {
                let old = naive.get(&handle).copied().flatten();
                let new = deadline.map(at);
                timers.replace(handle, old, new);
                naive.insert(handle, new);
                prop_assert_eq!(timers.first(), naive.values().flatten().min().copied());
            }
            let mut due = timers.due(at(by));
            due.sort_unstable();
            let mut expected: Vec<u64> = naive
                .iter()
                .filter(|(_, deadline)| deadline.is_some_and(|d| d <= at(by)))
                .map(|(&handle, _)| handle)
                .collect();
            expected.sort_unstable();
            prop_assert_eq!(due, expected);
        }
    }
}
