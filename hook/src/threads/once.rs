//! `pthread_once` in threads mode: the once word (an `int`, `PTHREAD_ONCE_INIT` = 0) is 0
//! (not run), 1 (running) or 2 (done); whoever moves it from 0 to 1 runs the routine, the
//! others wait for 2. If the routine unwinds (a C++ exception, a coroutine thread's
//! `pthread_exit`), the word goes back to 0 and the next caller runs it, as glibc does.

use std::sync::atomic::{AtomicU32, Ordering};

use super::word;

const NOT_RUN: u32 = 0;
const RUNNING: u32 = 1;
const DONE: u32 = 2;

/// The routine `pthread_once` takes (it may unwind: C++ `std::call_once` throws through it).
pub type Routine = extern "C-unwind" fn();

/// Puts the word back to "not run" if the routine unwinds.
struct Reset<'a>(&'a AtomicU32);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.store(NOT_RUN, Ordering::Release);
        word::wake(self.0, i32::MAX, false);
    }
}

/// Runs `routine` once for `once`.
pub fn once(once: &AtomicU32, routine: Routine) {
    loop {
        match once.compare_exchange(NOT_RUN, RUNNING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                let reset = Reset(once);
                routine();
                std::mem::forget(reset);
                once.store(DONE, Ordering::Release);
                word::wake(once, i32::MAX, false);
                return;
            }
            Err(DONE) => return,
            Err(RUNNING) => {
                let _ = word::wait(once, RUNNING, None);
            }
            // glibc's fork-generation bits, or garbage: treat as done if the done bit is set.
            Err(other) if other & DONE != 0 => return,
            Err(_) => {
                let _ = word::wait(once, once.load(Ordering::Acquire), None);
            }
        }
    }
}
