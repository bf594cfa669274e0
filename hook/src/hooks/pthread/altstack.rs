//! `sigaltstack` inside a coroutine.
//!
//! The alternate signal stack belongs to the kernel thread, which runs many coroutines: one
//! coroutine installing its own would take it from the worker (and every other coroutine
//! there), and disabling it at its end would leave the worker without one. So inside a
//! coroutine `sigaltstack` reports the worker's alternate stack (which corun always installs)
//! and accepts a new one without installing it: signals on that worker keep running on the
//! worker's. std's thread start asks first and, seeing a stack in place, maps none of its own
//! — so a coroutine thread costs no mapping for it. Outside a coroutine: libc's call.

use libc::{c_int, stack_t};

use crate::hooks::{guard, set_errno};
use crate::real;

/// Interposed `sigaltstack(2)`.
///
/// # Safety
/// As for libc's `sigaltstack`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigaltstack(new: *const stack_t, old: *mut stack_t) -> c_int {
    guard(&"sigaltstack", |task| {
        if task.is_none() {
            // SAFETY: the caller's arguments, passed on unchanged.
            return unsafe { real::sigaltstack(new, old) };
        }
        if !new.is_null() {
            // SAFETY: a fault-safe read of the caller's stack_t.
            let Some(wanted) = (unsafe { corun::user_memory::read::<stack_t>(new as usize) })
            else {
                set_errno(libc::EFAULT);
                return -1;
            };
            // SS_DISABLE, and SS_AUTODISARM (1 << 31, which the libc crate does not name).
            let known = libc::SS_DISABLE | (1 << 31);
            if wanted.ss_flags & !known != 0 {
                set_errno(libc::EINVAL);
                return -1;
            }
            if wanted.ss_flags & libc::SS_DISABLE == 0 && wanted.ss_size < libc::MINSIGSTKSZ {
                set_errno(libc::ENOMEM);
                return -1;
            }
        }
        // The worker's stack, as the caller's "old" one (with new == null this only reads).
        // SAFETY: a null new stack changes nothing; `old` is the caller's out-pointer, which
        // the kernel checks (EFAULT).
        unsafe { real::sigaltstack(std::ptr::null(), old) }
    })
}
