//! `pthread_cancel` of a coroutine thread: `ENOTSUP`.
//!
//! glibc cancels a thread by sending `SIGCANCEL` to its kernel thread, which for a coroutine
//! thread is a worker running many coroutines (it would cancel whichever one runs there, or
//! the worker's own loop). Deferred cancellation at the hooked cancellation points is not
//! implemented; the call says so instead of doing harm. Any other thread: glibc's.

use libc::{c_int, pthread_t};

use crate::hooks::guard;
use crate::threads;

/// Interposed `pthread_cancel(3)`.
///
/// # Safety
/// As for libc's `pthread_cancel`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cancel(thread: pthread_t) -> c_int {
    guard(&"pthread_cancel", |_| {
        if threads::task_of(thread as usize).is_some() {
            return libc::ENOTSUP;
        }
        // SAFETY: not a coroutine thread: the caller's argument, passed on unchanged.
        unsafe { crate::real::pthread_cancel(thread) }
    })
}
