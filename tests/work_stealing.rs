//! Work stealing (`CORUN_STEAL=1`): an idle worker takes runnable, started coroutines from a
//! busy one. Moving a started coroutine to another OS thread is only sound with per-coroutine
//! identity (the default, `CORUN_TLS=isolated`), so with `CORUN_TLS=shared` the variable is
//! ignored with a warning. Each test runs in a child process with the hook preloaded (see
//! `support`), on two workers.

mod support;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use support::{join_within, Child};

/// Coroutines in the workload and the steps the longest one takes.
const COROUTINES: usize = 16;
const MAX_STEPS: usize = 60;

thread_local! {
    static STEPS_DONE: Cell<usize> = const { Cell::new(0) };
}

/// What one coroutine of the workload saw.
struct Seen {
    /// Kernel ids of the OS threads it ran on.
    os_threads: HashSet<i32>,
    /// Its `ThreadId`, if it stayed the same at every step (`None` if it ever changed).
    thread_id: Option<ThreadId>,
    /// Its `thread_local!` step counter at the end (must equal its steps).
    steps_counted: usize,
    steps: usize,
    /// With `wait_on_socket`: the socket it waited on at every step (and its peer), still open.
    socket: Option<(UnixStream, UnixStream)>,
}

/// Spins for `how_long` without switching.
fn busy_loop(how_long: Duration) {
    let start = Instant::now();
    while start.elapsed() < how_long {
        std::hint::spin_loop();
    }
}

/// Runs `COROUTINES` coroutines that first wait at a gate opened by another coroutine, then
/// loop: 300 µs of computation and a `yield_now`, recording the OS threads each ran on in the
/// loop and checking that its identity (`ThreadId`, a `thread_local!`) stays its own.
///
/// The gate piles the work onto one worker: waking a coroutine from a coroutine moves it to
/// the waker's worker when its own is idle (wake affinity), so after the gate opens most or all
/// of them are queued on the opener's worker while the other one idles. From then on only
/// stealing moves a coroutine, as yielding keeps it where it is.
///
/// With `wait_on_socket`, each coroutine also waits 1 ms on a socket of its own at every step
/// (a read that times out), so the socket is watched by the epoll of whichever worker runs it.
fn gated_workload_with(wait_on_socket: bool) -> Vec<Seen> {
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let handles: Vec<_> = (0..COROUTINES)
        .map(|i| {
            let steps = MAX_STEPS / 2 + (MAX_STEPS / 2) * i / (COROUTINES - 1);
            let gate = gate.clone();
            corun::spawn(move || {
                let id = thread::current().id();
                let (open, opened) = &*gate;
                let mut guard = open.lock().unwrap();
                while !*guard {
                    guard = opened.wait(guard).unwrap();
                }
                drop(guard);
                let socket = wait_on_socket.then(|| {
                    let (a, b) = UnixStream::pair().expect("socketpair");
                    a.set_read_timeout(Some(Duration::from_millis(1)))
                        .expect("SO_RCVTIMEO");
                    (a, b)
                });
                let mut same_id = true;
                let mut os_threads = HashSet::new();
                for _ in 0..steps {
                    // SAFETY: gettid has no preconditions.
                    os_threads.insert(unsafe { libc::gettid() });
                    same_id &= thread::current().id() == id;
                    STEPS_DONE.set(STEPS_DONE.get() + 1);
                    busy_loop(Duration::from_micros(300));
                    if let Some((a, _)) = socket.as_ref() {
                        let err = (&*a).read(&mut [0u8; 1]).expect_err("nothing was sent");
                        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
                    }
                    corun::yield_now();
                }
                Seen {
                    os_threads,
                    thread_id: same_id.then_some(id),
                    steps_counted: STEPS_DONE.get(),
                    steps,
                    socket,
                }
            })
        })
        .collect();
    let opener = corun::spawn(move || {
        thread::sleep(Duration::from_millis(50)); // every coroutine reaches the gate
        let (open, opened) = &*gate;
        *open.lock().unwrap() = true;
        opened.notify_all();
    });
    join_within(opener, Duration::from_secs(10), "the gate opener");
    handles
        .into_iter()
        .map(|h| join_within(h, Duration::from_secs(30), "a coroutine of the workload"))
        .collect()
}

fn gated_workload() -> Vec<Seen> {
    gated_workload_with(false)
}

/// How many of this process's epoll instances watch each fd (from `/proc/self/fdinfo`, whose
/// lines for an epoll fd include `tfd: N` for every watched fd N).
fn epolls_watching() -> HashMap<i32, usize> {
    let mut watching = HashMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let entry = entry.expect("an fd entry");
        let is_epoll = std::fs::read_link(entry.path())
            .map(|target| target.to_string_lossy() == "anon_inode:[eventpoll]")
            .unwrap_or(false);
        if !is_epoll {
            continue;
        }
        let fdinfo = std::path::Path::new("/proc/self/fdinfo").join(entry.file_name());
        let Ok(info) = std::fs::read_to_string(fdinfo) else {
            continue;
        };
        for line in info.lines() {
            if let Some(rest) = line.strip_prefix("tfd:") {
                if let Some(Ok(fd)) = rest.split_whitespace().next().map(str::parse) {
                    *watching.entry(fd).or_insert(0) += 1;
                }
            }
        }
    }
    watching
}

/// Every coroutine kept its identity and counted its own steps.
fn assert_identity_kept(seen: &[Seen]) {
    let mut ids = HashSet::new();
    for (i, s) in seen.iter().enumerate() {
        let id = s
            .thread_id
            .unwrap_or_else(|| panic!("coroutine {i}: thread::current().id() changed"));
        assert!(ids.insert(id), "coroutine {i} shares its ThreadId");
        assert_eq!(
            s.steps_counted, s.steps,
            "coroutine {i}: its thread_local! counter saw other coroutines' steps"
        );
    }
}

fn moved(seen: &[Seen]) -> usize {
    seen.iter().filter(|s| s.os_threads.len() > 1).count()
}

/// With `CORUN_STEAL=1`, the idle worker takes queued coroutines from the busy one: some
/// coroutines change OS thread in the middle of their loop, keeping their `ThreadId` and
/// `thread_local!` values.
#[test]
fn idle_worker_takes_queued_coroutines() {
    Child::new("idle_worker_takes_queued_coroutines")
        .env("CORUN_WORKERS", "2")
        .env("CORUN_STEAL", "1")
        .run(|| {
            let seen = gated_workload();
            assert_identity_kept(&seen);
            let threads: Vec<Vec<i32>> = seen
                .iter()
                .map(|s| s.os_threads.iter().copied().collect())
                .collect();
            println!(
                "{} of {COROUTINES} coroutines ran on two threads; threads per coroutine: \
                 {threads:?}",
                moved(&seen)
            );
            assert!(moved(&seen) > 0, "no coroutine moved to the idle worker");
        });
}

/// A coroutine's socket follows it: after coroutines moved to the idle worker and went on
/// waiting on their sockets there, every socket is watched by exactly one epoll (the one of
/// the worker that runs its coroutine), not by both.
#[test]
fn a_moved_coroutines_socket_is_in_one_epoll() {
    Child::new("a_moved_coroutines_socket_is_in_one_epoll")
        .env("CORUN_WORKERS", "2")
        .env("CORUN_STEAL", "1")
        .run(|| {
            let seen = gated_workload_with(true);
            assert_identity_kept(&seen);
            let threads: Vec<Vec<i32>> = seen
                .iter()
                .map(|s| s.os_threads.iter().copied().collect())
                .collect();
            assert!(
                moved(&seen) > 0,
                "no coroutine moved to the idle worker: {threads:?}"
            );
            let watching = epolls_watching();
            for (i, s) in seen.iter().enumerate() {
                let fd = s.socket.as_ref().expect("a socket").0.as_raw_fd();
                assert_eq!(
                    watching.get(&fd).copied().unwrap_or(0),
                    1,
                    "coroutine {i} (ran on {} threads): its socket {fd} is not in exactly one \
                     epoll: {watching:?}",
                    s.os_threads.len()
                );
            }
        });
}

/// Without `CORUN_STEAL` (the default), a coroutine that only yields stays on its worker, even
/// with the other worker idle.
#[test]
fn without_steal_coroutines_stay_on_their_worker() {
    Child::new("without_steal_coroutines_stay_on_their_worker")
        .env("CORUN_WORKERS", "2")
        .env_remove("CORUN_STEAL")
        .run(|| {
            let seen = gated_workload();
            assert_identity_kept(&seen);
            assert_eq!(moved(&seen), 0, "a coroutine moved without CORUN_STEAL");
        });
}

/// `CORUN_STEAL=0` is the same as leaving it unset.
#[test]
fn steal_0_keeps_coroutines_on_their_worker() {
    Child::new("steal_0_keeps_coroutines_on_their_worker")
        .env("CORUN_WORKERS", "2")
        .env("CORUN_STEAL", "0")
        .run(|| {
            let seen = gated_workload();
            assert_eq!(moved(&seen), 0, "a coroutine moved with CORUN_STEAL=0");
        });
}

/// With `CORUN_TLS=shared` and `CORUN_STEAL` unset, nothing moves and nothing is said.
#[test]
fn shared_identity_without_steal_is_quiet() {
    let Some(finished) = Child::new("shared_identity_without_steal_is_quiet")
        .env("CORUN_WORKERS", "2")
        .env_remove("CORUN_STEAL")
        .env("CORUN_TLS", "shared")
        .run(|| {
            let seen = gated_workload();
            assert_eq!(moved(&seen), 0, "a coroutine moved with shared identity");
        })
    else {
        return;
    };
    assert!(
        !finished.stderr.contains("CORUN_STEAL"),
        "{}",
        finished.describe()
    );
}

/// `CORUN_STEAL=1` with `CORUN_TLS=shared` is ignored with one warning naming the reason:
/// coroutines sharing their worker's identity must not change threads.
#[test]
fn steal_is_ignored_with_shared_identity() {
    let Some(finished) = Child::new("steal_is_ignored_with_shared_identity")
        .env("CORUN_WORKERS", "2")
        .env("CORUN_STEAL", "1")
        .env("CORUN_TLS", "shared")
        .run(|| {
            let handles: Vec<_> = (0..COROUTINES)
                .map(|i| {
                    corun::spawn(move || {
                        let mut os_threads = HashSet::new();
                        for _ in 0..(i + 1) * 4 {
                            // SAFETY: gettid has no preconditions.
                            os_threads.insert(unsafe { libc::gettid() });
                            busy_loop(Duration::from_micros(300));
                            corun::yield_now();
                        }
                        os_threads.len()
                    })
                })
                .collect();
            for h in handles {
                assert_eq!(join_within(h, Duration::from_secs(30), "a coroutine"), 1);
            }
        })
    else {
        return;
    };
    let warnings = finished.stderr.matches("CORUN_STEAL=1 ignored").count();
    assert_eq!(warnings, 1, "{}", finished.describe());
    assert!(
        finished.stderr.contains("CORUN_TLS=shared"),
        "{}",
        finished.describe()
    );
}
