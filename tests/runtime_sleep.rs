//! Sleeping under the runtime: `std::thread::sleep` inside a coroutine suspends the coroutine,
//! not its worker thread. Each test runs in a child process with the hook preloaded (see
//! `support`).

mod support;

use std::time::{Duration, Instant};

use support::{join_within, os_threads, worker_threads, Child, Ticker};

#[test]
fn ten_thousand_sleeping_coroutines_share_two_threads() {
    const WORKERS: usize = 2;
    const COROUTINES: usize = 10_000;
    const NAME: &str = "ten_thousand_sleeping_coroutines_share_two_threads";
    Child::new(NAME)
        .env("CORUN_WORKERS", &WORKERS.to_string())
        .run(|| {
            let threads_before = os_threads();
            let start = Instant::now();
            let handles: Vec<_> = (0..COROUTINES)
                .map(|i| {
                    corun::spawn(move || {
                        std::thread::sleep(Duration::from_millis(200));
                        i
                    })
                })
                .collect();
            let spawned = start.elapsed();
            // Count threads while (most of) them sleep.
            std::thread::sleep(Duration::from_millis(50));
            let threads_while_sleeping = os_threads();
            let mut sum = 0;
            for handle in handles {
                sum += join_within(handle, Duration::from_secs(30), "a sleeper");
            }
            let total = start.elapsed();
            println!(
                "{COROUTINES} coroutines slept 200 ms each: spawned in {spawned:?}, all joined \
                 after {total:?}; OS threads: {threads_before} before, {threads_while_sleeping} \
                 while sleeping ({WORKERS} workers)"
            );
            assert_eq!(sum, COROUTINES * (COROUTINES - 1) / 2);
            assert!(
                total < Duration::from_secs(10),
                "{COROUTINES} concurrent 200 ms sleeps took {total:?}"
            );
            assert_eq!(
                worker_threads(),
                WORKERS,
                "CORUN_WORKERS={WORKERS} was not honoured"
            );
            // The harness's own thread(s), the workers, and a few helpers at most.
            assert!(
                threads_while_sleeping <= WORKERS + 4,
                "{threads_while_sleeping} OS threads while {COROUTINES} coroutines slept on \
                 {WORKERS} workers"
            );
        });
}

#[test]
fn a_sleeping_coroutine_does_not_block_its_worker() {
    const NAME: &str = "a_sleeping_coroutine_does_not_block_its_worker";
    Child::new(NAME).env("CORUN_WORKERS", "1").run(|| {
        let ticker = Ticker::start(Duration::from_millis(10));
        let ticks = ticker.counter();
        let sleeper = corun::spawn(move || {
            let before = ticks.load(std::sync::atomic::Ordering::Acquire);
            let start = Instant::now();
            std::thread::sleep(Duration::from_millis(300));
            let slept = start.elapsed();
            let ticked = ticks.load(std::sync::atomic::Ordering::Acquire) - before;
            (slept, ticked)
        });
        let (slept, ticked) = join_within(sleeper, Duration::from_secs(10), "the sleeper");
        ticker.stop();
        println!("slept {slept:?}; the ticker ticked {ticked} times meanwhile");
        assert!(
            slept >= Duration::from_millis(300),
            "sleep(300 ms) returned after {slept:?}"
        );
        assert!(
            slept < Duration::from_secs(2),
            "sleep(300 ms) took {slept:?}"
        );
        assert!(
            ticked >= 8,
            "the ticker on the same worker ticked only {ticked} times during a 300 ms sleep"
        );
    });
}
