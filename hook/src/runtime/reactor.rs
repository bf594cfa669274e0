//! A worker's epoll instance and the eventfd that wakes it.
//!
//! File descriptors are registered once per worker, edge-triggered for both directions; the
//! event's data carries the fd and its generation in the fd table, so an event that arrives for
//! a closed (and maybe reused) fd number is recognised as stale and dropped.

use std::io;

use libc::c_int;

use corun::raw_syscall;

/// The epoll data value of the wake-up eventfd.
const WAKER: u64 = u64::MAX;

/// What one epoll event says.
pub enum Event {
    /// The worker was woken through its eventfd.
    Wake,
    /// `fd` (at `generation`) is ready for `events` (`EPOLL*` bits).
    Io {
        fd: c_int,
        generation: u32,
        events: u32,
    },
}

/// A worker's epoll fd and wake-up eventfd.
pub struct Reactor {
    epoll: c_int,
    waker: c_int,
}

impl Reactor {
    /// Creates the epoll instance and registers the eventfd in it.
    pub fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscalls creating new fds.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epoll < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let waker = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if waker < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKER,
        };
        // SAFETY: both fds were just created; `event` is valid.
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, waker, &mut event) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reactor { epoll, waker })
    }

    /// Registers `fd` for both directions, edge-triggered. Returns the errno on failure
    /// (`EPERM`: the fd cannot be polled, e.g. a regular file).
    pub fn register(&self, fd: c_int, generation: u32) -> Result<(), c_int> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: (u64::from(generation) << 32) | u64::from(fd as u32),
        };
        // SAFETY: `event` is valid; a bad fd is reported as an error.
        let rc = unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        if rc == 0 {
            return Ok(());
        }
        match errno() {
            libc::EEXIST => Ok(()),
            e => Err(e),
        }
    }

    /// In the child of a `fork`: closes the child's copies of the epoll instance and the
    /// eventfd (the parent goes on using them; the child makes reactors of its own).
    pub fn close_in_child(&self) {
        // SAFETY: our own fds; the reactor is never used again in this process.
        unsafe {
            crate::real::close(self.epoll);
            crate::real::close(self.waker);
        }
    }

    /// Removes `fd` (before it is closed: a dup'd descriptor would keep the registration).
    pub fn deregister(&self, fd: c_int) {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL; errors (not registered) are fine.
        unsafe { libc::epoll_ctl(self.epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Waits up to `timeout_ms` (-1: no limit) for events, passing each to `on_event`.
    pub fn poll(
        &self,
        events: &mut [libc::epoll_event],
        timeout_ms: c_int,
        mut on_event: impl FnMut(Event),
    ) {
        // SAFETY: `events` is a valid buffer of the given length. Raw syscall: the interposed
        // epoll_wait would be the wrong one to call from the runtime itself.
        let n = unsafe {
            raw_syscall::syscall6(
                libc::SYS_epoll_wait as usize,
                self.epoll as usize,
                events.as_mut_ptr() as usize,
                events.len(),
                timeout_ms as isize as usize,
                0,
                0,
            )
        };
        if n <= 0 {
            return; // timeout, or EINTR
        }
        for event in &events[..n as usize] {
            let data = event.u64;
            if data == WAKER {
                self.drain_waker();
                on_event(Event::Wake);
            } else {
                on_event(Event::Io {
                    fd: data as u32 as c_int,
                    generation: (data >> 32) as u32,
                    events: event.events,
                });
            }
        }
    }

    /// Wakes the thread blocked in [`poll`](Self::poll), if any (or makes its next poll return).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a live u64 to our eventfd.
        unsafe {
            raw_syscall::syscall3(
                libc::SYS_write as usize,
                self.waker as usize,
                &one as *const u64 as usize,
                8,
            )
        };
    }

    fn drain_waker(&self) {
        let mut value: u64 = 0;
        // SAFETY: reading 8 bytes into a live u64 from our (non-blocking) eventfd.
        unsafe {
            raw_syscall::syscall3(
                libc::SYS_read as usize,
                self.waker as usize,
                &mut value as *mut u64 as usize,
                8,
            )
        };
    }
}

/// The calling thread's errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns the thread's errno slot.
    unsafe { *libc::__errno_location() }
}
