//! `sem_wait`, `sem_timedwait`, `sem_clockwait`, `sem_post` in threads mode, for private
//! unnamed semaphores (see `crate::threads::sem`). Errors as glibc: -1 with `errno` (`EINTR`
//! when a signal interrupts the wait, `ETIMEDOUT`, `EINVAL` for a bad deadline or clock,
//! `EOVERFLOW` from a post at `SEM_VALUE_MAX`).

use libc::{c_int, clockid_t, sem_t, timespec};

use crate::hooks::{guard, set_errno};
use crate::real;
use crate::threads::sem::Sem;
use crate::threads::{self, word};

/// The semaphore at `sem` if threads mode handles it.
///
/// # Safety
/// `sem` points at an initialised semaphore.
unsafe fn ours(sem: *mut sem_t) -> Option<Sem> {
    if !threads::objects_are_ours() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    unsafe { Sem::at(sem) }
}

/// 0, or -1 with `errno` set to `code`.
fn result(code: c_int) -> c_int {
    if code == 0 {
        0
    } else {
        set_errno(code);
        -1
    }
}

/// Interposed `sem_wait(3)`.
///
/// # Safety
/// As for libc's `sem_wait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_wait(sem: *mut sem_t) -> c_int {
    guard(&"sem_wait", |_| {
        // SAFETY: the caller's semaphore.
        match unsafe { ours(sem) } {
            Some(s) => result(s.wait(None)),
            // SAFETY: the caller's argument, passed on unchanged.
            None => unsafe { real::sem_wait(sem) },
        }
    })
}

fn timed(s: &Sem, clock: clockid_t, abstime: *const timespec) -> c_int {
    if !word::supported_clock(clock) {
        return result(libc::EINVAL);
    }
    match word::deadline_of(clock, abstime) {
        Ok(deadline) => result(s.wait(Some(deadline))),
        Err(err) => result(err),
    }
}

/// Interposed `sem_timedwait(3)` (`abstime` on `CLOCK_REALTIME`).
///
/// # Safety
/// As for libc's `sem_timedwait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_timedwait(sem: *mut sem_t, abstime: *const timespec) -> c_int {
    guard(&"sem_timedwait", |_| {
        // SAFETY: the caller's semaphore.
        match unsafe { ours(sem) } {
            Some(s) => timed(&s, libc::CLOCK_REALTIME, abstime),
            // SAFETY: as above.
            None => unsafe { real::sem_timedwait(sem, abstime) },
        }
    })
}

/// Interposed `sem_clockwait(3)`.
///
/// # Safety
/// As for libc's `sem_clockwait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_clockwait(
    sem: *mut sem_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    guard(&"sem_clockwait", |_| {
        // SAFETY: the caller's semaphore.
        match unsafe { ours(sem) } {
            Some(s) => timed(&s, clock, abstime),
            // SAFETY: as above.
            None => unsafe { real::sem_clockwait(sem, clock, abstime) },
        }
    })
}

/// Interposed `sem_post(3)`.
///
/// # Safety
/// As for libc's `sem_post`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sem_post(sem: *mut sem_t) -> c_int {
    guard(&"sem_post", |_| {
        // SAFETY: the caller's semaphore.
        match unsafe { ours(sem) } {
            Some(s) => result(s.post()),
            // SAFETY: as above.
            None => unsafe { real::sem_post(sem) },
        }
    })
}
