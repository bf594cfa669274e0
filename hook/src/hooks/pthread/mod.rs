//! The pthread functions threads mode answers (see `crate::threads`): thread creation, join,
//! detach, exit, names and the alternate signal stack for coroutine threads, and the waits
//! on pthread objects (mutex, condvar, rwlock, barrier, once, semaphore) for every caller, so
//! that a coroutine waiting on one is suspended and anyone's release wakes it. One concept
//! per file. Outside threads mode each is an exact pass-through to libc (`sigaltstack` aside:
//! inside any coroutine it keeps the worker's alternate stack, see `altstack`).

pub mod altstack;
pub mod barrier;
pub mod cancel;
pub mod cond;
pub mod create;
pub mod detach;
pub mod exit;
pub mod join;
pub mod mutex;
pub mod name;
pub mod once;
pub mod rwlock;
pub mod sem;
