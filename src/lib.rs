//! corun runs ordinary blocking Rust code as stackful coroutines.
//!
//! Replace `std::thread::spawn` with [`corun::spawn`](spawn), start the program with the
//! runtime preloaded (`corun run PROGRAM`, or `LD_PRELOAD=…/libcorun_hook.so PROGRAM`), and the
//! blocking std calls inside each coroutine (sockets, sleeps, …) suspend the coroutine instead
//! of blocking an OS thread:
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::TcpListener;
//!
//! let listener = TcpListener::bind("127.0.0.1:7000")?;
//! for stream in listener.incoming() {
//!     let mut stream = stream?;
//!     corun::spawn(move || {
//!         let mut buf = [0u8; 1024];
//!         while let Ok(n) = stream.read(&mut buf) {
//!             if n == 0 || stream.write_all(&buf[..n]).is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Without the runtime, [`spawn`] runs each closure on an OS thread (and says so once on
//! stderr), so the same program still works.
//!
//! The context-switch core, [`coroutine`], also works on its own, with no runtime.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod abi;
mod client;
#[doc(hidden)]
pub mod control;
pub mod coroutine;
#[doc(hidden)]
pub mod raw_syscall;
mod spawn;
#[doc(hidden)]
pub mod spin;
mod stats;
#[doc(hidden)]
pub mod user_memory;

pub use spawn::{coroutine_id, spawn, unblock, yield_now, Builder, JoinHandle};
pub use stats::{stats, Stats};
