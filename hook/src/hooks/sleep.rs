//! sleep, usleep, nanosleep, clock_nanosleep: inside a coroutine they suspend it on a timer.
//!
//! Argument checks and return values follow glibc: `nanosleep` returns -1 with `EINVAL` for a
//! bad timespec, `clock_nanosleep` returns the error number itself. A coroutine's sleep is not
//! interrupted by signals, so `rem` is never written.

use libc::{c_int, c_uint, clockid_t, timespec, useconds_t};

use super::{guard, set_errno};
use crate::real;
use crate::runtime::{self, current, timer};

/// Suspends the current coroutine for `ns` (a zero sleep yields).
fn sleep_for(current: &current::CurrentTask, ns: u64) {
    if ns == 0 {
        runtime::yield_now(current);
    } else {
        runtime::sleep_until(current, timer::now_ns().saturating_add(ns));
    }
}

/// Interposed `sleep(3)`.
///
/// # Safety
/// As for libc's `sleep`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    guard(&"sleep", |task| match task {
        Some(current) => {
            sleep_for(&current, u64::from(seconds) * 1_000_000_000);
            0
        }
        // SAFETY: the caller's argument, passed on unchanged.
        None => unsafe { real::sleep(seconds) },
    })
}

/// Interposed `usleep(3)`.
///
/// # Safety
/// As for libc's `usleep`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn usleep(usec: useconds_t) -> c_int {
    guard(&"usleep", |task| match task {
        Some(current) => {
            sleep_for(&current, u64::from(usec) * 1000);
            0
        }
        // SAFETY: the caller's argument, passed on unchanged.
        None => unsafe { real::usleep(usec) },
    })
}

/// Interposed `nanosleep(2)`.
///
/// # Safety
/// As for libc's `nanosleep`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    guard(&"nanosleep", |task| {
        let Some(current) = task else {
            // SAFETY: the caller's arguments, passed on unchanged.
            return unsafe { real::nanosleep(req, rem) };
        };
        // SAFETY: a fault-safe read of a plain C struct (a bad pointer is EFAULT, as for libc).
        let Some(req) = (unsafe { corun::user_memory::read::<timespec>(req as usize) }) else {
            set_errno(libc::EFAULT);
            return -1;
        };
        match timer::timespec_ns(&req) {
            Some(ns) => {
                sleep_for(&current, ns);
                0
            }
            None => {
                set_errno(libc::EINVAL);
                -1
            }
        }
    })
}

/// Interposed `clock_nanosleep(2)`: relative or `TIMER_ABSTIME` sleeps on `CLOCK_REALTIME`,
/// `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME` and `CLOCK_TAI`. Other clocks (CPU-time clocks) pass
/// through to libc.
///
/// # Safety
/// As for libc's `clock_nanosleep`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn clock_nanosleep(
    clock: clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    guard(&"clock_nanosleep", |task| {
        let current = match task {
            Some(current)
                if matches!(
                    clock,
                    libc::CLOCK_REALTIME
                        | libc::CLOCK_MONOTONIC
                        | libc::CLOCK_BOOTTIME
                        | libc::CLOCK_TAI
                ) =>
            {
                current
            }
            // SAFETY: the caller's arguments, passed on unchanged.
            _ => return unsafe { real::clock_nanosleep(clock, flags, req, rem) },
        };
        // SAFETY: a fault-safe read of a plain C struct (a bad pointer is EFAULT, as for libc).
        let Some(req) = (unsafe { corun::user_memory::read::<timespec>(req as usize) }) else {
            return libc::EFAULT;
        };
        let Some(ns) = timer::timespec_ns(&req) else {
            return libc::EINVAL;
        };
        if flags & libc::TIMER_ABSTIME == 0 {
            sleep_for(&current, ns);
            return 0;
        }
        // Absolute: sleep for what is left on that clock (a later change of CLOCK_REALTIME
        // does not move the wake-up).
        let now_ns = timer::clock_ns(clock);
        if ns > now_ns {
            runtime::sleep_until(&current, timer::now_ns().saturating_add(ns - now_ns));
        }
        0
    })
}
