//! Interrupted calls: each blocking call, with a handler for SIGUSR1 installed with
//! `SA_RESTART` or without, while a helper thread aims the signal at the caller
//! (`pthread_kill` of its `pthread_self()`) and, a little later, makes the call able to finish.
//! What the call returns (`EINTR`, or its result after a restart), what it wrote back
//! (`nanosleep`'s `rem`, `sleep`'s seconds left) and how often the handler ran are compared.

use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use libc::c_int;

use super::cases::{CaseFn, Report};
use super::fixtures::Fixture;

/// When the helper sends the signal, and when it makes the call able to finish.
const SIGNAL_AFTER: Duration = Duration::from_millis(50);
const READY_AFTER: Duration = Duration::from_millis(70);

static HITS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_signal(_: c_int) {
    HITS.fetch_add(1, Ordering::SeqCst);
}

/// Installs `on_signal` for SIGUSR1 (`SA_RESTART` or not), or ignores the signal.
fn handle(handler: Option<bool>) {
    // SAFETY: a zeroed sigaction with a plain handler (or SIG_IGN) and an empty mask is valid.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = match handler {
            Some(_) => on_signal as *const () as usize,
            None => libc::SIG_IGN,
        };
        act.sa_flags = if handler == Some(true) {
            libc::SA_RESTART
        } else {
            0
        };
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut());
    }
}

/// What a blocking call works on: two fds (and a third, a futex word's index, a pid …).
#[derive(Clone, Copy, Default)]
struct Setup {
    a: c_int,
    b: c_int,
    c: c_int,
}

/// One blocking call: what it needs, the call, what lets it finish.
struct Blocking {
    name: &'static str,
    setup: fn() -> Setup,
    call: fn(&Setup, &mut Report),
    ready: fn(&Setup),
}

fn pipe() -> Setup {
    let mut fds = [0; 2];
    // SAFETY: room for two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    Setup {
        a: fds[0],
        b: fds[1],
        c: -1,
    }
}

/// A pipe whose write end is full.
fn full_pipe() -> Setup {
    let s = pipe();
    // SAFETY: F_GETFL/F_SETFL on our own pipe; writes from a local buffer.
    unsafe {
        let flags = libc::fcntl(s.b, libc::F_GETFL);
        libc::fcntl(s.b, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let chunk = [0u8; 4096];
        while libc::write(s.b, chunk.as_ptr().cast(), chunk.len()) > 0 {}
        libc::fcntl(s.b, libc::F_SETFL, flags);
    }
    s
}

fn unix_pair() -> Setup {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    Setup {
        a: a.into_raw_fd(),
        b: b.into_raw_fd(),
        c: -1,
    }
}

/// A unix pair whose receiving end has a 1 s `SO_RCVTIMEO`.
fn unix_pair_with_timeout() -> Setup {
    let s = unix_pair();
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: a valid timeval of the size given.
    unsafe {
        libc::setsockopt(
            s.a,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    s
}

/// A loopback TCP connection: `a` the accepted end, `b` the client.
fn tcp_pair() -> Setup {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    Setup {
        a: server.into_raw_fd(),
        b: client.into_raw_fd(),
        c: -1,
    }
}

/// A TCP listener (`a`) and its port (`c`).
fn tcp_listener() -> Setup {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    Setup {
        a: listener.into_raw_fd(),
        b: -1,
        c: c_int::from(port),
    }
}

/// An epoll fd (`a`) watching a pipe's read end (`c`), whose write end is `b`.
fn epoll_on_pipe() -> Setup {
    let p = pipe();
    // SAFETY: plain epoll calls on fds of ours.
    let epfd = unsafe { libc::epoll_create1(0) };
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: as above.
    unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, p.a, &mut event) };
    Setup {
        a: epfd,
        b: p.b,
        c: p.a,
    }
}

/// A child process that exits after 120 ms (`c`: its pid). The case's `waitpid` reaps it.
#[allow(clippy::zombie_processes)]
fn child() -> Setup {
    let child = std::process::Command::new("sleep")
        .arg("0.12")
        .spawn()
        .unwrap();
    Setup {
        a: -1,
        b: -1,
        c: child.id() as c_int,
    }
}

fn nothing() -> Setup {
    Setup {
        a: -1,
        b: -1,
        c: -1,
    }
}

fn write_byte(s: &Setup) {
    // SAFETY: a one-byte buffer.
    unsafe { libc::write(s.b, b"x".as_ptr().cast(), 1) };
}

fn drain(s: &Setup) {
    let mut buf = vec![0u8; 65536];
    // SAFETY: a buffer of the size given.
    unsafe { libc::read(s.a, buf.as_mut_ptr().cast(), buf.len()) };
}

fn connect_client(s: &Setup) {
    if let Ok(stream) = std::net::TcpStream::connect(("127.0.0.1", s.c as u16)) {
        std::mem::forget(stream); // stays connected until the case closes the listener's side
    }
}

/// The futex word of the futex cases (one case runs at a time).
static WORD: AtomicU32 = AtomicU32::new(0);

fn wake_word(_: &Setup) {
    WORD.store(1, Ordering::SeqCst);
    // SAFETY: a live futex word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            WORD.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

fn no_ready(_: &Setup) {}

fn read_one(s: &Setup, r: &mut Report) {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer.
    r.call("read", false, || unsafe {
        libc::read(s.a, (&mut byte as *mut u8).cast(), 1)
    });
}

fn recv_one(s: &Setup, r: &mut Report) {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer.
    r.call("recv", false, || unsafe {
        libc::recv(s.a, (&mut byte as *mut u8).cast(), 1, 0)
    });
}

fn timespec_ms(ms: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: ms / 1000,
        tv_nsec: (ms % 1000) * 1_000_000,
    }
}

/// Whether an interrupted sleep's `rem` is plausible: more than nothing, less than asked.
fn rem_note(r: &mut Report, rem: &libc::timespec, asked_ms: i64) {
    let ns = rem.tv_sec * 1_000_000_000 + rem.tv_nsec;
    r.note(
        "rem",
        if ns == 0 {
            "0"
        } else if ns < asked_ms * 1_000_000 {
            "some"
        } else {
            "all"
        },
    );
}

const CALLS: &[Blocking] = &[
    Blocking {
        name: "read-pipe",
        setup: pipe,
        call: read_one,
        ready: write_byte,
    },
    Blocking {
        name: "readv-pipe",
        setup: pipe,
        call: |s, r| {
            let mut byte = 0u8;
            let iov = libc::iovec {
                iov_base: (&mut byte as *mut u8).cast(),
                iov_len: 1,
            };
            // SAFETY: one iovec over a one-byte buffer.
            r.call("readv", false, || unsafe { libc::readv(s.a, &iov, 1) });
        },
        ready: write_byte,
    },
    Blocking {
        name: "write-full-pipe",
        setup: full_pipe,
        call: |s, r| {
            // SAFETY: a one-byte buffer.
            r.call("write", false, || unsafe {
                libc::write(s.b, b"x".as_ptr().cast(), 1)
            });
        },
        ready: drain,
    },
    Blocking {
        name: "recv-unix",
        setup: unix_pair,
        call: recv_one,
        ready: write_byte,
    },
    Blocking {
        name: "recv-unix-rcvtimeo",
        setup: unix_pair_with_timeout,
        call: recv_one,
        ready: write_byte,
    },
    Blocking {
        name: "recv-tcp",
        setup: tcp_pair,
        call: recv_one,
        ready: write_byte,
    },
    Blocking {
        name: "accept-tcp",
        setup: tcp_listener,
        call: |s, r| {
            // SAFETY: null address out-pointers are allowed.
            let fd = r.call("accept", true, || unsafe {
                libc::accept(s.a, std::ptr::null_mut(), std::ptr::null_mut()) as isize
            });
            if fd >= 0 {
                // SAFETY: the fd accept just returned.
                unsafe { libc::close(fd as c_int) };
            }
        },
        ready: connect_client,
    },
    Blocking {
        name: "poll-pipe",
        setup: pipe,
        call: |s, r| {
            let mut pfd = libc::pollfd {
                fd: s.a,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            r.call("poll", false, || unsafe { libc::poll(&mut pfd, 1, 2000) }
                as isize);
        },
        ready: write_byte,
    },
    Blocking {
        name: "select-pipe",
        setup: pipe,
        call: |s, r| {
            // SAFETY: an all-zero fd_set is empty; FD_SET of an fd below FD_SETSIZE.
            let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            unsafe { libc::FD_SET(s.a, &mut set) };
            let mut tv = libc::timeval {
                tv_sec: 2,
                tv_usec: 0,
            };
            // SAFETY: a valid set and timeout.
            r.call("select", false, || unsafe {
                libc::select(
                    s.a + 1,
                    &mut set,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    &mut tv,
                )
            } as isize);
            r.note("left", if tv.tv_sec < 2 { "less" } else { "all" });
        },
        ready: write_byte,
    },
    Blocking {
        name: "epoll_wait-pipe",
        setup: epoll_on_pipe,
        call: |s, r| {
            let mut event = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: room for one event.
            r.call(
                "epoll_wait",
                false,
                || unsafe { libc::epoll_wait(s.a, &mut event, 1, 2000) } as isize,
            );
        },
        ready: write_byte,
    },
    Blocking {
        name: "nanosleep",
        setup: nothing,
        call: |_, r| {
            let req = timespec_ms(400);
            let mut rem = timespec_ms(0);
            // SAFETY: valid timespecs.
            r.call(
                "nanosleep",
                false,
                || unsafe { libc::nanosleep(&req, &mut rem) } as isize,
            );
            rem_note(r, &rem, 400);
        },
        ready: no_ready,
    },
    Blocking {
        name: "clock_nanosleep",
        setup: nothing,
        call: |_, r| {
            let req = timespec_ms(400);
            let mut rem = timespec_ms(0);
            // SAFETY: valid timespecs.
            r.call("clock_nanosleep", false, || unsafe {
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &req, &mut rem)
            } as isize);
            rem_note(r, &rem, 400);
        },
        ready: no_ready,
    },
    Blocking {
        name: "usleep",
        setup: nothing,
        call: |_, r| {
            // SAFETY: no preconditions.
            r.call("usleep", false, || unsafe { libc::usleep(400_000) }
                as isize);
        },
        ready: no_ready,
    },
    Blocking {
        name: "sleep",
        setup: nothing,
        call: |_, r| {
            // SAFETY: no preconditions.
            r.call("sleep", false, || unsafe { libc::sleep(2) } as isize);
        },
        ready: no_ready,
    },
    Blocking {
        name: "waitpid",
        setup: child,
        call: |s, r| {
            let mut status = 0;
            // SAFETY: a child of ours and a valid status pointer.
            r.call("waitpid", true, || unsafe {
                libc::waitpid(s.c, &mut status, 0) as isize
            });
        },
        ready: no_ready,
    },
    Blocking {
        name: "futex-wait",
        setup: || {
            WORD.store(0, Ordering::SeqCst);
            nothing()
        },
        call: |_, r| {
            // SAFETY: a live futex word holding the expected value; no timeout.
            r.call("futex", false, || unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    WORD.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    0,
                    std::ptr::null::<libc::timespec>(),
                ) as isize
            });
        },
        ready: wake_word,
    },
    Blocking {
        name: "futex-wait-timed",
        setup: || {
            WORD.store(0, Ordering::SeqCst);
            nothing()
        },
        call: |_, r| {
            let timeout = timespec_ms(400);
            // SAFETY: a live futex word holding the expected value; a valid timeout.
            r.call("futex", false, || unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    WORD.as_ptr(),
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    0,
                    &timeout,
                ) as isize
            });
        },
        ready: wake_word,
    },
];

/// Runs blocking call `CALL` with a handler that restarts calls (`RESTART`) or not, the signal
/// aimed at the caller while it blocks.
fn interrupted<const CALL: usize, const RESTART: bool>(_: Option<&Fixture>, r: &mut Report) {
    let blocking = &CALLS[CALL];
    handle(Some(RESTART));
    HITS.store(0, Ordering::SeqCst);
    let setup = (blocking.setup)();
    // SAFETY: no preconditions.
    let target = unsafe { libc::pthread_self() } as usize;
    let helper = std::thread::spawn(move || {
        std::thread::sleep(SIGNAL_AFTER);
        // SAFETY: the caller, blocked (or about to be) in its call; SIGUSR1 has a handler.
        unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR1) };
        std::thread::sleep(READY_AFTER);
        (blocking.ready)(&setup);
    });
    (blocking.call)(&setup, r);
    helper.join().unwrap();
    r.note("handler", HITS.load(Ordering::SeqCst));
    for fd in [setup.a, setup.b] {
        if fd >= 0 {
            // SAFETY: fds this case opened.
            unsafe { libc::close(fd) };
        }
    }
    if blocking.name == "epoll_wait-pipe" {
        // SAFETY: the pipe's read end, opened by this case.
        unsafe { libc::close(setup.c) };
    }
    if blocking.name == "waitpid" {
        // Reap it if the call was interrupted.
        // SAFETY: our child; a null status is allowed.
        unsafe { libc::waitpid(setup.c, std::ptr::null_mut(), 0) };
    }
    handle(None);
}

macro_rules! each_call {
    ($($i:literal)*) => {
        &[$(
            ($i, interrupted::<$i, false> as CaseFn, interrupted::<$i, true> as CaseFn),
        )*]
    };
}

/// Every blocking call, with each kind of handler: (name, case).
pub fn all() -> Vec<(String, CaseFn)> {
    let cases: &[(usize, CaseFn, CaseFn)] = each_call!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
    assert_eq!(cases.len(), CALLS.len(), "each_call! must list every call");
    let mut all = Vec::new();
    for &(i, interrupting, restarting) in cases {
        all.push((
            format!("signal-{}-interrupting", CALLS[i].name),
            interrupting,
        ));
        all.push((format!("signal-{}-sa_restart", CALLS[i].name), restarting));
    }
    all
}
