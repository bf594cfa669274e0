//! `corun::stats()`: the runtime's counters.

use std::fmt;

use crate::abi::{StatsV1, STATS_MAX_WORKERS};
use crate::client::{self, Backend};

/// A snapshot of the runtime's counters, from [`stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Coroutines spawned so far.
    pub spawned: u64,
    /// Coroutines a worker has started so far.
    pub started: u64,
    /// Coroutines that have finished so far.
    pub finished: u64,
    /// Runnable coroutines queued on each worker now (index = worker).
    pub runnable: Vec<usize>,
    /// Coroutines waiting for an fd (a socket, a pipe …) now.
    pub fd_waiters: u64,
    /// Coroutines waiting on a futex word (a lock, a condvar, a park …) now.
    pub futex_waiters: u64,
    /// Idle stacks in the slabs, ready for reuse.
    pub pooled_stacks: u64,
    /// Coroutine resumes so far.
    pub context_switches: u64,
    /// Threads in the blocking pool (DNS, `corun::unblock`).
    pub blocking_threads: u64,
    /// Coroutine dumps printed so far (see `CORUN_DUMP`, `corun dump`).
    pub dumps: u64,
    /// Stuck-worker incidents so far: coroutines that ran longer than `CORUN_STUCK_MS`
    /// without switching (each warned about once).
    pub stuck_incidents: u64,
    /// Deadlocks reported so far (see `CORUN_DEADLOCK`).
    pub deadlocks: u64,
}

impl Stats {
    /// Coroutines spawned and not finished yet.
    pub fn live(&self) -> u64 {
        self.spawned.saturating_sub(self.finished)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "coroutines: {} live ({} spawned, {} started, {} finished); runnable per worker: {:?}; \
             waiting: {} on fds, {} on futexes; {} context switches; {} pooled stacks; {} blocking threads; \
             {} stuck-worker incidents",
            self.live(),
            self.spawned,
            self.started,
            self.finished,
            self.runnable,
            self.fd_waiters,
            self.futex_waiters,
            self.context_switches,
            self.pooled_stacks,
            self.blocking_threads,
            self.stuck_incidents
        )
    }
}

/// The runtime's counters, or `None` when the runtime is not preloaded.
///
/// ```
/// // Doc tests run without the runtime:
/// assert!(corun::stats().is_none());
/// ```
pub fn stats() -> Option<Stats> {
    let Backend::Runtime(abi) = client::backend() else {
        return None;
    };
    let mut raw = StatsV1 {
        spawned: 0,
        started: 0,
        finished: 0,
        context_switches: 0,
        fd_waiters: 0,
        futex_waiters: 0,
        pooled_stacks: 0,
        blocking_threads: 0,
        dumps: 0,
        workers: 0,
        runnable: [0; STATS_MAX_WORKERS],
        stuck_incidents: 0,
        deadlocks: 0,
    };
    if abi.has_stats_sized() {
        // SAFETY: a valid out-pointer of the size given, for the duration of the call.
        unsafe { (abi.stats_sized)(&mut raw, std::mem::size_of::<StatsV1>()) };
    } else {
        // SAFETY: a valid out-pointer for the duration of the call; an older runtime fills
        // the first layout only, and the later fields stay 0.
        unsafe { (abi.stats)(&mut raw) };
    }
    let workers = (raw.workers as usize).min(STATS_MAX_WORKERS);
    Some(Stats {
        spawned: raw.spawned,
        started: raw.started,
        finished: raw.finished,
        runnable: raw.runnable[..workers]
            .iter()
            .map(|&n| n as usize)
            .collect(),
        fd_waiters: raw.fd_waiters,
        futex_waiters: raw.futex_waiters,
        pooled_stacks: raw.pooled_stacks,
        context_switches: raw.context_switches,
        blocking_threads: raw.blocking_threads,
        dumps: raw.dumps,
        stuck_incidents: raw.stuck_incidents,
        deadlocks: raw.deadlocks,
    })
}
