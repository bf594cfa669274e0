//! Unnamed private semaphores (`sem_init(sem, 0, n)`) in threads mode: glibc's own protocol on
//! glibc's own layout (x86_64 `struct new_sem`: a 64-bit `data` holding the value in its low
//! 32 bits — the futex word — and the number of waiters in its high 32, then `private`).
//! `sem_init`, `sem_trywait`, `sem_getvalue`, `sem_destroy` stay glibc's (they never wait);
//! `sem_post` and the waits are here, so that a post wakes a waiting coroutine. Process-shared
//! and named semaphores (`private` is 0) are glibc's: a coroutine waiting on one blocks its
//! worker.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use libc::c_int;

use super::word;

const VALUE_MASK: u64 = 0xffff_ffff;
const WAITER: u64 = 1 << 32;
/// `SEM_VALUE_MAX`.
const VALUE_MAX: u64 = i32::MAX as u64;

/// A view of a caller's private semaphore.
pub struct Sem {
    data: &'static AtomicU64,
    value: &'static AtomicU32,
}

impl Sem {
    /// The semaphore at `ptr`, or `None` if it is process-shared or named (glibc's).
    ///
    /// # Safety
    /// `ptr` points at an initialised `sem_t` (8-aligned, as glibc's type is).
    pub unsafe fn at(ptr: *mut libc::sem_t) -> Option<Sem> {
        let base = ptr as usize;
        // SAFETY: guaranteed by the caller; `data` at 0 (its low half, little-endian, is the
        // value), `private` at 8 (FUTEX_PRIVATE_FLAG for a private semaphore, else 0).
        unsafe {
            let private = *((base + 8) as *const i32);
            if private == 0 {
                return None;
            }
            Some(Sem {
                data: &*(base as *const AtomicU64),
                value: &*(base as *const AtomicU32),
            })
        }
    }

    /// `sem_post`: 0 or `EOVERFLOW`.
    pub fn post(&self) -> c_int {
        let mut data = self.data.load(Ordering::Relaxed);
        loop {
            if data & VALUE_MASK == VALUE_MAX {
                return libc::EOVERFLOW;
            }
            match self.data.compare_exchange_weak(
                data,
                data + 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => data = now,
            }
        }
        if data >> 32 != 0 {
            word::wake(self.value, 1, false);
        }
        0
    }

    /// `sem_wait` (no deadline) and the timed waits: 0, `ETIMEDOUT` or `EINTR`.
    pub fn wait(&self, deadline: Option<u64>) -> c_int {
        if self.try_take() {
            return 0;
        }
        let mut data = self.data.fetch_add(WAITER, Ordering::Relaxed) + WAITER;
        loop {
            if data & VALUE_MASK == 0 {
                match word::wait(self.value, 0, deadline) {
                    Ok(()) => {}
                    Err(ended) => {
                        self.data.fetch_sub(WAITER, Ordering::Relaxed);
                        return match ended {
                            word::Ended::TimedOut => libc::ETIMEDOUT,
                            word::Ended::Interrupted => libc::EINTR,
                        };
                    }
                }
                data = self.data.load(Ordering::Relaxed);
            } else {
                match self.data.compare_exchange_weak(
                    data,
                    data - 1 - WAITER,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return 0,
                    Err(now) => data = now,
                }
            }
        }
    }

    /// Takes one unit if there is one.
    fn try_take(&self) -> bool {
        let mut data = self.data.load(Ordering::Relaxed);
        while data & VALUE_MASK > 0 {
            match self.data.compare_exchange_weak(
                data,
                data - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => data = now,
            }
        }
        false
    }
}
