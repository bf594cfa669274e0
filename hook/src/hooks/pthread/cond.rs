//! `pthread_cond_wait`, `_timedwait`, `_clockwait`, `_signal`, `_broadcast` in threads mode
//! (see `crate::threads::cond`). `pthread_cond_init`/`_destroy` stay glibc's.

use libc::{c_int, clockid_t, pthread_cond_t, pthread_mutex_t, timespec};

use crate::hooks::guard;
use crate::real;
use crate::threads::cond::{Cond, Held};
use crate::threads::mutex::Mutex;
use crate::threads::{self, word};

/// The condvar at `cond` if threads mode handles it.
///
/// # Safety
/// `cond` points at an initialised condvar.
unsafe fn ours(cond: *mut pthread_cond_t) -> Option<Cond> {
    if !threads::objects_are_ours() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    unsafe { Cond::at(cond) }
}

/// The mutex a wait releases.
///
/// # Safety
/// `mutex` points at an initialised mutex.
unsafe fn held(mutex: *mut pthread_mutex_t) -> Held {
    // SAFETY: guaranteed by the caller.
    match unsafe { Mutex::at(mutex) } {
        Some(m) => Held::Ours(m),
        None => Held::Glibc(mutex),
    }
}

/// Interposed `pthread_cond_wait(3)`.
///
/// # Safety
/// As for libc's `pthread_cond_wait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_wait(
    cond: *mut pthread_cond_t,
    mutex: *mut pthread_mutex_t,
) -> c_int {
    guard(&"pthread_cond_wait", |_| {
        // SAFETY: the caller's objects.
        match unsafe { ours(cond) } {
            Some(c) => c.wait(&unsafe { held(mutex) }, None),
            // SAFETY: the caller's arguments, passed on unchanged.
            None => unsafe { real::pthread_cond_wait(cond, mutex) },
        }
    })
}

/// A timed wait: `EINVAL` for a clock other than realtime or monotonic or bad nanoseconds
/// (checked before the mutex is released, as glibc).
///
/// # Safety
/// `mutex` points at an initialised mutex.
unsafe fn timed(
    c: &Cond,
    mutex: *mut pthread_mutex_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    if !word::supported_clock(clock) {
        return libc::EINVAL;
    }
    match word::deadline_of(clock, abstime) {
        // SAFETY: guaranteed by the caller.
        Ok(deadline) => c.wait(&unsafe { held(mutex) }, Some(deadline)),
        Err(err) => err,
    }
}

/// Interposed `pthread_cond_timedwait(3)` (`abstime` on the condvar's clock).
///
/// # Safety
/// As for libc's `pthread_cond_timedwait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_timedwait(
    cond: *mut pthread_cond_t,
    mutex: *mut pthread_mutex_t,
    abstime: *const timespec,
) -> c_int {
    guard(&"pthread_cond_timedwait", |_| {
        // SAFETY: the caller's objects.
        match unsafe { ours(cond) } {
            Some(c) => unsafe { timed(&c, mutex, c.clock(), abstime) },
            // SAFETY: as above.
            None => unsafe { real::pthread_cond_timedwait(cond, mutex, abstime) },
        }
    })
}

/// Interposed `pthread_cond_clockwait(3)`.
///
/// # Safety
/// As for libc's `pthread_cond_clockwait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_clockwait(
    cond: *mut pthread_cond_t,
    mutex: *mut pthread_mutex_t,
    clock: clockid_t,
    abstime: *const timespec,
) -> c_int {
    guard(&"pthread_cond_clockwait", |_| {
        // SAFETY: the caller's objects.
        match unsafe { ours(cond) } {
            Some(c) => unsafe { timed(&c, mutex, clock, abstime) },
            // SAFETY: as above.
            None => unsafe { real::pthread_cond_clockwait(cond, mutex, clock, abstime) },
        }
    })
}

/// Interposed `pthread_cond_signal(3)`.
///
/// # Safety
/// As for libc's `pthread_cond_signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_signal(cond: *mut pthread_cond_t) -> c_int {
    guard(&"pthread_cond_signal", |_| {
        // SAFETY: the caller's condvar.
        match unsafe { ours(cond) } {
            Some(c) => {
                c.notify(false);
                0
            }
            // SAFETY: as above.
            None => unsafe { real::pthread_cond_signal(cond) },
        }
    })
}

/// Interposed `pthread_cond_broadcast(3)`.
///
/// # Safety
/// As for libc's `pthread_cond_broadcast`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_cond_broadcast(cond: *mut pthread_cond_t) -> c_int {
    guard(&"pthread_cond_broadcast", |_| {
        // SAFETY: the caller's condvar.
        match unsafe { ours(cond) } {
            Some(c) => {
                c.notify(true);
                0
            }
            // SAFETY: as above.
            None => unsafe { real::pthread_cond_broadcast(cond) },
        }
    })
}
