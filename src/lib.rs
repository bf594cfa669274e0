//! corun runs ordinary blocking Rust code as stackful coroutines.
//!
//! This crate holds the context-switch core, [`coroutine`], which works on its own with no
//! runtime: create a [`coroutine::Coroutine`], resume it, let it suspend.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod coroutine;
#[doc(hidden)]
pub mod raw_syscall;
