//! Copying to and from a caller's memory without dying on a bad pointer.
//!
//! A hook sometimes has to look at memory the caller handed to libc (a timeout, a futex word,
//! the `FIONBIO` flag) before the kernel has: where libc returns `EFAULT` for a bad pointer, a
//! plain read would kill the process with `SIGSEGV`. [`copy`] does the copy with one
//! `rep movsb`; if that instruction faults, the `SIGSEGV`/`SIGBUS` handler (`overflow.rs`)
//! sees the fault at this instruction and resumes at the fix-up, which returns `false` — the
//! way the kernel's own exception tables work. A good copy costs nothing extra.
//!
//! The handler must be corun's: a program that replaces the `SIGSEGV` handler afterwards gets
//! its own handler called on such a fault instead.

use std::mem::MaybeUninit;

// `corun_user_copy(dst, src, len)`: 1 if all `len` bytes were copied, 0 if the copy faulted.
// The only instruction that touches memory is the `rep movsb` at `corun_user_copy_insn`; the
// fault handler moves a fault there to `corun_user_copy_fixup`.
std::arch::global_asm!(
    ".pushsection .text.corun_user_copy,\"ax\",@progbits",
    ".p2align 4",
    ".hidden corun_user_copy",
    ".globl corun_user_copy",
    ".type corun_user_copy,@function",
    "corun_user_copy:",
    "    mov rcx, rdx",
    ".hidden corun_user_copy_insn",
    ".globl corun_user_copy_insn",
    "corun_user_copy_insn:",
    "    rep movsb",
    "    mov eax, 1",
    "    ret",
    ".hidden corun_user_copy_fixup",
    ".globl corun_user_copy_fixup",
    "corun_user_copy_fixup:",
    "    xor eax, eax",
    "    ret",
    ".size corun_user_copy, . - corun_user_copy",
    ".popsection",
);

extern "C" {
    fn corun_user_copy(dst: *mut u8, src: *const u8, len: usize) -> u32;
    static corun_user_copy_insn: u8;
    static corun_user_copy_fixup: u8;
}

/// Where a fault at instruction address `ip` resumes, if it is the copy's.
pub(crate) fn fixup_for(ip: usize) -> Option<usize> {
    // Taking the addresses of two labels reads nothing.
    let (insn, fixup) = (
        std::ptr::addr_of!(corun_user_copy_insn) as usize,
        std::ptr::addr_of!(corun_user_copy_fixup) as usize,
    );
    (ip == insn).then_some(fixup)
}

/// Copies `len` bytes from `src` to `dst`; false (with some bytes possibly copied) if either
/// range is not accessible.
///
/// # Safety
/// Whatever of `dst..dst + len` is accessible must be fine to overwrite; bad addresses are
/// allowed (that is the point).
pub unsafe fn copy(dst: usize, src: usize, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    crate::coroutine::install_fault_handlers();
    // SAFETY: the asm copies at most `len` bytes and survives faults (see the module docs);
    // the caller vouches for the destination.
    unsafe { corun_user_copy(dst as *mut u8, src as *const u8, len) == 1 }
}

/// Reads a `T` from the caller's `addr`, or `None` if it is not readable (`EFAULT`).
///
/// # Safety
/// `T` must be valid for any bit pattern (a plain C struct or integer).
pub unsafe fn read<T: Copy>(addr: usize) -> Option<T> {
    let mut value = MaybeUninit::<T>::uninit();
    // SAFETY: the destination is our own `value`; the source may be bad.
    let ok = unsafe { copy(value.as_mut_ptr() as usize, addr, std::mem::size_of::<T>()) };
    // SAFETY: fully written when `ok`, and any bit pattern is a valid `T` (caller).
    ok.then(|| unsafe { value.assume_init() })
}

/// Writes `value` to the caller's `addr`; false if it is not writable (`EFAULT`).
///
/// # Safety
/// `addr` must be memory the caller asked to have written (an out-parameter).
pub unsafe fn write<T: Copy>(addr: usize, value: &T) -> bool {
    // SAFETY: guaranteed by the caller; the source is our own value.
    unsafe { copy(addr, value as *const T as usize, std::mem::size_of::<T>()) }
}
