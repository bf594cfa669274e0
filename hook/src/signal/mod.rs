//! Signals and coroutines: a signal interrupts one blocked call, as it would interrupt one
//! thread.
//!
//! With threads, the kernel delivers a signal meant for the process to one thread that does
//! not block it (the main thread first, if it can take it); if that thread is blocked in a
//! call, the call fails with `EINTR` once the handler has run — or starts again, for calls
//! that `SA_RESTART` restarts. A signal meant for one thread (`pthread_kill`) does that to
//! that thread. corun keeps the kernel's choice of thread and carries it one step further:
//!
//! - delivered to a **plain thread** (the main thread, say): the kernel does to its call what
//!   it always does; no coroutine is interrupted. A plain thread blocked on a socket the
//!   runtime manages gets the same `EINTR` (or restart) as libc's call would.
//! - delivered to a **worker** (the process's other threads block the signal, or the main
//!   thread does): it stands for the coroutines. The one that has waited longest in an
//!   interruptible call is interrupted — its call fails with `EINTR` (`nanosleep` fills in
//!   `rem`, `sleep` returns the seconds left), or, for a restartable call under a
//!   `SA_RESTART` handler, it goes on waiting, as a restarted call would. Unless the worker's
//!   running coroutine was itself inside a call that passes through to libc: the kernel has
//!   interrupted that one.
//! - **aimed at a coroutine** (`pthread_kill` with the `pthread_self()` it got): its call is
//!   the one interrupted, if it is in an interruptible wait when the signal arrives.
//!
//! Interruptible, as signal(7) lists them: reads, writes, sends, receives, accept and connect
//! (restarted under `SA_RESTART`, unless the socket has `SO_RCVTIMEO`/`SO_SNDTIMEO`), waits
//! for children (restarted), poll, ppoll, select, pselect, epoll_wait and the sleeps (`EINTR`
//! whatever the flags). Futex waits (std's locks and condvars retry them), joins and calls on
//! the blocking pool are not interrupted. The handler always runs before the call returns.
//!
//! - [`actions`]: the hooks' view of the user's handlers, and the trampoline the kernel runs.
//! - [`interrupt`]: which coroutine a signal interrupts, and waking it.

pub mod actions;
pub mod interrupt;

/// Blocks every signal that can be blocked on the calling thread: the runtime's own threads
/// (the monitor, the blocking pool) run no user code, so the kernel must not pick them for a
/// signal meant for the process.
pub fn block_all_on_this_thread() {
    // SAFETY: a local mask filled by sigfillset; pthread_sigmask on the calling thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        for fault in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut all, fault);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}
