//! `pthread_create`: in threads mode, a coroutine thread.

use std::ffi::c_void;

use libc::{c_int, pthread_attr_t, pthread_t};

use crate::hooks::guard;
use crate::real;
use crate::runtime::threads as own_threads;
use crate::threads::{self, StartRoutine, Wishes};

extern "C" {
    /// glibc's process-wide default thread attribute (`pthread_setattr_default_np`'s).
    fn pthread_getattr_default_np(attr: *mut pthread_attr_t) -> c_int;
    /// The stack address given with `pthread_attr_setstack(addr)`, null if none (deprecated
    /// in POSIX, but the one query that says "none": `pthread_attr_getstack` computes an
    /// address from the size when none was given).
    fn pthread_attr_getstackaddr(attr: *const pthread_attr_t, addr: *mut *mut c_void) -> c_int;
    fn pthread_attr_getdetachstate(attr: *const pthread_attr_t, state: *mut c_int) -> c_int;
}

/// What the attribute (or the process default, for a null one) asks for; `None` if it gives
/// the thread a stack of the caller's own (`pthread_attr_setstack`), which only an OS thread
/// can run on.
///
/// # Safety
/// `attr` is null or an initialised attribute object, as `pthread_create` requires.
unsafe fn wishes(attr: *const pthread_attr_t) -> Option<Wishes> {
    // SAFETY: an all-zero attribute is valid storage for pthread_getattr_default_np to fill.
    let mut default: pthread_attr_t = unsafe { std::mem::zeroed() };
    let attr = if attr.is_null() {
        // SAFETY: a valid out-pointer; the attribute is destroyed below.
        if unsafe { pthread_getattr_default_np(&mut default) } != 0 {
            return None;
        }
        &default as *const pthread_attr_t
    } else {
        attr
    };
    let (mut stack_size, mut detach_state) = (0usize, 0 as c_int);
    let mut stack_addr: *mut c_void = std::ptr::null_mut();
    // SAFETY: `attr` is initialised (the caller's, or the default just read); valid
    // out-pointers.
    unsafe {
        libc::pthread_attr_getstacksize(attr, &mut stack_size);
        pthread_attr_getdetachstate(attr, &mut detach_state);
        pthread_attr_getstackaddr(attr, &mut stack_addr);
    }
    if std::ptr::eq(attr, &default) {
        // SAFETY: the default attribute read above, destroyed once.
        unsafe { libc::pthread_attr_destroy(&mut default) };
    }
    stack_addr.is_null().then_some(Wishes {
        stack_size,
        detached: detach_state == libc::PTHREAD_CREATE_DETACHED,
    })
}

/// Interposed `pthread_create(3)`. In threads mode (`CORUN_THREADS=1` with per-coroutine
/// identity) the new thread is a coroutine with its own identity, honouring the attribute's
/// stack size and detach state; `EAGAIN` if no stack can be had. A thread the runtime starts
/// for itself, one with a caller-supplied stack, and every thread outside threads mode is an
/// OS thread, made by libc.
///
/// # Safety
/// As for libc's `pthread_create`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut pthread_t,
    attr: *const pthread_attr_t,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    guard(&"pthread_create", |_| {
        if own_threads::starting_own() || !threads::enabled() {
            // SAFETY: the caller's arguments, passed on unchanged.
            return unsafe { real::pthread_create(thread, attr, start, arg) };
        }
        // SAFETY: the caller passes a null or initialised attribute.
        let Some(wishes) = (unsafe { wishes(attr) }) else {
            // SAFETY: as above.
            return unsafe { real::pthread_create(thread, attr, start, arg) };
        };
        match threads::create(&wishes, start, arg) {
            Ok(id) => {
                // SAFETY: the caller's out-pointer (libc writes it the same way).
                unsafe { *thread = id as pthread_t };
                0
            }
            Err(errno) => errno,
        }
    })
}
