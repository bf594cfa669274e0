//! Per-thread runtime state: which worker this thread is, and which task it is running.
//!
//! Everything here lives in the worker thread's TLS. A hook asks [`task`] whether it runs
//! inside a coroutine; outside one (plain threads, the worker's own scheduling code) it passes
//! the call through to libc.

use std::cell::Cell;
use std::sync::Arc;

use super::task::Task;
use super::worker::Worker;

thread_local! {
    static WORKER: Cell<*const Worker> = const { Cell::new(std::ptr::null()) };
    static TASK: Cell<*const Task> = const { Cell::new(std::ptr::null()) };
}

/// The task running on this thread, while it runs.
#[derive(Clone, Copy)]
pub struct CurrentTask {
    task: *const Task,
    worker: *const Worker,
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
    pub fn worker(&self) -> &Worker {
        // SAFETY: workers live as long as the runtime, which is never torn down.
        unsafe { &*self.worker }
    }
}

/// The task running on this thread, or `None` outside a coroutine.
#[inline]
pub fn task() -> Option<CurrentTask> {
    let task = TASK.with(|t| t.get());
    if task.is_null() {
        return None;
    }
    Some(CurrentTask {
        task,
        worker: WORKER.with(|w| w.get()),
    })
}

/// The worker this thread is, if it is one.
pub fn worker() -> Option<&'static Worker> {
    let worker = WORKER.with(|w| w.get());
    // SAFETY: workers live as long as the runtime, which is never torn down.
    (!worker.is_null()).then(|| unsafe { &*worker })
}

/// Offsets of the `WORKER` and `TASK` thread-locals from the thread pointer. The hook library
/// is preloaded, so its TLS block is static: the offsets are the same in every thread and in
/// every coroutine's own thread area, where the runtime writes them before each resume.
pub fn tls_offsets() -> (isize, isize) {
    let tp = crate::identity::thread_pointer() as isize;
    let worker = WORKER.with(|w| w as *const Cell<*const Worker> as isize);
    let task = TASK.with(|t| t as *const Cell<*const Task> as isize);
    (worker - tp, task - tp)
}

/// Marks this thread as `worker` (for its whole life).
pub fn set_worker(worker: &'static Worker) {
    WORKER.with(|w| w.set(worker));
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
