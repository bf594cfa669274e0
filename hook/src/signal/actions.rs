//! The user's signal handlers, as the hooks of `sigaction` and `signal` see them.
//!
//! A handler the user installs for an asynchronous signal goes into the kernel behind
//! `trampoline`, with the user's mask and flags (plus `SA_SIGINFO`). The trampoline calls
//! the user's handler exactly as the kernel would have (one or three arguments), then tells
//! [`super::interrupt`] that a signal arrived on this thread. An old action read back through
//! `sigaction` names the user's handler and flags, never the trampoline.
//!
//! The kernel stays the truth for which action is installed, so what bypasses the hooks is
//! seen as it is: `SA_RESETHAND` (the kernel resets the trampoline itself), glibc's own
//! `siginterrupt` (which changes the flags of the action in place). The table here only
//! remembers whose handler the trampoline stands for.
//!
//! Synchronous fault signals (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`)
//! and the two that cannot be caught pass straight through: they interrupt no blocked call,
//! and corun's own overflow and fault handlers chain to whatever the user installs for them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libc::{c_int, c_void, siginfo_t};

use crate::real;

/// One more than the highest signal number (glibc's `NSIG`).
pub const NSIG: usize = 65;

/// The user's handler behind the trampoline for one signal.
struct UserHandler {
    /// The handler's address (`SIG_DFL` when none was installed through the hooks).
    handler: AtomicUsize,
    /// Whether it takes three arguments (`SA_SIGINFO`).
    siginfo: AtomicBool,
    /// Whether it was installed with `SA_RESTART` (for a delivery that reset the action).
    restart: AtomicBool,
}

static USER: [UserHandler; NSIG] = [const {
    UserHandler {
        handler: AtomicUsize::new(libc::SIG_DFL),
        siginfo: AtomicBool::new(false),
        restart: AtomicBool::new(false),
    }
}; NSIG];

/// Set once the first user handler is installed: from then on blocked calls of coroutines
/// are listed for interruption (a program without handlers pays nothing).
static WATCHING: AtomicBool = AtomicBool::new(false);

/// Whether any user handler has been installed through the hooks.
#[inline]
pub fn watching() -> bool {
    WATCHING.load(Ordering::Relaxed)
}

/// Whether the hooks put the trampoline in front of handlers for `sig`.
fn wrapped(sig: c_int) -> bool {
    (1..NSIG as c_int).contains(&sig)
        && !matches!(
            sig,
            libc::SIGSEGV
                | libc::SIGBUS
                | libc::SIGILL
                | libc::SIGFPE
                | libc::SIGTRAP
                | libc::SIGSYS
                | libc::SIGKILL
                | libc::SIGSTOP
        )
}

/// Whether `handler` is a function (not `SIG_DFL` or `SIG_IGN`).
fn is_function(handler: usize) -> bool {
    handler != libc::SIG_DFL && handler != libc::SIG_IGN
}

/// Whether a user handler for `sig` stands behind the trampoline now.
pub fn has_handler(sig: c_int) -> bool {
    wrapped(sig) && is_function(USER[sig as usize].handler.load(Ordering::Acquire))
}

/// Whether the program has a handler for a signal that may come from outside (anything but
/// the faults and `SIGPIPE`, which only the thread's own call raises).
pub fn any_async_handler() -> bool {
    watching() && (1..NSIG as c_int).any(|sig| sig != libc::SIGPIPE && has_handler(sig))
}

/// `sigaction` as the hook carries it out: the user's handler behind the trampoline, the old
/// action as the user installed it.
///
/// # Safety
/// As for libc's `sigaction`.
pub unsafe fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    old: *mut libc::sigaction,
) -> c_int {
    if !wrapped(sig) {
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { real::sigaction(sig, act, old) };
    }
    let new = if act.is_null() {
        None
    } else {
        // SAFETY: a fault-safe read of a plain C struct.
        match unsafe { corun::user_memory::read::<libc::sigaction>(act as usize) } {
            Some(new) => Some(new),
            // Unreadable: libc reads it itself and gives its own answer.
            // SAFETY: the caller's arguments, passed on unchanged.
            None => return unsafe { real::sigaction(sig, act, old) },
        }
    };
    let slot = &USER[sig as usize];
    let before = (
        slot.handler.load(Ordering::Acquire),
        slot.siginfo.load(Ordering::Acquire),
        slot.restart.load(Ordering::Acquire),
    );
    let rc = match new {
        Some(mut new) if is_function(new.sa_sigaction) => {
            slot.siginfo
                .store(new.sa_flags & libc::SA_SIGINFO != 0, Ordering::Release);
            slot.restart
                .store(new.sa_flags & libc::SA_RESTART != 0, Ordering::Release);
            slot.handler.store(new.sa_sigaction, Ordering::Release);
            WATCHING.store(true, Ordering::Relaxed);
            new.sa_sigaction = trampoline as *const () as usize;
            new.sa_flags |= libc::SA_SIGINFO;
            // SAFETY: a valid action of ours; the caller's out-pointer (libc writes it).
            let rc = unsafe { real::sigaction(sig, &new, old) };
            if rc != 0 {
                slot.handler.store(before.0, Ordering::Release);
                slot.siginfo.store(before.1, Ordering::Release);
                slot.restart.store(before.2, Ordering::Release);
            }
            rc
        }
        // SAFETY: the caller's arguments (no handler of theirs to stand in for).
        _ => unsafe { real::sigaction(sig, act, old) },
    };
    if rc == 0 && !old.is_null() {
        // SAFETY: libc has just written the old action there.
        let old = unsafe { &mut *old };
        if old.sa_sigaction == trampoline as *const () as usize {
            old.sa_sigaction = before.0;
            if !before.1 {
                old.sa_flags &= !libc::SA_SIGINFO;
            }
        }
    }
    rc
}

/// The kernel's `struct sigaction` (`rt_sigaction` with an 8-byte mask).
#[repr(C)]
struct KernelAction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// Whether the delivery of `sig` that is being handled restarts interrupted calls
/// (`SA_RESTART`): the kernel's flags while the trampoline is installed (`siginterrupt`
/// changes them behind the hooks), the user's own once a `SA_RESETHAND` delivery reset the
/// action. Async-signal-safe: one system call.
fn restarts(sig: c_int) -> bool {
    let mut action = KernelAction {
        handler: 0,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    // SAFETY: reads the action into a local of the kernel's layout; no new action.
    let rc = unsafe {
        corun::raw_syscall::syscall6(
            libc::SYS_rt_sigaction as usize,
            sig as usize,
            0,
            &mut action as *mut KernelAction as usize,
            8,
            0,
            0,
        )
    };
    if rc == 0 && action.handler == trampoline as *const () as usize {
        action.flags & libc::SA_RESTART as u64 != 0
    } else {
        USER[sig as usize].restart.load(Ordering::Acquire)
    }
}

/// What the kernel runs for a signal whose handler the user installed: the user's handler,
/// then the bookkeeping that lets the signal interrupt a coroutine's blocked call.
extern "C" fn trampoline(sig: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // The monitor asking a stuck worker for its stack: not the program's signal.
    if sig == crate::runtime::stuck::SIGNAL && crate::runtime::stuck::answer() {
        return;
    }
    // Before the handler, which may install another action.
    let restart = restarts(sig);
    let slot = &USER[sig as usize];
    let handler = slot.handler.load(Ordering::Acquire);
    if is_function(handler) {
        if slot.siginfo.load(Ordering::Acquire) {
            // SAFETY: the user installed this three-argument handler for this signal, and the
            // kernel passes the arguments it expects.
            let f: extern "C" fn(c_int, *mut siginfo_t, *mut c_void) =
                unsafe { std::mem::transmute(handler) };
            f(sig, info, context);
        } else {
            // SAFETY: the user installed this one-argument handler for this signal.
            let f: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
            f(sig);
        }
    }
    // Only after the handler: a coroutine that sees EINTR sees what the handler did.
    let saved = crate::hooks::errno();
    // SAFETY: what the kernel passed to this SA_SIGINFO handler.
    unsafe { super::interrupt::arrived(sig, restart, info, context) };
    crate::hooks::set_errno(saved);
}
