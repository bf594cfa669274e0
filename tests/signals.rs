//! Signals and coroutines: a signal interrupts one blocked call, as it would interrupt one
//! thread (README, "Signals"). Each test runs in a child process with the hook preloaded.
//!
//! The differential cases (the same interrupted call on a thread without the hook, in a
//! coroutine, on a plain thread under the hook) are in the fidelity harness; these tests pin
//! the choices the kernel cannot show: which coroutine a signal for the process interrupts,
//! that it interrupts one, and that the handler has run before the call returns.

mod support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{join_within, Child};

extern "C" {
    /// glibc's `siginterrupt(3)` (the libc crate does not declare it).
    fn siginterrupt(sig: libc::c_int, flag: libc::c_int) -> libc::c_int;
}

/// A blocking call to interrupt: its name, and the call (its result, or -errno).
type Call = (&'static str, fn() -> isize);

/// Handler calls so far.
static HITS: AtomicUsize = AtomicUsize::new(0);
/// Set by the handler: a call that fails with EINTR must already see it.
static FLAG: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    HITS.fetch_add(1, Ordering::SeqCst);
    FLAG.store(true, Ordering::SeqCst);
}

/// Installs `on_signal` for SIGUSR1, with `SA_RESTART` or without.
fn install(restart: bool) {
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_signal as *const () as usize;
        act.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut act.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut()),
            0
        );
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: a valid out-array of two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both fds are new and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A blocking `read` of one byte: the byte count, or -errno.
fn read_one(fd: libc::c_int) -> isize {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer.
    let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
    if n < 0 {
        -(errno() as isize)
    } else {
        n
    }
}

fn write_one(fd: libc::c_int) {
    // SAFETY: a one-byte buffer.
    assert_eq!(unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) }, 1);
}

/// Sends SIGUSR1 to `thread` (a `pthread_t`, possibly a coroutine's) after `after`.
fn kill_later(thread: libc::pthread_t, after: Duration) -> std::thread::JoinHandle<()> {
    let thread = thread as usize;
    std::thread::spawn(move || {
        std::thread::sleep(after);
        // SAFETY: a live thread (or coroutine) and a signal with a handler.
        assert_eq!(
            unsafe { libc::pthread_kill(thread as libc::pthread_t, libc::SIGUSR1) },
            0
        );
    })
}

/// The tids of the runtime's worker threads.
fn worker_tids() -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            comm.starts_with("corun-worker")
                .then(|| task.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// Sends SIGUSR1 to worker thread `tid` as the kernel delivers a signal meant for the process
/// to a thread it picked (`si_code` SI_QUEUE, not a thread-directed SI_TKILL).
fn signal_for_the_process_on(tid: libc::pid_t) {
    // SAFETY: a zeroed siginfo with the fields rt_tgsigqueueinfo wants; our own process.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        info.si_signo = libc::SIGUSR1;
        info.si_code = libc::SI_QUEUE;
        let rc = libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            tid,
            libc::SIGUSR1,
            &mut info as *mut libc::siginfo_t,
        );
        assert_eq!(
            rc,
            0,
            "rt_tgsigqueueinfo: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn a_signal_aimed_at_a_coroutine_interrupts_the_call_it_is_blocked_in() {
    const NAME: &str = "a_signal_aimed_at_a_coroutine_interrupts_the_call_it_is_blocked_in";
    Child::new(NAME).env("CORUN_WORKERS", "2").run(|| {
        install(false);
        let calls: [Call; 7] = [
            ("read on a pipe", || {
                let (r, _w) = pipe();
                read_one(r.as_raw_fd())
            }),
            ("recv on a socket", || {
                let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut byte = 0u8;
                // SAFETY: a one-byte buffer.
                let n = unsafe { libc::recv(a.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, 0) };
                if n < 0 {
                    -(errno() as isize)
                } else {
                    n
                }
            }),
            ("accept", || {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                // SAFETY: null address out-pointers are allowed.
                let fd = unsafe {
                    libc::accept(
                        listener.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    )
                };
                if fd < 0 {
                    -(errno() as isize)
                } else {
                    fd as isize
                }
            }),
            ("poll", || {
                let (r, _w) = pipe();
                let mut pfd = libc::pollfd {
                    fd: r.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
                if n < 0 {
                    -(errno() as isize)
                } else {
                    n as isize
                }
            }),
            ("nanosleep", || {
                let req = libc::timespec {
                    tv_sec: 5,
                    tv_nsec: 0,
                };
                let mut rem = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: valid timespecs.
                let n = unsafe { libc::nanosleep(&req, &mut rem) };
                assert!(
                    n < 0 && rem.tv_sec >= 4 && rem.tv_sec < 5,
                    "rem {}s",
                    rem.tv_sec
                );
                -(errno() as isize)
            }),
            ("sleep", || {
                // SAFETY: no preconditions.
                let left = unsafe { libc::sleep(5) };
                assert!((3..=4).contains(&left), "sleep(5) left {left} s");
                -(errno() as isize)
            }),
            ("a futex wait", || {
                let word = std::sync::atomic::AtomicU32::new(0);
                // SAFETY: a live futex word; an untimed FUTEX_WAIT for the value it holds.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        word.as_ptr(),
                        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                        0,
                        0,
                    )
                };
                if n < 0 {
                    -(errno() as isize)
                } else {
                    n as isize
                }
            }),
        ];
        for (what, call) in calls {
            let before = HITS.load(Ordering::SeqCst);
            FLAG.store(false, Ordering::SeqCst);
            let (tx, rx) = mpsc::channel();
            let coroutine = corun::spawn(move || {
                // SAFETY: no preconditions.
                tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
                let start = Instant::now();
                let result = call();
                (result, FLAG.load(Ordering::SeqCst), start.elapsed())
            });
            let target = rx.recv().unwrap() as libc::pthread_t;
            let killer = kill_later(target, Duration::from_millis(100));
            let (result, flag_seen, took) = join_within(coroutine, Duration::from_secs(10), what);
            killer.join().unwrap();
            println!("{what}: {result} after {took:?}");
            assert_eq!(
                result,
                -(libc::EINTR as isize),
                "{what} was not interrupted"
            );
            assert!(flag_seen, "{what}: EINTR came before the handler ran");
            assert_eq!(
                HITS.load(Ordering::SeqCst),
                before + 1,
                "{what}: handler calls"
            );
            assert!(took < Duration::from_secs(3), "{what} took {took:?}");
        }
    });
}

#[test]
fn under_sa_restart_a_read_goes_on_and_a_sleep_is_cut_short() {
    const NAME: &str = "under_sa_restart_a_read_goes_on_and_a_sleep_is_cut_short";
    Child::new(NAME).env("CORUN_WORKERS", "2").run(|| {
        install(true);
        // A read restarts: it returns the byte written after the signal.
        let (r, w) = pipe();
        let (tx, rx) = mpsc::channel();
        let reader = corun::spawn(move || {
            // SAFETY: no preconditions.
            tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
            read_one(r.as_raw_fd())
        });
        let target = rx.recv().unwrap() as libc::pthread_t;
        kill_later(target, Duration::from_millis(100))
            .join()
            .unwrap();
        support::wait_for("the handler", Duration::from_secs(5), || {
            HITS.load(Ordering::SeqCst) == 1
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !reader.is_finished(),
            "a restartable read ended at the signal"
        );
        write_one(w.as_raw_fd());
        assert_eq!(join_within(reader, Duration::from_secs(5), "the reader"), 1);

        // A sleep fails with EINTR whatever the flags.
        let (tx, rx) = mpsc::channel();
        let sleeper = corun::spawn(move || {
            // SAFETY: no preconditions.
            tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
            let req = libc::timespec {
                tv_sec: 5,
                tv_nsec: 0,
            };
            // SAFETY: a valid timespec; no rem.
            let n = unsafe { libc::nanosleep(&req, std::ptr::null_mut()) };
            (n, errno())
        });
        let target = rx.recv().unwrap() as libc::pthread_t;
        kill_later(target, Duration::from_millis(100))
            .join()
            .unwrap();
        assert_eq!(
            join_within(sleeper, Duration::from_secs(3), "the sleeper"),
            (-1, libc::EINTR)
        );
    });
}

#[test]
fn a_signal_for_the_process_interrupts_the_coroutine_that_waited_longest_and_only_it() {
    const NAME: &str =
        "a_signal_for_the_process_interrupts_the_coroutine_that_waited_longest_and_only_it";
    Child::new(NAME).env("CORUN_WORKERS", "2").run(|| {
        install(false);
        let pipes: Vec<_> = (0..3).map(|_| pipe()).collect();
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for (r, w) in pipes {
            readers.push(corun::spawn(move || read_one(r.as_raw_fd())));
            writers.push(w);
            // In this order: reader 0 waits longest.
            std::thread::sleep(Duration::from_millis(50));
        }
        let workers = worker_tids();
        assert_eq!(workers.len(), 2, "worker threads: {workers:?}");
        // The kernel's pick for a signal meant for the process: a worker thread.
        signal_for_the_process_on(workers[1]);
        assert_eq!(
            join_within(readers.remove(0), Duration::from_secs(5), "reader 0"),
            -(libc::EINTR as isize)
        );
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            readers.iter().all(|r| !r.is_finished()),
            "one signal interrupted more than one call"
        );
        signal_for_the_process_on(workers[0]);
        assert_eq!(
            join_within(readers.remove(0), Duration::from_secs(5), "reader 1"),
            -(libc::EINTR as isize)
        );
        write_one(writers[2].as_raw_fd());
        assert_eq!(
            join_within(readers.remove(0), Duration::from_secs(5), "reader 2"),
            1
        );
        assert_eq!(HITS.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn a_plain_thread_on_a_managed_socket_is_interrupted_as_libc_would_be() {
    const NAME: &str = "a_plain_thread_on_a_managed_socket_is_interrupted_as_libc_would_be";
    Child::new(NAME).env("CORUN_WORKERS", "1").run(|| {
        for restart in [false, true] {
            install(restart);
            // A coroutine's first use makes the socket managed (non-blocking in the kernel).
            let (a, b) = corun::spawn(|| {
                let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                let mut pfd = libc::pollfd {
                    fd: a.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 0) };
                (a, b)
            })
            .join()
            .unwrap();
            let (tx, rx) = mpsc::channel();
            let reader = std::thread::spawn(move || {
                // SAFETY: no preconditions.
                tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
                let mut byte = 0u8;
                // SAFETY: a one-byte buffer.
                let n = unsafe { libc::recv(a.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, 0) };
                (n, if n < 0 { errno() } else { 0 })
            });
            let target = rx.recv().unwrap() as libc::pthread_t;
            kill_later(target, Duration::from_millis(100))
                .join()
                .unwrap();
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: a one-byte buffer.
            unsafe { libc::send(b.as_raw_fd(), b"y".as_ptr().cast(), 1, 0) };
            let got = reader.join().unwrap();
            println!("restart={restart}: recv gave {got:?}");
            if restart {
                assert_eq!(got, (1, 0), "a restarted recv must return the byte");
            } else {
                assert_eq!(got, (-1, libc::EINTR));
            }
        }
    });
}

#[test]
fn sigaction_reports_the_users_handler_and_sa_resethand_resets_it() {
    const NAME: &str = "sigaction_reports_the_users_handler_and_sa_resethand_resets_it";
    Child::new(NAME).run(|| {
        // SAFETY: valid sigactions; SIGUSR2 gets handlers of ours only.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as usize;
            act.sa_flags = libc::SA_RESETHAND | libc::SA_NODEFER;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaddset(&mut act.sa_mask, libc::SIGUSR1);
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, &act, std::ptr::null_mut()),
                0
            );
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old),
                0
            );
            assert_eq!(old.sa_sigaction, on_signal as *const () as usize);
            assert_eq!(
                old.sa_flags & libc::SA_SIGINFO,
                0,
                "SA_SIGINFO shows through"
            );
            assert_ne!(old.sa_flags & libc::SA_RESETHAND, 0);
            assert_eq!(libc::sigismember(&old.sa_mask, libc::SIGUSR1), 1);
            let before = HITS.load(Ordering::SeqCst);
            libc::raise(libc::SIGUSR2);
            assert_eq!(HITS.load(Ordering::SeqCst), before + 1);
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old),
                0
            );
            assert_eq!(
                old.sa_sigaction,
                libc::SIG_DFL,
                "SA_RESETHAND did not reset"
            );
            // signal() returns the previous handler; siginterrupt makes the next one interrupt.
            assert_eq!(
                libc::signal(libc::SIGUSR2, on_signal as *const () as usize),
                libc::SIG_DFL
            );
            assert_eq!(
                libc::signal(libc::SIGUSR2, libc::SIG_IGN),
                on_signal as *const () as usize
            );
            assert_eq!(siginterrupt(libc::SIGUSR2, 1), 0);
            libc::signal(libc::SIGUSR2, on_signal as *const () as usize);
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut old),
                0
            );
            assert_eq!(
                old.sa_flags & libc::SA_RESTART,
                0,
                "siginterrupt(1) was ignored"
            );
            assert_eq!(
                libc::signal(libc::SIGKILL, on_signal as *const () as usize),
                libc::SIG_ERR
            );
            assert_eq!(errno(), libc::EINVAL);
        }
    });
}
