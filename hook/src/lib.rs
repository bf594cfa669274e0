//! `libcorun_hook.so`: the corun runtime, preloaded into a program with `LD_PRELOAD`.
//!
//! This crate will own the one runtime of the process (scheduler, reactor, timers) and the
//! interposed libc symbols. It does not export anything yet: preloading it changes nothing.
//! See `ARCHITECTURE.md` for the plan.
