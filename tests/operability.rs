//! Operability under the hook: `corun::stats`, the coroutine dump, the stuck-worker guard,
//! and the log level.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{join_within, wait_for, Child};

/// A connected pair of sockets.
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[inline(never)]
fn blocked_in_read(mut stream: TcpStream) -> usize {
    let mut buf = [0u8; 16];
    stream.read(&mut buf).unwrap_or(0)
}

#[inline(never)]
fn blocked_in_sleep() {
    // Longer than the test: the child exits without joining it, so its state in the dump does
    // not depend on how fast a loaded machine produces the dump.
    std::thread::sleep(Duration::from_secs(600));
}

#[inline(never)]
fn blocked_on_mutex(lock: Arc<Mutex<u32>>) -> u32 {
    *lock.lock().unwrap()
}

/// Spins for `how_long` without switching.
fn busy_loop(how_long: Duration) -> u64 {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < how_long {
        spins = std::hint::black_box(spins + 1);
    }
    spins
}

#[test]
fn stats_count_coroutines_and_what_they_wait_on() {
    Child::new("stats_count_coroutines_and_what_they_wait_on")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            let before = corun::stats().expect("the runtime is preloaded");
            let handles: Vec<_> = (0..50).map(|i| corun::spawn(move || i)).collect();
            for h in handles {
                h.join().unwrap();
            }
            let (client, server) = socket_pair();
            let lock = Arc::new(Mutex::new(7));
            let guard = lock.lock().unwrap();
            let reader = corun::spawn(move || blocked_in_read(server));
            let locker = corun::spawn({
                let lock = lock.clone();
                move || blocked_on_mutex(lock)
            });
            wait_for(
                "the reader and the locker to wait",
                Duration::from_secs(5),
                || {
                    let s = corun::stats().unwrap();
                    s.fd_waiters == 1 && s.futex_waiters == 1
                },
            );
            let during = corun::stats().unwrap();
            assert_eq!(during.runnable.len(), 2, "{during}");
            assert_eq!(during.spawned - before.spawned, 52, "{during}");
            assert_eq!(during.live(), 2, "{during}");
            assert!(during.context_switches >= during.started, "{during}");
            println!("while waiting: {during}");
            drop(guard);
            (&client).write_all(b"x").unwrap();
            assert_eq!(join_within(reader, Duration::from_secs(5), "reader"), 1);
            assert_eq!(join_within(locker, Duration::from_secs(5), "locker"), 7);
            let after = corun::stats().unwrap();
            assert_eq!(after.live(), 0, "{after}");
            assert_eq!(after.fd_waiters, 0, "{after}");
            assert_eq!(after.futex_waiters, 0, "{after}");
            assert_eq!(after.finished, after.spawned, "{after}");
            assert!(after.pooled_stacks > 0, "{after}");
        });
}

/// The lines of the dump between its header and footer.
fn dump_of(stderr: &str) -> &str {
    let start = stderr
        .find("corun: coroutine dump:")
        .unwrap_or_else(|| panic!("no dump in:\n{stderr}"));
    let end = stderr[start..]
        .find("corun: end of coroutine dump")
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("the dump has no end:\n{stderr}"));
    &stderr[start..end]
}

/// The dump's section about the coroutine named `name`.
fn section<'a>(dump: &'a str, name: &str) -> &'a str {
    let marker = format!("'{name}' — ");
    let start = dump
        .find(&marker)
        .unwrap_or_else(|| panic!("no coroutine '{name}' in the dump:\n{dump}"));
    let rest = &dump[start..];
    let end = rest[1..].find("\ncoroutine ").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[test]
fn a_signal_dumps_named_coroutines_blocked_in_read_sleep_and_a_mutex() {
    let Some(finished) =
        Child::new("a_signal_dumps_named_coroutines_blocked_in_read_sleep_and_a_mutex")
            .env("CORUN_DUMP", "1")
            .env("CORUN_WORKERS", "2")
            .run(|| {
                let (client, server) = socket_pair();
                let lock = Arc::new(Mutex::new(3));
                let guard = lock.lock().unwrap();
                let reader = corun::Builder::new()
                    .name("reader".into())
                    .spawn(move || blocked_in_read(server))
                    .unwrap();
                let sleeper = corun::Builder::new()
                    .name("sleeper".into())
                    .spawn(blocked_in_sleep)
                    .unwrap();
                let locker = corun::Builder::new()
                    .name("locker".into())
                    .spawn({
                        let lock = lock.clone();
                        move || blocked_on_mutex(lock)
                    })
                    .unwrap();
                wait_for("all three to block", Duration::from_secs(5), || {
                    let s = corun::stats().unwrap();
                    s.fd_waiters == 1
                        && s.futex_waiters == 1
                        && s.runnable.iter().sum::<usize>() == 0
                });
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: raising SIGQUIT, which the runtime handles (CORUN_DUMP=1).
                assert_eq!(unsafe { libc::raise(libc::SIGQUIT) }, 0);
                // Resolving symbols is slow (more so in a debug build on a busy machine).
                wait_for("the dump", Duration::from_secs(30), || {
                    corun::stats().unwrap().dumps == 1
                });
                // The program carries on after the dump.
                drop(guard);
                (&client).write_all(b"hello").unwrap();
                assert_eq!(join_within(reader, Duration::from_secs(5), "reader"), 5);
                assert_eq!(join_within(locker, Duration::from_secs(5), "locker"), 3);
                drop(sleeper); // still asleep; the child exits without it
                println!("carried on after the dump");
            })
    else {
        return; // in the child
    };
    assert!(
        finished.stdout.contains("carried on after the dump"),
        "{}",
        finished.describe()
    );
    let dump = dump_of(&finished.stderr);
    assert!(dump.contains("live coroutine(s), 2 worker(s)"), "{dump}");

    let reader = section(dump, "reader");
    assert!(reader.contains("parked on worker"), "{reader}");
    assert!(
        reader.contains("waiting for fd") && reader.contains("to become readable"),
        "{reader}"
    );
    assert!(
        reader.contains("      recv\n"),
        "the backtrace should start in recv:\n{reader}"
    );
    assert!(
        reader.contains("blocked_in_read"),
        "the backtrace should reach the test's function:\n{reader}"
    );

    let sleeper = section(dump, "sleeper");
    assert!(sleeper.contains("sleeping, wakes in"), "{sleeper}");
    assert!(
        sleeper.contains("clock_nanosleep") || sleeper.contains("nanosleep"),
        "{sleeper}"
    );
    assert!(sleeper.contains("blocked_in_sleep"), "{sleeper}");

    let locker = section(dump, "locker");
    assert!(locker.contains("waiting on futex word"), "{locker}");
    assert!(locker.contains("      syscall\n"), "{locker}");
    assert!(locker.contains("blocked_on_mutex"), "{locker}");
}

#[test]
fn another_dump_signal_can_be_chosen() {
    let Some(finished) = Child::new("another_dump_signal_can_be_chosen")
        .env("CORUN_DUMP", "1")
        .env("CORUN_DUMP_SIGNAL", "USR1")
        .run(|| {
            let sleeper = corun::Builder::new()
                .name("napper".into())
                .spawn(|| std::thread::sleep(Duration::from_secs(600)))
                .unwrap();
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: raising SIGUSR1, which the runtime handles (CORUN_DUMP_SIGNAL=USR1).
            assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
            wait_for("the dump", Duration::from_secs(30), || {
                corun::stats().unwrap().dumps == 1
            });
            drop(sleeper); // still asleep; the child exits without it
        })
    else {
        return; // in the child
    };
    assert!(section(dump_of(&finished.stderr), "napper").contains("sleeping"));
}

#[test]
fn sigquit_is_left_alone_without_corun_dump() {
    use std::os::unix::process::ExitStatusExt;
    let Some(finished) = Child::new("sigquit_is_left_alone_without_corun_dump")
        .env_remove("CORUN_DUMP")
        .run_unchecked(|| {
            corun::spawn(|| ()).join().unwrap();
            // SAFETY: SIGQUIT with its default action ends this child process.
            unsafe { libc::raise(libc::SIGQUIT) };
            std::thread::sleep(Duration::from_secs(2));
        })
    else {
        return; // in the child
    };
    assert_eq!(
        finished.status.signal(),
        Some(libc::SIGQUIT),
        "{}",
        finished.describe()
    );
    assert!(
        !finished.stderr.contains("coroutine dump"),
        "{}",
        finished.describe()
    );
}

#[test]
fn new_coroutines_finish_while_another_worker_is_stuck() {
    let Some(finished) = Child::new("new_coroutines_finish_while_another_worker_is_stuck")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            let spinner = corun::Builder::new()
                .name("spinner".into())
                .spawn(|| busy_loop(Duration::from_secs(2)))
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let start = Instant::now();
            let handles: Vec<_> = (0..100).map(|i| corun::spawn(move || i * 2)).collect();
            let sum: u32 = handles
                .into_iter()
                .map(|h| join_within(h, Duration::from_secs(1), "a new coroutine"))
                .sum();
            let took = start.elapsed();
            assert_eq!(sum, 9900);
            assert!(
                took < Duration::from_millis(900),
                "100 new coroutines took {took:?}"
            );
            println!("100 new coroutines finished in {took:?} while 'spinner' spun");
            join_within(spinner, Duration::from_secs(10), "spinner");
            assert_eq!(corun::stats().unwrap().stuck_incidents, 1);
        })
    else {
        return; // in the child
    };
    assert!(
        finished.stderr.contains("coroutine")
            && finished.stderr.contains("'spinner'")
            && finished.stderr.contains("without switching"),
        "no stuck-worker warning naming the coroutine:\n{}",
        finished.describe()
    );
    assert_eq!(
        finished.stderr.matches("without switching").count(),
        1,
        "warn once per incident:\n{}",
        finished.describe()
    );
    // Where it spins, from the worker's own stack.
    let stack = finished
        .stderr
        .split("where it runs now:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no stack in the warning:\n{}", finished.describe()));
    assert!(
        stack.contains("operability::busy_loop"),
        "the stack should show busy_loop:\n{}",
        finished.describe()
    );
}

#[test]
fn one_worker_keeps_new_coroutines_running_on_a_spare_and_holds_started_ones() {
    let Some(finished) =
        Child::new("one_worker_keeps_new_coroutines_running_on_a_spare_and_holds_started_ones")
            .env("CORUN_WORKERS", "1")
            .run(|| {
                let spinner = corun::Builder::new()
                    .name("spinner".into())
                    .spawn(|| busy_loop(Duration::from_millis(1500)))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(50));
                let handles: Vec<_> = (0..20).map(|i| corun::spawn(move || i)).collect();
                for h in handles {
                    join_within(
                        h,
                        Duration::from_secs(1),
                        "a new coroutine on the spare worker",
                    );
                }
                join_within(spinner, Duration::from_secs(10), "spinner");
            })
    else {
        return; // in the child
    };
    assert!(
        finished.stderr.contains("spare worker"),
        "{}",
        finished.describe()
    );
    assert!(
        finished.stderr.contains("are held until it switches"),
        "{}",
        finished.describe()
    );
}

#[test]
fn with_migration_a_ticker_keeps_ticking_through_a_busy_loop() {
    let Some(finished) = Child::new("with_migration_a_ticker_keeps_ticking_through_a_busy_loop")
        .env("CORUN_WORKERS", "1")
        .env("CORUN_MIGRATE", "1")
        .run(|| {
            let ticks = Arc::new(AtomicU32::new(0));
            let ticker = corun::spawn({
                let ticks = ticks.clone();
                move || {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_millis(2600) {
                        std::thread::sleep(Duration::from_millis(10));
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            std::thread::sleep(Duration::from_millis(100));
            let spinner = corun::Builder::new()
                .name("spinner".into())
                .spawn(|| busy_loop(Duration::from_secs(2)))
                .unwrap();
            // Leave the guard its 100 ms to notice, then count ticks for 1.5 s.
            std::thread::sleep(Duration::from_millis(300));
            let before = ticks.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1500));
            let during = ticks.load(Ordering::Relaxed) - before;
            assert!(spinner.is_finished() || during > 0);
            assert!(
                during >= 50,
                "only {during} ticks of 10 ms in 1.5 s during the busy loop"
            );
            println!("{during} ticks during the busy loop");
            join_within(spinner, Duration::from_secs(10), "spinner");
            join_within(ticker, Duration::from_secs(10), "ticker");
        })
    else {
        return; // in the child
    };
    assert!(
        finished
            .stderr
            .contains("move to a new thread (CORUN_MIGRATE=1)"),
        "{}",
        finished.describe()
    );
}

#[test]
fn the_guard_names_the_libc_call_a_coroutine_is_stuck_in() {
    let Some(finished) = Child::new("the_guard_names_the_libc_call_a_coroutine_is_stuck_in")
        .env("CORUN_WORKERS", "1")
        .slow_stdout(4096, Duration::from_millis(40))
        .run(|| {
            // Writes to stdout never suspend (std holds its stdout lock meanwhile), so a big
            // write into a slowly read pipe keeps the worker inside `write`.
            let writer = corun::Builder::new()
                .name("writer".into())
                .spawn(|| {
                    let line = vec![b'x'; 100 * 1024];
                    let mut out = std::io::stdout().lock();
                    out.write_all(&line).unwrap();
                    out.write_all(b"\n").unwrap();
                })
                .unwrap();
            join_within(writer, Duration::from_secs(20), "writer");
        })
    else {
        return; // in the child
    };
    assert!(
        finished.stderr.contains("'writer'") && finished.stderr.contains("inside `write`"),
        "{}",
        finished.describe()
    );
    // Blocked in write(2) (system call 1): named, not interrupted for a stack.
    assert!(
        finished
            .stderr
            .contains("it is blocked in system call 1 (no stack taken"),
        "{}",
        finished.describe()
    );
}

#[test]
fn the_scheduler_trace_prints_a_line_per_interval() {
    let Some(finished) = Child::new("the_scheduler_trace_prints_a_line_per_interval")
        .env("CORUN_TRACE", "sched:100")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            let sleepers: Vec<_> = (0..10)
                .map(|_| corun::spawn(|| std::thread::sleep(Duration::from_millis(450))))
                .collect();
            for s in sleepers {
                s.join().unwrap();
            }
        })
    else {
        return; // in the child
    };
    let lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|l| l.starts_with("corun: sched "))
        .collect();
    assert!(lines.len() >= 3, "{}", finished.describe());
    let shape = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.len() > 20
            && words[2].ends_with("ms:")
            && line.contains(": workers 2 (+0 spare) runnable [")
            && line.contains(" parked fd=")
            && line.contains("; per s: spawned ")
            && line.contains(" switches ")
            && line.contains("; stuck ")
    };
    assert!(lines.iter().all(|l| shape(l)), "{}", finished.describe());
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" live 10 ") && l.contains(" sleep=10 ")),
        "a line while the ten sleep:\n{}",
        finished.describe()
    );
}

#[test]
fn corun_log_sets_what_the_runtime_says() {
    let Some(info) = Child::new("corun_log_sets_what_the_runtime_says")
        .env("CORUN_LOG", "info")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            corun::spawn(|| ()).join().unwrap();
        })
    else {
        return; // in the child
    };
    assert!(
        info.stderr
            .contains("corun: info: runtime starting with 2 workers"),
        "{}",
        info.describe()
    );
    let Some(quiet) = Child::new("corun_log_sets_what_the_runtime_says")
        .env("CORUN_LOG", "error")
        .env("CORUN_WORKERS", "2")
        .run(|| {
            corun::spawn(|| ()).join().unwrap();
        })
    else {
        return; // in the child
    };
    assert!(!quiet.stderr.contains("corun:"), "{}", quiet.describe());
}
