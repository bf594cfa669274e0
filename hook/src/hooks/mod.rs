//! The interposed libc functions.
//!
//! Every hook follows the same shape: outside a coroutine (or for an fd the runtime does not
//! manage) it calls the real libc function with the same arguments; inside a coroutine, where
//! libc would block, it suspends the coroutine instead. Each body runs under [`guard`], so a
//! bug in a hook aborts with a message naming the hook instead of unwinding into C.
//!
//! In unit-test builds of this crate the symbols are not exported (`cfg_attr(not(test),
//! no_mangle)`), so the test harness itself is not interposed.

pub mod direct;
pub mod dns;
pub mod fdops;
pub mod io;
pub mod poll;
pub mod process;
pub mod pthread;
pub mod signal;
pub mod sleep;
pub mod socket;
pub mod syscall;
pub mod transfer;

use std::panic::{self, AssertUnwindSafe};

use libc::c_int;

use crate::fd::{self, Dir, FdEntry, Wait, KIND_POLLABLE, KIND_SOCKET, KIND_UNKNOWN};
use crate::real;
use crate::runtime::current::{self, CurrentTask};
use crate::runtime::timer;
use crate::signal::interrupt;

/// Runs the body of one of the runtime's own C-ABI functions (spawn, join …): like [`guard`],
/// a panic aborts with a message naming it, but nothing is recorded about the caller (these
/// are not libc calls a coroutine could be stuck in).
#[inline(always)]
pub fn guard_abi<R>(name: &str, body: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => abort_after_panic(name, payload.as_ref()),
    }
}

/// Ends the process after a panic inside corun's own code called from C.
#[cold]
fn abort_after_panic(name: &str, payload: &(dyn std::any::Any + Send)) -> ! {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic");
    crate::log::fatal(format_args!("internal error in `{name}`: {what}"))
}

/// Runs a hook's body; a panic inside aborts the process with a message naming the hook.
/// The body gets the coroutine running on this thread, if any (one thread-local lookup per
/// hook). Inside a coroutine it also records which hook the coroutine is in, for the
/// stuck-worker warning (a coroutine that runs for long inside a hook is in libc's blocking
/// call).
#[inline(always)]
pub fn guard<R>(name: &'static &'static str, body: impl FnOnce(Option<CurrentTask>) -> R) -> R {
    let current = current::task();
    if let Some(current) = &current {
        current.task().set_in_call(Some(name));
    }
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| body(current)));
    if let Some(current) = &current {
        current.task().set_in_call(None);
    }
    match outcome {
        Ok(value) => value,
        Err(payload) => abort_after_panic(name, payload.as_ref()),
    }
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns the thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets errno.
pub fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// How a call on an fd should be carried out.
pub enum Mode {
    /// Call libc as is.
    PassThrough,
    /// A managed socket the user wants to block on (in a coroutine, or on a plain thread: the
    /// kernel's `O_NONBLOCK` is ours): [`transfer::socket_io`].
    Socket(&'static FdEntry, Option<CurrentTask>),
    /// A pipe, FIFO, tty, eventfd or character device used by a coroutine (its flags are the
    /// user's): [`transfer::pollable_io`].
    Pollable(&'static FdEntry, CurrentTask),
}

/// Decides how a call in `dir` on `fd` is carried out. An fd's first use inside a coroutine
/// classifies it (and makes a socket managed).
///
/// Writes to fds 1 and 2 never suspend: std writes them holding its stdout/stderr lock, whose
/// owner is the worker thread, so a sibling coroutine could re-enter it mid-line.
pub fn mode(task: Option<CurrentTask>, fd: c_int, dir: Dir) -> Mode {
    match task {
        Some(task) => {
            let Some(entry) = fd::table().get(fd) else {
                return Mode::PassThrough;
            };
            let mut kind = entry.kind();
            if kind == KIND_UNKNOWN {
                match entry.discover(fd) {
                    Ok(k) => kind = k,
                    Err(_) => return Mode::PassThrough, // not open: libc reports the error
                }
            }
            match kind {
                KIND_SOCKET if !entry.user_nonblocking() => Mode::Socket(entry, Some(task)),
                KIND_POLLABLE if !(dir == Dir::Write && (fd == 1 || fd == 2)) => {
                    Mode::Pollable(entry, task)
                }
                _ => Mode::PassThrough,
            }
        }
        None => match fd::table().peek(fd) {
            // We made this socket non-blocking in the kernel; a plain thread expects blocking.
            // (Pollable fds keep their kernel flags, so plain threads just call libc.)
            Some(entry) if entry.kind() == KIND_SOCKET && !entry.user_nonblocking() => {
                Mode::Socket(entry, None)
            }
            _ => Mode::PassThrough,
        },
    }
}

/// Waits until `fd` may be ready in `dir`: suspends the current coroutine, or blocks a plain
/// thread in the real `poll`.
pub fn wait(
    fd: c_int,
    entry: &FdEntry,
    dir: Dir,
    seen: u64,
    generation: u32,
    deadline: u64,
    task: &Option<CurrentTask>,
) -> Wait {
    match task {
        Some(current) => match entry.wait(fd, dir, seen, generation, deadline, current) {
            Ok(outcome) => outcome,
            // Cannot be registered with epoll (never for sockets): fall back to polling.
            Err(_) => poll_thread(fd, dir, deadline),
        },
        None => {
            if entry.generation() != generation {
                return Wait::Closed;
            }
            poll_thread(fd, dir, deadline)
        }
    }
}

/// Blocks the thread in the real `poll` until `fd` is ready in `dir` or `deadline` passes.
fn poll_thread(fd: c_int, dir: Dir, deadline: u64) -> Wait {
    let events = match dir {
        Dir::Read => libc::POLLIN,
        Dir::Write => libc::POLLOUT,
    };
    loop {
        let timeout = if deadline == 0 {
            -1
        } else {
            let now = timer::now_ns();
            if now >= deadline {
                return Wait::TimedOut;
            }
            (deadline - now).div_ceil(1_000_000).min(i32::MAX as u64) as c_int
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        interrupt::clear_last();
        // SAFETY: one valid pollfd.
        let n = unsafe { real::poll(&mut pfd, 1, timeout) };
        if n > 0 {
            return Wait::Ready;
        }
        if n < 0 && errno() != libc::EINTR {
            return Wait::Ready; // let the retried call report the error
        }
        if n < 0 {
            // A handler ran on this thread: what would it have done to the blocking call?
            // (A socket timeout makes it EINTR whatever the flags.)
            match interrupt::last() {
                interrupt::INTERRUPTING => return Wait::Interrupted,
                interrupt::RESTARTING if deadline != 0 => return Wait::Interrupted,
                _ => {}
            }
        }
    }
}

/// The deadline for a call in `dir` on a socket with a timeout (0: none; now, for the
/// kernel's "give up at once").
pub fn deadline_for(entry: &FdEntry, dir: Dir) -> u64 {
    match entry.timeout_ns(dir) {
        0 => 0,
        fd::TIMEOUT_IMMEDIATE => timer::now_ns().max(1),
        ns => timer::now_ns().saturating_add(ns),
    }
}
