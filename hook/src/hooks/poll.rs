//! poll: inside a coroutine, waits for any of the fds (and the timeout) by suspending.

use libc::{c_int, nfds_t, pollfd};

use super::guard;
use crate::fd::{self, Dir, FdEntry, KIND_UNKNOWN};
use crate::real;
use crate::runtime::{self, current, timer};

/// One fd being waited on: its entry, the directions, and what was seen before the check.
struct Watch {
    fd: c_int,
    entry: &'static FdEntry,
    generation: u32,
    read: Option<u64>,
    write: Option<u64>,
}

/// Interposed `poll(2)`.
///
/// # Safety
/// As for libc's `poll`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn poll(fds: *mut pollfd, nfds: nfds_t, timeout: c_int) -> c_int {
    guard("poll", || {
        let Some(current) = current::task() else {
            // SAFETY: the caller's arguments, passed on unchanged.
            return unsafe { real::poll(fds, nfds, timeout) };
        };
        if timeout == 0 || (nfds > 0 && fds.is_null()) || nfds > 1 << 20 {
            // SAFETY: as above; libc reports bad arguments.
            return unsafe { real::poll(fds, nfds, timeout) };
        }
        let deadline = if timeout < 0 {
            0
        } else {
            timer::now_ns().saturating_add(timeout as u64 * 1_000_000)
        };
        // SAFETY: libc requires `fds` to point at `nfds` pollfds.
        let list: &[pollfd] = if nfds == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(fds, nfds as usize) }
        };
        loop {
            // Note what each fd's readiness was before looking, so nothing slips in between.
            let mut watches = Vec::with_capacity(list.len());
            for p in list.iter().filter(|p| p.fd >= 0) {
                let Some(entry) = fd::table().get(p.fd) else {
                    continue;
                };
                if entry.kind() == KIND_UNKNOWN && entry.discover(p.fd).is_err() {
                    continue; // not open: poll reports POLLNVAL
                }
                let wants_read = p.events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) != 0;
                let wants_write = p.events & libc::POLLOUT != 0;
                watches.push(Watch {
                    fd: p.fd,
                    entry,
                    generation: entry.generation(),
                    read: wants_read.then(|| entry.ready_seq(Dir::Read)),
                    write: wants_write.then(|| entry.ready_seq(Dir::Write)),
                });
            }
            // SAFETY: the caller's arguments, without waiting.
            let n = unsafe { real::poll(fds, nfds, 0) };
            if n != 0 {
                return n;
            }
            if deadline != 0 && timer::now_ns() >= deadline {
                return 0;
            }
            let token = current.task().begin_wait();
            let mut parked_ok = true;
            let mut registered: Vec<(&FdEntry, Dir)> = Vec::new();
            'register: for w in &watches {
                for (dir, seen) in [(Dir::Read, w.read), (Dir::Write, w.write)] {
                    let Some(seen) = seen else { continue };
                    match w
                        .entry
                        .add_waiter(w.fd, dir, seen, w.generation, &current, token)
                    {
                        Ok(true) => registered.push((w.entry, dir)),
                        // Already changed (or closed): look again instead of waiting.
                        Ok(false) => {
                            parked_ok = false;
                            break 'register;
                        }
                        // Cannot be watched by epoll (a regular file): poll reported it ready
                        // already, so this is unreachable in practice; do not wait on it.
                        Err(_) => {}
                    }
                }
            }
            if parked_ok {
                if deadline != 0 {
                    current.worker().add_timer(deadline, current.arc(), token);
                }
                runtime::park(&current);
            }
            for (entry, dir) in registered {
                entry.forget_waiter(dir, current.task());
            }
        }
    })
}
