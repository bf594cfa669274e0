//! Per-coroutine thread identity: every runtime coroutine runs with its own glibc thread
//! pointer, so `thread::current()`, `ThreadId`, every `thread_local!`, `errno`, std's parker,
//! parking_lot's and crossbeam's per-thread state belong to the coroutine, not to its worker.
//!
//! An *area* is what a thread pointer points at: glibc's thread descriptor (`struct pthread`,
//! whose first part is the TCB), the static TLS blocks below it and a DTV, all built by glibc's
//! own `_dl_allocate_tls`. The runtime fills in the descriptor fields libc reads (self
//! pointers, stack guard and pointer guard, tid, stack bounds, rseq, resolver state), and the
//! context switch installs the area's address as the FS base on every resume (see
//! `corun::coroutine::Coroutine::set_thread_pointer`).
//!
//! Areas are recycled per worker: glibc never frees the malloc thread cache of a descriptor it
//! did not create, so a fresh area per coroutine would leak one. A recycled area keeps libc's
//! own TLS block (the malloc cache, errno, locale and ctype pointers) and gets fresh copies of
//! every other module's TLS image, so each coroutine starts with pristine `thread_local!`s.
//!
//! Only glibc 2.36 on x86_64 is verified (the descriptor's layout is checked at start against
//! glibc's own `_thread_db_*` tables). Anywhere else, or with `CORUN_TLS=shared`, coroutines
//! share their worker's identity, and corun says so once.
//!
//! Libraries loaded later: a recycled area gets fresh static blocks for them (the `dlopen` hook
//! makes the runtime retake its list of TLS images) and loses their dynamic blocks (glibc
//! allocates fresh ones on first use). Known limit: the static-TLS (initial-exec) block of a
//! library `dlopen`ed while a coroutine runs is not initialised in that coroutine's area
//! (glibc initialises it only in the threads it knows): there, the library's initial-exec
//! thread-locals read as zero until written.

use std::ffi::{c_void, CStr};
use std::sync::OnceLock;

use crate::log;
use crate::sync::SpinLock;

/// Byte offsets in glibc 2.36's `struct pthread` on x86_64 (checked by `verify`).
mod layout {
    pub const TCB: usize = 0;
    pub const DTV: usize = 8;
    pub const SELF: usize = 16;
    pub const MULTIPLE_THREADS: usize = 24;
    pub const SYSINFO: usize = 32;
    pub const STACK_GUARD: usize = 40;
    pub const POINTER_GUARD: usize = 48;
    pub const FEATURE_1: usize = 72;
    pub const LIST: usize = 704;
    pub const TID: usize = 720;
    pub const ROBUST_HEAD: usize = 736;
    pub const SPECIFIC_1STBLOCK: usize = 784;
    pub const SPECIFIC: usize = 1296;
    pub const SPECIFIC_USED: usize = 1552;
    pub const REPORT_EVENTS: usize = 1553;
    pub const STACKBLOCK: usize = 1680;
    pub const STACKBLOCK_SIZE: usize = 1688;
    pub const RES: usize = 1720;
    pub const RSEQ_CPU_ID: usize = 2340;
    pub const SIZE: usize = 2368;
    /// `PTHREAD_KEYS_MAX`, `PTHREAD_KEY_2NDLEVEL_SIZE`, `PTHREAD_DESTRUCTOR_ITERATIONS`.
    pub const KEYS_MAX: usize = 1024;
    pub const KEY_2NDLEVEL: usize = 32;
    pub const DESTRUCTOR_ITERATIONS: usize = 4;
}

/// The glibc pieces the areas need, resolved and checked once.
struct Glibc {
    allocate_tls: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    deallocate_tls: unsafe extern "C" fn(*mut c_void, bool),
    ctype_init: unsafe extern "C" fn(),
    call_tls_dtors: unsafe extern "C" fn(),
    /// `__pthread_keys`: 1024 × `{ seq: usize, destr: fn }`.
    pthread_keys: usize,
    /// Offset of libc's `__resp` thread-local from the thread pointer.
    resp_offset: isize,
    /// Size of the static TLS region below the thread pointer.
    static_size: usize,
    /// What recycled areas are refreshed with (retaken when libraries are loaded later).
    images: SpinLock<Images>,
}

/// The modules' TLS, as seen from a thread: static blocks (at fixed offsets below the thread
/// pointer) to copy images into, dynamic ones (heap blocks behind the DTV) to drop.
#[derive(Default)]
struct Images {
    statics: Vec<TlsImage>,
    /// TLS module ids whose blocks are allocated on demand (libraries `dlopen`ed with
    /// general-dynamic TLS).
    dynamic: Vec<usize>,
    /// `dl_iterate_phdr`'s load counter when taken.
    loads: u64,
}

#[derive(Clone, Copy)]
struct TlsImage {
    below_tp: usize,
    image: usize,
    filesz: usize,
    memsz: usize,
}

// SAFETY: plain addresses and function pointers into libc, valid for the process's life.
unsafe impl Send for Glibc {}
// SAFETY: as above; never mutated after construction.
unsafe impl Sync for Glibc {}

static GLIBC: OnceLock<Option<Glibc>> = OnceLock::new();

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
    GLIBC.get().is_some_and(|g| g.is_some())
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
                    "per-coroutine thread identity on (glibc 2.36, FS base switched with {})",
                    if corun::coroutine::thread_pointer_switch_is_wrfsbase() { "wrfsbase" } else { "arch_prctl" }
                ));
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

/// Reads a `_thread_db_*` descriptor: [bits, count, offset].
fn thread_db(name: &CStr) -> Result<[u32; 3], String> {
    let address = symbol(name, c"GLIBC_PRIVATE")?;
    // SAFETY: glibc exports these descriptors as `const uint32_t[3]`.
    Ok(unsafe { *(address as *const [u32; 3]) })
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
        verify()?;
        let private = c"GLIBC_PRIVATE";
        // SAFETY: these GLIBC_PRIVATE functions have exactly these C prototypes in glibc 2.36.
        let glibc = unsafe {
            Glibc {
                allocate_tls: std::mem::transmute::<
                    usize,
                    unsafe extern "C" fn(*mut c_void) -> *mut c_void,
                >(symbol(c"_dl_allocate_tls", private)?),
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
                static_size: static_tls_size(symbol(c"_dl_get_tls_static_info", private)?),
                images: SpinLock::new(Images::default()),
            }
        };
        *glibc.images.lock() = tls_images(glibc.static_size);
        Ok(glibc)
    }
}

/// Checks the descriptor layout against glibc's own `_thread_db_*` tables (what gdb uses).
fn verify() -> Result<(), String> {
    let check = |name: &CStr, offset: usize| -> Result<(), String> {
        let [_, _, found] = thread_db(name)?;
        if found as usize != offset {
            return Err(format!(
                "{} is at {found}, expected {offset}",
                name.to_string_lossy()
            ));
        }
        Ok(())
    };
    check(c"_thread_db_pthread_tid", layout::TID)?;
    check(c"_thread_db_pthread_list", layout::LIST)?;
    check(c"_thread_db_pthread_specific", layout::SPECIFIC)?;
    check(c"_thread_db_pthread_report_events", layout::REPORT_EVENTS)?;
    check(c"_thread_db_pthread_dtvp", 8)?;
    let size = symbol(c"_thread_db_sizeof_pthread", c"GLIBC_PRIVATE")?;
    // SAFETY: a `const uint32_t` exported by glibc.
    let size = unsafe { *(size as *const u32) } as usize;
    if size != layout::SIZE {
        return Err(format!(
            "struct pthread is {size} bytes, expected {}",
            layout::SIZE
        ));
    }
    let tp = thread_pointer();
    // SAFETY: the self pointers of this thread's own descriptor.
    let (tcb, me) = unsafe {
        (
            *(tp as *const usize),
            *((tp + layout::SELF) as *const usize),
        )
    };
    if tcb != tp || me != tp {
        return Err("the TCB self pointers are not where expected".into());
    }
    Ok(())
}

/// The size of the static TLS region, from `_dl_get_tls_static_info`.
fn static_tls_size(get_info: usize) -> usize {
    let (mut size, mut align) = (0usize, 0usize);
    // SAFETY: `void _dl_get_tls_static_info(size_t *sizep, size_t *alignp)` in glibc 2.36.
    unsafe {
        let get_info: unsafe extern "C" fn(*mut usize, *mut usize) = std::mem::transmute(get_info);
        get_info(&mut size, &mut align);
    }
    size
}

/// The TLS of every loaded module except libc's: a module with a static TLS offset (assigned
/// at startup, or for an initial-exec library `dlopen`ed later) gets its image copied into
/// recycled areas; any other is dynamic (its blocks are dropped from recycled areas).
///
/// The static offsets come from the loader's own `link_map`s (`l_tls_offset`, located through
/// glibc's `_thread_db_link_map_*` tables), read while `dl_iterate_phdr` holds the loader's lock.
fn tls_images(static_size: usize) -> Images {
    struct Collect {
        offsets: Option<Vec<(usize, usize)>>,
        static_size: usize,
        images: Images,
    }
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our `Collect`.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Collect)) };
        out.images.loads = info.dlpi_adds;
        // SAFETY: the loader's lock is held for the whole walk, so its link maps are stable.
        let offsets = out
            .offsets
            .get_or_insert_with(|| unsafe { static_tls_offsets() });
        let modid = info.dlpi_tls_modid;
        if modid == 0 {
            return 0;
        }
        // SAFETY: a NUL-terminated name (possibly empty) for every module.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
        if name.ends_with("/libc.so.6") {
            return 0; // libc's block (malloc cache, errno …) stays with the area
        }
        let offset = offsets
            .iter()
            .find(|(id, _)| *id == modid)
            .map(|(_, off)| *off);
        let Some(offset) =
            offset.filter(|&off| off != 0 && off != usize::MAX && off <= out.static_size)
        else {
            out.images.dynamic.push(modid);
            return 0;
        };
        // SAFETY: `dlpi_phdr` has `dlpi_phnum` entries.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        if let Some(tls) = phdrs.iter().find(|p| p.p_type == libc::PT_TLS) {
            out.images.statics.push(TlsImage {
                below_tp: offset,
                image: info.dlpi_addr as usize + tls.p_vaddr as usize,
                filesz: tls.p_filesz as usize,
                memsz: tls.p_memsz as usize,
            });
        }
        0
    }
    let mut collect = Collect {
        offsets: None,
        static_size,
        images: Images::default(),
    };
    // SAFETY: the callback only reads the info it is given and the loader's link maps.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut collect as *mut Collect).cast()) };
    collect.images
}

/// (TLS module id, static TLS offset) of every module in the main namespace, from the
/// loader's `link_map`s.
///
/// # Safety
/// The loader's lock must be held (call from a `dl_iterate_phdr` callback).
unsafe fn static_tls_offsets() -> Vec<(usize, usize)> {
    let mut offsets = Vec::new();
    let (Ok([_, _, modid_at]), Ok([_, _, offset_at]), Ok(r_debug)) = (
        thread_db(c"_thread_db_link_map_l_tls_modid"),
        thread_db(c"_thread_db_link_map_l_tls_offset"),
        symbol(c"_r_debug", c"GLIBC_2.2.5"),
    ) else {
        return offsets;
    };
    // SAFETY: `struct r_debug { int r_version; struct link_map *r_map; … }`, and each
    // `link_map` starts with `l_addr, l_name, l_ld, l_next, l_prev`; the private fields are at
    // the offsets glibc's own tables give. The lock keeps the list stable.
    unsafe {
        let mut map = *((r_debug + 8) as *const usize);
        while map != 0 {
            let modid = *((map + modid_at as usize) as *const usize);
            let offset = *((map + offset_at as usize) as *const usize);
            if modid != 0 {
                offsets.push((modid, offset));
            }
            map = *((map + 24) as *const usize);
        }
    }
    offsets
}

/// One thread area: the value the FS base takes while a coroutine runs.
pub struct Area {
    tp: usize,
    /// Whether libc's per-thread parts (ctype tables) were initialised in it.
    libc_ready: bool,
}

// SAFETY: an area is plain memory owned by one coroutine (or one pool) at a time.
unsafe impl Send for Area {}

impl Area {
    /// A fresh area, filled in from the calling thread's descriptor.
    pub fn new() -> Option<Area> {
        let glibc = GLIBC.get()?.as_ref()?;
        // SAFETY: `_dl_allocate_tls(NULL)` allocates a zeroed descriptor, the static TLS blocks
        // (initialised from the modules' images) and a DTV; it returns the thread pointer.
        let tp = unsafe { (glibc.allocate_tls)(std::ptr::null_mut()) } as usize;
        if tp == 0 {
            return None;
        }
        let me = thread_pointer();
        // SAFETY: `tp` is a fresh `struct pthread` of `layout::SIZE` bytes; `me` is this thread's.
        unsafe {
            let put = |offset: usize, value: usize| *((tp + offset) as *mut usize) = value;
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
        Some(Area {
            tp,
            libc_ready: false,
        })
    }

    /// The thread pointer.
    pub fn tp(&self) -> usize {
        self.tp
    }

    /// Prepares the area for a coroutine running on `stack` on the thread with id `tid`:
    /// a recycled area gets fresh TLS images for every module but libc.
    pub fn attach(&mut self, stack_low: usize, stack_high: usize, tid: i32, recycled: bool) {
        let Some(glibc) = GLIBC.get().and_then(Option::as_ref) else {
            return;
        };
        // SAFETY: the area is ours and no coroutine runs on it now; the offsets were
        // measured on this process's own threads.
        unsafe {
            *((self.tp + layout::STACKBLOCK) as *mut usize) = stack_low;
            *((self.tp + layout::STACKBLOCK_SIZE) as *mut usize) = stack_high - stack_low;
            *((self.tp + layout::TID) as *mut i32) = tid;
            if recycled {
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
        // SAFETY: glibc 2.36's DTV: `header.dtv` points at entry 1 of an array of
        // `{ val, to_free }` pairs whose entry 0 holds its length; entry `modid` belongs to
        // module `modid`. A dynamic block was malloc'ed by glibc (`to_free`).
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

    /// Whether libc's per-thread initialisation ran (a recycled area keeps it).
    pub fn libc_ready(&self) -> bool {
        self.libc_ready
    }

    /// Notes that [`start_on_area`] ran.
    pub fn set_libc_ready(&mut self) {
        self.libc_ready = true;
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        if let Some(glibc) = GLIBC.get().and_then(Option::as_ref) {
            // SAFETY: the area came from `_dl_allocate_tls` and no coroutine uses it any more.
            unsafe { (glibc.deallocate_tls)(self.tp as *mut c_void, true) };
        }
    }
}

/// Runs on the coroutine, with its area installed, before the user's code: libc's per-thread
/// initialisation (the ctype tables behind `isalpha` & co.).
pub fn start_on_area() {
    if let Some(glibc) = GLIBC.get().and_then(Option::as_ref) {
        // SAFETY: called with the area installed as the thread pointer.
        unsafe { (glibc.ctype_init)() };
    }
}

/// Runs on the coroutine, with its area installed, after the user's code: the thread-local
/// destructors (`__cxa_thread_atexit_impl`, which Rust's `thread_local!` uses) and the
/// `pthread_key_create` destructors, as a thread exit would.
pub fn finish_on_area() {
    let Some(glibc) = GLIBC.get().and_then(Option::as_ref) else {
        return;
    };
    // SAFETY: called with the area installed; runs the destructors this "thread" registered.
    unsafe { (glibc.call_tls_dtors)() };
    let tp = thread_pointer();
    // SAFETY: `tp` is our area's descriptor; the key tables follow glibc 2.36's layout
    // (verified at start), and this mirrors what glibc does when a thread exits.
    unsafe { run_key_destructors(tp, glibc.pthread_keys) };
}

/// glibc's `__nptl_deallocate_tsd`, for an area.
///
/// # Safety
/// `tp` must be the running coroutine's area, `keys` glibc's `__pthread_keys`.
unsafe fn run_key_destructors(tp: usize, keys: usize) {
    // SAFETY (whole function): offsets inside our own descriptor and glibc's key table.
    unsafe {
        let used = (tp + layout::SPECIFIC_USED) as *mut bool;
        if !*used {
            return;
        }
        for _ in 0..layout::DESTRUCTOR_ITERATIONS {
            *used = false;
            let mut ran = false;
            for index in 0..layout::KEYS_MAX {
                let key = keys + index * 16;
                let (seq, destructor) = (*(key as *const usize), *((key + 8) as *const usize));
                if seq % 2 == 0 || destructor == 0 {
                    continue; // key not in use, or no destructor
                }
                let level1 = index / layout::KEY_2NDLEVEL;
                let block = if level1 == 0 {
                    tp + layout::SPECIFIC_1STBLOCK
                } else {
                    *((tp + layout::SPECIFIC + level1 * 8) as *const usize)
                };
                if block == 0 {
                    continue;
                }
                let slot = block + (index % layout::KEY_2NDLEVEL) * 16;
                let data = *((slot + 8) as *const usize);
                if data == 0 || *(slot as *const usize) != seq {
                    continue;
                }
                *((slot + 8) as *mut usize) = 0;
                let destructor: unsafe extern "C" fn(*mut c_void) = std::mem::transmute(destructor);
                destructor(data as *mut c_void);
                ran = true;
            }
            if !ran || !*used {
                break;
            }
        }
        *used = false;
        for level1 in 1..layout::KEY_2NDLEVEL {
            let slot = (tp + layout::SPECIFIC + level1 * 8) as *mut usize;
            if *slot != 0 {
                libc::free(*slot as *mut c_void);
                *slot = 0;
            }
        }
    }
}

/// Set by the interposed `dlopen`: libraries were loaded since the images were last taken.
static LOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes that a library was loaded (called by the `dlopen` hook).
pub fn note_load() {
    LOADED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Retakes the TLS images if a library was loaded through `dlopen` since they were taken (a
/// cheap check; call it before reusing an area), or, with `force`, if the loader's counter
/// moved (a walk of the loaded modules: for loads libc made itself).
pub fn refresh_images(force: bool) {
    let Some(glibc) = GLIBC.get().and_then(Option::as_ref) else {
        return;
    };
    let noted = LOADED.swap(false, std::sync::atomic::Ordering::SeqCst);
    if !noted && !force {
        return;
    }
    let fresh = tls_images(glibc.static_size);
    let mut images = glibc.images.lock();
    if noted || fresh.loads != images.loads {
        *images = fresh;
    }
}
