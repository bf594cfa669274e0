//! The machine-specific half of the context switch.
//!
//! Each supported architecture provides the same items (plus `resume_tp`, a resume that also
//! installs the coroutine's own thread pointer, and `probe_fs_writer`):
//! - `init_frame`: lay out a fresh stack so that the first switch enters the trampoline;
//! - `initial_closure`: the closure pointer `init_frame` stored, before the first switch;
//! - `resume`: save the resumer's context, run the coroutine, return what it sent;
//! - `suspend`: save the coroutine's context, return to the resumer, return what it sends next;
//! - `switch_final`: resume the other side without saving anything (the coroutine is finished).

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "corun supports only x86_64 Linux (target_arch = \"x86_64\", target_os = \"linux\"); \
     this target is not supported yet"
);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use x86_64::*;
