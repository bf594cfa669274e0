//! The context-switch core against corosensei, in the same run.
//!
//! - `switch`: one `resume` + one `suspend` round trip passing a `usize`;
//! - `call`: create a coroutine on an already-allocated stack, run it to return, drop it;
//! - `create_drop`: the same without a supplied stack (corun takes one from its pool; corosensei
//!   maps a new one each time).
//!
//! Run with `cargo bench --bench switch`; the last lines print corun/corosensei ratios of the
//! median times (below 1.00 means corun is faster).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;

const GROUPS: [&str; 3] = ["switch", "call", "create_drop"];

fn bench_switch(c: &mut Criterion) {
    let mut group = c.benchmark_group("switch");
    group.bench_function("corun", |b| {
        use corun::coroutine::{Coroutine, Yielder};
        let mut co = Coroutine::new(|y: &Yielder<usize, usize>, mut x: usize| loop {
            x = y.suspend(x.wrapping_add(1));
        });
        b.iter(|| co.resume(black_box(1)));
    });
    group.bench_function("corosensei", |b| {
        use corosensei::{Coroutine, Yielder};
        let mut co = Coroutine::new(|y: &Yielder<usize, usize>, mut x: usize| loop {
            x = y.suspend(x.wrapping_add(1));
        });
        b.iter(|| co.resume(black_box(1)));
    });
    group.finish();
}

fn bench_call(c: &mut Criterion) {
    let mut group = c.benchmark_group("call");
    group.bench_function("corun", |b| {
        use corun::coroutine::{Coroutine, DefaultStack, Yielder};
        let mut stack = Some(DefaultStack::new(64 * 1024).unwrap());
        b.iter(|| {
            let mut co =
                Coroutine::with_stack(stack.take().unwrap(), |_: &Yielder<usize, ()>, x: usize| {
                    x + 1
                });
            let result = co.resume(black_box(1));
            stack = Some(co.into_stack());
            result
        });
    });
    group.bench_function("corosensei", |b| {
        use corosensei::stack::DefaultStack;
        use corosensei::{Coroutine, Yielder};
        let mut stack = Some(DefaultStack::new(64 * 1024).unwrap());
        b.iter(|| {
            let mut co =
                Coroutine::with_stack(stack.take().unwrap(), |_: &Yielder<usize, ()>, x: usize| {
                    x + 1
                });
            let result = co.resume(black_box(1));
            stack = Some(co.into_stack());
            result
        });
    });
    group.finish();
}

fn bench_create_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_drop");
    group.bench_function("corun", |b| {
        use corun::coroutine::{Coroutine, Yielder};
        b.iter(|| {
            let mut co = Coroutine::new(|_: &Yielder<usize, ()>, x: usize| x + 1);
            co.resume(black_box(1))
        });
    });
    group.bench_function("corosensei", |b| {
        use corosensei::{Coroutine, Yielder};
        b.iter(|| {
            let mut co = Coroutine::new(|_: &Yielder<usize, ()>, x: usize| x + 1);
            co.resume(black_box(1))
        });
    });
    group.finish();
}

/// Where criterion writes its estimates: `$CARGO_TARGET_DIR/criterion`, or `target/criterion`
/// next to this bench binary (`target/release/deps/switch-…`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(dir).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.ancestors().nth(3)?.join("criterion"))
}

/// The median point estimate (ns) of one benchmark, from criterion's `estimates.json`.
fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()?
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

fn print_ratios() {
    println!("\ncorun / corosensei (median times, same run; < 1.00 means corun is faster)");
    for group in GROUPS {
        match (median_ns(group, "corun"), median_ns(group, "corosensei")) {
            (Some(ours), Some(theirs)) => println!(
                "  {group:<12} corun {ours:>8.2} ns   corosensei {theirs:>8.2} ns   ratio {:.2}",
                ours / theirs
            ),
            _ => println!("  {group:<12} (no estimates: run without --test to measure)"),
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_switch(&mut c);
    bench_call(&mut c);
    bench_create_drop(&mut c);
    c.final_summary();
    print_ratios();
}
