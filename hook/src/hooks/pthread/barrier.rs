//! `pthread_barrier_wait` in threads mode (see `crate::threads::barrier`);
//! `pthread_barrier_init`/`_destroy` stay glibc's.

use libc::{c_int, pthread_barrier_t};

use crate::hooks::guard;
use crate::real;
use crate::threads::{self, barrier::Barrier};

/// Interposed `pthread_barrier_wait(3)`.
///
/// # Safety
/// As for libc's `pthread_barrier_wait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_barrier_wait(barrier: *mut pthread_barrier_t) -> c_int {
    guard(&"pthread_barrier_wait", |_| {
        // SAFETY: the caller's initialised barrier.
        let ours = threads::objects_are_ours()
            .then(|| unsafe { Barrier::at(barrier) })
            .flatten();
        match ours {
            Some(b) => b.wait(),
            // SAFETY: the caller's argument, passed on unchanged.
            None => unsafe { real::pthread_barrier_wait(barrier) },
        }
    })
}
