//! `veil bench` stopped by a signal stops what it started. A bench run by `timeout(1)` or
//! stopped with `kill` gets SIGTERM alone (not its process group), and its edge and
//! clients used to run on without it; with `--loss-percent` its loss rule stayed too.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use support::{Proc, TempDir, bench_child_pids, bench_latency};

/// Bound of the bench's start (its edge and client, debug builds, a busy machine).
const STARTUP: Duration = Duration::from_secs(60);
/// Bound of its stop: each child gets SIGTERM and a drain of 100 ms.
const STOP: Duration = Duration::from_secs(30);

#[test]
fn a_bench_stopped_by_sigterm_stops_its_edge_and_client() -> anyhow::Result<()> {
    let dir = TempDir::new("bench-stop")?;
    // Far more round trips than the test waits for: only the signal ends it.
    let command = bench_latency("100000000", &[]);
    let mut bench = Proc::spawn("bench", command, dir.path())?;
    let started = bench.wait_for_line("veil bench tcp: edge pid ", STARTUP)?;
    let children = bench_child_pids(&started).with_context(|| format!("in {started:?}"))?;
    for pid in children {
        ensure!(alive(pid), "child {pid} runs before the signal");
    }

    let status = bench.terminate(STOP)?;
    ensure!(
        !status.success(),
        "a stopped run is not a finished one: {status}"
    );
    // Reaped by the bench before it exited: nothing is left, not even a zombie.
    let deadline = Instant::now() + STOP;
    for pid in children {
        while alive(pid) {
            ensure!(
                Instant::now() < deadline,
                "child {pid} outlived the bench\n{}",
                bench.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    ensure!(
        bench.stderr().contains("stopped by a signal"),
        "the bench says why it stopped\n{}",
        bench.diagnostics()
    );
    Ok(())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
