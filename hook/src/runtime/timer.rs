//! A worker's timers: a min-heap of deadlines, each waking one task's wait.
//!
//! Timers are never cancelled: a wait that ends early leaves its entry behind, and the wake-up
//! it eventually sends names a finished wait, which the task ignores.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{self, AtomicU64};
use std::sync::Arc;

use super::task::Task;

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The monitor's clock: monotonic ns as of the monitor's last tick (every 25 ms by default,
/// 250 ms at most), so reading it costs one load. For diagnostics — how long a coroutine has
/// waited — where the park path must not pay for a clock read.
static MONITOR_NOW: AtomicU64 = AtomicU64::new(0);

/// Monotonic ns as of the monitor's last tick (see `MONITOR_NOW`); never 0 once the
/// runtime has started.
pub fn coarse_now_ns() -> u64 {
    MONITOR_NOW.load(atomic::Ordering::Relaxed)
}

/// Moves the monitor's clock on (the monitor, every tick; the runtime, once at start).
pub fn tick_coarse_clock() {
    MONITOR_NOW.store(now_ns(), atomic::Ordering::Relaxed);
}

/// Nanoseconds now on `clock` (0 if the clock cannot be read).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; a bad clock id is reported as an error.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    timespec_ns(&ts).unwrap_or(0)
}

/// A timespec as nanoseconds, or `None` where libc would say `EINVAL` (negative seconds, or
/// nanoseconds out of 0..1e9).
pub fn timespec_ns(ts: &libc::timespec) -> Option<u64> {
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        return None;
    }
    Some(
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64),
    )
}

struct Entry {
    deadline: u64,
    /// Insertion order, to keep equal deadlines first-in first-out.
    order: u64,
    task: Arc<Task>,
    token: u64,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.order) == (other.deadline, other.order)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deadline, other.order).cmp(&(self.deadline, self.order))
    }
}

/// The timers of one worker.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Entry>,
    next_order: u64,
}

impl Timers {
    /// Wakes `task`'s wait `token` at `deadline` (monotonic ns).
    pub fn add(&mut self, deadline: u64, task: Arc<Task>, token: u64) {
        self.next_order += 1;
        self.heap.push(Entry {
            deadline,
            order: self.next_order,
            task,
            token,
        });
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.deadline)
    }

    /// Pops every timer due at `now`, calling `fire(task, token)` for each.
    pub fn expire(&mut self, now: u64, mut fire: impl FnMut(Arc<Task>, u64)) {
        while let Some(top) = self.heap.peek() {
            if top.deadline > now {
                break;
            }
            let entry = self.heap.pop().expect("peeked");
            fire(entry.task, entry.token);
        }
    }
}
