//! waitpid, wait4, wait, pipe, pipe2, and dlopen.
//!
//! Waiting for a child inside a coroutine suspends it: for one child, on a pidfd (readable when
//! the child exits); for "any child", by checking with `WNOHANG` every few milliseconds. New
//! pipes make the fd table forget what it knew about their numbers.

use libc::{c_int, pid_t, rusage};

use super::poll::poll_coroutine;
use super::{guard, set_errno};
use crate::fd;
use crate::real;
use crate::runtime::current::CurrentTask;
use crate::runtime::task::WaitInfo;
use crate::runtime::{self, timer};

/// How often "any child" waits look again.
const ANY_CHILD_POLL_NS: u64 = 5_000_000;

/// Suspends the coroutine until `wait_once(WNOHANG)` reports something (a non-zero result).
fn wait_child(
    current: &CurrentTask,
    pid: pid_t,
    options: c_int,
    mut wait_once: impl FnMut(c_int) -> pid_t,
) -> pid_t {
    if pid > 0 {
        // SAFETY: pidfd_open takes a pid and flags.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as c_int;
        if pidfd >= 0 {
            let mut watch = [libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            }];
            loop {
                let found = wait_once(options | libc::WNOHANG);
                if found != 0 {
                    // SAFETY: our own pidfd.
                    unsafe { real::close(pidfd) };
                    return found;
                }
                // Readable once the child has exited (a stop or continue also wakes us: the
                // WNOHANG check above sorts it out).
                let deadline = timer::now_ns() + ANY_CHILD_POLL_NS;
                let woke = poll_coroutine(current, &mut watch, deadline, WaitInfo::Child { pid });
                if woke < 0 && super::errno() == libc::EINTR {
                    // Interrupted by a signal: a child that is ready is still reported first.
                    let found = wait_once(options | libc::WNOHANG);
                    // SAFETY: our own pidfd.
                    unsafe { real::close(pidfd) };
                    if found == 0 {
                        set_errno(libc::EINTR);
                        return -1;
                    }
                    return found;
                }
            }
        }
    }
    loop {
        let found = wait_once(options | libc::WNOHANG);
        if found != 0 {
            return found;
        }
        let token = current.task().begin_wait();
        let deadline = timer::now_ns() + ANY_CHILD_POLL_NS;
        current.worker().add_timer(deadline, current.arc(), token);
        if runtime::park(current, WaitInfo::Child { pid }) == runtime::Woke::Interrupted {
            let found = wait_once(options | libc::WNOHANG);
            if found == 0 {
                set_errno(libc::EINTR);
                return -1;
            }
            return found;
        }
    }
}

/// Interposed `waitpid(2)`.
///
/// # Safety
/// As for libc's `waitpid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t {
    guard(&"waitpid", |task| match task {
        Some(current) if options & libc::WNOHANG == 0 => {
            wait_child(&current, pid, options, |opts| {
                // SAFETY: the caller's arguments, with WNOHANG.
                unsafe { real::waitpid(pid, status, opts) }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::waitpid(pid, status, options) },
    })
}

/// Interposed `wait4(2)`.
///
/// # Safety
/// As for libc's `wait4`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn wait4(
    pid: pid_t,
    status: *mut c_int,
    options: c_int,
    usage: *mut rusage,
) -> pid_t {
    guard(&"wait4", |task| match task {
        Some(current) if options & libc::WNOHANG == 0 => {
            wait_child(&current, pid, options, |opts| {
                // SAFETY: the caller's arguments, with WNOHANG.
                unsafe { real::wait4(pid, status, opts, usage) }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::wait4(pid, status, options, usage) },
    })
}

/// Interposed `wait(2)`.
///
/// # Safety
/// As for libc's `wait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn wait(status: *mut c_int) -> pid_t {
    guard(&"wait", |task| match task {
        Some(current) => wait_child(&current, -1, 0, |opts| {
            // SAFETY: the caller's argument, as waitpid(-1, status, WNOHANG).
            unsafe { real::waitpid(-1, status, opts) }
        }),
        // SAFETY: the caller's argument, passed on unchanged.
        None => unsafe { real::wait(status) },
    })
}

/// Forgets what the table knew about two new fd numbers.
///
/// # Safety
/// `fds` must point at two fds written by a successful call.
unsafe fn forget_pair(fds: *const c_int) {
    for i in 0..2 {
        // SAFETY: guaranteed by the caller.
        let new = unsafe { *fds.add(i) };
        if let Some(entry) = fd::table().get(new) {
            entry.reset(new);
        }
    }
}

/// Interposed `pipe(2)`.
///
/// # Safety
/// As for libc's `pipe`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pipe(fds: *mut c_int) -> c_int {
    guard(&"pipe", |_| {
        // SAFETY: the caller's argument, passed on unchanged.
        let rc = unsafe { real::pipe(fds) };
        if rc == 0 {
            // SAFETY: success wrote two fds.
            unsafe { forget_pair(fds) };
        }
        rc
    })
}

/// Interposed `pipe2(2)`.
///
/// # Safety
/// As for libc's `pipe2`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pipe2(fds: *mut c_int, flags: c_int) -> c_int {
    guard(&"pipe2", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::pipe2(fds, flags) };
        if rc == 0 {
            // SAFETY: success wrote two fds.
            unsafe { forget_pair(fds) };
        }
        rc
    })
}

/// Interposed `dlopen(3)`: passes through, then has the runtime retake the modules' TLS: a
/// library may have brought thread-locals its coroutine areas need (see `identity`).
///
/// # Safety
/// As for libc's `dlopen`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlopen(filename: *const libc::c_char, flags: c_int) -> *mut libc::c_void {
    guard(&"dlopen", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let handle = unsafe { real::dlopen(filename, flags) };
        if !handle.is_null() {
            crate::identity::note_load();
            crate::identity::refresh_images(false);
        }
        handle
    })
}
