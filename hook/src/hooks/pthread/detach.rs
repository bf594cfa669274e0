//! `pthread_detach`.

use libc::{c_int, pthread_t};

use crate::hooks::guard;
use crate::real;
use crate::threads;

/// Interposed `pthread_detach(3)`: a coroutine thread's slot goes back when it finishes (at
/// once if it has); `EINVAL` if it was detached already.
///
/// # Safety
/// As for libc's `pthread_detach`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_detach(thread: pthread_t) -> c_int {
    guard(&"pthread_detach", |_| {
        threads::detach(thread as usize).unwrap_or_else(|| {
            // SAFETY: not a coroutine thread: the caller's argument, passed on unchanged.
            unsafe { real::pthread_detach(thread) }
        })
    })
}
