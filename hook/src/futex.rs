//! The futex wait table: coroutines waiting on futex words, keyed by address.
//!
//! std's `Mutex`, `Condvar`, `RwLock`, `Once`, `thread::park` (and parking_lot, crossbeam)
//! block in `syscall(SYS_futex, FUTEX_WAIT…)`. A coroutine that did that for real would block
//! its worker, and deadlock it when the futex's owner is a coroutine on the same worker. So a
//! coroutine's wait is recorded here and the coroutine parks; `FUTEX_WAKE` (from a coroutine or
//! a plain thread) wakes waiters here first and passes the rest of its count on to the kernel,
//! where plain threads wait — unless the word is private and no plain thread waits there:
//! every private `FUTEX_WAIT` of the process passes through the interposed `syscall`, which
//! counts the plain threads in the kernel per bucket, so a wake that finds none saves the
//! system call. (A requeue or a `futex_waitv` makes waiters uncountable: from the first one on,
//! wakes always go to the kernel.)
//!
//! No lost wake-ups: the waiter compares the word with the expected value while holding its
//! bucket's lock, and a waker takes the same lock after changing the word. The waker's fast
//! path (nobody waits anywhere) is ordered against the waiter by a counter and SeqCst fences.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::runtime::current::CurrentTask;
use crate::runtime::task::{Task, WaitInfo};
use crate::runtime::{self, timer};
use crate::sync::SpinLock;

const BUCKETS: usize = 256;

/// How often a coroutine waiting on a process-shared futex re-reads the word, since a wake-up
/// from another process goes to the kernel and never reaches this table.
const SHARED_RECHECK_NS: u64 = 10_000_000;

struct Waiter {
    addr: usize,
    bitset: u32,
    task: Arc<Task>,
    token: u64,
}

static BUCKETS_TABLE: [SpinLock<Vec<Waiter>>; BUCKETS] =
    [const { SpinLock::new(Vec::new()) }; BUCKETS];
/// Plain threads waiting in the kernel on a private word of each bucket, through the hook.
static THREADS_IN_KERNEL: [AtomicUsize; BUCKETS] = [const { AtomicUsize::new(0) }; BUCKETS];
/// Set once a requeue or a `futex_waitv` passes through the hook: the kernel may then have
/// waiters this table did not count (moved to a word of another bucket, or waiting on a vector
/// of words), so every wake goes to the kernel from then on.
static UNTRACKED: AtomicBool = AtomicBool::new(false);
/// Waiters in all buckets, so a wake with nobody here costs one load.
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn bucket_index(addr: usize) -> usize {
    let hash = (addr >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    hash >> (usize::BITS - BUCKETS.trailing_zeros())
}

fn bucket(addr: usize) -> &'static SpinLock<Vec<Waiter>> {
    &BUCKETS_TABLE[bucket_index(addr)]
}

/// Counts a plain thread's kernel wait on private word `addr` while alive.
pub struct ThreadInKernel(usize);

impl Drop for ThreadInKernel {
    fn drop(&mut self) {
        THREADS_IN_KERNEL[self.0].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Announces a plain thread's kernel wait on private word `addr` (before the wait: a waker
/// that changed the word and then sees no thread here knows the wait will see the change).
pub fn thread_waits_in_kernel(addr: usize) -> ThreadInKernel {
    let i = bucket_index(addr);
    THREADS_IN_KERNEL[i].fetch_add(1, Ordering::SeqCst);
    ThreadInKernel(i)
}

/// Notes a requeue (`FUTEX_REQUEUE`, `FUTEX_CMP_REQUEUE`, `FUTEX_WAKE_OP`) or a
/// `futex_waitv`: from now on every private wake also goes to the kernel.
pub fn untracked_waiters_possible() {
    UNTRACKED.store(true, Ordering::SeqCst);
}

/// Whether a private wake on `addr` that coroutines did not use up must go to the kernel:
/// some plain thread may wait there (or a requeue may have moved one there). Pairs with the
/// waker's SeqCst fence in [`wake`] and the waiter's announce.
pub fn kernel_may_have_waiters(addr: usize) -> bool {
    UNTRACKED.load(Ordering::SeqCst)
        || THREADS_IN_KERNEL[bucket_index(addr)].load(Ordering::SeqCst) > 0
}

/// In the child of a `fork`: forgets the parent's waiting coroutines.
///
/// # Safety
/// Only in a forked child, before anything else runs (see `runtime::fork`).
pub unsafe fn reset_in_child() {
    for bucket in &BUCKETS_TABLE {
        // SAFETY: guaranteed by the caller; the parent's tasks are leaked, never dropped here.
        unsafe { bucket.reset_in_child(Vec::new()) };
    }
    WAITING.store(0, Ordering::SeqCst);
    // The child's one thread is running, not waiting.
    for count in &THREADS_IN_KERNEL {
        count.store(0, Ordering::SeqCst);
    }
}

/// How many coroutines wait on futex words now (for stats).
pub fn waiting() -> usize {
    WAITING.load(Ordering::Relaxed)
}

/// Parks the current coroutine while `*word == expected`, until a matching wake, `deadline`
/// (monotonic ns, 0: none) or, for a process-shared futex, a change of the word.
///
/// Returns `Err(EAGAIN)` if the word did not hold `expected`, `Err(ETIMEDOUT)` on timeout,
/// `Err(EINTR)` when a signal aimed at the coroutine interrupted the wait.
pub fn wait(
    current: &CurrentTask,
    word: &AtomicU32,
    expected: u32,
    deadline: u64,
    bitset: u32,
    shared: bool,
) -> Result<(), i32> {
    let addr = word.as_ptr() as usize;
    let bucket = bucket(addr);
    let token = current.task().begin_wait();
    {
        let mut waiters = bucket.lock();
        // Announce the waiter *before* reading the word: a waker changes the word, then reads
        // WAITING (after a fence). Whichever comes second sees the other's write, so either
        // the waker looks in the bucket (and finds us, as we hold its lock until registered)
        // or we see the new value and return EAGAIN.
        WAITING.fetch_add(1, Ordering::SeqCst);
        if word.load(Ordering::SeqCst) != expected {
            WAITING.fetch_sub(1, Ordering::SeqCst);
            return Err(libc::EAGAIN);
        }
        waiters.push(Waiter {
            addr,
            bitset,
            task: current.arc(),
            token,
        });
    }
    if deadline != 0 {
        current.worker().add_timer(deadline, current.arc(), token);
    }
    loop {
        if shared {
            let recheck = timer::now_ns() + SHARED_RECHECK_NS;
            current.worker().add_timer(recheck, current.arc(), token);
        }
        let info = WaitInfo::Futex {
            addr,
            deadline,
            shared,
        };
        let woke = runtime::park(current, info);
        if current.task().taken_off_futex(token) {
            return Ok(()); // a waker took us off the list (the usual way out: no lock)
        }
        let mut waiters = bucket.lock();
        let me: *const Task = current.task();
        let Some(index) = waiters
            .iter()
            .position(|w| w.token == token && std::ptr::eq(Arc::as_ptr(&w.task), me))
        else {
            return Ok(()); // a waker took us off the list
        };
        let interrupted = woke == runtime::Woke::Interrupted;
        let timed_out = deadline != 0 && timer::now_ns() >= deadline;
        let changed = shared && word.load(Ordering::SeqCst) != expected;
        if interrupted || timed_out || changed {
            waiters.swap_remove(index);
            WAITING.fetch_sub(1, Ordering::SeqCst);
            return if interrupted {
                Err(libc::EINTR)
            } else if timed_out {
                Err(libc::ETIMEDOUT)
            } else {
                Ok(())
            };
        }
        // A wake-up meant for something else: keep waiting.
    }
}

/// Wakes up to `count` coroutines waiting on `addr` whose bitset intersects `bitset`. Returns
/// how many it woke (the caller passes the rest of `count` on to the kernel).
pub fn wake(addr: usize, count: i32, bitset: u32) -> i32 {
    // Pairs with the waiter's announce-then-check (see `wait`): the caller changed the word
    // before calling, possibly with a plain Release store.
    std::sync::atomic::fence(Ordering::SeqCst);
    if count <= 0 || WAITING.load(Ordering::SeqCst) == 0 {
        return 0;
    }
    if count == 1 {
        // The common case (a lock's unlock, notify_one, unpark): no list of the woken.
        let taken = {
            let mut waiters = bucket(addr).lock();
            let found = waiters
                .iter()
                .position(|w| w.addr == addr && w.bitset & bitset != 0);
            found.map(|i| {
                WAITING.fetch_sub(1, Ordering::SeqCst);
                // Oldest first: the others keep their order.
                let w = waiters.remove(i);
                (w.task, w.token)
            })
        };
        return match taken {
            Some((task, token)) => {
                task.take_off_futex(token);
                if task.wake(token) {
                    runtime::schedule(task);
                }
                1
            }
            None => 0,
        };
    }
    let mut woken: Vec<(Arc<Task>, u64)> = Vec::new();
    {
        let mut waiters = bucket(addr).lock();
        // One pass, oldest first, keeping the others in order (a wake of a million waiters
        // must not move the rest a million times).
        waiters.retain(|w| {
            let take = (woken.len() as i32) < count && w.addr == addr && w.bitset & bitset != 0;
            if take {
                woken.push((w.task.clone(), w.token));
            }
            !take
        });
        WAITING.fetch_sub(woken.len(), Ordering::SeqCst);
    }
    let n = woken.len() as i32;
    for (task, token) in woken {
        task.take_off_futex(token);
        if task.wake(token) {
            runtime::schedule(task);
        }
    }
    n
}
