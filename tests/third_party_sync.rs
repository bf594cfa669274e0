//! Third-party synchronisation under the runtime: `crossbeam-channel` and `parking_lot` park in
//! `syscall(SYS_futex, …)` like std does, so a coroutine waiting on them suspends instead of
//! blocking its worker. Each test runs in a child process with the hook preloaded (see
//! `support`).
//!
//! Needs the dev-dependencies `crossbeam-channel` and `parking_lot`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{join_thread_within, join_within, ping_pong_with_thread, wait_for, Child, Ticker};

const SECOND: Duration = Duration::from_secs(1);

/// `crossbeam-channel` ping-pong between a coroutine and an OS thread; a ticker on the
/// coroutine's worker keeps ticking while the coroutine waits for replies.
#[test]
fn crossbeam_ping_pong_between_coroutine_and_thread() {
    const ROUND_TRIPS: u64 = 1000;
    Child::new("crossbeam_ping_pong_between_coroutine_and_thread")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            // A zero-capacity ping channel: `send` itself waits for the thread to take it.
            let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(0);
            let (pong_tx, pong_rx) = crossbeam_channel::unbounded::<u64>();
            ping_pong_with_thread(
                "crossbeam",
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

/// `crossbeam_channel::Receiver::recv_timeout` in a coroutine times out after about the timeout
/// while the worker keeps running a ticker.
#[test]
fn crossbeam_recv_timeout_in_a_coroutine() {
    Child::new("crossbeam_recv_timeout_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let (tx, rx) = crossbeam_channel::unbounded::<u32>();
            let waiter = corun::spawn(move || {
                let before = ticks.load(Ordering::SeqCst);
                let start = Instant::now();
                let result = rx.recv_timeout(Duration::from_millis(200));
                (
                    result,
                    start.elapsed(),
                    ticks.load(Ordering::SeqCst) - before,
                )
            });
            let (result, waited, ticked) = join_within(waiter, 10 * SECOND, "the waiter");
            drop(tx);
            ticker.stop();
            println!("recv_timeout(200 ms) gave {result:?} after {waited:?}; {ticked} ticks");
            assert_eq!(result, Err(crossbeam_channel::RecvTimeoutError::Timeout));
            assert!(waited >= Duration::from_millis(200), "after {waited:?}");
            assert!(waited < Duration::from_millis(1500), "after {waited:?}");
            assert!(ticked >= 5, "the ticker ticked {ticked} times meanwhile");
        });
}

/// A `parking_lot::Mutex` contended between a coroutine and an OS thread, each sometimes
/// holding it across a sleep; a ticker on the coroutine's worker keeps ticking.
#[test]
fn parking_lot_mutex_between_coroutine_and_thread() {
    const ROUNDS: u64 = 200;
    Child::new("parking_lot_mutex_between_coroutine_and_thread")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(2));
            let counter = Arc::new(parking_lot::Mutex::new(0u64));
            let started = Arc::new(AtomicBool::new(false));
            let thread = {
                let counter = counter.clone();
                let started = started.clone();
                thread::spawn(move || {
                    started.store(true, Ordering::SeqCst);
                    for i in 0..ROUNDS {
                        let mut guard = counter.lock();
                        if i % 10 == 0 {
                            thread::sleep(Duration::from_millis(2));
                        }
                        *guard += 1;
                        drop(guard);
                        thread::yield_now();
                    }
                })
            };
            let start = Instant::now();
            let coroutine = {
                let counter = counter.clone();
                corun::spawn(move || {
                    wait_for("the thread to start", 5 * SECOND, || {
                        started.load(Ordering::SeqCst)
                    });
                    for i in 0..ROUNDS {
                        let mut guard = counter.lock();
                        if i % 10 == 0 {
                            thread::sleep(Duration::from_millis(2));
                        }
                        *guard += 1;
                    }
                })
            };
            join_within(coroutine, 30 * SECOND, "the coroutine");
            join_thread_within(thread, 30 * SECOND, "the thread");
            let elapsed = start.elapsed();
            let ticked = ticker.stop();
            println!("parking_lot::Mutex contended for {elapsed:?}; {ticked} ticks");
            assert_eq!(*counter.lock(), 2 * ROUNDS);
            assert!(
                ticked >= 5,
                "the ticker ticked {ticked} times during {elapsed:?} of contention on its worker"
            );
        });
}

/// A coroutine waits on a `parking_lot::Condvar` that an OS thread notifies, and the worker
/// keeps running a ticker meanwhile.
#[test]
fn parking_lot_condvar_coroutine_waits_thread_notifies() {
    Child::new("parking_lot_condvar_coroutine_waits_thread_notifies")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let pair = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
            let waiting = Arc::new(AtomicBool::new(false));
            let waiter = {
                let pair = pair.clone();
                let waiting = waiting.clone();
                corun::spawn(move || {
                    let before = ticks.load(Ordering::SeqCst);
                    let start = Instant::now();
                    let (lock, cvar) = &*pair;
                    let mut ready = lock.lock();
                    waiting.store(true, Ordering::SeqCst);
                    while !*ready {
                        cvar.wait(&mut ready);
                    }
                    (start.elapsed(), ticks.load(Ordering::SeqCst) - before)
                })
            };
            let notifier = thread::spawn(move || {
                wait_for("the coroutine to wait", 5 * SECOND, || {
                    waiting.load(Ordering::SeqCst)
                });
                thread::sleep(Duration::from_millis(200));
                let (lock, cvar) = &*pair;
                *lock.lock() = true;
                cvar.notify_one();
            });
            let (waited, ticked) = join_within(waiter, 10 * SECOND, "the waiting coroutine");
            join_thread_within(notifier, 5 * SECOND, "the notifying thread");
            ticker.stop();
            println!("the coroutine waited {waited:?}; the ticker ticked {ticked} times");
            assert!(
                waited >= Duration::from_millis(190),
                "woke after {waited:?}"
            );
            assert!(ticked >= 5, "the ticker ticked {ticked} times meanwhile");
        });
}
