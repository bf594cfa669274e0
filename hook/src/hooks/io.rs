//! read, readv, write, writev, recv, recvfrom, recvmsg, send, sendto, sendmsg.
//!
//! Reads return as soon as some data arrived (as libc does). Writes to a blocking socket
//! complete in full before returning, as the kernel does for a blocking socket, unless the
//! socket's send timeout passes or an error occurs after some bytes went out (then the count
//! so far is returned).

use libc::{c_int, c_void, iovec, msghdr, size_t, sockaddr, socklen_t, ssize_t};

use super::{blocking, deadline_for, direct, errno, guard, mode, set_errno, try_once, wait, Mode};
use crate::fd::{Dir, FdEntry, Wait, KIND_POLLABLE, KIND_SOCKET};
use crate::real;
use crate::runtime::current::CurrentTask;

/// Like [`blocking`], but keeps going until `len` bytes are done: `attempt(done, max)`
/// transfers at most `max` bytes from offset `done`. Stops early at end of file (a 0 result),
/// returning the count so far.
///
/// On a pollable fd (a pipe, say) each attempt moves at most `PIPE_BUF` bytes: `poll` promises
/// that much room, so the blocking call cannot stall the worker.
fn blocking_all(
    fd: c_int,
    entry: &FdEntry,
    task: &Option<CurrentTask>,
    dir: Dir,
    len: usize,
    mut attempt: impl FnMut(usize, usize) -> isize,
) -> isize {
    let generation = entry.generation();
    let deadline = deadline_for(entry, dir);
    let max = if entry.kind() == KIND_POLLABLE {
        libc::PIPE_BUF
    } else {
        usize::MAX
    };
    let mut done = 0usize;
    loop {
        let seen = entry.ready_seq(dir);
        let n = try_once(fd, entry, dir, || attempt(done, max));
        if n > 0 {
            done += n as usize;
            if done >= len {
                return done as isize;
            }
            continue;
        }
        if n == 0 {
            return done as isize;
        }
        let err = errno();
        if err != libc::EAGAIN {
            if done > 0 {
                return done as isize;
            }
            return -1;
        }
        match wait(fd, entry, dir, seen, generation, deadline, task) {
            Wait::Ready => {}
            outcome => {
                if done > 0 {
                    return done as isize;
                }
                set_errno(if outcome == Wait::Closed {
                    libc::EBADF
                } else {
                    libc::EAGAIN
                });
                return -1;
            }
        }
    }
}

/// The iovecs left after skipping the first `done` bytes of `iov`.
fn advance(iov: &[iovec], mut done: usize) -> Vec<iovec> {
    let mut rest = Vec::with_capacity(iov.len());
    for v in iov {
        if done >= v.iov_len {
            done -= v.iov_len;
            continue;
        }
        rest.push(iovec {
            // SAFETY: `done < iov_len`, so the offset stays inside the caller's buffer.
            iov_base: unsafe { v.iov_base.cast::<u8>().add(done) }.cast(),
            iov_len: v.iov_len - done,
        });
        done = 0;
    }
    rest
}

/// The iovecs of a call as a slice, if `iovcnt` is sane (otherwise libc reports `EINVAL`).
///
/// # Safety
/// For a sane count, `iov` must point at `iovcnt` iovecs (as libc requires).
unsafe fn iov_slice<'a>(iov: *const iovec, iovcnt: c_int) -> Option<&'a [iovec]> {
    if iov.is_null() || !(0..=libc::UIO_MAXIOV).contains(&iovcnt) {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) })
}

fn total_len(iov: &[iovec]) -> usize {
    iov.iter()
        .fold(0usize, |sum, v| sum.saturating_add(v.iov_len))
}

/// Interposed `read(2)`.
///
/// # Safety
/// As for libc's `read`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    guard(&"read", |task| match mode(task, fd, Dir::Read) {
        // SAFETY: the caller's arguments, passed on unchanged.
        Mode::PassThrough => unsafe { real::read(fd, buf, count) },
        Mode::Blocking(entry, task) => {
            let socket = entry.kind() == KIND_SOCKET;
            blocking(fd, entry, &task, Dir::Read, || {
                if socket {
                    // `read` on a socket is `recv` without flags.
                    direct::recvfrom(
                        fd,
                        buf,
                        count,
                        0,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                } else {
                    // SAFETY: as above.
                    unsafe { real::read(fd, buf, count) }
                }
            })
        }
    })
}

/// Interposed `readv(2)`.
///
/// # Safety
/// As for libc's `readv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    guard(&"readv", |task| match mode(task, fd, Dir::Read) {
        // SAFETY: the caller's arguments, passed on unchanged.
        Mode::PassThrough => unsafe { real::readv(fd, iov, iovcnt) },
        Mode::Blocking(entry, task) => blocking(fd, entry, &task, Dir::Read, || {
            // SAFETY: as above.
            unsafe { real::readv(fd, iov, iovcnt) }
        }),
    })
}

/// Interposed `recv(2)`.
///
/// # Safety
/// As for libc's `recv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    guard(&"recv", |task| match mode(task, fd, Dir::Read) {
        Mode::Blocking(entry, task) if flags & libc::MSG_DONTWAIT == 0 => {
            if flags & libc::MSG_WAITALL != 0 {
                blocking_all(fd, entry, &task, Dir::Read, len, |done, max| {
                    // SAFETY: `done < len`, so the pointer stays in the caller's buffer.
                    let at = unsafe { buf.cast::<u8>().add(done) }.cast();
                    direct::recvfrom(
                        fd,
                        at,
                        (len - done).min(max),
                        flags,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                })
            } else {
                blocking(fd, entry, &task, Dir::Read, || {
                    direct::recvfrom(
                        fd,
                        buf,
                        len,
                        flags,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                })
            }
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::recv(fd, buf, len, flags) },
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
    guard(&"recvfrom", |task| match mode(task, fd, Dir::Read) {
        Mode::Blocking(entry, task) if flags & libc::MSG_DONTWAIT == 0 => {
            blocking(fd, entry, &task, Dir::Read, || {
                // SAFETY: the caller's arguments.
                unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::recvfrom(fd, buf, len, flags, addr, addrlen) },
    })
}

/// Interposed `recvmsg(2)`.
///
/// # Safety
/// As for libc's `recvmsg`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    guard(&"recvmsg", |task| match mode(task, fd, Dir::Read) {
        Mode::Blocking(entry, task) if flags & libc::MSG_DONTWAIT == 0 => {
            blocking(fd, entry, &task, Dir::Read, || {
                // SAFETY: the caller's arguments.
                unsafe { real::recvmsg(fd, msg, flags) }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::recvmsg(fd, msg, flags) },
    })
}

/// Interposed `write(2)`.
///
/// # Safety
/// As for libc's `write`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    guard(&"write", |task| match mode(task, fd, Dir::Write) {
        // SAFETY: the caller's arguments, passed on unchanged.
        Mode::PassThrough => unsafe { real::write(fd, buf, count) },
        Mode::Blocking(entry, task) => {
            let socket = entry.kind() == KIND_SOCKET;
            blocking_all(fd, entry, &task, Dir::Write, count, |done, max| {
                // SAFETY: `done < count`, so the pointer stays in the caller's buffer.
                let at = unsafe { buf.cast::<u8>().add(done) }.cast();
                let len = (count - done).min(max);
                if socket {
                    // `write` on a socket is `send` without flags (SIGPIPE included).
                    direct::sendto(fd, at, len, 0, std::ptr::null(), 0)
                } else {
                    // SAFETY: the caller's buffer, from `done`.
                    unsafe { real::write(fd, at, len) }
                }
            })
        }
    })
}

/// Interposed `writev(2)`.
///
/// # Safety
/// As for libc's `writev`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    guard(&"writev", |task| match mode(task, fd, Dir::Write) {
        Mode::Blocking(entry, task) => {
            // SAFETY: libc requires `iov` to point at `iovcnt` iovecs.
            let Some(slice) = (unsafe { iov_slice(iov, iovcnt) }) else {
                // SAFETY: the caller's arguments; libc reports the bad count.
                return unsafe { real::writev(fd, iov, iovcnt) };
            };
            // Not split into PIPE_BUF pieces: a large writev to a full pipe may block the worker.
            blocking_all(fd, entry, &task, Dir::Write, total_len(slice), |done, _| {
                if done == 0 {
                    // SAFETY: the caller's arguments.
                    return unsafe { real::writev(fd, iov, iovcnt) };
                }
                let rest = advance(slice, done);
                // SAFETY: `rest` points into the caller's buffers.
                unsafe { real::writev(fd, rest.as_ptr(), rest.len() as c_int) }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        Mode::PassThrough => unsafe { real::writev(fd, iov, iovcnt) },
    })
}

/// Interposed `send(2)`.
///
/// # Safety
/// As for libc's `send`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    guard(&"send", |task| match mode(task, fd, Dir::Write) {
        Mode::Blocking(entry, task) if flags & libc::MSG_DONTWAIT == 0 => {
            blocking_all(fd, entry, &task, Dir::Write, len, |done, max| {
                // SAFETY: `done < len`, so the pointer stays in the caller's buffer.
                let at = unsafe { buf.cast::<u8>().add(done) }.cast();
                direct::sendto(fd, at, (len - done).min(max), flags, std::ptr::null(), 0)
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::send(fd, buf, len, flags) },
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
    guard(&"sendto", |task| match mode(task, fd, Dir::Write) {
        Mode::Blocking(entry, task) if flags & libc::MSG_DONTWAIT == 0 => {
            blocking_all(fd, entry, &task, Dir::Write, len, |done, max| {
                // SAFETY: `done < len`, so the pointer stays in the caller's buffer.
                unsafe {
                    real::sendto(
                        fd,
                        buf.cast::<u8>().add(done).cast(),
                        (len - done).min(max),
                        flags,
                        addr,
                        addrlen,
                    )
                }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::sendto(fd, buf, len, flags, addr, addrlen) },
    })
}

/// Interposed `sendmsg(2)`.
///
/// # Safety
/// As for libc's `sendmsg`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    guard(&"sendmsg", |task| match mode(task, fd, Dir::Write) {
        Mode::Blocking(entry, task) if flags & libc::MSG_DONTWAIT == 0 && !msg.is_null() => {
            // SAFETY: libc requires `msg` to be a valid msghdr.
            let header = unsafe { *msg };
            // SAFETY: libc requires msg_iov to point at msg_iovlen iovecs.
            let Some(slice) = (unsafe { iov_slice(header.msg_iov, header.msg_iovlen as c_int) })
            else {
                // SAFETY: the caller's arguments; libc reports the problem.
                return unsafe { real::sendmsg(fd, msg, flags) };
            };
            blocking_all(fd, entry, &task, Dir::Write, total_len(slice), |done, _| {
                if done == 0 {
                    // SAFETY: the caller's arguments.
                    return unsafe { real::sendmsg(fd, msg, flags) };
                }
                // Ancillary data went out with the first bytes; the rest is plain data.
                let mut rest = advance(slice, done);
                let mut later = header;
                later.msg_iov = rest.as_mut_ptr();
                later.msg_iovlen = rest.len() as _;
                later.msg_control = std::ptr::null_mut();
                later.msg_controllen = 0;
                // SAFETY: `later` points into the caller's buffers.
                unsafe { real::sendmsg(fd, &later, flags) }
            })
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::sendmsg(fd, msg, flags) },
    })
}
