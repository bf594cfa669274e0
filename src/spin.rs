//! A spin lock for code that must never block in the kernel through libc.
//!
//! Inside the preloaded hook library every `syscall(SYS_futex, …)` made through libc comes back
//! to corun's own interposed `syscall`, and the stack-overflow handler may not block at all, so
//! the runtime's short critical sections (and the coroutine core's stack slabs and overflow
//! registry, which the runtime shares) use this lock instead of std's.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::raw_syscall;

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
        if !self.try_acquire() {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free within `spins` attempts (never yields the CPU): for a
    /// signal handler, which must not wait for the code it interrupted.
    pub fn try_lock_for(&self, spins: usize) -> Option<SpinGuard<'_, T>> {
        for _ in 0..spins.max(1) {
            if self.try_acquire() {
                return Some(SpinGuard { lock: self });
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Takes the lock and keeps it past this call, without a guard: for holding it across
    /// `fork` (so the child does not inherit it in the middle of a change). Released with
    /// [`release`](Self::release).
    pub fn hold(&self) {
        if !self.try_acquire() {
            self.lock_contended();
        }
    }

    /// Releases a lock taken with [`hold`](Self::hold).
    ///
    /// # Safety
    /// The calling thread took the lock with `hold` (before a `fork`: in the parent, or in the
    /// child, whose one thread is the one that took it).
    pub unsafe fn release(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// In the child of a `fork`: puts `value` in the lock (the old value is leaked, not dropped:
    /// a thread that no longer exists may have been changing it) and unlocks it.
    ///
    /// # Safety
    /// Only in a forked child, before anything else uses the lock (the child has one thread).
    pub unsafe fn reset_in_child(&self, value: T) {
        // SAFETY: no other thread exists to use the value; writing without dropping is the
        // point (the old value may be half-changed).
        unsafe { std::ptr::write(self.value.get(), value) };
        self.locked.store(false, Ordering::Release);
    }

    /// In the child of a `fork`: unlocks the lock, keeping its value (for values that are one
    /// word, which a thread that no longer exists cannot have left half-changed).
    ///
    /// # Safety
    /// As for [`reset_in_child`](Self::reset_in_child).
    pub unsafe fn unlock_in_child(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn try_acquire(&self) -> bool {
        self.locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
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
            if self.try_acquire() {
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

/// `sched_yield(2)`, bypassing the (possibly interposed) libc symbol.
pub fn sched_yield() {
    // SAFETY: sched_yield takes no arguments.
    unsafe { raw_syscall::syscall3(libc::SYS_sched_yield as usize, 0, 0, 0) };
}
