//! System calls issued with the `syscall` instruction, bypassing libc.
//!
//! Inside the preloaded hook library every libc symbol may resolve to corun's own interposed
//! version, so code that must never be intercepted (the overflow handler, the runtime's own
//! locks) uses these instead.

use core::arch::asm;

/// `syscall(nr, a1, a2, a3)`; returns the raw kernel result (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for the system call `nr`.
#[inline]
pub unsafe fn syscall3(nr: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; the kernel clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `syscall(nr, a1 … a6)`; returns the raw kernel result (`-errno` on failure).
///
/// # Safety
/// The arguments must be valid for the system call `nr`.
#[inline]
pub unsafe fn syscall6(
    nr: usize,
    a1: usize,
    a2: usize,
    a3: usize,
    a4: usize,
    a5: usize,
    a6: usize,
) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; the kernel clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            in("r9") a6,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Writes all of `bytes` to `fd`, retrying on short writes and `EINTR`; gives up silently on
/// any other error (used for last-words diagnostics).
pub fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a live slice; write(2) only reads it.
        let n = unsafe {
            syscall3(
                libc::SYS_write as usize,
                fd as usize,
                bytes.as_ptr() as usize,
                bytes.len(),
            )
        };
        if n == -(libc::EINTR as isize) {
            continue;
        }
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}
