//! Client: which of several lanes a new tunnel goes to.
//!
//! A lane is a client endpoint with a driver, a UDP socket and a QUIC connection of its
//! own. Round trips that share a client driver with a saturating bulk transfer wait behind
//! the bulk's packets, in the driver's work and in its socket, whatever QUIC connection
//! carries them: a second connection on the same driver gives them nothing, a driver of
//! their own gives back their idle round trip (docs/PERFORMANCE.md, "What the small
//! exchange needs of its own"). So a host may run several client endpoints to one edge
//! and place each new tunnel on a lane that is not busy moving bulk.
//!
//! [`LanePicker`] is that placement, kept in the engine so that every host makes it the
//! same way: the host tells it how many bytes each lane has moved so far (a counter its
//! driver keeps) and, if it can, how many tunnels each lane has open now, and it answers
//! with the lane for the next tunnel. A tunnel stays on its lane for its whole life: QUIC
//! streams cannot move between connections.
//!
//! Bytes alone cannot tell a lane that carried many small exchanges which just ended from
//! one whose download has just begun: for the first few milliseconds the first has moved
//! more. Only the second will go on moving. So a lane with no tunnel open forgets the
//! bytes it moved (docs/PERFORMANCE.md, "The lane picker counts open tunnels").

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// How fast a lane's past traffic fades from its score: bytes moved this long ago count
/// half. Short enough that a finished download stops repelling new tunnels within a
/// second or two, long enough that a bulk transfer between two bursts still counts.
pub const LANE_HALF_LIFE: Duration = Duration::from_millis(250);

/// Lanes whose scores are within this many bytes of the quietest one are all quiet: new
/// tunnels take turns between them rather than all going to the one that happens to be a
/// few requests quieter. A bulk transfer's lane scores megabytes.
pub const QUIET_BYTES: f64 = 256.0 * 1024.0;

/// What a tunnel just placed counts on its lane's score, before it moves anything: two
/// tunnels opened together (a bulk transfer and a small one, say) then go to different
/// lanes even when one lane is still warm from earlier traffic and the other is cold.
pub const PICK_BYTES: f64 = 128.0 * 1024.0;

/// Places new tunnels on the least busy of a client's lanes (see the module).
#[derive(Debug, Clone)]
pub struct LanePicker {
    lanes: Vec<Lane>,
    /// The lane after the last one picked: ties among quiet lanes are taken in turn.
    turn: usize,
}

/// What the picker knows of one lane.
#[derive(Debug, Clone)]
struct Lane {
    /// The lane's byte counter at the last look.
    seen: u64,
    /// Bytes moved lately, each byte's weight halving every [`LANE_HALF_LIFE`].
    moved: f64,
    /// [`PICK_BYTES`] for each tunnel placed here lately, fading as `moved` does: the
    /// weight of tunnels that have not moved anything yet, which a lane keeps even when
    /// its host has not counted them among its open tunnels yet.
    placed: f64,
    /// When the scores were last brought up to date.
    at: Instant,
}

impl LanePicker {
    /// A picker for `count` lanes, none of which has moved anything.
    pub fn new(count: NonZeroUsize, now: Instant) -> Self {
        let lane = Lane {
            seen: 0,
            moved: 0.0,
            placed: 0.0,
            at: now,
        };
        Self {
            lanes: vec![lane; count.get()],
            turn: 0,
        }
    }

    /// How many lanes there are.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lane for a new tunnel: among the quiet lanes (within [`QUIET_BYTES`] of the
    /// quietest score), the next in turn; the lane picked scores [`PICK_BYTES`] more.
    /// `moved[i]` is the bytes lane `i` has sent and received so far; a counter smaller
    /// than at the last look (a lane restarted) counts from zero. Lanes missing from
    /// `moved` keep their last count.
    ///
    /// For a host that does not count its lanes' open tunnels: prefer
    /// [`pick_counting`](Self::pick_counting), which tells a download that has just begun
    /// from small exchanges that have just ended.
    pub fn pick(&mut self, now: Instant, moved: &[u64]) -> usize {
        self.pick_with(now, moved, None)
    }

    /// [`pick`](Self::pick), also told how many tunnels each lane has open now
    /// (`tunnels[i]` for lane `i`, as its driver last counted them; a lane missing from
    /// `tunnels` counts as having some). A lane with none forgets the bytes it moved: they
    /// belonged to tunnels that have ended and say nothing of what it will carry next.
    /// What it keeps is the weight of the tunnels placed on it lately, so a tunnel the
    /// host has not counted yet still counts.
    pub fn pick_counting(&mut self, now: Instant, moved: &[u64], tunnels: &[usize]) -> usize {
        self.pick_with(now, moved, Some(tunnels))
    }

    fn pick_with(&mut self, now: Instant, moved: &[u64], tunnels: Option<&[usize]>) -> usize {
        for (index, lane) in self.lanes.iter_mut().enumerate() {
            let counter = moved.get(index).copied().unwrap_or(lane.seen);
            lane.update(now, counter);
            if tunnels.and_then(|open| open.get(index)) == Some(&0) {
                lane.moved = 0.0;
            }
        }
        let quietest = self
            .lanes
            .iter()
            .map(Lane::score)
            .fold(f64::INFINITY, f64::min);
        let count = self.lanes.len();
        let picked = (0..count)
            .map(|offset| (self.turn + offset) % count)
            .find(|&index| {
                self.lanes
                    .get(index)
                    .is_some_and(|lane| lane.score() <= quietest + QUIET_BYTES)
            })
            .unwrap_or(0);
        self.turn = (picked + 1) % count;
        if let Some(lane) = self.lanes.get_mut(picked) {
            lane.placed += PICK_BYTES;
        }
        picked
    }
}

impl Lane {
    /// How busy the lane looks: bytes moved lately and tunnels placed lately.
    fn score(&self) -> f64 {
        self.moved + self.placed
    }

    /// Decays the scores to `now` and adds what the counter moved since the last look.
    ///
    /// Those bytes moved at some time in between, not all now: each counts the weight it
    /// has on average over the interval (the mean of `0.5^(t / half-life)` over it), so a
    /// lane that moved 600 KB over the last second scores as one that moved it gradually,
    /// not as one that moved it just now.
    fn update(&mut self, now: Instant, counter: u64) {
        let elapsed = now.saturating_duration_since(self.at);
        let halvings = elapsed.as_secs_f64() / LANE_HALF_LIFE.as_secs_f64();
        let decay = 0.5_f64.powf(halvings);
        let spread = if halvings > 1e-6 {
            (1.0 - decay) / (halvings * std::f64::consts::LN_2)
        } else {
            1.0
        };
        let fresh = counter.checked_sub(self.seen).unwrap_or(counter);
        #[allow(clippy::cast_precision_loss)] // a score, not an account: f64 is plenty
        let fresh = fresh as f64;
        self.moved = self.moved * decay + fresh * spread;
        self.placed *= decay;
        self.seen = counter;
        self.at = self.at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(count: usize, now: Instant) -> LanePicker {
        LanePicker::new(NonZeroUsize::new(count).expect("lanes"), now)
    }

    #[test]
    fn quiet_lanes_take_turns() {
        let now = Instant::now();
        let mut lanes = picker(3, now);
        let picks: Vec<usize> = (0..6).map(|_| lanes.pick(now, &[0, 0, 0])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn new_tunnels_avoid_the_lane_that_moves_bulk() {
        let start = Instant::now();
        let mut lanes = picker(2, start);
        assert_eq!(lanes.pick(start, &[0, 0]), 0);
        // Lane 0 carries a download: 40 MB in 100 ms; lane 1 a few small exchanges.
        let mut now = start;
        for step in 1..=10u64 {
            now += Duration::from_millis(10);
            for _ in 0..3 {
                assert_eq!(lanes.pick(now, &[step * 4_000_000, step * 2_000]), 1);
            }
        }
    }

    #[test]
    fn tunnels_opened_together_split_even_when_one_lane_is_warm() {
        let start = Instant::now();
        let mut lanes = picker(2, start);
        // Lane 0 is warm from 300 KB of small exchanges: not quiet beside a cold lane.
        let now = start + Duration::from_millis(10);
        let first = lanes.pick(now, &[300_000, 0]);
        let second = lanes.pick(now, &[300_000, 0]);
        assert_eq!(first, 1);
        assert_eq!(second, 0, "both new tunnels went to the cold lane");
    }

    #[test]
    fn traffic_spread_over_a_second_weighs_less_than_a_burst_just_now() {
        let start = Instant::now();
        let fresh = Lane {
            seen: 0,
            moved: 0.0,
            placed: 0.0,
            at: start,
        };
        // 600 KB counted a second after the last look: moved over four half-lives.
        let mut spread = fresh.clone();
        spread.update(start + Duration::from_secs(1), 600_000);
        // The same 600 KB counted 1 ms after the last look.
        let mut burst = fresh;
        burst.update(start + Duration::from_millis(1), 600_000);
        assert!(
            (200_000.0..210_000.0).contains(&spread.moved),
            "{}",
            spread.moved
        );
        assert!(burst.moved > 598_000.0, "{}", burst.moved);
        // A second later, the burst has faded to a sixteenth.
        burst.update(start + Duration::from_millis(1001), 600_000);
        assert!(
            (37_000.0..38_000.0).contains(&burst.moved),
            "{}",
            burst.moved
        );
    }

    #[test]
    fn a_finished_transfer_stops_repelling_tunnels() {
        let start = Instant::now();
        let mut lanes = picker(2, start);
        let _ = lanes.pick(start, &[0, 0]);
        let later = start + Duration::from_millis(100);
        assert_eq!(lanes.pick(later, &[50_000_000, 0]), 1);
        assert_eq!(lanes.pick(later, &[50_000_000, 0]), 1);
        // Nothing more moved for 4 s: 16 half-lives, 50 MB fades to under 1 KB.
        let quiet = later + Duration::from_secs(4);
        let picks: Vec<usize> = (0..4)
            .map(|_| lanes.pick(quiet, &[50_000_000, 0]))
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
    }

    #[test]
    fn a_restarted_lane_counts_from_zero_and_missing_counters_change_nothing() {
        let start = Instant::now();
        let mut lanes = picker(2, start);
        let now = start + Duration::from_millis(10);
        assert_eq!(lanes.pick(now, &[10_000_000, 2_000_000]), 1);
        assert_eq!(
            lanes.pick(now, &[]),
            1,
            "no counters: lane 0 is still the busier"
        );
        // 3 s later both have faded; lane 1's counter went back (its endpoint restarted)
        // and moved 100 bytes since: quiet, as lane 0 now is.
        let later = now + Duration::from_secs(3);
        let picks: Vec<usize> = (0..4)
            .map(|_| lanes.pick(later, &[10_000_000, 100]))
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
        assert_eq!(lanes.lanes(), 2);
    }

    #[test]
    fn a_download_just_begun_is_busier_than_small_exchanges_just_ended() {
        // docs/PERFORMANCE.md: lane 0 carried 3,000 round trips (930 KB) over the last
        // 0.7 s and their tunnel has closed; a download opens on lane 1 and has moved
        // 20 KB when a small tunnel opens 3 ms later.
        let start = Instant::now();
        let placed_at = start + Duration::from_millis(700);
        let opened_at = placed_at + Duration::from_millis(3);
        let run = |counting: bool| {
            let mut lanes = picker(2, start);
            assert_eq!(lanes.pick(start, &[0, 0]), 0, "the round trips' tunnel");
            let download = if counting {
                lanes.pick_counting(placed_at, &[930_000, 0], &[0, 0])
            } else {
                lanes.pick(placed_at, &[930_000, 0])
            };
            assert_eq!(download, 1, "the download goes to the cold lane");
            if counting {
                lanes.pick_counting(opened_at, &[930_000, 20_000], &[0, 1])
            } else {
                lanes.pick(opened_at, &[930_000, 20_000])
            }
        };
        assert_eq!(run(true), 0, "the small tunnel keeps off the download");
        // Told only bytes, the picker takes the warm lane for the busier one.
        assert_eq!(run(false), 1);
    }

    #[test]
    fn a_tunnel_placed_but_not_yet_counted_still_weighs() {
        let start = Instant::now();
        let mut lanes = picker(2, start);
        let now = start + Duration::from_millis(5);
        // Lane 1 is warm from small exchanges still open; lane 0 is cold.
        assert_eq!(lanes.pick_counting(now, &[0, 300_000], &[0, 2]), 0);
        // The driver has not counted that tunnel yet: lane 0 still says none, and its
        // weight keeps the next tunnel, opened with it, off it.
        assert_eq!(lanes.pick_counting(now, &[0, 300_000], &[0, 2]), 1);
    }

    #[test]
    fn open_tunnels_missing_from_the_count_keep_their_bytes() {
        let start = Instant::now();
        let mut lanes = picker(2, start);
        let now = start + Duration::from_millis(10);
        assert_eq!(lanes.pick_counting(now, &[10_000_000, 0], &[]), 1);
        assert_eq!(lanes.pick_counting(now, &[10_000_000, 0], &[]), 1);
    }

    #[test]
    fn one_lane_is_always_picked() {
        let now = Instant::now();
        let mut lanes = picker(1, now);
        for moved in [0, 5, u64::MAX, 3] {
            assert_eq!(lanes.pick(now, &[moved]), 0);
        }
    }
}
