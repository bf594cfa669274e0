//! `libcorun_hook.so`: the corun runtime, preloaded into a program with `LD_PRELOAD`.
//!
//! It owns the process's one runtime (workers, reactors, timers; see [`runtime`]), the fd
//! table ([`fd`]), and the interposed libc functions ([`hooks`]). The front-end (`corun::spawn`
//! and friends in the user's program) reaches it through the C ABI in [`abi`].
//!
//! Outside a coroutine every hook is a pass-through to libc; the runtime itself starts only at
//! the first spawn, so a preloaded process that never spawns (a child started by `Command`,
//! say) runs as if corun were not there. In threads mode (`CORUN_THREADS=1`, see [`threads`])
//! the program's own `pthread_create`s are spawns too, and the waits on pthread objects are
//! corun's for every caller.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod abi;
pub mod config;
pub mod fd;
pub mod futex;
pub mod hooks;
pub mod identity;
pub mod log;
pub mod real;
pub mod runtime;
pub mod signal;
pub mod sync;
pub mod threads;

use std::fmt;

/// Runs when the library is loaded: resolves the real libc functions, reads and checks the
/// configuration, teaches the overflow handler our coroutines' names, and registers the fork
/// handlers.
#[ctor::ctor(unsafe)]
fn init() {
    real::resolve_all();
    let config = config::get();
    // Auto is decided when the first stack is made (a process that never spawns never asks).
    if config.guard != corun::coroutine::GuardMode::Auto {
        if let Err(why) = corun::coroutine::set_guard_mode(config.guard) {
            log::fatal(format_args!("CORUN_GUARD cannot be honoured: {why}"));
        }
    }
    corun::coroutine::set_pool_capacity(config.stack_pool);
    corun::coroutine::set_describer(describe_current);
    runtime::fork::install();
}

/// Names the coroutine running on this thread (for the stack-overflow message).
fn describe_current(out: &mut dyn fmt::Write) -> fmt::Result {
    match runtime::current::task() {
        Some(current) => {
            let task = current.task();
            task.with_name_if_free(|name| match name {
                Some(name) => write!(out, "coroutine '{name}' (id {})", task.id()),
                None => write!(out, "coroutine {}", task.id()),
            })
        }
        None => out.write_str("a coroutine"),
    }
}
