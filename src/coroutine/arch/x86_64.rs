//! x86_64 System V context switch.
//!
//! # The link slot
//!
//! Every coroutine stack holds, near its top, one machine word called the *link slot* (it is the
//! first field of the coroutine's [`Yielder`](crate::coroutine::Yielder)). It always holds the
//! stack pointer of whichever side is *not* running:
//! - while the coroutine runs, it holds the resumer's saved stack pointer;
//! - while the coroutine is suspended, it holds the coroutine's saved stack pointer.
//!
//! Every switch therefore *swaps* the current stack pointer with the link slot.
//!
//! # A saved context
//!
//! A suspended side's stack pointer `S` points at three words: `[S] = rip` to continue at,
//! `[S+8] = rbx`, `[S+16] = rbp`. Those two registers cannot be named as `asm!` operands, so the
//! switch saves them by hand; every other register is declared clobbered, and the compiler spills
//! only the ones that are live across the switch.
//!
//! # Call and return pair up
//!
//! The resumer enters the coroutine with `call` (so its saved `rip` is the return address the
//! `call` pushed), and the coroutine leaves with `ret`. The CPU's return-stack predictor then
//! predicts every switch back correctly; the `call` itself is an indirect call the branch
//! predictor learns. The code a `call` lands on (the resume point inside [`suspend`], or the
//! trampoline) performs the stack swap.
//!
//! # Values
//!
//! Two words travel with every switch, in `rdi` and `rsi`: a value word and a tag saying what
//! kind of value it is. A value that fits in a word travels in the word itself; a larger one
//! stays on the sender's (now suspended) stack and the word points at it. The receiver moves the
//! value out; the sender never touches it again.
//!
//! # Unwinding and debuggers
//!
//! The trampoline at the bottom of every coroutine's call chain carries DWARF CFI whose CFA is
//! computed from the link slot, so `_Unwind_Backtrace`, std's `Backtrace` and gdb step from the
//! coroutine's frames into the frame that called `resume`, on the resumer's stack.

use core::arch::{asm, global_asm};

/// The function the trampoline calls on the first resume. It never returns: it finishes by
/// calling [`switch_final`].
///
/// Arguments: the value pointer sent by the first `resume`, the closure pointer, and the link
/// slot's address.
pub(crate) type EntryFn =
    unsafe extern "C" fn(value: usize, closure: *mut u8, link: *mut usize) -> !;

/// Bytes between the link slot and the lowest word written by [`init_frame`].
pub(crate) const INITIAL_FRAME_SIZE: usize = 32;

// The trampoline, entered by the first `resume`'s `call` with `rcx = link`, `rax = [link]` (the
// initial frame) and `rdi = value`. It swaps stacks like the resume point in `suspend` does,
// which leaves `rsp = link - 8`,
// `[rsp] = entry` and `rbx = closure`, then enters `entry(value, closure, link)` as if it called it.
//
// The CFI describes the resumer's frame, valid from the call onwards:
//   CFA = [rsp + 8] + 24   (rsp + 8 is the link slot; it holds the resumer's saved stack pointer S)
//   rip = [CFA - 24], rbx = [CFA - 16], rbp = [CFA - 8]   (the saved context layout above)
// DW_CFA_def_cfa_expression (0x0f), 5 bytes: DW_OP_breg7 (0x77) 8, DW_OP_deref (0x06),
// DW_OP_plus_uconst (0x23) 24 (0x18).
global_asm!(
    ".text",
    ".balign 16",
    ".globl corun_coroutine_trampoline",
    ".hidden corun_coroutine_trampoline",
    ".type corun_coroutine_trampoline, @function",
    "corun_coroutine_trampoline:",
    ".cfi_startproc",
    ".cfi_escape 0x0f, 0x05, 0x77, 0x08, 0x06, 0x23, 0x18",
    ".cfi_offset rip, -24",
    ".cfi_offset rbx, -16",
    ".cfi_offset rbp, -8",
    "mov [rcx], rsp",
    "lea rsp, [rax + 8]",
    "pop rbx",
    "pop rbp",
    "mov rsi, rbx",
    "mov rdx, rcx",
    // `call [rsp]`, written as push + jmp: `entry` leaves with `switch_final`'s `ret`, which
    // must pair with the resumer's `call` in the return-stack predictor, so no call may be
    // left unreturned in between. The pushed address still lets unwinders find this frame.
    "lea rax, [rip + 2f]",
    "push rax",
    "jmp qword ptr [rsp + 8]",
    "2:",
    "ud2",
    ".cfi_endproc",
    ".size corun_coroutine_trampoline, . - corun_coroutine_trampoline",
);

extern "C" {
    fn corun_coroutine_trampoline();
}

/// Lays out the first context of a coroutine below `link` and stores it in the link slot.
///
/// # Safety
/// `link` must be 8 (mod 16), writable, and the 32 bytes below it must be writable stack memory
/// that nothing else uses. `closure` is handed to `entry` unchanged.
pub(crate) unsafe fn init_frame(link: *mut usize, entry: EntryFn, closure: *mut u8) {
    debug_assert_eq!(link as usize % 16, 8);
    // SAFETY: the caller guarantees the 32 bytes below `link` and `link` itself are ours.
    unsafe {
        let sp = link.sub(INITIAL_FRAME_SIZE / 8);
        sp.write(corun_coroutine_trampoline as *const () as usize); // rip
        sp.add(1).write(closure as usize); // rbx: the trampoline passes it on
        sp.add(2).write(0); // rbp: ends frame-pointer chains
        sp.add(3).write(entry as usize); // [link - 8]: called by the trampoline
        link.write(sp as usize);
    }
}

/// The closure pointer stored by [`init_frame`], while the coroutine has not started.
///
/// # Safety
/// `link` must be a link slot set up by [`init_frame`] that no switch has used yet.
pub(crate) unsafe fn initial_closure(link: *mut usize) -> *mut u8 {
    // SAFETY: the initial frame is intact (guaranteed by the caller); its second word is rbx.
    unsafe { *((*link) as *const usize).add(1) as *mut u8 }
}

/// Resumes the coroutine whose context is stored in `*link`, sending `(value, tag)`. Returns
/// the pair it sends when it suspends or finishes.
///
/// # Safety
/// `*link` must hold a context saved by [`suspend`] or laid out by [`init_frame`], on a live
/// stack, and whatever is sent must be valid for the receiver.
#[inline(always)]
pub(crate) unsafe fn resume(value: usize, tag: usize, link: *mut usize) -> (usize, usize) {
    let (value_out, tag_out);
    // SAFETY: the caller guarantees `*link` is a live saved context. rbx and rbp are saved and
    // restored by hand around the call; everything else is declared clobbered. The asm pushes
    // onto the current stack (no `nostack`), so the compiler keeps the red zone clear.
    unsafe {
        asm!(
            "push rbp",
            "push rbx",
            "mov rax, [rcx]",
            // Lands on the resume point with rax = the coroutine's saved stack pointer.
            "call [rax]",
            "pop rbx",
            "pop rbp",
            inlateout("rdi") value => value_out,
            inlateout("rsi") tag => tag_out,
            inlateout("rcx") link => _,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
        );
    }
    (value_out, tag_out)
}

/// Suspends the running coroutine, returning `(value, tag)` to its resumer. Returns the pair
/// sent by the next [`resume`].
///
/// # Safety
/// Must run on the coroutine's stack, with `*link` holding the resumer's context (true while
/// the coroutine runs), and whatever is sent must be valid for the receiver.
#[inline(always)]
pub(crate) unsafe fn suspend(value: usize, tag: usize, link: *mut usize) -> (usize, usize) {
    let (value_out, tag_out);
    // SAFETY: the caller guarantees `*link` holds the resumer's context. The resume point at
    // `2:` is entered by `resume`'s `call` with `rcx = link` and `rax` = our saved stack pointer
    // (loaded from the link slot); it stores the resumer's stack pointer in the link slot,
    // switches back to this stack and restores rbx and rbp.
    unsafe {
        asm!(
            "push rbp",
            "push rbx",
            "lea rax, [rip + 2f]",
            "push rax",
            "mov rax, rsp",
            "mov rsp, [rcx]",
            "mov [rcx], rax",
            "ret",
            "2:",
            "mov [rcx], rsp",
            "lea rsp, [rax + 8]",
            "pop rbx",
            "pop rbp",
            inlateout("rdi") value => value_out,
            inlateout("rsi") tag => tag_out,
            inlateout("rcx") link => _,
            lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
            clobber_abi("sysv64"),
        );
    }
    (value_out, tag_out)
}

/// Returns to the resumer for good: its context is restored and this stack is abandoned.
///
/// # Safety
/// As for [`suspend`]; additionally nothing on the current stack may be used again.
#[inline(always)]
pub(crate) unsafe fn switch_final(value: usize, tag: usize, link: *mut usize) -> ! {
    // SAFETY: the caller guarantees `*link` is the resumer's saved context and abandons this
    // one. `ret` lands after the resumer's `call`, which restores rbx and rbp.
    unsafe {
        asm!(
            "mov rsp, [rcx]",
            "ret",
            in("rdi") value,
            in("rsi") tag,
            in("rcx") link,
            options(noreturn),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Switching the thread pointer too.
//
// A coroutine may run with its own thread pointer (the FS base: glibc's thread descriptor and
// every thread-local live behind it). Only the *resumer* deals with it, inside the same asm
// block as the stack switch: it saves its own thread pointer (read from `fs:[0]`, where glibc
// keeps a pointer to the descriptor itself) in a slot of the coroutine's header, installs the
// coroutine's, and `call`s into the coroutine; when the coroutine suspends or finishes, its
// `ret` lands back in this block with `rcx` = the link slot (both `suspend` and
// `switch_final` leave it there), and the resumer reinstalls its own thread pointer before any
// Rust code runs. So no thread-local access can fall between an FS write and the stack switch
// it belongs with, and the coroutine side of a switch costs nothing extra.
//
// `wrfsbase` is used when the kernel enabled it for user space (AT_HWCAP2 bit FSGSBASE);
// otherwise (old kernels, valgrind) `arch_prctl(ARCH_SET_FS)`, a system call, inside the asm.

use std::sync::atomic::{AtomicU8, Ordering};

/// Where `resume_tp` saves the resumer's thread pointer: this many bytes past the link slot
/// (the `resumer_tp` field of the coroutine's header).
pub(crate) const RESUMER_TP_OFFSET: usize = 16;

/// 0: not probed yet, 1: `wrfsbase`, 2: `arch_prctl`.
static FS_WRITER: AtomicU8 = AtomicU8::new(0);
const WRFSBASE: u8 = 1;
const ARCH_PRCTL: u8 = 2;

/// Decides once how to write the FS base. Call before the first [`resume_tp`].
pub(crate) fn probe_fs_writer() {
    if FS_WRITER.load(Ordering::Relaxed) != 0 {
        return;
    }
    const HWCAP2_FSGSBASE: libc::c_ulong = 1 << 1;
    // SAFETY: getauxval has no preconditions.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    let writer = if hwcap2 & HWCAP2_FSGSBASE != 0 {
        WRFSBASE
    } else {
        ARCH_PRCTL
    };
    FS_WRITER.store(writer, Ordering::Relaxed);
}

/// Whether `wrfsbase` is used (else `arch_prctl`); for diagnostics.
pub(crate) fn uses_wrfsbase() -> bool {
    FS_WRITER.load(Ordering::Relaxed) == WRFSBASE
}

/// [`resume`], running the coroutine with thread pointer `tp` and restoring ours afterwards.
///
/// # Safety
/// As for [`resume`]; `tp` must be a complete thread pointer (see
/// `Coroutine::set_thread_pointer`), and the header at `link` must have its resumer slot at
/// [`RESUMER_TP_OFFSET`].
#[inline(always)]
pub(crate) unsafe fn resume_tp(
    value: usize,
    tag: usize,
    link: *mut usize,
    tp: usize,
) -> (usize, usize) {
    let (value_out, tag_out);
    if FS_WRITER.load(Ordering::Relaxed) == WRFSBASE {
        // SAFETY: as for `resume`, plus: fs:[0] is the current thread descriptor's self
        // pointer; the FS base is the coroutine's only between the `wrfsbase` before the call
        // and the one after it returns, both in this block.
        unsafe {
            asm!(
                "push rbp",
                "push rbx",
                "mov r8, qword ptr fs:[0]",
                "mov [rcx + {slot}], r8",
                "wrfsbase r10",
                "mov rax, [rcx]",
                "call [rax]",
                "mov r8, [rcx + {slot}]",
                "wrfsbase r8",
                "pop rbx",
                "pop rbp",
                slot = const RESUMER_TP_OFFSET,
                inlateout("rdi") value => value_out,
                inlateout("rsi") tag => tag_out,
                inlateout("rcx") link => _,
                inlateout("r10") tp => _,
                lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
                clobber_abi("sysv64"),
            );
        }
    } else {
        // SAFETY: as above, with arch_prctl(ARCH_SET_FS), which clobbers rcx, r11 and rax:
        // the link and the values travelling in rdi/rsi are kept on the stack around it.
        unsafe {
            asm!(
                "push rbp",
                "push rbx",
                "mov r8, qword ptr fs:[0]",
                "mov [rcx + {slot}], r8",
                "push rcx",
                "push rdi",
                "push rsi",
                "mov eax, 158",
                "mov edi, 0x1002",
                "mov rsi, r10",
                "syscall",
                "pop rsi",
                "pop rdi",
                "pop rcx",
                "mov rax, [rcx]",
                "call [rax]",
                "push rdi",
                "push rsi",
                "mov eax, 158",
                "mov edi, 0x1002",
                "mov rsi, [rcx + {slot}]",
                "syscall",
                "pop rsi",
                "pop rdi",
                "pop rbx",
                "pop rbp",
                slot = const RESUMER_TP_OFFSET,
                inlateout("rdi") value => value_out,
                inlateout("rsi") tag => tag_out,
                inlateout("rcx") link => _,
                inlateout("r10") tp => _,
                lateout("r12") _, lateout("r13") _, lateout("r14") _, lateout("r15") _,
                clobber_abi("sysv64"),
            );
        }
    }
    (value_out, tag_out)
}
