//! The runtime's counters in one place: what `corun::stats()`, JSON dumps and the scheduler
//! trace report.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Runtime;

/// Stuck-worker incidents so far (one per coroutine that held a worker too long).
static STUCK_INCIDENTS: AtomicU64 = AtomicU64::new(0);
/// Deadlocks reported so far.
static DEADLOCKS: AtomicU64 = AtomicU64::new(0);

/// Counts a stuck-worker incident.
pub fn note_stuck() {
    STUCK_INCIDENTS.fetch_add(1, Ordering::Relaxed);
}

/// Counts a reported deadlock.
pub fn note_deadlock() {
    DEADLOCKS.fetch_add(1, Ordering::Relaxed);
}

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub spawned: u64,
    pub started: u64,
    pub finished: u64,
    pub switches: u64,
    pub fd_waiters: u64,
    pub futex_waiters: u64,
    pub pooled_stacks: u64,
    pub blocking_threads: u64,
    pub dumps: u64,
    pub stuck_incidents: u64,
    pub deadlocks: u64,
    /// Runnable coroutines per active worker.
    pub runnable: Vec<usize>,
}

impl Counters {
    /// Coroutines spawned and not finished.
    pub fn live(&self) -> u64 {
        self.spawned.saturating_sub(self.finished)
    }
}

/// Reads every counter (`runtime`: the process's runtime, if it has started).
pub fn gather(runtime: Option<&Runtime>) -> Counters {
    let counters = runtime.map(scheduling).unwrap_or_else(|| Counters {
        fd_waiters: crate::fd::waiters() as u64,
        futex_waiters: crate::futex::waiting() as u64,
        ..Counters::default()
    });
    Counters {
        pooled_stacks: corun::coroutine::pooled_stacks() as u64,
        blocking_threads: super::blocking::threads() as u64,
        dumps: super::sysmon::dumps_printed(),
        stuck_incidents: STUCK_INCIDENTS.load(Ordering::Relaxed),
        deadlocks: DEADLOCKS.load(Ordering::Relaxed),
        ..counters
    }
}

/// Only what the scheduler counts (tasks, switches, queues, waiters): atomics, no lock, so the
/// monitor may read them every tick (the stack pool's count locks every slab).
pub fn scheduling(runtime: &Runtime) -> Counters {
    let mut counters = Counters {
        spawned: runtime.spawned(),
        fd_waiters: crate::fd::waiters() as u64,
        futex_waiters: crate::futex::waiting() as u64,
        ..Counters::default()
    };
    for worker in runtime.workers() {
        let w = worker.stats();
        counters.started += w.started;
        counters.finished += w.finished;
        counters.switches += w.switches;
        counters.runnable.push(w.runnable);
    }
    counters
}
