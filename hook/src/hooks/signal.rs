//! sigaction, signal, bsd_signal, siginterrupt, pthread_kill: the user's handlers go in behind
//! corun's trampoline, so that a signal can interrupt a coroutine's blocked call as it would
//! interrupt a thread's (see [`crate::signal`]).
//!
//! Every one of them behaves as libc's, on every thread: the same return values and errno, and
//! an old action that names the user's own handler and flags.

use std::sync::atomic::{AtomicBool, Ordering};

use libc::{c_int, pthread_t, sighandler_t};

use super::{guard, set_errno};
use crate::real;
use crate::signal::{actions, interrupt};

/// Signals `siginterrupt` made interrupting: `signal` installs their handlers without
/// `SA_RESTART` (glibc keeps the same set, which its `signal` reads).
static INTERRUPTING: [AtomicBool; actions::NSIG] =
    [const { AtomicBool::new(false) }; actions::NSIG];

/// Interposed `sigaction(2)`.
///
/// # Safety
/// As for libc's `sigaction`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    // SAFETY: the caller's arguments.
    guard(&"sigaction", |_| unsafe {
        actions::sigaction(sig, act, old)
    })
}

/// `signal` with BSD semantics, as glibc's: the signal itself blocked in its handler, and
/// `SA_RESTART` unless `siginterrupt` said otherwise.
fn bsd_signal_impl(sig: c_int, handler: sighandler_t) -> sighandler_t {
    if handler == libc::SIG_ERR || !(1..actions::NSIG as c_int).contains(&sig) {
        set_errno(libc::EINVAL);
        return libc::SIG_ERR;
    }
    // SAFETY: an all-zero sigaction is valid; sigemptyset/sigaddset on our own mask with a
    // signal number checked above.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    // SAFETY: as above.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaddset(&mut act.sa_mask, sig);
    }
    act.sa_flags = if INTERRUPTING[sig as usize].load(Ordering::Relaxed) {
        0
    } else {
        libc::SA_RESTART
    };
    // SAFETY: an all-zero sigaction is valid.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid action and out-pointer.
    if unsafe { actions::sigaction(sig, &act, &mut old) } < 0 {
        return libc::SIG_ERR;
    }
    old.sa_sigaction
}

/// Interposed `signal(2)`.
///
/// # Safety
/// As for libc's `signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    guard(&"signal", |_| bsd_signal_impl(sig, handler))
}

/// Interposed `bsd_signal(3)` (glibc's other name for `signal`).
///
/// # Safety
/// As for libc's `bsd_signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    guard(&"bsd_signal", |_| bsd_signal_impl(sig, handler))
}

/// Interposed `siginterrupt(3)`: as glibc's, on the hooked `sigaction`, and remembered for
/// `signal`.
///
/// # Safety
/// As for libc's `siginterrupt`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn siginterrupt(sig: c_int, flag: c_int) -> c_int {
    guard(&"siginterrupt", |_| {
        // SAFETY: an all-zero sigaction is valid.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a valid out-pointer.
        if unsafe { actions::sigaction(sig, std::ptr::null(), &mut act) } < 0 {
            return -1;
        }
        if flag != 0 {
            INTERRUPTING[sig as usize].store(true, Ordering::Relaxed);
            act.sa_flags &= !libc::SA_RESTART;
        } else {
            INTERRUPTING[sig as usize].store(false, Ordering::Relaxed);
            act.sa_flags |= libc::SA_RESTART;
        }
        // SAFETY: the action just read back, changed.
        if unsafe { actions::sigaction(sig, &act, std::ptr::null_mut()) } < 0 {
            return -1;
        }
        0
    })
}

/// Interposed `pthread_kill(3)`: a signal aimed at a coroutine (its `pthread_self()`) that is
/// in an interruptible wait interrupts that wait, as it would interrupt that thread's call.
///
/// # Safety
/// As for libc's `pthread_kill`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_kill(thread: pthread_t, sig: c_int) -> c_int {
    guard(&"pthread_kill", |_| {
        // SAFETY: pthread_self has no preconditions.
        if thread != unsafe { libc::pthread_self() } {
            interrupt::aim(sig, thread as usize);
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { real::pthread_kill(thread, sig) }
    })
}
