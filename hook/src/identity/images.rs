//! The modules' thread-local storage as a thread sees it: static blocks at fixed offsets below
//! the thread pointer (what a recycled area is refreshed with), dynamic ones behind the DTV.

use std::ffi::{c_void, CStr};

use super::descriptor::thread_db;
use super::symbol;

/// What areas are built and refreshed with (retaken when libraries are loaded later).
#[derive(Default)]
pub struct Images {
    /// Static blocks of every module but libc (libc's block stays with a recycled area).
    pub statics: Vec<TlsImage>,
    /// TLS module ids whose blocks are allocated on demand (libraries `dlopen`ed with
    /// general-dynamic TLS).
    pub dynamic: Vec<usize>,
    /// `dl_iterate_phdr`'s load counter when taken.
    pub loads: u64,
    /// Bytes of static TLS in use below the thread pointer (libc's block included): the
    /// largest static offset.
    pub used: usize,
    /// The largest TLS module id (the length a DTV needs).
    pub max_modid: usize,
}

/// One module's static TLS block.
#[derive(Clone, Copy)]
pub struct TlsImage {
    pub below_tp: usize,
    pub image: usize,
    pub filesz: usize,
    pub memsz: usize,
}

/// The TLS of every loaded module. A module with a static TLS offset (assigned at startup, or
/// for an initial-exec library `dlopen`ed later) is static; any other is dynamic.
///
/// The static offsets come from the loader's own `link_map`s (`l_tls_offset`, located through
/// glibc's `_thread_db_link_map_*` tables), read while `dl_iterate_phdr` holds the loader's lock.
pub fn take(static_size: usize) -> Images {
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
        out.images.max_modid = out.images.max_modid.max(modid);
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
        out.images.used = out.images.used.max(offset);
        // SAFETY: a NUL-terminated name (possibly empty) for every module.
        let name = unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy();
        if name.ends_with("/libc.so.6") {
            return 0; // libc's block (malloc cache, errno …) stays with the area
        }
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
