//! `pthread_once` in threads mode (see `crate::threads::once`).

use std::sync::atomic::AtomicU32;

use libc::{c_int, pthread_once_t};

use crate::real;
use crate::threads::{self, once::Routine};

/// Interposed `pthread_once(3)`. Not under `hooks::guard`: the routine may unwind (a C++
/// exception through `std::call_once`), which must pass.
///
/// # Safety
/// As for libc's `pthread_once`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C-unwind" fn pthread_once(once: *mut pthread_once_t, routine: Routine) -> c_int {
    if !threads::objects_are_ours() {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { real::pthread_once(once, routine) };
    }
    // SAFETY: `pthread_once_t` is a 4-aligned int that outlives the call.
    threads::once::once(unsafe { &*(once as *const AtomicU32) }, routine);
    0
}
