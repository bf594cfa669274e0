//! Locks for the runtime's own use.
//!
//! Inside the hook library every `syscall(SYS_futex, …)` made through libc would come back to
//! corun's own interposed `syscall`, so the runtime never uses std's locks on its hot paths. It
//! uses [`SpinLock`] for short critical sections, and raw futex calls ([`futex_wait`],
//! [`futex_wake`]) for blocking a plain thread.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use corun::raw_syscall;

/// A test-and-test-and-set spin lock that yields the CPU after a short spin. For critical
/// sections of a few dozen instructions that never block.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only reached through a guard, and only one guard exists at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; T: Send makes that fine.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new, unlocked lock.
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (then yielding the CPU) until it is free.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if spins < 64 {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    sched_yield();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// Proof of holding a [`SpinLock`]; unlocks on drop.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// `sched_yield(2)`, bypassing the interposed libc symbol.
pub fn sched_yield() {
    // SAFETY: sched_yield takes no arguments.
    unsafe { raw_syscall::syscall3(libc::SYS_sched_yield as usize, 0, 0, 0) };
}

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
