//! A latched wake-up between tasks of one core: [`Signal::notify`] sets a flag and wakes
//! the one task waiting in [`Signal::notified`], which clears it. A notification sent while
//! nobody waits is kept, so none is lost; several collapse into one.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// One waiter, any number of notifiers, all on the same core.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiter, if any.
    pub(crate) fn notify(&self) {
        self.set.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Waits until the flag is set, then clears it.
    pub(crate) async fn notified(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_before_the_wait_is_kept_and_several_collapse() {
        crate::test_executor().run(async {
            let signal = Signal::default();
            signal.notify();
            signal.notify();
            signal.notified().await;
            assert!(
                !signal.set.get(),
                "one wait clears every earlier notification"
            );
        });
    }

    #[test]
    fn a_waiting_task_is_woken() {
        crate::test_executor().run(async {
            let signal = std::rc::Rc::new(Signal::default());
            let notifier = signal.clone();
            let task = glommio::spawn_local(async move { signal.notified().await });
            glommio::yield_if_needed().await;
            notifier.notify();
            task.await;
        });
    }
}
