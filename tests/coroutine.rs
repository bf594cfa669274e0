//! Behaviour of the context-switch core (`corun::coroutine`), without the runtime.

use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corun::coroutine::{Coroutine, CoroutineResult, DefaultStack, Stack, Yielder};

/// Counts how many times values of this type are dropped.
struct DropCounter(Arc<AtomicUsize>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn quiet_panics() {
    // Expected panics in these tests need not clutter the output.
    panic::set_hook(Box::new(|_| {}));
}

#[test]
fn values_flow_both_ways() {
    let mut co = Coroutine::new(|y: &Yielder<u32, u32>, first: u32| {
        let next = y.suspend(first + 1);
        next * 2
    });
    assert!(!co.started());
    assert_eq!(co.resume(1), CoroutineResult::Yield(2));
    assert!(co.started() && !co.done());
    assert_eq!(co.resume(5), CoroutineResult::Return(10));
    assert!(co.done());
}

#[test]
fn owned_values_move_through_switches() {
    let mut co = Coroutine::new(|y: &Yielder<String, Vec<String>>, first: String| {
        let mut seen = vec![first];
        for _ in 0..3 {
            let next = y.suspend(seen.clone());
            seen.push(next);
        }
        seen.join(",")
    });
    assert_eq!(
        co.resume("a".into()).as_yield(),
        Some(vec!["a".to_string()])
    );
    assert_eq!(co.resume("b".into()).as_yield().map(|v| v.len()), Some(2));
    assert_eq!(co.resume("c".into()).as_yield().map(|v| v.len()), Some(3));
    assert_eq!(
        co.resume("d".into()).as_return().as_deref(),
        Some("a,b,c,d")
    );
}

#[test]
fn resume_after_finish_panics_with_clear_message() {
    quiet_panics();
    let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| 1);
    assert_eq!(co.resume(()), CoroutineResult::Return(1));
    let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).unwrap_err();
    let message = err.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(
        message.contains("already finished"),
        "message was {message:?}"
    );
}

#[test]
fn panic_propagates_with_payload_and_finishes_the_coroutine() {
    quiet_panics();
    let mut co = Coroutine::new(|y: &Yielder<(), u8>, ()| -> () {
        y.suspend(1);
        panic::panic_any(String::from("payload from inside"));
    });
    assert_eq!(co.resume(()), CoroutineResult::Yield(1));
    let err = panic::catch_unwind(AssertUnwindSafe(|| co.resume(()))).unwrap_err();
    assert_eq!(
        err.downcast_ref::<String>().map(String::as_str),
        Some("payload from inside")
    );
    assert!(co.done());
}

#[test]
fn dropping_a_suspended_coroutine_runs_its_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        let _outer = DropCounter(d.clone());
        let _inner = Box::new(DropCounter(d.clone()));
        y.suspend(());
        unreachable!("never resumed");
    });
    co.resume(());
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(co);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn unwinding_completes_when_the_body_catches_it() {
    let drops = Arc::new(AtomicUsize::new(0));
    let after_catch = Arc::new(AtomicUsize::new(0));
    let (d, a) = (drops.clone(), after_catch.clone());
    let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        let _outside = DropCounter(d.clone());
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            let _inside = DropCounter(d.clone());
            y.suspend(());
        }));
        assert!(caught.is_err());
        a.fetch_add(1, Ordering::SeqCst);
        // A second suspend during the unwind unwinds again rather than suspending.
        let again = panic::catch_unwind(AssertUnwindSafe(|| y.suspend(())));
        assert!(again.is_err());
        a.fetch_add(1, Ordering::SeqCst);
    });
    co.resume(());
    co.force_unwind();
    assert!(co.done());
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert_eq!(after_catch.load(Ordering::SeqCst), 2);
}

#[test]
fn a_never_started_coroutine_drops_its_closure() {
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = DropCounter(drops.clone());
    let co = Coroutine::new(move |_: &Yielder<(), ()>, ()| drop(guard));
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(co);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn force_reset_skips_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let mut co = Coroutine::new(move |y: &Yielder<(), ()>, ()| {
        let _local = DropCounter(d.clone());
        y.suspend(());
    });
    co.resume(());
    // SAFETY: the only destructor on that stack counts drops; skipping it is the point.
    unsafe { co.force_reset() };
    assert!(co.done());
    drop(co);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    // The closure holds its own clone of `drops`: leaked with it.
    assert_eq!(Arc::strong_count(&drops), 3);
}

#[test]
fn captured_and_local_values_keep_their_alignment() {
    #[repr(align(128))]
    struct Aligned(u8);
    #[repr(align(4096))]
    struct PageAligned([u8; 16]);

    let captured = Aligned(7);
    let big = PageAligned([3; 16]);
    let mut co = Coroutine::new(move |y: &Yielder<(), usize>, ()| {
        let local = Aligned(1);
        let addrs = [
            &captured as *const Aligned as usize,
            &big as *const PageAligned as usize,
            &local as *const Aligned as usize,
        ];
        y.suspend(addrs[0] % 128);
        y.suspend(addrs[1] % 4096);
        y.suspend(addrs[2] % 128);
        usize::from(captured.0 + big.0[0] + local.0)
    });
    assert_eq!(co.resume(()), CoroutineResult::Yield(0));
    assert_eq!(co.resume(()), CoroutineResult::Yield(0));
    assert_eq!(co.resume(()), CoroutineResult::Yield(0));
    assert_eq!(co.resume(()), CoroutineResult::Return(11));
}

#[inline(never)]
fn recurse(depth: usize) -> u64 {
    // 1 KiB per frame, kept alive across the recursive call.
    let frame = std::hint::black_box([depth as u8; 1024]);
    if depth == 0 {
        return u64::from(frame[0]);
    }
    recurse(depth - 1) + u64::from(frame[1023])
}

#[test]
fn deep_recursion_fits_a_one_mib_stack() {
    let stack = DefaultStack::new(1024 * 1024).unwrap();
    assert!(stack.base() - stack.limit() >= 1024 * 1024);
    let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), ()>, ()| recurse(256));
    let expected: u64 = (1..=256u64).map(|d| d % 256).sum();
    assert_eq!(co.resume(()), CoroutineResult::Return(expected));
}

#[test]
fn coroutines_nest() {
    let mut outer = Coroutine::new(|y: &Yielder<(), u32>, ()| {
        let mut inner = Coroutine::new(|y2: &Yielder<(), u32>, ()| {
            y2.suspend(1);
            y2.suspend(2);
            3
        });
        let mut total = 0;
        loop {
            match inner.resume(()) {
                CoroutineResult::Yield(v) => {
                    total += v;
                    y.suspend(v * 10);
                }
                CoroutineResult::Return(v) => return total + v,
            }
        }
    });
    assert_eq!(outer.resume(()), CoroutineResult::Yield(10));
    assert_eq!(outer.resume(()), CoroutineResult::Yield(20));
    assert_eq!(outer.resume(()), CoroutineResult::Return(6));
}

#[test]
fn a_coroutine_can_be_resumed_from_another_thread() {
    let mut co = Coroutine::new(|y: &Yielder<u32, u32>, x: u32| y.suspend(x + 1) + 1);
    assert_eq!(co.resume(1), CoroutineResult::Yield(2));
    // The closure owns nothing thread-bound, so moving it is sound here.
    struct SendIt<T>(T);
    // SAFETY: the coroutine captures nothing and its locals are plain integers.
    unsafe impl<T> Send for SendIt<T> {}
    let moved = SendIt(co);
    let result = std::thread::spawn(move || {
        let mut moved = moved;
        moved.0.resume(10)
    })
    .join()
    .unwrap();
    assert_eq!(result, CoroutineResult::Return(11));
}

#[inline(never)]
fn resume_caller_marker(co: &mut Coroutine<(), String, ()>) -> String {
    co.resume(()).as_yield().unwrap()
}

#[test]
fn backtraces_inside_a_coroutine_reach_the_resumer() {
    let mut co = Coroutine::new(|y: &Yielder<(), String>, ()| {
        y.suspend(std::backtrace::Backtrace::force_capture().to_string());
    });
    let trace = resume_caller_marker(&mut co);
    assert!(
        trace.contains("resume_caller_marker"),
        "the backtrace does not reach the function that called resume:\n{trace}"
    );
    assert!(
        trace.contains("backtraces_inside_a_coroutine_reach_the_resumer"),
        "{trace}"
    );
}

#[test]
fn twenty_thousand_coroutines_suspended_at_once() {
    let live = Rc::new(std::cell::Cell::new(0usize));
    let mut all = Vec::with_capacity(20_000);
    for i in 0..20_000usize {
        let live = live.clone();
        let mut co = Coroutine::with_stack(
            DefaultStack::new(16 * 1024).unwrap(),
            move |y: &Yielder<usize, usize>, x: usize| {
                live.set(live.get() + 1);
                let back = y.suspend(x + i);
                live.set(live.get() - 1);
                back
            },
        );
        assert_eq!(co.resume(0), CoroutineResult::Yield(i));
        all.push(co);
    }
    assert_eq!(live.get(), 20_000);
    for (i, co) in all.iter_mut().enumerate() {
        assert_eq!(co.resume(i * 2), CoroutineResult::Return(i * 2));
    }
    assert_eq!(live.get(), 0);
}

#[test]
fn into_stack_returns_the_stack_for_reuse() {
    let mut stack = DefaultStack::new(64 * 1024).unwrap();
    let base = stack.base();
    for i in 0..100u64 {
        let mut co = Coroutine::with_stack(stack, move |_: &Yielder<u64, ()>, x: u64| x + i);
        assert_eq!(co.resume(1), CoroutineResult::Return(1 + i));
        stack = co.into_stack();
        assert_eq!(stack.base(), base);
    }
    // A suspended coroutine is unwound by into_stack.
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let mut co = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
        let _g = DropCounter(d);
        y.suspend(());
    });
    co.resume(());
    let _stack = co.into_stack();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn borrowed_stacks_work_like_corosensei() {
    let mut stack = DefaultStack::new(32 * 1024).unwrap();
    for i in 0..10u32 {
        let mut co = Coroutine::with_stack(&mut stack, move |_: &Yielder<(), u32>, ()| i);
        assert_eq!(co.resume(()), CoroutineResult::Return(i));
    }
}

#[test]
fn dropped_stacks_are_reused_from_the_pool() {
    // A size class no other test uses, so concurrent tests cannot take the stack first.
    let size = 8 * 1024 * 1024;
    let first = DefaultStack::new(size).unwrap();
    let base = first.base();
    drop(first);
    assert!(corun::coroutine::pooled_stacks() >= 1);
    let second = DefaultStack::new(size).unwrap();
    assert_eq!(second.base(), base, "the pooled stack was not reused");
}

#[test]
fn too_small_a_stack_for_the_closure_panics_clearly() {
    quiet_panics();
    let stack = DefaultStack::new(16 * 1024).unwrap();
    let huge = [0u8; 64 * 1024];
    let err = panic::catch_unwind(AssertUnwindSafe(|| {
        Coroutine::with_stack(stack, move |_: &Yielder<(), u8>, ()| huge[0])
    }))
    .unwrap_err();
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("too small"), "message was {message:?}");
}
