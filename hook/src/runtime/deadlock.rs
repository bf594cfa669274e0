//! Deadlock detection: every live coroutine waits, without a timeout, for a futex word or a
//! join, and nothing else in the process could ever change that.
//!
//! "Nothing else" is checked, not assumed. The monitor looks (cheap counters first, every
//! tick) for this state:
//! - no coroutine runs, is runnable, or waits for an fd, a timer, a child, a signal or the
//!   blocking pool; every one is parked on a private futex word with no deadline (a lock, a
//!   condvar, a park) or on a join;
//! - every thread of the program that is not the runtime's own is itself in such a wait, one
//!   the runtime can see: a join of a coroutine, or a futex wait that passed through the hook
//!   (std's locks, condvars, parks) with no timeout. A thread doing anything else — running,
//!   sleeping, reading, waiting in glibc's own locks — might wake someone, so no report;
//! - no handler for an asynchronous signal is installed (a handler might post, write or unlock).
//!
//! Only a process-private futex is counted: another process may wake a shared one. The state
//! must hold for `CONFIRM_NS` (half a second) with no switch and no spawn in between; then the report is
//! printed once (`corun: deadlock: …`, then the coroutine dump) and, with
//! `CORUN_DEADLOCK=abort`, the process exits with status 2.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::task::WaitInfo;
use super::timer::now_ns;
use super::{counters, dump, registry, threads, Runtime};
use crate::config::{self, Deadlock};
use crate::sync::SpinLock;

/// How long the state must last, unchanged, before it is reported.
const CONFIRM_NS: u64 = 500_000_000;

/// A wait of a thread of the program that the runtime can see.
#[derive(Clone, Copy)]
struct ThreadWait {
    tid: i32,
    what: WaitInfo,
}

static THREAD_WAITS: SpinLock<Vec<ThreadWait>> = SpinLock::new(Vec::new());
/// Coroutines parked in a join now.
static JOINING: AtomicUsize = AtomicUsize::new(0);

/// While alive, the calling thread is in a wait the deadlock check can see.
pub struct Visible {
    tid: i32,
}

impl Drop for Visible {
    fn drop(&mut self) {
        let mut waits = THREAD_WAITS.lock();
        if let Some(i) = waits.iter().position(|w| w.tid == self.tid) {
            waits.swap_remove(i);
        }
    }
}

thread_local! {
    /// The calling thread's kernel id, once asked (a system call saved on every later wait).
    static TID: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The calling thread's kernel id.
pub(crate) fn this_tid() -> i32 {
    let known = TID.try_with(std::cell::Cell::get).unwrap_or(0);
    if known != 0 {
        return known;
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let _ = TID.try_with(|cell| cell.set(tid));
    tid
}

/// Records that the calling thread (one of the program's) blocks in `what`, with no timeout,
/// until the returned guard is dropped. `None` for the runtime's own threads.
pub fn thread_waits(what: WaitInfo) -> Option<Visible> {
    if threads::is_own() {
        return None;
    }
    let tid = this_tid();
    THREAD_WAITS.lock().push(ThreadWait { tid, what });
    Some(Visible { tid })
}

/// While alive, counts the calling coroutine as parked in a join.
pub struct Joining(());

impl Drop for Joining {
    fn drop(&mut self) {
        JOINING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a coroutine's join wait until the guard is dropped.
pub fn joining() -> Joining {
    JOINING.fetch_add(1, Ordering::SeqCst);
    Joining(())
}

/// In the child of a `fork`: the parent's waits are not the child's.
///
/// # Safety
/// Only in a forked child, before anything else runs (see `runtime::fork`).
pub unsafe fn reset_in_child() {
    // SAFETY: guaranteed by the caller.
    unsafe { THREAD_WAITS.reset_in_child(Vec::new()) };
    JOINING.store(0, Ordering::SeqCst);
    // The child's one thread has a new id.
    let _ = TID.try_with(|cell| cell.set(0));
}

/// The monitor's view of a possible deadlock.
#[derive(Default)]
pub struct Detector {
    /// When the current candidate state was first seen, and the progress count then.
    candidate: Option<(u64, u64)>,
    /// The progress count of the state last reported (reported once).
    reported: Option<u64>,
}

/// Whether a coroutine's wait is one only a coroutine or a visible thread could end.
fn forever(wait: WaitInfo) -> bool {
    matches!(
        wait,
        WaitInfo::Futex {
            deadline: 0,
            shared: false,
            ..
        } | WaitInfo::Join { .. }
    )
}

/// The name of thread `tid` of this process.
fn thread_name(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|name| name.trim_end().to_owned())
        .unwrap_or_default()
}

impl Detector {
    /// Looks once (every monitor tick); reports a confirmed deadlock.
    pub fn check(&mut self, runtime: &'static Runtime) {
        let mode = config::get().deadlock;
        if mode == Deadlock::Off {
            return;
        }
        let Some(progress) = self.candidate_progress(runtime) else {
            self.candidate = None;
            return;
        };
        if self.reported == Some(progress) {
            return;
        }
        let now = now_ns();
        match self.candidate {
            Some((since, seen)) if seen == progress => {
                if now.saturating_sub(since) < CONFIRM_NS {
                    return;
                }
            }
            _ => {
                self.candidate = Some((now, progress));
                return;
            }
        }
        let Some(report) = confirm() else {
            self.candidate = None;
            return;
        };
        self.reported = Some(progress);
        counters::note_deadlock();
        let dump = super::sysmon::take_dump(runtime, false);
        corun::raw_syscall::write_all(2, format!("{report}{dump}").as_bytes());
        if mode == Deadlock::Abort {
            // SAFETY: ending the process; nothing can run any more anyway (no atexit
            // handler could take a lock a deadlocked thread holds).
            unsafe { libc::_exit(2) };
        }
    }

    /// The progress count (switches + spawns) if the cheap signs of a deadlock are all there.
    fn candidate_progress(&self, runtime: &'static Runtime) -> Option<u64> {
        let c = counters::scheduling(runtime);
        let live = c.live();
        let parked_forever = c.futex_waiters + JOINING.load(Ordering::SeqCst) as u64;
        let quiet = live > 0
            && c.fd_waiters == 0
            && c.runnable.iter().all(|&n| n == 0)
            && runtime.workers().iter().all(|w| w.running().is_none())
            && parked_forever >= live
            && !crate::signal::actions::any_async_handler();
        if !quiet {
            return None;
        }
        let program_threads = threads::in_process()?.saturating_sub(threads::own());
        (THREAD_WAITS.lock().len() == program_threads).then_some(c.switches + c.spawned)
    }
}

/// Checks every coroutine and thread wait; returns the report if none can end.
fn confirm() -> Option<String> {
    let tasks = registry::snapshot();
    if tasks.is_empty() {
        return None;
    }
    let mut lines = Vec::with_capacity(tasks.len());
    for task in &tasks {
        let wait = task.wait_info();
        if !task.started() || task.is_running() || !task.is_parked() || !forever(wait) {
            return None;
        }
        lines.push(format!(
            "  {} — {}",
            dump::label(task),
            dump::describe_wait(wait)
        ));
    }
    let waits = THREAD_WAITS.lock().clone();
    for wait in &waits {
        lines.push(format!(
            "  thread {} '{}' — {}",
            wait.tid,
            thread_name(wait.tid),
            dump::describe_wait(wait.what)
        ));
    }
    Some(format!(
        "corun: deadlock: {} coroutine(s) and {} thread(s) wait for each other, and nothing \
         else could wake them:\n{}\n",
        tasks.len(),
        waits.len(),
        lines.join("\n")
    ))
}
