//! The runtime: M:N workers, their reactors and timers, and the injector of new tasks.
//!
//! A task that has not started yet sits in the injector, and whichever worker is free takes
//! it. Once started, a task stays on that worker (its stack holds thread-bound state: TLS
//! addresses, std's per-thread locks); wake-ups from other threads reach it through the
//! worker's inbox.

pub mod blocking;
pub mod current;
pub mod reactor;
pub mod task;
pub mod timer;
pub mod worker;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once, OnceLock};

use crossbeam_queue::SegQueue;

use crate::config;
use crate::log;
use crate::sync::{futex_wait, futex_wake};
use task::{Suspend, Task};
use worker::Worker;

/// The process's one runtime.
pub struct Runtime {
    workers: Box<[Worker]>,
    /// Tasks that have not started yet; any worker may take them.
    pub(crate) injector: SegQueue<Arc<Task>>,
    /// Worker threads that have started (a futex word for `start`).
    running: AtomicU32,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static STARTED: Once = Once::new();

/// The runtime, started on first use (the first spawn).
pub fn get() -> &'static Runtime {
    let runtime = RUNTIME.get_or_init(Runtime::new);
    STARTED.call_once(|| runtime.start());
    runtime
}

/// The runtime if it has started.
pub fn try_get() -> Option<&'static Runtime> {
    RUNTIME.get()
}

impl Runtime {
    fn new() -> Runtime {
        let config = config::get();
        raise_fd_limit();
        let workers = (0..config.workers)
            .map(|i| {
                Worker::new(i).unwrap_or_else(|err| {
                    log::fatal(format_args!(
                        "cannot create the reactor of worker {i}: {err}"
                    ))
                })
            })
            .collect();
        log::info(format_args!(
            "runtime starting with {} workers",
            config.workers
        ));
        Runtime {
            workers,
            injector: SegQueue::new(),
            running: AtomicU32::new(0),
        }
    }

    /// Starts the worker threads and waits until each is in its loop (so the first spawn
    /// returns with the whole runtime up).
    fn start(&'static self) {
        for worker in self.workers.iter() {
            let spawned = std::thread::Builder::new()
                .name(format!("corun-worker-{}", worker.index()))
                .spawn(move || {
                    self.running.fetch_add(1, Ordering::SeqCst);
                    futex_wake(&self.running, i32::MAX);
                    worker.run(self)
                });
            if let Err(err) = spawned {
                log::fatal(format_args!(
                    "cannot start worker thread {}: {err}",
                    worker.index()
                ));
            }
        }
        loop {
            let running = self.running.load(Ordering::SeqCst);
            if running as usize == self.workers.len() {
                break;
            }
            futex_wait(&self.running, running);
        }
    }

    /// The workers.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// Queues a new task; a sleeping worker is woken to take it.
    pub fn submit(&self, task: Arc<Task>) {
        self.injector.push(task);
        // The current worker (if the spawner is a coroutine) will find it itself when it
        // next looks; otherwise wake one sleeper.
        if let Some(sleeper) = self.workers.iter().find(|w| w.is_sleeping()) {
            sleeper.wake();
        }
    }
}

/// Queues a woken task on the worker it is pinned to (or the injector if it never started).
pub fn schedule(task: Arc<Task>) {
    let Some(runtime) = try_get() else { return };
    match runtime.workers.get(task.worker()) {
        Some(worker) => worker.schedule(task),
        None => runtime.submit(task),
    }
}

/// Parks the current task until a wake-up for wait `token` (or a spurious one): every caller
/// re-checks its condition.
pub fn park(current: &current::CurrentTask) {
    // SAFETY: `current` is the task running on this thread, so we are on its stack.
    unsafe { current.task().suspend(Suspend::Park) };
}

/// Puts the current task at the back of its worker's queue.
pub fn yield_now(current: &current::CurrentTask) {
    // SAFETY: as in `park`.
    unsafe { current.task().suspend(Suspend::Yield) };
}

/// Suspends the current task until `deadline` (monotonic ns).
pub fn sleep_until(current: &current::CurrentTask, deadline: u64) {
    loop {
        if timer::now_ns() >= deadline {
            return;
        }
        let token = current.task().begin_wait();
        current.worker().add_timer(deadline, current.arc(), token);
        park(current);
    }
}

/// Raises the soft limit on open files to the hard limit, as Go does: thousands of
/// connections are the point of coroutines, and the soft limit (often 1024) exists for
/// `select`, which corun programs do not depend on.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer / in-pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            let old = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                log::info(format_args!(
                    "raised the open-file limit from {old} to {}",
                    limit.rlim_max
                ));
            }
        }
    }
}
