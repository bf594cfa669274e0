//! Waiting for a task to finish: `corun::JoinHandle::join` and the pthread join family of
//! coroutine threads. A joining coroutine parks (a signal does not end the wait: neither
//! `join` nor `pthread_join` says `EINTR`); a joining OS thread blocks on the task's join word.

use super::current::CurrentTask;
use super::task::{Task, WaitInfo};
use super::{deadlock, park, timer};

/// How long a join may wait.
#[derive(Clone, Copy)]
pub enum JoinWait {
    /// Until the task finishes.
    Forever,
    /// Not at all (`pthread_tryjoin_np`).
    Not,
    /// Until this monotonic time (ns).
    Until(u64),
}

/// Waits, as `current` (a coroutine) or as the calling OS thread (`None`), until `task` has
/// finished or `wait` runs out; true if it finished. Only an unbounded wait counts for the
/// deadlock check (a timed one ends by itself).
pub fn wait_for(current: Option<&CurrentTask>, task: &Task, wait: JoinWait) -> bool {
    match current {
        Some(current) => wait_as_coroutine(current, task, wait),
        None => wait_as_thread(task, wait),
    }
}

fn wait_as_coroutine(current: &CurrentTask, task: &Task, wait: JoinWait) -> bool {
    let _counted = matches!(wait, JoinWait::Forever).then(deadlock::joining);
    loop {
        if task.is_finished() {
            return true;
        }
        let deadline = match wait {
            JoinWait::Not => return false,
            JoinWait::Forever => None,
            JoinWait::Until(deadline) if timer::now_ns() >= deadline => return false,
            JoinWait::Until(deadline) => Some(deadline),
        };
        let token = current.task().begin_wait();
        if task.add_joiner(current.arc(), token) {
            if let Some(deadline) = deadline {
                current.worker().add_timer(deadline, current.arc(), token);
            }
            let _ = park(current, WaitInfo::Join { id: task.id() });
        }
    }
}

fn wait_as_thread(task: &Task, wait: JoinWait) -> bool {
    match wait {
        JoinWait::Not => task.is_finished(),
        JoinWait::Forever if task.is_finished() => true,
        JoinWait::Forever => {
            let _visible = deadlock::thread_waits(WaitInfo::Join { id: task.id() });
            task.wait_finished_blocking();
            true
        }
        JoinWait::Until(deadline) => task.wait_finished_blocking_until(deadline),
    }
}
