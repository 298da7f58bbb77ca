//! Process limits a proxy needs raised.

/// Raises the soft limit on open files to the hard limit; returns `(before, after)` when
/// it changed.
///
/// Every tunnel holds a socket on each side of a host (a client's application connection,
/// an edge's dial), and the usual soft limit of 1024 would refuse new tunnels long before
/// memory or CPU runs out, with errors far from the cause (`EMFILE` on an accept). The
/// hard limit is what the administrator allows; servers raise the soft one to it at start,
/// as Go's runtime does for every program and nginx with `worker_rlimit_nofile`.
pub fn raise_open_files() -> Option<(u64, u64)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        // Unlimited (`None`) already: nothing to raise.
        return None;
    };
    if soft >= hard {
        return None;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    setrlimit(Resource::Nofile, raised).ok()?;
    Some((soft, hard))
}

#[cfg(test)]
mod tests {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    #[test]
    fn a_lowered_soft_limit_on_open_files_is_raised_to_the_hard_one() {
        let limit = getrlimit(Resource::Nofile);
        let Some(hard) = limit.maximum else {
            return; // unlimited: nothing this machine lets us test
        };
        // Lowering the soft limit is always allowed; this test process keeps few files.
        let lowered = Rlimit {
            current: Some(hard.min(512)),
            maximum: Some(hard),
        };
        setrlimit(Resource::Nofile, lowered).expect("lowering the soft limit");
        let changed = super::raise_open_files();
        if hard > 512 {
            assert_eq!(changed, Some((512, hard)));
        }
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }
}
