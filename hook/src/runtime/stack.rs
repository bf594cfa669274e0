//! A task's stack: a slot of one of the core's stack slabs, with the coroutine's thread area in
//! the slot's reserve when identities are isolated (see `identity::Area` for the layout).

use std::io;

use corun::coroutine::{DefaultStack, Stack};

use crate::identity::{self, Area};

/// A slab slot, and where the coroutine's stack starts in it.
pub struct TaskStack {
    slot: DefaultStack,
    /// One past the stack's highest byte: below the thread area when there is one.
    base: usize,
}

impl TaskStack {
    /// A stack with at least `size` usable bytes (and room for a thread area when identities
    /// are isolated; call after the runtime has started, which decides that).
    ///
    /// # Errors
    /// As for `DefaultStack::with_reserve`: the kernel refused the memory (the message names
    /// `vm.max_map_count` when that is why).
    pub fn take(size: usize) -> io::Result<TaskStack> {
        let slot = DefaultStack::with_reserve(size, identity::slot_reserve())?;
        let base = slot.base();
        Ok(TaskStack { slot, base })
    }

    /// Places the stack's top below the thread area as the static TLS is laid out now (call
    /// right before making the coroutine: a library loaded since `take` may have added to it).
    pub fn place(&mut self) {
        if let Some(area) = self.area() {
            self.base = identity::stack_base(area.tp());
        }
    }

    /// The thread area at the top of the slot, built or not (`None` without isolated identity).
    pub fn area(&self) -> Option<Area> {
        let (low, high) = self.slot.reserved();
        (high > low).then(|| Area::in_slot(high)).flatten()
    }
}

// SAFETY: `[limit, base)` lies inside the slot, which the `DefaultStack` owns: `base` is at most
// the slot's top (it is the `DefaultStack`'s own base, or after `place` sits below the thread
// area in the slot's reserve), is 16-aligned (page aligned, or `identity::stack_base` rounds
// down to 64), and nothing but the coroutine's stack uses that memory (the area lies above
// `base`).
unsafe impl Stack for TaskStack {
    #[inline]
    fn base(&self) -> usize {
        self.base
    }
    #[inline]
    fn limit(&self) -> usize {
        self.slot.limit()
    }
}
