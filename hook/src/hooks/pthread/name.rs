//! `pthread_setname_np`, `pthread_getname_np`: a coroutine thread's name is its task's, shown
//! in dumps and stuck warnings; the kernel name of the worker running it is left alone.

use std::ffi::{c_char, CStr};

use libc::{c_int, pthread_t, size_t};

use crate::hooks::guard;
use crate::real;
use crate::threads;

/// The kernel's limit on a thread name, with its NUL (`TASK_COMM_LEN`).
const TASK_COMM_LEN: usize = 16;

/// Interposed `pthread_setname_np(3)`: `ERANGE` for a name of 16 bytes or more, as glibc.
///
/// # Safety
/// As for libc's `pthread_setname_np`: `name` is a NUL-terminated string.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_setname_np(thread: pthread_t, name: *const c_char) -> c_int {
    guard(&"pthread_setname_np", |_| {
        let Some(task) = threads::task_of(thread as usize) else {
            // SAFETY: not a coroutine thread: the caller's arguments, passed on unchanged.
            return unsafe { real::pthread_setname_np(thread, name) };
        };
        // SAFETY: guaranteed by the caller (glibc reads it with strlen too).
        let name = unsafe { CStr::from_ptr(name) };
        if name.to_bytes().len() >= TASK_COMM_LEN {
            return libc::ERANGE;
        }
        let name = String::from_utf8_lossy(name.to_bytes()).into_owned();
        task.set_name(Some(name.into_boxed_str()));
        0
    })
}

/// Interposed `pthread_getname_np(3)`: `ERANGE` for a buffer under 16 bytes, as glibc. A
/// coroutine thread never named reads as the process's name (what a new thread inherits).
///
/// # Safety
/// As for libc's `pthread_getname_np`: `buf` has `len` writable bytes.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pthread_getname_np(
    thread: pthread_t,
    buf: *mut c_char,
    len: size_t,
) -> c_int {
    guard(&"pthread_getname_np", |_| {
        let Some(task) = threads::task_of(thread as usize) else {
            // SAFETY: as above.
            return unsafe { real::pthread_getname_np(thread, buf, len) };
        };
        if len < TASK_COMM_LEN {
            return libc::ERANGE;
        }
        let name = task.name().unwrap_or_else(process_name);
        let bytes = &name.as_bytes()[..name.len().min(TASK_COMM_LEN - 1)];
        // SAFETY: `len >= 16 > bytes.len()`: the name and its NUL fit the caller's buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
            *buf.add(bytes.len()) = 0;
        }
        0
    })
}

/// The main thread's kernel name (`/proc/self/comm`), which threads inherit.
fn process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}
