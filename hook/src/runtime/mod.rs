//! The runtime: M:N workers, their reactors and timers, and the injector of new tasks.
//!
//! A task that has not started yet sits in the injector, and whichever worker is free takes
//! it, makes its coroutine on the stack slot the spawner took, and pins it. With shared identity
//! a started task stays on that worker (its stack holds addresses of the worker's thread-locals);
//! with per-coroutine identity it may move to a waker's idle worker (wake affinity, `schedule`)
//! or to a worker that asked for work (`CORUN_STEAL`). Wake-ups from other threads reach a
//! task through its worker's inbox.
//!
//! Besides the `CORUN_WORKERS` active workers there are as many spare worker slots; the
//! monitor (`sysmon`) starts one when every active worker is stuck in a single coroutine, so
//! new coroutines keep running.

pub mod blocking;
pub mod control;
pub mod counters;
pub mod current;
pub mod deadlock;
pub mod dump;
pub mod dump_json;
pub mod fork;
pub mod join;
pub mod reactor;
pub mod registry;
pub mod stack;
pub mod stuck;
pub mod sysmon;
pub mod task;
pub mod threads;
pub mod timer;
pub mod trace;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::SegQueue;

use crate::config::{self, MAX_WORKERS};
use crate::log;
use crate::sync::{futex_wait, futex_wake, SpinLock};
use task::{Suspend, Task, WaitInfo};
use worker::Worker;

/// The most threads that may be stuck in a coroutine after handing their worker off (the
/// stuck-worker guard's migration): beyond that a stuck worker's coroutines wait, with a
/// warning. Each such thread ends as soon as its coroutine switches.
pub const MAX_HANDED_OFF: usize = 64;

/// The process's one runtime.
pub struct Runtime {
    /// Every worker slot: the first `active` run, the rest are spares.
    workers: Box<[Worker]>,
    /// How many slots have a thread (they never stop once started).
    active: AtomicUsize,
    /// Tasks that have not started yet; any worker may take them.
    pub(crate) injector: SegQueue<Arc<Task>>,
    /// Worker threads that have entered their loop (a futex word for `start`).
    entered: AtomicU32,
    /// Tasks spawned so far.
    spawned: AtomicU64,
    /// Threads still stuck in a coroutine after their worker was handed off (at most
    /// [`MAX_HANDED_OFF`]).
    handed_off: AtomicUsize,
    /// Workers spinning for work before they sleep (at most one).
    spinning: AtomicUsize,
    /// Whether idle workers take runnable coroutines from busy ones (`CORUN_STEAL=1` with
    /// per-coroutine identity).
    steal: bool,
    /// The signal mask of the thread that started the runtime: every worker thread has it
    /// (as threads spawned from there would), including spares the monitor starts later.
    signal_mask: libc::sigset_t,
}

/// The runtime, once made (leaked: it lives as long as the process, or until a `fork` child
/// makes its own, see [`fork`]).
static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());
/// Whether the runtime's threads are up.
static STARTED: AtomicBool = AtomicBool::new(false);
/// Held by the thread making and starting the runtime.
static STARTING: SpinLock<()> = SpinLock::new(());
/// Offsets of the runtime's `WORKER` and `TASK` thread-locals (see `current::tls_offsets`).
static TLS_OFFSETS: OnceLock<current::TlsOffsets> = OnceLock::new();

/// The offsets of the runtime's thread-locals from the thread pointer.
pub fn tls_offsets() -> current::TlsOffsets {
    *TLS_OFFSETS.get_or_init(current::tls_offsets)
}

/// The runtime, started on first use (the first spawn).
pub fn get() -> &'static Runtime {
    if STARTED.load(Ordering::Acquire) {
        // SAFETY: published before STARTED was set, and never freed.
        return unsafe { &*RUNTIME.load(Ordering::Acquire) };
    }
    start_once()
}

#[cold]
fn start_once() -> &'static Runtime {
    let _starting = STARTING.lock();
    if !STARTED.load(Ordering::Acquire) {
        // Published before the threads start: they (and hooks they call) look it up.
        let runtime: &'static Runtime = Box::leak(Box::new(Runtime::new()));
        RUNTIME.store(runtime as *const Runtime as *mut Runtime, Ordering::Release);
        runtime.start();
        STARTED.store(true, Ordering::Release);
    }
    // SAFETY: as in `get`.
    unsafe { &*RUNTIME.load(Ordering::Acquire) }
}

/// The runtime if it has been made.
pub fn try_get() -> Option<&'static Runtime> {
    let runtime = RUNTIME.load(Ordering::Acquire);
    // SAFETY: never freed once published.
    (!runtime.is_null()).then(|| unsafe { &*runtime })
}

/// In the child of a `fork`: forgets the parent's runtime (its threads do not exist here; its
/// memory is leaked, never touched again), so that the child's first spawn makes its own.
/// Closes the old reactors' fds (epoll instances the parent goes on using).
///
/// # Safety
/// Only in a forked child, before anything else runs.
pub(crate) unsafe fn forget_in_child() {
    // SAFETY: guaranteed by the caller (a thread making the runtime when the parent forked no
    // longer exists).
    unsafe { STARTING.reset_in_child(()) };
    STARTED.store(false, Ordering::Release);
    let old = RUNTIME.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: never freed once published.
        for worker in unsafe { &*old }.all_workers() {
            worker.reactor().close_in_child();
        }
    }
}

impl Runtime {
    fn new() -> Runtime {
        let config = config::get();
        raise_fd_limit();
        let slots = (config.workers * 2).min(MAX_WORKERS).max(config.workers);
        let workers = (0..slots)
            .map(|i| {
                Worker::new(i).unwrap_or_else(|err| {
                    log::fatal(format_args!(
                        "cannot create the reactor of worker {i}: {err}"
                    ))
                })
            })
            .collect();
        log::info(format_args!(
            "runtime starting with {} workers ({} spare slots); stack guards: {}",
            config.workers,
            slots - config.workers,
            match corun::coroutine::guard_kind() {
                corun::coroutine::GuardKind::Madvise => "kernel guard regions",
                corun::coroutine::GuardKind::Mprotect => "mprotect pages",
            }
        ));
        // Dumps (on a signal or through the control socket) and the deadlock check list the
        // live coroutines; with all three off, spawns skip the registry.
        if config.dump_signal.is_some()
            || config.control
            || config.deadlock != config::Deadlock::Off
        {
            registry::enable();
        }
        crate::identity::init(config.isolated_tls);
        let offsets = TLS_OFFSETS.get_or_init(current::tls_offsets);
        if crate::identity::enabled() {
            current::use_static_offsets(offsets);
        }
        // Off unless asked for: on the 2-CPU echo benchmark it did not beat no stealing (an
        // idle worker woken to take coroutines the busy one would run a few µs later; see
        // README, *Thread identity and work stealing*).
        let steal = config.steal.unwrap_or(false) && crate::identity::enabled();
        if config.steal == Some(true) && !steal {
            let why = if config.isolated_tls {
                "per-coroutine identity is not available here (see the warning above)"
            } else {
                "CORUN_TLS=shared is set"
            };
            log::warn(format_args!(
                "CORUN_STEAL=1 ignored: {why}, and without per-coroutine identity moving a \
                 started coroutine to another thread is unsound"
            ));
        }
        // SAFETY: an all-zero sigset_t is valid storage; pthread_sigmask only reads the mask.
        let mut signal_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer; no change to the mask.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut signal_mask) };
        Runtime {
            workers,
            active: AtomicUsize::new(0),
            injector: SegQueue::new(),
            entered: AtomicU32::new(0),
            spawned: AtomicU64::new(0),
            handed_off: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            steal,
            signal_mask,
        }
    }

    /// Starts the worker threads and waits until each is in its loop (so the first spawn
    /// returns with the whole runtime up), then the monitor.
    fn start(&'static self) {
        let workers = config::get().workers;
        for _ in 0..workers {
            self.start_spare();
        }
        loop {
            let entered = self.entered.load(Ordering::SeqCst);
            if entered as usize >= workers {
                break;
            }
            futex_wait(&self.entered, entered);
        }
        sysmon::start(self);
    }

    /// Starts a thread for the next unused worker slot. Returns its index, or `None` when
    /// every slot is in use.
    pub(crate) fn start_spare(&'static self) -> Option<usize> {
        let index = self
            .active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.workers.len()).then_some(n + 1)
            })
            .ok()?;
        let worker: &'static Worker = &self.workers[index];
        let kind = if index < config::get().workers {
            "worker"
        } else {
            "spare"
        };
        self.start_thread(worker, worker.owner_epoch(), kind);
        Some(index)
    }

    /// Starts a thread running `worker`'s loop as owner `epoch`.
    pub(crate) fn start_thread(&'static self, worker: &'static Worker, epoch: u64, kind: &str) {
        let spawned = threads::spawn(format!("corun-{kind}-{}", worker.index()), move || {
            // SAFETY: valid masks; pthread_sigmask on the calling thread. The stack requests
            // of the stuck-worker guard must reach every worker.
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.signal_mask, std::ptr::null_mut());
                let mut ours: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut ours);
                libc::sigaddset(&mut ours, stuck::SIGNAL);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &ours, std::ptr::null_mut());
            };
            self.entered.fetch_add(1, Ordering::SeqCst);
            futex_wake(&self.entered, i32::MAX);
            worker.run(self, epoch);
            if worker.owner_epoch() != epoch {
                // Handed off while stuck: this thread's stuck coroutine has switched at last,
                // and the thread ends here.
                self.handed_off.fetch_sub(1, Ordering::SeqCst);
            }
        });
        if let Err(err) = spawned {
            log::fatal(format_args!(
                "cannot start a thread for worker {}: {err}",
                worker.index()
            ));
        }
    }

    /// Hands stuck `worker` (its queue, timers and reactor) to a fresh thread, unless
    /// [`MAX_HANDED_OFF`] threads are already stuck after a hand-off: false then. The stuck
    /// thread ends when its coroutine switches.
    pub(crate) fn hand_off(&'static self, worker: &'static Worker) -> bool {
        if self
            .handed_off
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_HANDED_OFF).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        let epoch = worker.take_over();
        self.start_thread(worker, epoch, "moved");
        true
    }

    /// The worker slots that have a thread.
    pub fn workers(&self) -> &[Worker] {
        &self.workers[..self.active.load(Ordering::SeqCst).min(self.workers.len())]
    }

    /// Every worker slot, started or not (fd registrations may name any of them).
    pub fn all_workers(&self) -> &[Worker] {
        &self.workers
    }

    /// Queues a new task; a sleeping worker is woken to take it.
    pub fn submit(&self, task: Arc<Task>) {
        self.spawned.fetch_add(1, Ordering::Relaxed);
        registry::insert(&task);
        self.injector.push(task);
        // A spinning worker will find it; otherwise wake one sleeper. (The current worker, if
        // the spawner is a coroutine, also finds it when it next looks.)
        if self.spinning.load(Ordering::SeqCst) > 0 {
            return;
        }
        if let Some(sleeper) = self.workers().iter().find(|w| w.is_sleeping()) {
            sleeper.wake();
        }
    }

    /// Lets the caller spin for work if no other worker does; true if it may.
    pub(crate) fn start_spinning(&self) -> bool {
        self.spinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Ends a spin started with [`start_spinning`](Self::start_spinning).
    pub(crate) fn stop_spinning(&self) {
        self.spinning.store(0, Ordering::SeqCst);
    }

    /// Whether idle workers ask busy ones for runnable coroutines (`CORUN_STEAL`).
    pub(crate) fn steals(&self) -> bool {
        self.steal
    }

    /// Tasks spawned so far.
    pub fn spawned(&self) -> u64 {
        self.spawned.load(Ordering::Relaxed)
    }
}

/// Queues a woken task on the worker it is pinned to (or the injector if it never started).
///
/// With per-coroutine identity (which makes moving a started coroutine sound), a task woken
/// by a coroutine of another worker moves to the waker's worker when its own is idle: the
/// waker's worker picks it up without a cross-thread wake-up, and two coroutines that talk to
/// each other end up on one worker (a channel ping-pong stays on one thread). A task whose
/// worker is busy stays there, so a producer does not pull all its consumers onto its thread.
pub fn schedule(task: Arc<Task>) {
    let Some(runtime) = try_get() else { return };
    let Some(owner) = runtime.workers.get(task.worker()) else {
        runtime.injector.push(task);
        return;
    };
    if crate::identity::enabled() && !owner.is_busy() {
        if let Some(here) = current::worker() {
            if !std::ptr::eq(here, owner) && current::runs(here) {
                pin(runtime, &task, here);
                here.schedule(task);
                return;
            }
        }
    }
    owner.schedule(task)
}

/// Pins `task` to worker `to`, keeping every worker's count of pinned tasks.
pub(crate) fn pin(runtime: &Runtime, task: &Task, to: &Worker) {
    if let Some(from) = runtime.workers.get(task.worker()) {
        from.count_pinned(false);
    }
    to.count_pinned(true);
    task.pin(to.index());
}

/// Forgets a finished task's pin (from its worker's count).
pub(crate) fn unpin(task: &Task) {
    if let Some(from) = try_get().and_then(|rt| rt.workers.get(task.worker())) {
        from.count_pinned(false);
    }
}

/// How a park ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// A wake-up for the wait (or a spurious one: every caller re-checks its condition).
    Up,
    /// A signal interrupted the wait: the call fails with `EINTR` (see [`crate::signal`]).
    Interrupted,
}

/// Parks the current task until a wake-up for its current wait. `info` says what it waits
/// for (for dumps, and whether a signal may interrupt it).
pub fn park(current: &current::CurrentTask, info: WaitInfo) -> Woke {
    let task = current.task();
    task.set_wait_info(info);
    let token = task.wait_token();
    let listed = crate::signal::interrupt::list(current, token, info);
    // SAFETY: `current` is the task running on this thread, so we are on its stack.
    unsafe { task.suspend(Suspend::Park) };
    drop(listed);
    task.set_wait_info(WaitInfo::None);
    if task.take_interrupt(token) {
        Woke::Interrupted
    } else {
        Woke::Up
    }
}

/// Puts the current task at the back of its worker's queue.
pub fn yield_now(current: &current::CurrentTask) {
    // SAFETY: as in `park`.
    unsafe { current.task().suspend(Suspend::Yield) };
}

/// Suspends the current task until `deadline` (monotonic ns). `Err(left)`: a signal
/// interrupted the sleep with `left` ns to go.
pub fn sleep_until(current: &current::CurrentTask, deadline: u64) -> Result<(), u64> {
    loop {
        let now = timer::now_ns();
        if now >= deadline {
            return Ok(());
        }
        let token = current.task().begin_wait();
        current.worker().add_timer(deadline, current.arc(), token);
        if park(current, WaitInfo::Sleep { deadline }) == Woke::Interrupted {
            return Err(deadline.saturating_sub(timer::now_ns()));
        }
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
