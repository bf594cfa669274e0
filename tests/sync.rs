//! `std::sync` under the runtime: every std primitive blocks in `syscall(SYS_futex, …)`, which the
//! hook turns into a suspension of the waiting coroutine. On one worker, a coroutine that
//! blocked its thread for real would deadlock the coroutine it waits for, so every test here
//! would hang (and be killed by the harness) instead of passing. Each test runs in a child
//! process with the hook preloaded (see `support`).

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, OnceLock, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use support::{join_thread_within, join_within, ping_pong_with_thread, wait_for, Child, Ticker};

const SECOND: Duration = Duration::from_secs(1);

/// A mutex held across a 2 ms sleep by each of 100 coroutines on one worker: the waiters park
/// (the holder's sleep can only end if the worker keeps running), and the critical sections run
/// one after another.
#[test]
fn mutex_held_across_sleep_by_100_coroutines() {
    const COROUTINES: usize = 100;
    Child::new("mutex_held_across_sleep_by_100_coroutines")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let counter = Arc::new(Mutex::new(0usize));
            let inside = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let handles: Vec<_> = (0..COROUTINES)
                .map(|_| {
                    let counter = counter.clone();
                    let inside = inside.clone();
                    corun::spawn(move || {
                        let mut guard = counter.lock().unwrap();
                        let others = inside.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(others, 0, "two coroutines inside the critical section");
                        thread::sleep(Duration::from_millis(2));
                        *guard += 1;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                })
                .collect();
            for handle in handles {
                join_within(handle, 20 * SECOND, "a coroutine contending the mutex");
            }
            let elapsed = start.elapsed();
            let count = *counter.lock().unwrap();
            println!("{COROUTINES} coroutines x 2 ms under one std Mutex: {elapsed:?}");
            assert_eq!(count, COROUTINES);
            assert!(
                elapsed >= Duration::from_millis(2 * COROUTINES as u64),
                "{COROUTINES} serialised 2 ms critical sections took only {elapsed:?}"
            );
            assert!(
                elapsed < 3 * SECOND,
                "{COROUTINES} serialised 2 ms critical sections took {elapsed:?} (expected ≈ 200 ms)"
            );
        });
}

/// A writer holds an `RwLock` across a sleep while 10 readers on the same worker wait for it;
/// the readers see the value written.
#[test]
fn rwlock_readers_wait_for_a_sleeping_writer() {
    const READERS: usize = 10;
    Child::new("rwlock_readers_wait_for_a_sleeping_writer")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let lock = Arc::new(RwLock::new(0u64));
            let locked = Arc::new(AtomicBool::new(false));
            let writer = {
                let lock = lock.clone();
                let locked = locked.clone();
                corun::spawn(move || {
                    let mut guard = lock.write().unwrap();
                    locked.store(true, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(200));
                    *guard = 42;
                })
            };
            wait_for("the writer to take the lock", 5 * SECOND, || {
                locked.load(Ordering::SeqCst)
            });
            let readers: Vec<_> = (0..READERS)
                .map(|_| {
                    let lock = lock.clone();
                    corun::spawn(move || {
                        let start = Instant::now();
                        let value = *lock.read().unwrap();
                        (value, start.elapsed())
                    })
                })
                .collect();
            for reader in readers {
                let (value, waited) = join_within(reader, 10 * SECOND, "a reader");
                assert_eq!(value, 42, "a reader did not see the writer's value");
                assert!(
                    waited >= Duration::from_millis(50),
                    "a reader got the lock after {waited:?}, while the writer held it for 200 ms"
                );
            }
            join_within(writer, 5 * SECOND, "the writer");
        });
}

/// Ten coroutines on one worker meet at a `Barrier`, three times.
#[test]
fn barrier_of_10_coroutines() {
    const PARTIES: usize = 10;
    const ROUNDS: usize = 3;
    Child::new("barrier_of_10_coroutines")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let barrier = Arc::new(Barrier::new(PARTIES));
            let arrived = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..PARTIES)
                .map(|_| {
                    let barrier = barrier.clone();
                    let arrived = arrived.clone();
                    corun::spawn(move || {
                        let mut leaders = 0;
                        for round in 0..ROUNDS {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            if barrier.wait().is_leader() {
                                leaders += 1;
                            }
                            let seen = arrived.load(Ordering::SeqCst);
                            assert!(
                                seen >= (round + 1) * PARTIES,
                                "passed barrier round {round} with only {seen} arrivals"
                            );
                            // Nobody may start the next round before everyone has looked.
                            barrier.wait();
                        }
                        leaders
                    })
                })
                .collect();
            let leaders: usize = handles
                .into_iter()
                .map(|h| join_within(h, 10 * SECOND, "a barrier party"))
                .sum();
            assert_eq!(arrived.load(Ordering::SeqCst), PARTIES * ROUNDS);
            assert_eq!(leaders, ROUNDS, "one leader per round");
        });
}

/// A coroutine waits on a `Condvar` that an OS thread notifies; the worker keeps running a
/// ticker meanwhile.
#[test]
fn condvar_coroutine_waits_thread_notifies() {
    Child::new("condvar_coroutine_waits_thread_notifies")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let pair = Arc::new((Mutex::new(false), Condvar::new()));
            let waiting = Arc::new(AtomicBool::new(false));
            let waiter = {
                let pair = pair.clone();
                let waiting = waiting.clone();
                corun::spawn(move || {
                    let before = ticks.load(Ordering::SeqCst);
                    let start = Instant::now();
                    let (lock, cvar) = &*pair;
                    let mut ready = lock.lock().unwrap();
                    waiting.store(true, Ordering::SeqCst);
                    while !*ready {
                        ready = cvar.wait(ready).unwrap();
                    }
                    (start.elapsed(), ticks.load(Ordering::SeqCst) - before)
                })
            };
            let notifier = {
                let pair = pair.clone();
                thread::spawn(move || {
                    wait_for("the coroutine to wait", 5 * SECOND, || {
                        waiting.load(Ordering::SeqCst)
                    });
                    thread::sleep(Duration::from_millis(200));
                    let (lock, cvar) = &*pair;
                    *lock.lock().unwrap() = true;
                    cvar.notify_one();
                })
            };
            let (waited, ticked) = join_within(waiter, 10 * SECOND, "the waiting coroutine");
            join_thread_within(notifier, 5 * SECOND, "the notifying thread");
            ticker.stop();
            println!("the coroutine waited {waited:?}; the ticker ticked {ticked} times");
            assert!(
                waited >= Duration::from_millis(190),
                "woke after {waited:?}"
            );
            assert!(
                ticked >= 5,
                "the ticker ticked {ticked} times while a coroutine on its worker waited 200 ms"
            );
        });
}

/// An OS thread waits on a `Condvar` that a coroutine notifies.
#[test]
fn condvar_thread_waits_coroutine_notifies() {
    Child::new("condvar_thread_waits_coroutine_notifies")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let pair = Arc::new((Mutex::new(false), Condvar::new()));
            let waiting = Arc::new(AtomicBool::new(false));
            let waiter = {
                let pair = pair.clone();
                let waiting = waiting.clone();
                thread::spawn(move || {
                    let start = Instant::now();
                    let (lock, cvar) = &*pair;
                    let mut ready = lock.lock().unwrap();
                    waiting.store(true, Ordering::SeqCst);
                    while !*ready {
                        ready = cvar.wait(ready).unwrap();
                    }
                    start.elapsed()
                })
            };
            let notifier = {
                let pair = pair.clone();
                corun::spawn(move || {
                    wait_for("the thread to wait", 5 * SECOND, || {
                        waiting.load(Ordering::SeqCst)
                    });
                    thread::sleep(Duration::from_millis(100));
                    let (lock, cvar) = &*pair;
                    *lock.lock().unwrap() = true;
                    cvar.notify_one();
                })
            };
            join_within(notifier, 5 * SECOND, "the notifying coroutine");
            let waited = join_thread_within(waiter, 5 * SECOND, "the waiting thread");
            println!("the thread waited {waited:?}");
            assert!(waited >= Duration::from_millis(90), "woke after {waited:?}");
        });
}

/// Rounds of `notify_all` from a coroutine reach OS threads and coroutines waiting on the same
/// `Condvar` every time (a wake the hook keeps from the kernel while a thread waits there would
/// hang a round), and rounds from a thread reach the coroutines.
#[test]
fn notify_all_rounds_reach_threads_and_coroutines_alike() {
    Child::new("notify_all_rounds_reach_threads_and_coroutines_alike")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            const ROUNDS: u64 = 300;
            const THREADS: u64 = 3;
            const COROUTINES: u64 = 20;
            // (round now, waiters that have seen it)
            let state = Arc::new((Mutex::new((0u64, 0u64)), Condvar::new(), Condvar::new()));
            let wait_rounds = {
                let state = state.clone();
                move || {
                    let (lock, next, seen) = &*state;
                    let mut s = lock.lock().unwrap();
                    for round in 1..=ROUNDS {
                        while s.0 < round {
                            s = next.wait(s).unwrap();
                        }
                        s.1 += 1;
                        seen.notify_all();
                    }
                }
            };
            let threads: Vec<_> = (0..THREADS)
                .map(|_| thread::spawn(wait_rounds.clone()))
                .collect();
            let coroutines: Vec<_> = (0..COROUTINES)
                .map(|_| corun::spawn(wait_rounds.clone()))
                .collect();
            let drive = move |from: u64, to: u64| {
                let (lock, next, seen) = &*state;
                for round in from..=to {
                    let mut s = lock.lock().unwrap();
                    s.0 = round;
                    s.1 = 0;
                    next.notify_all();
                    while s.1 < THREADS + COROUTINES {
                        s = seen.wait(s).unwrap();
                    }
                }
            };
            let half = ROUNDS / 2;
            let driver = corun::spawn({
                let drive = drive.clone();
                move || drive(1, half)
            });
            join_within(driver, 20 * SECOND, "rounds driven by a coroutine");
            // The second half from an OS thread.
            let driver = thread::spawn(move || drive(half + 1, ROUNDS));
            join_thread_within(driver, 20 * SECOND, "rounds driven by a thread");
            for c in coroutines {
                join_within(c, 5 * SECOND, "a waiting coroutine");
            }
            for t in threads {
                join_thread_within(t, 5 * SECOND, "a waiting thread");
            }
            println!("{ROUNDS} rounds reached every waiter");
        });
}

/// `Condvar::wait_timeout` in a coroutine times out after about the timeout, and the worker
/// keeps running a ticker meanwhile.
#[test]
fn condvar_wait_timeout_in_a_coroutine() {
    Child::new("condvar_wait_timeout_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let waiter = corun::spawn(move || {
                let lock = Mutex::new(());
                let cvar = Condvar::new();
                let before = ticks.load(Ordering::SeqCst);
                let start = Instant::now();
                let guard = lock.lock().unwrap();
                let (_guard, result) = cvar
                    .wait_timeout(guard, Duration::from_millis(200))
                    .unwrap();
                (
                    result.timed_out(),
                    start.elapsed(),
                    ticks.load(Ordering::SeqCst) - before,
                )
            });
            let (timed_out, waited, ticked) =
                join_within(waiter, 10 * SECOND, "the coroutine in wait_timeout");
            ticker.stop();
            println!("wait_timeout(200 ms) returned after {waited:?}; {ticked} ticks meanwhile");
            assert!(timed_out, "wait_timeout did not report a timeout");
            assert!(
                waited >= Duration::from_millis(200),
                "wait_timeout(200 ms) returned after {waited:?}"
            );
            assert!(
                waited < Duration::from_millis(1500),
                "wait_timeout(200 ms) returned after {waited:?}"
            );
            assert!(
                ticked >= 5,
                "the ticker ticked {ticked} times during a 200 ms wait_timeout on its worker"
            );
        });
}

/// One coroutine initialises a `OnceLock` (sleeping inside the initialiser) while the others,
/// on the same worker, wait in `get_or_init`.
#[test]
fn oncelock_initialised_while_others_wait() {
    const COROUTINES: usize = 10;
    Child::new("oncelock_initialised_while_others_wait")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let cell = Arc::new(OnceLock::new());
            let inits = Arc::new(AtomicUsize::new(0));
            let start = Instant::now();
            let handles: Vec<_> = (0..COROUTINES)
                .map(|i| {
                    let cell = cell.clone();
                    let inits = inits.clone();
                    corun::spawn(move || {
                        *cell.get_or_init(|| {
                            inits.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(100));
                            1000 + i as u64
                        })
                    })
                })
                .collect();
            let values: Vec<u64> = handles
                .into_iter()
                .map(|h| join_within(h, 10 * SECOND, "a coroutine in get_or_init"))
                .collect();
            let elapsed = start.elapsed();
            println!("values {values:?} after {elapsed:?}");
            assert_eq!(
                inits.load(Ordering::SeqCst),
                1,
                "initialised more than once"
            );
            let first = values[0];
            assert!(
                values.iter().all(|&v| v == first),
                "coroutines saw different values: {values:?}"
            );
            assert_eq!(cell.get(), Some(&first));
            assert!(elapsed < 5 * SECOND, "took {elapsed:?}");
        });
}

/// `std::sync::mpsc` ping-pong between a coroutine and an OS thread; a ticker on the
/// coroutine's worker keeps ticking while the coroutine waits for replies.
#[test]
fn mpsc_ping_pong_between_coroutine_and_thread() {
    const ROUND_TRIPS: u64 = 1000;
    Child::new("mpsc_ping_pong_between_coroutine_and_thread")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let (ping_tx, ping_rx) = mpsc::channel::<u64>();
            let (pong_tx, pong_rx) = mpsc::channel::<u64>();
            ping_pong_with_thread(
                "std mpsc",
                ROUND_TRIPS,
                (
                    Box::new(move |v| ping_tx.send(v).is_ok()),
                    Box::new(move || ping_rx.recv().ok()),
                ),
                (
                    Box::new(move |v| pong_tx.send(v).is_ok()),
                    Box::new(move || pong_rx.recv().ok()),
                ),
            );
        });
}

/// `thread::park` in a coroutine, `unpark` from an OS thread, and the other way round.
#[test]
fn park_unpark_between_coroutine_and_thread() {
    Child::new("park_unpark_between_coroutine_and_thread")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            // The coroutine parks; the thread unparks it.
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let go = Arc::new(AtomicBool::new(false));
            let (handle_tx, handle_rx) = mpsc::channel::<thread::Thread>();
            let parked = {
                let go = go.clone();
                corun::spawn(move || {
                    let before = ticks.load(Ordering::SeqCst);
                    let start = Instant::now();
                    handle_tx.send(thread::current()).unwrap();
                    while !go.load(Ordering::SeqCst) {
                        thread::park();
                    }
                    (start.elapsed(), ticks.load(Ordering::SeqCst) - before)
                })
            };
            let unparker = thread::spawn(move || {
                let target = handle_rx.recv_timeout(5 * SECOND).unwrap();
                thread::sleep(Duration::from_millis(200));
                go.store(true, Ordering::SeqCst);
                target.unpark();
            });
            let (waited, ticked) = join_within(parked, 10 * SECOND, "the parked coroutine");
            join_thread_within(unparker, 5 * SECOND, "the unparking thread");
            ticker.stop();
            println!("the coroutine was parked {waited:?}; {ticked} ticks meanwhile");
            assert!(
                waited >= Duration::from_millis(190),
                "unparked after {waited:?}"
            );
            assert!(
                ticked >= 5,
                "the ticker ticked {ticked} times while a coroutine on its worker was parked"
            );

            // The thread parks; a coroutine unparks it.
            let go = Arc::new(AtomicBool::new(false));
            let parked_at = Arc::new(AtomicU64::new(0));
            let thread = {
                let go = go.clone();
                let parked_at = parked_at.clone();
                thread::spawn(move || {
                    let start = Instant::now();
                    parked_at.store(1, Ordering::SeqCst);
                    while !go.load(Ordering::SeqCst) {
                        thread::park();
                    }
                    start.elapsed()
                })
            };
            let target = thread.thread().clone();
            let unparker = corun::spawn(move || {
                wait_for("the thread to start", 5 * SECOND, || {
                    parked_at.load(Ordering::SeqCst) == 1
                });
                thread::sleep(Duration::from_millis(100));
                go.store(true, Ordering::SeqCst);
                target.unpark();
            });
            join_within(unparker, 5 * SECOND, "the unparking coroutine");
            let waited = join_thread_within(thread, 5 * SECOND, "the parked thread");
            println!("the thread was parked {waited:?}");
            assert!(
                waited >= Duration::from_millis(90),
                "unparked after {waited:?}"
            );
        });
}

/// `std::thread::yield_now()` (`sched_yield`) in a coroutine lets the other coroutine of its
/// worker run: two coroutines on one worker alternate.
#[test]
fn yield_now_alternates_two_coroutines() {
    const TURNS: usize = 20;
    Child::new("yield_now_alternates_two_coroutines")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let log = Arc::new(Mutex::new(Vec::new()));
            let arrived = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..2u8)
                .map(|me| {
                    let log = log.clone();
                    let arrived = arrived.clone();
                    corun::spawn(move || {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        // Both must be on the run queue before the turns start.
                        let start = Instant::now();
                        while arrived.load(Ordering::SeqCst) < 2 {
                            assert!(start.elapsed() < 5 * SECOND, "the other never started");
                            thread::yield_now();
                        }
                        for _ in 0..TURNS {
                            log.lock().unwrap().push(me);
                            thread::yield_now();
                        }
                    })
                })
                .collect();
            for handle in handles {
                join_within(handle, 10 * SECOND, "a yielding coroutine");
            }
            let log = log.lock().unwrap();
            println!("turns: {log:?}");
            assert_eq!(log.len(), 2 * TURNS);
            let repeats = log.windows(2).filter(|w| w[0] == w[1]).count();
            assert_eq!(
                repeats, 0,
                "the coroutines did not alternate (a yield did not let the other run): {log:?}"
            );
        });
}
