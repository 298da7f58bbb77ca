//! Client lanes (`veil_engine::lanes`): a host that runs several client endpoints to one
//! edge, each with its own UDP socket and thread, asks a `veil_lanes` which of them a new
//! tunnel goes to, so that small tunnels keep off the lane that carries a download. The
//! host counts each lane's traffic itself (the bytes of the datagrams it hands that
//! endpoint and sends for it) and passes the counters at every pick, with each lane's
//! open tunnels (`veil_endpoint_stats`' `tunnels`) if it calls `veil_lanes_pick_counting`.

use std::num::NonZeroUsize;

use veil_engine::lanes::LanePicker;

use crate::clock::Clock;
use crate::panic::boundary;
use crate::ptr;
use crate::result::veil_result::{self, VEIL_ERR_INVALID_ARGUMENT, VEIL_ERR_NULL, VEIL_OK};

/// The most lanes a picker takes: more would only spread tunnels over connections that
/// each cost memory at both ends.
pub const VEIL_LANES_MAX: usize = 64;

/// A lane picker (opaque). Not thread-safe: one thread picks at a time.
#[allow(non_camel_case_types)]
pub struct veil_lanes {
    picker: LanePicker,
    clock: Clock,
}

/// Creates a picker for `count` lanes (1 to `VEIL_LANES_MAX`) and writes it to `*out`; the
/// caller owns it (free it with `veil_lanes_free`). `now_ns` is the caller's monotonic
/// clock, as for endpoints.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_INVALID_ARGUMENT` (`count` out of range).
///
/// # Safety
/// `out` must be NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_lanes_new(
    count: usize,
    now_ns: u64,
    out: *mut *mut veil_lanes,
) -> veil_result {
    boundary(|| {
        let out = ptr::out(out)?;
        let count = NonZeroUsize::new(count)
            .filter(|count| count.get() <= VEIL_LANES_MAX)
            .ok_or(VEIL_ERR_INVALID_ARGUMENT)?;
        let clock = Clock::new(now_ns);
        let lanes = Box::new(veil_lanes {
            picker: LanePicker::new(count, clock.instant(now_ns)),
            clock,
        });
        // SAFETY: `out` is checked non-NULL and aligned; the caller promises it writable.
        unsafe { ptr::put(out, Box::into_raw(lanes)) };
        Ok(VEIL_OK)
    })
}

/// The lane for a new tunnel, written to `*lane`: the one that has moved the fewest bytes
/// lately, quiet lanes in turn. `moved` holds `count` counters, one per lane in order:
/// the bytes that lane's endpoint has received and sent so far (a counter that only
/// grows; one that goes back counts from zero). `count` must be the picker's.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_INVALID_ARGUMENT` (`count` is not the
/// picker's, or `moved` is misaligned).
///
/// # Safety
/// `lanes` must be NULL or live; `moved` NULL or valid for reads of `count` counters;
/// `lane` NULL or valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_lanes_pick(
    lanes: *mut veil_lanes,
    now_ns: u64,
    moved: *const u64,
    count: usize,
    lane: *mut usize,
) -> veil_result {
    // SAFETY: the caller's promises, passed on; no tunnel counts.
    unsafe { pick(lanes, now_ns, moved, None, count, lane) }
}

/// `veil_lanes_pick`, also told each lane's open tunnels: `tunnels` holds `count` values,
/// the `tunnels` of each lane's `veil_endpoint_stats` read just before. A lane with none
/// forgets the bytes it moved (they belonged to tunnels that have ended), so a small
/// tunnel opened just after a download began keeps off the download's lane even when
/// another lane moved more bytes for small exchanges that have just ended. Prefer it to
/// `veil_lanes_pick` when the host can read the counts.
///
/// Results: `VEIL_OK`; `VEIL_ERR_NULL`; `VEIL_ERR_INVALID_ARGUMENT` (`count` is not the
/// picker's, or `moved` or `tunnels` is misaligned).
///
/// # Safety
/// As `veil_lanes_pick`; `tunnels` NULL or valid for reads of `count` counts.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_lanes_pick_counting(
    lanes: *mut veil_lanes,
    now_ns: u64,
    moved: *const u64,
    tunnels: *const u64,
    count: usize,
    lane: *mut usize,
) -> veil_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { pick(lanes, now_ns, moved, Some(tunnels), count, lane) }
}

/// Both picks: `tunnels` is `None` for `veil_lanes_pick`.
///
/// # Safety
/// As `veil_lanes_pick_counting`.
unsafe fn pick(
    lanes: *mut veil_lanes,
    now_ns: u64,
    moved: *const u64,
    tunnels: Option<*const u64>,
    count: usize,
    lane: *mut usize,
) -> veil_result {
    boundary(|| {
        // SAFETY: NULL is checked; the caller promises a live picker used by nothing else.
        let lanes = unsafe { lanes.as_mut() }.ok_or(VEIL_ERR_NULL)?;
        let out = ptr::out(lane)?;
        // SAFETY: the caller promises `count` readable counters at `moved`.
        let moved = unsafe { ptr::counters(moved, count) }?;
        if moved.len() != lanes.picker.lanes() {
            return Err(VEIL_ERR_INVALID_ARGUMENT);
        }
        let now = lanes.clock.instant(now_ns);
        let picked = match tunnels {
            Some(tunnels) => {
                // SAFETY: the caller promises `count` readable counts at `tunnels`.
                let open: Vec<usize> = unsafe { ptr::counters(tunnels, count) }?
                    .iter()
                    .map(|&open| usize::try_from(open).unwrap_or(usize::MAX))
                    .collect();
                lanes.picker.pick_counting(now, moved, &open)
            }
            None => lanes.picker.pick(now, moved),
        };
        // SAFETY: `out` is checked non-NULL and aligned; the caller promises it writable.
        unsafe { ptr::put(out, picked) };
        Ok(VEIL_OK)
    })
}

/// Frees a picker. NULL is ignored.
///
/// # Safety
/// `lanes` must be NULL or a picker from `veil_lanes_new` not freed before; it must not be
/// used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn veil_lanes_free(lanes: *mut veil_lanes) {
    if lanes.is_null() {
        return;
    }
    let _ = boundary(|| {
        // SAFETY: non-NULL and, as the caller promises, from Box::into_raw in
        // veil_lanes_new and not freed before.
        drop(unsafe { Box::from_raw(lanes) });
        Ok(VEIL_OK)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_c_host_picks_the_quiet_lane_and_bad_arguments_are_refused() {
        let mut lanes: *mut veil_lanes = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        let created = unsafe { veil_lanes_new(2, 5 * MS, &raw mut lanes) };
        assert_eq!(created, VEIL_OK);
        let mut lane = usize::MAX;
        // Lane 0 moves a download: every pick goes to lane 1.
        for step in 1..=5u64 {
            let moved = [step * 8_000_000, step * 1_000];
            // SAFETY: a live picker, two counters, a valid out-pointer.
            let result = unsafe {
                veil_lanes_pick(lanes, (5 + step) * MS, moved.as_ptr(), 2, &raw mut lane)
            };
            assert_eq!((result, lane), (VEIL_OK, 1), "step {step}");
        }
        let moved = [0u64; 3];
        // SAFETY: as above; the count is wrong on purpose.
        let wrong = unsafe { veil_lanes_pick(lanes, 20 * MS, moved.as_ptr(), 3, &raw mut lane) };
        assert_eq!(wrong, VEIL_ERR_INVALID_ARGUMENT);
        // SAFETY: NULL counters with a count, and a NULL picker: refused, nothing read.
        unsafe {
            assert_eq!(
                veil_lanes_pick(lanes, 20 * MS, std::ptr::null(), 2, &raw mut lane),
                VEIL_ERR_NULL
            );
            assert_eq!(
                veil_lanes_pick(std::ptr::null_mut(), 0, moved.as_ptr(), 2, &raw mut lane),
                VEIL_ERR_NULL
            );
            assert_eq!(
                veil_lanes_new(0, 0, &raw mut lanes),
                VEIL_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                veil_lanes_new(VEIL_LANES_MAX + 1, 0, &raw mut lanes),
                VEIL_ERR_INVALID_ARGUMENT
            );
            veil_lanes_free(lanes);
            veil_lanes_free(std::ptr::null_mut());
        }
    }

    #[test]
    fn a_c_host_that_counts_tunnels_keeps_small_tunnels_off_a_new_download() {
        let mut lanes: *mut veil_lanes = std::ptr::null_mut();
        // SAFETY: a valid out-pointer.
        assert_eq!(unsafe { veil_lanes_new(2, 0, &raw mut lanes) }, VEIL_OK);
        let mut lane = usize::MAX;
        let mut pick = |at: u64, moved: [u64; 2], tunnels: [u64; 2]| {
            // SAFETY: a live picker, two counters of each kind, a valid out-pointer.
            let result = unsafe {
                veil_lanes_pick_counting(
                    lanes,
                    at * MS,
                    moved.as_ptr(),
                    tunnels.as_ptr(),
                    2,
                    &raw mut lane,
                )
            };
            assert_eq!(result, VEIL_OK);
            lane
        };
        assert_eq!(pick(0, [0, 0], [0, 0]), 0, "small exchanges");
        // They moved 930 KB and ended; a download goes to lane 1 and has moved 20 KB when
        // the next small tunnel opens.
        assert_eq!(pick(700, [930_000, 0], [0, 0]), 1, "the download");
        assert_eq!(pick(703, [930_000, 20_000], [0, 1]), 0, "off the download");
        let moved = [0u64; 2];
        // SAFETY: NULL counts with a count: refused, nothing read.
        let refused = unsafe {
            veil_lanes_pick_counting(lanes, 0, moved.as_ptr(), std::ptr::null(), 2, &raw mut lane)
        };
        assert_eq!(refused, VEIL_ERR_NULL);
        // SAFETY: a picker from veil_lanes_new, freed once.
        unsafe { veil_lanes_free(lanes) };
    }
}
