//! The context-switch core on its own: a generator of Fibonacci numbers, values flowing both
//! ways, and a panic propagating out of `resume`.
use corun::coroutine::{Coroutine, CoroutineResult, Yielder};

fn main() {
    // A generator: yields Fibonacci numbers until it is told to stop.
    let mut fib = Coroutine::new(|y: &Yielder<bool, u64>, _start: bool| {
        let (mut a, mut b) = (0u64, 1u64);
        loop {
            if !y.suspend(a) {
                return a;
            }
            (a, b) = (b, a + b);
        }
    });
    let mut seen = Vec::new();
    for _ in 0..10 {
        match fib.resume(true) {
            CoroutineResult::Yield(n) => seen.push(n),
            CoroutineResult::Return(_) => unreachable!(),
        }
    }
    println!("fibonacci: {seen:?}");
    println!("stopped at: {:?}", fib.resume(false));

    // Values both ways: the input of each resume is the result of the pending suspend.
    let mut doubler = Coroutine::new(|y: &Yielder<i32, i32>, mut x: i32| {
        for _ in 0..3 {
            x = y.suspend(x * 2);
        }
        x
    });
    let a = doubler.resume(1);
    let b = doubler.resume(10);
    let c = doubler.resume(100);
    let d = doubler.resume(7);
    println!("doubler: {a:?} {b:?} {c:?} {d:?}");

    // A panic inside the coroutine comes out of resume with its payload.
    std::panic::set_hook(Box::new(|_| {}));
    let mut bad = Coroutine::new(|_: &Yielder<(), ()>, ()| -> () { panic!("boom") });
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bad.resume(())))
        .expect_err("the panic propagates");
    println!(
        "panic payload: {:?}, done afterwards: {}",
        payload.downcast_ref::<&str>(),
        bad.done()
    );
}
