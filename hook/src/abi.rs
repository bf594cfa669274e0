//! The C ABI the front-end calls: `corun_abi_v1` and the functions in its table.

use std::ffi::c_void;
use std::sync::Arc;

use corun::abi::{
    AbiV1, EntryFn, ErrorBuf, SpawnOptions, StatsV1, TaskHandle, UnblockFn, STATS_MAX_WORKERS,
    STATS_V1_FIRST_SIZE, VERSION,
};

use crate::config;
use crate::hooks::guard_abi;
use crate::runtime::stack::TaskStack;
use crate::runtime::task::Task;
use crate::runtime::{self, current};

static TABLE: AbiV1 = AbiV1 {
    version: VERSION,
    size: std::mem::size_of::<AbiV1>() as u32,
    spawn,
    join,
    is_finished,
    release,
    yield_now,
    current_id,
    task_id,
    unblock,
    stats,
    stats_sized,
};

/// The one symbol the front-end looks up.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn corun_abi_v1() -> *const AbiV1 {
    &TABLE
}

/// Writes `message` into the caller's buffer (truncated).
///
/// # Safety
/// `error` must be null or point at a valid `ErrorBuf` whose `ptr` has `cap` writable bytes.
unsafe fn report(error: *mut ErrorBuf, message: &str) {
    if error.is_null() {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let error = unsafe { &mut *error };
    let n = message.len().min(error.cap);
    // SAFETY: `n <= cap` bytes into the caller's buffer.
    unsafe { std::ptr::copy_nonoverlapping(message.as_ptr(), error.ptr, n) };
    error.len = n;
}

unsafe extern "C" fn spawn(
    entry: EntryFn,
    data: *mut c_void,
    options: *const SpawnOptions,
    handle: *mut TaskHandle,
    error: *mut ErrorBuf,
) -> i32 {
    guard_abi("corun_spawn", || {
        // SAFETY: the front-end passes a valid SpawnOptions.
        let options = unsafe { &*options };
        let name = if options.name_ptr.is_null() {
            None
        } else {
            // SAFETY: the front-end passes `name_len` bytes of UTF-8.
            let bytes = unsafe { std::slice::from_raw_parts(options.name_ptr, options.name_len) };
            Some(String::from_utf8_lossy(bytes).into_owned().into_boxed_str())
        };
        let size = match options.stack_size {
            0 => config::get().stack_size,
            n => n,
        };
        // The runtime first: starting it decides whether stacks hold thread areas.
        let runtime = runtime::get();
        let stack = match TaskStack::take(size) {
            Ok(stack) => stack,
            Err(err) => {
                // SAFETY: the front-end passes a valid ErrorBuf.
                unsafe { report(error, &err.to_string()) };
                return err.raw_os_error().unwrap_or(libc::ENOMEM);
            }
        };
        let task = Task::new(entry, data, name, stack);
        // SAFETY: the front-end passes a valid out-pointer; it owns this reference now.
        unsafe { *handle = Arc::into_raw(task.clone()) as TaskHandle };
        runtime.submit(task);
        0
    })
}

/// The task behind a handle, borrowed.
///
/// # Safety
/// `handle` must be a live handle from `spawn`.
unsafe fn task<'a>(handle: TaskHandle) -> &'a Task {
    // SAFETY: guaranteed by the caller: the handle owns a strong count.
    unsafe { &*(handle as *const Task) }
}

unsafe extern "C" fn join(handle: TaskHandle) {
    guard_abi("corun_join", || {
        // SAFETY: the front-end passes a live handle.
        let target = unsafe { task(handle) };
        let current = current::task();
        runtime::join::wait_for(current.as_ref(), target, runtime::join::JoinWait::Forever);
    })
}

unsafe extern "C" fn is_finished(handle: TaskHandle) -> bool {
    // SAFETY: the front-end passes a live handle.
    guard_abi("corun_is_finished", || {
        unsafe { task(handle) }.is_finished()
    })
}

unsafe extern "C" fn release(handle: TaskHandle) {
    guard_abi("corun_release", || {
        // SAFETY: the handle owns one strong count, given up here exactly once.
        drop(unsafe { Arc::from_raw(handle as *const Task) });
    })
}

unsafe extern "C" fn yield_now() {
    guard_abi("corun_yield_now", || match current::task() {
        Some(current) => runtime::yield_now(&current),
        None => crate::sync::sched_yield(),
    })
}

unsafe extern "C" fn current_id() -> u64 {
    guard_abi("corun_current_id", || {
        current::task().map_or(0, |c| c.task().id())
    })
}

unsafe extern "C" fn task_id(handle: TaskHandle) -> u64 {
    // SAFETY: the front-end passes a live handle.
    guard_abi("corun_task_id", || unsafe { task(handle) }.id())
}

/// Lets a raw pointer travel to a pool thread.
struct SendPtr(*mut c_void);
// SAFETY: the front-end's closure behind it is `Send`, and the caller stays suspended (keeping
// it alive) until the pool has run it.
unsafe impl Send for SendPtr {}

unsafe extern "C" fn unblock(f: UnblockFn, data: *mut c_void) {
    guard_abi("corun_unblock", || match current::task() {
        Some(current) => {
            let data = SendPtr(data);
            runtime::blocking::run(&current, "corun::unblock", move || {
                let data = data;
                // SAFETY: the front-end's function and data; it does not unwind.
                unsafe { f(data.0) }
            })
        }
        // SAFETY: as above, on this thread.
        None => unsafe { f(data) },
    })
}

unsafe extern "C" fn stats(out: *mut StatsV1) {
    // SAFETY: the front-end passes a valid out-pointer to the first layout of StatsV1.
    unsafe { fill_stats("corun_stats", out, STATS_V1_FIRST_SIZE) }
}

unsafe extern "C" fn stats_sized(out: *mut StatsV1, size: usize) {
    // SAFETY: the front-end passes an out-pointer with `size` writable bytes.
    unsafe { fill_stats("corun_stats_sized", out, size) }
}

/// Writes the first `size` bytes (at most the whole struct) of the counters to `out`.
///
/// # Safety
/// `out` must have `size` writable bytes.
unsafe fn fill_stats(name: &'static str, out: *mut StatsV1, size: usize) {
    guard_abi(name, || {
        let c = runtime::counters::gather(runtime::try_get());
        let mut stats = StatsV1 {
            spawned: c.spawned,
            started: c.started,
            finished: c.finished,
            context_switches: c.switches,
            fd_waiters: c.fd_waiters,
            futex_waiters: c.futex_waiters,
            pooled_stacks: c.pooled_stacks,
            blocking_threads: c.blocking_threads,
            dumps: c.dumps,
            workers: c.runnable.len().min(STATS_MAX_WORKERS) as u32,
            runnable: [0; STATS_MAX_WORKERS],
            stuck_incidents: c.stuck_incidents,
            deadlocks: c.deadlocks,
        };
        for (slot, &n) in stats.runnable.iter_mut().zip(&c.runnable) {
            *slot = n.min(u32::MAX as usize) as u32;
        }
        let n = size.min(std::mem::size_of::<StatsV1>());
        // SAFETY: `n` bytes fit in both: the caller's buffer (guaranteed) and `stats`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&stats as *const StatsV1).cast::<u8>(),
                out.cast::<u8>(),
                n,
            )
        };
    })
}
