//! A coroutine's thread area, kept at the top of its own stack slot.
//!
//! ```text
//!   the reserve at the top of a stack slot (see `identity::slot_reserve`)
//!   ┌──────────────────────┬─────────┬────────────────────┬────────────────────────────┐
//!   │ … the stack grows ↓  │ room    │ static TLS blocks  │ struct pthread, TCB first  │
//!   │                      │         │ in use (`used`)    │ (2,368 bytes)              │
//!   └──────────────────────┴─────────┴────────────────────┴────────────────────────────┘
//!                          ^ base    ^ tp − used          ^ tp = the thread pointer    ^ slot top
//! ```
//!
//! glibc places the static TLS of every module loaded at start below the thread pointer and
//! keeps a *surplus* below that for libraries `dlopen`ed later with initial-exec TLS. The
//! stack starts below the blocks in use and a `room` of that surplus (see
//! `identity::stack_base`), so that a sleeping coroutine's stack frames, its TLS and its
//! descriptor share one page. The area stays in the slot when the coroutine ends: the next
//! coroutine on that slot reuses it (its libc block — malloc cache, locale — kept, every other
//! module's block refreshed), and it is taken apart only when the slab gives the slot's memory
//! back ([`retire`]).

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

use super::descriptor as layout;
use super::{glibc, thread_pointer};

/// One thread area: what the FS base points at while its coroutine runs.
pub struct Area {
    tp: usize,
}

/// Areas attached again so far (every 256th also re-walks the loaded modules).
static REUSES: AtomicU64 = AtomicU64::new(0);

impl Area {
    /// The area of the slot whose reserve ends at `top` (built or not).
    pub fn in_slot(top: usize) -> Option<Area> {
        let glibc = glibc()?;
        Some(Area {
            tp: (top - layout::SIZE) & !(glibc.static_align - 1),
        })
    }

    /// The thread pointer.
    pub fn tp(&self) -> usize {
        self.tp
    }

    /// Whether an earlier coroutine on this slot built the area (its TCB points at itself; a
    /// fresh or trimmed slot reads zero).
    pub fn is_built(&self) -> bool {
        // SAFETY: `tp` lies in the reserve of a slot the caller owns.
        unsafe { *(self.tp as *const usize) == self.tp }
    }

    /// Builds the area in the (zeroed) slot: a DTV of exactly the modules loaded, the static
    /// TLS blocks initialised by glibc's own `_dl_allocate_tls_init`, and the descriptor fields
    /// libc reads, filled in from the calling thread's. False if glibc could not.
    pub fn build(&self) -> bool {
        let Some(glibc) = glibc() else { return false };
        let modules = glibc.images.lock().max_modid.max(1);
        let tp = self.tp;
        // SAFETY: glibc 2.36's DTV is `calloc`ed `{ counter | pointer, to_free }` pairs: entry 0
        // holds the length, the descriptor points at entry 1 (the generation), entry `modid`+1
        // belongs to module `modid`. glibc resizes it with `realloc` and frees it with `free`,
        // so it must come from malloc, as it does here.
        let dtv = unsafe { libc::calloc(modules + 2, 16) } as *mut usize;
        if dtv.is_null() {
            return false;
        }
        let me = thread_pointer();
        // SAFETY: `tp` is a zeroed, `layout::SIZE`-byte descriptor at the top of the reserve
        // with the static TLS region below it (the reserve holds all of it); `me` is this
        // thread's descriptor. `_dl_allocate_tls_init(tcb, true)` fills the DTV and copies every
        // module's TLS image into its static block, as glibc does for a cached thread stack.
        unsafe {
            *dtv = modules;
            let put = |offset: usize, value: usize| *((tp + offset) as *mut usize) = value;
            put(layout::DTV, dtv as usize + 16);
            // (It returns null only when given null.)
            if (glibc.allocate_tls_init)(tp as *mut c_void, true).is_null() {
                libc::free(dtv.cast());
                put(layout::DTV, 0);
                return false;
            }
            let copy =
                |offset: usize| *((tp + offset) as *mut usize) = *((me + offset) as *const usize);
            put(layout::TCB, tp);
            put(layout::SELF, tp);
            *((tp + layout::MULTIPLE_THREADS) as *mut i32) = 1;
            copy(layout::SYSINFO);
            copy(layout::STACK_GUARD);
            copy(layout::POINTER_GUARD);
            *((tp + layout::FEATURE_1) as *mut u32) = *((me + layout::FEATURE_1) as *const u32);
            // An empty thread list node and robust list (glibc checks them against themselves).
            put(layout::LIST, tp + layout::LIST);
            put(layout::LIST + 8, tp + layout::LIST);
            put(layout::ROBUST_HEAD, tp + layout::ROBUST_HEAD);
            copy(layout::ROBUST_HEAD + 8); // futex_offset
                                           // rseq is registered for the worker, not for us: make libc ask the kernel instead.
            *((tp + layout::RSEQ_CPU_ID) as *mut u32) = u32::MAX;
            // A private resolver state.
            *((tp as isize + glibc.resp_offset) as *mut usize) = tp + layout::RES;
        }
        true
    }

    /// Prepares a built area for a coroutine running on `[stack_low, stack_high)` on the
    /// thread with id `tid`. An area used before (`reused`) gets fresh TLS images for every
    /// module but libc, and loses its blocks of dynamic-TLS modules.
    pub fn attach(&self, stack_low: usize, stack_high: usize, tid: i32, reused: bool) {
        let Some(glibc) = glibc() else { return };
        if reused {
            // Loads through `dlopen` are noticed at once; loads libc makes itself only by
            // walking the loaded modules, which costs more: every 256th time.
            super::refresh_images(REUSES.fetch_add(1, Ordering::Relaxed) % 256 == 0);
        }
        // SAFETY: the area is ours and no coroutine runs on it now; the offsets were
        // measured on this process's own threads.
        unsafe {
            *((self.tp + layout::STACKBLOCK) as *mut usize) = stack_low;
            *((self.tp + layout::STACKBLOCK_SIZE) as *mut usize) = stack_high - stack_low;
            *((self.tp + layout::TID) as *mut i32) = tid;
            if reused {
                let images = glibc.images.lock();
                for image in &images.statics {
                    let block = (self.tp - image.below_tp) as *mut u8;
                    std::ptr::copy_nonoverlapping(image.image as *const u8, block, image.filesz);
                    std::ptr::write_bytes(block.add(image.filesz), 0, image.memsz - image.filesz);
                }
                self.drop_dynamic_blocks(&images.dynamic);
            }
        }
    }

    /// Frees the area's blocks of dynamic-TLS modules and marks them unallocated in its DTV,
    /// so the next coroutine gets fresh ones (glibc allocates them on first use).
    ///
    /// # Safety
    /// No coroutine may run on the area; `modids` are TLS module ids.
    unsafe fn drop_dynamic_blocks(&self, modids: &[usize]) {
        const UNALLOCATED: usize = usize::MAX;
        // SAFETY: glibc 2.36's DTV (see `build`); a dynamic block was malloc'ed by glibc
        // (`to_free`).
        unsafe {
            let dtv = *((self.tp + layout::DTV) as *const *mut [usize; 2]);
            if dtv.is_null() {
                return;
            }
            let length = (*dtv.offset(-1))[0];
            for &modid in modids {
                if modid == 0 || modid > length {
                    continue;
                }
                let entry = &mut *dtv.add(modid);
                if entry[0] != UNALLOCATED {
                    libc::free(entry[1] as *mut c_void);
                    *entry = [UNALLOCATED, 0];
                }
            }
        }
    }

    /// Sets the tid libc reports (the worker thread running the coroutine now).
    pub fn set_tid(&self, tid: i32) {
        // SAFETY: a field of our descriptor.
        unsafe { *((self.tp + layout::TID) as *mut i32) = tid };
    }

    /// Writes `value` into the thread-local at `offset` from the thread pointer in this area.
    ///
    /// # Safety
    /// `offset` must be the offset of a `usize`-sized static TLS variable.
    pub unsafe fn write_tls(&self, offset: isize, value: usize) {
        // SAFETY: guaranteed by the caller.
        unsafe { *((self.tp as isize + offset) as *mut usize) = value };
    }
}

/// Takes apart the area in an idle slot's reserve `[_low, high)` before the slab gives the
/// slot's memory back: frees its DTV and dynamic TLS blocks (set as the core's reserve
/// finalizer).
pub fn retire(_low: usize, high: usize) {
    let (Some(glibc), Some(area)) = (glibc(), Area::in_slot(high)) else {
        return;
    };
    if !area.is_built() {
        return;
    }
    // SAFETY: the slot is idle (no coroutine uses the area); the DTV and dynamic blocks were
    // allocated by malloc (ours or glibc's). The descriptor memory itself stays the slot's.
    unsafe {
        (glibc.deallocate_tls)(area.tp as *mut c_void, false);
        *(area.tp as *mut usize) = 0;
    }
}
