//! `pthread_barrier_t` in threads mode, for private barriers. `pthread_barrier_init` is
//! glibc's (it checks the count and the attribute and writes `in` = 0, `current_round` = 0,
//! `count`, `shared`); the wait uses those fields: `in` counts arrivals in the current round,
//! `current_round` (the futex word) moves on when the last one arrives. Process-shared
//! barriers are glibc's.

use std::sync::atomic::{AtomicU32, Ordering};

use libc::c_int;

use super::word;

/// A view of a caller's private `pthread_barrier_t`.
pub struct Barrier {
    arrived: &'static AtomicU32,
    round: &'static AtomicU32,
    count: u32,
}

impl Barrier {
    /// The barrier at `ptr`, or `None` if it is process-shared (glibc's).
    ///
    /// # Safety
    /// `ptr` points at a `pthread_barrier_t` initialised by `pthread_barrier_init`.
    pub unsafe fn at(ptr: *mut libc::pthread_barrier_t) -> Option<Barrier> {
        let base = ptr as usize;
        // SAFETY: guaranteed by the caller; glibc's `struct pthread_barrier` fields (in,
        // current_round, count, shared, out), 4-aligned.
        unsafe {
            let field = |offset: usize| &*((base + offset) as *const AtomicU32);
            if field(12).load(Ordering::Relaxed) != 0 {
                return None;
            }
            Some(Barrier {
                arrived: field(0),
                round: field(4),
                count: field(8).load(Ordering::Relaxed),
            })
        }
    }

    /// Waits for the round's last arrival: `PTHREAD_BARRIER_SERIAL_THREAD` for exactly one of
    /// them, 0 for the others.
    pub fn wait(&self) -> c_int {
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 >= self.count {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.fetch_add(1, Ordering::Release);
            word::wake(self.round, i32::MAX, false);
            return libc::PTHREAD_BARRIER_SERIAL_THREAD;
        }
        while self.round.load(Ordering::Acquire) == round {
            let _ = word::wait(self.round, round, None);
        }
        0
    }
}
