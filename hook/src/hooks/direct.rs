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

/// Makes system call `nr` and turns its raw result into libc's convention (-1 and `errno`).
///
/// # Safety
/// The arguments must be valid for system call `nr`, as for the libc function of that name.
unsafe fn call(nr: libc::c_long, args: [usize; 6]) -> ssize_t {
    // SAFETY: guaranteed by the caller; the kernel checks the pointers it is given.
    let ret = unsafe {
        syscall6(
            nr as usize,
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
        )
    };
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
    let args = [
        fd as usize,
        buf as usize,
        len,
        flags as usize,
        addr as usize,
        addrlen as usize,
    ];
    // SAFETY: the caller's arguments, as libc's recvfrom would pass them on.
    unsafe { call(libc::SYS_recvfrom, args) }
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
    let args = [
        fd as usize,
        buf as usize,
        len,
        flags as usize,
        addr as usize,
        addrlen as usize,
    ];
    // SAFETY: the caller's arguments, as libc's sendto would pass them on.
    unsafe { call(libc::SYS_sendto, args) }
}

/// `accept4(2)`.
pub fn accept4(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t, flags: c_int) -> c_int {
    let args = [
        fd as usize,
        addr as usize,
        addrlen as usize,
        flags as usize,
        0,
        0,
    ];
    // SAFETY: the caller's arguments, as libc's accept4 would pass them on.
    unsafe { call(libc::SYS_accept4, args) as c_int }
}

/// `recvmsg(2)`.
pub fn recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t {
    let args = [fd as usize, msg as usize, flags as usize, 0, 0, 0];
    // SAFETY: the caller's arguments, as libc's recvmsg would pass them on.
    unsafe { call(libc::SYS_recvmsg, args) }
}

/// `sendmsg(2)`.
pub fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t {
    let args = [fd as usize, msg as usize, flags as usize, 0, 0, 0];
    // SAFETY: the caller's arguments, as libc's sendmsg would pass them on.
    unsafe { call(libc::SYS_sendmsg, args) }
}

/// `preadv2` (`Dir::Read`) or `pwritev2` at the file position (offset -1) with `RWF_NOWAIT`:
/// a read or write that fails with `EAGAIN` instead of waiting, whatever the fd's flags
/// (`EOPNOTSUPP` where the fd does not support it).
pub fn rw_nowait(
    fd: c_int,
    dir: crate::fd::Dir,
    iov: *const libc::iovec,
    iovcnt: c_int,
) -> ssize_t {
    let nr = match dir {
        crate::fd::Dir::Read => libc::SYS_preadv2,
        crate::fd::Dir::Write => libc::SYS_pwritev2,
    };
    // The offset travels as two halves (low, high); -1 means "the current position".
    let args = [
        fd as usize,
        iov as usize,
        iovcnt as usize,
        usize::MAX,
        usize::MAX,
        libc::RWF_NOWAIT as usize,
    ];
    // SAFETY: the caller's buffers, as libc's preadv2/pwritev2 would pass them on.
    unsafe { call(nr, args) }
}
