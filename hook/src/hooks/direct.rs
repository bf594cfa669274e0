//! System calls issued directly, for the retry loops on managed sockets.
//!
//! libc's `recv`, `send` & co. are pthread cancellation points: each call switches
//! asynchronous cancellation on and off around the system call, which costs a few percent of
//! an echo server's CPU. A coroutine cannot be cancelled with `pthread_cancel` anyway, so the
//! loops that retry non-blocking calls on sockets the runtime manages make the system call
//! themselves. Results and `errno` are the kernel's, as libc would pass them on.

use libc::{c_int, c_void, size_t, sockaddr, socklen_t, ssize_t};

use super::set_errno;
use corun::raw_syscall::syscall6;

/// Turns a raw kernel result into libc's convention (-1 and `errno`).
fn finish(ret: isize) -> ssize_t {
    if ret < 0 {
        set_errno(-ret as c_int);
        return -1;
    }
    ret
}

/// `recvfrom(2)` (what `recv` and `read` on a socket are).
pub fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller's arguments, as libc would pass them; the kernel checks the pointers.
    finish(unsafe {
        syscall6(
            libc::SYS_recvfrom as usize,
            fd as usize,
            buf as usize,
            len,
            flags as usize,
            addr as usize,
            addrlen as usize,
        )
    })
}

/// `sendto(2)` (what `send` and `write` on a socket are).
pub fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    // SAFETY: as above.
    finish(unsafe {
        syscall6(
            libc::SYS_sendto as usize,
            fd as usize,
            buf as usize,
            len,
            flags as usize,
            addr as usize,
            addrlen as usize,
        )
    })
}

/// `accept4(2)`.
pub fn accept4(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t, flags: c_int) -> c_int {
    // SAFETY: as above.
    finish(unsafe {
        syscall6(
            libc::SYS_accept4 as usize,
            fd as usize,
            addr as usize,
            addrlen as usize,
            flags as usize,
            0,
            0,
        )
    }) as c_int
}
