//! `pthread_join`, `pthread_tryjoin_np`, `pthread_timedjoin_np`, `pthread_clockjoin_np`.
//!
//! For a coroutine thread the results are glibc's: 0 with the start routine's value, `EINVAL`
//! for a detached thread or one another thread is joining, `EDEADLK` for a join of oneself,
//! `EBUSY` from the try-join of a running thread, `ETIMEDOUT` when the deadline passes (or the
//! deadline's seconds are negative), `EINVAL` for a clock other than `CLOCK_REALTIME` and
//! `CLOCK_MONOTONIC`. A joining coroutine is suspended; a joining OS thread (the main thread)
//! blocks. One difference: a deadline with nanoseconds outside 0..1e9 is `EINVAL` here where
//! glibc's futex wrapper aborts the process ("unexpected error code"), and an unreadable one
//! is `EFAULT` where glibc crashes.

use std::ffi::c_void;

use libc::{c_int, clockid_t, pthread_t, timespec};

use crate::hooks::guard;
use crate::real;
use crate::threads::{self, word, JoinWait};

/// Joins `thread` (a coroutine thread, or `None`) and stores its value in `retval`.
///
/// # Safety
/// `retval` is null or writable, as libc requires.
unsafe fn join(thread: pthread_t, retval: *mut *mut c_void, wait: JoinWait) -> Option<c_int> {
    let mut value = 0usize;
    let result = threads::join(thread as usize, wait, &mut value)?;
    if result == 0 && !retval.is_null() {
        // SAFETY: guaranteed by the caller.
        unsafe { *retval = value as *mut c_void };
    }
    Some(result)
}

/// How long a timed join of a running thread waits for `abstime` on `clock`, or the error
/// number. Negative seconds time out before the nanoseconds are looked at, as in glibc's join
/// (its futex wrapper checks them first).
fn deadline(clock: clockid_t, abstime: *const timespec) -> Result<JoinWait, c_int> {
    if abstime.is_null() {
        return Ok(JoinWait::Forever); // glibc: a null abstime waits without a timeout
    }
    let at = word::read_timespec(abstime)?;
    if at.tv_sec < 0 {
        return Ok(JoinWait::Until(0));
    }
    word::deadline_from(clock, &at).map(JoinWait::Until)
}

/// Interposed `pthread_join(3)`.
///
/// # Safety
/// As for libc's `pthread_join`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_join(thread: pthread_t, retval: *mut *mut c_void) -> c_int {
    guard(&"pthread_join", |_| {
        // SAFETY: the caller's out-pointer.
        unsafe { join(thread, retval, JoinWait::Forever) }.unwrap_or_else(|| {
            // SAFETY: not a coroutine thread: the caller's arguments, passed on unchanged.
            unsafe { real::pthread_join(thread, retval) }
        })
    })
}

/// Interposed `pthread_tryjoin_np(3)`.
///
/// # Safety
/// As for libc's `pthread_tryjoin_np`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_tryjoin_np(thread: pthread_t, retval: *mut *mut c_void) -> c_int {
    guard(&"pthread_tryjoin_np", |_| {
        // SAFETY: the caller's out-pointer.
        unsafe { join(thread, retval, JoinWait::Not) }.unwrap_or_else(|| {
            // SAFETY: as above.
            unsafe { real::pthread_tryjoin_np(thread, retval) }
        })
    })
}

/// Interposed `pthread_timedjoin_np(3)` (`abstime` on `CLOCK_REALTIME`).
///
/// # Safety
/// As for libc's `pthread_timedjoin_np`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_timedjoin_np(
    thread: pthread_t,
    retval: *mut *mut c_void,
    abstime: *const timespec,
) -> c_int {
    guard(&"pthread_timedjoin_np", |_| {
        if threads::task_of(thread as usize).is_none() {
            // SAFETY: as above.
            return unsafe { real::pthread_timedjoin_np(thread, retval, abstime) };
        }
        timed(thread, retval, libc::CLOCK_REALTIME, abstime)
    })
}

/// Interposed `pthread_clockjoin_np(3)`.
///
/// # Safety
/// As for libc's `pthread_clockjoin_np`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_clockjoin_np(
    thread: pthread_t,
    retval: *mut *mut c_void,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    guard(&"pthread_clockjoin_np", |_| {
        if threads::task_of(thread as usize).is_none() {
            // SAFETY: as above.
            return unsafe { real::pthread_clockjoin_np(thread, retval, clock, abstime) };
        }
        timed(thread, retval, clock, abstime)
    })
}

/// A timed join of coroutine thread `thread`. The deadline is only looked at if the thread is
/// still running, as in glibc (a finished thread is joined whatever the deadline says).
fn timed(
    thread: pthread_t,
    retval: *mut *mut c_void,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    if !word::supported_clock(clock) {
        return libc::EINVAL;
    }
    let wait = match deadline(clock, abstime) {
        Ok(wait) => wait,
        Err(errno) => {
            // A finished thread is joined even so; a running one cannot be waited for.
            // SAFETY: the caller's out-pointer.
            return match unsafe { join(thread, retval, JoinWait::Not) } {
                Some(libc::EBUSY) => errno,
                Some(result) => result,
                None => libc::ESRCH, // joined or detached by another thread meanwhile
            };
        }
    };
    // SAFETY: the caller's out-pointer.
    unsafe { join(thread, retval, wait) }.unwrap_or(libc::ESRCH)
}
