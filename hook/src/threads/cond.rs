//! `pthread_cond_t` in threads mode: a sequence-number condvar (as std's) on the object's
//! memory, for every caller — coroutines and OS threads alike go through the interposed
//! functions, so one algorithm serves both.
//!
//! `pthread_cond_init` is glibc's (it validates the attribute and records its clock and
//! process-shared bits in `__wrefs`, offset 36, bits 1 and 0; a static initializer is all
//! zeros: realtime, private). The sequence word is `__g_signals[0]` (offset 40), which glibc
//! initialises to 0. A wait reads the sequence under the mutex, unlocks, sleeps while the
//! sequence is unchanged, relocks; a signal or broadcast bumps it and wakes one or all.
//! Spurious wake-ups are allowed, as POSIX says. Process-shared condvars are glibc's (other
//! processes use glibc's algorithm): a coroutine waiting on one blocks its worker.

use std::sync::atomic::{AtomicU32, Ordering};

use libc::c_int;

use super::mutex::Mutex;
use super::word;

/// `__wrefs` bit 0: process-shared; bit 1: the clock is `CLOCK_MONOTONIC`.
const SHARED_BIT: u32 = 1;
const MONOTONIC_BIT: u32 = 2;

/// The mutex a condvar wait releases: one handled here, or one of glibc's kinds (robust, …),
/// released and taken again through glibc's functions.
pub enum Held {
    Ours(Mutex),
    Glibc(*mut libc::pthread_mutex_t),
}

impl Held {
    fn release(&self) -> Result<u32, c_int> {
        match self {
            Held::Ours(mutex) => mutex.unlock_for_wait(),
            // SAFETY: the caller's mutex, which it holds (as pthread_cond_wait requires).
            Held::Glibc(ptr) => match unsafe { crate::real::pthread_mutex_unlock(*ptr) } {
                0 => Ok(1),
                err => Err(err),
            },
        }
    }

    fn take_again(&self, depth: u32) {
        match self {
            Held::Ours(mutex) => mutex.relock_after_wait(depth),
            // SAFETY: as above. (A robust mutex's EOWNERDEAD is not passed on: a limit.)
            Held::Glibc(ptr) => {
                let _ = unsafe { crate::real::pthread_mutex_lock(*ptr) };
            }
        }
    }
}

/// A view of a caller's private `pthread_cond_t`.
pub struct Cond {
    seq: &'static AtomicU32,
    clock: libc::clockid_t,
}

impl Cond {
    /// The condvar at `ptr`, or `None` if it is process-shared (glibc's).
    ///
    /// # Safety
    /// `ptr` points at an initialised `pthread_cond_t` that outlives the view.
    pub unsafe fn at(ptr: *mut libc::pthread_cond_t) -> Option<Cond> {
        let base = ptr as usize;
        // SAFETY: guaranteed by the caller; 4-aligned u32 fields inside the 48-byte object.
        let (wrefs, seq) = unsafe {
            (
                &*((base + 36) as *const AtomicU32),
                &*((base + 40) as *const AtomicU32),
            )
        };
        let flags = wrefs.load(Ordering::Relaxed);
        if flags & SHARED_BIT != 0 {
            return None;
        }
        let clock = if flags & MONOTONIC_BIT != 0 {
            libc::CLOCK_MONOTONIC
        } else {
            libc::CLOCK_REALTIME
        };
        Some(Cond { seq, clock })
    }

    /// The clock of `pthread_cond_timedwait`'s deadline (the attribute's).
    pub fn clock(&self) -> libc::clockid_t {
        self.clock
    }

    /// Waits on the condvar with `mutex` held (released during the wait, held again after),
    /// until signalled or the monotonic `deadline`: 0, `ETIMEDOUT`, or the unlock's error
    /// (`EPERM`: not the owner of an error-checking mutex).
    pub fn wait(&self, mutex: &Held, deadline: Option<u64>) -> c_int {
        let seen = self.seq.load(Ordering::Acquire);
        let depth = match mutex.release() {
            Ok(depth) => depth,
            Err(err) => return err,
        };
        let ended = word::wait(self.seq, seen, deadline);
        mutex.take_again(depth);
        match ended {
            Err(word::Ended::TimedOut) => libc::ETIMEDOUT,
            _ => 0, // a signal does not end a condvar wait with an error (a spurious wake-up)
        }
    }

    /// `pthread_cond_signal` (`all: false`) or `pthread_cond_broadcast`.
    pub fn notify(&self, all: bool) {
        self.seq.fetch_add(1, Ordering::Release);
        word::wake(self.seq, if all { i32::MAX } else { 1 }, false);
    }
}
