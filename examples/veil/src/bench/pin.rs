//! `--pin BENCH,CLIENT,EDGE`: every process of a run on a CPU chosen for its side.
//!
//! On loopback a round trip crosses three processes (the bench, a proxy's local side, its
//! server side) on however many CPUs the machine has, and the scheduler's placement of
//! them decides which hand-overs wake a process on the waker's own CPU (a few
//! microseconds) and which wake an idle CPU (tens of microseconds on a virtual machine
//! whose idle vCPUs halt). Placement is sticky within a run and changes between runs, so
//! two runs of the same build can differ by a fifth (fourteenth session, in
//! `docs/PERFORMANCE.md`). Pinned, every proxy is measured with the same placement: the
//! bench's own threads (the application, the echo server, the sink, and the raw quiche
//! pair) on one CPU, every proxy's local side (veil's client, sslocal, TUIC's client,
//! the floor's local side) on another or the same, every server side (veil's edge,
//! ssserver, TUIC's server, the floor's far side) on a third.
//!
//! Each thread of a process is pinned (`sched_setaffinity(2)` on every entry of
//! `/proc/PID/task`); a thread started later inherits its creator's CPU.

use std::str::FromStr;

use anyhow::Context as _;
use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// Which side of a proxy a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The local side, which the application's SOCKS5 connections reach.
    Client,
    /// The server side, which dials the targets.
    Edge,
}

/// The CPUs of a run's three sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The bench's own process: the application side, the echo server and sink.
    pub bench: usize,
    /// Every proxy's local side (the SOCKS5 listener the application talks to).
    pub client: usize,
    /// Every proxy's server side (the one that dials the targets).
    pub edge: usize,
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let cpus: Vec<usize> = text
            .split(',')
            .map(|cpu| cpu.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{text:?}: {e} (expected BENCH,CLIENT,EDGE, e.g. 0,1,1)"))?;
        match cpus.as_slice() {
            &[bench, client, edge] => Ok(Self {
                bench,
                client,
                edge,
            }),
            _ => Err(format!(
                "{text:?}: three CPUs expected (BENCH,CLIENT,EDGE, e.g. 0,1,1)"
            )),
        }
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bench on CPU {}, proxies' local sides on CPU {}, their server sides on CPU {}",
            self.bench, self.client, self.edge
        )
    }
}

impl Placement {
    /// Refuses a CPU this process may not run on (beyond the machine's, or outside the
    /// set it was started with).
    pub fn check(&self) -> anyhow::Result<()> {
        let allowed = sched_getaffinity(None).context("reading this process's CPUs")?;
        for cpu in [self.bench, self.client, self.edge] {
            let usable = cpu < CpuSet::MAX_CPU && allowed.is_set(cpu);
            anyhow::ensure!(usable, "--pin: CPU {cpu} is not among this process's CPUs");
        }
        Ok(())
    }
}

/// Pins every thread of process `pid` to `cpu`. Threads that end meanwhile are skipped.
pub(crate) fn pin_process(pid: u32, cpu: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        cpu < CpuSet::MAX_CPU,
        "CPU {cpu}: beyond what a CPU set holds"
    );
    let mut set = CpuSet::new();
    set.set(cpu);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .with_context(|| format!("listing the threads of process {pid}"))?;
    for task in tasks {
        let Some(tid) = task?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        match sched_setaffinity(Some(tid), &set) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("pinning thread {} to CPU {cpu}", tid.as_raw_nonzero())
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_is_three_cpus() {
        assert_eq!(
            "0,1,1".parse::<Placement>(),
            Ok(Placement {
                bench: 0,
                client: 1,
                edge: 1
            })
        );
        assert!("0,1".parse::<Placement>().is_err());
        assert!("0,1,1,0".parse::<Placement>().is_err());
        assert!("0,x,1".parse::<Placement>().is_err());
    }

    #[test]
    fn a_cpu_the_process_cannot_use_is_refused() {
        let placement = Placement {
            bench: 0,
            client: 0,
            edge: 100_000,
        };
        assert!(placement.check().is_err());
    }

    /// A child process with threads of its own, pinned: every thread's allowed CPUs are
    /// the one asked for.
    #[test]
    fn every_thread_of_a_process_is_pinned() {
        let allowed = sched_getaffinity(None).expect("affinity");
        let cpu = (0..CpuSet::MAX_CPU)
            .rev()
            .find(|cpu| allowed.is_set(*cpu))
            .expect("a CPU");
        // Python starts a thread that sleeps beside its main thread.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import threading,time,sys\n\
                 threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n\
                 print('ready', flush=True); time.sleep(30)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready");
        let pid = child.id();
        pin_process(pid, cpu).expect("pinned");
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("tasks")
            .map(|task| task.expect("task").file_name().into_string().expect("tid"))
            .collect();
        assert!(tids.len() >= 2, "the child has its second thread: {tids:?}");
        for tid in &tids {
            let status =
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).expect("status");
            let list = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .expect("Cpus_allowed_list")
                .trim()
                .to_owned();
            assert_eq!(list, cpu.to_string(), "thread {tid}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
