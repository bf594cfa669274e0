//! sleep, usleep, nanosleep, clock_nanosleep: inside a coroutine they suspend it on a timer.
//!
//! Argument checks and return values follow glibc: `nanosleep` returns -1 with `EINVAL` for a
//! bad timespec, `clock_nanosleep` returns the error number itself. A signal interrupts a
//! coroutine's sleep as it would a thread's (see [`crate::signal`]): `nanosleep` and relative
//! `clock_nanosleep` write the time left to `rem`, `sleep` returns the whole seconds left.

use libc::{c_int, c_uint, clockid_t, timespec, useconds_t};

use super::{guard, set_errno};
use crate::real;
use crate::runtime::{self, current, timer};

/// Suspends the current coroutine for `ns` (a zero sleep yields). `Err(left)`: a signal
/// interrupted it with `left` ns to go.
fn sleep_for(current: &current::CurrentTask, ns: u64) -> Result<(), u64> {
    if ns == 0 {
        runtime::yield_now(current);
        Ok(())
    } else {
        runtime::sleep_until(current, timer::now_ns().saturating_add(ns))
    }
}

/// `left` ns as a timespec.
fn timespec_of(left: u64) -> timespec {
    timespec {
        tv_sec: (left / 1_000_000_000) as libc::time_t,
        tv_nsec: (left % 1_000_000_000) as libc::c_long,
    }
}

/// Writes the time left of an interrupted sleep to `rem` (if not null). False if `rem` is not
/// writable (the kernel then says `EFAULT`).
fn write_rem(rem: *mut timespec, left: u64) -> bool {
    // SAFETY: the caller's out-parameter; a fault-safe write.
    rem.is_null() || unsafe { corun::user_memory::write(rem as usize, &timespec_of(left)) }
}

/// Interposed `sleep(3)`.
///
/// # Safety
/// As for libc's `sleep`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sleep(seconds: c_uint) -> c_uint {
    guard(&"sleep", |task| match task {
        Some(current) => match sleep_for(&current, u64::from(seconds) * 1_000_000_000) {
            Ok(()) => 0,
            // As glibc's: the whole seconds not slept, errno EINTR.
            Err(left) => {
                set_errno(libc::EINTR);
                (left / 1_000_000_000) as c_uint
            }
        },
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
        Some(current) => match sleep_for(&current, u64::from(usec) * 1000) {
            Ok(()) => 0,
            Err(_) => {
                set_errno(libc::EINTR);
                -1
            }
        },
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
            Some(ns) => match sleep_for(&current, ns) {
                Ok(()) => 0,
                Err(left) => {
                    set_errno(if write_rem(rem, left) {
                        libc::EINTR
                    } else {
                        libc::EFAULT
                    });
                    -1
                }
            },
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
            return match sleep_for(&current, ns) {
                Ok(()) => 0,
                Err(left) if write_rem(rem, left) => libc::EINTR,
                Err(_) => libc::EFAULT,
            };
        }
        // Absolute: sleep for what is left on that clock (a later change of CLOCK_REALTIME
        // does not move the wake-up). An interrupted one leaves `rem` alone.
        let now_ns = timer::clock_ns(clock);
        if ns > now_ns {
            let deadline = timer::now_ns().saturating_add(ns - now_ns);
            if runtime::sleep_until(&current, deadline).is_err() {
                return libc::EINTR;
            }
        }
        0
    })
}
