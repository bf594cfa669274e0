//! Waiting on and waking a 32-bit word inside a pthread object (mutex, condvar, rwlock,
//! barrier, once, semaphore), for coroutines and OS threads alike.
//!
//! A coroutine parks in the runtime's futex table (`crate::futex`); an OS thread (the main
//! thread) blocks in the kernel, announced to the table's per-bucket count first, so that a
//! wake knows whether the kernel must be asked too. Every wait on these words goes through
//! here in threads mode (all the program's calls of these functions are interposed), so the
//! count is exact — except for mutexes, where glibc's own code may wait (`kernel_too`).

use std::sync::atomic::AtomicU32;

use libc::c_int;

use corun::raw_syscall;

use crate::futex;
use crate::runtime::current;
use crate::runtime::timer;

/// Why a wait ended without the word changing.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The deadline passed.
    TimedOut,
    /// A signal interrupted the wait (a coroutine's: one aimed at it; an OS thread's: a handler
    /// ran). Only `sem_wait` reports it; the others wait again.
    Interrupted,
}

/// Waits while `*word == expected`, until woken or the monotonic `deadline` (ns; `None`:
/// none). May return early (spuriously, or because the word changed): callers re-check.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<u64>) -> Result<(), Ended> {
    if deadline.is_some_and(|d| timer::now_ns() >= d) {
        return Err(Ended::TimedOut);
    }
    if let Some(current) = current::task() {
        return match futex::wait(&current, word, expected, deadline.unwrap_or(0), !0, false) {
            Err(libc::ETIMEDOUT) => Err(Ended::TimedOut),
            Err(libc::EINTR) => Err(Ended::Interrupted),
            _ => Ok(()),
        };
    }
    let addr = word.as_ptr() as usize;
    let timeout = match deadline {
        None => None,
        Some(deadline) => {
            let now = timer::now_ns();
            if now >= deadline {
                return Err(Ended::TimedOut);
            }
            let left = deadline - now;
            Some(libc::timespec {
                tv_sec: (left / 1_000_000_000) as libc::time_t,
                tv_nsec: (left % 1_000_000_000) as libc::c_long,
            })
        }
    };
    let _announced = futex::thread_waits_in_kernel(addr);
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32; the timeout is null or a local that outlives the
    // call.
    let rc = unsafe {
        raw_syscall::syscall6(
            libc::SYS_futex as usize,
            addr,
            (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as usize,
            expected as usize,
            timeout_ptr as usize,
            0,
            0,
        )
    } as isize;
    match -rc as c_int {
        libc::ETIMEDOUT => Err(Ended::TimedOut),
        libc::EINTR => Err(Ended::Interrupted),
        _ => Ok(()),
    }
}

/// Wakes up to `count` waiters of `word` (coroutines first, then OS threads in the kernel if
/// any may be there; with `kernel_too`, the kernel is always asked for the rest: glibc code
/// may wait on this word unseen).
pub fn wake(word: &AtomicU32, count: i32, kernel_too: bool) {
    let addr = word.as_ptr() as usize;
    let woken = futex::wake(addr, count, !0);
    if woken < count && (kernel_too || futex::kernel_may_have_waiters(addr)) {
        // SAFETY: `word` is a live, aligned u32.
        unsafe {
            raw_syscall::syscall6(
                libc::SYS_futex as usize,
                addr,
                (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as usize,
                (count - woken) as usize,
                0,
                0,
                0,
            )
        };
    }
}

/// The monotonic deadline of absolute time `at` (ns) on `clock` (realtime or monotonic).
pub fn monotonic_deadline(clock: libc::clockid_t, at: u64) -> u64 {
    if clock == libc::CLOCK_MONOTONIC {
        at
    } else {
        let now = timer::clock_ns(clock);
        timer::now_ns().saturating_add(at.saturating_sub(now))
    }
}

/// Whether the timed pthread functions accept `clock` (glibc: realtime and monotonic only).
pub fn supported_clock(clock: libc::clockid_t) -> bool {
    clock == libc::CLOCK_REALTIME || clock == libc::CLOCK_MONOTONIC
}

/// Reads a caller's `timespec` fault-safely: `Err(EFAULT)` if it is unreadable.
pub fn read_timespec(abstime: *const libc::timespec) -> Result<libc::timespec, i32> {
    // SAFETY: a fault-safe read of the caller's memory.
    unsafe { corun::user_memory::read::<libc::timespec>(abstime as usize) }.ok_or(libc::EFAULT)
}

/// An absolute time `at` on `clock` as a monotonic deadline: `Err(EINVAL)` for bad
/// nanoseconds; negative seconds are a deadline already passed (0).
pub fn deadline_from(clock: libc::clockid_t, at: &libc::timespec) -> Result<u64, i32> {
    if !(0..1_000_000_000).contains(&at.tv_nsec) {
        return Err(libc::EINVAL);
    }
    if at.tv_sec < 0 {
        return Ok(0);
    }
    let at = timer::timespec_ns(at).ok_or(libc::EINVAL)?;
    Ok(monotonic_deadline(clock, at))
}

/// A caller's absolute `timespec` on `clock` as a monotonic deadline ([`read_timespec`], then
/// [`deadline_from`]).
pub fn deadline_of(clock: libc::clockid_t, abstime: *const libc::timespec) -> Result<u64, i32> {
    deadline_from(clock, &read_timespec(abstime)?)
}
