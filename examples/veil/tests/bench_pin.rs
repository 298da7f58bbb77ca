//! `veil bench tcp --pin BENCH,CLIENT,EDGE` runs every process of the bench where it says:
//! the bench's own threads, the proxies' local sides and their server sides, each thread
//! of each, so that every proxy is measured with the same placement.

mod support;

use std::time::Duration;

use anyhow::{Context, ensure};
use support::{Proc, TempDir, bench_child_pids, bench_latency, run_bounded};

/// Bound of the bench's start (its edge and client, debug builds, a busy machine).
const STARTUP: Duration = Duration::from_secs(60);
/// Bound of its stop: each child gets SIGTERM and a drain of 100 ms.
const STOP: Duration = Duration::from_secs(30);

#[test]
fn every_thread_of_a_pinned_run_is_on_its_cpu() -> anyhow::Result<()> {
    // The last CPU this test may use: on a machine of two or more, a set of one differs
    // from what the processes would inherit unpinned.
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))?;
    let cpu = (0..nix::sched::CpuSet::count())
        .rev()
        .find(|cpu| allowed.is_set(*cpu).unwrap_or(false))
        .context("no CPU")?;
    let dir = TempDir::new("bench-pin")?;
    let placement = format!("{cpu},{cpu},{cpu}");
    // Far more round trips than the test waits for: the test stops it.
    let command = bench_latency("100000000", &["--pin", &placement]);
    let mut bench = Proc::spawn("bench", command, dir.path())?;
    let started = bench.wait_for_line("veil bench tcp: edge pid ", STARTUP)?;
    let [edge, client] = bench_child_pids(&started)?;
    bench.wait_for_line("veil bench tcp: pinned: ", STARTUP)?;
    for (name, pid) in [("bench", bench.pid()), ("edge", edge), ("client", client)] {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))?;
        for thread in threads {
            let tid = thread?.file_name().into_string().unwrap_or_default();
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))?;
            let list = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .context("no Cpus_allowed_list")?
                .trim();
            ensure!(
                list == cpu.to_string(),
                "{name} thread {tid} may run on CPUs {list}, not only on {cpu}\n{}",
                bench.diagnostics()
            );
        }
    }
    bench.terminate(STOP)?;
    Ok(())
}

#[test]
fn a_cpu_the_run_may_not_use_is_refused_before_anything_starts() -> anyhow::Result<()> {
    let command = bench_latency("10", &["--pin", "0,0,100000"]);
    let output = run_bounded(command, STARTUP)?;
    let (stderr, stdout) = (&output.stderr, &output.stdout);
    ensure!(output.code() != 0, "a run on CPU 100000 succeeded");
    ensure!(
        stderr.contains("--pin: CPU 100000"),
        "the error names the CPU: {stderr}"
    );
    ensure!(
        !stdout.contains("edge pid"),
        "no edge was started for a bad --pin: {stdout}"
    );
    Ok(())
}
