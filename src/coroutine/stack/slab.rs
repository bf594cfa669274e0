//! Slabs: the stacks of one size, carved out of large mappings and reused last-in, first-out.
//!
//! ```text
//!   one chunk = one mmap (MAP_NORESERVE: only the pages a coroutine touches cost memory)
//!
//!   low addresses                                                          high addresses
//!   ┌───────┬──────────────────────────────┬───────────┬───────┬──────────── …
//!   │ guard │ stack          ← grows down  │ reserve   │ guard │ stack …
//!   └───────┴──────────────────────────────┴───────────┴───────┴──────────── …
//!   ^ slot  ^ limit()                      ^ base()    ^ top = the next slot
//!   └──────────────────────────── stride ───────────────┘
//! ```
//!
//! The guard is one page (see `guard`: a kernel guard region, which does not split the
//! mapping, or an `mprotect`ed page, which does), installed once, when a slot is first handed
//! out. The reserve is for whoever asked for it (the runtime keeps each coroutine's thread
//! area there); most stacks have none. Chunks grow from 16 slots to 1 GiB each, so a million
//! default stacks take a few hundred mappings — and adjacent chunks merge into one.
//!
//! A slab keeps its idle slots in two stacks: `resident` (pages may still be in memory: the
//! next coroutine reuses them warm) and `trimmed` (pages given back with `MADV_DONTNEED`,
//! which keeps the guards). Idle slots beyond the pool capacity, and half of the excess over
//! what `trim` keeps, go from the old end of `resident` to `trimmed`, in batches, one
//! `madvise` per run of adjacent slots.

use std::io;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::guard::{self, GuardKind};
use super::limits::{explain, page_size};
use crate::coroutine::{overflow, valgrind};
use crate::spin::SpinLock;

/// Smallest pooled size: 16 KiB (2^14).
const MIN_SHIFT: u32 = 14;
/// Largest pooled size: 64 MiB (2^26). Larger stacks are mapped and unmapped each time.
const MAX_SHIFT: u32 = 26;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Reserves of 0 to 15 pages are pooled; larger ones are mapped each time.
const RESERVES: usize = 16;

/// The first chunk of a slab holds this many slots; each next one twice as many…
const FIRST_CHUNK_SLOTS: usize = 16;
/// …up to this many bytes.
const MAX_CHUNK_BYTES: usize = 1 << 30;
/// Idle slots beyond the capacity are trimmed once this many more have piled up.
const TRIM_BATCH: usize = 64;
/// Never-used slots get their guards this many at a time (one system call where the kernel
/// allows it).
const GUARD_BATCH: usize = 32;

/// Idle slots per slab whose memory is kept (`set_pool_capacity`).
static CAPACITY: AtomicUsize = AtomicUsize::new(1024);

/// Called with the reserve of an idle slot before its memory is given back (see
/// `set_reserve_finalizer`); 0 when none is set.
static FINALIZER: AtomicUsize = AtomicUsize::new(0);

/// The shape of every slot of a slab.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    pub(super) guard: usize,
    pub(super) usable: usize,
    pub(super) reserve: usize,
}

impl Geometry {
    pub(super) fn stride(&self) -> usize {
        self.guard + self.usable + self.reserve
    }

    fn registration(&self, start: usize, slots: usize) -> overflow::Slots {
        overflow::Slots {
            end: start + slots * self.stride(),
            stride: self.stride(),
            guard: self.guard,
            usable: self.usable,
        }
    }

    /// Maps a chunk of `slots` slots (no guards yet) and registers it with the overflow
    /// handler; returns its start.
    fn map_chunk(&self, slots: usize) -> io::Result<usize> {
        let len = slots
            .checked_mul(self.stride())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows"))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory. MAP_STACK also keeps transparent huge pages out (Linux ≥ 6.7);
        // MADV_NOHUGEPAGE does it on older kernels: a huge page would make every touched
        // stack cost 2 MiB.
        let start = unsafe {
            let ptr = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return Err(explain(io::Error::last_os_error(), guard::guard_kind()));
            }
            libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE);
            ptr as usize
        };
        overflow::register_slots(start, self.registration(start, slots));
        Ok(start)
    }

    /// Makes the guards of never-used slots and tells valgrind about their stacks: once per
    /// slot.
    fn prepare(&self, slots: &[usize]) -> io::Result<()> {
        // SAFETY: each slot's first page lies in a chunk we mapped, and no stack uses the slots.
        unsafe { guard::install_many(slots, self.guard)? };
        for &slot in slots {
            valgrind::stack_register(slot + self.guard, slot + self.stride());
        }
        Ok(())
    }

    /// Hands the reserve of an idle slot to the finalizer, if there is one.
    fn finalize_reserve(&self, slot: usize) {
        if self.reserve == 0 {
            return;
        }
        let finalizer = FINALIZER.load(Ordering::Acquire);
        if finalizer != 0 {
            // SAFETY: only `set_finalizer` stores a non-zero value, and it stores a `fn`.
            let finalizer: fn(usize, usize) = unsafe { std::mem::transmute(finalizer) };
            let top = slot + self.stride();
            finalizer(top - self.reserve, top);
        }
    }
}

/// The stacks of one (size, reserve).
pub(super) struct Slab {
    geometry: Geometry,
    state: SpinLock<State>,
}

#[derive(Default)]
struct State {
    /// Idle slots whose pages may be in memory, the most recently used last.
    resident: Vec<usize>,
    /// Idle slots whose pages were given back.
    trimmed: Vec<usize>,
    /// Never-used slots whose guards are made (carved in batches; see `GUARD_BATCH`).
    guarded: Vec<usize>,
    /// Slots whose guard could not be installed yet (the kernel refused: out of mappings).
    unguarded: Vec<usize>,
    /// Never-used slots of the newest chunk: `next..end`, one every stride.
    next: usize,
    end: usize,
    /// Slots in the next chunk.
    next_chunk: usize,
    /// Idle slots (all three lists), for stats.
    idle: usize,
}

static SLABS: [[AtomicPtr<Slab>; RESERVES]; CLASSES] =
    [const { [const { AtomicPtr::new(ptr::null_mut()) }; RESERVES] }; CLASSES];
/// Held while a slab is created (slabs are never freed).
static CREATING: SpinLock<()> = SpinLock::new(());

/// Every slab, in one fixed order.
fn every_slab() -> impl Iterator<Item = &'static Slab> {
    SLABS.iter().flatten().filter_map(|cell| {
        let slab = cell.load(Ordering::Acquire);
        // SAFETY: slabs are leaked boxes, published once and never freed.
        (!slab.is_null()).then(|| unsafe { &*slab })
    })
}

/// Takes the slabs' locks (creation, then each slab's state: the order the code takes them
/// in) and keeps them, across a `fork`.
pub(super) fn hold_all() {
    CREATING.hold();
    for slab in every_slab() {
        slab.state.hold();
    }
}

/// Releases what [`hold_all`] took.
///
/// # Safety
/// The calling thread called `hold_all` (before a `fork`).
pub(super) unsafe fn release_all() {
    for slab in every_slab() {
        // SAFETY: held by this thread since `hold_all`.
        unsafe { slab.state.release() };
    }
    // SAFETY: as above.
    unsafe { CREATING.release() };
}

/// Rounds a requested size up to its class: a power of two ≥ 16 KiB, or a page multiple above
/// the largest class.
pub(super) fn size_class(size: usize) -> io::Result<usize> {
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("coroutine stack size {size} is too large"),
        )
    };
    match size.max(1 << MIN_SHIFT).checked_next_power_of_two() {
        Some(r) if r <= 1 << MAX_SHIFT => Ok(r),
        _ => super::limits::round_to_pages(size).ok_or_else(too_large),
    }
}

impl Slab {
    /// The slab for stacks of `usable` bytes (a size class) with `reserve` bytes (whole pages)
    /// above them, or `None` if such stacks are not pooled.
    pub(super) fn get(usable: usize, reserve: usize) -> Option<&'static Slab> {
        let page = page_size();
        let shift = usable.trailing_zeros();
        let pages = reserve / page;
        if !usable.is_power_of_two() || !(MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
            return None;
        }
        let cell = SLABS.get((shift - MIN_SHIFT) as usize)?.get(pages)?;
        let existing = cell.load(Ordering::Acquire);
        if !existing.is_null() {
            // SAFETY: slabs are leaked boxes, published once and never freed.
            return Some(unsafe { &*existing });
        }
        let _creating = CREATING.lock();
        let existing = cell.load(Ordering::Acquire);
        if !existing.is_null() {
            // SAFETY: as above.
            return Some(unsafe { &*existing });
        }
        let slab: &'static Slab = Box::leak(Box::new(Slab {
            geometry: Geometry {
                guard: page,
                usable,
                reserve: pages * page,
            },
            state: SpinLock::new(State {
                next_chunk: FIRST_CHUNK_SLOTS,
                ..State::default()
            }),
        }));
        cell.store(slab as *const Slab as *mut Slab, Ordering::Release);
        Some(slab)
    }

    pub(super) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// An idle slot: the most recently used one, else a trimmed one, else a new one.
    pub(super) fn take(&self) -> io::Result<usize> {
        let mut state = self.state.lock();
        if let Some(slot) = state.resident.pop().or_else(|| state.trimmed.pop()) {
            state.idle -= 1;
            return Ok(slot);
        }
        if let Some(slot) = state.guarded.pop() {
            return Ok(slot);
        }
        // New slots: a batch of never-used ones (or one whose guard failed before), guarded
        // outside the lock; the rest of the batch waits in `guarded`.
        let batch: Vec<usize> = match state.unguarded.pop() {
            Some(slot) => {
                state.idle -= 1;
                vec![slot]
            }
            None => {
                if state.next == state.end {
                    self.add_chunk(&mut state)?;
                }
                let stride = self.geometry.stride();
                let count = ((state.end - state.next) / stride).min(GUARD_BATCH);
                let first = state.next;
                state.next += count * stride;
                (0..count).map(|i| first + i * stride).collect()
            }
        };
        drop(state);
        if let Err(err) = self.geometry.prepare(&batch) {
            let mut state = self.state.lock();
            state.idle += batch.len();
            state.unguarded.extend(batch);
            return Err(err);
        }
        let mut state = self.state.lock();
        state.guarded.extend_from_slice(&batch[1..]);
        Ok(batch[0])
    }

    /// Maps the next chunk and makes its slots the never-used ones.
    fn add_chunk(&self, state: &mut State) -> io::Result<()> {
        let most = (MAX_CHUNK_BYTES / self.geometry.stride()).max(1);
        let slots = state.next_chunk.min(most);
        let start = self.geometry.map_chunk(slots)?;
        state.next = start;
        state.end = start + slots * self.geometry.stride();
        state.next_chunk = (slots * 2).min(most);
        Ok(())
    }

    /// Takes back an idle slot; trims the oldest idle ones once there are too many.
    pub(super) fn give_back(&self, slot: usize) {
        let excess = {
            let mut state = self.state.lock();
            state.resident.push(slot);
            state.idle += 1;
            let capacity = CAPACITY.load(Ordering::Relaxed);
            let over = state.resident.len().saturating_sub(capacity);
            (over > TRIM_BATCH).then(|| state.resident.drain(..over).collect::<Vec<_>>())
        };
        if let Some(slots) = excess {
            self.trim_slots(slots);
        }
    }

    /// Gives back the memory of half of the resident idle slots beyond `keep`.
    pub(super) fn trim(&self, keep: usize) {
        let slots = {
            let mut state = self.state.lock();
            let excess = state.resident.len().saturating_sub(keep);
            state
                .resident
                .drain(..excess.div_ceil(2))
                .collect::<Vec<_>>()
        };
        if !slots.is_empty() {
            self.trim_slots(slots);
        }
    }

    /// Gives back the pages of idle slots (taken out of `resident` by the caller, so nobody
    /// else can hand them out meanwhile), then files them as trimmed.
    fn trim_slots(&self, mut slots: Vec<usize>) {
        let stride = self.geometry.stride();
        for &slot in &slots {
            self.geometry.finalize_reserve(slot);
        }
        slots.sort_unstable();
        let discard = |start: usize, end: usize| {
            // SAFETY: whole pages of idle slots of our own chunks: nothing uses them, and the
            // kernel refills them with zeros when they are touched again. Guard regions
            // survive MADV_DONTNEED.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        };
        match guard::guard_kind() {
            // One call per run of adjacent slots: the guards inside the run stay.
            GuardKind::Madvise => {
                let mut run = slots[0]..slots[0] + stride;
                for &slot in &slots[1..] {
                    if slot == run.end {
                        run.end += stride;
                    } else {
                        discard(run.start, run.end);
                        run = slot..slot + stride;
                    }
                }
                discard(run.start, run.end);
            }
            // Each stack is a mapping of its own between two guard mappings.
            GuardKind::Mprotect => {
                for &slot in &slots {
                    discard(slot + self.geometry.guard, slot + stride);
                }
            }
        }
        self.state.lock().trimmed.extend(slots);
    }

    fn idle(&self) -> usize {
        self.state.lock().idle
    }
}

/// Every slab created so far.
fn slabs() -> impl Iterator<Item = &'static Slab> {
    SLABS.iter().flatten().filter_map(|cell| {
        let slab = cell.load(Ordering::Acquire);
        // SAFETY: slabs are leaked boxes, published once and never freed.
        (!slab.is_null()).then(|| unsafe { &*slab })
    })
}

/// A stack too large (or with too large a reserve) to pool: a mapping of its own.
pub(super) fn map_solo(geometry: &Geometry) -> io::Result<(usize, usize)> {
    let start = geometry.map_chunk(1)?;
    // SAFETY: the first page of the mapping just made, which nothing uses.
    if let Err(err) = unsafe { guard::install(start, geometry.guard) } {
        unmap_solo(geometry, start, 0);
        return Err(err);
    }
    let valgrind_id = valgrind::stack_register(start + geometry.guard, start + geometry.stride());
    Ok((start, valgrind_id))
}

/// Unmaps a stack made by [`map_solo`].
pub(super) fn unmap_solo(geometry: &Geometry, start: usize, valgrind_id: usize) {
    geometry.finalize_reserve(start);
    overflow::unregister_slots(start);
    if valgrind_id != 0 {
        valgrind::stack_deregister(valgrind_id);
    }
    // SAFETY: the mapping was made by `map_solo`, is owned by the caller alone, and no
    // coroutine runs on it any more.
    unsafe { libc::munmap(start as *mut libc::c_void, geometry.stride()) };
}

pub(super) fn set_capacity(per_slab: usize) {
    CAPACITY.store(per_slab, Ordering::Relaxed);
}

pub(super) fn set_finalizer(finalizer: fn(usize, usize)) {
    FINALIZER.store(finalizer as usize, Ordering::Release);
}

pub(super) fn trim_all(keep: usize) {
    for slab in slabs() {
        slab.trim(keep);
    }
}

pub(super) fn idle_total() -> usize {
    slabs().map(Slab::idle).sum()
}
