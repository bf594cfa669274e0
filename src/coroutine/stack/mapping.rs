//! One stack mapping: `mmap`, a `PROT_NONE` guard page at the bottom, registration with the
//! overflow handler and with valgrind, and the `vm.max_map_count` diagnosis.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::coroutine::{overflow, valgrind};

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

/// A private anonymous mapping: the page below `bottom` is the guard, `bottom..top` the stack.
///
/// Two words, so stacks are cheap to move around; what else a mapping needs (its valgrind id)
/// is kept in the overflow module's registry.
pub(crate) struct Mapping {
    bottom: usize,
    top: usize,
}

impl Mapping {
    /// A placeholder that owns nothing (dropping it does nothing).
    pub(crate) const fn empty() -> Self {
        Mapping { bottom: 0, top: 0 }
    }

    /// Maps `usable` bytes of stack (a multiple of the page size) plus one guard page.
    pub(crate) fn new(usable: usize) -> io::Result<Self> {
        let page = page_size();
        let len = usable
            .checked_add(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows"))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(explain(io::Error::last_os_error()));
        }
        let start = ptr as usize;
        // SAFETY: the first page of the mapping we just created; nothing else refers to it.
        if unsafe { libc::mprotect(ptr, page, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping the mapping created above, which nothing else knows of.
            unsafe { libc::munmap(ptr, len) };
            return Err(explain(err));
        }
        let (bottom, top) = (start + page, start + len);
        let valgrind_id = valgrind::stack_register(bottom, top);
        overflow::register_stack(start, bottom, top, valgrind_id);
        // The thread that maps stacks is usually the one that runs coroutines on them.
        overflow::ensure_altstack();
        Ok(Mapping { bottom, top })
    }

    /// One past the highest byte.
    #[inline]
    pub(crate) fn top(&self) -> usize {
        self.top
    }

    /// The lowest usable byte (just above the guard page).
    #[inline]
    pub(crate) fn bottom(&self) -> usize {
        self.bottom
    }

    #[inline]
    pub(crate) fn usable_size(&self) -> usize {
        self.top - self.bottom
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.top == 0 {
            return;
        }
        let start = self.bottom - page_size();
        if let Some(valgrind_id) = overflow::unregister_stack(start) {
            valgrind::stack_deregister(valgrind_id);
        }
        // SAFETY: the mapping was created by `Mapping::new`, is owned by this value alone, and no
        // coroutine runs on it any more (its owner is being dropped).
        unsafe { libc::munmap(start as *mut libc::c_void, self.top - start) };
    }
}

/// Turns an `ENOMEM` caused by `vm.max_map_count` into an error that says so.
fn explain(err: io::Error) -> io::Error {
    if err.raw_os_error() != Some(libc::ENOMEM) {
        return err;
    }
    let Some(limit) = max_map_count() else {
        return err;
    };
    let in_use = mappings_in_use().unwrap_or(0);
    // Leave slack: by the time the maps are counted, other threads may have unmapped some
    // (stacks going back, the allocator trimming), and libc maps things of its own.
    if in_use + 1024 < limit {
        return io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot map a coroutine stack: {err}"),
        );
    }
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "cannot map a coroutine stack: the process has {in_use} memory mappings and \
             vm.max_map_count is {limit}. Every live coroutine stack takes 2 (the stack and its \
             guard page), so about {} coroutines fit. Raise the limit with \
             `sudo sysctl -w vm.max_map_count={}` (add `vm.max_map_count = …` to \
             /etc/sysctl.conf to keep it)",
            limit / 2,
            (limit * 16).max(1 << 20)
        ),
    )
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
