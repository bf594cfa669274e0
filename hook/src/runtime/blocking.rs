//! The blocking pool: a few plain threads that run calls which cannot be made cooperative
//! (`getaddrinfo` blocks inside libc; `corun::unblock` runs any closure) while the calling
//! coroutine is suspended.
//!
//! Threads are started on demand, up to `CORUN_BLOCKING_THREADS`, and sleep on a futex word
//! when idle.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_queue::SegQueue;

use super::current::CurrentTask;
use super::task::{Task, WaitInfo};
use crate::log;
use crate::sync::{futex_wait, futex_wake};

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: SegQueue<Job>,
    /// Bumped on every submit; idle threads futex-wait on it.
    signal: AtomicU32,
    threads: AtomicUsize,
    idle: AtomicUsize,
}

/// The pool, made on first use (leaked; a `fork` child makes its own: the parent's threads do
/// not exist there, and its queue may be in the middle of a push).
static POOL: AtomicPtr<Pool> = AtomicPtr::new(std::ptr::null_mut());

fn pool() -> &'static Pool {
    let mut pool = POOL.load(Ordering::Acquire);
    if pool.is_null() {
        let fresh = Box::into_raw(Box::new(Pool {
            jobs: SegQueue::new(),
            signal: AtomicU32::new(0),
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
        }));
        pool = match POOL.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: pools are never freed.
    unsafe { &*pool }
}

/// In the child of a `fork`: forgets the parent's pool (its jobs are leaked, never run).
pub fn forget_in_child() {
    POOL.store(std::ptr::null_mut(), Ordering::Release);
}

/// Threads in the pool now (for stats).
pub fn threads() -> usize {
    let pool = POOL.load(Ordering::Acquire);
    if pool.is_null() {
        return 0;
    }
    // SAFETY: pools are never freed.
    unsafe { &*pool }.threads.load(Ordering::Relaxed)
}

fn submit(job: Job) {
    let pool = pool();
    pool.jobs.push(job);
    pool.signal.fetch_add(1, Ordering::SeqCst);
    if pool.idle.load(Ordering::SeqCst) > 0 {
        futex_wake(&pool.signal, 1);
        return;
    }
    let started = pool.threads.load(Ordering::SeqCst);
    if started < crate::config::get().blocking_threads
        && pool
            .threads
            .compare_exchange(started, started + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    {
        let spawned = super::threads::spawn(format!("corun-blocking-{started}"), move || {
            worker_loop(pool)
        });
        if let Err(err) = spawned {
            pool.threads.fetch_sub(1, Ordering::SeqCst);
            log::warn(format_args!("cannot start a blocking-pool thread: {err}"));
        }
    }
    // Otherwise every thread is busy; the job waits its turn.
}

fn worker_loop(pool: &'static Pool) {
    // The kernel must not pick this thread for the process's signals: they are for the
    // coroutines (and the calls run here are the blocking pool's, not a thread of the user's).
    crate::signal::block_all_on_this_thread();
    loop {
        while let Some(job) = pool.jobs.pop() {
            job();
        }
        let seen = pool.signal.load(Ordering::SeqCst);
        pool.idle.fetch_add(1, Ordering::SeqCst);
        if pool.jobs.is_empty() {
            futex_wait(&pool.signal, seen);
        }
        pool.idle.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where a pool job leaves its result for the coroutine that waits for it.
struct Completion<R> {
    result: UnsafeCell<Option<R>>,
    done: AtomicBool,
    waiter: Arc<Task>,
    token: u64,
}

// SAFETY: `result` is written once by the pool thread before `done` is set (Release) and read
// by the coroutine after it sees `done` (Acquire).
unsafe impl<R: Send> Sync for Completion<R> {}

/// Runs `f` on the pool and suspends the current coroutine until it returns.
pub fn run<R: Send + 'static>(
    current: &CurrentTask,
    call: &'static str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let token = current.task().begin_wait();
    let completion = Arc::new(Completion {
        result: UnsafeCell::new(None),
        done: AtomicBool::new(false),
        waiter: current.arc(),
        token,
    });
    let job_side = completion.clone();
    submit(Box::new(move || {
        let value = f();
        // SAFETY: only this job writes, once, before `done` is published.
        unsafe { *job_side.result.get() = Some(value) };
        job_side.done.store(true, Ordering::Release);
        if job_side.waiter.wake(job_side.token) {
            super::schedule(job_side.waiter.clone());
        }
    }));
    while !completion.done.load(Ordering::Acquire) {
        super::park(current, WaitInfo::Blocking { call });
    }
    // SAFETY: `done` is set, so the job has written the result and will not touch it again.
    unsafe { (*completion.result.get()).take() }.expect("the job stored its result")
}
