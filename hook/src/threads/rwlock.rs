//! `pthread_rwlock_t` in threads mode, for private rwlocks: one state word in the object
//! (`__readers`, offset 0 — glibc's static initialisers and `pthread_rwlock_init` zero it)
//! holding the reader count, a writer bit and a "someone waits" bit; `__cur_writer` (offset
//! 24) holds the writing thread's owner id, as glibc's does, for `EDEADLK`. Readers are
//! preferred, as with glibc's default kind. Process-shared rwlocks (`__shared`, offset 28)
//! are glibc's.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

use libc::c_int;

use super::mutex::owner_id;
use super::word;

const WRITER: u32 = 1 << 31;
const WAITING: u32 = 1 << 30;
const READERS: u32 = WAITING - 1;

/// A view of a caller's private `pthread_rwlock_t`.
pub struct RwLock {
    state: &'static AtomicU32,
    writer: &'static AtomicI32,
}

impl RwLock {
    /// The rwlock at `ptr`, or `None` if it is process-shared (glibc's).
    ///
    /// # Safety
    /// `ptr` points at an initialised `pthread_rwlock_t` that outlives the view.
    pub unsafe fn at(ptr: *mut libc::pthread_rwlock_t) -> Option<RwLock> {
        let base = ptr as usize;
        // SAFETY: guaranteed by the caller; 4-aligned fields of the 56-byte object.
        unsafe {
            if *((base + 28) as *const i32) != 0 {
                return None;
            }
            Some(RwLock {
                state: &*(base as *const AtomicU32),
                writer: &*((base + 24) as *const AtomicI32),
            })
        }
    }

    /// A read lock: 0, `EBUSY` (`try`: taken for writing, by anyone), `ETIMEDOUT`, `EAGAIN`
    /// (too many readers) or `EDEADLK` (the caller holds it for writing).
    pub fn read(&self, try_only: bool, deadline: Option<u64>) -> c_int {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & WRITER == 0 {
                if state & READERS == READERS {
                    return libc::EAGAIN;
                }
                match self.state.compare_exchange_weak(
                    state,
                    state + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return 0,
                    Err(now) => state = now,
                }
                continue;
            }
            // As glibc: a try never says EDEADLK, only that the lock is taken.
            if try_only {
                return libc::EBUSY;
            }
            if self.writer.load(Ordering::Relaxed) == owner_id() {
                return libc::EDEADLK;
            }
            if let Err(code) = self.wait_for_change(state, deadline) {
                return code;
            }
            state = self.state.load(Ordering::Relaxed);
        }
    }

    /// A write lock: 0, `EBUSY` (`try`), `ETIMEDOUT` or `EDEADLK`.
    pub fn write(&self, try_only: bool, deadline: Option<u64>) -> c_int {
        let me = owner_id();
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (WRITER | READERS) == 0 {
                match self.state.compare_exchange_weak(
                    state,
                    state | WRITER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.writer.store(me, Ordering::Relaxed);
                        return 0;
                    }
                    Err(now) => state = now,
                }
                continue;
            }
            if try_only {
                return libc::EBUSY;
            }
            if state & WRITER != 0 && self.writer.load(Ordering::Relaxed) == me {
                return libc::EDEADLK;
            }
            if let Err(code) = self.wait_for_change(state, deadline) {
                return code;
            }
            state = self.state.load(Ordering::Relaxed);
        }
    }

    /// Marks a waiter and waits until the state changes from `state` (plus the mark).
    fn wait_for_change(&self, state: u32, deadline: Option<u64>) -> Result<(), c_int> {
        let marked = state | WAITING;
        if state & WAITING == 0
            && self
                .state
                .compare_exchange(state, marked, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(()); // it changed: look again
        }
        match word::wait(self.state, marked, deadline) {
            Err(word::Ended::TimedOut) => Err(libc::ETIMEDOUT),
            _ => Ok(()),
        }
    }

    /// `pthread_rwlock_unlock`: the writer's unlock if the caller is the writer, else one
    /// reader's. Waiters are all woken when the lock becomes free.
    pub fn unlock(&self) -> c_int {
        let state = self.state.load(Ordering::Relaxed);
        let before = if state & WRITER != 0 && self.writer.load(Ordering::Relaxed) == owner_id() {
            self.writer.store(0, Ordering::Relaxed);
            self.state.fetch_and(!(WRITER | WAITING), Ordering::Release)
        } else if state & READERS != 0 {
            let before = self.state.fetch_sub(1, Ordering::Release);
            if before & READERS != 1 {
                return 0; // other readers remain
            }
            self.state.fetch_and(!WAITING, Ordering::Relaxed) | before
        } else {
            return libc::EPERM; // not locked by the caller
        };
        if before & WAITING != 0 {
            word::wake(self.state, i32::MAX, false);
        }
        0
    }
}
