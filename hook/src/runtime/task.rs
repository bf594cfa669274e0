//! A runtime coroutine: its stack and closure, its scheduling state, and its join state.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;

use corun::abi::EntryFn;
use corun::coroutine::{Coroutine, Yielder};

use super::stack::TaskStack;
use crate::identity::Area;
use crate::sync::{futex_wait, futex_wake, SpinLock};

/// Why a coroutine hands control back to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspend {
    /// Waiting for a wake-up (fd readiness, a timer, a join …); see [`Task::begin_wait`].
    Park,
    /// Still runnable: put it at the back of the queue.
    Yield,
}

/// What a worker asks of a suspended coroutine when it resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Carry on.
    Run,
    /// Record a backtrace of your stack (for a dump) and suspend again as you were.
    Trace,
}

/// What a parked coroutine waits for (shown in dumps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitInfo {
    /// Not waiting (running, runnable, or not started).
    None,
    /// An fd to become readable (`write == false`) or writable.
    Fd { fd: i32, write: bool, deadline: u64 },
    /// Any of `nfds` fds (poll, select, epoll_wait), or the deadline.
    Poll { nfds: usize, deadline: u64 },
    /// A sleep.
    Sleep { deadline: u64 },
    /// A futex word (std::sync and friends); `shared`: a process-shared one, which another
    /// process may wake.
    Futex {
        addr: usize,
        deadline: u64,
        shared: bool,
    },
    /// Another coroutine to finish.
    Join { id: u64 },
    /// A call running on the blocking pool.
    Blocking { call: &'static str },
    /// A child process.
    Child { pid: i32 },
}

/// A [`WaitInfo`] in three words: written only by the task itself (no lock on the park path),
/// read by the monitor for dumps, which may see a mix of two consecutive values (harmless for a
/// diagnostic).
#[derive(Default)]
struct WaitCell {
    kind: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
    /// When the wait began (the monitor's clock; 0 while not waiting).
    since: AtomicU64,
}

impl WaitCell {
    fn set(&self, info: WaitInfo) {
        let (kind, a, b) = match info {
            WaitInfo::None => (0, 0, 0),
            WaitInfo::Fd {
                fd,
                write,
                deadline,
            } => (1 | (u64::from(write) << 8), fd as u64, deadline),
            WaitInfo::Poll { nfds, deadline } => (2, nfds as u64, deadline),
            WaitInfo::Sleep { deadline } => (3, 0, deadline),
            WaitInfo::Futex {
                addr,
                deadline,
                shared,
            } => (4 | (u64::from(shared) << 8), addr as u64, deadline),
            WaitInfo::Join { id } => (5, id, 0),
            WaitInfo::Blocking { call } => (
                6,
                BLOCKING_CALLS
                    .iter()
                    .position(|c| *c == call)
                    .unwrap_or(usize::MAX) as u64,
                0,
            ),
            WaitInfo::Child { pid } => (7, pid as u64, 0),
        };
        let since = if kind == 0 {
            0
        } else {
            super::timer::coarse_now_ns()
        };
        self.a.store(a, Ordering::Relaxed);
        self.b.store(b, Ordering::Relaxed);
        self.since.store(since, Ordering::Relaxed);
        self.kind.store(kind, Ordering::Release);
    }

    fn get(&self) -> WaitInfo {
        let kind = self.kind.load(Ordering::Acquire);
        let (a, b) = (
            self.a.load(Ordering::Relaxed),
            self.b.load(Ordering::Relaxed),
        );
        match kind & 0xff {
            1 => WaitInfo::Fd {
                fd: a as i32,
                write: kind >> 8 != 0,
                deadline: b,
            },
            2 => WaitInfo::Poll {
                nfds: a as usize,
                deadline: b,
            },
            3 => WaitInfo::Sleep { deadline: b },
            4 => WaitInfo::Futex {
                addr: a as usize,
                deadline: b,
                shared: kind >> 8 != 0,
            },
            5 => WaitInfo::Join { id: a },
            6 => BLOCKING_CALLS
                .get(a as usize)
                .map_or(WaitInfo::None, |call| WaitInfo::Blocking { call }),
            7 => WaitInfo::Child { pid: a as i32 },
            _ => WaitInfo::None,
        }
    }
}

/// The calls that run on the blocking pool (`WaitInfo::Blocking` names one of them).
pub const BLOCKING_CALLS: [&str; 3] = ["getaddrinfo", "getnameinfo", "corun::unblock"];

/// The coroutine type the runtime runs.
pub type TaskCoroutine = Coroutine<Resume, Suspend, (), TaskStack>;

// Scheduling states (`Task::state`).
/// Running, or queued to run; no wake-up pending.
const IDLE: u8 = 0;
/// Suspended in `Park`; a wake-up must queue it.
const PARKED: u8 = 1;
/// A wake-up arrived while it was not parked; its next `Park` returns at once.
const NOTIFIED: u8 = 2;

// Join states (`Task::finished`).
const RUNNING: u32 = 0;
const RUNNING_JOINED: u32 = 2;
const FINISHED: u32 = 1;

// What a task is to the program's pthreads (`Task::pthread`; see `crate::threads`).
/// A corun task (`corun::spawn`): its stack goes back to the pool when it finishes.
const NOT_A_PTHREAD: u8 = 0;
/// A joinable coroutine thread, not finished.
const PTHREAD_JOINABLE: u8 = 1;
/// A joinable coroutine thread that finished: its stack slot (which holds its `pthread_t`,
/// the descriptor) is kept until it is joined or detached, as glibc keeps a thread's.
const PTHREAD_KEPT: u8 = 2;
/// A detached coroutine thread: its slot goes back when it finishes.
const PTHREAD_DETACHED: u8 = 3;

/// What `pthread_detach` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Detach {
    /// Running: marked, it gives its slot back when it finishes.
    Marked,
    /// Finished: the caller releases its kept slot ([`Task::release_kept_stack`]).
    Finished,
    /// Detached already (`EINVAL`).
    Already,
}

/// Not assigned to a worker yet (never started).
pub const NO_WORKER: usize = usize::MAX;

/// One coroutine of the runtime.
pub struct Task {
    id: u64,
    /// The name given at spawn, or set since by `pthread_setname_np` on a coroutine thread.
    name: SpinLock<Option<Box<str>>>,
    /// `NOT_A_PTHREAD` or a `PTHREAD_*` state: see [`Task::finish_keeps_stack`].
    pthread: AtomicU8,
    /// What the coroutine will be made of, then the coroutine (made by the worker that starts
    /// the task, so the spawner never touches the stack's memory); touched only by the worker
    /// that owns the task (see `worker`).
    body: UnsafeCell<Body>,
    /// The coroutine's own thread area (in its stack slot) once it has started, when
    /// identities are isolated (same access rule).
    area: UnsafeCell<Option<Area>>,
    /// The coroutine's yielder, set when it starts; used to suspend from inside hooks.
    yielder: AtomicPtr<Yielder<Resume, Suspend>>,
    /// The worker this task is pinned to once started, or `NO_WORKER`.
    worker: AtomicUsize,
    state: AtomicU8,
    /// Incremented by every wait; a wake-up names the wait it is for.
    wait_seq: AtomicU64,
    /// The wait a signal interrupted (0: none), see [`Task::interrupt`].
    interrupted: AtomicU64,
    /// The futex wait a waker took off its list (0: none), see [`Task::take_off_futex`].
    futex_taken: AtomicU64,
    /// `RUNNING`, `RUNNING_JOINED` (a thread waits on this futex word) or `FINISHED`.
    finished: AtomicU32,
    /// A coroutine waiting in `join`, with the wait it is in.
    joiner: SpinLock<Option<(Arc<Task>, u64)>>,
    /// What it waits for while parked.
    wait: WaitCell,
    /// The interposed call it is in, while inside one that passes through to libc (for the
    /// stuck-worker warning).
    in_call: AtomicPtr<&'static str>,
    /// The last backtrace recorded for a dump.
    trace: SpinLock<Option<Vec<usize>>>,
    /// True while a thread is resuming it.
    running: AtomicBool,
}

// SAFETY: `body`, `area` and `yielder` are only used by the single thread that
// owns the task at a time: the spawner until it queues the task, then the worker that takes it
// from a queue (the queue hand-off orders the accesses), and after that the worker it is pinned
// to (a move to another worker is ordered by that worker's inbox). The
// closure inside is `Send` (the front-end requires `F: Send`). Everything else is atomic or
// behind a lock.
unsafe impl Send for Task {}
// SAFETY: as above.
unsafe impl Sync for Task {}

/// The closure's data pointer, made sendable: the front-end hands over a `Send` closure.
struct EntryData(*mut c_void);
// SAFETY: points at the front-end's boxed `F: Send` closure.
unsafe impl Send for EntryData {}

/// A task that has not started: its stack and what to run on it.
struct Start {
    stack: TaskStack,
    entry: EntryFn,
    data: EntryData,
}

/// A task's coroutine through its life (one field: a sleeping task's memory is counted).
enum Body {
    /// Spawned, not started.
    Start(Start),
    /// Started (made on its first run).
    Coroutine(TaskCoroutine),
    /// Finished: the coroutine and its stack are gone.
    Done,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Task {
    /// Creates a task that will run `entry(data)` on `stack`.
    pub fn new(
        entry: EntryFn,
        data: *mut c_void,
        name: Option<Box<str>>,
        stack: TaskStack,
    ) -> Arc<Task> {
        Arc::new(Task {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name: SpinLock::new(name),
            pthread: AtomicU8::new(NOT_A_PTHREAD),
            body: UnsafeCell::new(Body::Start(Start {
                stack,
                entry,
                data: EntryData(data),
            })),
            area: UnsafeCell::new(None),
            yielder: AtomicPtr::new(std::ptr::null_mut()),
            worker: AtomicUsize::new(NO_WORKER),
            state: AtomicU8::new(IDLE),
            wait_seq: AtomicU64::new(0),
            interrupted: AtomicU64::new(0),
            futex_taken: AtomicU64::new(0),
            finished: AtomicU32::new(0),
            joiner: SpinLock::new(None),
            wait: WaitCell::default(),
            in_call: AtomicPtr::new(std::ptr::null_mut()),
            trace: SpinLock::new(None),
            running: AtomicBool::new(false),
        })
    }

    /// The coroutine, made on first use from what `new` was given.
    fn make_coroutine(&self, start: Start) -> TaskCoroutine {
        let Start {
            mut stack,
            entry,
            data,
        } = start;
        stack.place();
        let this: *const Task = self;
        Coroutine::with_stack(
            stack,
            move |yielder: &Yielder<Resume, Suspend>, _: Resume| {
                let data = data;
                // SAFETY: the task outlives its coroutine (the worker holds an Arc while resuming).
                unsafe {
                    (*this)
                        .yielder
                        .store(yielder as *const _ as *mut _, Ordering::Release)
                };
                let isolated = crate::identity::enabled();
                if isolated {
                    crate::identity::start_on_area();
                }
                let born = super::fork::generation();
                // SAFETY: the front-end's entry takes its data back exactly once and never unwinds.
                unsafe { entry(data.0) };
                if super::fork::generation() != born {
                    // A fork inside this coroutine made this process, whose one thread the
                    // coroutine was: its end is the end of the process, as when the last
                    // thread returns. (glibc counts this identity as the process's thread, so
                    // the exit is made here, not on the worker's.)
                    super::fork::last_thread_returned();
                }
                if isolated {
                    crate::identity::finish_on_area();
                }
            },
        )
    }

    /// The task's id (from 1, never reused).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The name given at spawn or set since, if any.
    pub fn name(&self) -> Option<String> {
        self.name.lock().as_deref().map(str::to_owned)
    }

    /// Calls `f` with the name, unless the name's lock stays taken (a signal handler asking
    /// while the interrupted code renames the task): then with `None`.
    pub fn with_name_if_free<R>(&self, f: impl FnOnce(Option<&str>) -> R) -> R {
        match self.name.try_lock_for(64) {
            Some(name) => f(name.as_deref()),
            None => f(None),
        }
    }

    /// Renames the task (`pthread_setname_np` on a coroutine thread).
    pub fn set_name(&self, name: Option<Box<str>>) {
        *self.name.lock() = name;
    }

    /// Marks the task a joinable coroutine thread (before it is queued).
    pub fn make_pthread(&self) {
        self.pthread.store(PTHREAD_JOINABLE, Ordering::Release);
    }

    /// Called by the worker when the coroutine has returned, before [`finish`](Self::finish):
    /// true if the task keeps its stack slot (a joinable coroutine thread: its descriptor,
    /// the `pthread_t`, stays valid until the join); false if the slot is to go back now.
    pub fn finish_keeps_stack(&self) -> bool {
        self.pthread
            .compare_exchange(
                PTHREAD_JOINABLE,
                PTHREAD_KEPT,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Whether this is a detached coroutine thread.
    pub fn is_detached_pthread(&self) -> bool {
        self.pthread.load(Ordering::Acquire) == PTHREAD_DETACHED
    }

    /// `pthread_detach` of this coroutine thread (see [`Detach`]).
    pub fn detach_pthread(&self) -> Detach {
        match self.pthread.compare_exchange(
            PTHREAD_JOINABLE,
            PTHREAD_DETACHED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Detach::Marked,
            Err(PTHREAD_KEPT) => Detach::Finished,
            Err(_) => Detach::Already,
        }
    }

    /// Gives back the stack slot a finished, joinable coroutine thread kept (after its join or
    /// detach). Does nothing for any other task.
    pub fn release_kept_stack(&self) {
        if self
            .pthread
            .compare_exchange(
                PTHREAD_KEPT,
                PTHREAD_DETACHED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            // SAFETY: the coroutine has returned and the worker, seeing PTHREAD_KEPT, left its
            // body alone and then marked the task finished (which the caller observed):
            // nobody else touches the body or the area any more, and the CAS above makes
            // this the only release.
            unsafe { self.drop_coroutine() };
        }
    }

    /// The worker the task is pinned to, or `NO_WORKER` before it starts.
    pub fn worker(&self) -> usize {
        self.worker.load(Ordering::Acquire)
    }

    /// Pins the task to `worker` (called when a worker starts it).
    pub fn pin(&self, worker: usize) {
        self.worker.store(worker, Ordering::Release);
    }

    /// The coroutine, for the owning worker: made on the task's first run (`None` once it
    /// has finished).
    ///
    /// # Safety
    /// Only the thread that owns the task may call this, and not while another reference
    /// obtained from it is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn coroutine(&self) -> Option<&mut TaskCoroutine> {
        // SAFETY: guaranteed by the caller.
        let body = unsafe { &mut *self.body.get() };
        if let Body::Start(_) = body {
            let Body::Start(start) = std::mem::replace(body, Body::Done) else {
                unreachable!()
            };
            *body = Body::Coroutine(self.make_coroutine(start));
        }
        match body {
            Body::Coroutine(coroutine) => Some(coroutine),
            _ => None,
        }
    }

    /// Drops the finished coroutine, which makes its stack slot idle (with the thread area in
    /// it, for the next coroutine that takes the slot), and the task's handle on that area.
    ///
    /// # Safety
    /// As for [`coroutine`](Self::coroutine).
    pub unsafe fn drop_coroutine(&self) {
        // SAFETY: guaranteed by the caller.
        unsafe {
            *self.body.get() = Body::Done;
            *self.area.get() = None;
        }
    }

    /// The thread area, for the owning worker.
    ///
    /// # Safety
    /// As for [`coroutine`](Self::coroutine).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn area(&self) -> &mut Option<Area> {
        // SAFETY: guaranteed by the caller.
        unsafe { &mut *self.area.get() }
    }

    /// Suspends the running coroutine (which must be this task) for `reason`. A resume that
    /// asks for a backtrace records one and suspends again, as if nothing happened.
    ///
    /// # Safety
    /// Must be called on this task's own coroutine stack.
    pub unsafe fn suspend(&self, reason: Suspend) {
        let yielder = self.yielder.load(Ordering::Relaxed);
        debug_assert!(!yielder.is_null());
        // SAFETY: we run on this task's coroutine, whose yielder lives on its stack.
        while unsafe { (*yielder).suspend(reason) } == Resume::Trace {
            *self.trace.lock() = Some(super::dump::capture_backtrace());
        }
    }

    /// What the task waits for.
    pub fn wait_info(&self) -> WaitInfo {
        self.wait.get()
    }

    /// Since when (the monitor's clock, `timer::coarse_now_ns`) the task has waited in its current wait; 0 if it is
    /// not waiting.
    pub fn waiting_since(&self) -> u64 {
        self.wait.since.load(Ordering::Relaxed)
    }

    /// Records what the task waits for (only the task itself does).
    pub fn set_wait_info(&self, info: WaitInfo) {
        self.wait.set(info);
    }

    /// The interposed call the task is in, if it is in one that passes through to libc.
    pub fn in_call(&self) -> Option<&'static str> {
        let name = self.in_call.load(Ordering::Relaxed);
        // SAFETY: only `set_in_call` stores, and it stores pointers to `&'static str`s.
        (!name.is_null()).then(|| unsafe { *name })
    }

    /// Records (or clears) the interposed call the task is in.
    pub fn set_in_call(&self, name: Option<&'static &'static str>) {
        let ptr = name.map_or(std::ptr::null_mut(), |n| {
            n as *const &'static str as *mut &'static str
        });
        self.in_call.store(ptr, Ordering::Relaxed);
    }

    /// Takes the backtrace (return addresses) recorded by the last trace request.
    pub fn take_trace(&self) -> Option<Vec<usize>> {
        self.trace.lock().take()
    }

    /// Whether the coroutine has started (it has a yielder).
    pub fn started(&self) -> bool {
        !self.yielder.load(Ordering::Acquire).is_null()
    }

    /// Whether the task is parked (waiting for a wake-up).
    pub fn is_parked(&self) -> bool {
        self.state.load(Ordering::Acquire) == PARKED
    }

    /// Starts a wait: returns the token that wake-ups for it must carry. Register the token
    /// with whatever will wake the task, then suspend with [`Suspend::Park`].
    pub fn begin_wait(&self) -> u64 {
        // Only the task itself starts waits, so a plain increment will do.
        let token = self.wait_seq.load(Ordering::Relaxed) + 1;
        self.wait_seq.store(token, Ordering::Release);
        token
    }

    /// The wait the task is in (or was last in).
    pub fn wait_token(&self) -> u64 {
        self.wait_seq.load(Ordering::Acquire)
    }

    /// Ends wait `token` as interrupted by a signal: like [`wake`](Self::wake), and the wait
    /// learns it was interrupted ([`take_interrupt`](Self::take_interrupt)).
    pub fn interrupt(self: &Arc<Self>, token: u64) -> bool {
        self.interrupted.store(token, Ordering::Release);
        self.wake(token)
    }

    /// Records that a waker took the task's futex wait `token` off the wait list (before it
    /// wakes the task), so the woken wait need not look for itself there.
    pub fn take_off_futex(&self, token: u64) {
        self.futex_taken.store(token, Ordering::Release);
    }

    /// Whether a waker took futex wait `token` off its list.
    pub fn taken_off_futex(&self, token: u64) -> bool {
        self.futex_taken.load(Ordering::Acquire) == token
    }

    /// Whether a signal interrupted wait `token` (asked once, when it is over).
    pub fn take_interrupt(&self, token: u64) -> bool {
        self.interrupted.load(Ordering::Acquire) == token
            && self
                .interrupted
                .compare_exchange(token, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Wakes the task if it is still in wait `token`. Returns true if the caller must queue it
    /// (it was parked); false if it is running (its park will return at once), already woken,
    /// or in a later wait.
    pub fn wake(self: &Arc<Self>, token: u64) -> bool {
        if self.wait_seq.load(Ordering::Acquire) != token {
            return false;
        }
        self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED
    }

    /// Called by the worker when the coroutine suspended with `Park`. Returns true if it is
    /// now parked; false if a wake-up already arrived (queue it again).
    pub fn try_park(&self) -> bool {
        match self
            .state
            .compare_exchange(IDLE, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(_) => {
                self.state.store(IDLE, Ordering::Release);
                false
            }
        }
    }

    /// Called by the worker before resuming the task.
    pub fn set_running(&self) {
        self.state.store(IDLE, Ordering::Release);
        self.running.store(true, Ordering::Release);
    }

    /// Called by the worker when the task has suspended or finished.
    pub fn set_stopped(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// Whether a thread is running the task right now.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Whether the coroutine has finished.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire) == FINISHED
    }

    /// Marks the task finished and wakes whoever joins it. Returns a joining coroutine to
    /// queue, if there is one.
    pub fn finish(&self) -> Option<Arc<Task>> {
        let (joiner, thread_waits) = {
            let mut joiner = self.joiner.lock();
            let before = self.finished.swap(FINISHED, Ordering::AcqRel);
            (joiner.take(), before == RUNNING_JOINED)
        };
        if thread_waits {
            futex_wake(&self.finished, i32::MAX);
        }
        joiner.and_then(|(task, token)| task.wake(token).then_some(task))
    }

    /// Registers `joiner` (in wait `token`) to be woken when this task finishes. Returns false
    /// if it has already finished.
    pub fn add_joiner(&self, joiner: Arc<Task>, token: u64) -> bool {
        let mut slot = self.joiner.lock();
        if self.is_finished() {
            return false;
        }
        *slot = Some((joiner, token));
        true
    }

    /// Blocks the calling OS thread until the task has finished or the monotonic clock reaches
    /// `deadline` (ns); true if it finished.
    pub fn wait_finished_blocking_until(&self, deadline: u64) -> bool {
        self.block_until_finished(Some(deadline))
    }

    /// Blocks the calling OS thread until the task has finished.
    pub fn wait_finished_blocking(&self) {
        self.block_until_finished(None);
    }

    /// Announces a waiting thread (`RUNNING_JOINED`, so `finish` wakes the futex) and sleeps on
    /// the join word until finished or past `deadline`; true if finished.
    fn block_until_finished(&self, deadline: Option<u64>) -> bool {
        loop {
            if let Err(FINISHED) = self.finished.compare_exchange(
                RUNNING,
                RUNNING_JOINED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                return true;
            }
            match deadline {
                None => futex_wait(&self.finished, RUNNING_JOINED),
                Some(deadline) => {
                    let now = super::timer::now_ns();
                    if now >= deadline {
                        return false;
                    }
                    let left = std::time::Duration::from_nanos(deadline - now);
                    crate::sync::futex_wait_timeout(&self.finished, RUNNING_JOINED, left);
                }
            }
        }
    }
}
