//! `pthread_exit` in a coroutine thread, and the `__pthread_unwind_next` its cleanup handlers
//! call.
//!
//! glibc's `pthread_exit` unwinds to a `setjmp` its `start_thread` made, which a coroutine
//! thread does not have. Here the exit of a coroutine thread is:
//! 1. the value is kept for the joiner;
//! 2. the `pthread_cleanup_push` handlers run, innermost first: each buffer is taken off the
//!    descriptor's chain and `longjmp`ed to, as glibc's unwinder does; the handler's inline
//!    code runs the routine and calls `__pthread_unwind_next`, which comes back here;
//! 3. with no handler left, an unwind (a Rust panic payload, [`ThreadExit`], raised without
//!    the panic hook) runs the destructors of the frames left — Rust drops, C++ destructors,
//!    `-fexceptions` cleanups — up to the coroutine thread's entry, which catches it; the
//!    thread-local and `pthread_key_create` destructors then run as at any thread's end.
//!
//! On the main thread and OS threads both functions are libc's.

use std::cell::Cell;
use std::ffi::c_void;

use libc::c_int;

use crate::runtime::current;
use crate::{identity, log, threads};

/// The payload of a coroutine thread's exit unwind (caught by its entry).
pub struct ThreadExit;

thread_local! {
    /// This coroutine thread is exiting: its cleanup handlers' `__pthread_unwind_next` calls
    /// continue the exit (per coroutine: thread-locals are, with per-coroutine identity).
    static EXITING: Cell<bool> = const { Cell::new(false) };
}

extern "C" {
    /// glibc's `longjmp`, on a `pthread_cleanup_push` buffer (laid out as a `jmp_buf` with
    /// `mask_was_saved` zero, as glibc's unwinder treats it).
    fn longjmp(env: *mut c_void, value: c_int) -> !;
}

/// The real function named `name` (a `void f(void *)` that does not return).
fn real_noreturn(name: &std::ffi::CStr) -> unsafe extern "C-unwind" fn(*mut c_void) -> ! {
    // SAFETY: RTLD_NEXT lookup of a NUL-terminated name.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if address.is_null() {
        log::fatal(format_args!(
            "cannot find the libc function `{}`",
            name.to_string_lossy()
        ));
    }
    // SAFETY: glibc's definition of this symbol, of this C prototype.
    unsafe { std::mem::transmute(address) }
}

/// Runs the next cleanup handler, or, with none left, unwinds to the thread's entry.
fn continue_exit() -> ! {
    // SAFETY: a coroutine thread runs on its verified area (threads mode requires it).
    if let Some(buf) = unsafe { identity::pop_cleanup_buffer() } {
        // SAFETY: the buffer was filled by `__sigsetjmp` in a frame of this coroutine that is
        // still live (it is below us on this stack); nothing of ours needs dropping here.
        unsafe { longjmp(buf as *mut c_void, 1) }
    }
    EXITING.set(false);
    std::panic::resume_unwind(Box::new(ThreadExit))
}

/// Interposed `pthread_exit(3)`.
///
/// # Safety
/// As for libc's `pthread_exit`. On a coroutine thread the frames between the start routine
/// and this call must be C, C++ or Rust frames that can unwind (`extern "C-unwind"` for Rust).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C-unwind" fn pthread_exit(retval: *mut c_void) -> ! {
    if current::task().is_some() {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        if threads::set_exit_value(me, retval as usize) {
            EXITING.set(true);
            continue_exit();
        }
        log::fatal(format_args!(
            "pthread_exit called in a coroutine started with corun::spawn (only a thread \
             created by pthread_create in threads mode can exit this way); return from the \
             closure instead"
        ));
    }
    // SAFETY: an OS thread: libc's own exit.
    unsafe { real_noreturn(c"pthread_exit")(retval) }
}

/// Interposed `__pthread_unwind_next`: what the inline code of `pthread_cleanup_push` calls
/// after running a handler during an exit or a cancellation.
///
/// # Safety
/// As for glibc's: `buf` is the buffer whose handler just ran.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C-unwind" fn __pthread_unwind_next(buf: *mut c_void) -> ! {
    if current::task().is_some() && EXITING.get() {
        continue_exit();
    }
    // SAFETY: not an exit of ours: glibc's unwinder continues with the caller's buffer.
    unsafe { real_noreturn(c"__pthread_unwind_next")(buf) }
}
