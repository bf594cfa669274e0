//! `spawn`, `join`, `Builder`, `yield_now` and coroutine ids under the runtime. Each test runs
//! in a child process with the hook preloaded (see `support`).

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{join_within, panic_text, stack_address, use_stack, wait_for, Child, Ticker};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_panic_reaches_join_and_the_runtime_keeps_going() {
    Child::new("a_panic_reaches_join_and_the_runtime_keeps_going").run(|| {
        let with_str = corun::spawn(|| -> u32 { panic!("static message") });
        let with_string = corun::spawn(|| -> u32 {
            let n = std::hint::black_box(42); // a run-time value: the payload is a String
            panic!("formatted {n}")
        });
        wait_for("both to finish", 10 * SECOND, || {
            with_str.is_finished() && with_string.is_finished()
        });
        let payload = with_str
            .join()
            .expect_err("a panicking coroutine joined Ok");
        assert_eq!(
            payload.downcast_ref::<&str>().copied(),
            Some("static message"),
            "payload: {}",
            panic_text(&*payload)
        );
        let payload = with_string
            .join()
            .expect_err("a panicking coroutine joined Ok");
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("formatted 42"),
            "payload: {}",
            panic_text(&*payload)
        );
        // A panic caught inside a coroutine also works.
        let caught = corun::spawn(|| std::panic::catch_unwind(|| panic!("inner")).is_err());
        assert!(join_within(caught, 10 * SECOND, "catch_unwind"));

        // The runtime still serves coroutines.
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                corun::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    corun::yield_now();
                    i * 2
                })
            })
            .collect();
        let sum: u64 = handles
            .into_iter()
            .map(|h| join_within(h, 10 * SECOND, "a coroutine after the panics"))
            .sum();
        assert_eq!(sum, 99 * 100);
    });
}

#[test]
fn spawn_and_join_from_threads_and_from_coroutines() {
    Child::new("spawn_and_join_from_threads_and_from_coroutines").run(|| {
        // From several plain threads at once.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let handles: Vec<_> = (0..50u64)
                        .map(|i| {
                            corun::spawn(move || {
                                assert!(corun::coroutine_id().is_some());
                                std::thread::sleep(Duration::from_millis(5));
                                t * 1000 + i
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a coroutine panicked"))
                        .sum::<u64>()
                })
            })
            .collect();
        let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, (0..4u64).map(|t| t * 1000 * 50 + 49 * 50 / 2).sum());

        // From inside coroutines, nested three deep.
        let outer = corun::spawn(|| {
            let outer_id = corun::coroutine_id().unwrap();
            let middle = corun::spawn(move || {
                let middle_id = corun::coroutine_id().unwrap();
                assert_ne!(middle_id, outer_id);
                let inner = corun::spawn(|| {
                    std::thread::sleep(Duration::from_millis(10));
                    "inner"
                });
                let inner_id = inner.id().unwrap();
                assert_ne!(inner_id, middle_id);
                (inner.join().unwrap(), inner_id)
            });
            middle.join().unwrap()
        });
        let (text, inner_id) = join_within(outer, 10 * SECOND, "the nested coroutines");
        assert_eq!(text, "inner");
        assert!(inner_id > 0);
    });
}

#[test]
fn join_inside_a_coroutine_suspends_only_that_coroutine() {
    Child::new("join_inside_a_coroutine_suspends_only_that_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let parent = corun::spawn(move || {
                let child = corun::spawn(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    7
                });
                let before = ticks.load(Ordering::Acquire);
                let start = Instant::now();
                let value = child.join().unwrap();
                (
                    value,
                    start.elapsed(),
                    ticks.load(Ordering::Acquire) - before,
                )
            });
            let (value, waited, ticked) = join_within(parent, 10 * SECOND, "the joining parent");
            ticker.stop();
            println!("join waited {waited:?}; the ticker ticked {ticked} times meanwhile");
            assert_eq!(value, 7);
            assert!(
                waited >= Duration::from_millis(80),
                "join returned after {waited:?}, before the child's 100 ms sleep ended"
            );
            assert!(
                ticked >= 4,
                "the ticker on the same worker ticked only {ticked} times while a coroutine \
                 joined a 100 ms sleeper"
            );
        });
}

#[test]
fn builder_stack_size_gives_a_deep_stack() {
    const WANT: usize = 500 * 1024;
    Child::new("builder_stack_size_gives_a_deep_stack").run(|| {
        let handle = corun::Builder::new()
            .name("deep".into())
            .stack_size(1 << 20)
            .spawn(|| use_stack(stack_address(), WANT))
            .expect("spawn with a 1 MiB stack failed");
        let used = join_within(handle, 10 * SECOND, "the deep recursion");
        println!("a coroutine with a 1 MiB stack used {} KiB", used / 1024);
        assert!(used >= WANT);
    });
}

#[test]
fn builder_name_appears_in_the_overflow_report() {
    const NAME: &str = "builder_name_appears_in_the_overflow_report";
    // Both ways of guarding a slab stack: kernel guard regions (where the kernel has them) and
    // mprotect pages.
    let mut guards = vec!["mprotect"];
    if corun::coroutine::guard_kind() == corun::coroutine::GuardKind::Madvise {
        guards.push("madvise");
    }
    for guard in guards {
        let finished = Child::new(NAME)
            .env("CORUN_GUARD", guard)
            .run_unchecked(|| {
                support::assert_preloaded();
                let handle = corun::Builder::new()
                    .name("tiny-stack-7".into())
                    .stack_size(16 * 1024)
                    .spawn(|| use_stack(stack_address(), 1 << 30))
                    .expect("spawn failed");
                let _ = handle.join();
                unreachable!("the overflow must end the process");
            });
        let Some(finished) = finished else { return };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            finished.status.signal(),
            Some(libc::SIGABRT),
            "CORUN_GUARD={guard}: expected an abort after the overflow report:\n{}",
            finished.describe()
        );
        assert!(
            finished.stderr.contains("coroutine 'tiny-stack-7'")
                && finished
                    .stderr
                    .contains("has overflowed its stack (16 KiB)"),
            "CORUN_GUARD={guard}: the overflow report does not name the coroutine:\n{}",
            finished.describe()
        );
    }
}

#[test]
fn yield_now_alternates_two_coroutines_on_one_worker() {
    const TURNS: usize = 20;
    Child::new("yield_now_alternates_two_coroutines_on_one_worker")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let started = Arc::new(AtomicUsize::new(0));
            let spinning = Arc::new(AtomicUsize::new(0));
            let go = Arc::new(AtomicBool::new(false));
            let log: Arc<Vec<AtomicU64>> = Arc::new((0..2 * TURNS).map(|_| 0.into()).collect());
            let next = Arc::new(AtomicUsize::new(0));
            let spawn_one = |who: u64| {
                let (started, spinning, go) = (started.clone(), spinning.clone(), go.clone());
                let (log, next) = (log.clone(), next.clone());
                corun::spawn(move || {
                    // Wait for the other one by sleeping (not yielding), so that the worker
                    // starts it; then both are runnable on the worker at once.
                    started.fetch_add(1, Ordering::AcqRel);
                    while started.load(Ordering::Acquire) < 2 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    spinning.fetch_add(1, Ordering::AcqRel);
                    while !go.load(Ordering::Acquire) {
                        corun::yield_now();
                    }
                    for _ in 0..TURNS {
                        let at = next.fetch_add(1, Ordering::AcqRel);
                        log[at].store(who, Ordering::Release);
                        corun::yield_now();
                    }
                })
            };
            let a = spawn_one(1);
            let b = spawn_one(2);
            wait_for("both coroutines to spin on yield_now", 10 * SECOND, || {
                spinning.load(Ordering::Acquire) == 2
            });
            go.store(true, Ordering::Release);
            join_within(a, 10 * SECOND, "coroutine 1");
            join_within(b, 10 * SECOND, "coroutine 2");
            let order: Vec<u64> = log.iter().map(|w| w.load(Ordering::Acquire)).collect();
            println!("interleaving: {order:?}");
            assert!(
                order.windows(2).all(|pair| pair[0] != pair[1]) && !order.contains(&0),
                "yield_now did not alternate the two coroutines: {order:?}"
            );
        });
}

#[test]
fn a_coroutine_spinning_on_yield_now_does_not_starve_a_new_one() {
    Child::new("a_coroutine_spinning_on_yield_now_does_not_starve_a_new_one")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let spinning = Arc::new(AtomicBool::new(false));
            let flag = Arc::new(AtomicBool::new(false));
            let spinner = {
                let (spinning, flag) = (spinning.clone(), flag.clone());
                corun::spawn(move || {
                    spinning.store(true, Ordering::Release);
                    let mut yields = 0u64;
                    while !flag.load(Ordering::Acquire) {
                        corun::yield_now();
                        yields += 1;
                    }
                    yields
                })
            };
            wait_for("the spinner to start", 10 * SECOND, || {
                spinning.load(Ordering::Acquire)
            });
            // A new coroutine on the same (only) worker must get a turn.
            let setter = corun::spawn(move || flag.store(true, Ordering::Release));
            let yields = join_within(
                spinner,
                5 * SECOND,
                "the spinner to see the flag set by a coroutine spawned after it",
            );
            join_within(setter, SECOND, "the setter");
            println!("the spinner yielded {yields} times before the new coroutine ran");
        });
}

#[test]
fn a_coroutine_spinning_on_yield_now_does_not_starve_one_woken_from_another_thread() {
    const NAME: &str =
        "a_coroutine_spinning_on_yield_now_does_not_starve_one_woken_from_another_thread";
    Child::new(NAME).env("CORUN_WORKERS", "1").run(|| {
        use std::io::Read;
        use std::os::fd::{AsRawFd, IntoRawFd};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = Arc::new(AtomicU64::new(0));
        let woke = Arc::new(AtomicBool::new(false));
        // The sleeper blocks in read; this thread will close its fd, which wakes it from here
        // (another thread than its worker's).
        let sleeper = {
            let (fd, woke) = (fd.clone(), woke.clone());
            corun::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                fd.store(stream.as_raw_fd() as u64 + 1, Ordering::Release);
                let result = stream.read(&mut [0u8; 8]);
                let _ = stream.into_raw_fd(); // closed by the main thread
                woke.store(true, Ordering::Release);
                result.is_err()
            })
        };
        let (_peer, _) = listener.accept().unwrap();
        wait_for("the reader to connect", 10 * SECOND, || {
            fd.load(Ordering::Acquire) != 0
        });
        std::thread::sleep(Duration::from_millis(100)); // it blocks in read
        let spinning = Arc::new(AtomicBool::new(false));
        let spinner = {
            let (spinning, woke) = (spinning.clone(), woke.clone());
            corun::spawn(move || {
                spinning.store(true, Ordering::Release);
                while !woke.load(Ordering::Acquire) {
                    corun::yield_now();
                }
            })
        };
        wait_for("the spinner to start", 10 * SECOND, || {
            spinning.load(Ordering::Acquire)
        });
        let raw = (fd.load(Ordering::Acquire) - 1) as libc::c_int;
        // SAFETY: the reader owns this fd and forgets it without closing it.
        assert_eq!(unsafe { libc::close(raw) }, 0);
        join_within(
            spinner,
            5 * SECOND,
            "the spinner to see that the reader woke after its fd was closed",
        );
        assert!(join_within(sleeper, SECOND, "the reader"));
    });
}

#[test]
fn coroutine_ids_are_distinct_and_match_the_handles() {
    Child::new("coroutine_ids_are_distinct_and_match_the_handles").run(|| {
        assert_eq!(
            corun::coroutine_id(),
            None,
            "a plain thread has no coroutine id"
        );
        let handles: Vec<_> = (0..200)
            .map(|_| {
                corun::spawn(|| {
                    let id = corun::coroutine_id().expect("no id inside a coroutine");
                    corun::yield_now();
                    assert_eq!(corun::coroutine_id(), Some(id), "the id changed");
                    id
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            let from_handle = handle.id().expect("a runtime coroutine's handle has no id");
            let from_inside = join_within(handle, 10 * SECOND, "a coroutine");
            assert_eq!(from_handle, from_inside, "JoinHandle::id differs");
            assert!(seen.insert(from_inside), "id {from_inside} given twice");
        }
    });
}
