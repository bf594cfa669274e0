//! fork without exec (README, "fork"): the child starts a runtime of its own at its first
//! spawn; a fork inside a coroutine makes a child whose one thread runs on that coroutine's
//! code. Each test runs in a child process with the hook preloaded.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use support::{join_within, os_threads, worker_threads, Child};

/// Waits for child `pid` (from a plain thread or a coroutine) and returns its exit code, or
/// panics if it was killed by a signal.
fn exit_code(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our child and a valid status pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "the forked child died: status {status:#x} (signal {})",
        libc::WTERMSIG(status)
    );
    libc::WEXITSTATUS(status)
}

/// In a forked child: runs `body` and ends the process with 0 if it returned true, 1 if it
/// returned false, 2 if it panicked (never returning into the parent's test harness).
fn in_child(body: impl FnOnce() -> bool) -> ! {
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(_) => 2,
    };
    let _ = std::io::stdout().flush();
    // SAFETY: ends the forked child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

/// Spawns `n` coroutines that sleep 100 ms each and joins them; true if they ran concurrently
/// (well under `n` × 100 ms) as coroutines.
fn coroutines_sleep_concurrently(n: usize) -> bool {
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            corun::spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                corun::coroutine_id().is_some()
            })
        })
        .collect();
    let all_coroutines = handles.into_iter().all(|h| h.join().unwrap());
    let took = start.elapsed();
    println!("{n} sleeping coroutines took {took:?}");
    all_coroutines && took < Duration::from_secs(5)
}

#[test]
fn a_child_forked_from_a_plain_thread_spawns_with_a_runtime_of_its_own() {
    const NAME: &str = "a_child_forked_from_a_plain_thread_spawns_with_a_runtime_of_its_own";
    Child::new(NAME).env("CORUN_WORKERS", "2").run(|| {
        // Sockets the parent's coroutines use (so they are managed, registered with the
        // parent's reactors): one an echo coroutine of the parent goes on reading, one the
        // child's coroutine will read.
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let echo = corun::spawn(move || {
            let mut theirs = theirs;
            let mut buf = [0u8; 5];
            theirs.read_exact(&mut buf).unwrap();
            theirs.write_all(&buf).unwrap();
        });
        let (mut for_child, child_reads) = UnixStream::pair().unwrap();
        let child_reads = corun::spawn(move || {
            let mut pfd = libc::pollfd {
                fd: child_reads.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; waits 10 ms (registers the socket with a reactor).
            unsafe { libc::poll(&mut pfd, 1, 10) };
            child_reads
        })
        .join()
        .unwrap();
        let sleepers: Vec<_> = (0..200)
            .map(|_| corun::spawn(|| std::thread::sleep(Duration::from_millis(300))))
            .collect();
        assert_eq!(worker_threads(), 2);

        // SAFETY: fork; the child only runs the code below and ends with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            in_child(|| {
                // None of the parent's threads is here; the first spawn starts new workers.
                let before = worker_threads();
                let concurrent = coroutines_sleep_concurrently(500);
                let workers = worker_threads();
                println!("child: workers {before} before its first spawn, {workers} after");
                // A socket the parent's coroutines used, read by a coroutine of the child.
                let reader = corun::spawn(move || {
                    let mut child_reads = child_reads;
                    let mut buf = [0u8; 2];
                    child_reads.read_exact(&mut buf).unwrap();
                    buf
                });
                std::thread::sleep(Duration::from_millis(50));
                for_child.write_all(b"hi").unwrap();
                let read = join_within(reader, Duration::from_secs(5), "the child's reader");
                // The child's plain thread writes to a managed socket the parent reads.
                ours.write_all(b"child").unwrap();
                before == 0 && workers == 2 && concurrent && &read == b"hi"
            });
        }
        // The parent goes on as before: its coroutines, its sockets, new spawns.
        join_within(echo, Duration::from_secs(10), "the parent's echo");
        let mut buf = [0u8; 5];
        ours.read_exact(&mut buf).unwrap();
        assert_eq!(
            &buf, b"child",
            "the parent's echo did not pass on the child's bytes"
        );
        for s in sleepers {
            join_within(s, Duration::from_secs(10), "a parent sleeper");
        }
        assert!(
            coroutines_sleep_concurrently(200),
            "the parent's runtime after fork"
        );
        assert_eq!(
            exit_code(pid),
            0,
            "the child's checks failed (see its output)"
        );
    });
}

#[test]
fn a_fork_inside_a_coroutine_runs_on_as_the_childs_only_thread() {
    const NAME: &str = "a_fork_inside_a_coroutine_runs_on_as_the_childs_only_thread";
    Child::new(NAME).env("CORUN_WORKERS", "2").run(|| {
        let (mut report, child_end) = UnixStream::pair().unwrap();
        let forker = corun::spawn(move || {
            // SAFETY: fork; the child runs on as this coroutine's code, then returns.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let mut out = child_end;
                // The coroutine is the child's one thread, a plain one now.
                let plain = corun::coroutine_id().is_none();
                let threads = os_threads();
                let concurrent = coroutines_sleep_concurrently(300);
                let slept = {
                    let start = Instant::now();
                    std::thread::sleep(Duration::from_millis(20));
                    start.elapsed() >= Duration::from_millis(20)
                };
                let _ = writeln!(
                    out,
                    "plain={plain} threads={threads} concurrent={concurrent} slept={slept}"
                );
                // Returning ends the child's one thread: the child exits with 0.
                return -1;
            }
            // The parent's coroutine: waitpid suspends it, and reports the child's exit.
            exit_code(pid)
        });
        let code = join_within(forker, Duration::from_secs(20), "the forking coroutine");
        let mut text = String::new();
        report
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        report.read_to_string(&mut text).unwrap();
        println!("child said: {text}");
        assert_eq!(code, 0, "the child did not end with status 0");
        assert_eq!(
            text.trim(),
            "plain=true threads=1 concurrent=true slept=true",
            "what the child saw"
        );
        // The parent's runtime carries on.
        assert!(coroutines_sleep_concurrently(100));
    });
}

#[test]
fn forks_while_coroutines_run_never_hang_or_crash_the_child() {
    const NAME: &str = "forks_while_coroutines_run_never_hang_or_crash_the_child";
    Child::new(NAME).env("CORUN_WORKERS", "2").run(|| {
        // Busy coroutines: spawning, sleeping, finishing, making stacks and fds all the time.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                corun::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let inner: Vec<_> = (0..50)
                            .map(|_| {
                                corun::spawn(|| {
                                    let (a, b) = UnixStream::pair().unwrap();
                                    drop(a);
                                    drop(b);
                                    std::thread::sleep(Duration::from_millis(1));
                                })
                            })
                            .collect();
                        for h in inner {
                            h.join().unwrap();
                        }
                    }
                })
            })
            .collect();
        for round in 0..20 {
            // SAFETY: fork; the child runs the closure below and ends with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                in_child(|| {
                    let handles: Vec<_> = (0..50).map(|i| corun::spawn(move || i * 2)).collect();
                    let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
                    sum == 49 * 50
                });
            }
            let start = Instant::now();
            let code = exit_code(pid);
            assert_eq!(code, 0, "round {round}: the child's coroutines failed");
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "round {round} took long"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in churn {
            join_within(h, Duration::from_secs(10), "a churning coroutine");
        }
    });
}

#[test]
fn a_daemonised_process_spawns_coroutines() {
    const NAME: &str = "a_daemonised_process_spawns_coroutines";
    let finished = Child::new(NAME).run_unchecked(|| {
        support::assert_preloaded();
        // daemon(3) forks inside glibc (no call of the interposed fork): the handlers run all
        // the same. The original process exits 0 at once; the daemon keeps our stdout.
        // SAFETY: nochdir and noclose: only the fork and setsid.
        assert_eq!(unsafe { libc::daemon(1, 1) }, 0);
        let ok = coroutines_sleep_concurrently(300);
        println!("daemon: coroutines ok={ok} workers={}", worker_threads());
        let _ = std::io::stdout().flush();
        // SAFETY: ends the daemon.
        unsafe { libc::_exit(0) };
    });
    if let Some(finished) = finished {
        assert!(finished.status.success(), "{}", finished.describe());
        assert!(
            finished
                .stdout
                .contains("daemon: coroutines ok=true workers="),
            "the daemon did not report success:\n{}",
            finished.describe()
        );
    }
}
