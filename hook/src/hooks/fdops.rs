//! close, dup, dup2, dup3, fcntl, ioctl: keeping the fd table true.
//!
//! For a managed socket the kernel's `O_NONBLOCK` is always on; what the user asked for is
//! kept in the table, reported by `fcntl(F_GETFL)` and honoured by the I/O hooks.

use libc::{c_int, c_ulong, c_void};

use super::guard;
use crate::fd::{self, FdEntry, KIND_POLLABLE, KIND_SOCKET, KIND_UNKNOWN};
use crate::real;

/// Interposed `close(2)`: coroutines waiting on `fd` wake with `EBADF`, and later events for
/// this fd number are ignored.
///
/// # Safety
/// As for libc's `close`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    guard(&"close", |_| {
        if let Some(entry) = fd::table().peek(fd) {
            if entry.kind() != KIND_UNKNOWN {
                entry.invalidate(fd);
            }
        }
        // SAFETY: the caller's argument, passed on unchanged.
        unsafe { real::close(fd) }
    })
}

/// After `new` became a copy of `old`: wakes whoever waited on what `new` was, and copies
/// what is known of `old`.
fn copied(old: c_int, new: c_int) {
    let Some(target) = fd::table().get(new) else {
        return;
    };
    if target.kind() != KIND_UNKNOWN {
        target.invalidate(new);
    }
    match fd::table().peek(old).filter(|e| e.kind() != KIND_UNKNOWN) {
        Some(source) => target.copy_from(source),
        None => target.reset(),
    }
}

/// Interposed `dup(2)`.
///
/// # Safety
/// As for libc's `dup`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    guard(&"dup", |_| {
        // SAFETY: the caller's argument, passed on unchanged.
        let new = unsafe { real::dup(fd) };
        if new >= 0 {
            copied(fd, new);
        }
        new
    })
}

/// Interposed `dup2(2)`.
///
/// # Safety
/// As for libc's `dup2`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    guard(&"dup2", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::dup2(old, new) };
        if rc >= 0 && old != new {
            copied(old, new);
        }
        rc
    })
}

/// Interposed `dup3(2)`.
///
/// # Safety
/// As for libc's `dup3`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    guard(&"dup3", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::dup3(old, new, flags) };
        if rc >= 0 {
            copied(old, new);
        }
        rc
    })
}

fn managed_socket(fd: c_int) -> Option<&'static FdEntry> {
    fd::table().peek(fd).filter(|e| e.kind() == KIND_SOCKET)
}

/// A pollable fd: its flags stay the kernel's, but the hooks need to know the user's wish.
fn pollable(fd: c_int) -> Option<&'static FdEntry> {
    fd::table().peek(fd).filter(|e| e.kind() == KIND_POLLABLE)
}

/// Interposed `fcntl(2)` (variadic in C: the optional third argument arrives in the same
/// register either way on x86_64).
///
/// # Safety
/// As for libc's `fcntl`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int {
    guard(&"fcntl", |_| match cmd {
        libc::F_GETFL => {
            // SAFETY: the caller's arguments, passed on unchanged.
            let flags = unsafe { real::fcntl(fd, cmd, arg) };
            match managed_socket(fd) {
                Some(entry) if flags >= 0 => {
                    let user = if entry.user_nonblocking() {
                        libc::O_NONBLOCK
                    } else {
                        0
                    };
                    (flags & !libc::O_NONBLOCK) | user
                }
                _ => flags,
            }
        }
        libc::F_SETFL => match managed_socket(fd) {
            Some(entry) => {
                // The kernel keeps O_NONBLOCK; the user's wish is recorded.
                // SAFETY: the caller's arguments with O_NONBLOCK kept on.
                let rc = unsafe { real::fcntl(fd, cmd, arg | libc::O_NONBLOCK as usize) };
                if rc == 0 {
                    entry.set_user_nonblocking(arg & libc::O_NONBLOCK as usize != 0);
                }
                rc
            }
            None => {
                // SAFETY: the caller's arguments, passed on unchanged.
                let rc = unsafe { real::fcntl(fd, cmd, arg) };
                if let (0, Some(entry)) = (rc, pollable(fd)) {
                    entry.set_user_nonblocking(arg & libc::O_NONBLOCK as usize != 0);
                }
                rc
            }
        },
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            // SAFETY: the caller's arguments, passed on unchanged.
            let new = unsafe { real::fcntl(fd, cmd, arg) };
            if new >= 0 {
                copied(fd, new);
            }
            new
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::fcntl(fd, cmd, arg) },
    })
}

/// Interposed `ioctl(2)`: `FIONBIO` on a managed socket records the user's wish and leaves the
/// kernel non-blocking; on a pollable fd it goes to the kernel and is recorded too.
///
/// # Safety
/// As for libc's `ioctl`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    guard(&"ioctl", |_| {
        if request == libc::FIONBIO && !arg.is_null() {
            if let Some(entry) = managed_socket(fd) {
                // SAFETY: FIONBIO takes a pointer to an int.
                let on = unsafe { *arg.cast::<c_int>() } != 0;
                entry.set_user_nonblocking(on);
                return 0;
            }
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::ioctl(fd, request, arg) };
        if rc == 0 && request == libc::FIONBIO && !arg.is_null() {
            if let Some(entry) = pollable(fd) {
                // SAFETY: FIONBIO takes a pointer to an int (the kernel just read it).
                entry.set_user_nonblocking(unsafe { *arg.cast::<c_int>() } != 0);
            }
        }
        rc
    })
}
