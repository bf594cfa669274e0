//! The `pthread_rwlock_*` lock and unlock functions in threads mode (see
//! `crate::threads::rwlock`). `pthread_rwlock_init`/`_destroy` stay glibc's.

use libc::{c_int, clockid_t, pthread_rwlock_t, timespec};

use crate::hooks::guard;
use crate::real;
use crate::threads::rwlock::RwLock;
use crate::threads::{self, word};

/// The rwlock at `lock` if threads mode handles it.
///
/// # Safety
/// `lock` points at an initialised rwlock.
unsafe fn ours(lock: *mut pthread_rwlock_t) -> Option<RwLock> {
    if !threads::objects_are_ours() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    unsafe { RwLock::at(lock) }
}

/// How a lock call waits.
#[derive(Clone, Copy)]
enum How {
    Block,
    Try,
    Until(clockid_t, *const timespec),
}

fn take(lock: &RwLock, write: bool, how: How) -> c_int {
    let (try_only, deadline) = match how {
        How::Block => (false, None),
        How::Try => (true, None),
        How::Until(clock, abstime) => {
            if !word::supported_clock(clock) {
                return libc::EINVAL;
            }
            match word::deadline_of(clock, abstime) {
                Ok(deadline) => (false, Some(deadline)),
                Err(err) => {
                    // As glibc: a lock that is free is taken whatever the deadline says.
                    let got = if write {
                        lock.write(true, None)
                    } else {
                        lock.read(true, None)
                    };
                    return if got == 0 { 0 } else { err };
                }
            }
        }
    };
    if write {
        lock.write(try_only, deadline)
    } else {
        lock.read(try_only, deadline)
    }
}

macro_rules! rwlock_hook {
    ($name:ident, $write:expr, ($($arg:ident : $ty:ty),*), $how:expr, $real:expr) => {
        #[doc = concat!("Interposed `", stringify!($name), "(3)`.")]
        ///
        /// # Safety
        /// As for the libc function.
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(lock: *mut pthread_rwlock_t $(, $arg: $ty)*) -> c_int {
            guard(&stringify!($name), |_| {
                // SAFETY: the caller's rwlock.
                match unsafe { ours(lock) } {
                    Some(l) => take(&l, $write, $how),
                    // SAFETY: the caller's arguments, passed on unchanged.
                    None => unsafe { $real(lock $(, $arg)*) },
                }
            })
        }
    };
}

rwlock_hook!(
    pthread_rwlock_rdlock,
    false,
    (),
    How::Block,
    real::pthread_rwlock_rdlock
);
rwlock_hook!(
    pthread_rwlock_tryrdlock,
    false,
    (),
    How::Try,
    real::pthread_rwlock_tryrdlock
);
rwlock_hook!(pthread_rwlock_timedrdlock, false, (abstime: *const timespec),
    How::Until(libc::CLOCK_REALTIME, abstime), real::pthread_rwlock_timedrdlock);
rwlock_hook!(pthread_rwlock_clockrdlock, false, (clock: clockid_t, abstime: *const timespec),
    How::Until(clock, abstime), real::pthread_rwlock_clockrdlock);
rwlock_hook!(
    pthread_rwlock_wrlock,
    true,
    (),
    How::Block,
    real::pthread_rwlock_wrlock
);
rwlock_hook!(
    pthread_rwlock_trywrlock,
    true,
    (),
    How::Try,
    real::pthread_rwlock_trywrlock
);
rwlock_hook!(pthread_rwlock_timedwrlock, true, (abstime: *const timespec),
    How::Until(libc::CLOCK_REALTIME, abstime), real::pthread_rwlock_timedwrlock);
rwlock_hook!(pthread_rwlock_clockwrlock, true, (clock: clockid_t, abstime: *const timespec),
    How::Until(clock, abstime), real::pthread_rwlock_clockwrlock);

/// Interposed `pthread_rwlock_unlock(3)`.
///
/// # Safety
/// As for libc's `pthread_rwlock_unlock`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_rwlock_unlock(lock: *mut pthread_rwlock_t) -> c_int {
    guard(&"pthread_rwlock_unlock", |_| {
        // SAFETY: the caller's rwlock.
        match unsafe { ours(lock) } {
            Some(l) => l.unlock(),
            // SAFETY: as above.
            None => unsafe { real::pthread_rwlock_unlock(lock) },
        }
    })
}
