//! The guard page below every stack, and how it is made: chosen once per process.
//!
//! - **Guard regions** (`madvise(MADV_GUARD_INSTALL)`, Linux ≥ 6.13): the kernel marks the
//!   page in the page tables. The mapping is not split, so a slab of thousands of stacks stays
//!   one kernel mapping; the marks survive `MADV_DONTNEED` and `fork`, and go with `munmap`.
//!   A hit is a `SIGSEGV` with `SEGV_MAPERR`.
//! - **`mprotect(PROT_NONE)`** (older kernels, or when asked): the page becomes a mapping of
//!   its own, so every stack costs two of the process's `vm.max_map_count` mappings. A hit is
//!   a `SIGSEGV` with `SEGV_ACCERR`.
//!
//! The overflow handler recognises both by the fault address alone (see `overflow`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::limits::{explain, page_size};

/// `MADV_GUARD_INSTALL` (not yet in every libc's headers).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// How guard pages should be made: what a program (or `CORUN_GUARD`) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardMode {
    /// Guard regions where the kernel has them, `mprotect` otherwise (the default).
    Auto,
    /// Guard regions, or an error where the kernel lacks them.
    Madvise,
    /// `mprotect(PROT_NONE)` guard pages (two kernel mappings per stack).
    Mprotect,
}

/// How guard pages are made in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardKind {
    /// Kernel guard regions (`MADV_GUARD_INSTALL`).
    Madvise,
    /// `mprotect(PROT_NONE)` pages.
    Mprotect,
}

// `KIND`: 0 = not decided yet, else `code(kind)`. `FORCED`: whether `set_guard_mode` chose it.
static KIND: AtomicU8 = AtomicU8::new(0);
static FORCED: AtomicU8 = AtomicU8::new(0);

fn code(kind: GuardKind) -> u8 {
    match kind {
        GuardKind::Madvise => 1,
        GuardKind::Mprotect => 2,
    }
}

fn decode(code: u8) -> Option<GuardKind> {
    match code {
        1 => Some(GuardKind::Madvise),
        2 => Some(GuardKind::Mprotect),
        _ => None,
    }
}

impl GuardKind {
    /// Why this kind is in use, for messages.
    pub(crate) fn why(self) -> &'static str {
        match (self, FORCED.load(Ordering::Relaxed) != 0) {
            (GuardKind::Madvise, _) => "kernel guard regions",
            (GuardKind::Mprotect, true) => {
                "mprotect guard pages were asked for: CORUN_GUARD=mprotect or set_guard_mode"
            }
            (GuardKind::Mprotect, false) => {
                "this kernel has no MADV_GUARD_INSTALL, which Linux 6.13 and later use to guard \
                 stacks without extra mappings"
            }
        }
    }
}

/// The kind in use, deciding it (probing the kernel) on first use.
pub fn guard_kind() -> GuardKind {
    if let Some(kind) = decode(KIND.load(Ordering::Acquire)) {
        return kind;
    }
    let probed = if kernel_has_guard_regions() {
        GuardKind::Madvise
    } else {
        GuardKind::Mprotect
    };
    match KIND.compare_exchange(0, code(probed), Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => probed,
        Err(other) => decode(other).unwrap_or(probed),
    }
}

/// Chooses how guard pages are made, before the first stack is mapped (the runtime calls this
/// for `CORUN_GUARD`). Returns the kind now in use.
///
/// # Errors
/// [`GuardMode::Madvise`] on a kernel without guard regions, or a mode that contradicts the
/// kind already used for stacks mapped earlier.
///
/// ```
/// use corun::coroutine::{set_guard_mode, GuardMode};
/// // Auto never fails: it keeps whatever the process already uses.
/// let kind = set_guard_mode(GuardMode::Auto).unwrap();
/// println!("stack guards: {kind:?}");
/// ```
pub fn set_guard_mode(mode: GuardMode) -> Result<GuardKind, String> {
    let wanted = match mode {
        GuardMode::Auto => return Ok(guard_kind()),
        GuardMode::Mprotect => GuardKind::Mprotect,
        GuardMode::Madvise if kernel_has_guard_regions() => GuardKind::Madvise,
        GuardMode::Madvise => {
            return Err(
                "madvise guard regions are not available: this kernel does not support \
                 MADV_GUARD_INSTALL (Linux 6.13 or later does); use auto or mprotect"
                    .to_string(),
            )
        }
    };
    match KIND.compare_exchange(0, code(wanted), Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            FORCED.store(1, Ordering::Relaxed);
            Ok(wanted)
        }
        Err(current) if current == code(wanted) => Ok(wanted),
        Err(current) => Err(format!(
            "stacks are already guarded with {:?}; the guard mode must be chosen before the \
             first stack is made",
            decode(current)
        )),
    }
}

/// Whether `madvise(MADV_GUARD_INSTALL)` works here: tried once on a scratch mapping.
fn kernel_has_guard_regions() -> bool {
    let page = page_size();
    // SAFETY: a fresh two-page anonymous mapping, advised and unmapped here; nothing else
    // knows of it.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if ptr == libc::MAP_FAILED {
            return false;
        }
        let works = libc::madvise(ptr, page, MADV_GUARD_INSTALL) == 0;
        libc::munmap(ptr, 2 * page);
        works
    }
}

/// Makes `[addr, addr + len)` a guard: any access faults.
///
/// # Safety
/// The range must be whole pages of a mapping the caller owns, holding nothing anyone uses.
pub(super) unsafe fn install(addr: usize, len: usize) -> io::Result<()> {
    let kind = guard_kind();
    // SAFETY: guaranteed by the caller; both calls only change how the range may be accessed.
    let result = unsafe {
        match kind {
            GuardKind::Madvise => libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL),
            GuardKind::Mprotect => libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE),
        }
    };
    if result == 0 {
        Ok(())
    } else {
        Err(explain(io::Error::last_os_error(), kind))
    }
}

/// `PIDFD_SELF_THREAD_GROUP`: "this process" for `process_madvise` (Linux ≥ 6.14).
const PIDFD_SELF: libc::c_int = -10001;

/// Whether `process_madvise(PIDFD_SELF, …, MADV_GUARD_INSTALL)` was refused once (then every
/// guard is installed with its own `madvise`).
static NO_BATCH: AtomicBool = AtomicBool::new(false);

/// Makes the first `len` bytes of each of `starts` a guard, in one system call where the
/// kernel allows it (`process_madvise` takes up to 1024 ranges; kernel guard regions only).
///
/// # Safety
/// As for [`install`], for every range.
pub(super) unsafe fn install_many(starts: &[usize], len: usize) -> io::Result<()> {
    let mut done = 0;
    if guard_kind() == GuardKind::Madvise && !NO_BATCH.load(Ordering::Relaxed) {
        let ranges: Vec<libc::iovec> = starts
            .iter()
            .take(1024)
            .map(|&start| libc::iovec {
                iov_base: start as *mut libc::c_void,
                iov_len: len,
            })
            .collect();
        // SAFETY: `ranges` lists whole pages of mappings the caller owns (guaranteed by the
        // caller); the kernel only reads the array.
        let advised = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF,
                ranges.as_ptr(),
                ranges.len(),
                MADV_GUARD_INSTALL,
                0,
            )
        };
        if advised < 0 {
            NO_BATCH.store(true, Ordering::Relaxed); // an older kernel: one call per guard
        } else {
            // The kernel advises the ranges in order and stops at the first it cannot do.
            done = advised as usize / len;
        }
    }
    for &start in &starts[done..] {
        // SAFETY: guaranteed by the caller.
        unsafe { install(start, len)? };
    }
    Ok(())
}
