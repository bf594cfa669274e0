//! The blocking loop of every data call a coroutine (or a plain thread, on a managed socket)
//! makes: try without blocking; on `EAGAIN` wait for readiness and try again — and only then.
//!
//! The kernel answers every attempt, so whatever it would say at once (a wrong fd end, a bad
//! buffer, a zero length, a reset connection) is what the caller gets, at once. Only `EAGAIN`
//! makes the loop wait, and only when the caller wants to block:
//!
//! - **managed sockets** are non-blocking in the kernel; the attempts also say `MSG_DONTWAIT`,
//!   so an fd number that stopped being that socket behind our back cannot block the worker.
//!   The user's `O_NONBLOCK` and timeouts are in the fd table ([`crate::fd`]). An attempt that
//!   finds the number is no socket any more (`ENOTSOCK`: closed and reused where the hooks did
//!   not see it) forgets the stale entry and returns [`Stale`], so the caller makes the plain call;
//! - **pipes, eventfds, ttys, character devices** keep the kernel flags the user set. An attempt
//!   is a `preadv2`/`pwritev2` with `RWF_NOWAIT` (the kernel's per-call non-blocking read and
//!   write); for fds that refuse it (ttys), `poll` first, then the plain call. Before waiting,
//!   `F_GETFL` says whether the user made the fd non-blocking (then `EAGAIN` is the answer) and
//!   whether it is open in that direction at all.

use libc::{c_int, iovec};

use super::{deadline_for, direct, errno, set_errno, wait};
use crate::fd::{Dir, FdEntry, Nowait, Wait};
use crate::real;
use crate::runtime::current::CurrentTask;
use crate::runtime::timer;

/// How far a call goes before it returns.
#[derive(Clone, Copy)]
pub enum Whole {
    /// As soon as some bytes moved (reads).
    First,
    /// When all of `len` bytes moved, at end of file, or at an error after some (writes, and
    /// `MSG_WAITALL` reads): as the kernel does for a blocking fd.
    All(usize),
}

/// The number stopped being the managed socket the table remembered (closed and reused where
/// the hooks did not see it): the caller makes the plain call instead.
pub struct Stale;

/// Folds an attempt's result into the progress of a `Whole` call. `Some(result)` ends it.
fn progress(whole: Whole, done: &mut usize, n: isize) -> Option<isize> {
    if n > 0 {
        *done += n as usize;
        return match whole {
            Whole::First => Some(*done as isize),
            Whole::All(len) if *done >= len => Some(*done as isize),
            Whole::All(_) => None,
        };
    }
    if n == 0 {
        return Some(*done as isize); // end of file, or a zero-length call
    }
    if errno() == libc::EAGAIN {
        return None;
    }
    // An error: after some bytes, the count so far (the error comes again on the next call).
    Some(if *done > 0 { *done as isize } else { -1 })
}

/// What a wait that ended without readiness makes of the call.
fn give_up(done: usize, outcome: Wait) -> isize {
    if done > 0 {
        return done as isize;
    }
    set_errno(match outcome {
        Wait::Closed => libc::EBADF,
        Wait::Interrupted => libc::EINTR,
        Wait::Ready | Wait::TimedOut => libc::EAGAIN,
    });
    -1
}

/// The answer to a blocking zero-byte receive whose wait ran out (`n` -1, `EAGAIN`): a
/// stream socket (TCP, Unix stream) says 0 then — its receive loop ends on the length, not the
/// timeout — where a datagram socket says `EAGAIN`. Any other `n` is returned as it is.
pub fn zero_length_receive(fd: c_int, n: isize) -> isize {
    if n != -1 || errno() != libc::EAGAIN {
        return n;
    }
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: valid out-pointers of the size given.
    let rc = unsafe {
        real::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 && kind == libc::SOCK_STREAM {
        return 0;
    }
    set_errno(libc::EAGAIN);
    -1
}

/// Carries out a call on a managed socket that the caller wants to block: `attempt(done)`
/// makes the non-blocking call for the bytes from offset `done`.
pub fn socket_io(
    fd: c_int,
    entry: &FdEntry,
    task: &Option<CurrentTask>,
    dir: Dir,
    whole: Whole,
    mut attempt: impl FnMut(usize) -> isize,
) -> Result<isize, Stale> {
    let generation = entry.generation();
    let deadline = deadline_for(entry, dir);
    let mut done = 0usize;
    loop {
        let seen = entry.ready_seq(dir);
        let n = attempt(done);
        if n < 0 && errno() == libc::ENOTSOCK && done == 0 {
            entry.reset(fd);
            return Err(Stale);
        }
        if let Some(result) = progress(whole, &mut done, n) {
            return Ok(result);
        }
        if deadline != 0 && timer::now_ns() >= deadline {
            return Ok(give_up(done, Wait::TimedOut));
        }
        match wait(fd, entry, dir, seen, generation, deadline, task) {
            Wait::Ready => {}
            outcome => return Ok(give_up(done, outcome)),
        }
    }
}

/// Carries out a call on a pollable fd (pipe, eventfd, tty …) in a coroutine:
/// `nowait(done)` makes the call with `RWF_NOWAIT` for the bytes from `done`, `plain(done)`
/// the plain call (for fds that refuse `RWF_NOWAIT`, once `poll` says they are ready).
pub fn pollable_io(
    fd: c_int,
    entry: &FdEntry,
    current: &CurrentTask,
    dir: Dir,
    whole: Whole,
    mut nowait: impl FnMut(usize) -> isize,
    mut plain: impl FnMut(usize) -> isize,
) -> isize {
    let generation = entry.generation();
    let task = Some(*current);
    let mut done = 0usize;
    loop {
        let seen = entry.ready_seq(dir);
        let n = match entry.nowait() {
            Nowait::No => {
                if !ready_now(fd, dir) && waits(fd, dir) {
                    set_errno(libc::EAGAIN);
                    -1
                } else {
                    plain(done)
                }
            }
            known => {
                let n = nowait(done);
                if n < 0 && errno() == libc::EOPNOTSUPP {
                    entry.set_nowait(Nowait::No);
                    continue;
                }
                if known == Nowait::Unknown {
                    entry.set_nowait(Nowait::Yes);
                }
                n
            }
        };
        if let Some(result) = progress(whole, &mut done, n) {
            return result;
        }
        // EAGAIN. Would the plain call have blocked? Not if the user made the fd non-blocking
        // (or it is not open that way: the plain call says so, at once).
        if !waits(fd, dir) {
            if done > 0 {
                return done as isize;
            }
            return plain(done);
        }
        match wait(fd, entry, dir, seen, generation, 0, &task) {
            Wait::Ready => {}
            outcome => return give_up(done, outcome),
        }
    }
}

/// Whether a blocking call in `dir` on `fd` would wait: the fd is blocking (the user's own
/// `O_NONBLOCK`, from the kernel) and open in that direction.
fn waits(fd: c_int, dir: Dir) -> bool {
    // SAFETY: F_GETFL takes no argument; a bad fd is an error.
    let flags = unsafe { real::fcntl(fd, libc::F_GETFL, 0) };
    if flags < 0 || flags & libc::O_NONBLOCK != 0 {
        return false;
    }
    let wrong_way = matches!(
        (dir, flags & libc::O_ACCMODE),
        (Dir::Read, libc::O_WRONLY) | (Dir::Write, libc::O_RDONLY)
    );
    !wrong_way
}

/// Whether `fd` is ready in `dir` right now (the real `poll`, not waiting). An error counts as
/// ready: the call that follows reports it.
pub fn ready_now(fd: c_int, dir: Dir) -> bool {
    let events = match dir {
        Dir::Read => libc::POLLIN,
        Dir::Write => libc::POLLOUT,
    };
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    unsafe { real::poll(&mut pfd, 1, 0) != 0 }
}

/// The iovecs left after skipping the first `done` bytes of `iov`.
pub fn advance(iov: &[iovec], mut done: usize) -> Vec<iovec> {
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

/// The caller's iovec array, copied, once the kernel has accepted it (after a first attempt
/// moved bytes, so it is readable and the count sane). `None` if it cannot be read.
pub fn iov_copy(iov: *const iovec, iovcnt: c_int) -> Option<Vec<iovec>> {
    let count = usize::try_from(iovcnt).ok()?;
    let mut copy = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: a fault-safe read of one iovec; a plain C struct.
        copy.push(unsafe { corun::user_memory::read::<iovec>(iov as usize + i * 16) }?);
    }
    Some(copy)
}

/// The total length of `iov`.
pub fn total_len(iov: &[iovec]) -> usize {
    iov.iter()
        .fold(0usize, |sum, v| sum.saturating_add(v.iov_len))
}

/// Moves `iov` (from offset `done`) in `dir` with `RWF_NOWAIT`.
pub fn nowait_iov(fd: c_int, dir: Dir, iov: &[iovec], done: usize) -> isize {
    let rest;
    let iov = if done == 0 {
        iov
    } else {
        rest = advance(iov, done);
        &rest
    };
    direct::rw_nowait(fd, dir, iov.as_ptr(), iov.len() as c_int)
}
