//! glommio registers memory with `io_uring`, and the kernel counts it against
//! `RLIMIT_MEMLOCK`. With N executors in one process, N times the default (10 MiB each)
//! overflows the common 8 MiB limit. This module raises the soft limit to the hard one where
//! it is lower, then sizes each core's I/O memory within what is left, or says what to do.

use std::fmt;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The least I/O memory glommio gives an executor (it rounds smaller requests up).
pub(crate) const MIN_IO_MEMORY: u64 = 64 * 1024;

/// An allowance per executor beside its I/O memory for what else the kernel may count (ring
/// bookkeeping on kernels that charge it to `RLIMIT_MEMLOCK`); an estimate, not measured
/// per kernel. Two cores start within 8 MiB here (kernel 6.18).
pub(crate) const PER_CORE_OVERHEAD: u64 = 256 * 1024;

/// `RLIMIT_MEMLOCK` is too small for this many cores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemlockError {
    /// The limit in force, in bytes (after trying to raise it to the hard limit).
    pub limit: u64,
    /// Cores asked for.
    pub cores: usize,
    /// Bytes those cores need at least.
    pub needed: u64,
}

impl fmt::Display for MemlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "locked-memory limit (RLIMIT_MEMLOCK) is {} KiB but io_uring needs at least {} KiB \
             for {} cores: raise it (`ulimit -l {}` as root, `LimitMEMLOCK=` in a systemd \
             unit, `memlock` in /etc/security/limits.conf) or run on fewer cores (--cores)",
            self.limit / 1024,
            self.needed.div_ceil(1024),
            self.cores,
            self.needed.div_ceil(1024),
        )
    }
}

impl std::error::Error for MemlockError {}

/// Raises the soft `RLIMIT_MEMLOCK` to the hard limit if it is lower, and returns the limit
/// in force (`u64::MAX` for unlimited). If reading or raising fails, the current soft limit
/// (or unlimited, if even reading fails) is what the caller works with.
fn raise_limit() -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) else {
        return u64::MAX;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).is_ok() {
        tracing::debug!(
            from = soft,
            to = hard,
            "raised RLIMIT_MEMLOCK to its hard limit"
        );
        return hard;
    }
    soft
}

/// I/O memory per core for `cores` executors: `wanted`, or less to fit the limit.
pub(crate) fn io_memory_per_core(cores: usize, wanted: u64) -> Result<u64, MemlockError> {
    size_within(raise_limit(), cores, wanted)
}

/// The sizing rule, apart from the system call: every core gets its overhead plus an equal
/// share of the rest, at most `wanted`, at least [`MIN_IO_MEMORY`].
pub(crate) fn size_within(limit: u64, cores: usize, wanted: u64) -> Result<u64, MemlockError> {
    let count = u64::try_from(cores.max(1)).unwrap_or(u64::MAX);
    let needed = count.saturating_mul(MIN_IO_MEMORY + PER_CORE_OVERHEAD);
    if limit < needed {
        return Err(MemlockError {
            limit,
            cores,
            needed,
        });
    }
    let share = limit / count - PER_CORE_OVERHEAD;
    Ok(share.min(wanted).max(MIN_IO_MEMORY))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    #[test]
    fn the_share_fits_the_limit_and_never_exceeds_the_wish() {
        // 8 MiB, 2 cores: each gets 4 MiB minus overhead, capped at the wish.
        assert_eq!(size_within(8192 * KIB, 2, 1024 * KIB), Ok(1024 * KIB));
        let share = size_within(8192 * KIB, 2, 10 * 1024 * KIB).expect("fits");
        assert!(2 * (share + PER_CORE_OVERHEAD) <= 8192 * KIB);
        assert_eq!(size_within(u64::MAX, 64, 512 * KIB), Ok(512 * KIB));
    }

    #[test]
    fn too_small_a_limit_says_what_to_do() {
        let error = size_within(64 * KIB, 4, 512 * KIB).expect_err("too small");
        assert_eq!(error.cores, 4);
        let text = error.to_string();
        assert!(text.contains("ulimit -l"), "{text}");
        assert!(text.contains("--cores"), "{text}");
    }
}
