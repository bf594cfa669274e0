//! read, readv, write, writev, recv, recvfrom, recvmsg, send, sendto, sendmsg.
//!
//! Reads return as soon as some data arrived (as libc does). Writes to a blocking socket or
//! pipe complete in full before returning, as the kernel does for a blocking fd, unless the
//! socket's send timeout passes or an error occurs after some bytes went out (then the count
//! so far is returned). Every first attempt is the kernel's call with the caller's own
//! arguments (see `transfer`): the caller's iovecs and message header are looked at only after
//! the kernel accepted them, for the rest of a long write.
//!
//! `read`/`readv`/`write`/`writev` on a socket are made as `preadv2`/`pwritev2` with
//! `RWF_NOWAIT`: the same call for the kernel (zero lengths, `SIGPIPE` and all), without the
//! wait. The `recv`/`send` family is made with `MSG_DONTWAIT` added; `MSG_ERRQUEUE` never
//! waits, so it passes straight through, as does every socket call on an fd that is no socket
//! (`ENOTSOCK` at once).

use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::transfer::{self, iov_copy, nowait_iov, pollable_io, socket_io, total_len, Whole};
use super::{direct, guard, mode, Mode};
use crate::fd::Dir;
use crate::real;

/// Flags with which a `recv`/`send` never waits (so it passes straight through).
const NO_WAIT: c_int = libc::MSG_DONTWAIT | libc::MSG_ERRQUEUE;

/// One iovec for a buffer, from offset `done`.
fn one(buf: *const c_void, len: usize, done: usize) -> [iovec; 1] {
    [iovec {
        // SAFETY: `done <= len`: the pointer stays in (or one past) the caller's buffer.
        iov_base: unsafe { buf.cast::<u8>().add(done) }.cast_mut().cast(),
        iov_len: len - done,
    }]
}

/// Interposed `read(2)`.
///
/// # Safety
/// As for libc's `read`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    // SAFETY (closures below): the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::read(fd, buf, count) };
    guard(&"read", |task| match mode(task, fd, Dir::Read) {
        // A zero-length read never waits, and only `read` asks the driver about it (an eventfd
        // says EINVAL; `preadv2` would say 0 without asking).
        _ if count == 0 => plain(),
        Mode::Socket(entry, task) => socket_io(fd, entry, &task, Dir::Read, Whole::First, |_| {
            direct::rw_nowait(fd, Dir::Read, one(buf, count, 0).as_ptr(), 1)
        })
        .unwrap_or_else(|_| plain()),
        Mode::Pollable(entry, current) => pollable_io(
            fd,
            entry,
            &current,
            Dir::Read,
            Whole::First,
            |_| direct::rw_nowait(fd, Dir::Read, one(buf, count, 0).as_ptr(), 1),
            |_| plain(),
        ),
        Mode::PassThrough => plain(),
    })
}

/// Interposed `readv(2)`.
///
/// # Safety
/// As for libc's `readv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY (closures below): the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::readv(fd, iov, iovcnt) };
    let nowait = |_| direct::rw_nowait(fd, Dir::Read, iov, iovcnt);
    guard(&"readv", |task| match mode(task, fd, Dir::Read) {
        Mode::Socket(entry, task) => {
            socket_io(fd, entry, &task, Dir::Read, Whole::First, nowait).unwrap_or_else(|_| plain())
        }
        Mode::Pollable(entry, current) => {
            pollable_io(fd, entry, &current, Dir::Read, Whole::First, nowait, |_| {
                plain()
            })
        }
        Mode::PassThrough => plain(),
    })
}

/// Interposed `recv(2)`.
///
/// # Safety
/// As for libc's `recv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::recv(fd, buf, len, flags) };
    guard(&"recv", |task| match mode(task, fd, Dir::Read) {
        Mode::Socket(entry, task) if flags & NO_WAIT == 0 => {
            let whole = if flags & libc::MSG_WAITALL != 0 {
                Whole::All(len)
            } else {
                Whole::First
            };
            socket_io(fd, entry, &task, Dir::Read, whole, |done| {
                // SAFETY: `done < len`, so the pointer stays in the caller's buffer.
                let at = unsafe { buf.cast::<u8>().add(done) }.cast();
                let flags = flags | libc::MSG_DONTWAIT;
                let (addr, addrlen) = (std::ptr::null_mut(), std::ptr::null_mut());
                direct::recvfrom(fd, at, len - done, flags, addr, addrlen)
            })
            .map(|n| {
                if len == 0 {
                    transfer::zero_length_receive(fd, n)
                } else {
                    n
                }
            })
            .unwrap_or_else(|_| plain())
        }
        _ => plain(),
    })
}

/// Interposed `recvfrom(2)`.
///
/// # Safety
/// As for libc's `recvfrom`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) };
    guard(&"recvfrom", |task| match mode(task, fd, Dir::Read) {
        Mode::Socket(entry, task) if flags & NO_WAIT == 0 => {
            socket_io(fd, entry, &task, Dir::Read, Whole::First, |_| {
                direct::recvfrom(fd, buf, len, flags | libc::MSG_DONTWAIT, addr, addrlen)
            })
            .map(|n| {
                if len == 0 {
                    transfer::zero_length_receive(fd, n)
                } else {
                    n
                }
            })
            .unwrap_or_else(|_| plain())
        }
        _ => plain(),
    })
}

/// Whether `msg` (which the kernel has accepted) asks for zero bytes.
fn receives_nothing(msg: *const msghdr) -> bool {
    // SAFETY: a fault-safe read of a plain C struct.
    let Some(header) = (unsafe { corun::user_memory::read::<msghdr>(msg as usize) }) else {
        return false;
    };
    let count = c_int::try_from(header.msg_iovlen).unwrap_or(c_int::MAX);
    iov_copy(header.msg_iov, count).is_some_and(|iov| total_len(&iov) == 0)
}

/// Interposed `recvmsg(2)`.
///
/// # Safety
/// As for libc's `recvmsg`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::recvmsg(fd, msg, flags) };
    guard(&"recvmsg", |task| match mode(task, fd, Dir::Read) {
        Mode::Socket(entry, task) if flags & NO_WAIT == 0 => {
            socket_io(fd, entry, &task, Dir::Read, Whole::First, |_| {
                direct::recvmsg(fd, msg, flags | libc::MSG_DONTWAIT)
            })
            .map(|n| {
                if n == -1 && super::errno() == libc::EAGAIN && receives_nothing(msg) {
                    transfer::zero_length_receive(fd, n)
                } else {
                    n
                }
            })
            .unwrap_or_else(|_| plain())
        }
        _ => plain(),
    })
}

/// Interposed `write(2)`.
///
/// # Safety
/// As for libc's `write`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    // SAFETY (closures below): the caller's buffer, from `done`.
    let plain =
        |done: usize| unsafe { real::write(fd, buf.cast::<u8>().add(done).cast(), count - done) };
    let nowait = |done: usize| direct::rw_nowait(fd, Dir::Write, one(buf, count, done).as_ptr(), 1);
    guard(&"write", |task| match mode(task, fd, Dir::Write) {
        // A stream socket still connecting makes even a zero-byte write wait (for the
        // connection, within the send timeout), so sockets take the usual loop. `pwritev2`
        // would answer 0 for zero bytes without asking the socket; the plain call asks it (the
        // socket is non-blocking in the kernel).
        Mode::Socket(entry, task) if count == 0 => {
            socket_io(fd, entry, &task, Dir::Write, Whole::All(0), plain)
                .unwrap_or_else(|_| plain(0))
        }
        Mode::Socket(entry, task) => {
            socket_io(fd, entry, &task, Dir::Write, Whole::All(count), nowait)
                .unwrap_or_else(|_| plain(0))
        }
        // As for `read`: only `write` asks the driver about zero bytes.
        _ if count == 0 => plain(0),
        // Without RWF_NOWAIT (a tty), at most PIPE_BUF bytes a call: `poll` promises that much
        // room, so the call cannot block the worker.
        Mode::Pollable(entry, current) => pollable_io(
            fd,
            entry,
            &current,
            Dir::Write,
            Whole::All(count),
            nowait,
            // SAFETY: the caller's buffer, from `done`.
            |done| unsafe {
                let len = (count - done).min(libc::PIPE_BUF);
                real::write(fd, buf.cast::<u8>().add(done).cast(), len)
            },
        ),
        Mode::PassThrough => plain(0),
    })
}

/// The rest of a vectored write (`writev`, `sendmsg`) whose first attempt — the kernel's call
/// with the caller's own arguments — moved `first` bytes: reads the caller's iovecs (the kernel
/// accepted them; the read is fault-safe all the same) and moves what is left with
/// `more(copy, done, left)`.
fn rest_of_write(
    iov: *const iovec,
    iovcnt: usize,
    first: isize,
    more: impl FnOnce(&[iovec], usize, usize) -> isize,
) -> isize {
    if first <= 0 {
        return first;
    }
    let Some(copy) = iov_copy(iov, iovcnt as c_int) else {
        return first;
    };
    let (total, done) = (total_len(&copy), first as usize);
    if done >= total {
        return first;
    }
    match more(&copy, done, total - done) {
        n if n > 0 => (done + n as usize) as isize,
        _ => first,
    }
}

/// Interposed `writev(2)`.
///
/// # Safety
/// As for libc's `writev`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::writev(fd, iov, iovcnt) };
    let nowait = |_| direct::rw_nowait(fd, Dir::Write, iov, iovcnt);
    let count = iovcnt.max(0) as usize;
    guard(&"writev", |task| match mode(task, fd, Dir::Write) {
        Mode::Socket(entry, task) => {
            let Ok(first) = socket_io(fd, entry, &task, Dir::Write, Whole::First, nowait) else {
                return plain();
            };
            rest_of_write(iov, count, first, |copy, done, left| {
                socket_io(fd, entry, &task, Dir::Write, Whole::All(left), |more| {
                    nowait_iov(fd, Dir::Write, copy, done + more)
                })
                .unwrap_or(-1)
            })
        }
        Mode::Pollable(entry, current) => {
            let first = pollable_io(
                fd,
                entry,
                &current,
                Dir::Write,
                Whole::First,
                nowait,
                |_| plain(),
            );
            rest_of_write(iov, count, first, |copy, done, left| {
                pollable_io(
                    fd,
                    entry,
                    &current,
                    Dir::Write,
                    Whole::All(left),
                    |more| nowait_iov(fd, Dir::Write, copy, done + more),
                    |more| {
                        let rest = transfer::advance(copy, done + more);
                        // SAFETY: `rest` points into the caller's buffers.
                        unsafe { real::writev(fd, rest.as_ptr(), rest.len() as c_int) }
                    },
                )
            })
        }
        Mode::PassThrough => plain(),
    })
}

/// Interposed `send(2)`.
///
/// # Safety
/// As for libc's `send`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::send(fd, buf, len, flags) };
    guard(&"send", |task| match mode(task, fd, Dir::Write) {
        Mode::Socket(entry, task) if flags & NO_WAIT == 0 => {
            socket_io(fd, entry, &task, Dir::Write, Whole::All(len), |done| {
                // SAFETY: `done < len`, so the pointer stays in the caller's buffer.
                let at = unsafe { buf.cast::<u8>().add(done) }.cast();
                let flags = flags | libc::MSG_DONTWAIT;
                direct::sendto(fd, at, len - done, flags, std::ptr::null(), 0)
            })
            .unwrap_or_else(|_| plain())
        }
        _ => plain(),
    })
}

/// Interposed `sendto(2)`.
///
/// # Safety
/// As for libc's `sendto`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::sendto(fd, buf, len, flags, addr, addrlen) };
    guard(&"sendto", |task| match mode(task, fd, Dir::Write) {
        Mode::Socket(entry, task) if flags & NO_WAIT == 0 => {
            socket_io(fd, entry, &task, Dir::Write, Whole::All(len), |done| {
                // SAFETY: `done < len`, so the pointer stays in the caller's buffer.
                let at = unsafe { buf.cast::<u8>().add(done) }.cast();
                direct::sendto(
                    fd,
                    at,
                    len - done,
                    flags | libc::MSG_DONTWAIT,
                    addr,
                    addrlen,
                )
            })
            .unwrap_or_else(|_| plain())
        }
        _ => plain(),
    })
}

/// Interposed `sendmsg(2)`. After the first attempt, the rest of a long message goes without
/// its ancillary data (which went out with the first bytes).
///
/// # Safety
/// As for libc's `sendmsg`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::sendmsg(fd, msg, flags) };
    guard(&"sendmsg", |task| match mode(task, fd, Dir::Write) {
        Mode::Socket(entry, task) if flags & NO_WAIT == 0 => {
            let attempt = |_| direct::sendmsg(fd, msg, flags | libc::MSG_DONTWAIT);
            let Ok(first) = socket_io(fd, entry, &task, Dir::Write, Whole::First, attempt) else {
                return plain();
            };
            if first <= 0 {
                return first;
            }
            // The kernel read the header; read it too (fault-safe: it may change meanwhile).
            // SAFETY: a plain C struct.
            let Some(header) = (unsafe { corun::user_memory::read::<msghdr>(msg as usize) }) else {
                return first;
            };
            rest_of_write(
                header.msg_iov,
                header.msg_iovlen,
                first,
                |copy, done, left| {
                    socket_io(fd, entry, &task, Dir::Write, Whole::All(left), |more| {
                        let mut rest = transfer::advance(copy, done + more);
                        let mut later = header;
                        later.msg_iov = rest.as_mut_ptr();
                        later.msg_iovlen = rest.len() as _;
                        later.msg_control = std::ptr::null_mut();
                        later.msg_controllen = 0;
                        direct::sendmsg(fd, &later, flags | libc::MSG_DONTWAIT)
                    })
                    .unwrap_or(-1)
                },
            )
        }
        _ => plain(),
    })
}
