//! close, close_range, closefrom, fclose, dup, dup2, dup3, fcntl, ioctl: keeping the fd table
//! true. (`syscall(SYS_close)` and `syscall(SYS_close_range)` come here too, from the
//! `syscall` hook; a close the hooks cannot see — inside libc, by `exec` — leaves a stale
//! entry, which the data hooks notice (`ENOTSOCK`) and forget.)
//!
//! For a managed socket the kernel's `O_NONBLOCK` is always on; what the user asked for is
//! kept in the table, reported by `fcntl(F_GETFL)` and honoured by the I/O hooks.

use libc::{c_int, c_uint, c_ulong, c_void};

use super::guard;
use crate::fd::{self, FdEntry, KIND_SOCKET, KIND_UNKNOWN};
use crate::real;

/// Forgets what the table knows of `fd`, which is being closed: coroutines waiting on it wake
/// with `EBADF`, and later events for this number are ignored.
pub fn closing(fd: c_int) {
    if let Some(entry) = fd::table().peek(fd) {
        if entry.kind() != KIND_UNKNOWN {
            entry.invalidate(fd);
        }
    }
}

/// Interposed `close(2)`.
///
/// # Safety
/// As for libc's `close`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    guard(&"close", |_| {
        closing(fd);
        // SAFETY: the caller's argument, passed on unchanged.
        unsafe { real::close(fd) }
    })
}

/// `close_range(2)` as the table sees it: unless it only sets close-on-exec, or its arguments
/// are wrong (then the kernel refuses), the fds from `first` to `last` are being closed.
pub fn closing_range(first: c_uint, last: c_uint, flags: c_int) {
    let known = libc::CLOSE_RANGE_CLOEXEC as c_int | libc::CLOSE_RANGE_UNSHARE as c_int;
    if first > last || flags & !known != 0 || flags & libc::CLOSE_RANGE_CLOEXEC as c_int != 0 {
        return;
    }
    let clamp = |n: c_uint| n.min(c_int::MAX as c_uint) as c_int;
    fd::table().invalidate_range(clamp(first), clamp(last));
}

/// Interposed `close_range(2)`.
///
/// # Safety
/// As for libc's `close_range`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    guard(&"close_range", |_| {
        closing_range(first, last, flags);
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { real::close_range(first, last, flags) }
    })
}

/// Interposed `closefrom(3)`.
///
/// # Safety
/// As for libc's `closefrom`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    guard(&"closefrom", |_| {
        fd::table().invalidate_range(lowfd, c_int::MAX);
        // SAFETY: the caller's argument, passed on unchanged.
        unsafe { real::closefrom(lowfd) }
    })
}

/// Interposed `fclose(3)`: the stream's fd is closed inside libc, where no hook sees it.
///
/// # Safety
/// As for libc's `fclose`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fclose(stream: *mut libc::FILE) -> c_int {
    guard(&"fclose", |_| {
        if !stream.is_null() {
            // SAFETY: a stream the caller is closing; fileno only reads it.
            let fd = unsafe { libc::fileno(stream) };
            if fd >= 0 {
                closing(fd);
            }
        }
        // SAFETY: the caller's argument, passed on unchanged.
        unsafe { real::fclose(stream) }
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
    match fd::table().peek(old) {
        Some(source) if source.kind() != KIND_UNKNOWN => target.copy_from(new, source),
        // A socket no coroutine has used yet: the copy shares what is noted about it.
        Some(source) if is_socket(old) => {
            source.own_desc(old);
            target.copy_from(new, source);
        }
        _ => target.reset(new),
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

/// Whether `fd` is a socket (asked of the kernel).
fn is_socket(fd: c_int) -> bool {
    // SAFETY: an all-zero stat is a valid out-buffer; a bad fd is an error.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(fd, &mut stat) }) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
}

fn managed_socket(fd: c_int) -> Option<&'static FdEntry> {
    fd::table().peek(fd).filter(|e| e.kind() == KIND_SOCKET)
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
            // SAFETY: the caller's arguments, passed on unchanged.
            None => unsafe { real::fcntl(fd, cmd, arg) },
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
/// kernel non-blocking (reading the flag as the kernel would: a bad pointer is `EFAULT`).
/// Anything else, and any other fd, goes to the kernel.
///
/// # Safety
/// As for libc's `ioctl`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    guard(&"ioctl", |_| {
        if request == libc::FIONBIO {
            if let Some(entry) = managed_socket(fd) {
                // SAFETY: FIONBIO takes a pointer to an int; a bad one is an error, not a crash.
                let Some(on) = (unsafe { corun::user_memory::read::<c_int>(arg as usize) }) else {
                    super::set_errno(libc::EFAULT);
                    return -1;
                };
                entry.set_user_nonblocking(on != 0);
                return 0;
            }
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { real::ioctl(fd, request, arg) }
    })
}
