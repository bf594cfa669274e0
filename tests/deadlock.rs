//! Deadlock detection: reported when nothing can wake the coroutines, and never when
//! something can (a socket, a timer, a signal, another process, a thread the runtime cannot
//! see).

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use support::Child;

/// Two coroutines, 'ab' and 'ba', each holding one lock and wanting the other's.
fn ab_ba() -> (corun::JoinHandle<()>, corun::JoinHandle<()>) {
    let a = Arc::new(Mutex::new(()));
    let b = Arc::new(Mutex::new(()));
    let both = Arc::new(Barrier::new(2));
    let ab = corun::Builder::new()
        .name("ab".into())
        .spawn({
            let (a, b, both) = (a.clone(), b.clone(), both.clone());
            move || {
                let _a = a.lock().unwrap();
                both.wait();
                let _b = b.lock().unwrap();
            }
        })
        .unwrap();
    let ba = corun::Builder::new()
        .name("ba".into())
        .spawn(move || {
            let _b = b.lock().unwrap();
            both.wait();
            let _a = a.lock().unwrap();
        })
        .unwrap();
    (ab, ba)
}

#[test]
fn an_ab_ba_deadlock_is_reported_with_both_names_and_abort_exits_2() {
    let Some(finished) =
        Child::new("an_ab_ba_deadlock_is_reported_with_both_names_and_abort_exits_2")
            .env("CORUN_DEADLOCK", "abort")
            .run_unchecked(|| {
                let (ab, ba) = ab_ba();
                let _ = ab.join();
                let _ = ba.join();
                println!("joined: no deadlock?");
            })
    else {
        return;
    };
    let err = &finished.stderr;
    assert_eq!(finished.status.code(), Some(2), "{}", finished.describe());
    let report = err
        .find("corun: deadlock:")
        .map(|i| &err[i..])
        .unwrap_or_else(|| panic!("no deadlock report:\n{}", finished.describe()));
    assert!(
        report.contains("coroutine") && report.contains("'ab' — waiting on futex word"),
        "{report}"
    );
    assert!(report.contains("'ba' — waiting on futex word"), "{report}");
    assert!(
        report.contains("— joining coroutine"),
        "the main thread's join: {report}"
    );
    assert!(report.contains("corun: coroutine dump:"), "{report}");
    assert_eq!(err.matches("corun: deadlock:").count(), 1, "{err}");
    assert!(
        finished.elapsed < Duration::from_millis(2500),
        "reported after {:?}",
        finished.elapsed
    );
}

#[test]
fn warn_reports_once_and_leaves_the_program_running() {
    let Some(finished) = Child::new("warn_reports_once_and_leaves_the_program_running")
        .env("CORUN_DEADLOCK", "warn")
        .run_unchecked(|| {
            // No handler: SIGALRM's default action ends the process after 3 s, long after the
            // report (the program itself cannot go on: it is deadlocked).
            // SAFETY: alarm has no preconditions.
            unsafe { libc::alarm(3) };
            let (ab, ba) = ab_ba();
            let _ = ab.join();
            let _ = ba.join();
        })
    else {
        return;
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        finished.status.signal(),
        Some(libc::SIGALRM),
        "{}",
        finished.describe()
    );
    assert_eq!(
        finished.stderr.matches("corun: deadlock:").count(),
        1,
        "{}",
        finished.describe()
    );
}

/// Runs `body` in a child with `CORUN_DEADLOCK=abort`: a false alarm would end it with status
/// 2 before `body` finishes.
fn no_report(name: &str, body: impl FnOnce()) {
    let Some(finished) = Child::new(name)
        .env("CORUN_DEADLOCK", "abort")
        .run_unchecked(|| {
            body();
            println!("finished without a report");
        })
    else {
        return;
    };
    assert!(
        finished.status.success() && !finished.stderr.contains("deadlock"),
        "{}",
        finished.describe()
    );
    assert!(finished.stdout.contains("finished without a report"));
}

#[test]
fn no_report_for_a_thousand_coroutines_waiting_on_a_socket_for_3_s() {
    no_report(
        "no_report_for_a_thousand_coroutines_waiting_on_a_socket_for_3_s",
        || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            // Room for all thousand: beyond std's backlog of 128, a loaded machine's kernel
            // may answer with SYN cookies and then drop the client's ACK (the accept queue is
            // full), leaving a client that believes it is connected and a server that never
            // sees it.
            // SAFETY: listen again on a listening socket we own, with a larger backlog.
            let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
            assert_eq!(unsafe { libc::listen(fd, 1024) }, 0);
            let addr = listener.local_addr().unwrap();
            let gate = Arc::new(Mutex::new(()));
            let held = gate.lock().unwrap();
            let server = corun::spawn(move || {
                let mut peers = Vec::new();
                for _ in 0..1000 {
                    peers.push(listener.accept().unwrap().0);
                }
                std::thread::sleep(Duration::from_secs(3));
                for mut peer in peers {
                    peer.write_all(b"x").unwrap();
                }
            });
            let readers: Vec<_> = (0..1000)
                .map(|_| {
                    let gate = gate.clone();
                    corun::spawn(move || {
                        let mut stream = TcpStream::connect(addr).unwrap();
                        let mut byte = [0u8; 1];
                        stream.read_exact(&mut byte).unwrap();
                        drop(gate.lock().unwrap());
                    })
                })
                .collect();
            drop(held);
            server.join().unwrap();
            for reader in readers {
                reader.join().unwrap();
            }
        },
    );
}

#[test]
fn no_report_for_a_futex_an_os_thread_releases() {
    no_report("no_report_for_a_futex_an_os_thread_releases", || {
        let lock = Arc::new(Mutex::new(0));
        let held = Arc::new(Barrier::new(2));
        let owner = std::thread::spawn({
            let (lock, held) = (lock.clone(), held.clone());
            move || {
                let mut guard = lock.lock().unwrap();
                held.wait();
                // A plain thread, sleeping where the runtime cannot see why.
                std::thread::sleep(Duration::from_secs(2));
                *guard = 1;
            }
        });
        held.wait();
        let waiter = corun::spawn(move || *lock.lock().unwrap());
        assert_eq!(waiter.join().unwrap(), 1);
        owner.join().unwrap();
    });
}

#[test]
fn no_report_for_a_lock_a_sleeping_coroutine_releases() {
    no_report("no_report_for_a_lock_a_sleeping_coroutine_releases", || {
        let lock = Arc::new(Mutex::new(0));
        let held = Arc::new(Barrier::new(2));
        let sleeper = corun::spawn({
            let (lock, held) = (lock.clone(), held.clone());
            move || {
                let mut guard = lock.lock().unwrap();
                held.wait();
                std::thread::sleep(Duration::from_secs(2));
                *guard = 1;
            }
        });
        held.wait();
        let waiter = corun::spawn(move || *lock.lock().unwrap());
        assert_eq!(waiter.join().unwrap(), 1);
        sleeper.join().unwrap();
    });
}

static SIGNALLED: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    SIGNALLED.store(1, Ordering::SeqCst);
    // SAFETY: a futex wake of a static word (async-signal-safe).
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            SIGNALLED.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Waits (no timeout) until `word` is no longer 0.
fn wait_while_zero(word: &AtomicU32, op: libc::c_int) {
    while word.load(Ordering::SeqCst) == 0 {
        // SAFETY: a futex wait on a live word, no timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op,
                0,
                std::ptr::null::<libc::timespec>(),
            )
        };
    }
}

#[test]
fn no_report_for_a_futex_a_signal_handler_wakes() {
    no_report("no_report_for_a_futex_a_signal_handler_wakes", || {
        // SAFETY: installing a plain handler that only touches an atomic and a futex.
        unsafe {
            libc::signal(libc::SIGALRM, on_alarm as *const () as libc::sighandler_t);
            libc::alarm(2);
        }
        let waiter = corun::spawn(|| {
            wait_while_zero(&SIGNALLED, libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG)
        });
        waiter.join().unwrap();
    });
}

#[test]
fn no_report_for_a_shared_futex_another_process_wakes() {
    no_report("no_report_for_a_shared_futex_another_process_wakes", || {
        // SAFETY: a fresh shared anonymous page, used as one futex word by both processes.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        // SAFETY: the page is mapped, aligned and zeroed; both processes use it atomically.
        let word: &'static AtomicU32 = unsafe { &*(page as *const AtomicU32) };
        // SAFETY: the child only sleeps, stores, wakes and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain calls in the forked child, then _exit.
            unsafe {
                libc::sleep(2);
                word.store(1, Ordering::SeqCst);
                libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
                libc::_exit(0);
            }
        }
        let waiter = corun::spawn(move || wait_while_zero(word, libc::FUTEX_WAIT));
        waiter.join().unwrap();
        let mut status = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    });
}
