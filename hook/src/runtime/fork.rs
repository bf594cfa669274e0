//! fork without exec: the child gets a runtime of its own, started at its first spawn.
//!
//! A forked child has one thread, the one that called `fork`; the parent's workers, monitor
//! and blocking pool do not exist there, and neither do the coroutines that ran on them. So the
//! child forgets the parent's runtime, and everything that named its coroutines (the fd
//! table's waiters, futex waiters, the signal lists), and its hooks carry on as on any plain
//! thread until the child spawns: then it starts a runtime of its own, with fresh workers and
//! reactors, just as the parent did at its first spawn. What the fd table knows about the fds
//! themselves stays (the child has the same fds, on the same open file descriptions): a
//! socket the parent's coroutines used is still managed, and blocks correctly for the child's
//! plain threads and coroutines alike.
//!
//! **A fork inside a coroutine** makes a child whose one thread runs that coroutine's code, as
//! a fork in a thread does: it returns from `fork` on the coroutine's stack and runs on as a
//! plain thread (hooks pass through, `corun::spawn` starts the child's runtime, a join blocks
//! the thread). When its closure returns, the thread ends — and the process with it, with
//! status 0, as when the last thread of a process ends.
//!
//! The handlers are `pthread_atfork` ones, so they run for every fork glibc makes (`fork`,
//! `daemon`, …), not for `vfork`, `posix_spawn` (which do not copy the process) or `_Fork`.
//! Before the fork, the locks of what the child goes on using (the stack slabs, the overflow
//! registry, the TLS images) are held, so the child never inherits one in the middle of a
//! change; what the child forgets is replaced, not read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::hooks::guard_abi;

/// How many forks this process is away from the original (bumped in each child).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The process generation: 0 in the original process, +1 in each forked child.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// In the child of a fork made inside a coroutine, when that coroutine's closure returns:
/// the child's one thread has returned, so the process exits with status 0 (running its
/// `atexit` handlers and flushing stdio), as glibc does when the last thread ends.
pub fn last_thread_returned() -> ! {
    // SAFETY: exit may be called from any thread; this is the process's only one.
    unsafe { libc::exit(0) }
}

/// Registers the fork handlers (once, when the library is loaded).
pub fn install() {
    // SAFETY: three handlers with the signature pthread_atfork expects, valid for the life of
    // the process.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc != 0 {
        crate::log::warn(format_args!(
            "cannot register the fork handlers (error {rc}): a forked child must not spawn"
        ));
    }
}

extern "C" fn prepare() {
    guard_abi("fork (prepare)", || {
        crate::identity::before_fork();
        corun::coroutine::before_fork();
    });
}

extern "C" fn parent() {
    guard_abi("fork (parent)", || {
        // SAFETY: this thread took the locks in `prepare`.
        unsafe {
            corun::coroutine::after_fork();
            crate::identity::after_fork();
        }
    });
}

extern "C" fn child() {
    guard_abi("fork (child)", || {
        GENERATION.fetch_add(1, Ordering::AcqRel);
        // SAFETY: this thread took the locks in `prepare`; it is the child's only thread, and
        // nothing else runs before this handler (ours is the first child handler glibc runs:
        // the library registered it first).
        unsafe {
            corun::coroutine::after_fork();
            crate::identity::after_fork();
            super::current::forget_in_child();
            super::forget_in_child();
            super::registry::reset_in_child();
            super::blocking::forget_in_child();
            super::control::forget_in_child();
            super::threads::forget_in_child();
            super::deadlock::reset_in_child();
            crate::futex::reset_in_child();
            crate::signal::interrupt::reset_in_child();
            crate::fd::table().reset_in_child();
        }
    });
}
