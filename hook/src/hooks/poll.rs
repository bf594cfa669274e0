//! poll, ppoll, select, pselect, epoll_wait, epoll_pwait: inside a coroutine they wait for
//! readiness (and the timeout) by suspending; outside one they are libc's.
//!
//! All of them come down to [`poll_coroutine`]: look with the real `poll` without waiting; if
//! nothing is ready, register the coroutine with every fd's waiters in this worker's reactor
//! (and a timer), park, and look again. The first look is always the kernel's own call with the
//! caller's arguments and a zero timeout, so a bad argument gets the kernel's answer (in the
//! kernel's order) before anything of the caller's is read; timeouts are read fault-safely. `select` and `pselect` are translated to a pollfd list
//! and back; `epoll_wait` waits for its epoll fd to become readable, then asks the real
//! `epoll_wait` without waiting. A signal interrupts the wait with `EINTR` (see
//! [`crate::signal`]); signal masks (`ppoll`, `pselect`, `epoll_pwait`) are not applied while
//! a coroutine is suspended: the mask is the worker thread's, shared by its coroutines.

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
/// 0: none) passes. Returns what the real `poll` returns (a count, 0 on timeout, -1 on error,
/// `EINTR` when a signal interrupted the wait).
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
        let mut woke = runtime::Woke::Up;
        if park {
            if deadline != 0 {
                current.worker().add_timer(deadline, current.arc(), token);
            }
            woke = runtime::park(current, info);
        }
        for (entry, dir) in registered {
            entry.forget_waiter(dir, current.task());
        }
        if woke == runtime::Woke::Interrupted {
            set_errno(libc::EINTR);
            return -1;
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

/// The deadline a caller's timespec sets (read fault-safely, checked as the kernel does):
/// `Ok(None)` for a zero timeout (nothing to wait for: the plain call answers at once),
/// `Ok(Some(0))` for none (wait without end), `Ok(Some(deadline))` otherwise; `Err(EFAULT)` if
/// it cannot be read, `Err(EINVAL)` if it is invalid.
fn deadline_ts(timeout: *const timespec) -> Result<Option<u64>, c_int> {
    if timeout.is_null() {
        return Ok(Some(0));
    }
    // SAFETY: a fault-safe read of a plain C struct.
    let ts =
        unsafe { corun::user_memory::read::<timespec>(timeout as usize) }.ok_or(libc::EFAULT)?;
    let ns = timer::timespec_ns(&ts).ok_or(libc::EINVAL)?;
    if ns == 0 {
        return Ok(None);
    }
    Ok(Some(timer::now_ns().saturating_add(ns).max(1)))
}

/// Interposed `poll(2)`.
///
/// # Safety
/// As for libc's `poll`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = |timeout| unsafe { real::poll(fds, nfds, timeout) };
    guard(&"poll", |task| match task {
        Some(current) if timeout != 0 => {
            // Without waiting first: the kernel checks the arguments and says what is ready.
            let now = plain(0);
            if now != 0 {
                return now;
            }
            // SAFETY: the kernel just read `nfds` pollfds there.
            let list = unsafe { pollfds(fds, nfds) };
            let deadline = deadline_ms(timeout);
            let info = WaitInfo::Poll {
                nfds: nfds as usize,
                deadline,
            };
            poll_coroutine(&current, list, deadline, info)
        }
        _ => plain(timeout),
    })
}

/// The caller's pollfds, which the kernel has just read.
///
/// # Safety
/// `fds` must point at `nfds` pollfds (or `nfds` be 0).
unsafe fn pollfds<'a>(fds: *mut pollfd, nfds: nfds_t) -> &'a mut [pollfd] {
    if nfds == 0 {
        return &mut [];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) }
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
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::ppoll(fds, nfds, timeout, sigmask) };
    guard(&"ppoll", |task| {
        let Some(current) = task else { return plain() };
        let deadline = match deadline_ts(timeout) {
            Ok(None) => return plain(),
            Ok(Some(deadline)) => deadline,
            Err(err) => {
                set_errno(err);
                return -1;
            }
        };
        let zero = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: the caller's arrays and mask, a zero timeout: the kernel checks them.
        let now = unsafe { real::ppoll(fds, nfds, &zero, sigmask) };
        if now != 0 {
            return now;
        }
        // SAFETY: the kernel just read `nfds` pollfds there.
        let list = unsafe { pollfds(fds, nfds) };
        let info = WaitInfo::Poll {
            nfds: nfds as usize,
            deadline,
        };
        poll_coroutine(&current, list, deadline, info)
    })
}

/// The caller's three fd sets, copied (fault-safe), or `EFAULT`.
struct Sets {
    ptrs: [*mut fd_set; 3],
    copies: [fd_set; 3],
}

impl Sets {
    fn read(ptrs: [*mut fd_set; 3]) -> Result<Sets, c_int> {
        // SAFETY: an all-zero fd_set is the empty set.
        let mut copies: [fd_set; 3] = unsafe { std::mem::zeroed() };
        for (copy, &ptr) in copies.iter_mut().zip(&ptrs) {
            if !ptr.is_null() {
                // SAFETY: a fault-safe read of a plain C struct.
                *copy = unsafe { corun::user_memory::read::<fd_set>(ptr as usize) }
                    .ok_or(libc::EFAULT)?;
            }
        }
        Ok(Sets { ptrs, copies })
    }

    /// Pointers to fresh copies (null where the caller passed null), for the kernel to fill in.
    fn scratch(&self, into: &mut [fd_set; 3]) -> [*mut fd_set; 3] {
        *into = self.copies;
        let mut out = [std::ptr::null_mut(); 3];
        for i in 0..3 {
            if !self.ptrs[i].is_null() {
                out[i] = &mut into[i];
            }
        }
        out
    }

    /// Writes `result` into the caller's sets; `EFAULT` if one is not writable.
    fn write_back(&self, result: &[fd_set; 3]) -> Result<(), c_int> {
        for (ptr, set) in self.ptrs.iter().zip(result) {
            // SAFETY: the caller's out-parameter; a fault-safe write.
            if !ptr.is_null() && !unsafe { corun::user_memory::write(*ptr as usize, set) } {
                return Err(libc::EFAULT);
            }
        }
        Ok(())
    }

    /// The fds in the sets, as pollfds to wait on.
    fn pollfds(&self, nfds: c_int) -> Vec<pollfd> {
        let has = |i: usize, fd: c_int| {
            // SAFETY: our own copies; fd < nfds <= FD_SETSIZE.
            !self.ptrs[i].is_null() && unsafe { libc::FD_ISSET(fd, &self.copies[i]) }
        };
        (0..nfds)
            .filter_map(|fd| {
                let events = [libc::POLLIN, libc::POLLOUT, libc::POLLPRI]
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| has(*i, fd))
                    .fold(0, |events, (_, e)| events | e);
                (events != 0).then_some(pollfd {
                    fd,
                    events,
                    revents: 0,
                })
            })
            .collect()
    }
}

/// `select`/`pselect` for a coroutine: the kernel's own call with a zero timeout (on copies of
/// the sets) answers whenever something is ready, or is wrong; in between, the coroutine waits
/// on the same fds. `now(sets)` makes that call.
fn select_coroutine(
    current: &CurrentTask,
    nfds: c_int,
    sets: Sets,
    deadline: u64,
    mut now: impl FnMut([*mut fd_set; 3]) -> c_int,
) -> c_int {
    loop {
        // SAFETY: an all-zero fd_set is the empty set.
        let mut result: [fd_set; 3] = unsafe { std::mem::zeroed() };
        let n = now(sets.scratch(&mut result));
        let timed_out = deadline != 0 && timer::now_ns() >= deadline;
        if n != 0 || timed_out {
            if n >= 0 {
                if let Err(err) = sets.write_back(&result) {
                    set_errno(err);
                    return -1;
                }
            }
            return n;
        }
        // Wait for any of them. An fd the kernel's select ignored (beyond its fd table, so
        // `poll` calls it invalid) is left out: it can never become ready.
        let mut list = sets.pollfds(nfds);
        // SAFETY: a valid slice of pollfds, without waiting.
        unsafe { real::poll(list.as_mut_ptr(), list.len() as nfds_t, 0) };
        list.retain(|p| p.revents & libc::POLLNVAL == 0);
        let count = list.len();
        let info = WaitInfo::Poll {
            nfds: count,
            deadline,
        };
        if poll_coroutine(current, &mut list, deadline, info) < 0 {
            return -1;
        }
    }
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
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::select(nfds, readfds, writefds, exceptfds, timeout) };
    guard(&"select", |task| {
        let Some(current) = task else { return plain() };
        // The kernel's order: the timeout (EFAULT, EINVAL), the count, then the sets.
        let deadline = if timeout.is_null() {
            0
        } else {
            // SAFETY: a fault-safe read of a plain C struct.
            let Some(tv) = (unsafe { corun::user_memory::read::<timeval>(timeout as usize) })
            else {
                set_errno(libc::EFAULT);
                return -1;
            };
            // Normalised as the kernel does (2,000,000 µs is 2 s); invalid only if negative.
            let sec = tv.tv_sec.saturating_add(tv.tv_usec / 1_000_000);
            let nsec = (tv.tv_usec % 1_000_000) * 1000;
            if sec < 0 || nsec < 0 {
                set_errno(libc::EINVAL);
                return -1;
            }
            if sec == 0 && nsec == 0 {
                return plain();
            }
            timer::now_ns()
                .saturating_add((sec as u64).saturating_mul(1_000_000_000))
                .saturating_add(nsec as u64)
        };
        if !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
            return plain(); // the kernel says EINVAL (or copes), at once
        }
        let sets = match Sets::read([readfds, writefds, exceptfds]) {
            Ok(sets) => sets,
            Err(err) => {
                set_errno(err);
                return -1;
            }
        };
        let n = select_coroutine(&current, nfds, sets, deadline, |[r, w, e]| {
            let mut zero = timeval {
                tv_sec: 0,
                tv_usec: 0,
            };
            // SAFETY: our copies of the sets and a zero timeout.
            unsafe { real::select(nfds, r, w, e, &mut zero) }
        });
        if !timeout.is_null() {
            let left = deadline.saturating_sub(timer::now_ns());
            let tv = timeval {
                tv_sec: (left / 1_000_000_000) as libc::time_t,
                tv_usec: ((left % 1_000_000_000) / 1000) as libc::suseconds_t,
            };
            // SAFETY: the caller's timeout, which Linux updates; a fault-safe write.
            unsafe { corun::user_memory::write(timeout as usize, &tv) };
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
    // SAFETY: the caller's arguments, passed on unchanged.
    let plain = || unsafe { real::pselect(nfds, readfds, writefds, exceptfds, timeout, sigmask) };
    guard(&"pselect", |task| {
        let Some(current) = task else { return plain() };
        let deadline = match deadline_ts(timeout) {
            Ok(None) => return plain(),
            Ok(Some(deadline)) => deadline,
            Err(err) => {
                set_errno(err);
                return -1;
            }
        };
        if !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
            return plain();
        }
        let sets = match Sets::read([readfds, writefds, exceptfds]) {
            Ok(sets) => sets,
            Err(err) => {
                set_errno(err);
                return -1;
            }
        };
        select_coroutine(&current, nfds, sets, deadline, |[r, w, e]| {
            let zero = timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: our copies of the sets, a zero timeout, the caller's mask.
            unsafe { real::pselect(nfds, r, w, e, &zero, sigmask) }
        })
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
