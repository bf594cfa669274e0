//! Stackful coroutines: the context-switch core shared by the front-end and the runtime.
//!
//! A [`Coroutine`] runs a closure on its own [`Stack`]. The closure receives a [`Yielder`] and
//! the first input; [`Yielder::suspend`] hands a value back to whoever called
//! [`Coroutine::resume`] and waits for the next input.
//!
//! ```
//! use corun::coroutine::{Coroutine, CoroutineResult, Yielder};
//!
//! let mut co = Coroutine::new(|y: &Yielder<u32, u32>, first: u32| {
//!     let next = y.suspend(first + 1);
//!     next * 2
//! });
//! assert_eq!(co.resume(1), CoroutineResult::Yield(2));
//! assert_eq!(co.resume(5), CoroutineResult::Return(10));
//! assert!(co.done());
//! ```
//!
//! Panics inside the closure propagate out of `resume`. Dropping a suspended coroutine unwinds
//! its stack so that its locals are dropped ([`Coroutine::force_unwind`]); a coroutine that never
//! started just drops its closure.
//!
//! Supported: x86_64 Linux. Building for any other target fails with a message saying so.

mod arch;
mod overflow;
mod stack;
mod valgrind;

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

pub(crate) use overflow::install_fault_handlers;
pub use overflow::{ensure_altstack, set_describer, Describer};

/// Whether switching a coroutine's thread pointer (see [`Coroutine::set_thread_pointer`]) uses
/// the `wrfsbase` instruction (`true`) or the slower `arch_prctl` system call (`false`: the
/// kernel has not enabled FSGSBASE for user space, or the program runs under valgrind).
pub fn thread_pointer_switch_is_wrfsbase() -> bool {
    arch::probe_fs_writer();
    arch::uses_wrfsbase()
}
pub use stack::{
    after_fork, before_fork, guard_kind, pooled_stacks, set_guard_mode, set_pool_capacity,
    set_reserve_finalizer, trim_pool, DefaultStack, GuardKind, GuardMode, Stack,
    DEFAULT_STACK_SIZE,
};

/// What [`Coroutine::resume`] returns: the coroutine suspended with a value, or finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoroutineResult<Yield, Return> {
    /// The coroutine called [`Yielder::suspend`] with this value.
    Yield(Yield),
    /// The coroutine's closure returned this value.
    Return(Return),
}

impl<Yield, Return> CoroutineResult<Yield, Return> {
    /// The yielded value, if the coroutine suspended.
    pub fn as_yield(self) -> Option<Yield> {
        match self {
            CoroutineResult::Yield(value) => Some(value),
            CoroutineResult::Return(_) => None,
        }
    }

    /// The returned value, if the coroutine finished.
    pub fn as_return(self) -> Option<Return> {
        match self {
            CoroutineResult::Yield(_) => None,
            CoroutineResult::Return(value) => Some(value),
        }
    }
}

// What a switch carries, in the tag word.
/// Parent → coroutine: the value word points at an `Input`.
const TAG_VALUE: usize = 0;
/// Parent → coroutine: unwind the stack (the value word is unused).
const TAG_UNWIND: usize = 1;
/// Coroutine → parent: the value word points at a `Yield`.
const TAG_YIELD: usize = 2;
/// Coroutine → parent: the value word points at a `Return`; the coroutine is finished.
const TAG_RETURN: usize = 3;
/// Coroutine → parent: the value word points at a panic payload; the coroutine is finished.
const TAG_PANIC: usize = 4;
/// Coroutine → parent: a requested unwind reached the bottom of the stack.
const TAG_UNWOUND: usize = 5;

/// Whether a `T` travels in the switch's value word itself rather than behind a pointer.
const fn fits_in_word<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<usize>()
        && mem::align_of::<T>() <= mem::align_of::<usize>()
}

/// The value word for sending `value`. The sender must not use or drop `value` afterwards.
#[inline(always)]
fn encode<T>(value: &ManuallyDrop<T>) -> usize {
    if fits_in_word::<T>() {
        let mut word = 0usize;
        // SAFETY: `T` fits in a word (checked above); its bytes are copied, not interpreted.
        unsafe {
            ptr::copy_nonoverlapping(
                (&**value as *const T).cast::<u8>(),
                (&mut word as *mut usize).cast::<u8>(),
                mem::size_of::<T>(),
            )
        };
        word
    } else {
        &**value as *const T as usize
    }
}

/// Moves the value out of a word made by [`encode`].
///
/// # Safety
/// `word` must come from `encode::<T>` of a value the sender gave up, and (for values behind a
/// pointer) the sender's stack must still be alive.
#[inline(always)]
unsafe fn decode<T>(word: usize) -> T {
    if fits_in_word::<T>() {
        // SAFETY: the word holds the bytes of a `T`, and a usize is aligned enough for it.
        unsafe { ptr::read((&word as *const usize).cast::<T>()) }
    } else {
        // SAFETY: the word points at a `T` the sender gave up.
        unsafe { ptr::read(word as *const T) }
    }
}

/// The panic payload used to unwind a suspended coroutine's stack.
struct ForcedUnwind;

/// Starts unwinding the coroutine's stack (the parent asked for it with `TAG_UNWIND`).
#[cold]
#[inline(never)]
fn forced_unwind() -> ! {
    panic::resume_unwind(Box::new(ForcedUnwind))
}

/// The handle a coroutine's closure uses to suspend itself.
///
/// It lives at the top of the coroutine's stack, so references to it never outlive the
/// coroutine.
#[repr(C)]
pub struct Yielder<Input, Yield> {
    header: Header,
    _marker: PhantomData<fn(Yield) -> Input>,
}

/// The untyped part of a [`Yielder`], at the top of the coroutine's stack.
#[repr(C)]
struct Header {
    /// The link slot (see `arch`): must stay the first field.
    link: Cell<usize>,
    /// Drops the closure in place if the coroutine never starts (the closure's address is in
    /// the initial frame).
    drop_closure: unsafe fn(*mut u8),
    /// The resumer's thread pointer, saved by a resume that installs the coroutine's own
    /// (`arch::RESUMER_TP_OFFSET` bytes from the link slot).
    resumer_tp: Cell<usize>,
}

const _: () = assert!(std::mem::offset_of!(Header, resumer_tp) == arch::RESUMER_TP_OFFSET);

impl<Input, Yield> Yielder<Input, Yield> {
    /// Suspends the coroutine, handing `value` to the caller of [`Coroutine::resume`], and
    /// returns the input of the next `resume`.
    ///
    /// If the coroutine is being dropped instead of resumed, this unwinds the coroutine's stack
    /// (so locals are dropped); it does not return. If the closure catches that unwind and
    /// suspends again, the new suspend unwinds too, until the closure finishes.
    pub fn suspend(&self, value: Yield) -> Input {
        let value = ManuallyDrop::new(value);
        // SAFETY: we run on the coroutine's stack, so the link slot holds the resumer's saved
        // context. The resumer takes ownership of `value` (tag YIELD) and sends back a pointer
        // to an `Input` it gave up (tag VALUE) or an unwind request.
        let (input, tag) =
            unsafe { arch::suspend(encode(&value), TAG_YIELD, self.header.link.as_ptr()) };
        if tag == TAG_UNWIND {
            forced_unwind();
        }
        // SAFETY: tag VALUE: `input` encodes an `Input` the resumer gave up.
        unsafe { decode(input) }
    }
}

/// Where a coroutine is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Created; the closure has not been called.
    NotStarted,
    /// Suspended inside [`Yielder::suspend`].
    Suspended,
    /// Returned, panicked, was unwound or reset.
    Done,
}

/// A stackful coroutine: a closure running on its own stack, suspending with `Yield` values,
/// resumed with `Input` values, finishing with a `Return` value.
///
/// See the [module documentation](self) for an example.
pub struct Coroutine<Input, Yield, Return, S: Stack = DefaultStack> {
    stack: S,
    /// The link slot on the coroutine's stack (the first word of its `Yielder`).
    link: *mut usize,
    /// The coroutine's own thread pointer, or 0 to run with the resumer's.
    tp: usize,
    state: State,
    _marker: PhantomData<Variance<Input, Yield, Return>>,
}

/// Makes `Coroutine` use its type parameters as `resume` does, and keeps it `!Send`/`!Sync`
/// (its closure may hold anything, and its stack may hold thread-bound state).
type Variance<Input, Yield, Return> = (fn(Input) -> CoroutineResult<Yield, Return>, *mut ());

impl<Input, Yield, Return> Coroutine<Input, Yield, Return, DefaultStack> {
    /// Creates a coroutine on a [`DefaultStack`] of [`DEFAULT_STACK_SIZE`].
    ///
    /// # Panics
    /// When no stack can be mapped (the message says why, e.g. `vm.max_map_count`). Use
    /// [`DefaultStack::new`] with [`Coroutine::with_stack`] to handle that as an error.
    pub fn new<F>(f: F) -> Self
    where
        F: FnOnce(&Yielder<Input, Yield>, Input) -> Return + 'static,
    {
        Self::with_stack(DefaultStack::default(), f)
    }
}

impl<Input, Yield, Return, S: Stack> Coroutine<Input, Yield, Return, S> {
    /// Creates a coroutine that runs `f` on `stack`. Nothing runs until the first
    /// [`resume`](Self::resume).
    ///
    /// # Panics
    /// If `stack` is too small to hold `f` and the coroutine's bookkeeping (a few hundred bytes
    /// more than `f` itself).
    #[inline]
    pub fn with_stack<F>(stack: S, f: F) -> Self
    where
        F: FnOnce(&Yielder<Input, Yield>, Input) -> Return + 'static,
    {
        let base = stack.base();
        let limit = stack.limit();
        debug_assert!(
            base % 16 == 0 && limit < base,
            "corun: invalid coroutine stack bounds"
        );
        // Layout from the top: the closure, the Yielder (whose first word is the link slot,
        // 8 mod 16 so the trampoline calls with an aligned stack), the initial frame.
        let closure = base
            .checked_sub(mem::size_of::<F>())
            .map(|addr| addr & !(mem::align_of::<F>() - 1));
        let link = closure
            .and_then(|c| c.checked_sub(mem::size_of::<Yielder<Input, Yield>>() + 8))
            .map(|addr| (addr & !15) + 8);
        let (closure, link) = match (closure, link) {
            (Some(c), Some(l)) if l.saturating_sub(limit) >= arch::INITIAL_FRAME_SIZE + 256 => {
                (c, l)
            }
            _ => panic!(
                "corun: a coroutine stack of {} bytes is too small for a closure of {} bytes",
                base - limit,
                mem::size_of::<F>()
            ),
        };
        // SAFETY: `closure` and `link..link + size_of::<Yielder>()` lie inside the stack (checked
        // above), are suitably aligned, and nothing runs on the stack yet. `init_frame` writes
        // the 32 bytes below `link`, which the check above also leaves room for.
        unsafe {
            ptr::write(closure as *mut F, f);
            ptr::write(
                link as *mut Yielder<Input, Yield>,
                Yielder {
                    header: Header {
                        link: Cell::new(0),
                        drop_closure: drop_in_place_as::<F>,
                        resumer_tp: Cell::new(0),
                    },
                    _marker: PhantomData,
                },
            );
            arch::init_frame(
                link as *mut usize,
                entry::<F, Input, Yield, Return>,
                closure as *mut u8,
            );
        }
        Coroutine {
            stack,
            link: link as *mut usize,
            tp: 0,
            state: State::NotStarted,
            _marker: PhantomData,
        }
    }

    /// Runs the coroutine until it suspends or finishes. The first call passes `input` as the
    /// closure's second argument; later calls make the pending [`Yielder::suspend`] return it.
    ///
    /// # Panics
    /// If the coroutine has already finished, and with the coroutine's own panic payload if the
    /// closure panics (the coroutine is finished afterwards).
    #[inline]
    pub fn resume(&mut self, input: Input) -> CoroutineResult<Yield, Return> {
        if self.state != State::Suspended {
            self.before_first_resume();
        }
        let input = ManuallyDrop::new(input);
        // SAFETY: the coroutine is not finished, so the link slot holds its saved context (or
        // the initial frame) on a live stack. The coroutine takes ownership of `input`.
        let (value, tag) = unsafe { self.switch_in(encode(&input), TAG_VALUE) };
        // SAFETY: `value` and `tag` were sent by `Yielder::suspend` or `entry`, which give up
        // the value they point at.
        unsafe { self.receive(value, tag) }
    }

    /// The slow path of `resume`: starting, or refusing to resume a finished coroutine.
    #[cold]
    fn before_first_resume(&mut self) {
        if self.state == State::Done {
            panic!("corun: called `Coroutine::resume` on a coroutine that has already finished");
        }
        // From here on the coroutine is started; it is `Suspended` whenever it is not running.
        self.state = State::Suspended;
    }

    /// Turns what the coroutine sent into a result, updating the state.
    ///
    /// # Safety
    /// `(value, tag)` must have been sent by this coroutine's side of a switch.
    #[inline]
    unsafe fn receive(&mut self, value: usize, tag: usize) -> CoroutineResult<Yield, Return> {
        match tag {
            // SAFETY: the coroutine gave up the `Yield` encoded in `value`.
            TAG_YIELD => CoroutineResult::Yield(unsafe { decode(value) }),
            TAG_RETURN => {
                self.state = State::Done;
                // SAFETY: the coroutine gave up the `Return` encoded in `value`.
                CoroutineResult::Return(unsafe { decode(value) })
            }
            TAG_PANIC => {
                self.state = State::Done;
                // SAFETY: the coroutine gave up the payload encoded in `value`.
                let payload = unsafe { decode::<Box<dyn Any + Send>>(value) };
                panic::resume_unwind(payload)
            }
            _ => unreachable!("corun: unexpected coroutine switch tag"),
        }
    }

    /// Whether the closure has been entered (it may also have finished since).
    pub fn started(&self) -> bool {
        self.state != State::NotStarted
    }

    /// Whether the coroutine has finished: returned, panicked, or was unwound or reset.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// The header at the top of the coroutine's stack.
    #[inline(always)]
    fn header(&self) -> &Header {
        // SAFETY: `with_stack` wrote a Yielder (whose first field is the Header) at `link`, and
        // it lives as long as the stack, which `self` owns.
        unsafe { &*(self.link as *const Header) }
    }

    /// Makes the coroutine run with its own thread pointer (the x86_64 FS base, which glibc
    /// and Rust use to find thread-local storage): every resume installs `tp` and every switch
    /// back restores the resumer's, inside the switch itself (no thread-local access can fall
    /// between the two). `0` turns it off.
    ///
    /// The runtime uses this to give each coroutine its own thread identity (see the hook
    /// library's `identity` module); a thread pointer is more than a TLS block — libc keeps
    /// its thread descriptor there — so this is for code that builds a complete one.
    ///
    /// # Safety
    /// `tp` must be a complete, initialised thread pointer for the libc in use, alive for as
    /// long as the coroutine may run, and not installed on another thread at the same time.
    /// Call it only while the coroutine is not running.
    pub unsafe fn set_thread_pointer(&mut self, tp: usize) {
        arch::probe_fs_writer();
        self.tp = tp;
    }

    /// The stack the coroutine runs on.
    pub fn stack(&self) -> &S {
        &self.stack
    }

    /// The lowest and one-past-the-highest address of the coroutine's stack.
    pub fn stack_bounds(&self) -> (usize, usize) {
        (self.stack.limit(), self.stack.base())
    }

    /// The thread pointer set with [`set_thread_pointer`](Self::set_thread_pointer), or 0.
    pub fn thread_pointer(&self) -> usize {
        self.tp
    }

    /// Switches into the coroutine, installing its thread pointer if it has one.
    ///
    /// # Safety
    /// As for `arch::resume`: the coroutine must be suspended (or not started) on a live stack.
    #[inline(always)]
    unsafe fn switch_in(&self, value: usize, tag: usize) -> (usize, usize) {
        // SAFETY: guaranteed by the caller; a non-zero `tp` was vouched for in
        // `set_thread_pointer`, and the header's `resumer_tp` slot is where `resume_tp` expects.
        unsafe {
            if self.tp == 0 {
                arch::resume(value, tag, self.link)
            } else {
                arch::resume_tp(value, tag, self.link, self.tp)
            }
        }
    }

    /// Finishes the coroutine now, dropping what it owns.
    ///
    /// A suspended coroutine is resumed with a special panic that unwinds its stack from the
    /// pending [`Yielder::suspend`], running every local's `Drop`; if the closure catches that
    /// panic and returns normally, its return value is dropped. A coroutine that never started
    /// drops its closure. A finished coroutine is left alone.
    ///
    /// # Panics
    /// With the coroutine's payload if it panics with something else while unwinding.
    #[inline(never)]
    pub fn force_unwind(&mut self) {
        match self.state {
            State::Done => {}
            State::NotStarted => {
                self.state = State::Done;
                // SAFETY: not started, so the Yielder and the initial frame written by
                // `with_stack` are intact and the closure was never moved out.
                unsafe {
                    (self.header().drop_closure)(arch::initial_closure(self.link));
                }
            }
            State::Suspended => loop {
                // SAFETY: suspended, so the link slot holds the coroutine's saved context.
                let (value, tag) = unsafe { self.switch_in(0, TAG_UNWIND) };
                match tag {
                    // The closure caught the unwind and suspended again: unwind again, until
                    // the coroutine finishes.
                    // SAFETY: the coroutine gave up the `Yield` encoded in `value`.
                    TAG_YIELD => drop(unsafe { decode::<Yield>(value) }),
                    TAG_UNWOUND => {
                        self.state = State::Done;
                        return;
                    }
                    _ => {
                        // SAFETY: sent by this coroutine's `entry` (RETURN or PANIC).
                        drop(unsafe { self.receive(value, tag) });
                        return;
                    }
                }
            },
        }
    }

    /// Marks the coroutine finished without running any destructor on its stack: its locals
    /// (or its closure, if it never started) are leaked.
    ///
    /// # Safety
    /// Skipping those destructors must be sound: nothing may rely on them running (for
    /// example a guard that unlocks a mutex, or a borrow of memory that must be released).
    pub unsafe fn force_reset(&mut self) {
        self.state = State::Done;
    }

    /// Finishes the coroutine (as [`force_unwind`](Self::force_unwind) does) and returns its
    /// stack for reuse.
    #[inline]
    pub fn into_stack(mut self) -> S {
        if self.state != State::Done {
            self.force_unwind();
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the stack is moved out exactly once.
        unsafe { ptr::read(&this.stack) }
    }
}

impl<Input, Yield, Return, S: Stack> Drop for Coroutine<Input, Yield, Return, S> {
    fn drop(&mut self) {
        if self.state != State::Done {
            self.force_unwind();
        }
    }
}

impl<Input, Yield, Return, S: Stack> std::fmt::Debug for Coroutine<Input, Yield, Return, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coroutine")
            .field("state", &self.state)
            .field("stack_limit", &format_args!("{:#x}", self.stack.limit()))
            .field("stack_base", &format_args!("{:#x}", self.stack.base()))
            .finish()
    }
}

/// Drops a `T` in place; stored type-erased so `Coroutine` does not name the closure type.
///
/// # Safety
/// `p` must point at a valid `T` that is not used afterwards.
unsafe fn drop_in_place_as<T>(p: *mut u8) {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr::drop_in_place(p as *mut T) }
}

/// The bottom Rust frame of every coroutine: runs the closure, catches its panic, and hands the
/// outcome to the resumer for good.
///
/// # Safety
/// Called only by the trampoline on a stack laid out by `Coroutine::with_stack` for these types.
unsafe extern "C" fn entry<F, Input, Yield, Return>(
    input: usize,
    closure: *mut u8,
    link: *mut usize,
) -> !
where
    F: FnOnce(&Yielder<Input, Yield>, Input) -> Return,
{
    // SAFETY: `with_stack` wrote a `Yielder` at `link` and the `F` at `closure`; the first resume
    // sent an encoded `Input` it gave up. Each is moved out once.
    let (yielder, f, input) = unsafe {
        (
            &*(link as *const Yielder<Input, Yield>),
            ptr::read(closure as *const F),
            decode::<Input>(input),
        )
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(move || f(yielder, input)));
    // Every path ends in `switch_final`, so nothing below is ever dropped on this stack: the
    // resumer takes ownership of what the value word points at.
    match outcome {
        Ok(value) => {
            let value = ManuallyDrop::new(value);
            // SAFETY: the link slot holds the resumer's context; it reads `value` and never
            // switches back here.
            unsafe { arch::switch_final(encode(&value), TAG_RETURN, link) }
        }
        Err(payload) if payload.is::<ForcedUnwind>() => {
            drop(payload);
            // SAFETY: as above; nothing is sent.
            unsafe { arch::switch_final(0, TAG_UNWOUND, link) }
        }
        Err(payload) => {
            let payload = ManuallyDrop::new(payload);
            // SAFETY: as above; the resumer takes the payload.
            unsafe { arch::switch_final(encode(&payload), TAG_PANIC, link) }
        }
    }
}
