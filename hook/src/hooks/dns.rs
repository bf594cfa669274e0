//! getaddrinfo and getnameinfo: inside a coroutine they run on the blocking pool (they block
//! inside libc, where no hook can reach) while the coroutine is suspended. Results, error codes
//! and `errno` (for `EAI_SYSTEM`) are libc's own.

use libc::{addrinfo, c_char, c_int, sockaddr, socklen_t};

use super::{errno, guard, set_errno};
use crate::real;
use crate::runtime::blocking;

/// Raw pointers moved to a pool thread: the coroutine that owns what they point at stays
/// suspended until the call returns.
struct Args<T>(T);
// SAFETY: see above: the pointers are only used while their owner waits for the result.
unsafe impl<T> Send for Args<T> {}

impl<T> Args<T> {
    /// Unwraps the pointers (a method call makes the closure capture the whole `Args`).
    fn get(self) -> T {
        self.0
    }
}

/// Interposed `getaddrinfo(3)`.
///
/// # Safety
/// As for libc's `getaddrinfo`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    guard(&"getaddrinfo", |task| {
        let Some(current) = task else {
            // SAFETY: the caller's arguments, passed on unchanged.
            return unsafe { real::getaddrinfo(node, service, hints, res) };
        };
        let args = Args((node, service, hints, res));
        let (rc, err) = blocking::run(&current, "getaddrinfo", move || {
            let (node, service, hints, res) = args.get();
            // SAFETY: the caller's arguments; the caller is suspended until this returns.
            let rc = unsafe { real::getaddrinfo(node, service, hints, res) };
            (rc, errno())
        });
        set_errno(err);
        rc
    })
}

/// Interposed `getnameinfo(3)`.
///
/// # Safety
/// As for libc's `getnameinfo`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn getnameinfo(
    addr: *const sockaddr,
    addrlen: socklen_t,
    host: *mut c_char,
    hostlen: socklen_t,
    serv: *mut c_char,
    servlen: socklen_t,
    flags: c_int,
) -> c_int {
    guard(&"getnameinfo", |task| {
        let Some(current) = task else {
            // SAFETY: the caller's arguments, passed on unchanged.
            return unsafe {
                real::getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags)
            };
        };
        let args = Args((addr, host, serv));
        let (rc, err) = blocking::run(&current, "getnameinfo", move || {
            let (addr, host, serv) = args.get();
            // SAFETY: the caller's arguments; the caller is suspended until this returns.
            let rc =
                unsafe { real::getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags) };
            (rc, errno())
        });
        set_errno(err);
        rc
    })
}
