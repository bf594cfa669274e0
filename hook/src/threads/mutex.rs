//! `pthread_mutex_t` in threads mode: glibc's own protocol on glibc's own fields, so that
//! every caller — coroutine threads and OS threads (the main thread) — shares one lock.
//!
//! The fields (glibc 2.36, x86_64 `struct __pthread_mutex_s`): `__lock` (0 free, 1 locked, 2
//! locked with waiters: the futex word), `__count` (recursion depth), `__owner` (the owner's
//! thread id), `__nusers`, `__kind`. A coroutine's owner id is its task id with bit 30 set —
//! never a real thread id (those stay below `pid_max`, at most 2^22) — because coroutines on
//! one worker share that worker's kernel thread id.
//!
//! Handled here: the normal (`PTHREAD_MUTEX_TIMED_NP`), recursive, error-checking and adaptive
//! kinds, private. Passed through to glibc unchanged: robust, priority-inheritance,
//! priority-protect and process-shared mutexes (their protocols involve the kernel's view of
//! the owner's thread id or other processes) — a coroutine thread waiting on one of those
//! blocks its worker, as the README says.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use libc::c_int;

use super::word;
use crate::runtime::{current, deadlock};

const KIND_MASK: u32 = 3;
const RECURSIVE: u32 = 1;
const ERRORCHECK: u32 = 2;
/// Robust (16), priority inheritance (32), priority protect (64), process-shared (128),
/// and lock elision (256, 512: glibc's transactional variant) — all left to glibc.
const FOREIGN_BITS: u32 = 16 | 32 | 64 | 128 | 256 | 512;

/// A view of a caller's `pthread_mutex_t`.
pub struct Mutex {
    lock: &'static AtomicU32,
    count: &'static AtomicU32,
    owner: &'static AtomicI32,
    nusers: &'static AtomicU32,
    kind: u32,
}

/// The calling thread's owner id: its task id with bit 30 in a coroutine, its kernel thread
/// id on an OS thread.
pub fn owner_id() -> i32 {
    match current::task() {
        Some(current) => (0x4000_0000 | (current.task().id() & 0x3fff_ffff)) as i32,
        None => deadlock::this_tid(),
    }
}

impl Mutex {
    /// The mutex at `ptr`, or `None` if it is of a kind glibc must handle.
    ///
    /// # Safety
    /// `ptr` points at an initialised `pthread_mutex_t` that outlives every use of the view
    /// (as the caller of any pthread_mutex function guarantees for the call).
    pub unsafe fn at(ptr: *mut libc::pthread_mutex_t) -> Option<Mutex> {
        let base = ptr as usize;
        // SAFETY: guaranteed by the caller; the fields are 4-aligned u32/i32 at glibc's
        // offsets, accessed atomically as glibc does.
        let field = |offset: usize| unsafe { &*((base + offset) as *const AtomicU32) };
        let kind = field(16).load(Ordering::Relaxed);
        if kind & FOREIGN_BITS != 0 {
            return None;
        }
        Some(Mutex {
            lock: field(0),
            count: field(4),
            // SAFETY: as above.
            owner: unsafe { &*((base + 8) as *const AtomicI32) },
            nusers: field(12),
            kind: kind & KIND_MASK,
        })
    }

    /// `pthread_mutex_lock` (no deadline), `pthread_mutex_timedlock`/`clocklock` (monotonic
    /// `deadline`): 0, `EDEADLK`, `EAGAIN` (recursion count full) or `ETIMEDOUT`.
    pub fn lock(&self, deadline: Option<u64>) -> c_int {
        let me = owner_id();
        if let Some(early) = self.relock(me) {
            return early;
        }
        if self
            .lock
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Contended: mark waiters (2) and wait until a swap finds it free.
            while self.lock.swap(2, Ordering::Acquire) != 0 {
                if word::wait(self.lock, 2, deadline) == Err(word::Ended::TimedOut) {
                    return libc::ETIMEDOUT;
                }
            }
        }
        self.acquired(me);
        0
    }

    /// `pthread_mutex_trylock`: 0, `EBUSY` or `EAGAIN`.
    pub fn try_lock(&self) -> c_int {
        let me = owner_id();
        if self.kind == RECURSIVE && self.owner.load(Ordering::Relaxed) == me {
            return self.relock(me).unwrap_or(0);
        }
        if self
            .lock
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return libc::EBUSY;
        }
        self.acquired(me);
        0
    }

    /// A lock by the owner itself: recursive ones count, error-checking ones say `EDEADLK`.
    fn relock(&self, me: i32) -> Option<c_int> {
        if self.owner.load(Ordering::Relaxed) != me {
            return None;
        }
        match self.kind {
            RECURSIVE => Some(match self.count.load(Ordering::Relaxed).checked_add(1) {
                Some(n) => {
                    self.count.store(n, Ordering::Relaxed);
                    0
                }
                None => libc::EAGAIN,
            }),
            ERRORCHECK => Some(libc::EDEADLK),
            _ => None, // a normal mutex deadlocks, as with glibc (the wait below never ends)
        }
    }

    fn acquired(&self, me: i32) {
        self.owner.store(me, Ordering::Relaxed);
        self.nusers.fetch_add(1, Ordering::Relaxed);
        if self.kind == RECURSIVE {
            self.count.store(1, Ordering::Relaxed);
        }
    }

    /// `pthread_mutex_unlock`: 0 or `EPERM` (error-checking and recursive kinds, not the
    /// owner).
    pub fn unlock(&self) -> c_int {
        let me = owner_id();
        if self.kind == RECURSIVE || self.kind == ERRORCHECK {
            if self.owner.load(Ordering::Relaxed) != me || self.lock.load(Ordering::Relaxed) == 0 {
                return libc::EPERM;
            }
            if self.kind == RECURSIVE {
                let depth = self.count.load(Ordering::Relaxed) - 1;
                self.count.store(depth, Ordering::Relaxed);
                if depth != 0 {
                    return 0;
                }
            }
        }
        self.owner.store(0, Ordering::Relaxed);
        self.nusers.fetch_sub(1, Ordering::Relaxed);
        if self.lock.swap(0, Ordering::Release) > 1 {
            // glibc's own lock (a caller that got past the interposition) waits in the kernel
            // unseen: ask it too.
            word::wake(self.lock, 1, true);
        }
        0
    }

    /// Unlocks for a condvar wait (same as `unlock`, but the depth of a recursive mutex is
    /// kept and restored by [`relock_after_wait`](Self::relock_after_wait)); returns the depth.
    pub fn unlock_for_wait(&self) -> Result<u32, c_int> {
        let depth = if self.kind == RECURSIVE {
            self.count.load(Ordering::Relaxed)
        } else {
            1
        };
        if self.kind == RECURSIVE {
            self.count.store(1, Ordering::Relaxed);
        }
        match self.unlock() {
            0 => Ok(depth),
            err => Err(err),
        }
    }

    /// Locks again after a condvar wait, restoring a recursive mutex's depth.
    pub fn relock_after_wait(&self, depth: u32) {
        let _ = self.lock(None);
        if self.kind == RECURSIVE {
            self.count.store(depth, Ordering::Relaxed);
        }
    }
}
