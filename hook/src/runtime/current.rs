//! Per-thread runtime state: which worker this thread is, and which task it is running.
//!
//! Everything here lives in the worker thread's TLS. A hook asks [`task`] whether it runs
//! inside a coroutine; outside one (plain threads, the worker's own scheduling code) it passes
//! the call through to libc.

use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use super::task::Task;
use super::worker::Worker;

thread_local! {
    static WORKER: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
    static TASK: Cell<*const Task> = const { Cell::new(std::ptr::null()) };
    /// The owner epoch of `WORKER` this thread runs with (see `Worker::take_over`).
    static EPOCH: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// The task running on this thread, while it runs.
#[derive(Clone, Copy)]
pub struct CurrentTask {
    task: *const Task,
}

impl CurrentTask {
    /// The task.
    pub fn task(&self) -> &Task {
        // SAFETY: the worker holds an `Arc` to the task for as long as it runs, and a
        // `CurrentTask` is only used while the task runs (inside one of its own calls).
        unsafe { &*self.task }
    }

    /// A new counted reference to the task.
    pub fn arc(&self) -> Arc<Task> {
        // SAFETY: `task` came from `Arc::as_ptr` of a live Arc (held by the worker).
        unsafe {
            Arc::increment_strong_count(self.task);
            Arc::from_raw(self.task)
        }
    }

    /// The worker running it.
    pub fn worker(&self) -> &'static Worker {
        worker().expect("corun: a running task without a worker")
    }
}

/// `TASK`'s offset from the thread pointer once the runtime has measured it with per-coroutine
/// identity on (which already relies on the hook's TLS being static), else 0: every hook asks
/// [`task`] first, and one `fs`-relative load is cheaper than `__tls_get_addr` (8% of a
/// `yield_now` round trip in a profile).
static TASK_OFFSET: AtomicIsize = AtomicIsize::new(0);

/// Lets [`task`] read `TASK` at its static offset (see `TASK_OFFSET`).
pub fn use_static_offsets(offsets: &TlsOffsets) {
    TASK_OFFSET.store(offsets.task, Ordering::Relaxed);
}

/// The task running on this thread, or `None` outside a coroutine.
#[inline]
pub fn task() -> Option<CurrentTask> {
    let offset = TASK_OFFSET.load(Ordering::Relaxed);
    let task: *const Task = if offset != 0 {
        let value: usize;
        // SAFETY: `offset` is where this thread's (or coroutine area's) `TASK` cell lies from
        // the thread pointer, the same in every thread: the library's TLS block is static.
        // `Cell<*const Task>` has the layout of the pointer.
        unsafe {
            std::arch::asm!(
                "mov {value}, qword ptr fs:[{offset}]",
                value = out(reg) value,
                offset = in(reg) offset,
                options(nostack, readonly, preserves_flags)
            )
        };
        value as *const Task
    } else {
        TASK.with(|t| t.get())
    };
    if task.is_null() {
        return None;
    }
    Some(CurrentTask { task })
}

/// The worker this thread is, if it is one.
pub fn worker() -> Option<&'static Worker> {
    let worker = WORKER.with(|w| w.get());
    // SAFETY: workers live as long as the runtime, which is never torn down.
    (!worker.is_null()).then(|| unsafe { &*worker })
}

/// Whether this thread runs `worker`'s loop right now (it is the worker's thread and has not
/// handed it over).
pub fn runs(worker: &Worker) -> bool {
    WORKER.with(|w| std::ptr::eq(w.get(), worker))
        && EPOCH.with(|e| e.get()) == worker.owner_epoch()
}

/// Offsets of the runtime's thread-locals from the thread pointer. The hook library is
/// preloaded, so its TLS block is static: the offsets are the same in every thread and in every
/// coroutine's own thread area, where the runtime writes them before each resume.
#[derive(Clone, Copy)]
pub struct TlsOffsets {
    pub worker: isize,
    pub task: isize,
    pub epoch: isize,
}

/// Measures [`TlsOffsets`] on this thread.
pub fn tls_offsets() -> TlsOffsets {
    let tp = crate::identity::thread_pointer() as isize;
    TlsOffsets {
        worker: WORKER.with(|w| w as *const Cell<*const Worker> as isize) - tp,
        task: TASK.with(|t| t as *const Cell<*const Task> as isize) - tp,
        epoch: EPOCH.with(|e| e as *const Cell<u64> as isize) - tp,
    }
}

/// Marks this thread as running `worker`'s loop as owner `epoch`.
pub fn set_worker(worker: &'static Worker, epoch: u64) {
    WORKER.with(|w| w.set(worker));
    EPOCH.with(|e| e.set(epoch));
}

/// In the child of a `fork`: this thread (the child's only one) is no worker and runs no
/// task any more, even if it forked inside a coroutine (which runs on as a plain thread).
pub fn forget_in_child() {
    WORKER.with(|w| w.set(std::ptr::null()));
    TASK.with(|t| t.set(std::ptr::null()));
    EPOCH.with(|e| e.set(u64::MAX));
}

/// Marks `task` as running on this thread until the returned guard drops.
pub fn enter(task: &Task) -> Entered {
    TASK.with(|t| t.set(task));
    Entered
}

/// Clears the running task when dropped.
pub struct Entered;

impl Drop for Entered {
    fn drop(&mut self) {
        TASK.with(|t| t.set(std::ptr::null()));
    }
}
