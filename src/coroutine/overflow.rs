//! Stack-overflow reporting for coroutine stacks.
//!
//! Every stack mapping (a slab of many slots, or one large stack of its own) registers itself
//! here: where it starts and ends, its slot stride, and the guard at the bottom of each slot.
//! The first registration installs a `SIGSEGV` handler (running on an alternate signal stack,
//! since the faulting stack is full). When a fault hits the guard of a registered slot, the
//! handler prints which coroutine overflowed and aborts, like std does for threads; any other
//! fault is passed on to the handler that was installed before ours (std's, or the default).
//!
//! The fault address alone decides: a kernel guard region faults with `SEGV_MAPERR` and an
//! `mprotect`ed page with `SEGV_ACCERR`, and both land in a registered guard.

use std::cell::{Cell, UnsafeCell};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use crate::coroutine::stack::page_size;
use crate::raw_syscall;
use crate::spin::SpinLock;

/// Names the coroutine running on the current thread, for the overflow message.
///
/// Called from the `SIGSEGV` handler: it must not allocate, lock or block.
pub type Describer = fn(&mut dyn fmt::Write) -> fmt::Result;

/// Registers the function that names the running coroutine in overflow messages (the runtime
/// uses it to print the coroutine's name and id). Without one the message says "a coroutine".
pub fn set_describer(describer: Describer) {
    DESCRIBER.store(describer as usize, Ordering::Release);
}

static DESCRIBER: AtomicUsize = AtomicUsize::new(0);

/// A mapping of stack slots: `[start, end)`, one slot every `stride` bytes, each starting with
/// `guard` bytes of guard.
#[derive(Clone, Copy)]
pub(crate) struct Slots {
    pub(crate) end: usize,
    pub(crate) stride: usize,
    pub(crate) guard: usize,
    /// The usable stack size of a slot, for the message.
    pub(crate) usable: usize,
}

/// Stack mappings by their start address, behind a spin lock (the signal handler may not block
/// on a futex, and in the hook library a futex would go through corun's own `syscall`).
static REGISTRY: SpinLock<BTreeMap<usize, Slots>> = SpinLock::new(BTreeMap::new());

/// Records a mapping of stack slots starting at `start`.
pub(crate) fn register_slots(start: usize, slots: Slots) {
    install_fault_handlers();
    REGISTRY.lock().insert(start, slots);
}

/// Forgets the mapping starting at `start` (before it is unmapped).
/// Takes the registry's lock and keeps it, across a `fork` (after the slabs': a slab's state
/// lock is held while its chunks are registered).
pub(crate) fn hold_registry() {
    REGISTRY.hold();
}

/// Releases what [`hold_registry`] took.
///
/// # Safety
/// The calling thread called `hold_registry` (before a `fork`).
pub(crate) unsafe fn release_registry() {
    // SAFETY: guaranteed by the caller.
    unsafe { REGISTRY.release() };
}

pub(crate) fn unregister_slots(start: usize) {
    REGISTRY.lock().remove(&start);
}

/// The usable size of the stack whose guard contains `addr`, if it is one of ours.
fn find_guard(addr: usize) -> Option<usize> {
    let map = REGISTRY.try_lock_for(1 << 20)?;
    let (&start, slots) = map.range(..=addr).next_back()?;
    (addr < slots.end && (addr - start) % slots.stride < slots.guard).then_some(slots.usable)
}

/// The dispositions of `SIGSEGV` and `SIGBUS` that were in place before ours, each written once
/// before ours goes in.
struct PreviousAction(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: written once inside `Once::call_once` before the handler that reads it is installed.
unsafe impl Sync for PreviousAction {}
static PREVIOUS_SEGV: PreviousAction = PreviousAction(UnsafeCell::new(MaybeUninit::zeroed()));
static PREVIOUS_BUS: PreviousAction = PreviousAction(UnsafeCell::new(MaybeUninit::zeroed()));

fn previous(signal: libc::c_int) -> &'static PreviousAction {
    if signal == libc::SIGBUS {
        &PREVIOUS_BUS
    } else {
        &PREVIOUS_SEGV
    }
}

/// Installs corun's `SIGSEGV` and `SIGBUS` handlers (once): stack overflows are reported, a
/// fault inside `user_memory::copy` resumes at its fix-up, anything else goes to the handler
/// that was there before.
pub(crate) fn install_fault_handlers() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        for signal in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: an all-zero sigaction is a valid value; sigaction(2) is given valid
            // pointers, and the previous disposition is not read until our handler is
            // installed, after this write.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_fault as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                let previous = (*previous(signal).0.get()).as_mut_ptr();
                libc::sigaction(signal, std::ptr::null(), previous);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}

extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid ucontext to an SA_SIGINFO handler; the instruction
    // pointer is the faulting instruction's.
    let gregs = unsafe { &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    if let Some(fixup) = crate::user_memory::fixup_for(gregs[libc::REG_RIP as usize] as usize) {
        gregs[libc::REG_RIP as usize] = fixup as libc::greg_t;
        return;
    }
    if signal == libc::SIGSEGV {
        // SAFETY: the kernel passes a valid siginfo for SIGSEGV.
        let addr = unsafe { (*info).si_addr() } as usize;
        if let Some(usable) = find_guard(addr) {
            report_overflow(usable);
        }
    }
    // SAFETY: same arguments as we were called with; the previous disposition was written
    // before we were installed.
    unsafe { chain(signal, info, context) }
}

fn report_overflow(usable: usize) -> ! {
    let mut message = FixedBuf::new();
    let _ = message.write_str("\ncorun: ");
    let describer = DESCRIBER.load(Ordering::Acquire);
    if describer == 0 {
        let _ = message.write_str("a coroutine");
    } else {
        // SAFETY: only `set_describer` stores a non-zero value, and it stores a `Describer`.
        let describer: Describer = unsafe { std::mem::transmute::<usize, Describer>(describer) };
        let _ = describer(&mut message);
    }
    let _ = write!(
        message,
        " has overflowed its stack ({} KiB)\n\
         corun: give it a larger stack (corun::Builder::stack_size, CORUN_STACK_SIZE, or \
         DefaultStack::new)\nfatal runtime error: stack overflow, aborting\n",
        usable / 1024
    );
    raw_syscall::write_all(2, message.as_bytes());
    // SAFETY: abort is async-signal-safe.
    unsafe { libc::abort() }
}

/// Hands a fault that is neither a coroutine stack overflow nor a `user_memory` copy to the
/// previous disposition.
///
/// # Safety
/// Must be called from the fault handler with the arguments it received.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: written before our handler was installed, never written again.
    let previous = unsafe { (*previous(signal).0.get()).assume_init_ref() };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action and return: the faulting instruction runs again and the
        // kernel kills the process with the signal, as it would have without us.
        // SAFETY: a zeroed sigaction with SIG_DFL is valid.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    } else if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO the handler has the three-argument signature.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        handler(signal, info, context);
    } else {
        // SAFETY: without SA_SIGINFO the handler takes the signal number only.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        handler(signal);
    }
}

/// A fixed-size, truncating text buffer (no allocation in a signal handler).
struct FixedBuf {
    bytes: [u8; 512],
    len: usize,
}

impl FixedBuf {
    fn new() -> Self {
        FixedBuf {
            bytes: [0; 512],
            len: 0,
        }
    }
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let n = s.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Size of the alternate signal stacks corun installs.
const ALTSTACK_SIZE: usize = 64 * 1024;

/// Makes sure the current thread has an alternate signal stack, so the overflow handler can run
/// when a coroutine's stack is full, and returns quickly when it has one.
///
/// Threads started by std in a Rust program already have one. corun calls this on every thread
/// that maps a coroutine stack and on its runtime's workers; call it yourself on any other
/// thread (one started from C, say) before resuming coroutines there. The stack is freed when
/// the thread exits.
pub fn ensure_altstack() {
    thread_local! {
        static ALTSTACK: Cell<bool> = const { Cell::new(false) };
        static OWNED: UnsafeCell<Option<AltStack>> = const { UnsafeCell::new(None) };
    }
    if ALTSTACK.get() {
        return;
    }
    ALTSTACK.set(true);
    // SAFETY: querying the current alternate stack with valid pointers.
    let current = unsafe {
        let mut current: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut current);
        current
    };
    if current.ss_flags & libc::SS_DISABLE == 0 {
        return;
    }
    if let Some(stack) = AltStack::install() {
        // SAFETY: OWNED is only touched here, once per thread, and never borrowed elsewhere.
        OWNED.with(|owned| unsafe { *owned.get() = Some(stack) });
    }
}

/// An alternate signal stack owned by a thread; uninstalled and unmapped at thread exit.
struct AltStack {
    start: usize,
    len: usize,
}

impl AltStack {
    fn install() -> Option<AltStack> {
        let page = page_size();
        let len = ALTSTACK_SIZE + page;
        // SAFETY: a fresh anonymous mapping; the guard page below it is made inaccessible and
        // the rest handed to sigaltstack, which keeps using it until `drop`.
        unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return None;
            }
            libc::mprotect(ptr, page, libc::PROT_NONE);
            let stack = libc::stack_t {
                ss_sp: ptr.cast::<u8>().add(page).cast(),
                ss_flags: 0,
                ss_size: ALTSTACK_SIZE,
            };
            if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
                libc::munmap(ptr, len);
                return None;
            }
            Some(AltStack {
                start: ptr as usize,
                len,
            })
        }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: disable the alternate stack before unmapping it; this thread is exiting and
        // is not running a signal handler.
        unsafe {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&disable, std::ptr::null_mut());
            libc::munmap(self.start as *mut libc::c_void, self.len);
        }
    }
}
