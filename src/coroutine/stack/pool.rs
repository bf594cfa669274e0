//! The process-wide stack pool: one lock-free queue per power-of-two size class.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;

use super::mapping::{page_size, Mapping};

/// Smallest pooled size: 16 KiB (2^14).
const MIN_SHIFT: u32 = 14;
/// Largest pooled size: 64 MiB (2^26). Larger stacks are mapped and unmapped each time.
const MAX_SHIFT: u32 = 26;
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;

static CAPACITY: AtomicUsize = AtomicUsize::new(1024);
// (The runtime raises the capacity and trims idle excess with `trim`.)
static POOLED: AtomicUsize = AtomicUsize::new(0);

struct Class {
    stacks: SegQueue<Mapping>,
    len: AtomicUsize,
}

static POOLS: [Class; CLASSES] = [const {
    Class {
        stacks: SegQueue::new(),
        len: AtomicUsize::new(0),
    }
}; CLASSES];

/// Rounds a requested size up to its class: a power of two ≥ 16 KiB, or a page multiple above
/// the largest class.
pub(super) fn size_class(size: usize) -> io::Result<usize> {
    let min = 1usize << MIN_SHIFT;
    let rounded = size.max(min).checked_next_power_of_two();
    match rounded {
        Some(r) if r <= 1usize << MAX_SHIFT => Ok(r),
        _ => {
            let page = page_size();
            size.checked_add(page - 1)
                .map(|s| s & !(page - 1))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("coroutine stack size {size} is too large"),
                    )
                })
        }
    }
}

fn class_of(size: usize) -> Option<&'static Class> {
    if !size.is_power_of_two() {
        return None;
    }
    let shift = size.trailing_zeros();
    if (MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
        Some(&POOLS[(shift - MIN_SHIFT) as usize])
    } else {
        None
    }
}

/// A pooled mapping of exactly `size` usable bytes, if there is one.
pub(super) fn take(size: usize) -> Option<Mapping> {
    let class = class_of(size)?;
    let mapping = class.stacks.pop()?;
    class.len.fetch_sub(1, Ordering::Relaxed);
    POOLED.fetch_sub(1, Ordering::Relaxed);
    Some(mapping)
}

/// Keeps `mapping` for reuse, or drops (unmaps) it when its class is full.
pub(super) fn give_back(mapping: Mapping) {
    let Some(class) = class_of(mapping.usable_size()) else {
        return;
    };
    if class.len.fetch_add(1, Ordering::Relaxed) >= CAPACITY.load(Ordering::Relaxed) {
        class.len.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    POOLED.fetch_add(1, Ordering::Relaxed);
    class.stacks.push(mapping);
}

pub(super) fn len() -> usize {
    POOLED.load(Ordering::Relaxed)
}

/// Unmaps half of the stacks each class holds beyond `keep` (so memory left over from a burst
/// of coroutines goes back to the system over a few calls).
pub(super) fn trim(keep: usize) {
    for class in &POOLS {
        let excess = class.len.load(Ordering::Relaxed).saturating_sub(keep);
        for _ in 0..excess.div_ceil(2) {
            match class.stacks.pop() {
                Some(mapping) => {
                    class.len.fetch_sub(1, Ordering::Relaxed);
                    POOLED.fetch_sub(1, Ordering::Relaxed);
                    drop(mapping);
                }
                None => break,
            }
        }
    }
}

pub(super) fn set_capacity(per_class: usize) {
    CAPACITY.store(per_class, Ordering::Relaxed);
}
