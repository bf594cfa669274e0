//! Coroutine stacks: the [`Stack`] trait and the pooled, guard-paged [`DefaultStack`].

mod mapping;
mod pool;

use std::io;

pub(crate) use mapping::page_size;
use mapping::Mapping;

/// Default usable size of a [`DefaultStack`]: 256 KiB of address space.
///
/// Only the pages a coroutine touches are committed, so a coroutine that never goes deep costs
/// one or two pages of memory whatever this size is. 256 KiB fits ordinary std code (formatting,
/// std networking, collections) with room to spare; deeply recursive code should ask for more
/// with [`DefaultStack::new`] or, in the runtime, `corun::Builder::stack_size`.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Memory a coroutine runs on.
///
/// # Safety
/// `base()` must be 16-byte aligned, `limit() < base()`, and every address in
/// `limit()..base()` must be readable and writable for as long as the value lives (moving the
/// value must not move the memory). The memory must not be used by anything else while a
/// coroutine runs on it.
pub unsafe trait Stack {
    /// One past the highest usable address: the stack grows down from here.
    fn base(&self) -> usize;
    /// The lowest usable address.
    fn limit(&self) -> usize;
}

/// An `mmap`ed stack with a guard page below it, recycled through a process-wide pool.
///
/// `DefaultStack::new` takes a stack of the right size class from the pool when one is there and
/// maps a new one otherwise; dropping it gives it back to the pool (or unmaps it when the pool is
/// full). Sizes are rounded up to a power of two of at least 16 KiB.
///
/// A coroutine that runs past the bottom hits the guard page; corun's `SIGSEGV` handler
/// recognises that and aborts with a message naming the coroutine, as std does for threads.
///
/// ```
/// use corun::coroutine::{Coroutine, DefaultStack, Stack, Yielder};
/// let stack = DefaultStack::new(64 * 1024)?;
/// assert!(stack.base() - stack.limit() >= 64 * 1024);
/// let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| 42);
/// assert_eq!(co.resume(()).as_return(), Some(42));
/// let _stack_again: DefaultStack = co.into_stack();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct DefaultStack {
    mapping: Mapping,
}

impl DefaultStack {
    /// Returns a stack with at least `size` usable bytes.
    ///
    /// # Errors
    /// The kernel refused the mapping. When that is because the process reached
    /// `vm.max_map_count`, the error says so and how to raise the limit.
    pub fn new(size: usize) -> io::Result<Self> {
        let size = pool::size_class(size)?;
        if let Some(mapping) = pool::take(size) {
            return Ok(DefaultStack { mapping });
        }
        Ok(DefaultStack {
            mapping: Mapping::new(size)?,
        })
    }

    /// Usable bytes (the guard page not included).
    pub fn size(&self) -> usize {
        self.mapping.usable_size()
    }
}

impl Default for DefaultStack {
    /// A stack of [`DEFAULT_STACK_SIZE`].
    ///
    /// # Panics
    /// When the stack cannot be mapped; the message carries the reason.
    fn default() -> Self {
        match DefaultStack::new(DEFAULT_STACK_SIZE) {
            Ok(stack) => stack,
            Err(err) => panic!("corun: cannot allocate a coroutine stack: {err}"),
        }
    }
}

// SAFETY: the mapping is private to this value, page aligned (so 16-aligned), readable and
// writable between `limit` and `base`, and stays where it is when the value moves.
unsafe impl Stack for DefaultStack {
    #[inline]
    fn base(&self) -> usize {
        self.mapping.top()
    }
    #[inline]
    fn limit(&self) -> usize {
        self.mapping.bottom()
    }
}

impl Drop for DefaultStack {
    fn drop(&mut self) {
        let mapping = std::mem::replace(&mut self.mapping, Mapping::empty());
        pool::give_back(mapping);
    }
}

impl std::fmt::Debug for DefaultStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultStack")
            .field("limit", &format_args!("{:#x}", self.limit()))
            .field("base", &format_args!("{:#x}", self.base()))
            .finish()
    }
}

/// How many stacks the pool currently holds, over all size classes.
pub fn pooled_stacks() -> usize {
    pool::len()
}

/// Sets how many stacks of each size class the pool keeps (default 1024). Stacks given back
/// beyond that are unmapped. Lowering it does not unmap stacks already pooled.
pub fn set_pool_capacity(per_class: usize) {
    pool::set_capacity(per_class)
}

/// Unmaps half of the pooled stacks of each size class beyond `keep`. Called periodically, it
/// returns the memory of a burst of coroutines to the system within a few calls.
pub fn trim_pool(keep: usize) {
    pool::trim(keep)
}

// SAFETY: forwards to `S`, whose guarantees hold for as long as the borrow lasts.
unsafe impl<S: Stack + ?Sized> Stack for &mut S {
    fn base(&self) -> usize {
        (**self).base()
    }
    fn limit(&self) -> usize {
        (**self).limit()
    }
}
