//! The context-switch core: corun's `corun::coroutine` against corosensei 0.3 and `generator`
//! (may's core), one library per process run.
//!
//! The command line is in [`USAGE`] (what `core-switch --help` prints). The operations:
//!
//! - `switch`: one resume + one suspend round trip, passing a `usize` each way;
//! - `call`: create a coroutine on an already-allocated stack, run it to its return, drop it
//!   (keeping the stack for the next one).
//!
//! Runs `B` timed batches of `N` operations after a warm-up batch and prints the median batch:
//! `RESULT ns_per_op=…`.

use std::hint::black_box;
use std::time::Instant;

use corun_bench::args::{Args, Opt, Spec};
use corun_bench::protocol::emit;

/// Stack size for every library: 64 KiB, as in the repository's criterion bench.
const STACK_BYTES: usize = 64 * 1024;

/// What `core-switch --help` prints.
const USAGE: &str = "\
usage: core-switch --peer corun|corosensei|generator --op switch|call [--iters N] [--batches B]

  --peer     the library to time
  --op       switch: a resume + suspend round trip; call: create, run and drop a coroutine
             on a reused stack
  --iters    operations per batch [1000000]
  --batches  timed batches after a warm-up; the median is reported [5]

Prints `RESULT ns_per_op=...` (bench/src/protocol.rs).
";

const SPEC: Spec = Spec {
    program: "core-switch",
    usage: USAGE,
    options: &[
        Opt::value("peer"),
        Opt::value("op"),
        Opt::value("iters"),
        Opt::value("batches"),
    ],
    commands: &[],
};

fn main() {
    let args = Args::from_env(&SPEC);
    let peer = args.choice("peer", &["corun", "corosensei", "generator"], None);
    let op = args.choice("op", &["switch", "call"], None);
    let iters: u64 = args.get("iters", 1_000_000);
    let batches: usize = args.get("batches", 5);
    let ns_per_op = match (peer, op) {
        ("corun", "switch") => timed(iters, batches, corun_switch),
        ("corun", "call") => timed(iters, batches, corun_call),
        ("corosensei", "switch") => timed(iters, batches, corosensei_switch),
        ("corosensei", "call") => timed(iters, batches, corosensei_call),
        ("generator", "switch") => timed(iters, batches, generator_switch),
        ("generator", "call") => timed(iters, batches, generator_call),
        _ => unreachable!("--peer and --op are checked against these choices"),
    };
    emit("RESULT", &[("ns_per_op", &format!("{ns_per_op:.3}"))]);
}

/// Runs `bench(iters)` once to warm up, then `batches` times, and returns the median
/// nanoseconds per operation. `bench` sets up its coroutine and returns the timed part's
/// duration in nanoseconds.
fn timed(iters: u64, batches: usize, bench: fn(u64) -> u128) -> f64 {
    bench(iters / 10 + 1);
    let mut per_op: Vec<f64> = (0..batches.max(1))
        .map(|_| bench(iters) as f64 / iters as f64)
        .collect();
    per_op.sort_by(f64::total_cmp);
    per_op[per_op.len() / 2]
}

fn corun_switch(iters: u64) -> u128 {
    use corun::coroutine::{Coroutine, CoroutineResult, Yielder};
    let mut co = Coroutine::new(|y: &Yielder<usize, usize>, mut x: usize| loop {
        x = y.suspend(x.wrapping_add(1));
    });
    let start = Instant::now();
    for i in 0..iters as usize {
        let r: CoroutineResult<usize, ()> = co.resume(black_box(i));
        black_box(r);
    }
    start.elapsed().as_nanos()
}

fn corun_call(iters: u64) -> u128 {
    use corun::coroutine::{Coroutine, DefaultStack, Yielder};
    let mut stack = Some(DefaultStack::new(STACK_BYTES).expect("cannot allocate a stack"));
    let start = Instant::now();
    for i in 0..iters as usize {
        let Some(s) = stack.take() else { break };
        let mut co = Coroutine::with_stack(s, |_: &Yielder<usize, ()>, x: usize| x + 1);
        black_box(co.resume(black_box(i)));
        stack = Some(co.into_stack());
    }
    start.elapsed().as_nanos()
}

fn corosensei_switch(iters: u64) -> u128 {
    use corosensei::{Coroutine, CoroutineResult, Yielder};
    let mut co = Coroutine::new(|y: &Yielder<usize, usize>, mut x: usize| loop {
        x = y.suspend(x.wrapping_add(1));
    });
    let start = Instant::now();
    for i in 0..iters as usize {
        let r: CoroutineResult<usize, ()> = co.resume(black_box(i));
        black_box(r);
    }
    start.elapsed().as_nanos()
}

fn corosensei_call(iters: u64) -> u128 {
    use corosensei::stack::DefaultStack;
    use corosensei::{Coroutine, Yielder};
    let mut stack = Some(DefaultStack::new(STACK_BYTES).expect("cannot allocate a stack"));
    let start = Instant::now();
    for i in 0..iters as usize {
        let Some(s) = stack.take() else { break };
        let mut co = Coroutine::with_stack(s, |_: &Yielder<usize, ()>, x: usize| x + 1);
        black_box(co.resume(black_box(i)));
        stack = Some(co.into_stack());
    }
    start.elapsed().as_nanos()
}

/// `generator` sizes stacks in machine words.
const GENERATOR_STACK_WORDS: usize = STACK_BYTES / std::mem::size_of::<usize>();

fn generator_switch(iters: u64) -> u128 {
    use generator::Gn;
    let mut g = Gn::<usize>::new_scoped_opt(GENERATOR_STACK_WORDS, |mut s| {
        let mut x = 0usize;
        loop {
            x = s.yield_(x.wrapping_add(1)).unwrap_or(0);
        }
    });
    // The first resume runs the body up to its first yield, like corun's first `resume`.
    black_box(g.resume());
    let start = Instant::now();
    for i in 0..iters as usize {
        black_box(g.send(black_box(i)));
    }
    start.elapsed().as_nanos()
}

fn generator_call(iters: u64) -> u128 {
    use generator::Gn;
    // One generator, run to completion, then re-initialised with a new body on the same stack
    // (`init_code`, which may uses to recycle coroutines) and run again.
    let mut g = Gn::<()>::new_opt(GENERATOR_STACK_WORDS, || 0usize);
    black_box(g.resume());
    let start = Instant::now();
    for i in 0..iters as usize {
        let x = black_box(i);
        g.init_code(move || x + 1);
        black_box(g.resume());
    }
    start.elapsed().as_nanos()
}
