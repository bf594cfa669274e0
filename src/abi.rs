//! The C ABI between the front-end (`corun::spawn` & co., linked into the user's program) and
//! the runtime (`libcorun_hook.so`, preloaded).
//!
//! The runtime exports one symbol, [`SYMBOL`], returning a pointer to a static [`AbiV1`] table.
//! The front-end finds it with `dlsym(RTLD_DEFAULT, …)` and checks [`AbiV1::version`] before
//! using it. Both sides compile this file (the hook depends on this crate), so the layout is
//! defined once.
//!
//! Rules of the ABI:
//! - nothing unwinds across it: the front-end catches the user's panics in its own entry
//!   function, and the runtime aborts with a message if one of its functions panics;
//! - memory allocated on one side is freed on that side (each side has its own allocator
//!   instance of std); only raw pointers and plain C types cross.

use std::ffi::c_void;

/// The symbol the runtime exports: `extern "C" fn() -> *const AbiV1`.
pub const SYMBOL: &std::ffi::CStr = c"corun_abi_v1";

/// The version this front-end speaks.
pub const VERSION: u32 = 1;

/// The function a spawned coroutine runs: called once, with the `data` given to `spawn`.
/// It must not unwind.
pub type EntryFn = unsafe extern "C" fn(data: *mut c_void);

/// An opaque reference to a spawned coroutine, owned by the front-end's `JoinHandle`; released
/// exactly once with [`AbiV1::release`].
pub type TaskHandle = *mut c_void;

/// Options for [`AbiV1::spawn`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SpawnOptions {
    /// UTF-8 name bytes (not NUL-terminated), or null for an unnamed coroutine.
    pub name_ptr: *const u8,
    /// Length of the name in bytes.
    pub name_len: usize,
    /// Usable stack size in bytes, or 0 for the runtime's default.
    pub stack_size: usize,
}

/// A buffer the runtime writes an error message into (UTF-8, truncated to `cap`).
#[repr(C)]
#[derive(Debug)]
pub struct ErrorBuf {
    /// Where to write.
    pub ptr: *mut u8,
    /// Capacity in bytes.
    pub cap: usize,
    /// Set by the runtime: bytes written.
    pub len: usize,
}

/// The runtime's function table, version 1.
#[repr(C)]
#[derive(Debug)]
pub struct AbiV1 {
    /// Always [`VERSION`] for this layout.
    pub version: u32,
    /// `size_of::<AbiV1>()` as the runtime knows it.
    pub size: u32,
    /// Creates a coroutine that will run `entry(data)`. On success stores its handle in
    /// `*handle` and returns 0. On failure returns an errno value, writes a message into
    /// `*error`, and `entry` will never be called (the caller still owns `data`).
    pub spawn: unsafe extern "C" fn(
        entry: EntryFn,
        data: *mut c_void,
        options: *const SpawnOptions,
        handle: *mut TaskHandle,
        error: *mut ErrorBuf,
    ) -> i32,
    /// Waits until the coroutine has finished: suspends the caller when it is itself a
    /// coroutine, blocks the thread otherwise. Everything the coroutine did happens-before the
    /// return. May be called more than once.
    pub join: unsafe extern "C" fn(handle: TaskHandle),
    /// Whether the coroutine has finished (non-blocking).
    pub is_finished: unsafe extern "C" fn(handle: TaskHandle) -> bool,
    /// Gives up a handle. The coroutine keeps running if it has not finished (detached).
    pub release: unsafe extern "C" fn(handle: TaskHandle),
    /// Yields the current coroutine (back of its worker's queue). Outside a coroutine:
    /// `sched_yield`.
    pub yield_now: unsafe extern "C" fn(),
    /// The id of the coroutine running on this thread, or 0 outside a coroutine.
    pub current_id: unsafe extern "C" fn() -> u64,
    /// The id of the coroutine behind `handle` (ids start at 1 and are never reused).
    pub task_id: unsafe extern "C" fn(handle: TaskHandle) -> u64,
    /// Runs `f(data)` on the runtime's blocking pool and suspends the calling coroutine until
    /// it returns; outside a coroutine, calls it directly. `f` must not unwind.
    pub unblock: unsafe extern "C" fn(f: UnblockFn, data: *mut c_void),
    /// Fills `*out` with the runtime's counters: the fields up to `runnable` (the first
    /// layout of [`StatsV1`]); see `stats_sized` for the rest.
    pub stats: unsafe extern "C" fn(out: *mut StatsV1),
    /// Fills the first `size` bytes of `*out` (at most `size_of::<StatsV1>()` as the runtime
    /// knows it): a caller built with fewer fields gets those. Present when `size` of this
    /// table covers it (runtimes since the stuck and deadlock counters).
    pub stats_sized: unsafe extern "C" fn(out: *mut StatsV1, size: usize),
}

impl AbiV1 {
    /// Whether the table (of `self.size` bytes, as the runtime built it) has `stats_sized`.
    pub fn has_stats_sized(&self) -> bool {
        self.size as usize
            >= std::mem::offset_of!(AbiV1, stats_sized) + std::mem::size_of::<usize>()
    }
}

/// The most workers [`StatsV1`] reports run-queue lengths for.
pub const STATS_MAX_WORKERS: usize = 64;

/// The runtime's counters, filled by [`AbiV1::stats`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StatsV1 {
    /// Coroutines spawned so far.
    pub spawned: u64,
    /// Coroutines a worker has started so far.
    pub started: u64,
    /// Coroutines that have finished so far.
    pub finished: u64,
    /// Coroutine resumes so far (each is a switch in and, later, one out).
    pub context_switches: u64,
    /// Coroutines waiting for an fd now.
    pub fd_waiters: u64,
    /// Coroutines waiting on a futex word now.
    pub futex_waiters: u64,
    /// Stacks in the pool, ready for reuse.
    pub pooled_stacks: u64,
    /// Threads in the blocking pool.
    pub blocking_threads: u64,
    /// Coroutine dumps printed so far.
    pub dumps: u64,
    /// Workers with a thread (the first entries of `runnable`).
    pub workers: u32,
    /// Runnable coroutines queued on each worker.
    pub runnable: [u32; STATS_MAX_WORKERS],
    // Fields after `runnable` are filled by `stats_sized` only.
    /// Stuck-worker incidents so far.
    pub stuck_incidents: u64,
    /// Deadlocks reported so far.
    pub deadlocks: u64,
}

/// The bytes of [`StatsV1`] that `AbiV1::stats` fills (its first layout).
pub const STATS_V1_FIRST_SIZE: usize = std::mem::offset_of!(StatsV1, stuck_incidents);

/// A function for [`AbiV1::unblock`]; it must not unwind.
pub type UnblockFn = unsafe extern "C" fn(data: *mut c_void);
