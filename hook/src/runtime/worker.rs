//! A worker: a run queue, timers and a reactor, run by one thread at a time.
//!
//! The worker (Go would call it a P) is separate from the thread running its loop (an M):
//! when the thread is stuck in one coroutine and migration is allowed, the monitor hands the
//! worker to a fresh thread (see `sysmon`), and the stuck thread lets go of it as soon as its
//! coroutine switches.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Arc;

use corun::coroutine::CoroutineResult;
use crossbeam_queue::SegQueue;

use super::current;
use super::fork;
use super::reactor::{Event, Reactor};
use super::task::{Resume, Suspend, Task};
use super::timer::{now_ns, Timers};
use super::Runtime;
use crate::fd;
use crate::identity::{self, Area};
use crate::sync::{futex_wake, SpinLock};

/// Tasks run between two non-blocking looks at the reactor and the timers.
const POLL_INTERVAL: u32 = 61;
/// A worker with fewer started tasks than this keeps every new task it takes (see
/// `Worker::take_new`): balancing pays only where queues can grow long.
const BALANCE_FROM: usize = 8;

/// An idle worker checks its queues this many times, `SPIN_PAUSES` pause instructions apart
/// (about 10 µs in all), before it goes to sleep.
const SPIN_ROUNDS: u32 = 64;
/// After a spin that no other thread's work ended, a worker skips spinning for up to this
/// many idle moments (doubling each time): spinning pays when others hand it work (new
/// tasks, wake-ups) at a high rate, and otherwise only takes CPU from everything else on the
/// machine (a server's idle worker spinning beside a busy one doubled its p99 under `wrk`).
const SPIN_BACKOFF_MAX: u32 = 64;
/// A spinning worker also looks at its reactor every this many rounds.
const SPIN_POLL_EVERY: u32 = 16;
const SPIN_PAUSES: u32 = 32;

/// How a spin for work ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spin {
    /// Another thread queued work (a new task, a wake-up): spinning saved a sleep and a wake.
    Handed,
    /// The worker's own reactor had events (it would have woken for them anyway).
    OwnEvents,
    /// Nothing came.
    Nothing,
}

/// One worker of the runtime.
pub struct Worker {
    index: usize,
    reactor: Reactor,
    /// Tasks of this worker woken from other threads.
    inbox: SegQueue<Arc<Task>>,
    /// Pushes to `inbox` so far minus pops: a cheap "anything there?" for the hot path
    /// (an empty `SegQueue::pop` costs a full fence).
    inbox_count: AtomicUsize,
    /// Started tasks pinned here and not finished (see `runtime::pin`).
    pinned: AtomicUsize,
    /// Set by the monitor while the worker is stuck in one coroutine: new tasks are not
    /// handed to it.
    stuck: AtomicBool,
    /// True while the worker is (about to be) blocked in its reactor.
    sleeping: AtomicBool,
    /// Runnable tasks; touched only by the thread running the loop (see `current::runs`).
    local: UnsafeCell<VecDeque<Arc<Task>>>,
    /// `local`'s length, for stats (written only by that thread).
    local_len: AtomicUsize,
    /// Timers of the tasks pinned here.
    timers: SpinLock<Timers>,
    /// Incremented each time the worker is handed to a new thread; a thread runs the loop only
    /// while the epoch it started with is current.
    owner: AtomicU64,
    /// The running task, null between tasks. With `switches`, this is all the monitor needs
    /// to tell a worker stuck in one coroutine (no clock is read on the switch path).
    running: AtomicPtr<Task>,
    /// Statistics.
    started: AtomicU64,
    finished: AtomicU64,
    switches: AtomicU64,
    /// Dump requests: the monitor bumps `trace_request`; the worker records its coroutines'
    /// backtraces and sets `trace_done` to the same value (a futex word the monitor waits on).
    trace_request: AtomicU32,
    trace_done: AtomicU32,
    /// The kernel id of the thread running the loop (what libc reports in coroutine areas).
    tid: AtomicI32,
    /// An idle worker asking for some of this one's runnable tasks (`CORUN_STEAL=1`): its
    /// index + 1, or 0. Answered by this worker's loop at its next pick (see `share`).
    steal_request: AtomicUsize,
    /// The process generation it was made in ([`fork::generation`]): in the child of a fork
    /// made inside one of its coroutines, the loop ends as soon as control comes back to it.
    born: u64,
}

// SAFETY: `local` is only touched from the thread that runs the loop as the current owner
// (`current::runs`): the loop itself, and coroutines it is running, which cannot overlap with a
// borrow by the loop. Everything else is atomic or behind a lock.
unsafe impl Sync for Worker {}

/// A worker's counters, for `corun::stats`.
pub struct WorkerStats {
    pub started: u64,
    pub finished: u64,
    pub switches: u64,
    pub runnable: usize,
}

impl Worker {
    /// Creates worker `index` with its reactor.
    pub fn new(index: usize) -> io::Result<Worker> {
        Ok(Worker {
            index,
            reactor: Reactor::new()?,
            inbox: SegQueue::new(),
            inbox_count: AtomicUsize::new(0),
            pinned: AtomicUsize::new(0),
            stuck: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            local: UnsafeCell::new(VecDeque::new()),
            local_len: AtomicUsize::new(0),
            timers: SpinLock::new(Timers::default()),
            owner: AtomicU64::new(0),
            running: AtomicPtr::new(std::ptr::null_mut()),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            trace_request: AtomicU32::new(0),
            trace_done: AtomicU32::new(0),
            tid: AtomicI32::new(0),
            steal_request: AtomicUsize::new(0),
            born: fork::generation(),
        })
    }

    /// This worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This worker's reactor.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    fn is_current(&self) -> bool {
        current::runs(self)
    }

    /// Appends to the local queue.
    ///
    /// # Safety
    /// Only on the thread running the loop (`current::runs(self)`), with no other borrow of
    /// `local` alive.
    unsafe fn push_local(&self, task: Arc<Task>) {
        // SAFETY: guaranteed by the caller.
        let local = unsafe { &mut *self.local.get() };
        local.push_back(task);
        self.local_len.store(local.len(), Ordering::Relaxed);
    }

    /// Queues `task` (pinned to this worker) to run: locally when called on this worker's
    /// thread, through the inbox (and a wake-up) otherwise.
    pub fn schedule(&self, task: Arc<Task>) {
        if self.is_current() {
            // SAFETY: this thread runs the loop; the loop holds no borrow of `local` while a
            // coroutine (the only other caller on this thread) runs.
            unsafe { self.push_local(task) };
        } else {
            self.inbox.push(task);
            self.inbox_count.fetch_add(1, Ordering::SeqCst);
            self.wake();
        }
    }

    /// Adds a timer waking `task`'s wait `token` at `deadline`.
    pub fn add_timer(&self, deadline: u64, task: Arc<Task>, token: u64) {
        self.timers.lock().add(deadline, task, token);
        if !self.is_current() {
            self.wake(); // its next timeout may be earlier now
        }
    }

    /// Wakes the worker if it sleeps in its reactor.
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.reactor.wake();
        }
    }

    /// Whether the worker is sleeping (for the spawner's choice of whom to wake).
    pub fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst)
    }

    /// Started, unfinished tasks pinned here.
    pub fn pinned(&self) -> usize {
        self.pinned.load(Ordering::Relaxed)
    }

    /// Counts a task pinned here (`true`) or moved away or finished (`false`).
    pub(crate) fn count_pinned(&self, more: bool) {
        if more {
            self.pinned.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pinned.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Marks the worker stuck (by the monitor) or not.
    pub fn set_stuck(&self, stuck: bool) {
        self.stuck.store(stuck, Ordering::Relaxed);
    }

    /// Whether the monitor sees the worker stuck in one coroutine.
    pub fn is_stuck(&self) -> bool {
        self.stuck.load(Ordering::Relaxed)
    }

    /// Whether it is running a task right now.
    pub fn is_busy(&self) -> bool {
        !self.running.load(Ordering::Relaxed).is_null()
    }

    /// The task it is running and the number of resumes so far (which changes with every
    /// switch), if it is running one.
    pub fn running(&self) -> Option<(&Task, u64)> {
        let switches = self.switches.load(Ordering::Acquire);
        let task = self.running.load(Ordering::Acquire);
        // SAFETY: a non-null `running` is the task being resumed, kept alive by the loop's Arc
        // until after `running` is cleared; the monitor reads it only for a name and an id.
        (!task.is_null()).then(|| (unsafe { &*task }, switches))
    }

    /// The worker's counters.
    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            started: self.started.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            switches: self.switches.load(Ordering::Relaxed),
            runnable: self.local_len.load(Ordering::Relaxed) + self.inbox.len(),
        }
    }

    /// Hands the worker to a new owner; the thread holding it now lets go at its next switch.
    /// Returns the new owner epoch.
    pub fn take_over(&self) -> u64 {
        self.owner.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The current owner epoch (a new worker thread starts with it).
    pub fn owner_epoch(&self) -> u64 {
        self.owner.load(Ordering::SeqCst)
    }

    /// Asks the worker to record its coroutines' backtraces; returns the request number.
    pub fn request_traces(&self) -> u32 {
        let request = self
            .trace_request
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1);
        self.wake();
        request
    }

    /// The kernel thread id of the thread running the worker now (0 before it first ran).
    pub fn tid(&self) -> i32 {
        self.tid.load(Ordering::Relaxed)
    }

    /// The last trace request the worker completed (a futex word).
    pub fn traces_done(&self) -> &AtomicU32 {
        &self.trace_done
    }

    /// The worker loop, run by the thread that owns epoch `epoch`. Returns when the worker is
    /// handed to another thread.
    pub fn run(&'static self, runtime: &'static Runtime, epoch: u64) {
        current::set_worker(self, epoch);
        corun::coroutine::ensure_altstack();
        // SAFETY: gettid has no preconditions.
        self.tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut since_poll = 0u32;
        let mut picks = 0u32;
        // Idle moments to sleep through without spinning, and the next such penalty.
        let (mut spin_skip, mut spin_backoff) = (0u32, 0u32);
        while self.owner.load(Ordering::SeqCst) == epoch && self.born == fork::generation() {
            self.answer_trace_request();
            picks = picks.wrapping_add(1);
            if let Some(task) = self.next_task(runtime, picks) {
                self.run_task(task);
                since_poll += 1;
                if since_poll >= POLL_INTERVAL {
                    since_poll = 0;
                    self.poll(&mut events, 0);
                }
                continue;
            }
            since_poll = 0;
            // Nothing to run: if another worker is busy (so work may come from it any moment),
            // spin a little before sleeping — waking a sleeping thread costs a system call on
            // both sides — looking at the reactor too. At most one worker spins at a time.
            let others_busy = runtime
                .workers()
                .iter()
                .any(|w| !std::ptr::eq(w, self) && w.is_busy());
            if spin_skip > 0 {
                spin_skip -= 1;
            } else if others_busy && runtime.start_spinning() {
                let found = self.spin_for_work(runtime, &mut events);
                runtime.stop_spinning();
                if found == Spin::Handed {
                    spin_backoff = 0;
                } else {
                    spin_backoff = (spin_backoff * 2 + 1).min(SPIN_BACKOFF_MAX);
                    spin_skip = spin_backoff;
                }
                if found != Spin::Nothing {
                    continue;
                }
            }
            // Still nothing after spinning (or looking at our own reactor): only now ask a busy
            // worker for some of its queue. Asking at once, before our own events had a chance
            // to arrive, moved coroutines (and their fds) back and forth between two workers
            // that were both about to have work of their own.
            if runtime.steals() {
                self.request_work(runtime);
            }
            self.sleeping.store(true, Ordering::SeqCst);
            // Re-check after announcing sleep: a task queued before `sleeping` was visible
            // would otherwise wait for the next event. (The fence pairs with the SeqCst swap
            // in `wake`, which follows every push.)
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.has_local_work()
                || !runtime.injector.is_empty()
                || self.trace_request.load(Ordering::SeqCst)
                    != self.trace_done.load(Ordering::SeqCst)
            {
                self.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            let timeout = self.timeout_ms();
            self.poll(&mut events, timeout);
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }

    /// Spins for up to `SPIN_ROUNDS` checks of the queues; says whether work showed up and
    /// from where.
    fn spin_for_work(&self, runtime: &Runtime, events: &mut [libc::epoll_event]) -> Spin {
        for round in 0..SPIN_ROUNDS {
            if self.has_local_work() || !runtime.injector.is_empty() {
                return Spin::Handed;
            }
            if round % SPIN_POLL_EVERY == SPIN_POLL_EVERY - 1 {
                self.poll(events, 0);
                if self.has_local_work() {
                    return Spin::OwnEvents;
                }
            }
            for _ in 0..SPIN_PAUSES {
                std::hint::spin_loop();
            }
        }
        Spin::Nothing
    }

    fn has_local_work(&self) -> bool {
        self.local_len.load(Ordering::Relaxed) != 0 || !self.inbox.is_empty()
    }

    /// The next task to run. Tasks woken from other threads join the back of the local queue
    /// first, so a coroutine that keeps yielding cannot starve them; every
    /// `POLL_INTERVAL`-th pick looks at the injector first, so it cannot starve new ones either.
    fn next_task(&self, runtime: &'static Runtime, picks: u32) -> Option<Arc<Task>> {
        if picks % POLL_INTERVAL == POLL_INTERVAL - 1 {
            if let Some(task) = self.take_new(runtime) {
                return Some(task);
            }
        }
        let next = {
            // SAFETY: called from the loop on its thread; the borrow ends here.
            let local = unsafe { &mut *self.local.get() };
            if self.inbox_count.load(Ordering::Relaxed) != 0 {
                while let Some(task) = self.inbox.pop() {
                    self.inbox_count.fetch_sub(1, Ordering::Relaxed);
                    local.push_back(task);
                }
            }
            if self.steal_request.load(Ordering::Relaxed) != 0 {
                self.share(runtime, local);
            }
            let next = local.pop_front();
            self.local_len.store(local.len(), Ordering::Relaxed);
            next
        };
        if let Some(task) = next {
            return Some(task);
        }
        self.take_new(runtime)
    }

    /// A new task from the injector, to start here — unless this worker already has many more
    /// started tasks than another (which is not stuck): then it goes to that one. Placement
    /// is the only balancing a started task gets without stealing, and whichever worker is
    /// free first would otherwise take every new connection of a burst (83 of 100 `wrk`
    /// connections on one of two workers, before this).
    fn take_new(&self, runtime: &'static Runtime) -> Option<Arc<Task>> {
        while let Some(task) = runtime.injector.pop() {
            let mine = self.pinned();
            let lightest = runtime
                .workers()
                .iter()
                .filter(|w| !std::ptr::eq(*w, self) && !w.is_stuck())
                .min_by_key(|w| w.pinned());
            match lightest {
                Some(other) if mine >= BALANCE_FROM && mine > 2 * other.pinned() + 2 => {
                    other.schedule(other.adopt(runtime, task));
                }
                _ => return Some(self.adopt(runtime, task)),
            }
        }
        None
    }

    /// Asks the other worker with the most tasks queued for some of them; they arrive in this
    /// worker's inbox. (Whether that worker is running a task right now does not matter: it
    /// answers at its next pick. Requiring it would lose the race with a waker that is between
    /// two tasks when it wakes us, as `offer_work` does.)
    fn request_work(&self, runtime: &Runtime) {
        let victim = runtime
            .workers()
            .iter()
            .filter(|w| !std::ptr::eq(*w, self))
            .max_by_key(|w| w.local_len.load(Ordering::Relaxed))
            .filter(|w| w.local_len.load(Ordering::Relaxed) > 0);
        if let Some(victim) = victim {
            // One request at a time per victim; a lost race just means another idle worker asked.
            let _ = victim.steal_request.compare_exchange(
                0,
                self.index + 1,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }

    /// With tasks queued here beyond the next one, wakes a sleeping worker so that it asks for
    /// some (an idle worker asks only when it runs out of work, and then sleeps until woken).
    /// Called after every look at the reactor and the timers, where runnable tasks arrive in
    /// batches (Go's `wakep` after a netpoll): a worker whose coroutines all wait a moment at
    /// a time never has a long queue at its periodic looks, and the other one slept on.
    fn offer_work(&self, runtime: &Runtime) {
        if self.local_len.load(Ordering::Relaxed) < 2 {
            return;
        }
        if let Some(sleeper) = runtime
            .workers()
            .iter()
            .find(|w| !std::ptr::eq(*w, self) && w.is_sleeping())
        {
            sleeper.wake();
        }
    }

    /// Answers a steal request: moves the back half (rounded up) of the local queue to the
    /// asking worker. Only runs when stealing is on, which requires per-coroutine identity
    /// (so moving a started coroutine to another thread is sound).
    fn share(&self, runtime: &Runtime, local: &mut VecDeque<Arc<Task>>) {
        let asker = self.steal_request.swap(0, Ordering::Acquire);
        let Some(thief) = asker
            .checked_sub(1)
            .and_then(|index| runtime.workers().get(index))
        else {
            return;
        };
        let give = local.len().div_ceil(2);
        if give == 0 || std::ptr::eq(thief, self) {
            return;
        }
        for task in local.drain(local.len() - give..) {
            super::pin(runtime, &task, thief);
            thief.inbox.push(task);
            thief.inbox_count.fetch_add(1, Ordering::SeqCst);
        }
        thief.wake();
    }

    /// Pins a new task here (called by this worker's thread, or by another handing it over).
    fn adopt(&self, runtime: &Runtime, task: Arc<Task>) -> Arc<Task> {
        super::pin(runtime, &task, self);
        self.started.fetch_add(1, Ordering::Relaxed);
        task
    }

    /// Resumes `task` until it suspends or finishes, and acts on the outcome.
    fn run_task(&self, task: Arc<Task>) {
        task.set_running();
        self.running
            .store(Arc::as_ptr(&task) as *mut Task, Ordering::Release);
        // Only the thread running this worker's loop writes it (a plain increment, no atomic
        // read-modify-write on the switch path).
        self.switches
            .store(self.switches.load(Ordering::Relaxed) + 1, Ordering::Release);
        let outcome = {
            let _entered = current::enter(&task);
            // SAFETY: this worker owns the task (pinned here), the thread running this loop
            // owns the worker, and nothing else borrows the task's coroutine or area.
            let (coroutine, area) = unsafe { (task.coroutine(), task.area()) };
            let Some(co) = coroutine else {
                return; // finished tasks are never queued; nothing to do
            };
            if identity::enabled() {
                self.enter_area(&task, co, area);
            }
            co.resume(Resume::Run)
        };
        if self.born != fork::generation() {
            // The child of a fork made in this coroutine, which ran on as the child's one
            // thread and has now returned: nothing of this runtime is left to wake or queue
            // (its joiner, say, exists only in the parent), so the thread ends here (and with
            // it, as the last thread, the process), leaking the task.
            std::mem::forget(task);
            return;
        }
        task.set_stopped();
        // Clear the monitor's view only if it still shows this task (after a hand-off another
        // thread may be running one of this worker's tasks by now; losing that race only
        // delays the monitor's next look).
        if std::ptr::eq(self.running.load(Ordering::Relaxed), Arc::as_ptr(&task)) {
            self.running.store(std::ptr::null_mut(), Ordering::Release);
        }
        match outcome {
            CoroutineResult::Yield(Suspend::Yield) => self.schedule(task),
            CoroutineResult::Yield(Suspend::Park) => {
                if !task.try_park() {
                    self.schedule(task);
                }
            }
            CoroutineResult::Return(()) => {
                if !task.finish_keeps_stack() {
                    if task.is_detached_pthread() {
                        // Its `pthread_t` names the slot about to be reused: forget it first.
                        // SAFETY: as above.
                        if let Some(area) = unsafe { task.area() }.as_ref() {
                            crate::threads::forget(area.tp());
                        }
                    }
                    // SAFETY: as above; the area stays in the stack slot, which goes idle.
                    unsafe { task.drop_coroutine() };
                }
                self.finished.fetch_add(1, Ordering::Relaxed);
                super::unpin(&task);
                super::registry::remove(&task);
                if let Some(joiner) = task.finish() {
                    super::schedule(joiner);
                }
            }
        }
    }

    /// Gives `task` its own thread area (on its first run: the one in its stack slot, built
    /// there unless an earlier coroutine on the slot left it) and points the area's runtime
    /// thread-locals and tid at this worker, before a resume.
    fn enter_area(
        &self,
        task: &Task,
        co: &mut super::task::TaskCoroutine,
        area: &mut Option<Area>,
    ) {
        let offsets = super::tls_offsets();
        let tid = self.tid.load(Ordering::Relaxed);
        if area.is_none() {
            let Some(new) = co.stack().area() else { return };
            let reused = new.is_built();
            if !reused && !new.build() {
                return; // out of memory for a DTV: the coroutine shares the worker's identity
            }
            let (low, high) = co.stack_bounds();
            new.attach(low, high, tid, reused);
            // SAFETY: `task_offset` is the offset of the static `TASK` thread-local.
            unsafe { new.write_tls(offsets.task, task as *const Task as usize) };
            // SAFETY: the area is complete (descriptor, TLS, DTV) and lives as long as the
            // task's stack slot.
            unsafe { co.set_thread_pointer(new.tp()) };
            *area = Some(new);
        }
        if let Some(area) = area {
            area.set_tid(tid);
            // SAFETY: the offsets of the static `WORKER` and `EPOCH` thread-locals.
            unsafe {
                area.write_tls(offsets.worker, self as *const Worker as usize);
                area.write_tls(offsets.epoch, self.owner_epoch() as usize);
            }
        }
    }

    /// Records a backtrace of every started, suspended task pinned here, if asked.
    fn answer_trace_request(&self) {
        let request = self.trace_request.load(Ordering::SeqCst);
        if request == self.trace_done.load(Ordering::SeqCst) {
            return;
        }
        for task in super::registry::snapshot() {
            if task.worker() != self.index
                || !task.started()
                || task.is_finished()
                || task.is_running()
            {
                continue;
            }
            let _entered = current::enter(&task);
            // SAFETY: this thread owns the worker and the task is suspended (we are between
            // tasks); a Trace resume makes it record a backtrace and suspend again unchanged.
            if let Some(co) = unsafe { task.coroutine() } {
                co.resume(Resume::Trace);
            }
        }
        self.trace_done.store(request, Ordering::SeqCst);
        futex_wake(&self.trace_done, i32::MAX);
    }

    /// Milliseconds until the next timer (rounded up), or -1 without timers.
    fn timeout_ms(&self) -> libc::c_int {
        let Some(deadline) = self.timers.lock().next_deadline() else {
            return -1;
        };
        let now = now_ns();
        if deadline <= now {
            return 0;
        }
        (deadline - now).div_ceil(1_000_000).min(i32::MAX as u64) as libc::c_int
    }

    /// Polls the reactor (waiting up to `timeout_ms`), wakes tasks for its events, and fires
    /// due timers.
    fn poll(&self, events: &mut [libc::epoll_event], timeout_ms: libc::c_int) {
        self.reactor.poll(events, timeout_ms, |event| {
            if let Event::Io {
                fd,
                generation,
                events,
            } = event
            {
                fd::table().on_event(fd, generation, events, super::schedule);
            }
        });
        let mut due = Vec::new();
        {
            let mut timers = self.timers.lock();
            // Reading the clock can be a system call on a VM: only with timers pending.
            if timers.next_deadline().is_some() {
                timers.expire(now_ns(), |task, token| due.push((task, token)));
            }
        }
        for (task, token) in due {
            if task.wake(token) {
                super::schedule(task);
            }
        }
        if let Some(runtime) = super::try_get().filter(|r| r.steals()) {
            self.offer_work(runtime);
        }
    }
}
