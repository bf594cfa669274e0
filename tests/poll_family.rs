//! The poll family under the runtime: `poll`, `ppoll`, `select`, `pselect`, `epoll_wait` and
//! `epoll_pwait` called inside a coroutine suspend it until an fd is ready or the timeout
//! passes. Every test runs on one worker with a ticker coroutine, which can only keep ticking if
//! the waiting coroutine does not block the thread. Each test runs in a child process with the
//! hook preloaded (see `support`).

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{join_within, Child, Ticker};

const SECOND: Duration = Duration::from_secs(1);
const TIMEOUT_MS: u64 = 200;
const WRITE_AFTER_MS: u64 = 100;

/// A socket pair and a pipe: the fds a test waits on, and the other ends to make them ready.
struct Fds {
    sock: UnixStream,
    sock_peer: UnixStream,
    pipe_read: File,
    pipe_write: File,
}

impl Fds {
    fn new() -> Fds {
        let (sock, sock_peer) = UnixStream::pair().expect("socketpair failed");
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe writes.
        let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
        assert_eq!(rc, 0, "pipe failed: {}", std::io::Error::last_os_error());
        // SAFETY: pipe just opened both fds; each File owns one.
        let (pipe_read, pipe_write) =
            unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        Fds {
            sock,
            sock_peer,
            pipe_read,
            pipe_write,
        }
    }

    fn sock_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn pipe_fd(&self) -> RawFd {
        self.pipe_read.as_raw_fd()
    }

    /// The read ends waited for readability.
    fn pollfds(&self) -> [libc::pollfd; 2] {
        [
            libc::pollfd {
                fd: self.sock_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.pipe_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ]
    }

    /// Reads back what was written to the read ends, so they are not ready any more.
    fn drain(&mut self, sock: bool, pipe: bool) {
        let mut buf = [0u8; 16];
        if sock {
            let n = self.sock.read(&mut buf).expect("socket read failed");
            assert!(n > 0);
        }
        if pipe {
            let n = self.pipe_read.read(&mut buf).expect("pipe read failed");
            assert!(n > 0);
        }
    }
}

/// Spawns a coroutine (on the same worker) that sleeps `after_ms` and writes a byte to each of
/// `sock` and `pipe`.
fn write_later(
    sock: Option<UnixStream>,
    pipe: Option<File>,
    after_ms: u64,
) -> corun::JoinHandle<()> {
    corun::spawn(move || {
        std::thread::sleep(Duration::from_millis(after_ms));
        if let Some(mut sock) = sock {
            sock.write_all(b"s").expect("socket write failed");
        }
        if let Some(mut pipe) = pipe {
            pipe.write_all(b"p").expect("pipe write failed");
        }
    })
}

/// Ticks counted between `new` and `ticked`.
struct TickWindow {
    counter: Arc<AtomicU64>,
    before: u64,
}

impl TickWindow {
    fn new(counter: &Arc<AtomicU64>) -> TickWindow {
        TickWindow {
            counter: counter.clone(),
            before: counter.load(Ordering::SeqCst),
        }
    }

    fn ticked(&self) -> u64 {
        self.counter.load(Ordering::SeqCst) - self.before
    }
}

/// Checks a wait that should have timed out after `TIMEOUT_MS` with the ticker running.
fn check_timed_out(what: &str, result: i32, waited: Duration, ticked: u64) {
    println!("{what}: timeout of {TIMEOUT_MS} ms gave {result} after {waited:?}, {ticked} ticks");
    assert_eq!(result, 0, "{what} with nothing ready returned {result}");
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS - 10),
        "{what} with a {TIMEOUT_MS} ms timeout returned after {waited:?}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "{what} with a {TIMEOUT_MS} ms timeout returned after {waited:?}"
    );
    assert!(
        ticked >= 5,
        "the ticker ticked {ticked} times while {what} waited {waited:?} on its worker"
    );
}

/// Checks a wait that should have returned when a write came `WRITE_AFTER_MS` in, long before
/// its 5 s timeout.
fn check_prompt(what: &str, result: i32, waited: Duration, ticked: u64) {
    println!("{what}: readiness after {WRITE_AFTER_MS} ms gave {result} after {waited:?}, {ticked} ticks");
    assert_eq!(result, 1, "{what} returned {result}, expected one ready fd");
    assert!(
        waited >= Duration::from_millis(WRITE_AFTER_MS - 10),
        "{what} returned after {waited:?}, before anything was written"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "{what} took {waited:?} to see a write made after {WRITE_AFTER_MS} ms"
    );
    assert!(
        ticked >= 3,
        "the ticker ticked {ticked} times while {what} waited {waited:?} on its worker"
    );
}

/// `poll` (or `ppoll`, with `use_ppoll`) on a socket and a pipe: timeout, then the pipe made
/// ready, then the socket.
fn poll_test(use_ppoll: bool) {
    let what = if use_ppoll { "ppoll" } else { "poll" };
    let ticker = Ticker::start(Duration::from_millis(10));
    let ticks = ticker.counter();
    let body = corun::spawn(move || {
        let call = |list: &mut [libc::pollfd; 2], timeout_ms: u64| -> i32 {
            if use_ppoll {
                let ts = libc::timespec {
                    tv_sec: (timeout_ms / 1000) as libc::time_t,
                    tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
                };
                // SAFETY: two valid pollfds, a valid timespec, no signal mask.
                unsafe { libc::ppoll(list.as_mut_ptr(), 2, &ts, std::ptr::null()) }
            } else {
                // SAFETY: two valid pollfds.
                unsafe { libc::poll(list.as_mut_ptr(), 2, timeout_ms as libc::c_int) }
            }
        };
        let mut fds = Fds::new();

        // Nothing ready: times out.
        let mut list = fds.pollfds();
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let n = call(&mut list, TIMEOUT_MS);
        check_timed_out(what, n, start.elapsed(), window.ticked());
        assert_eq!((list[0].revents, list[1].revents), (0, 0));

        // The pipe becomes readable.
        let writer = write_later(
            None,
            Some(fds.pipe_write.try_clone().unwrap()),
            WRITE_AFTER_MS,
        );
        let mut list = fds.pollfds();
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let n = call(&mut list, 5000);
        check_prompt(
            &format!("{what} (pipe)"),
            n,
            start.elapsed(),
            window.ticked(),
        );
        assert_eq!(list[0].revents, 0, "the socket was reported ready");
        assert_eq!(list[1].revents, libc::POLLIN, "the pipe's revents");
        join_within(writer, 5 * SECOND, "the pipe writer");
        fds.drain(false, true);

        // The socket becomes readable.
        let writer = write_later(
            Some(fds.sock_peer.try_clone().unwrap()),
            None,
            WRITE_AFTER_MS,
        );
        let mut list = fds.pollfds();
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let n = call(&mut list, 5000);
        check_prompt(
            &format!("{what} (socket)"),
            n,
            start.elapsed(),
            window.ticked(),
        );
        assert_eq!(list[0].revents, libc::POLLIN, "the socket's revents");
        assert_eq!(list[1].revents, 0, "the pipe was reported ready");
        join_within(writer, 5 * SECOND, "the socket writer");
        fds.drain(true, false);

        // Already ready: returns at once.
        fds.sock_peer.write_all(b"x").unwrap();
        let mut list = fds.pollfds();
        let start = Instant::now();
        let n = call(&mut list, 5000);
        let took = start.elapsed();
        assert_eq!(n, 1);
        assert_eq!(list[0].revents, libc::POLLIN);
        assert!(
            took < Duration::from_millis(500),
            "{what} of a ready fd took {took:?}"
        );
    });
    join_within(body, 20 * SECOND, what);
    ticker.stop();
}

#[test]
fn poll_waits_in_a_coroutine() {
    Child::new("poll_waits_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| poll_test(false));
}

#[test]
fn ppoll_waits_in_a_coroutine() {
    Child::new("ppoll_waits_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| poll_test(true));
}

/// An fd_set holding `fds`.
fn fd_set_of(fds: &[RawFd]) -> libc::fd_set {
    // SAFETY: an all-zero fd_set is a valid (empty) one; FD_ZERO makes sure.
    let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd_set, and fds below FD_SETSIZE (asserted).
    unsafe {
        libc::FD_ZERO(&mut set);
        for &fd in fds {
            assert!((fd as usize) < libc::FD_SETSIZE);
            libc::FD_SET(fd, &mut set);
        }
    }
    set
}

fn is_set(set: &libc::fd_set, fd: RawFd) -> bool {
    // SAFETY: a valid fd_set; fd < FD_SETSIZE.
    unsafe { libc::FD_ISSET(fd, set) }
}

/// `select` (or `pselect`, with `use_pselect`) on a socket and a pipe: timeout, then the pipe
/// made ready, then the socket. `select` must also update its timeval to the time left.
fn select_test(use_pselect: bool) {
    let what = if use_pselect { "pselect" } else { "select" };
    let ticker = Ticker::start(Duration::from_millis(10));
    let ticks = ticker.counter();
    let body = corun::spawn(move || {
        let mut fds = Fds::new();
        let (sock, pipe) = (fds.sock_fd(), fds.pipe_fd());
        let nfds = sock.max(pipe) + 1;
        // Returns the result and, for select, the time left in its timeval (pselect's timespec
        // is const).
        let call = |read: &mut libc::fd_set, timeout_ms: u64| -> (i32, Duration) {
            if use_pselect {
                let ts = libc::timespec {
                    tv_sec: (timeout_ms / 1000) as libc::time_t,
                    tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
                };
                // SAFETY: a valid read set, null other sets, a valid timespec, no mask.
                let n = unsafe {
                    libc::pselect(
                        nfds,
                        read,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        &ts,
                        std::ptr::null(),
                    )
                };
                (n, Duration::ZERO)
            } else {
                let mut tv = libc::timeval {
                    tv_sec: (timeout_ms / 1000) as libc::time_t,
                    tv_usec: ((timeout_ms % 1000) * 1000) as libc::suseconds_t,
                };
                // SAFETY: a valid read set, null other sets, a valid timeval.
                let n = unsafe {
                    libc::select(
                        nfds,
                        read,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        &mut tv,
                    )
                };
                let left = Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
                (n, left)
            }
        };

        // Nothing ready: times out, clears the set, and (select) leaves no time.
        let mut read = fd_set_of(&[sock, pipe]);
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let (n, left) = call(&mut read, TIMEOUT_MS);
        check_timed_out(what, n, start.elapsed(), window.ticked());
        assert!(
            !is_set(&read, sock) && !is_set(&read, pipe),
            "{what} left bits set"
        );
        if !use_pselect {
            assert!(
                left < Duration::from_millis(20),
                "select timed out with {left:?} left in its timeval"
            );
        }

        // The pipe becomes readable.
        let writer = write_later(
            None,
            Some(fds.pipe_write.try_clone().unwrap()),
            WRITE_AFTER_MS,
        );
        let mut read = fd_set_of(&[sock, pipe]);
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let (n, left) = call(&mut read, 5000);
        let waited = start.elapsed();
        check_prompt(&format!("{what} (pipe)"), n, waited, window.ticked());
        assert!(is_set(&read, pipe), "{what} did not mark the pipe");
        assert!(!is_set(&read, sock), "{what} marked the socket");
        if !use_pselect {
            // About 5 s - waited is left.
            let expected = Duration::from_secs(5) - waited;
            println!("select left {left:?} of 5 s after {waited:?}");
            assert!(
                left <= Duration::from_millis(4950),
                "select left {left:?} of 5 s after waiting {waited:?}"
            );
            assert!(
                left + Duration::from_millis(200) >= expected,
                "select left {left:?} of 5 s after waiting {waited:?}"
            );
        }
        join_within(writer, 5 * SECOND, "the pipe writer");
        fds.drain(false, true);

        // The socket becomes readable.
        let writer = write_later(
            Some(fds.sock_peer.try_clone().unwrap()),
            None,
            WRITE_AFTER_MS,
        );
        let mut read = fd_set_of(&[sock, pipe]);
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let (n, _) = call(&mut read, 5000);
        check_prompt(
            &format!("{what} (socket)"),
            n,
            start.elapsed(),
            window.ticked(),
        );
        assert!(is_set(&read, sock), "{what} did not mark the socket");
        assert!(!is_set(&read, pipe), "{what} marked the pipe");
        join_within(writer, 5 * SECOND, "the socket writer");
        fds.drain(true, false);
    });
    join_within(body, 20 * SECOND, what);
    ticker.stop();
}

#[test]
fn select_waits_in_a_coroutine() {
    Child::new("select_waits_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| select_test(false));
}

#[test]
fn pselect_waits_in_a_coroutine() {
    Child::new("pselect_waits_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| select_test(true));
}

/// `epoll_wait` (or `epoll_pwait`) on a user's epoll fd watching a socket: timeout, then the
/// socket made ready.
fn epoll_test(use_pwait: bool) {
    const TOKEN: u64 = 0x5eed_1234;
    let what = if use_pwait {
        "epoll_pwait"
    } else {
        "epoll_wait"
    };
    let ticker = Ticker::start(Duration::from_millis(10));
    let ticks = ticker.counter();
    let body = corun::spawn(move || {
        let (mut sock, peer) = UnixStream::pair().expect("socketpair failed");
        // SAFETY: plain epoll_create1.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            epfd >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: epoll_create1 just returned this fd; the File closes it.
        let _epoll = unsafe { File::from_raw_fd(epfd) };
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: TOKEN,
        };
        // SAFETY: valid fds and event.
        let rc =
            unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut event) };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        let call = |events: &mut [libc::epoll_event; 4], timeout_ms: i32| -> i32 {
            if use_pwait {
                // SAFETY: a valid epoll fd and buffer of 4 events; no signal mask.
                unsafe {
                    libc::epoll_pwait(epfd, events.as_mut_ptr(), 4, timeout_ms, std::ptr::null())
                }
            } else {
                // SAFETY: a valid epoll fd and buffer of 4 events.
                unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), 4, timeout_ms) }
            }
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];

        // Nothing happens: times out.
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let n = call(&mut events, TIMEOUT_MS as i32);
        check_timed_out(what, n, start.elapsed(), window.ticked());

        // The socket becomes readable.
        let writer = write_later(Some(peer.try_clone().unwrap()), None, WRITE_AFTER_MS);
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let n = call(&mut events, 5000);
        check_prompt(what, n, start.elapsed(), window.ticked());
        let (got_events, got_token) = (events[0].events, events[0].u64);
        assert_eq!(got_token, TOKEN, "{what} returned another event's data");
        assert!(
            got_events & libc::EPOLLIN as u32 != 0,
            "{what} returned events {got_events:#x} without EPOLLIN"
        );
        join_within(writer, 5 * SECOND, "the socket writer");
        let mut buf = [0u8; 4];
        assert_eq!(sock.read(&mut buf).unwrap(), 1);

        // Level-triggered and drained: times out again.
        let window = TickWindow::new(&ticks);
        let start = Instant::now();
        let n = call(&mut events, TIMEOUT_MS as i32);
        check_timed_out(what, n, start.elapsed(), window.ticked());
        drop(peer);
    });
    join_within(body, 20 * SECOND, what);
    ticker.stop();
}

#[test]
fn epoll_wait_waits_in_a_coroutine() {
    Child::new("epoll_wait_waits_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| epoll_test(false));
}

#[test]
fn epoll_pwait_waits_in_a_coroutine() {
    Child::new("epoll_pwait_waits_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| epoll_test(true));
}
