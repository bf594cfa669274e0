//! poll, ppoll, select, pselect, epoll_wait, epoll_pwait: inside a coroutine they wait for
//! readiness (and the timeout) by suspending; outside one they are libc's.
//!
//! All of them come down to [`poll_coroutine`]: look with the real `poll` without waiting; if
//! nothing is ready, register the coroutine with every fd's waiters in this worker's reactor
//! (and a timer), park, and look again. `select` and `pselect` are translated to a pollfd list
//! and back; `epoll_wait` waits for its epoll fd to become readable, then asks the real
//! `epoll_wait` without waiting. Signal masks (`ppoll`, `pselect`, `epoll_pwait`) are not
//! applied while a coroutine is suspended (signals go to the worker threads anyway).

use libc::{c_int, fd_set, nfds_t, pollfd, sigset_t, timespec, timeval};

use super::{guard, set_errno};
use crate::fd::{self, Dir, FdEntry, KIND_UNKNOWN};
use crate::real;
use crate::runtime::current::CurrentTask;
use crate::runtime::task::WaitInfo;
use crate::runtime::{self, timer};

/// One fd being waited on: its entry, the directions, and what was seen before the check.
struct Watch {
    fd: c_int,
    entry: &'static FdEntry,
    generation: u32,
    read: Option<u64>,
    write: Option<u64>,
}

/// `poll` for a coroutine: waits until an fd in `fds` is ready or `deadline` (monotonic ns;
/// 0: none) passes. Returns what the real `poll` returns (a count, 0 on timeout, -1 on error).
pub fn poll_coroutine(
    current: &CurrentTask,
    fds: &mut [pollfd],
    deadline: u64,
    info: WaitInfo,
) -> c_int {
    loop {
        // Note each fd's readiness before looking, so nothing slips in between.
        let mut watches = Vec::with_capacity(fds.len());
        for p in fds.iter().filter(|p| p.fd >= 0) {
            let Some(entry) = fd::table().get(p.fd) else {
                continue;
            };
            if entry.kind() == KIND_UNKNOWN && entry.discover(p.fd).is_err() {
                continue; // not open: poll reports POLLNVAL
            }
            let wants_read = p.events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) != 0;
            let wants_write = p.events & libc::POLLOUT != 0;
            watches.push(Watch {
                fd: p.fd,
                entry,
                generation: entry.generation(),
                read: wants_read.then(|| entry.ready_seq(Dir::Read)),
                write: wants_write.then(|| entry.ready_seq(Dir::Write)),
            });
        }
        // SAFETY: a valid slice of pollfds, without waiting.
        let n = unsafe { real::poll(fds.as_mut_ptr(), fds.len() as nfds_t, 0) };
        if n != 0 {
            return n;
        }
        if deadline != 0 && timer::now_ns() >= deadline {
            return 0;
        }
        let token = current.task().begin_wait();
        let mut park = true;
        let mut registered: Vec<(&FdEntry, Dir)> = Vec::new();
        'register: for w in &watches {
            for (dir, seen) in [(Dir::Read, w.read), (Dir::Write, w.write)] {
                let Some(seen) = seen else { continue };
                match w
                    .entry
                    .add_waiter(w.fd, dir, seen, w.generation, current, token)
                {
                    Ok(true) => registered.push((w.entry, dir)),
                    // Changed (or closed) meanwhile: look again instead of waiting.
                    Ok(false) => {
                        park = false;
                        break 'register;
                    }
                    // Not watchable by epoll (a regular file): poll would have reported it
                    // ready, so there is nothing to wait for on it.
                    Err(_) => {}
                }
            }
        }
        if park {
            if deadline != 0 {
                current.worker().add_timer(deadline, current.arc(), token);
            }
            runtime::park(current, info);
        }
        for (entry, dir) in registered {
            entry.forget_waiter(dir, current.task());
        }
    }
}

/// A poll-style timeout in ms as a deadline (-1: none; 0 is handled by the callers).
fn deadline_ms(timeout: c_int) -> u64 {
    if timeout < 0 {
        0
    } else {
        timer::now_ns().saturating_add(timeout as u64 * 1_000_000)
    }
}

/// A timespec timeout as a deadline; `Err` for an invalid one.
fn deadline_ts(timeout: *const timespec) -> Result<u64, ()> {
    if timeout.is_null() {
        return Ok(0);
    }
    // SAFETY: non-null; libc would read a timespec from it.
    let ns = timer::timespec_ns(unsafe { &*timeout }).ok_or(())?;
    Ok(timer::now_ns().saturating_add(ns).max(1))
}

/// The pollfds of a call, if the arguments are sane (otherwise libc reports the error).
///
/// # Safety
/// For sane arguments `fds` must point at `nfds` pollfds (as libc requires).
unsafe fn pollfds<'a>(fds: *mut pollfd, nfds: nfds_t) -> Option<&'a mut [pollfd]> {
    if nfds == 0 {
        return Some(&mut []);
    }
    if fds.is_null() || nfds > 1 << 20 {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) })
}

/// Interposed `poll(2)`.
///
/// # Safety
/// As for libc's `poll`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    guard(&"poll", |task| {
        // SAFETY: libc requires `fds` to point at `nfds` pollfds.
        match (task, unsafe { pollfds(fds, nfds) }) {
            (Some(current), Some(list)) if timeout != 0 => poll_coroutine(
                &current,
                list,
                deadline_ms(timeout),
                WaitInfo::Poll {
                    nfds: nfds as usize,
                    deadline: deadline_ms(timeout),
                },
            ),
            // SAFETY: the caller's arguments, passed on unchanged.
            _ => unsafe { real::poll(fds, nfds, timeout) },
        }
    })
}

/// Interposed `ppoll(2)`.
///
/// # Safety
/// As for libc's `ppoll`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    nfds: nfds_t,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    guard(&"ppoll", |task| {
        let zero = !timeout.is_null() && {
            // SAFETY: non-null; libc would read it.
            let ts = unsafe { &*timeout };
            ts.tv_sec == 0 && ts.tv_nsec == 0
        };
        // SAFETY: libc requires `fds` to point at `nfds` pollfds.
        match (task, unsafe { pollfds(fds, nfds) }, deadline_ts(timeout)) {
            (Some(current), Some(list), Ok(deadline)) if !zero => poll_coroutine(
                &current,
                list,
                deadline,
                WaitInfo::Poll {
                    nfds: nfds as usize,
                    deadline,
                },
            ),
            // SAFETY: the caller's arguments, passed on unchanged (libc reports bad ones).
            _ => unsafe { real::ppoll(fds, nfds, timeout, sigmask) },
        }
    })
}

/// `select` for a coroutine, with the sets translated to pollfds and back. Returns the count
/// of set bits, 0 on timeout, or -1 with errno.
///
/// # Safety
/// Non-null sets must be valid `fd_set`s.
unsafe fn select_coroutine(
    current: &CurrentTask,
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    deadline: u64,
) -> c_int {
    let is_set = |set: *mut fd_set, fd: c_int| {
        // SAFETY: non-null sets are valid (caller); fd < nfds <= FD_SETSIZE.
        !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
    };
    let mut list = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if is_set(readfds, fd) {
            events |= libc::POLLIN;
        }
        if is_set(writefds, fd) {
            events |= libc::POLLOUT;
        }
        if is_set(exceptfds, fd) {
            events |= libc::POLLPRI;
        }
        if events != 0 {
            list.push(pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }
    let nfds = list.len();
    let n = poll_coroutine(
        current,
        &mut list,
        deadline,
        WaitInfo::Poll { nfds, deadline },
    );
    if n < 0 {
        return n;
    }
    if list.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        set_errno(libc::EBADF);
        return -1;
    }
    for set in [readfds, writefds, exceptfds] {
        if !set.is_null() {
            // SAFETY: a valid fd_set (caller).
            unsafe { libc::FD_ZERO(set) };
        }
    }
    let mut count = 0;
    for p in &list {
        let marks = [
            (
                readfds,
                p.events & libc::POLLIN != 0
                    && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
            ),
            (
                writefds,
                p.events & libc::POLLOUT != 0 && p.revents & (libc::POLLOUT | libc::POLLERR) != 0,
            ),
            (
                exceptfds,
                p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0,
            ),
        ];
        for (set, on) in marks {
            if on {
                // SAFETY: a valid fd_set (caller); p.fd < nfds <= FD_SETSIZE.
                unsafe { libc::FD_SET(p.fd, set) };
                count += 1;
            }
        }
    }
    count
}

/// Interposed `select(2)`. Like Linux, it updates `timeout` with the time not slept.
///
/// # Safety
/// As for libc's `select`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn select(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *mut timeval,
) -> c_int {
    guard(&"select", |task| {
        let current = match task {
            Some(current) if (0..=libc::FD_SETSIZE as c_int).contains(&nfds) => current,
            // SAFETY: the caller's arguments, passed on unchanged.
            _ => return unsafe { real::select(nfds, readfds, writefds, exceptfds, timeout) },
        };
        let deadline = if timeout.is_null() {
            0
        } else {
            // SAFETY: non-null; libc reads and updates it.
            let tv = unsafe { &*timeout };
            if tv.tv_sec < 0
                || !(0..1_000_000).contains(&tv.tv_usec)
                || (tv.tv_sec == 0 && tv.tv_usec == 0)
            {
                // SAFETY: as above: a bad or zero timeout is libc's business.
                return unsafe { real::select(nfds, readfds, writefds, exceptfds, timeout) };
            }
            timer::now_ns()
                .saturating_add((tv.tv_sec as u64).saturating_mul(1_000_000_000))
                .saturating_add(tv.tv_usec as u64 * 1000)
        };
        // SAFETY: the sets are valid as libc requires.
        let n = unsafe { select_coroutine(&current, nfds, readfds, writefds, exceptfds, deadline) };
        if !timeout.is_null() {
            let left = deadline.saturating_sub(timer::now_ns());
            // SAFETY: non-null, writable as libc requires.
            unsafe {
                (*timeout).tv_sec = (left / 1_000_000_000) as libc::time_t;
                (*timeout).tv_usec = ((left % 1_000_000_000) / 1000) as libc::suseconds_t;
            }
        }
        n
    })
}

/// Interposed `pselect(2)`.
///
/// # Safety
/// As for libc's `pselect`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pselect(
    nfds: c_int,
    readfds: *mut fd_set,
    writefds: *mut fd_set,
    exceptfds: *mut fd_set,
    timeout: *const timespec,
    sigmask: *const sigset_t,
) -> c_int {
    guard(&"pselect", |task| {
        let zero = !timeout.is_null() && {
            // SAFETY: non-null; libc would read it.
            let ts = unsafe { &*timeout };
            ts.tv_sec == 0 && ts.tv_nsec == 0
        };
        match (task, deadline_ts(timeout)) {
            (Some(current), Ok(deadline))
                if !zero && (0..=libc::FD_SETSIZE as c_int).contains(&nfds) =>
            {
                // SAFETY: the sets are valid as libc requires.
                unsafe { select_coroutine(&current, nfds, readfds, writefds, exceptfds, deadline) }
            }
            // SAFETY: the caller's arguments, passed on unchanged.
            _ => unsafe { real::pselect(nfds, readfds, writefds, exceptfds, timeout, sigmask) },
        }
    })
}

/// `epoll_wait` for a coroutine: waits until `epfd` is readable (it has events) or the
/// deadline passes, then collects events without waiting.
fn epoll_wait_coroutine(
    current: &CurrentTask,
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    deadline: u64,
) -> c_int {
    loop {
        // SAFETY: the caller's buffer, without waiting.
        let n = unsafe { real::epoll_wait(epfd, events, maxevents, 0) };
        if n != 0 {
            return n;
        }
        let mut watch = [pollfd {
            fd: epfd,
            events: libc::POLLIN,
            revents: 0,
        }];
        match poll_coroutine(
            current,
            &mut watch,
            deadline,
            WaitInfo::Poll { nfds: 1, deadline },
        ) {
            0 => return 0,
            n if n < 0 => return n,
            _ => {}
        }
        if watch[0].revents & libc::POLLNVAL != 0 {
            set_errno(libc::EBADF);
            return -1;
        }
    }
}

/// Interposed `epoll_wait(2)`.
///
/// # Safety
/// As for libc's `epoll_wait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout: c_int,
) -> c_int {
    guard(&"epoll_wait", |task| match task {
        Some(current) if timeout != 0 && maxevents > 0 => {
            epoll_wait_coroutine(&current, epfd, events, maxevents, deadline_ms(timeout))
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::epoll_wait(epfd, events, maxevents, timeout) },
    })
}

/// Interposed `epoll_pwait(2)`.
///
/// # Safety
/// As for libc's `epoll_pwait`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout: c_int,
    sigmask: *const sigset_t,
) -> c_int {
    guard(&"epoll_pwait", |task| match task {
        Some(current) if timeout != 0 && maxevents > 0 => {
            epoll_wait_coroutine(&current, epfd, events, maxevents, deadline_ms(timeout))
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        _ => unsafe { real::epoll_pwait(epfd, events, maxevents, timeout, sigmask) },
    })
}
