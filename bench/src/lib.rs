//! Shared pieces of corun's side-by-side benchmark suite.
//!
//! The suite is a driver (`corun-bench`) that runs small *peer programs* — one per runtime:
//! `std-peer` (plain std code, spawning with `corun::spawn` or `std::thread::spawn`),
//! `tokio-peer`, `may-peer`, the Go program in `go/`, the context-switch microbenchmark
//! `core-switch` and the echo load generator `echo-loadgen` — and reads what they print.
//!
//! This library holds what the driver and the peers share: the command-line parsing of the
//! peers ([`args`]), the line protocol they print ([`protocol`]) and the `/proc` readers
//! ([`procfs`]).

pub mod args;
pub mod procfs;
pub mod protocol;
