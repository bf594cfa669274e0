//! Which blocked call a signal interrupts, and interrupting it.
//!
//! A signal the kernel delivers to a worker thread was meant for "some thread of the
//! process"; on a worker it stands for the coroutines (see the module above for the rules).
//! The trampoline (in signal context) only records what arrived ([`arrived`]) and rings the
//! monitor; the monitor picks the coroutine and wakes it ([`deliver`]), outside signal
//! context, where taking locks is allowed.
//!
//! Coroutines in an interruptible wait are listed ([`list`]) while they wait — only once the
//! program has installed a handler, so a program without handlers pays nothing for this.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use libc::{c_int, c_void, siginfo_t};

use super::actions::{self, NSIG};
use crate::runtime::current::{self, CurrentTask};
use crate::runtime::task::{Task, WaitInfo};
use crate::sync::SpinLock;

// --- what the calling thread's last signal said (for plain threads' own waits) --------------

/// No signal handled since the last [`clear_last`].
pub const NONE: u8 = 0;
/// A signal whose handler has `SA_RESTART`.
pub const RESTARTING: u8 = 1;
/// A signal whose handler does not restart calls.
pub const INTERRUPTING: u8 = 2;

thread_local! {
    static LAST: Cell<u8> = const { Cell::new(NONE) };
}

/// Forgets the calling thread's last signal (before a wait that may be interrupted).
pub fn clear_last() {
    LAST.with(|l| l.set(NONE));
}

/// What the last signal handled on the calling thread since [`clear_last`] asks of an
/// interrupted call: [`NONE`], [`RESTARTING`] or [`INTERRUPTING`].
pub fn last() -> u8 {
    LAST.with(|l| l.get())
}

// --- the coroutines that can be interrupted ---------------------------------------------------

/// A coroutine in an interruptible wait.
struct Blocked {
    task: Arc<Task>,
    /// The wait it is in.
    token: u64,
    /// Its thread pointer (its `pthread_t`), for signals aimed at it with `pthread_kill`.
    tp: usize,
    /// When it started waiting, in list order (the oldest waiter is interrupted first).
    since: u64,
    how: Interruptible,
}

const SHARDS: usize = 16;
static LISTS: [SpinLock<Vec<Blocked>>; SHARDS] = [const { SpinLock::new(Vec::new()) }; SHARDS];
static SINCE: AtomicU64 = AtomicU64::new(0);

/// A coroutine's place in the list; it leaves the list when this drops.
pub struct Listed {
    shard: usize,
    task: *const Task,
    token: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        LISTS[self.shard]
            .lock()
            .retain(|b| !(std::ptr::eq(Arc::as_ptr(&b.task), self.task) && b.token == self.token));
    }
}

/// How a signal can interrupt a wait.
#[derive(Clone, Copy)]
struct Interruptible {
    /// Whether the call restarts after a handler with `SA_RESTART` (read, accept …) rather
    /// than failing with `EINTR` whatever the flags (poll, sleeps, calls with a timeout).
    restartable: bool,
    /// Only a signal aimed at this coroutine interrupts it: futex waits (std's locks and
    /// condvars, which retry them) must not take the process's signals from the calls that
    /// wait longest for them.
    aimed_only: bool,
}

/// Whether (and how) a signal can interrupt a wait for `info`, as signal(7) lists the calls.
/// Joins and calls on the blocking pool are not interrupted.
fn interruptible(info: WaitInfo) -> Option<Interruptible> {
    let (restartable, aimed_only) = match info {
        // A socket with SO_RCVTIMEO/SO_SNDTIMEO (a deadline) fails with EINTR regardless.
        WaitInfo::Fd { deadline, .. } => (deadline == 0, false),
        WaitInfo::Poll { .. } | WaitInfo::Sleep { .. } => (false, false),
        WaitInfo::Child { .. } => (true, false),
        // The kernel restarts an untimed FUTEX_WAIT, not a timed one.
        WaitInfo::Futex { deadline, .. } => (deadline == 0, true),
        WaitInfo::None | WaitInfo::Join { .. } | WaitInfo::Blocking { .. } => return None,
    };
    Some(Interruptible {
        restartable,
        aimed_only,
    })
}

/// Lists the current coroutine, about to park in wait `token` for `info`, if a signal could
/// interrupt that wait and the program has installed a handler.
pub fn list(current: &CurrentTask, token: u64, info: WaitInfo) -> Option<Listed> {
    if !actions::watching() {
        return None;
    }
    let how = interruptible(info)?;
    let task = current.arc();
    let shard = (task.id() as usize) % SHARDS;
    let listed = Listed {
        shard,
        task: Arc::as_ptr(&task),
        token,
    };
    LISTS[shard].lock().push(Blocked {
        task,
        token,
        tp: crate::identity::thread_pointer(),
        since: SINCE.fetch_add(1, Ordering::Relaxed),
        how,
    });
    Some(listed)
}

/// Takes the listed coroutine with the smallest `key` (`None`: not a candidate).
fn take(key: impl Fn(&Blocked) -> Option<u64>) -> Option<Blocked> {
    // A candidate can leave between the look and the take (its wait ended): look again.
    for _ in 0..8 {
        let mut best: Option<(usize, u64)> = None;
        for (i, list) in LISTS.iter().enumerate() {
            for b in list.lock().iter() {
                match (key(b), best) {
                    (Some(k), Some((_, bk))) if k >= bk => {}
                    (Some(k), _) => best = Some((i, k)),
                    (None, _) => {}
                }
            }
        }
        let (shard, k) = best?;
        let mut list = LISTS[shard].lock();
        if let Some(at) = list.iter().position(|b| key(b) == Some(k)) {
            return Some(list.swap_remove(at));
        }
    }
    None
}

/// Interrupts `blocked`'s call as a signal whose handler restarts calls (`restart`) or not
/// would: a restartable call under `SA_RESTART` goes on waiting (it stays listed); any other
/// is woken to fail with `EINTR`.
fn interrupt(blocked: Blocked, restart: bool) {
    if blocked.how.restartable && restart {
        let shard = (blocked.task.id() as usize) % SHARDS;
        LISTS[shard].lock().push(blocked);
        return;
    }
    if blocked.task.interrupt(blocked.token) {
        crate::runtime::schedule(blocked.task);
    }
}

// --- what arrived ------------------------------------------------------------------------

/// Signals delivered to workers for the process, per signal number, by whether their handler
/// restarts calls: each interrupts one coroutine.
static PENDING: [[AtomicU32; 2]; NSIG] = [const { [const { AtomicU32::new(0) }; 2] }; NSIG];

/// Signals aimed at a coroutine with `pthread_kill`: 0 (free), or its `pthread_t` (low 48
/// bits), the signal number (bits 48-55), `SA_RESTART` (bit 62) and delivered (bit 63).
static AIMED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
const AIM_RESTART: u64 = 1 << 62;
const AIM_DELIVERED: u64 = 1 << 63;

/// In the child of a `fork`: forgets the parent's waiting coroutines and pending signals.
///
/// # Safety
/// Only in a forked child, before anything else runs (see `runtime::fork`).
pub unsafe fn reset_in_child() {
    for list in &LISTS {
        // SAFETY: guaranteed by the caller; the parent's tasks are leaked, never dropped here.
        unsafe { list.reset_in_child(Vec::new()) };
    }
    for counts in &PENDING {
        for count in counts {
            count.store(0, Ordering::Relaxed);
        }
    }
    for slot in &AIMED {
        slot.store(0, Ordering::Relaxed);
    }
}

/// Notes that `pthread_kill(tp, sig)` is about to be sent to a coroutine: if that coroutine is
/// in an interruptible wait when the signal arrives, its call is the one interrupted.
/// Returns false (nothing noted) if `tp` is no coroutine listed as waiting now.
pub fn aim(sig: c_int, tp: usize) -> bool {
    if !actions::has_handler(sig) || tp >= 1 << 48 {
        return false;
    }
    let waiting = LISTS.iter().any(|l| l.lock().iter().any(|b| b.tp == tp));
    if !waiting {
        return false;
    }
    let value = tp as u64 | (sig as u64) << 48;
    AIMED.iter().any(|slot| {
        slot.compare_exchange(0, value, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}

/// Called by the trampoline after the user's handler for `sig` ran on this thread (signal
/// context: atomics and raw system calls only).
///
/// # Safety
/// `info` and `context` must be what the kernel passed to an `SA_SIGINFO` handler.
pub unsafe fn arrived(sig: c_int, restart: bool, info: *mut siginfo_t, context: *mut c_void) {
    LAST.with(|l| l.set(if restart { RESTARTING } else { INTERRUPTING }));
    if current::worker().is_none() {
        // A plain thread: the kernel has done to its blocked call what it does for threads.
        return;
    }
    // SAFETY: guaranteed by the caller.
    let code = unsafe { (*info).si_code };
    if code == libc::SI_TKILL {
        // Aimed at a thread: a coroutine (pthread_kill, noted by `aim`), or the worker itself
        // (raise in a coroutine, tgkill), which is running and so has nothing blocked.
        let flags = AIM_DELIVERED | if restart { AIM_RESTART } else { 0 };
        for slot in &AIMED {
            let value = slot.load(Ordering::Acquire);
            if value != 0 && value & AIM_DELIVERED == 0 && (value >> 48) & 0xff == sig as u64 {
                if slot
                    .compare_exchange(value, value | flags, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    crate::runtime::sysmon::ring();
                }
                return;
            }
        }
        return;
    }
    // SAFETY: guaranteed by the caller.
    if current::task().is_some() && unsafe { in_system_call(context) } {
        // The coroutine running here was in a call that passes through to libc: the kernel
        // has interrupted that one.
        return;
    }
    PENDING[sig as usize][usize::from(restart)].fetch_add(1, Ordering::AcqRel);
    crate::runtime::sysmon::ring();
}

/// Whether the interrupted context was inside a system call: it returns `-EINTR` at the
/// instruction after a `syscall`, or is about to run the `syscall` again (a restart).
///
/// # Safety
/// `context` must be the ucontext the kernel passed to an `SA_SIGINFO` handler.
unsafe fn in_system_call(context: *mut c_void) -> bool {
    const SYSCALL: [u8; 2] = [0x0f, 0x05];
    // SAFETY: guaranteed by the caller.
    let regs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rip = regs[libc::REG_RIP as usize] as usize;
    let rax = regs[libc::REG_RAX as usize];
    let code_at = |at: usize| {
        // SAFETY: code the thread was executing, and the two bytes before it when they are on
        // the same page: mapped and readable.
        unsafe { std::ptr::read_unaligned(at as *const [u8; 2]) }
    };
    if code_at(rip) == SYSCALL {
        return true;
    }
    rax == -(libc::EINTR as i64) && rip & 0xfff >= 2 && code_at(rip - 2) == SYSCALL
}

/// Interrupts the calls the signals recorded since the last time ask for (run by the monitor
/// when rung).
pub fn deliver() {
    for slot in &AIMED {
        let value = slot.load(Ordering::Acquire);
        if value & AIM_DELIVERED == 0 {
            continue;
        }
        slot.store(0, Ordering::Release);
        let tp = (value & ((1 << 48) - 1)) as usize;
        if let Some(blocked) = take(|b| (b.tp == tp).then_some(b.since)) {
            interrupt(blocked, value & AIM_RESTART != 0);
        }
    }
    for counts in PENDING.iter().skip(1) {
        for (restart, count) in counts.iter().enumerate() {
            for _ in 0..count.swap(0, Ordering::AcqRel) {
                if let Some(oldest) = take(|b| (!b.how.aimed_only).then_some(b.since)) {
                    interrupt(oldest, restart == 1);
                }
            }
        }
    }
}
