//! syscall (for `SYS_futex`) and sched_yield.
//!
//! Every `syscall()` goes through here; all but the futex waits and wakes pass straight on.

use std::sync::atomic::AtomicU32;

use libc::{c_int, c_long, c_uint, timespec};

use super::{guard, set_errno};
use crate::futex;
use crate::real;
use crate::runtime::task::WaitInfo;
use crate::runtime::{self, current, timer};

/// Interposed `syscall(2)`. `SYS_futex` waits inside a coroutine park it; `SYS_futex` wakes
/// from anywhere reach parked coroutines first. Everything else passes through.
///
/// # Safety
/// As for libc's `syscall`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn syscall(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    if number != libc::SYS_futex {
        // Closes made with `syscall` keep the fd table true, as `close` does.
        if number == libc::SYS_close {
            guard(&"syscall(SYS_close)", |_| {
                super::fdops::closing(a1 as c_int)
            });
        } else if number == libc::SYS_futex_waitv {
            // Waiters the per-word counts cannot see: wakes go to the kernel from now on.
            futex::untracked_waiters_possible();
        } else if number == libc::SYS_close_range {
            guard(&"syscall(SYS_close_range)", |_| {
                super::fdops::closing_range(a1 as c_uint, a2 as c_uint, a3 as c_int)
            });
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        return unsafe { real::syscall(number, a1, a2, a3, a4, a5, a6) };
    }
    guard(&"syscall(SYS_futex)", |task| {
        let op = a2 as c_int;
        match op & libc::FUTEX_CMD_MASK {
            libc::FUTEX_WAIT | libc::FUTEX_WAIT_BITSET => {
                if let Some(current) = task {
                    return futex_wait(
                        &current,
                        a1 as usize,
                        op,
                        a3 as u32,
                        a4 as *const timespec,
                        a6 as u32,
                    );
                }
                // A plain thread's wait on a private word: counted, so that a wake knows
                // whether the kernel has waiters there. With no timeout, the deadlock check
                // may also count it as a wait nothing outside the process can end.
                if op & libc::FUTEX_PRIVATE_FLAG != 0 {
                    let _counted = futex::thread_waits_in_kernel(a1 as usize);
                    let _visible = (a4 == 0).then(|| {
                        runtime::deadlock::thread_waits(WaitInfo::Futex {
                            addr: a1 as usize,
                            deadline: 0,
                            shared: false,
                        })
                    });
                    // SAFETY: the caller's arguments, passed on unchanged.
                    return unsafe { real::syscall(number, a1, a2, a3, a4, a5, a6) };
                }
            }
            libc::FUTEX_REQUEUE | libc::FUTEX_CMP_REQUEUE | libc::FUTEX_WAKE_OP => {
                futex::untracked_waiters_possible();
            }
            libc::FUTEX_WAKE | libc::FUTEX_WAKE_BITSET => {
                let bitset = if op & libc::FUTEX_CMD_MASK == libc::FUTEX_WAKE {
                    u32::MAX
                } else {
                    a6 as u32
                };
                // A wake of nobody (count 0) or with bad arguments is the kernel's to answer.
                if bitset != 0 && a1 != 0 && a1 % 4 == 0 && a3 as i32 > 0 {
                    let count = a3 as i32;
                    let woken = futex::wake(a1 as usize, count, bitset);
                    // No plain thread waits on this private word in the kernel: the rest of
                    // the count would wake nobody there.
                    let private = op & libc::FUTEX_PRIVATE_FLAG != 0;
                    if woken >= count || (private && !futex::kernel_may_have_waiters(a1 as usize)) {
                        return c_long::from(woken);
                    }
                    // SAFETY: the caller's futex wake, for the waiters not found here.
                    let rest = unsafe {
                        real::syscall(number, a1, a2, c_long::from(count - woken), a4, a5, a6)
                    };
                    return if rest < 0 {
                        if woken > 0 {
                            c_long::from(woken)
                        } else {
                            rest
                        }
                    } else {
                        rest + c_long::from(woken)
                    };
                }
            }
            _ => {}
        }
        // SAFETY: the caller's arguments, passed on unchanged.
        unsafe { real::syscall(number, a1, a2, a3, a4, a5, a6) }
    })
}

/// A futex wait by a coroutine: checks the arguments as the kernel does, in its order (the
/// timeout, the clock, the bitset, the address, the word), then parks.
fn futex_wait(
    current: &current::CurrentTask,
    addr: usize,
    op: c_int,
    expected: u32,
    timeout: *const timespec,
    bitset_arg: u32,
) -> c_long {
    let fail = |errno| {
        set_errno(errno);
        -1
    };
    let bitset_op = op & libc::FUTEX_CMD_MASK == libc::FUTEX_WAIT_BITSET;
    let timeout = if timeout.is_null() {
        None
    } else {
        // SAFETY: a fault-safe read of a plain C struct.
        let Some(ts) = (unsafe { corun::user_memory::read::<timespec>(timeout as usize) }) else {
            return fail(libc::EFAULT);
        };
        let Some(ns) = timer::timespec_ns(&ts) else {
            return fail(libc::EINVAL);
        };
        Some(ns)
    };
    // FUTEX_CLOCK_REALTIME goes with the absolute waits only.
    if op & libc::FUTEX_CLOCK_REALTIME != 0 && !bitset_op {
        return fail(libc::ENOSYS);
    }
    let bitset = if bitset_op { bitset_arg } else { u32::MAX };
    if bitset == 0 || addr % 4 != 0 {
        return fail(libc::EINVAL);
    }
    // SAFETY: a fault-safe read of the word (unmapped or null: EFAULT, as from the kernel).
    if unsafe { corun::user_memory::read::<u32>(addr) }.is_none() {
        return fail(libc::EFAULT);
    }
    let deadline = match timeout {
        None => 0,
        // Absolute, on CLOCK_REALTIME if asked, else CLOCK_MONOTONIC.
        Some(ns) if bitset_op => {
            let clock = if op & libc::FUTEX_CLOCK_REALTIME != 0 {
                libc::CLOCK_REALTIME
            } else {
                libc::CLOCK_MONOTONIC
            };
            let now = timer::clock_ns(clock);
            timer::now_ns()
                .saturating_add(ns.saturating_sub(now))
                .max(1)
        }
        Some(ns) => timer::now_ns().saturating_add(ns).max(1),
    };
    // SAFETY: an aligned futex word the caller handed to the kernel, just read; futex words are
    // accessed atomically by every party.
    let word = unsafe { &*(addr as *const AtomicU32) };
    let shared = op & libc::FUTEX_PRIVATE_FLAG == 0;
    match futex::wait(current, word, expected, deadline, bitset, shared) {
        Ok(()) => 0,
        Err(errno) => fail(errno),
    }
}

/// Interposed `sched_yield(2)`: inside a coroutine, yields it.
///
/// # Safety
/// As for libc's `sched_yield`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sched_yield() -> c_int {
    guard(&"sched_yield", |task| match task {
        Some(current) => {
            runtime::yield_now(&current);
            0
        }
        // SAFETY: no arguments.
        None => unsafe { real::sched_yield() },
    })
}
