//! The scheduler trace (`CORUN_TRACE=sched:MS`): one line on stderr every MS milliseconds, in
//! the spirit of Go's `GODEBUG=schedtrace`:
//!
//! ```text
//! corun: sched 1002ms: workers 2 (+0 spare) runnable [0 3] live 1005 parked fd=1000 futex=2 join=1 sleep=1 poll=0 child=0 blocking=0 other=0; per s: spawned 12 finished 10 switches 48210; blocking threads 1; stuck 0
//! ```
//!
//! Rates are per second over the interval just ended; the parked counts are a walk of the
//! live coroutines (a trace of a million coroutines costs the monitor some milliseconds per
//! line).

use super::counters::{self, Counters};
use super::task::WaitInfo;
use super::timer::now_ns;
use super::{registry, Runtime};

/// The trace's state between lines.
pub struct Trace {
    every_ns: u64,
    last_at: u64,
    last: Counters,
}

impl Trace {
    /// A trace printing every `every_ms`.
    pub fn new(every_ms: u64, runtime: &Runtime) -> Trace {
        Trace {
            every_ns: every_ms * 1_000_000,
            last_at: now_ns(),
            last: counters::gather(Some(runtime)),
        }
    }

    /// Prints a line if the interval has passed.
    pub fn tick(&mut self, runtime: &Runtime) {
        let now = now_ns();
        let elapsed = now.saturating_sub(self.last_at);
        if elapsed < self.every_ns {
            return;
        }
        let c = counters::gather(Some(runtime));
        let line = line(&c, &self.last, elapsed, runtime, parked_by_kind());
        corun::raw_syscall::write_all(2, line.as_bytes());
        self.last = c;
        self.last_at = now;
    }
}

/// Parked coroutines by what they wait for: fd, futex, join, sleep, poll, child, blocking,
/// other.
fn parked_by_kind() -> [u64; 8] {
    let mut kinds = [0u64; 8];
    registry::for_each(|task| {
        if !task.is_parked() {
            return;
        }
        let i = match task.wait_info() {
            WaitInfo::Fd { .. } => 0,
            WaitInfo::Futex { .. } => 1,
            WaitInfo::Join { .. } => 2,
            WaitInfo::Sleep { .. } => 3,
            WaitInfo::Poll { .. } => 4,
            WaitInfo::Child { .. } => 5,
            WaitInfo::Blocking { .. } => 6,
            WaitInfo::None => 7,
        };
        kinds[i] += 1;
    });
    kinds
}

fn line(
    c: &Counters,
    last: &Counters,
    elapsed_ns: u64,
    runtime: &Runtime,
    parked: [u64; 8],
) -> String {
    let per_s = |now: u64, then: u64| now.saturating_sub(then) * 1_000_000_000 / elapsed_ns.max(1);
    let workers = runtime.workers().len();
    let spare = workers.saturating_sub(crate::config::get().workers);
    let runnable: Vec<String> = c.runnable.iter().map(usize::to_string).collect();
    format!(
        "corun: sched {}ms: workers {} (+{spare} spare) runnable [{}] live {} parked fd={} \
         futex={} join={} sleep={} poll={} child={} blocking={} other={}; per s: spawned {} \
         finished {} switches {}; blocking threads {}; stuck {}\n",
        elapsed_ns / 1_000_000,
        workers - spare,
        runnable.join(" "),
        c.live(),
        parked[0],
        parked[1],
        parked[2],
        parked[3],
        parked[4],
        parked[5],
        parked[6],
        parked[7],
        per_s(c.spawned, last.spawned),
        per_s(c.finished, last.finished),
        per_s(c.switches, last.switches),
        c.blocking_threads,
        c.stuck_incidents,
    )
}
