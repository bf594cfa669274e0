//! socket, socketpair, accept, accept4, connect, shutdown, setsockopt.
//!
//! `getsockopt` is not interposed: the runtime passes every `setsockopt` on to the kernel, so
//! the kernel's answers are already the true ones.

use libc::{c_int, c_void, sockaddr, socklen_t};

use super::transfer::{socket_io, Whole};
use super::{deadline_for, direct, errno, guard, mode, set_errno, wait, Mode};
use crate::fd::{self, Dir, Wait, KIND_SOCKET, KIND_UNKNOWN};
use crate::real;
use crate::runtime::current::{self, CurrentTask};
use crate::runtime::{self, timer};

/// Interposed `socket(2)`. A socket created inside a coroutine is managed from the start
/// (created non-blocking in the kernel); any other new socket number forgets what the table
/// knew about that number.
///
/// # Safety
/// As for libc's `socket`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    guard(&"socket", |task| {
        let in_coroutine = task.is_some();
        let extra = if in_coroutine { libc::SOCK_NONBLOCK } else { 0 };
        // SAFETY: the caller's arguments, plus SOCK_NONBLOCK for a managed socket.
        let fd = unsafe { real::socket(domain, ty | extra, protocol) };
        if let Some(entry) = fd::table().get(fd) {
            if in_coroutine {
                entry.init_socket(fd, ty & libc::SOCK_NONBLOCK != 0, 0, 0);
            } else {
                entry.reset(fd);
            }
        }
        fd
    })
}

/// Interposed `socketpair(2)`: new fd numbers forget what the table knew about them.
///
/// # Safety
/// As for libc's `socketpair`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn socketpair(
    domain: c_int,
    ty: c_int,
    protocol: c_int,
    sv: *mut c_int,
) -> c_int {
    guard(&"socketpair", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::socketpair(domain, ty, protocol, sv) };
        if rc == 0 {
            for i in 0..2 {
                // SAFETY: on success libc wrote two fds to `sv`.
                let fd = unsafe { *sv.add(i) };
                if let Some(entry) = fd::table().get(fd) {
                    entry.reset(fd);
                }
            }
        }
        rc
    })
}

fn accept_common(
    task: Option<CurrentTask>,
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
    flags: c_int,
    plain_accept: bool,
) -> c_int {
    let plain = || {
        // SAFETY: the caller's arguments, passed on unchanged.
        let new = unsafe {
            if plain_accept {
                real::accept(fd, addr, addrlen)
            } else {
                real::accept4(fd, addr, addrlen, flags)
            }
        };
        if let Some(entry) = fd::table().get(new) {
            entry.reset(new);
        }
        new
    };
    let Mode::Socket(listener, task) = mode(task, fd, Dir::Read) else {
        return plain();
    };
    // The new socket is created non-blocking: the runtime manages it.
    let attempt = |_| direct::accept4(fd, addr, addrlen, flags | libc::SOCK_NONBLOCK) as isize;
    let Ok(new) = socket_io(fd, listener, &task, Dir::Read, Whole::First, attempt) else {
        return plain();
    };
    let new = new as c_int;
    if let Some(entry) = fd::table().get(new) {
        // Accepted sockets inherit the listener's timeouts (Linux copies them).
        entry.init_socket(
            new,
            flags & libc::SOCK_NONBLOCK != 0,
            listener.timeout_ns(Dir::Read),
            listener.timeout_ns(Dir::Write),
        );
    }
    new
}

/// Interposed `accept(2)`.
///
/// # Safety
/// As for libc's `accept`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int {
    guard(&"accept", |task| {
        accept_common(task, fd, addr, addrlen, 0, true)
    })
}

/// Interposed `accept4(2)`.
///
/// # Safety
/// As for libc's `accept4`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
    flags: c_int,
) -> c_int {
    guard(&"accept4", |task| {
        accept_common(task, fd, addr, addrlen, flags, false)
    })
}

/// Interposed `connect(2)`. For a blocking socket, waits (suspending the coroutine) until the
/// connection is made or fails; the send timeout bounds the wait (`EINPROGRESS`, as Linux, or
/// `EALREADY` when a connect was already under way). Once the socket is writable, `connect` is called again: the kernel then answers as a
/// blocking `connect` would have (0, or why it failed) and moves the socket on to connected or
/// unconnected, so a later `connect` says `EISCONN`, or tries again, as it would after libc's.
///
/// # Safety
/// As for libc's `connect`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, addrlen: socklen_t) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::connect(fd, addr, addrlen) };
    guard(&"connect", |task| {
        let Mode::Socket(entry, task) = mode(task, fd, Dir::Write) else {
            return plain();
        };
        let generation = entry.generation();
        let deadline = deadline_for(entry, Dir::Write);
        loop {
            let mut seen = entry.ready_seq(Dir::Write);
            if plain() == 0 {
                return 0;
            }
            // What a blocking connect says when the send timeout ends the wait: EINPROGRESS
            // for the connect that started it, EALREADY for one made while it was under way.
            let timed_out = errno();
            match timed_out {
                libc::EINPROGRESS | libc::EALREADY => {}
                libc::EAGAIN => {
                    // A Unix socket whose listener's backlog is full: a blocking connect waits.
                    if deadline != 0 && timer::now_ns() >= deadline {
                        set_errno(libc::EAGAIN);
                        return -1;
                    }
                    pause_briefly(&task);
                    continue;
                }
                libc::ENOTSOCK => {
                    entry.reset(fd);
                    return plain();
                }
                _ => return -1,
            }
            loop {
                match wait(fd, entry, Dir::Write, seen, generation, deadline, &task) {
                    Wait::Ready => {}
                    Wait::TimedOut => {
                        set_errno(timed_out);
                        return -1;
                    }
                    Wait::Closed => {
                        set_errno(libc::EBADF);
                        return -1;
                    }
                    // The connection goes on being made; a later connect says EALREADY.
                    Wait::Interrupted => {
                        set_errno(libc::EINTR);
                        return -1;
                    }
                }
                seen = entry.ready_seq(Dir::Write);
                if plain() == 0 {
                    return 0;
                }
                match errno() {
                    libc::EALREADY | libc::EINPROGRESS => continue, // woken early: still connecting
                    libc::EISCONN => return 0,
                    _ => return -1,
                }
            }
        }
    })
}

/// Sleeps a millisecond (suspending the coroutine), for the rare retry loops.
fn pause_briefly(task: &Option<current::CurrentTask>) {
    match task {
        // An interrupted pause ends early, like any other: the caller tries again.
        Some(current) => {
            let _ = runtime::sleep_until(current, timer::now_ns() + 1_000_000);
        }
        None => std::thread::sleep(std::time::Duration::from_millis(1)),
    }
}

/// Interposed `shutdown(2)`: coroutines waiting on the socket wake to see its effect.
///
/// # Safety
/// As for libc's `shutdown`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn shutdown(fd: c_int, how: c_int) -> c_int {
    guard(&"shutdown", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::shutdown(fd, how) };
        if rc == 0 {
            if let Some(entry) = fd::table().peek(fd).filter(|e| e.kind() == KIND_SOCKET) {
                entry.poke();
            }
        }
        rc
    })
}

/// `SO_RCVTIMEO_NEW` and `SO_SNDTIMEO_NEW` on x86_64 (a `__kernel_sock_timeval`: the same two
/// 64-bit fields as the old options' `timeval` here).
const SO_RCVTIMEO_NEW: c_int = 66;
const SO_SNDTIMEO_NEW: c_int = 67;

/// Interposed `setsockopt(2)`: records the receive and send timeouts of managed sockets, old
/// and new options alike (the runtime applies them itself, since the kernel does not for a
/// non-blocking socket), read as the kernel reads them.
///
/// # Safety
/// As for libc's `setsockopt`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: socklen_t,
) -> c_int {
    guard(&"setsockopt", |_| {
        // SAFETY: the caller's arguments, passed on unchanged.
        let rc = unsafe { real::setsockopt(fd, level, name, value, len) };
        let dir = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVTIMEO | SO_RCVTIMEO_NEW) => Dir::Read,
            (libc::SOL_SOCKET, libc::SO_SNDTIMEO | SO_SNDTIMEO_NEW) => Dir::Write,
            _ => return rc,
        };
        if rc == 0 && len as usize >= 16 {
            // SAFETY: the kernel just read these 16 bytes (a fault-safe read all the same).
            let tv = unsafe { corun::user_memory::read::<[i64; 2]>(value as usize) };
            let ns = tv.and_then(|[sec, usec]| fd::sock_timeout_ns(sec, usec));
            match (fd::table().get(fd), ns) {
                (Some(entry), Some(ns)) if entry.kind() == KIND_SOCKET => {
                    entry.set_timeout_ns(dir, ns)
                }
                (Some(entry), Some(ns)) if entry.kind() == KIND_UNKNOWN => {
                    entry.note_timeout_ns(dir, ns)
                }
                _ => {}
            }
        }
        rc
    })
}
