//! Locks for the runtime's own use.
//!
//! Inside the hook library every `syscall(SYS_futex, …)` made through libc would come back to
//! corun's own interposed `syscall`, so the runtime never uses std's locks on its hot paths. It
//! uses [`SpinLock`] for short critical sections, and raw futex calls ([`futex_wait`],
//! [`futex_wake`]) for blocking a plain thread.

use std::sync::atomic::AtomicU32;

use corun::raw_syscall;
pub use corun::spin::{sched_yield, SpinGuard, SpinLock};

/// Blocks the calling thread while `*word == expected` (or until woken; may wake spuriously).
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    raw_futex_wait(word, expected, std::ptr::null());
}

/// Like [`futex_wait`], for at most `timeout`.
pub fn futex_wait_timeout(word: &AtomicU32, expected: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    raw_futex_wait(word, expected, &ts);
}

/// `FUTEX_WAIT` on `word` with an optional (null: none) relative timeout.
fn raw_futex_wait(word: &AtomicU32, expected: u32, timeout: *const libc::timespec) {
    // SAFETY: `word` is a live, aligned u32; `timeout` is null or points to a valid timespec
    // that outlives the call (both callers pass a local or null).
    unsafe {
        raw_syscall::syscall6(
            libc::SYS_futex as usize,
            word.as_ptr() as usize,
            (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as usize,
            expected as usize,
            timeout as usize,
            0,
            0,
        )
    };
}

/// Wakes up to `count` threads blocked in [`futex_wait`] on `word`.
pub fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: `word` is a live, aligned u32.
    unsafe {
        raw_syscall::syscall6(
            libc::SYS_futex as usize,
            word.as_ptr() as usize,
            (libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG) as usize,
            count as usize,
            0,
            0,
            0,
        )
    };
}
