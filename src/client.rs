//! Finding the preloaded runtime: the C-ABI client side.

use std::sync::OnceLock;

use crate::abi::{self, AbiV1};

/// What `corun::spawn` runs on.
#[derive(Clone, Copy)]
pub(crate) enum Backend {
    /// The preloaded runtime's function table.
    Runtime(&'static AbiV1),
    /// No runtime is preloaded: every coroutine is an OS thread.
    Threads,
    /// A runtime is preloaded but speaks another ABI version.
    Mismatch(u32),
}

/// The backend, looked up once per process.
pub(crate) fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    *BACKEND.get_or_init(find)
}

fn find() -> Backend {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other preconditions.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, abi::SYMBOL.as_ptr()) };
    if symbol.is_null() {
        return Backend::Threads;
    }
    // SAFETY: the runtime exports `corun_abi_v1` as `extern "C" fn() -> *const AbiV1`.
    let get: extern "C" fn() -> *const AbiV1 = unsafe { std::mem::transmute(symbol) };
    let table = get();
    // SAFETY: the runtime returns a pointer to a static table whose first field is the
    // version, present in every version of the layout.
    let version = unsafe { (*table).version };
    if version != abi::VERSION {
        return Backend::Mismatch(version);
    }
    // SAFETY: same version, so the layout is `AbiV1`; the table is static.
    Backend::Runtime(unsafe { &*table })
}

/// Says once per process that coroutines are running on OS threads.
pub(crate) fn warn_threads_fallback() {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        eprintln!(
            "corun: the runtime (libcorun_hook.so) is not preloaded, so corun::spawn runs each \
             coroutine on its own OS thread. Start the program with `corun run PROGRAM` or \
             `LD_PRELOAD=/path/to/libcorun_hook.so PROGRAM`."
        );
    });
}

/// The error for a runtime that speaks another ABI version.
pub(crate) fn mismatch_message(version: u32) -> String {
    format!(
        "corun: the preloaded libcorun_hook.so speaks corun ABI version {version}, but this \
         program was built for version {}; build the hook from the same corun release as the \
         program",
        abi::VERSION
    )
}
