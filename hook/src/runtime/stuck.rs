//! Where a stuck worker is: the stack of the coroutine it runs, taken on the worker's own
//! thread, for the stuck-worker warning.
//!
//! The monitor cannot unwind another thread's stack, so it asks the thread: `tgkill` with
//! [`SIGNAL`] (`SIGURG`, as Go's preemption uses: its default action is to ignore it, so a
//! stray one harms nobody). The handler records the return addresses into a static buffer
//! (no allocation, no lock) and wakes the monitor. A thread blocked in a system call is not
//! signalled (a call the kernel does not restart would see `EINTR`); the warning names the
//! call instead, from `/proc/self/task/TID/syscall`.
//!
//! A program that installs its own `SIGURG` handler keeps it: the hooks' trampoline answers
//! the monitor's requests first and passes every other `SIGURG` to that handler.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use libc::{c_int, c_void, siginfo_t};

use crate::sync::{futex_wait_timeout, futex_wake};

/// The signal that asks a worker thread for its stack.
pub const SIGNAL: c_int = libc::SIGURG;

const MAX_FRAMES: usize = 64;

/// The thread asked for its stack now (0: none).
static TARGET: AtomicI32 = AtomicI32::new(0);
/// Bumped by each answer (a futex word).
static ANSWERS: AtomicU32 = AtomicU32::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);
static IPS: [AtomicUsize; MAX_FRAMES] = [const { AtomicUsize::new(0) }; MAX_FRAMES];

/// Installs the handler (unless the program already has a `SIGURG` handler, in front of which
/// the trampoline answers).
pub fn install() {
    if crate::signal::actions::has_handler(SIGNAL) {
        return;
    }
    // SAFETY: a zeroed sigaction with an SA_SIGINFO handler is valid; the handler is
    // async-signal-safe (atomics, the unwinder into a static buffer, a raw futex wake).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        crate::real::sigaction(SIGNAL, &action, std::ptr::null_mut());
    }
}

extern "C" fn on_signal(_: c_int, _: *mut siginfo_t, _: *mut c_void) {
    answer();
}

/// Records this thread's stack if the monitor asked this thread for it. Returns whether the
/// signal was such a request (called first by the trampoline for [`SIGNAL`]).
pub fn answer() -> bool {
    // SAFETY: gettid has no preconditions (and is async-signal-safe).
    let me = unsafe { libc::gettid() };
    if TARGET.load(Ordering::SeqCst) != me {
        return false;
    }
    let mut n = 0;
    // SAFETY: the unwinder walks this thread's stack (through the signal frame) and the
    // closure only stores addresses into a static buffer: nothing is allocated or locked here.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            IPS[n].store(frame.ip() as usize, Ordering::Relaxed);
            n += 1;
            n < MAX_FRAMES
        })
    };
    LEN.store(n, Ordering::SeqCst);
    TARGET.store(0, Ordering::SeqCst);
    ANSWERS.fetch_add(1, Ordering::SeqCst);
    futex_wake(&ANSWERS, i32::MAX);
    true
}

/// What the stuck thread was doing.
pub enum Seen {
    /// The return addresses of its stack.
    Stack(Vec<usize>),
    /// Blocked in system call `nr` (not signalled).
    Syscall(i64),
    /// No answer.
    Nothing,
}

/// The system call thread `tid` is blocked in, if it is in one.
fn blocked_in_syscall(tid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let nr: i64 = text.split_whitespace().next()?.parse().ok()?;
    (nr >= 0).then_some(nr)
}

/// Asks thread `tid` (a worker of this process) for its stack, waiting up to `within`.
pub fn look_at(tid: i32, within: Duration) -> Seen {
    if tid <= 0 {
        return Seen::Nothing;
    }
    if let Some(nr) = blocked_in_syscall(tid) {
        return Seen::Syscall(nr);
    }
    let before = ANSWERS.load(Ordering::SeqCst);
    TARGET.store(tid, Ordering::SeqCst);
    // SAFETY: a signal to a thread of this process, which handles it.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, SIGNAL) } == 0;
    if sent {
        let deadline = std::time::Instant::now() + within;
        while ANSWERS.load(Ordering::SeqCst) == before {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            futex_wait_timeout(&ANSWERS, before, deadline - now);
        }
    }
    TARGET.store(0, Ordering::SeqCst);
    if ANSWERS.load(Ordering::SeqCst) == before {
        return Seen::Nothing;
    }
    let n = LEN.load(Ordering::SeqCst);
    Seen::Stack(
        IPS[..n]
            .iter()
            .map(|ip| ip.load(Ordering::Relaxed))
            .collect(),
    )
}
