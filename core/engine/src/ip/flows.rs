//! The flows inside one CONNECT-IP tunnel, each with the verdict the `ip_flow` hook gave
//! its first packet, so that the hook is asked once per flow and not once per packet.
//!
//! A flow is what [`FlowKey`] names: UDP and TCP by protocol, addresses and ports, ICMP
//! echo by addresses and Identifier. Packets with no key (ICMP errors, fragments, other
//! protocols) are not flows and are not kept here.
//!
//! # Decisions
//!
//! - **Bounded.** At most `capacity` flows per tunnel (`EdgeConfig::ip_flows_per_tunnel`).
//!   A new flow when the table is full evicts the least recently seen one rather than
//!   being refused: a client with many short flows (a NAT'd network behind one tunnel)
//!   keeps working, and an evicted flow's next packet is simply a new flow, judged again.
//!   The caller counts evictions (`EndpointStats::ip_flows_evicted`). A remembered flow
//!   costs about 270 bytes (a 104-byte slot, an 80-byte map entry, and the slack of both
//!   when they grow): a full table of 4096, about 1 MiB. Nothing is allocated before the
//!   first flow.
//! - **Idle flows are forgotten** after `idle` without a packet (the tunnel's UDP idle
//!   timeout, `QuicConfig::udp_idle_timeout`, 2 minutes by default), for every protocol:
//!   TCP flows too, whatever their FIN or RST said, which keeps one rule for all. A flow
//!   that resumes later is judged again.
//! - **Seen** means a packet of the flow went through the table; the caller passes only
//!   the packets the client sends, the direction the hook judges.
//! - **O(1) per packet.** A hash map from key to a slot, and the slots in a doubly linked
//!   list from least to most recently seen: a packet moves its flow to the newest end,
//!   eviction and expiry take from the oldest end (each flow is forgotten at most once,
//!   so expiry costs O(1) amortised). The map hashes with the standard library's keyed
//!   hasher (random per table): clients choose their ports, and must not be able to
//!   choose collisions.
//! - **Pure.** The clock is passed in. A `now` earlier than the newest flow's last sight
//!   counts as that sight, so that the list stays ordered whatever the caller's clock does.

use crate::map::HashMap;
use std::time::{Duration, Instant};

use veil_proto::ip::FlowKey;

/// No slot.
const NIL: usize = usize::MAX;

/// One remembered flow, a link in the recency list.
#[derive(Debug, Clone)]
struct Slot<V> {
    key: FlowKey,
    value: V,
    seen: Instant,
    /// The slot seen just before this one (toward the oldest), or [`NIL`].
    older: usize,
    /// The slot seen just after this one (toward the newest), or [`NIL`].
    newer: usize,
}

/// The flows of one tunnel and what was decided about each.
#[derive(Debug, Clone)]
pub(crate) struct FlowTable<V> {
    index: HashMap<FlowKey, usize>,
    slots: Vec<Slot<V>>,
    oldest: usize,
    newest: usize,
    capacity: usize,
    idle: Duration,
}

/// What [`FlowTable::insert`] did besides remembering the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Inserted {
    /// Flows forgotten because they were idle.
    pub(crate) expired: usize,
    /// Whether the least recently seen flow made room for this one.
    pub(crate) evicted: bool,
}

impl<V: Copy> FlowTable<V> {
    /// An empty table of at most `capacity` flows (at least one), forgetting flows idle for
    /// `idle`. Allocates nothing until the first flow.
    pub(crate) fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            index: HashMap::default(),
            slots: Vec::new(),
            oldest: NIL,
            newest: NIL,
            capacity: capacity.max(1),
            idle,
        }
    }

    /// How many flows are remembered.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The value of `key`'s flow, which is now seen at `now` (the newest); `None` for a
    /// flow not remembered (new, idle too long, or evicted). Idle flows are forgotten
    /// first.
    pub(crate) fn touch(&mut self, key: &FlowKey, now: Instant) -> Option<V> {
        self.expire(now);
        let &at = self.index.get(key)?;
        let now = self.clamp(now);
        self.unlink(at);
        self.push_newest(at);
        let slot = self.slots.get_mut(at)?;
        slot.seen = now;
        Some(slot.value)
    }

    /// Remembers `key`'s flow with `value`, seen at `now` (replacing the value of a flow
    /// already remembered). Idle flows are forgotten first; then, if the table is full,
    /// the least recently seen flow.
    pub(crate) fn insert(&mut self, key: FlowKey, value: V, now: Instant) -> Inserted {
        let mut done = Inserted {
            expired: self.expire(now),
            evicted: false,
        };
        let now = self.clamp(now);
        if let Some(&at) = self.index.get(&key) {
            self.unlink(at);
            self.push_newest(at);
            if let Some(slot) = self.slots.get_mut(at) {
                slot.value = value;
                slot.seen = now;
            }
            return done;
        }
        if self.slots.len() >= self.capacity {
            self.remove(self.oldest);
            done.evicted = true;
        }
        let at = self.slots.len();
        self.slots.push(Slot {
            key,
            value,
            seen: now,
            older: NIL,
            newer: NIL,
        });
        self.index.insert(key, at);
        self.push_newest(at);
        done
    }

    /// Forgets the flows idle at `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut forgotten = 0;
        while let Some(slot) = self.slots.get(self.oldest) {
            if now.saturating_duration_since(slot.seen) < self.idle {
                break;
            }
            self.remove(self.oldest);
            forgotten += 1;
        }
        forgotten
    }

    /// `now`, or the newest flow's last sight if that is later.
    fn clamp(&self, now: Instant) -> Instant {
        self.slots
            .get(self.newest)
            .map_or(now, |newest| now.max(newest.seen))
    }

    /// Takes slot `at` out of the recency list (it stays in `slots`).
    fn unlink(&mut self, at: usize) {
        let Some(slot) = self.slots.get(at) else {
            return;
        };
        let (older, newer) = (slot.older, slot.newer);
        match self.slots.get_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        match self.slots.get_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
    }

    /// Puts slot `at`, unlinked, at the newest end of the recency list.
    fn push_newest(&mut self, at: usize) {
        let previous = self.newest;
        if let Some(slot) = self.slots.get_mut(at) {
            slot.older = previous;
            slot.newer = NIL;
        } else {
            return;
        }
        match self.slots.get_mut(previous) {
            Some(p) => p.newer = at,
            None => self.oldest = at,
        }
        self.newest = at;
    }

    /// Forgets slot `at`: unlinked, removed from the index, and the last slot moved into
    /// its place (its neighbours and its index entry updated), so that `slots` stays dense.
    fn remove(&mut self, at: usize) {
        if at >= self.slots.len() {
            return;
        }
        self.unlink(at);
        let gone = self.slots.swap_remove(at);
        self.index.remove(&gone.key);
        let Some(moved) = self.slots.get(at) else {
            return; // `at` was the last slot
        };
        let (older, newer, key) = (moved.older, moved.newer, moved.key);
        match self.slots.get_mut(older) {
            Some(o) => o.newer = at,
            None => self.oldest = at,
        }
        match self.slots.get_mut(newer) {
            Some(n) => n.older = at,
            None => self.newest = at,
        }
        if let Some(entry) = self.index.get_mut(&key) {
            *entry = at;
        }
    }

    /// Checks every invariant: the index and the slots agree, the list runs through every
    /// slot once, oldest to newest, in non-decreasing order of sight, within capacity.
    #[cfg(test)]
    fn check(&self) {
        assert!(self.slots.len() <= self.capacity);
        assert_eq!(self.index.len(), self.slots.len());
        for (key, &at) in &self.index {
            assert_eq!(self.slots[at].key, *key);
        }
        let mut at = self.oldest;
        let mut previous = NIL;
        let mut walked = 0;
        while at != NIL {
            let slot = &self.slots[at];
            assert_eq!(slot.older, previous);
            if let Some(p) = self.slots.get(previous) {
                assert!(p.seen <= slot.seen);
            }
            previous = at;
            at = slot.newer;
            walked += 1;
            assert!(walked <= self.slots.len());
        }
        assert_eq!(previous, self.newest);
        assert_eq!(walked, self.slots.len());
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use proptest::prelude::*;
    use veil_proto::ip::FlowProtocol;

    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            protocol: FlowProtocol::Udp,
            source: SocketAddr::from(([10, 89, 0, 2], port)),
            destination: SocketAddr::from(([192, 0, 2, 1], 53)),
        }
    }

    const IDLE: Duration = Duration::from_secs(120);

    #[test]
    fn a_flow_is_remembered_with_its_value() {
        let start = Instant::now();
        let mut table = FlowTable::new(4, IDLE);
        assert_eq!(table.touch(&key(1), start), None);
        assert_eq!(table.insert(key(1), 'a', start), Inserted::default());
        assert_eq!(table.touch(&key(1), start), Some('a'));
        assert_eq!(table.touch(&key(2), start), None);
        // The other direction, or another protocol, is another flow.
        assert_eq!(table.touch(&key(1).reversed(), start), None);
        let tcp = FlowKey {
            protocol: FlowProtocol::Tcp,
            ..key(1)
        };
        assert_eq!(table.touch(&tcp, start), None);
        // Inserting again replaces the value.
        table.insert(key(1), 'b', start);
        assert_eq!(table.touch(&key(1), start), Some('b'));
        assert_eq!(table.len(), 1);
        table.check();
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen() {
        let start = Instant::now();
        let mut table = FlowTable::new(3, IDLE);
        for port in 1..=3 {
            table.insert(
                key(port),
                port,
                start + Duration::from_secs(u64::from(port)),
            );
        }
        // Seeing flow 1 again makes flow 2 the least recently seen.
        assert_eq!(
            table.touch(&key(1), start + Duration::from_secs(10)),
            Some(1)
        );
        let done = table.insert(key(4), 4, start + Duration::from_secs(11));
        assert!(done.evicted);
        assert_eq!(table.len(), 3);
        assert_eq!(table.touch(&key(2), start + Duration::from_secs(12)), None);
        for port in [1, 3, 4] {
            assert_eq!(
                table.touch(&key(port), start + Duration::from_secs(12)),
                Some(port)
            );
        }
        table.check();
    }

    #[test]
    fn idle_flows_are_forgotten() {
        let start = Instant::now();
        let mut table = FlowTable::new(8, IDLE);
        table.insert(key(1), (), start);
        table.insert(key(2), (), start + Duration::from_secs(60));
        // Just short of the timeout: both still there, and flow 1 seen again.
        assert_eq!(
            table.touch(&key(1), start + Duration::from_millis(119_999)),
            Some(())
        );
        // Flow 2's timeout passes; flow 1 was seen since.
        let later = start + Duration::from_secs(60) + IDLE;
        assert_eq!(table.touch(&key(2), later), None);
        assert_eq!(table.len(), 1);
        assert_eq!(table.touch(&key(1), later), Some(()));
        assert_eq!(table.expire(later + IDLE), 1);
        assert_eq!(table.len(), 0);
        // Insert reports what it forgot on the way.
        table.insert(key(3), (), later);
        let done = table.insert(key(4), (), later + IDLE);
        assert_eq!(done.expired, 1);
        table.check();
    }

    #[test]
    fn a_clock_going_backwards_keeps_the_order() {
        let start = Instant::now() + Duration::from_secs(1000);
        let mut table = FlowTable::new(2, IDLE);
        table.insert(key(1), (), start);
        let earlier = start
            .checked_sub(Duration::from_secs(5))
            .expect("a clock this old");
        table.insert(key(2), (), earlier);
        table.check();
        // Flow 1 is the oldest, and goes first.
        assert!(table.insert(key(3), (), start).evicted);
        assert_eq!(table.touch(&key(1), start), None);
        assert_eq!(table.touch(&key(2), start), Some(()));
        table.check();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Touch(u16),
        Insert(u16, u8),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..24_u16).prop_map(Op::Touch),
            (0..24_u16, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (0..90_u64).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Against a model (a list, oldest first, scanned each time): the same answers,
        /// the same evictions and expiries, never more than `capacity` flows, and the
        /// internal links always consistent.
        #[test]
        fn behaves_like_a_bounded_recency_list(
            capacity in 1..8_usize,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let idle = Duration::from_secs(100);
            let mut now = Instant::now();
            let mut table = FlowTable::new(capacity, idle);
            let mut model: Vec<(u16, u8, Instant)> = Vec::new();
            let model_expire = |model: &mut Vec<(u16, u8, Instant)>, now: Instant| {
                let before = model.len();
                model.retain(|&(_, _, seen)| now.duration_since(seen) < idle);
                before - model.len()
            };
            for op in ops {
                match op {
                    Op::Wait(seconds) => now += Duration::from_secs(seconds),
                    Op::Touch(k) => {
                        model_expire(&mut model, now);
                        let expected = model.iter().position(|e| e.0 == k).map(|at| {
                            let (k, v, _) = model.remove(at);
                            model.push((k, v, now));
                            v
                        });
                        prop_assert_eq!(table.touch(&key(k), now), expected);
                    }
                    Op::Insert(k, v) => {
                        let expired = model_expire(&mut model, now);
                        let mut evicted = false;
                        if let Some(at) = model.iter().position(|e| e.0 == k) {
                            model.remove(at);
                        } else if model.len() == capacity {
                            model.remove(0);
                            evicted = true;
                        }
                        model.push((k, v, now));
                        prop_assert_eq!(table.insert(key(k), v, now), Inserted { expired, evicted });
                    }
                }
                table.check();
                prop_assert!(table.len() <= capacity);
                prop_assert_eq!(table.len(), model.len());
            }
            table.expire(now);
            model_expire(&mut model, now);
            prop_assert_eq!(table.len(), model.len());
            for (k, v, _) in model {
                prop_assert_eq!(table.touch(&key(k), now), Some(v));
            }
        }
    }
}
