//! A worker thread: runs its pinned tasks, takes new ones from the runtime's injector, and
//! sleeps in its reactor when there is nothing to do.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use corun::coroutine::CoroutineResult;
use crossbeam_queue::SegQueue;

use super::current;
use super::reactor::{Event, Reactor};
use super::task::{Suspend, Task};
use super::timer::{now_ns, Timers};
use super::Runtime;
use crate::fd;

/// Tasks run between two non-blocking looks at the reactor and the timers.
const POLL_INTERVAL: u32 = 61;

/// One worker of the runtime.
pub struct Worker {
    index: usize,
    reactor: Reactor,
    /// Tasks of this worker woken from other threads.
    inbox: SegQueue<Arc<Task>>,
    /// True while the worker is (about to be) blocked in its reactor.
    sleeping: AtomicBool,
    /// Runnable tasks; touched only by this worker's thread.
    local: UnsafeCell<VecDeque<Arc<Task>>>,
    /// Timers; touched only by this worker's thread.
    timers: UnsafeCell<Timers>,
}

// SAFETY: `local` and `timers` are only touched from the worker's own thread (see the
// accessors); everything else is thread-safe.
unsafe impl Sync for Worker {}
// SAFETY: as above.
unsafe impl Send for Worker {}

impl Worker {
    /// Creates worker `index` with its reactor.
    pub fn new(index: usize) -> io::Result<Worker> {
        Ok(Worker {
            index,
            reactor: Reactor::new()?,
            inbox: SegQueue::new(),
            sleeping: AtomicBool::new(false),
            local: UnsafeCell::new(VecDeque::new()),
            timers: UnsafeCell::new(Timers::default()),
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
        current::worker().is_some_and(|w| std::ptr::eq(w, self))
    }

    /// Queues `task` (pinned to this worker) to run: locally when called on this worker's
    /// thread, through the inbox otherwise.
    pub fn schedule(&self, task: Arc<Task>) {
        if self.is_current() {
            // SAFETY: on the worker's own thread, and no other borrow of `local` is alive: the
            // scheduling loop never holds one across a resume or a callback.
            unsafe { (*self.local.get()).push_back(task) };
        } else {
            self.inbox.push(task);
            self.wake();
        }
    }

    /// Adds a timer waking `task`'s wait `token` at `deadline`.
    ///
    /// # Panics
    /// When called from another thread (timers belong to the tasks pinned here).
    pub fn add_timer(&self, deadline: u64, task: Arc<Task>, token: u64) {
        assert!(
            self.is_current(),
            "corun: timer added from a foreign thread"
        );
        // SAFETY: on the worker's own thread; no other borrow of `timers` is alive.
        unsafe { (*self.timers.get()).add(deadline, task, token) };
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

    /// The worker's thread body; never returns.
    pub fn run(&'static self, runtime: &'static Runtime) -> ! {
        current::set_worker(self);
        corun::coroutine::ensure_altstack();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut since_poll = 0u32;
        let mut picks = 0u32;
        loop {
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
            // Nothing runnable: look at the reactor without blocking first.
            self.poll(&mut events, 0);
            if self.has_local_work() {
                continue;
            }
            self.sleeping.store(true, Ordering::SeqCst);
            // Re-check after announcing sleep: a task queued before `sleeping` was visible
            // would otherwise wait for the next event. (The fence pairs with the SeqCst swap
            // in `wake`, which follows every push.)
            std::sync::atomic::fence(Ordering::SeqCst);
            if !self.inbox.is_empty() || !runtime.injector.is_empty() {
                self.sleeping.store(false, Ordering::SeqCst);
                continue;
            }
            let timeout = self.timeout_ms();
            self.poll(&mut events, timeout);
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }

    fn has_local_work(&self) -> bool {
        // SAFETY: worker thread; short-lived borrow.
        !unsafe { &*self.local.get() }.is_empty() || !self.inbox.is_empty()
    }

    /// The next task to run. Tasks woken from other threads join the back of the local queue
    /// first, so a coroutine that keeps yielding cannot starve them; every
    /// `POLL_INTERVAL`-th pick looks at the injector first, so it cannot starve new ones either.
    fn next_task(&self, runtime: &Runtime, picks: u32) -> Option<Arc<Task>> {
        if picks % POLL_INTERVAL == POLL_INTERVAL - 1 {
            if let Some(task) = runtime.injector.pop() {
                task.pin(self.index);
                return Some(task);
            }
        }
        // SAFETY: worker thread; the borrow ends before the task runs.
        let local = unsafe { &mut *self.local.get() };
        while let Some(task) = self.inbox.pop() {
            local.push_back(task);
        }
        if let Some(task) = local.pop_front() {
            return Some(task);
        }
        let task = runtime.injector.pop()?;
        task.pin(self.index);
        Some(task)
    }

    /// Resumes `task` until it suspends or finishes, and acts on the outcome.
    fn run_task(&self, task: Arc<Task>) {
        task.set_running();
        let outcome = {
            let _entered = current::enter(&task);
            // SAFETY: this worker owns the task (pinned here) and nothing else borrows its
            // coroutine.
            let coroutine = unsafe { task.coroutine() };
            match coroutine {
                Some(co) => co.resume(()),
                None => return, // finished tasks are never queued; nothing to do
            }
        };
        match outcome {
            CoroutineResult::Yield(Suspend::Yield) => self.schedule(task),
            CoroutineResult::Yield(Suspend::Park) => {
                if !task.try_park() {
                    self.schedule(task);
                }
            }
            CoroutineResult::Return(()) => {
                // SAFETY: as above; dropping the finished coroutine returns its stack to the pool.
                unsafe { *task.coroutine() = None };
                if let Some(joiner) = task.finish() {
                    runtime_schedule(joiner);
                }
            }
        }
    }

    /// Milliseconds until the next timer (rounded up), or -1 without timers.
    fn timeout_ms(&self) -> libc::c_int {
        // SAFETY: worker thread; short-lived borrow.
        let Some(deadline) = (unsafe { &*self.timers.get() }).next_deadline() else {
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
                fd::table().on_event(fd, generation, events, runtime_schedule);
            }
        });
        // SAFETY: worker thread; the callback only queues tasks (touching `local`, not
        // `timers`).
        let timers = unsafe { &mut *self.timers.get() };
        timers.expire(now_ns(), |task, token| {
            if task.wake(token) {
                runtime_schedule(task);
            }
        });
    }
}

/// Queues a woken task on the worker it is pinned to.
pub fn runtime_schedule(task: Arc<Task>) {
    super::schedule(task);
}
