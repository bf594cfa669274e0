//! Coroutine stacks: the [`Stack`] trait and [`DefaultStack`], carved from guard-paged slabs.

mod guard;
mod limits;
mod slab;

use std::io;

pub use guard::{guard_kind, set_guard_mode, GuardKind, GuardMode};
pub(crate) use limits::page_size;
use slab::{Geometry, Slab};

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

/// A stack with a guard page below it, carved from a slab of many stacks of the same size.
///
/// `DefaultStack::new` takes the most recently used idle stack of its size class (its pages
/// are likely still warm) or carves a new one; dropping it makes it idle again. Sizes are
/// rounded up to a power of two of at least 16 KiB. Stacks of up to 64 MiB share slabs:
/// large `MAP_NORESERVE` mappings of many stacks each, so a million stacks take a few hundred
/// kernel mappings where the kernel has guard regions (Linux ≥ 6.13; see [`GuardKind`]).
/// Larger stacks get a mapping of their own.
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
    /// The slot's lowest address: its guard page.
    slot: usize,
    owner: Owner,
}

/// Where a stack goes when it is dropped.
enum Owner {
    /// Back to its slab, idle.
    Slab(&'static Slab),
    /// Unmapped: a stack with a mapping of its own (and its valgrind id).
    Solo(Box<(Geometry, usize)>),
}

impl DefaultStack {
    /// Returns a stack with at least `size` usable bytes.
    ///
    /// # Errors
    /// The kernel refused the memory. When that is because the process reached
    /// `vm.max_map_count`, the error says so and how to raise the limit.
    pub fn new(size: usize) -> io::Result<Self> {
        DefaultStack::with_reserve(size, 0)
    }

    /// Returns a stack with at least `size` usable bytes and, above it, `reserve` bytes
    /// (rounded up to whole pages) for the caller's own use: [`reserved`](Self::reserved).
    ///
    /// Idle stacks keep what was in their reserve, and a stack taken again may be one that was
    /// used before: the runtime keeps each coroutine's thread area there and reuses it. Before
    /// the memory of an idle stack is given back to the system (its reserve then reads as
    /// zeros), the function set with [`set_reserve_finalizer`] sees the reserve.
    ///
    /// ```
    /// use corun::coroutine::DefaultStack;
    /// let stack = DefaultStack::with_reserve(16 * 1024, 100)?;
    /// let (low, high) = stack.reserved();
    /// assert!(high - low >= 100);
    /// assert_eq!(low, corun::coroutine::Stack::base(&stack));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`new`](Self::new).
    pub fn with_reserve(size: usize, reserve: usize) -> io::Result<Self> {
        let usable = slab::size_class(size)?;
        let reserve = limits::round_to_pages(reserve).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "stack reserve is too large")
        })?;
        // The thread that takes stacks is usually the one that runs coroutines on them.
        crate::coroutine::overflow::ensure_altstack();
        if let Some(slab) = Slab::get(usable, reserve) {
            return Ok(DefaultStack {
                slot: slab.take()?,
                owner: Owner::Slab(slab),
            });
        }
        let geometry = Geometry {
            guard: page_size(),
            usable,
            reserve,
        };
        let (slot, valgrind_id) = slab::map_solo(&geometry)?;
        Ok(DefaultStack {
            slot,
            owner: Owner::Solo(Box::new((geometry, valgrind_id))),
        })
    }

    fn geometry(&self) -> &Geometry {
        match &self.owner {
            Owner::Slab(slab) => slab.geometry(),
            Owner::Solo(solo) => &solo.0,
        }
    }

    /// Usable bytes (the guard page and the reserve not included).
    pub fn size(&self) -> usize {
        self.geometry().usable
    }

    /// The reserve above the stack: `[low, high)`, whole pages (empty without one).
    pub fn reserved(&self) -> (usize, usize) {
        let geometry = self.geometry();
        let top = self.slot + geometry.stride();
        (top - geometry.reserve, top)
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

// SAFETY: the slot is private to this value (a slab hands each out once until it is given
// back), page aligned (so 16-aligned), readable and writable between `limit` and `base`, and
// stays where it is when the value moves.
unsafe impl Stack for DefaultStack {
    #[inline]
    fn base(&self) -> usize {
        let geometry = self.geometry();
        self.slot + geometry.guard + geometry.usable
    }
    #[inline]
    fn limit(&self) -> usize {
        self.slot + self.geometry().guard
    }
}

impl Drop for DefaultStack {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Slab(slab) => slab.give_back(self.slot),
            Owner::Solo(solo) => slab::unmap_solo(&solo.0, self.slot, solo.1),
        }
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

/// How many idle stacks the slabs hold, ready for reuse, over all sizes.
pub fn pooled_stacks() -> usize {
    slab::idle_total()
}

/// Sets how many idle stacks of each size keep their memory (default 1024). The pages of idle
/// stacks beyond that are given back to the system (in batches); the stacks themselves stay
/// ready for reuse.
pub fn set_pool_capacity(per_class: usize) {
    slab::set_capacity(per_class)
}

/// Gives back the memory of half of the idle stacks of each size beyond `keep`. Called
/// periodically, it returns the memory of a burst of coroutines to the system within a few
/// calls.
pub fn trim_pool(keep: usize) {
    slab::trim_all(keep)
}

/// Takes the stack pool's locks (the slabs', then the overflow registry's) and keeps them
/// across a `fork`, so that the child does not inherit one held in the middle of a change by
/// a thread it does not have. Call [`after_fork`] in both processes.
#[doc(hidden)]
pub fn before_fork() {
    slab::hold_all();
    super::overflow::hold_registry();
}

/// Releases what [`before_fork`] took (in the parent, and in the child).
///
/// # Safety
/// The calling thread called `before_fork`, and the `fork` it was for has returned.
#[doc(hidden)]
pub unsafe fn after_fork() {
    // SAFETY: held by this thread since `before_fork`.
    unsafe {
        super::overflow::release_registry();
        slab::release_all();
    }
}

/// Sets the function that sees the reserve (`low`, `high`) of an idle stack made with
/// [`DefaultStack::with_reserve`] just before its memory is given back to the system, or
/// before a stack with a mapping of its own is unmapped. It runs on the thread that trims (or
/// drops the stack) and must not use the stack.
pub fn set_reserve_finalizer(finalizer: fn(usize, usize)) {
    slab::set_finalizer(finalizer)
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
