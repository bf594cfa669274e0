//! The real libc functions behind every interposed symbol, found with `dlsym(RTLD_NEXT, …)`.
//!
//! Each is resolved on first use (a hook may run before the library's constructor, e.g. from
//! another library's constructor) and all are resolved eagerly by [`resolve_all`] in the
//! constructor. A function that cannot be found aborts the process with its name.
//!
//! `fcntl`, `ioctl` and `syscall` are variadic in C. Their optional arguments are integers or
//! pointers, which the x86_64 System V ABI passes in the same registers (and stack slots)
//! whether the call is variadic or not, so they are declared (and called) here with fixed
//! arguments; a callee ignores the ones it does not use.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, c_uint, c_void, size_t, sockaddr, socklen_t, ssize_t};

/// Looks `name` up past this library; aborts if libc does not have it.
#[cold]
fn resolve(slot: &AtomicUsize, name: &std::ffi::CStr) -> usize {
    // SAFETY: RTLD_NEXT with a NUL-terminated name.
    let address = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if address == 0 {
        crate::log::fatal(format_args!(
            "cannot find the libc function `{}` to forward to",
            name.to_string_lossy()
        ));
    }
    slot.store(address, Ordering::Relaxed);
    address
}

macro_rules! real_functions {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        mod slots {
            use std::sync::atomic::AtomicUsize;
            $( #[allow(non_upper_case_globals)] pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }

        $(
            #[doc = concat!("The real `", stringify!($name), "`.")]
            ///
            /// # Safety
            /// As for the libc function.
            #[inline]
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                let mut address = slots::$name.load(Ordering::Relaxed);
                if address == 0 {
                    address = resolve(&slots::$name, real_functions!(@cstr $name));
                }
                // SAFETY: the address is libc's definition of this symbol, whose C prototype
                // matches the declared type.
                unsafe {
                    let f: unsafe extern "C" fn($($ty),*) -> $ret = std::mem::transmute(address);
                    f($($arg),*)
                }
            }
        )*

        /// Resolves every real function now.
        pub fn resolve_all() {
            $( if slots::$name.load(Ordering::Relaxed) == 0 {
                resolve(&slots::$name, real_functions!(@cstr $name));
            } )*
        }
    };
    (@cstr $name:ident) => {
        // SAFETY: the literal ends with a NUL and has no other NUL.
        unsafe { std::ffi::CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) }
    };
}

real_functions! {
    read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t;
    readv(fd: c_int, iov: *const libc::iovec, iovcnt: c_int) -> ssize_t;
    write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t;
    writev(fd: c_int, iov: *const libc::iovec, iovcnt: c_int) -> ssize_t;
    recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> ssize_t;
    recvmsg(fd: c_int, msg: *mut libc::msghdr, flags: c_int) -> ssize_t;
    send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, addrlen: socklen_t) -> ssize_t;
    sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> ssize_t;
    accept(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int;
    accept4(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t, flags: c_int) -> c_int;
    connect(fd: c_int, addr: *const sockaddr, addrlen: socklen_t) -> c_int;
    socket(domain: c_int, ty: c_int, protocol: c_int) -> c_int;
    socketpair(domain: c_int, ty: c_int, protocol: c_int, sv: *mut c_int) -> c_int;
    shutdown(fd: c_int, how: c_int) -> c_int;
    setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int;
    getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int;
    poll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: c_int) -> c_int;
    close(fd: c_int) -> c_int;
    close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int;
    closefrom(lowfd: c_int) -> ();
    fclose(stream: *mut libc::FILE) -> c_int;
    dup(fd: c_int) -> c_int;
    dup2(old: c_int, new: c_int) -> c_int;
    dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    fcntl(fd: c_int, cmd: c_int, arg: usize) -> c_int;
    ioctl(fd: c_int, request: libc::c_ulong, arg: *mut c_void) -> c_int;
    sleep(seconds: c_uint) -> c_uint;
    usleep(usec: libc::useconds_t) -> c_int;
    nanosleep(req: *const libc::timespec, rem: *mut libc::timespec) -> c_int;
    clock_nanosleep(clock: libc::clockid_t, flags: c_int, req: *const libc::timespec, rem: *mut libc::timespec) -> c_int;
    ppoll(fds: *mut libc::pollfd, nfds: libc::nfds_t, timeout: *const libc::timespec, sigmask: *const libc::sigset_t) -> c_int;
    select(nfds: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, timeout: *mut libc::timeval) -> c_int;
    pselect(nfds: c_int, r: *mut libc::fd_set, w: *mut libc::fd_set, e: *mut libc::fd_set, timeout: *const libc::timespec, sigmask: *const libc::sigset_t) -> c_int;
    epoll_wait(epfd: c_int, events: *mut libc::epoll_event, maxevents: c_int, timeout: c_int) -> c_int;
    epoll_pwait(epfd: c_int, events: *mut libc::epoll_event, maxevents: c_int, timeout: c_int, sigmask: *const libc::sigset_t) -> c_int;
    getaddrinfo(node: *const libc::c_char, service: *const libc::c_char, hints: *const libc::addrinfo, res: *mut *mut libc::addrinfo) -> c_int;
    getnameinfo(addr: *const sockaddr, addrlen: socklen_t, host: *mut libc::c_char, hostlen: socklen_t, serv: *mut libc::c_char, servlen: socklen_t, flags: c_int) -> c_int;
    waitpid(pid: libc::pid_t, status: *mut c_int, options: c_int) -> libc::pid_t;
    wait4(pid: libc::pid_t, status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> libc::pid_t;
    wait(status: *mut c_int) -> libc::pid_t;
    pipe(fds: *mut c_int) -> c_int;
    pipe2(fds: *mut c_int, flags: c_int) -> c_int;
    dlopen(filename: *const libc::c_char, flags: c_int) -> *mut c_void;
    syscall(number: libc::c_long, a1: libc::c_long, a2: libc::c_long, a3: libc::c_long, a4: libc::c_long, a5: libc::c_long, a6: libc::c_long) -> libc::c_long;
    sched_yield() -> c_int;
    sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int;
    pthread_kill(thread: libc::pthread_t, sig: c_int) -> c_int;
    pthread_create(thread: *mut libc::pthread_t, attr: *const libc::pthread_attr_t, start: crate::threads::StartRoutine, arg: *mut c_void) -> c_int;
    pthread_join(thread: libc::pthread_t, retval: *mut *mut c_void) -> c_int;
    pthread_tryjoin_np(thread: libc::pthread_t, retval: *mut *mut c_void) -> c_int;
    pthread_timedjoin_np(thread: libc::pthread_t, retval: *mut *mut c_void, abstime: *const libc::timespec) -> c_int;
    pthread_clockjoin_np(thread: libc::pthread_t, retval: *mut *mut c_void, clock: libc::clockid_t, abstime: *const libc::timespec) -> c_int;
    pthread_detach(thread: libc::pthread_t) -> c_int;
    pthread_cancel(thread: libc::pthread_t) -> c_int;
    pthread_setname_np(thread: libc::pthread_t, name: *const libc::c_char) -> c_int;
    pthread_getname_np(thread: libc::pthread_t, buf: *mut libc::c_char, len: size_t) -> c_int;
    sigaltstack(new: *const libc::stack_t, old: *mut libc::stack_t) -> c_int;
    pthread_mutex_lock(mutex: *mut libc::pthread_mutex_t) -> c_int;
    pthread_mutex_trylock(mutex: *mut libc::pthread_mutex_t) -> c_int;
    pthread_mutex_timedlock(mutex: *mut libc::pthread_mutex_t, abstime: *const libc::timespec) -> c_int;
    pthread_mutex_clocklock(mutex: *mut libc::pthread_mutex_t, clock: libc::clockid_t, abstime: *const libc::timespec) -> c_int;
    pthread_mutex_unlock(mutex: *mut libc::pthread_mutex_t) -> c_int;
    pthread_cond_wait(cond: *mut libc::pthread_cond_t, mutex: *mut libc::pthread_mutex_t) -> c_int;
    pthread_cond_timedwait(cond: *mut libc::pthread_cond_t, mutex: *mut libc::pthread_mutex_t, abstime: *const libc::timespec) -> c_int;
    pthread_cond_clockwait(cond: *mut libc::pthread_cond_t, mutex: *mut libc::pthread_mutex_t, clock: libc::clockid_t, abstime: *const libc::timespec) -> c_int;
    pthread_cond_signal(cond: *mut libc::pthread_cond_t) -> c_int;
    pthread_cond_broadcast(cond: *mut libc::pthread_cond_t) -> c_int;
    pthread_rwlock_rdlock(lock: *mut libc::pthread_rwlock_t) -> c_int;
    pthread_rwlock_tryrdlock(lock: *mut libc::pthread_rwlock_t) -> c_int;
    pthread_rwlock_timedrdlock(lock: *mut libc::pthread_rwlock_t, abstime: *const libc::timespec) -> c_int;
    pthread_rwlock_clockrdlock(lock: *mut libc::pthread_rwlock_t, clock: libc::clockid_t, abstime: *const libc::timespec) -> c_int;
    pthread_rwlock_wrlock(lock: *mut libc::pthread_rwlock_t) -> c_int;
    pthread_rwlock_trywrlock(lock: *mut libc::pthread_rwlock_t) -> c_int;
    pthread_rwlock_timedwrlock(lock: *mut libc::pthread_rwlock_t, abstime: *const libc::timespec) -> c_int;
    pthread_rwlock_clockwrlock(lock: *mut libc::pthread_rwlock_t, clock: libc::clockid_t, abstime: *const libc::timespec) -> c_int;
    pthread_rwlock_unlock(lock: *mut libc::pthread_rwlock_t) -> c_int;
    pthread_barrier_wait(barrier: *mut libc::pthread_barrier_t) -> c_int;
    pthread_once(once: *mut libc::pthread_once_t, routine: crate::threads::once::Routine) -> c_int;
    sem_wait(sem: *mut libc::sem_t) -> c_int;
    sem_timedwait(sem: *mut libc::sem_t, abstime: *const libc::timespec) -> c_int;
    sem_clockwait(sem: *mut libc::sem_t, clock: libc::clockid_t, abstime: *const libc::timespec) -> c_int;
    sem_post(sem: *mut libc::sem_t) -> c_int;
}
