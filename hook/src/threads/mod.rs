//! Threads mode (`CORUN_THREADS=1`, `corun run --threads`): the program's own threads are
//! coroutines.
//!
//! Every `pthread_create` of the program (so every `std::thread::spawn`, `thread::scope`
//! spawn and C `pthread_create`) starts a runtime coroutine with its own thread identity
//! instead of an OS thread; the runtime's own threads (workers, monitor, blocking pool) and
//! the main thread stay OS threads. A coroutine thread's `pthread_t` is what `pthread_self()`
//! says inside it: the address of its `struct pthread`, in its stack slot (see
//! `crate::identity`). This module keeps the table from those `pthread_t`s to their tasks and
//! the join states; `hooks::pthread` holds the interposed functions over it.
//!
//! **Ownership of a coroutine thread's slot** (glibc keeps a joinable thread's stack until it
//! is joined, and so do we, so that a `pthread_t` names one thread until then):
//! - `create` makes the task, marks it a joinable pthread (or detached, from the attribute),
//!   and enters it in the table *before* queueing it, so no finish can precede the entry.
//! - When the coroutine returns, the worker asks `Task::finish_keeps_stack`: a joinable
//!   thread keeps its slot (state "kept"); a detached one is forgotten here (`forget`) and its
//!   slot goes back to the pool — forgotten first, because the next coroutine on that slot
//!   will have the same `pthread_t`.
//! - `join` waits for the finish, reads the result, removes the entry and gives the slot back
//!   (`Task::release_kept_stack`); `detach` of a finished thread does the same without the
//!   result, `detach` of a running one only marks it.
//!
//! Only with per-coroutine identity (`CORUN_TLS=isolated`, the default, where verified): with
//! shared identity a coroutine's `pthread_self()` would be its worker's, so threads mode is
//! then off with a warning and threads stay OS threads.

pub mod barrier;
pub mod cond;
pub mod mutex;
pub mod once;
pub mod rwlock;
pub mod sem;
pub mod word;

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use libc::c_int;

use crate::runtime;
use crate::runtime::current;
use crate::runtime::join;
pub use crate::runtime::join::JoinWait;
use crate::runtime::stack::TaskStack;
use crate::runtime::task::{Detach, Task};
use crate::sync::SpinLock;
use crate::{config, identity, log};

/// A thread's start routine, as `pthread_create` takes it (`C-unwind`: a coroutine thread's
/// `pthread_exit` unwinds out of it, see `hooks::pthread::exit`).
pub type StartRoutine = extern "C-unwind" fn(*mut c_void) -> *mut c_void;

/// What a coroutine thread leaves for its joiner.
struct Outcome {
    /// The start routine's return value (or `pthread_exit`'s), once finished.
    retval: AtomicUsize,
    /// A join is under way (glibc allows one joiner at a time).
    joining: AtomicBool,
}

/// One coroutine thread in the table.
struct Entry {
    task: Arc<Task>,
    outcome: Arc<Outcome>,
}

/// `pthread_t` (the descriptor's address) → the coroutine thread.
static TABLE: SpinLock<Option<HashMap<usize, Entry>>> = SpinLock::new(None);

/// Threads mode's state: not decided yet, on, off.
static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// Whether the program's threads become coroutines: `CORUN_THREADS=1` and per-coroutine
/// identity. Starts the runtime on the first call with `CORUN_THREADS=1` (identity is decided
/// then).
pub fn enabled() -> bool {
    match MODE.load(Ordering::Acquire) {
        ON => true,
        OFF => false,
        _ => decide(),
    }
}

/// Whether the interposed waits on pthread objects (mutexes, condvars, rwlocks, barriers,
/// once, semaphores) use corun's implementations: with `CORUN_THREADS=1`, from the first call
/// on and for every caller (OS threads too, so that one algorithm serves each object), even
/// where coroutine threads turn out to be unavailable.
pub fn objects_are_ours() -> bool {
    config::get().threads
}

#[cold]
fn decide() -> bool {
    let on = config::get().threads && {
        let _ = runtime::get();
        identity::enabled()
    };
    if config::get().threads && !on {
        log::warn(format_args!(
            "CORUN_THREADS=1 ignored: threads stay OS threads, because coroutine threads need \
             per-coroutine identity (not available: CORUN_TLS=shared, or see the warning above)"
        ));
    }
    MODE.store(if on { ON } else { OFF }, Ordering::Release);
    on
}

/// What a new coroutine thread runs: handed to its entry, which takes it back once.
struct Start {
    routine: StartRoutine,
    arg: usize,
    outcome: Arc<Outcome>,
}

/// The task's entry: runs the start routine and leaves its value for the joiner.
///
/// # Safety
/// `data` is a `Box<Start>` from `create`, taken back exactly once.
unsafe extern "C" fn thread_entry(data: *mut c_void) {
    // SAFETY: guaranteed by the caller.
    let start = unsafe { Box::from_raw(data as *mut Start) };
    let (routine, arg) = (start.routine, start.arg);
    match std::panic::catch_unwind(move || routine(arg as *mut c_void)) {
        Ok(retval) => start
            .outcome
            .retval
            .store(retval as usize, Ordering::Release),
        // pthread_exit: its value is kept already.
        Err(payload) if payload.is::<crate::hooks::pthread::exit::ThreadExit>() => {}
        Err(_) => log::fatal(format_args!(
            "an exception or panic escaped a thread's start routine (not caught inside it)"
        )),
    }
}

/// Keeps `retval` as the value of coroutine thread `thread`, which is exiting; false if it is
/// not a coroutine thread.
pub fn set_exit_value(thread: usize, retval: usize) -> bool {
    match lookup(thread) {
        Some((_, outcome)) => {
            outcome.retval.store(retval, Ordering::Release);
            true
        }
        None => false,
    }
}

/// The attribute's wishes that a coroutine thread honours.
pub struct Wishes {
    /// Usable stack bytes.
    pub stack_size: usize,
    pub detached: bool,
}

/// Starts `routine(arg)` as a coroutine thread; returns its `pthread_t`, or the error number
/// for `pthread_create` (`EAGAIN` when no stack can be had).
pub fn create(wishes: &Wishes, routine: StartRoutine, arg: *mut c_void) -> Result<usize, c_int> {
    let runtime = runtime::get();
    let stack = TaskStack::take(wishes.stack_size).map_err(|err| {
        log::debug(format_args!("pthread_create: no coroutine stack: {err}"));
        libc::EAGAIN
    })?;
    let Some(area) = stack.area() else {
        return Err(libc::EAGAIN); // no room for an identity: cannot be a thread
    };
    let thread = area.tp();
    let outcome = Arc::new(Outcome {
        retval: AtomicUsize::new(0),
        joining: AtomicBool::new(false),
    });
    let start = Box::new(Start {
        routine,
        arg: arg as usize,
        outcome: outcome.clone(),
    });
    let task = Task::new(thread_entry, Box::into_raw(start).cast(), None, stack);
    task.make_pthread();
    if wishes.detached {
        let _ = task.detach_pthread(); // not started: it only marks it
    }
    {
        let mut table = TABLE.lock();
        let table = table.get_or_insert_with(HashMap::new);
        if table.contains_key(&thread) {
            // A slot is only reused after its entry is gone (see the module's notes).
            log::fatal(format_args!(
                "pthread_create: thread {thread:#x} is still in the table"
            ));
        }
        table.insert(
            thread,
            Entry {
                task: task.clone(),
                outcome,
            },
        );
    }
    runtime.submit(task);
    Ok(thread)
}

/// Forgets a detached coroutine thread that finished (called by its worker before the slot
/// goes back to the pool).
pub fn forget(thread: usize) {
    if let Some(table) = TABLE.lock().as_mut() {
        table.remove(&thread);
    }
}

/// Forgets `thread` if the table still names `task` by it.
fn forget_task(thread: usize, task: &Arc<Task>) {
    if let Some(table) = TABLE.lock().as_mut() {
        if table
            .get(&thread)
            .is_some_and(|entry| Arc::ptr_eq(&entry.task, task))
        {
            table.remove(&thread);
        }
    }
}

/// The task and outcome of coroutine thread `thread`, if it is one.
fn lookup(thread: usize) -> Option<(Arc<Task>, Arc<Outcome>)> {
    let table = TABLE.lock();
    let entry = table.as_ref()?.get(&thread)?;
    Some((entry.task.clone(), entry.outcome.clone()))
}

/// The task of coroutine thread `thread`, if it is one.
pub fn task_of(thread: usize) -> Option<Arc<Task>> {
    lookup(thread).map(|(task, _)| task)
}

/// Joins coroutine thread `thread`: `None` if it is not one (the caller passes the call to
/// libc), else the error number (0: joined; the start routine's value is in `retval`).
pub fn join(thread: usize, wait: JoinWait, retval: &mut usize) -> Option<c_int> {
    let (task, outcome) = lookup(thread)?;
    if task.is_detached_pthread() {
        return Some(libc::EINVAL);
    }
    let current = current::task();
    if current
        .as_ref()
        .is_some_and(|c| std::ptr::eq(c.task(), Arc::as_ptr(&task)))
    {
        return Some(libc::EDEADLK);
    }
    if outcome.joining.swap(true, Ordering::AcqRel) {
        return Some(libc::EINVAL); // another thread is joining it
    }
    let finished = join::wait_for(current.as_ref(), &task, wait);
    if !finished {
        outcome.joining.store(false, Ordering::Release);
        return Some(match wait {
            JoinWait::Not => libc::EBUSY,
            _ => libc::ETIMEDOUT,
        });
    }
    *retval = outcome.retval.load(Ordering::Acquire);
    forget_task(thread, &task);
    task.release_kept_stack();
    Some(0)
}

/// Detaches coroutine thread `thread`: `None` if it is not one, else the error number.
pub fn detach(thread: usize) -> Option<c_int> {
    let (task, outcome) = lookup(thread)?;
    if outcome.joining.load(Ordering::Acquire) && !task.is_detached_pthread() {
        // A join is under way: as glibc, leave the thread to it (POSIX says nothing).
        return Some(0);
    }
    Some(match task.detach_pthread() {
        Detach::Finished => {
            // Finished already: nobody will join it, so its slot goes back now.
            forget_task(thread, &task);
            task.release_kept_stack();
            0
        }
        Detach::Marked => 0,
        Detach::Already => libc::EINVAL,
    })
}
