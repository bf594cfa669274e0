//! `pthread_mutex_lock`, `_trylock`, `_timedlock`, `_clocklock`, `_unlock` in threads mode
//! (see `crate::threads::mutex`): a coroutine waiting for a mutex is suspended, and an unlock
//! by anyone — coroutine or OS thread — wakes it. Outside threads mode, and for the kinds
//! glibc must handle (robust, PI, PP, process-shared), glibc's own functions.

use libc::{c_int, clockid_t, pthread_mutex_t, timespec};

use crate::hooks::guard;
use crate::real;
use crate::threads::{self, mutex::Mutex, word};

/// The mutex at `mutex` if threads mode handles it.
///
/// # Safety
/// `mutex` points at an initialised mutex, as every pthread_mutex function requires.
unsafe fn ours(mutex: *mut pthread_mutex_t) -> Option<Mutex> {
    if !threads::objects_are_ours() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    unsafe { Mutex::at(mutex) }
}

/// Interposed `pthread_mutex_lock(3)`.
///
/// # Safety
/// As for libc's `pthread_mutex_lock`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_lock(mutex: *mut pthread_mutex_t) -> c_int {
    guard(&"pthread_mutex_lock", |_| {
        // SAFETY: the caller's mutex.
        match unsafe { ours(mutex) } {
            Some(m) => m.lock(None),
            // SAFETY: the caller's argument, passed on unchanged.
            None => unsafe { real::pthread_mutex_lock(mutex) },
        }
    })
}

/// Interposed `pthread_mutex_trylock(3)`.
///
/// # Safety
/// As for libc's `pthread_mutex_trylock`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_trylock(mutex: *mut pthread_mutex_t) -> c_int {
    guard(&"pthread_mutex_trylock", |_| {
        // SAFETY: the caller's mutex.
        match unsafe { ours(mutex) } {
            Some(m) => m.try_lock(),
            // SAFETY: as above.
            None => unsafe { real::pthread_mutex_trylock(mutex) },
        }
    })
}

/// A timed lock: the deadline is only checked if the mutex is taken (as glibc: a free mutex
/// is locked whatever `abstime` says).
fn timed(m: &Mutex, clock: clockid_t, abstime: *const timespec) -> c_int {
    if !word::supported_clock(clock) {
        return libc::EINVAL;
    }
    match word::deadline_of(clock, abstime) {
        Ok(deadline) => m.lock(Some(deadline)),
        Err(err) => match m.try_lock() {
            0 => 0,
            _ => err,
        },
    }
}

/// Interposed `pthread_mutex_timedlock(3)` (`abstime` on `CLOCK_REALTIME`).
///
/// # Safety
/// As for libc's `pthread_mutex_timedlock`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_timedlock(
    mutex: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    guard(&"pthread_mutex_timedlock", |_| {
        // SAFETY: the caller's mutex.
        match unsafe { ours(mutex) } {
            Some(m) => timed(&m, libc::CLOCK_REALTIME, abstime),
            // SAFETY: as above.
            None => unsafe { real::pthread_mutex_timedlock(mutex, abstime) },
        }
    })
}

/// Interposed `pthread_mutex_clocklock(3)`.
///
/// # Safety
/// As for libc's `pthread_mutex_clocklock`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_clocklock(
    mutex: *mut pthread_mutex_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    guard(&"pthread_mutex_clocklock", |_| {
        // SAFETY: the caller's mutex.
        match unsafe { ours(mutex) } {
            Some(m) => timed(&m, clock, abstime),
            // SAFETY: as above.
            None => unsafe { real::pthread_mutex_clocklock(mutex, clock, abstime) },
        }
    })
}

/// Interposed `pthread_mutex_unlock(3)`.
///
/// # Safety
/// As for libc's `pthread_mutex_unlock`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_mutex_unlock(mutex: *mut pthread_mutex_t) -> c_int {
    guard(&"pthread_mutex_unlock", |_| {
        // SAFETY: the caller's mutex.
        match unsafe { ours(mutex) } {
            Some(m) => m.unlock(),
            // SAFETY: as above.
            None => unsafe { real::pthread_mutex_unlock(mutex) },
        }
    })
}
