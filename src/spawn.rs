//! `spawn`, `Builder`, `JoinHandle`, `yield_now`: the `std::thread` look-alike API.

use std::any::Any;
use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use crate::abi::{AbiV1, ErrorBuf, SpawnOptions, TaskHandle};
use crate::client::{self, Backend};

/// Spawns a coroutine running `f` and returns a handle to join it, like
/// [`std::thread::spawn`].
///
/// Under the runtime (the program started with `corun run` or with `libcorun_hook.so` in
/// `LD_PRELOAD`), `f` runs as a stackful coroutine on one of the runtime's worker threads, and
/// blocking std calls inside it (sockets, sleeps, …) suspend the coroutine instead of the
/// thread. Without the runtime, `f` runs on a new OS thread, and corun says so once on stderr.
///
/// # Panics
/// If the coroutine cannot be created (for example, no stack can be mapped); use
/// [`Builder::spawn`] to handle that as an error.
///
/// # Examples
/// ```
/// let handle = corun::spawn(|| 6 * 7);
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Builder::new().spawn(f) {
        Ok(handle) => handle,
        Err(err) => panic!("failed to spawn coroutine: {err}"),
    }
}

/// Gives the other coroutines of this worker a turn, like [`std::thread::yield_now`].
/// Outside a coroutine it yields the OS thread.
pub fn yield_now() {
    match client::backend() {
        // SAFETY: the table comes from the runtime; yield_now has no preconditions.
        Backend::Runtime(abi) => unsafe { (abi.yield_now)() },
        _ => std::thread::yield_now(),
    }
}

/// The runtime's id of the coroutine this code runs in, or `None` outside a coroutine (and
/// always without the runtime). Ids start at 1 and are never reused within a process.
///
/// ```
/// assert_eq!(corun::coroutine_id(), None); // doc tests run on plain threads
/// ```
pub fn coroutine_id() -> Option<u64> {
    match client::backend() {
        // SAFETY: the table comes from the runtime; current_id has no preconditions.
        Backend::Runtime(abi) => Some(unsafe { (abi.current_id)() }).filter(|&id| id != 0),
        _ => None,
    }
}

/// Configures a coroutine before spawning it, like [`std::thread::Builder`].
///
/// ```
/// let handle = corun::Builder::new()
///     .name("worker-1".into())
///     .stack_size(64 * 1024)
///     .spawn(|| "done")?;
/// assert_eq!(handle.join().unwrap(), "done");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a Builder does nothing until `spawn` is called"]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with no name and the default stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the coroutine; the name appears in the runtime's diagnostics (stack overflow,
    /// dumps). Without the runtime it names the OS thread.
    pub fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    /// Sets the coroutine's usable stack size in bytes (rounded up to a power of two of at least
    /// 16 KiB). The default is 256 KiB, or `CORUN_STACK_SIZE`.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Spawns the coroutine.
    ///
    /// # Errors
    /// When the runtime cannot create it (for example, no stack can be mapped: the message
    /// then says why), or, without the runtime, when the OS thread cannot be created.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match client::backend() {
            Backend::Runtime(abi) => self.spawn_coroutine(abi, f),
            Backend::Threads => {
                client::warn_threads_fallback();
                let mut builder = std::thread::Builder::new();
                if let Some(name) = self.name {
                    builder = builder.name(name);
                }
                if let Some(size) = self.stack_size {
                    builder = builder.stack_size(size);
                }
                Ok(JoinHandle {
                    imp: Imp::Thread(builder.spawn(f)?),
                })
            }
            Backend::Mismatch(version) => Err(io::Error::other(client::mismatch_message(version))),
        }
    }

    fn spawn_coroutine<F, T>(self, abi: &'static AbiV1, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // One allocation carries the closure in and the result out.
        let packet = Arc::new(Packet {
            f: UnsafeCell::new(Some(f)),
            result: UnsafeCell::new(None),
        });
        let start = Arc::into_raw(packet.clone());
        let name = self.name.as_deref().unwrap_or("");
        let options = SpawnOptions {
            name_ptr: if name.is_empty() {
                std::ptr::null()
            } else {
                name.as_ptr()
            },
            name_len: name.len(),
            stack_size: self.stack_size.unwrap_or(0),
        };
        let mut message = [0u8; 512];
        let mut error = ErrorBuf {
            ptr: message.as_mut_ptr(),
            cap: message.len(),
            len: 0,
        };
        let mut handle: TaskHandle = std::ptr::null_mut();
        // SAFETY: `start` is a counted reference that `run::<F, T>` takes back exactly once;
        // the options, the name and the error buffer outlive the call.
        let errno = unsafe {
            (abi.spawn)(
                run::<F, T>,
                start.cast_mut().cast::<c_void>(),
                &options,
                &mut handle,
                &mut error,
            )
        };
        if errno != 0 {
            // SAFETY: on failure the runtime never calls `run`, so the reference is still ours.
            drop(unsafe { Arc::from_raw(start) });
            let text = String::from_utf8_lossy(&message[..error.len.min(message.len())]);
            let kind = io::Error::from_raw_os_error(errno).kind();
            return Err(io::Error::new(kind, text.into_owned()));
        }
        Ok(JoinHandle {
            imp: Imp::Coroutine {
                abi,
                handle,
                packet,
            },
        })
    }
}

/// What a spawned coroutine starts with and leaves behind: the closure, moved out when it
/// starts, and its result, moved out by `join`.
struct Packet<F, T> {
    f: UnsafeCell<Option<F>>,
    /// Written once by `run` before the coroutine finishes; read by `join` after the runtime
    /// says it finished.
    result: UnsafeCell<Option<std::thread::Result<T>>>,
}

// SAFETY: `f` is taken by the coroutine only, once, before anyone else could look; `result` is
// written by the coroutine and read by the joiner strictly after the runtime's join (which
// orders the two), never concurrently. `F: Send` and `T: Send` move across threads.
unsafe impl<F: Send, T: Send> Sync for Packet<F, T> {}

/// The joiner's view of a [`Packet`], without the closure's type.
trait ResultSlot<T>: Send + Sync {
    /// Takes the result.
    ///
    /// # Safety
    /// Only after the runtime's join returned.
    unsafe fn take(&self) -> Option<std::thread::Result<T>>;
}

impl<F: Send, T: Send> ResultSlot<T> for Packet<F, T> {
    unsafe fn take(&self) -> Option<std::thread::Result<T>> {
        // SAFETY: guaranteed by the caller: the coroutine is done with the cell.
        unsafe { (*self.result.get()).take() }
    }
}

/// The coroutine's entry point: runs the closure, catching its panic.
///
/// # Safety
/// `data` must be an `Arc<Packet<F, T>>` leaked by `spawn_coroutine`, passed exactly once.
unsafe extern "C" fn run<F, T>(data: *mut c_void)
where
    F: FnOnce() -> T,
{
    // SAFETY: guaranteed by the caller.
    let packet = unsafe { Arc::from_raw(data.cast_const().cast::<Packet<F, T>>()) };
    // SAFETY: only this coroutine touches `f`, once (see `Packet`).
    let Some(f) = (unsafe { (*packet.f.get()).take() }) else {
        return;
    };
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    // SAFETY: nobody reads the cell before the coroutine finishes (see `Packet`).
    unsafe { *packet.result.get() = Some(result) };
}

/// An owned permission to join a coroutine, like [`std::thread::JoinHandle`]. Dropping it
/// detaches the coroutine, which keeps running.
pub struct JoinHandle<T> {
    imp: Imp<T>,
}

enum Imp<T> {
    Coroutine {
        abi: &'static AbiV1,
        handle: TaskHandle,
        packet: Arc<dyn ResultSlot<T>>,
    },
    Thread(std::thread::JoinHandle<T>),
}

// SAFETY: the task handle is a reference-counted pointer that the runtime lets any thread use;
// the packet is Sync for T: Send.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` only allows `is_finished`, which the runtime allows from any thread.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// Waits for the coroutine to finish and returns its result: `Err` with the panic payload
    /// if it panicked. Inside a coroutine this suspends the caller, not the thread.
    pub fn join(self) -> std::thread::Result<T> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so `imp` is moved out exactly once.
        let imp = unsafe { std::ptr::read(&this.imp) };
        match imp {
            Imp::Thread(handle) => handle.join(),
            Imp::Coroutine {
                abi,
                handle,
                packet,
            } => {
                // SAFETY: `handle` is live until the release below.
                unsafe {
                    (abi.join)(handle);
                    (abi.release)(handle);
                }
                // SAFETY: the coroutine has finished (join returned), so `run` is done with the
                // cell and nothing else touches it.
                let result = unsafe { packet.take() };
                result.unwrap_or_else(|| Err(Box::new(LostResult) as Box<dyn Any + Send>))
            }
        }
    }

    /// Whether the coroutine has finished running (does not block).
    pub fn is_finished(&self) -> bool {
        match &self.imp {
            Imp::Thread(handle) => handle.is_finished(),
            // SAFETY: `handle` is live while `self` is.
            Imp::Coroutine { abi, handle, .. } => unsafe { (abi.is_finished)(*handle) },
        }
    }

    /// The runtime's id of this coroutine (the value [`coroutine_id`] returns inside it), or
    /// `None` when it runs on an OS thread because the runtime is not preloaded.
    pub fn id(&self) -> Option<u64> {
        match &self.imp {
            Imp::Thread(_) => None,
            // SAFETY: `handle` is live while `self` is.
            Imp::Coroutine { abi, handle, .. } => Some(unsafe { (abi.task_id)(*handle) }),
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Imp::Coroutine { abi, handle, .. } = &self.imp {
            // SAFETY: the handle is released exactly once, here or in `join`.
            unsafe { (abi.release)(*handle) };
        }
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// The payload `join` reports if a coroutine finished without leaving a result, which only
/// happens if the runtime ended it abnormally.
#[derive(Debug)]
struct LostResult;

/// Runs a blocking closure without blocking the coroutine's worker: under the runtime, inside a
/// coroutine, `f` runs on the runtime's small pool of blocking threads while the coroutine is
/// suspended; anywhere else it simply runs here. A panic in `f` comes out of `unblock`.
///
/// Use it for blocking work corun cannot make cooperative: reading regular files, calling C
/// libraries that block, long CPU-bound computations.
///
/// ```
/// let len = corun::unblock(|| std::fs::read("Cargo.toml").map(|bytes| bytes.len()))?;
/// assert!(len > 0);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn unblock<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let abi = match client::backend() {
        Backend::Runtime(abi) => abi,
        _ => return f(),
    };
    let mut slot: (Option<F>, Option<std::thread::Result<T>>) = (Some(f), None);
    // SAFETY: `slot` outlives the call (the runtime returns only after running `run_unblocked`),
    // and `run_unblocked::<F, T>` matches its type.
    unsafe {
        (abi.unblock)(
            run_unblocked::<F, T>,
            (&mut slot as *mut (Option<F>, Option<std::thread::Result<T>>)).cast(),
        )
    };
    match slot.1 {
        Some(Ok(value)) => value,
        Some(Err(payload)) => panic::resume_unwind(payload),
        None => {
            unreachable!("corun: the runtime returned from unblock without running the closure")
        }
    }
}

/// Runs an `unblock` closure, catching its panic.
///
/// # Safety
/// `data` must point at the `(Option<F>, Option<thread::Result<T>>)` slot of `unblock`.
unsafe extern "C" fn run_unblocked<F, T>(data: *mut c_void)
where
    F: FnOnce() -> T,
{
    // SAFETY: guaranteed by the caller; nothing else touches the slot meanwhile.
    let slot = unsafe { &mut *data.cast::<(Option<F>, Option<std::thread::Result<T>>)>() };
    if let Some(f) = slot.0.take() {
        slot.1 = Some(panic::catch_unwind(AssertUnwindSafe(f)));
    }
}
