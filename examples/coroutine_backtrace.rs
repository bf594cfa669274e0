//! Backtraces see through coroutine stacks: a backtrace taken inside a coroutine continues into
//! the function that resumed it. `tests/debugger.rs` also sets a gdb breakpoint on
//! `corun_probe_inside_coroutine` and checks that gdb's `bt` reaches `main`.
use corun::coroutine::{Coroutine, Yielder};

/// Called on the coroutine's stack; a stable symbol for debuggers to break on.
#[no_mangle]
#[inline(never)]
pub extern "C" fn corun_probe_inside_coroutine() -> usize {
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = trace
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .map(|l| l.trim())
        .collect();
    println!(
        "backtrace from inside the coroutine ({} frames):",
        frames.len()
    );
    for frame in &frames {
        println!("  {frame}");
    }
    std::hint::black_box(frames.len())
}

#[inline(never)]
fn resume_from_here(co: &mut Coroutine<(), (), usize>) -> usize {
    co.resume(()).as_return().expect("the coroutine returns")
}

fn main() {
    let mut co = Coroutine::new(|_: &Yielder<(), ()>, ()| corun_probe_inside_coroutine());
    let frames = resume_from_here(&mut co);
    assert!(frames > 0);
    println!("ok: the trace walked from the coroutine into resume_from_here and main");
}
