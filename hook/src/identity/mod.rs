//! Per-coroutine thread identity: every runtime coroutine runs with its own glibc thread
//! pointer, so `thread::current()`, `ThreadId`, every `thread_local!`, `errno`, std's parker,
//! parking_lot's and crossbeam's per-thread state belong to the coroutine, not to its worker.
//!
//! An *area* ([`Area`]) is what a thread pointer points at: glibc's thread descriptor
//! (`struct pthread`, whose first part is the TCB), the static TLS blocks below it and a DTV.
//! It lives at the top of the coroutine's own stack slot, the stack growing down below it (the
//! layout is drawn in `area.rs`), so a sleeping coroutine touches as few pages as possible.
//! glibc's `_dl_allocate_tls_init` fills the TLS blocks; the runtime fills in the descriptor
//! fields libc reads (self pointers, stack guard and pointer guard, tid, stack bounds, rseq,
//! resolver state), and the context switch installs the area as the FS base on every resume
//! (see `corun::coroutine::Coroutine::set_thread_pointer`).
//!
//! Areas stay in their slots and are reused with them: glibc never frees the malloc thread
//! cache of a descriptor it did not create, so a fresh area per coroutine would leak one. A
//! reused area keeps libc's own TLS block (the malloc cache, errno, locale and ctype pointers)
//! and gets fresh copies of every other module's TLS image, so each coroutine starts with
//! pristine `thread_local!`s. When the stack slab gives an idle slot's memory back, the area's
//! DTV and dynamic TLS go with it (`area::retire`).
//!
//! Only glibc 2.36 on x86_64 is verified (the descriptor's layout is checked at start against
//! glibc's own `_thread_db_*` tables). Anywhere else, or with `CORUN_TLS=shared`, coroutines
//! share their worker's identity, and corun says so once.
//!
//! **Static TLS of libraries loaded later.** glibc keeps a surplus of static TLS (1,664 bytes
//! by default) for libraries `dlopen`ed later with initial-exec TLS. An area keeps
//! [`LATER_STATIC_TLS`] bytes of it free below the blocks in use; the rest of the surplus is
//! the top of the coroutine's stack. The launcher sets `GLIBC_TUNABLES` so that glibc's surplus
//! is exactly that room (a library needing more then fails to load, with glibc's own message);
//! without it, a library that takes more static TLS than the room while coroutines run is
//! reported once, and coroutines alive then must not use its thread-locals. Coroutines started
//! later place their stacks below the new blocks. Known limit either way: the initial-exec TLS
//! block of a library `dlopen`ed while a coroutine runs is not initialised in that coroutine's
//! area (glibc initialises it only in the threads it knows): there, the library's initial-exec
//! thread-locals read as zero until written.

mod area;
mod descriptor;
mod images;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

pub use area::Area;
pub use descriptor::pop_cleanup_buffer;

use crate::log;
use crate::sync::SpinLock;
use images::Images;

/// Bytes of glibc's static-TLS surplus each area keeps free, below the blocks in use, for
/// libraries loaded later: what glibc's smallest surplus setting (`glibc.rtld.nns=1`,
/// `glibc.rtld.optional_static_tls=0`, which the launcher sets) leaves — one library's
/// initial-exec TLS (144 bytes) and 144 bytes of legacy slack.
pub const LATER_STATIC_TLS: usize = 288;

/// The glibc pieces the areas need, resolved and checked once.
struct Glibc {
    allocate_tls_init: unsafe extern "C" fn(*mut c_void, bool) -> *mut c_void,
    deallocate_tls: unsafe extern "C" fn(*mut c_void, bool),
    ctype_init: unsafe extern "C" fn(),
    call_tls_dtors: unsafe extern "C" fn(),
    /// `__pthread_keys`: 1024 × `{ seq: usize, destr: fn }`.
    pthread_keys: usize,
    /// Offset of libc's `__resp` thread-local from the thread pointer.
    resp_offset: isize,
    /// The static TLS region, `struct pthread` included (`_dl_get_tls_static_info`).
    static_size: usize,
    static_align: usize,
    /// Bytes of static TLS in use when the runtime started.
    used_at_start: usize,
    /// The part of glibc's surplus each area keeps free for later libraries.
    room: usize,
    /// What areas are built and refreshed with (retaken when libraries are loaded later).
    images: SpinLock<Images>,
}

// SAFETY: plain addresses and function pointers into libc, valid for the process's life.
unsafe impl Send for Glibc {}
// SAFETY: as above; `images` is behind a lock.
unsafe impl Sync for Glibc {}

static GLIBC: OnceLock<Option<Glibc>> = OnceLock::new();

/// Bytes of static TLS in use now (grows when a library with initial-exec TLS is loaded).
static USED: AtomicUsize = AtomicUsize::new(0);

fn glibc() -> Option<&'static Glibc> {
    GLIBC.get()?.as_ref()
}

/// The current thread pointer (glibc keeps a pointer to the descriptor itself at `fs:0`).
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reads one word at fs:0, which glibc always maps (the TCB's self pointer).
    unsafe {
        std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
    };
    tp
}

/// Whether coroutines get their own identity. Decided (and reported) once, on a worker-ready
/// thread, when the runtime starts.
pub fn enabled() -> bool {
    glibc().is_some()
}

/// Resolves and verifies everything; falls back to shared identity (with one warning) if
/// anything is off. `wanted` is false for `CORUN_TLS=shared`.
pub fn init(wanted: bool) {
    GLIBC.get_or_init(|| {
        if !wanted {
            log::info(format_args!("per-coroutine thread identity off (CORUN_TLS=shared)"));
            return None;
        }
        match Glibc::load() {
            Ok(glibc) => {
                log::info(format_args!(
                    "per-coroutine thread identity on (glibc 2.36, FS base switched with {}); \
                     thread areas: {} bytes of static TLS in use, {} kept free of glibc's {}-byte surplus",
                    if corun::coroutine::thread_pointer_switch_is_wrfsbase() { "wrfsbase" } else { "arch_prctl" },
                    glibc.used_at_start,
                    glibc.room,
                    glibc.static_size - descriptor::SIZE - glibc.used_at_start,
                ));
                corun::coroutine::set_reserve_finalizer(area::retire);
                Some(glibc)
            }
            Err(why) => {
                log::warn(format_args!(
                    "per-coroutine thread identity is not available ({why}); coroutines share their \
                     worker's thread identity, as with CORUN_TLS=shared"
                ));
                None
            }
        }
    });
}

/// Looks up a symbol of a given version (GLIBC_PRIVATE symbols need the version).
fn symbol(name: &CStr, version: &CStr) -> Result<usize, String> {
    // SAFETY: RTLD_DEFAULT with NUL-terminated strings.
    let address =
        unsafe { libc::dlvsym(libc::RTLD_DEFAULT, name.as_ptr(), version.as_ptr()) } as usize;
    if address == 0 {
        return Err(format!("glibc has no {}", name.to_string_lossy()));
    }
    Ok(address)
}

impl Glibc {
    fn load() -> Result<Glibc, String> {
        // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
        let version = unsafe { CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy();
        if version != "2.36" {
            return Err(format!(
                "glibc {version} is not a verified version (2.36 is)"
            ));
        }
        descriptor::verify()?;
        let private = c"GLIBC_PRIVATE";
        let (static_size, static_align) =
            static_tls_info(symbol(c"_dl_get_tls_static_info", private)?);
        let images = images::take(static_size);
        let surplus = static_size
            .checked_sub(descriptor::SIZE + images.used)
            .ok_or("the static TLS region is smaller than what is in use")?;
        USED.store(images.used, Ordering::Relaxed);
        // SAFETY: these GLIBC_PRIVATE functions have exactly these C prototypes in glibc 2.36.
        let glibc = unsafe {
            Glibc {
                allocate_tls_init: std::mem::transmute::<
                    usize,
                    unsafe extern "C" fn(*mut c_void, bool) -> *mut c_void,
                >(symbol(c"_dl_allocate_tls_init", private)?),
                deallocate_tls: std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_void, bool)>(
                    symbol(c"_dl_deallocate_tls", private)?,
                ),
                ctype_init: std::mem::transmute::<usize, unsafe extern "C" fn()>(symbol(
                    c"__ctype_init",
                    private,
                )?),
                call_tls_dtors: std::mem::transmute::<usize, unsafe extern "C" fn()>(symbol(
                    c"__call_tls_dtors",
                    private,
                )?),
                pthread_keys: symbol(c"__pthread_keys", private)?,
                resp_offset: symbol(c"__resp", private)? as isize - thread_pointer() as isize,
                static_size,
                static_align: static_align.max(16),
                used_at_start: images.used,
                // glibc rounds the region up to its alignment: a compact surplus (`corun run
                // --compact-tls`) is 288 bytes plus that padding, and the room keeps all of it.
                room: if surplus < LATER_STATIC_TLS + static_align.max(16) {
                    surplus
                } else {
                    LATER_STATIC_TLS
                },
                images: SpinLock::new(images),
            }
        };
        Ok(glibc)
    }
}

/// The size (`struct pthread` included) and alignment of the static TLS region.
fn static_tls_info(get_info: usize) -> (usize, usize) {
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: `void _dl_get_tls_static_info(size_t *sizep, size_t *alignp)` in glibc 2.36.
    unsafe {
        let get_info: unsafe extern "C" fn(*mut usize, *mut usize) = std::mem::transmute(get_info);
        get_info(&mut size, &mut align);
    }
    (size, align)
}

/// Bytes a stack slot must reserve at its top for a thread area (0 without isolated
/// identity): the whole static TLS region, so that blocks glibc hands out later still lie in
/// the slot.
pub fn slot_reserve() -> usize {
    glibc().map_or(0, |g| g.static_size + g.static_align)
}

/// Where the stack of a coroutine whose area sits at `tp` starts: below the static TLS in use
/// and the room kept for later libraries.
pub fn stack_base(tp: usize) -> usize {
    let room = glibc().map_or(0, |g| g.room);
    (tp - USED.load(Ordering::Relaxed) - room) & !63
}

/// Runs on the coroutine, with its area installed, before the user's code: libc's per-thread
/// initialisation (the ctype tables behind `isalpha` & co.).
pub fn start_on_area() {
    if let Some(glibc) = glibc() {
        // SAFETY: called with the area installed as the thread pointer.
        unsafe { (glibc.ctype_init)() };
    }
}

/// Runs on the coroutine, with its area installed, after the user's code: the thread-local
/// destructors (`__cxa_thread_atexit_impl`, which Rust's `thread_local!` uses) and the
/// `pthread_key_create` destructors, as a thread exit would.
pub fn finish_on_area() {
    let Some(glibc) = glibc() else { return };
    // SAFETY: called with the area installed; runs the destructors this "thread" registered.
    unsafe { (glibc.call_tls_dtors)() };
    // SAFETY: the thread pointer is our area's descriptor; glibc's key table as verified.
    unsafe { descriptor::run_key_destructors(thread_pointer(), glibc.pthread_keys) };
}

/// Set by the interposed `dlopen`: libraries were loaded since the images were last taken.
static LOADED: AtomicBool = AtomicBool::new(false);

/// Notes that a library was loaded (called by the `dlopen` hook).
pub fn note_load() {
    LOADED.store(true, Ordering::SeqCst);
}

/// Takes the lock of the TLS images and keeps it across a `fork` (see `runtime::fork`).
pub fn before_fork() {
    if let Some(glibc) = GLIBC.get().and_then(Option::as_ref) {
        glibc.images.hold();
    }
}

/// Releases what [`before_fork`] took.
///
/// # Safety
/// The calling thread called `before_fork`, and the `fork` has returned.
pub unsafe fn after_fork() {
    if let Some(glibc) = GLIBC.get().and_then(Option::as_ref) {
        // SAFETY: held by this thread since `before_fork`.
        unsafe { glibc.images.release() };
    }
}

/// Retakes the TLS images if a library was loaded through `dlopen` since they were taken (a
/// cheap check; call it before reusing an area), or, with `force`, if the loader's counter
/// moved (a walk of the loaded modules: for loads libc made itself).
pub fn refresh_images(force: bool) {
    let Some(glibc) = glibc() else { return };
    let noted = LOADED.swap(false, Ordering::SeqCst);
    if !noted && !force {
        return;
    }
    let fresh = images::take(glibc.static_size);
    let mut images = glibc.images.lock();
    if noted || fresh.loads != images.loads {
        note_static_growth(glibc, fresh.used);
        *images = fresh;
    }
}

/// Records the static TLS in use after libraries were loaded. Coroutines start their stacks
/// `room` bytes below the blocks in use when they start, so a load that takes more than that
/// reaches into the stacks of coroutines started before it: say so, once.
fn note_static_growth(glibc: &Glibc, used: usize) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    let before = USED.fetch_max(used, Ordering::Relaxed);
    if used > before + glibc.room && !REPORTED.swap(true, Ordering::Relaxed) {
        log::warn(format_args!(
            "a library loaded while coroutines run takes {} bytes of static TLS, more than the \
             {} bytes each coroutine's thread area keeps free: coroutines started before it was \
             loaded must not use its thread-locals (their stacks hold that memory); coroutines \
             started from now on are not affected. `corun run` avoids this by limiting glibc's \
             static TLS surplus (see README, thread identity)",
            used - before,
            glibc.room
        ));
    }
}
