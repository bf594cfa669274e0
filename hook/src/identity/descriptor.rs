//! glibc's thread descriptor (`struct pthread`): the offsets corun reads and writes, checked at
//! start against glibc's own `_thread_db_*` tables (what gdb's libthread_db uses), and the
//! pthread-key destructors a thread exit would run.

use std::ffi::{c_void, CStr};

use super::{symbol, thread_pointer};

/// Byte offsets in glibc 2.36's `struct pthread` on x86_64 (checked by [`verify`]).
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
/// `cleanup_jmp_buf`: the innermost `pthread_cleanup_push` buffer (a `pthread_unwind_buf`),
/// just before `cancelhandling` (checked through it).
pub const CLEANUP_JMP_BUF: usize = 768;
pub const CANCELHANDLING: usize = 776;
pub const SPECIFIC_1STBLOCK: usize = 784;
pub const SPECIFIC: usize = 1296;
pub const SPECIFIC_USED: usize = 1552;
pub const REPORT_EVENTS: usize = 1553;
pub const STACKBLOCK: usize = 1680;
pub const STACKBLOCK_SIZE: usize = 1688;
pub const RES: usize = 1720;
pub const RSEQ_CPU_ID: usize = 2340;
/// `sizeof(struct pthread)`: the TCB end of the static TLS region.
pub const SIZE: usize = 2368;
/// `PTHREAD_KEYS_MAX`, `PTHREAD_KEY_2NDLEVEL_SIZE`, `PTHREAD_DESTRUCTOR_ITERATIONS`.
const KEYS_MAX: usize = 1024;
const KEY_2NDLEVEL: usize = 32;
const DESTRUCTOR_ITERATIONS: usize = 4;

/// Reads a `_thread_db_*` descriptor: [bits, count, offset].
pub fn thread_db(name: &CStr) -> Result<[u32; 3], String> {
    let address = symbol(name, c"GLIBC_PRIVATE")?;
    // SAFETY: glibc exports these descriptors as `const uint32_t[3]`.
    Ok(unsafe { *(address as *const [u32; 3]) })
}

/// Checks the descriptor layout against glibc's own `_thread_db_*` tables.
pub fn verify() -> Result<(), String> {
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
    check(c"_thread_db_pthread_tid", TID)?;
    check(c"_thread_db_pthread_list", LIST)?;
    check(c"_thread_db_pthread_specific", SPECIFIC)?;
    check(c"_thread_db_pthread_report_events", REPORT_EVENTS)?;
    check(c"_thread_db_pthread_dtvp", DTV)?;
    check(c"_thread_db_pthread_cancelhandling", CANCELHANDLING)?;
    let size = symbol(c"_thread_db_sizeof_pthread", c"GLIBC_PRIVATE")?;
    // SAFETY: a `const uint32_t` exported by glibc.
    let size = unsafe { *(size as *const u32) } as usize;
    if size != SIZE {
        return Err(format!("struct pthread is {size} bytes, expected {SIZE}"));
    }
    let tp = thread_pointer();
    // SAFETY: the self pointers of this thread's own descriptor.
    let (tcb, me) = unsafe { (*(tp as *const usize), *((tp + SELF) as *const usize)) };
    if tcb != tp || me != tp {
        return Err("the TCB self pointers are not where expected".into());
    }
    Ok(())
}

/// Where `pthread_unwind_buf.priv.data.prev` is: after the `jmp_buf` (8 words) and its
/// `mask_was_saved` int, padded to 8.
const UNWIND_BUF_PREV: usize = 72;

/// Takes the innermost `pthread_cleanup_push` buffer off the calling thread's chain (as
/// glibc's unwinder does before running its handler) and returns it, or `None` when no
/// handler is left.
///
/// # Safety
/// The thread pointer must be a verified glibc 2.36 descriptor (an area, or glibc's own).
pub unsafe fn pop_cleanup_buffer() -> Option<usize> {
    let tp = thread_pointer();
    // SAFETY: guaranteed by the caller: `cleanup_jmp_buf` is a field of the descriptor, and
    // a non-null value points at a live `pthread_unwind_buf` in a frame of this thread
    // (pushed by `__pthread_register_cancel`, popped on the normal path by its unregister).
    unsafe {
        let slot = (tp + CLEANUP_JMP_BUF) as *mut usize;
        let buf = *slot;
        if buf == 0 {
            return None;
        }
        *slot = *((buf + UNWIND_BUF_PREV) as *const usize);
        Some(buf)
    }
}

/// glibc's `__nptl_deallocate_tsd`, for an area.
///
/// # Safety
/// `tp` must be the running coroutine's area, `keys` glibc's `__pthread_keys`.
pub unsafe fn run_key_destructors(tp: usize, keys: usize) {
    // SAFETY (whole function): offsets inside our own descriptor and glibc's key table, laid
    // out as in glibc 2.36 (verified at start); this mirrors what glibc does at thread exit.
    unsafe {
        let used = (tp + SPECIFIC_USED) as *mut bool;
        if !*used {
            return;
        }
        for _ in 0..DESTRUCTOR_ITERATIONS {
            *used = false;
            let mut ran = false;
            for index in 0..KEYS_MAX {
                let key = keys + index * 16;
                let (seq, destructor) = (*(key as *const usize), *((key + 8) as *const usize));
                if seq % 2 == 0 || destructor == 0 {
                    continue; // key not in use, or no destructor
                }
                let level1 = index / KEY_2NDLEVEL;
                let block = if level1 == 0 {
                    tp + SPECIFIC_1STBLOCK
                } else {
                    *((tp + SPECIFIC + level1 * 8) as *const usize)
                };
                if block == 0 {
                    continue;
                }
                let slot = block + (index % KEY_2NDLEVEL) * 16;
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
        for level1 in 1..KEY_2NDLEVEL {
            let slot = (tp + SPECIFIC + level1 * 8) as *mut usize;
            if *slot != 0 {
                libc::free(*slot as *mut c_void);
                *slot = 0;
            }
        }
    }
}
