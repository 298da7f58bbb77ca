//! A load generator's thread as the bench drives it: steps go in one at a time over a
//! channel, each step's result comes back, and the thread's own error says why when it
//! ends early.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::load::{Step, StepResult};

/// A step to run and where its result goes.
pub(crate) type Job = (Step, oneshot::Sender<StepResult>);

/// A generator thread that takes [`Job`]s; dropping it closes the channel and joins it.
pub(crate) struct StepThread {
    /// What the thread is, for errors ("UDP load generator").
    what: &'static str,
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl StepThread {
    /// `thread`, which reads its steps from the receiving end of `jobs`.
    pub(crate) fn new(
        what: &'static str,
        jobs: mpsc::UnboundedSender<Job>,
        thread: JoinHandle<anyhow::Result<()>>,
    ) -> Self {
        Self {
            what,
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Runs one step and returns what it measured.
    pub(crate) async fn run(&mut self, step: Step) -> anyhow::Result<StepResult> {
        let (done, result) = oneshot::channel();
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((step, done)).is_ok());
        if sent && let Ok(result) = result.await {
            return Ok(result);
        }
        Err(self.stopped())
    }

    /// Why the thread ended: its error, a panic, or nothing known.
    pub(crate) fn stopped(&mut self) -> anyhow::Error {
        self.jobs = None;
        let what = self.what;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e.context(what),
            Some(Err(_)) => anyhow::anyhow!("the {what} panicked"),
            _ => anyhow::anyhow!("the {what} stopped"),
        }
    }
}

impl Drop for StepThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
