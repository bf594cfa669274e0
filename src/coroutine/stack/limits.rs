//! What the system allows: the page size, `vm.max_map_count`, and the error that says so when
//! a stack cannot be mapped because the process ran out of memory mappings.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::guard::GuardKind;

/// The system page size, read once.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = if page > 0 { page as usize } else { 4096 };
    PAGE.store(page, Ordering::Relaxed);
    page
}

/// Rounds `bytes` up to whole pages, or `None` on overflow.
pub(crate) fn round_to_pages(bytes: usize) -> Option<usize> {
    let page = page_size();
    Some(bytes.checked_add(page - 1)? & !(page - 1))
}

/// Turns an `ENOMEM` caused by `vm.max_map_count` into an error that says so (and how to raise
/// the limit); any other error is returned as it is.
pub(crate) fn explain(err: io::Error, guards: GuardKind) -> io::Error {
    if err.raw_os_error() != Some(libc::ENOMEM) {
        return err;
    }
    let Some(limit) = max_map_count() else {
        return err;
    };
    let in_use = mappings_in_use().unwrap_or(0);
    // Leave slack: by the time the maps are counted, other threads may have unmapped some
    // (the allocator trimming, say), and libc maps things of its own.
    if in_use + 1024 < limit {
        return io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot map a coroutine stack: {err}"),
        );
    }
    let raise = format!(
        "Raise the limit with `sudo sysctl -w vm.max_map_count={}` (add `vm.max_map_count = …` \
         to /etc/sysctl.conf to keep it)",
        (limit * 16).max(1 << 20)
    );
    let message = match guards {
        GuardKind::Mprotect => format!(
            "cannot map a coroutine stack: the process has {in_use} memory mappings and \
             vm.max_map_count is {limit}. With mprotect guard pages every live coroutine stack \
             takes 2 (the stack and its guard page), so about {} coroutines fit ({}). {raise}",
            limit / 2,
            GuardKind::Mprotect.why()
        ),
        GuardKind::Madvise => format!(
            "cannot map a coroutine stack: the process has {in_use} memory mappings and \
             vm.max_map_count is {limit} (coroutine stacks take one mapping per slab of \
             thousands; the rest belong to the program). {raise}"
        ),
    };
    io::Error::new(io::ErrorKind::OutOfMemory, message)
}

/// `/proc/sys/vm/max_map_count`, if it can be read.
pub(crate) fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The number of lines in `/proc/self/maps`.
fn mappings_in_use() -> Option<usize> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count())
}
