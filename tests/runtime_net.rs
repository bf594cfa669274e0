//! Sockets under the runtime: plain std networking code inside coroutines, with the hook
//! preloaded. Each test runs in a child process (see `support`).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{join_within, wait_for, Child, Ticker};

const SECOND: Duration = Duration::from_secs(1);

/// The byte `i` of round `round` on connection `conn`: differs per connection and round.
fn pattern(conn: usize, round: usize, i: usize) -> u8 {
    (conn.wrapping_mul(31) ^ round.wrapping_mul(7) ^ i.wrapping_mul(13)) as u8
}

#[test]
fn echo_server_serves_2000_concurrent_clients() {
    const CLIENTS: usize = 2000;
    const ROUNDS: usize = 50;
    Child::new("echo_server_serves_2000_concurrent_clients").run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        // The server: an ordinary std accept loop, one coroutine per connection.
        let server = corun::spawn(move || {
            for _ in 0..CLIENTS {
                let (mut stream, _) = listener.accept().expect("accept failed");
                corun::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => stream.write_all(&buf[..n]).expect("server write failed"),
                            Err(err) => panic!("server read failed: {err}"),
                        }
                    }
                });
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|conn| {
                corun::spawn(move || {
                    let mut stream = TcpStream::connect(addr).expect("connect failed");
                    let mut sent = Vec::new();
                    let mut got = Vec::new();
                    for round in 0..ROUNDS {
                        let len = 1 + (conn * 7 + round * 13) % 300;
                        sent.clear();
                        sent.extend((0..len).map(|i| pattern(conn, round, i)));
                        stream.write_all(&sent).expect("client write failed");
                        got.resize(len, 0);
                        stream.read_exact(&mut got).expect("client read failed");
                        assert!(
                            got == sent,
                            "connection {conn}, round {round}: the echo differs from what was sent"
                        );
                    }
                    ROUNDS
                })
            })
            .collect();
        let mut rounds = 0;
        for client in clients {
            rounds += join_within(client, 50 * SECOND, "an echo client");
        }
        join_within(server, 5 * SECOND, "the accept loop");
        let elapsed = start.elapsed();
        println!("{CLIENTS} clients x {ROUNDS} round trips, every byte checked, in {elapsed:?}");
        assert_eq!(rounds, CLIENTS * ROUNDS);
    });
}

/// Connects to `listener` from the current (plain) thread and accepts: (client, server side).
fn connected_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[test]
fn read_timeout_expires_while_the_worker_runs_others() {
    Child::new("read_timeout_expires_while_the_worker_runs_others")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            // The socket is created inside the coroutine, its timeout set there.
            let reader = corun::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let before = ticks.load(Ordering::Acquire);
                let start = Instant::now();
                let result = stream.read(&mut [0u8; 16]);
                let elapsed = start.elapsed();
                let ticked = ticks.load(Ordering::Acquire) - before;
                (result, elapsed, ticked)
            });
            let (_silent_peer, _) = listener.accept().unwrap();
            let (result, elapsed, ticked) = join_within(reader, 10 * SECOND, "the reader");
            ticker.stop();
            println!("read failed with {result:?} after {elapsed:?}; ticker ticked {ticked} times");
            let err = result.expect_err("a read from a silent peer returned");
            assert!(is_timeout(err.kind()), "unexpected error: {err:?}");
            assert!(
                elapsed >= Duration::from_millis(250) && elapsed < 2 * SECOND,
                "a 300 ms read timeout expired after {elapsed:?}"
            );
            assert!(
                ticked >= 8,
                "the ticker on the same worker ticked only {ticked} times during the read"
            );
        });
}

#[test]
fn write_timeout_expires_while_the_worker_runs_others() {
    Child::new("write_timeout_expires_while_the_worker_runs_others")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            // This socket is made on the plain thread, its timeout set there, and first used
            // inside the coroutine.
            let (stream, _never_reads) = connected_pair(&listener);
            stream
                .set_write_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let writer = corun::spawn(move || {
                let mut stream = stream;
                let chunk = vec![0x5au8; 64 * 1024];
                let mut total = 0usize;
                loop {
                    let before = ticks.load(Ordering::Acquire);
                    let start = Instant::now();
                    match stream.write(&chunk) {
                        Ok(n) => total += n,
                        Err(err) => {
                            let ticked = ticks.load(Ordering::Acquire) - before;
                            return (err, start.elapsed(), ticked, total);
                        }
                    }
                    assert!(
                        total < 512 << 20,
                        "wrote {total} bytes to a peer that never reads without blocking"
                    );
                }
            });
            let (err, elapsed, ticked, total) = join_within(writer, 20 * SECOND, "the writer");
            ticker.stop();
            println!(
                "after {total} bytes, write failed with {err:?} after {elapsed:?}; ticker \
                 ticked {ticked} times"
            );
            assert!(is_timeout(err.kind()), "unexpected error: {err:?}");
            assert!(
                elapsed >= Duration::from_millis(250) && elapsed < 2 * SECOND,
                "a 300 ms write timeout expired after {elapsed:?}"
            );
            assert!(
                ticked >= 8,
                "the ticker on the same worker ticked only {ticked} times during the write"
            );
        });
}

#[test]
fn nonblocking_sockets_say_would_block_and_blocking_ones_wait_again() {
    Child::new("nonblocking_sockets_say_would_block_and_blocking_ones_wait_again").run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let about_to_block = Arc::new(AtomicBool::new(false));
        let flag = about_to_block.clone();
        let coroutine = corun::spawn(move || {
            // accept on a non-blocking listener with nothing pending.
            let own = TcpListener::bind("127.0.0.1:0").unwrap();
            own.set_nonblocking(true).unwrap();
            let start = Instant::now();
            let err = own
                .accept()
                .expect_err("accept with nothing pending succeeded");
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "accept: {err:?}");
            assert!(
                start.elapsed() < Duration::from_millis(100),
                "accept waited"
            );

            // read on a non-blocking stream with nothing to read.
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_nonblocking(true).unwrap();
            let start = Instant::now();
            let err = stream
                .read(&mut [0u8; 16])
                .expect_err("read with nothing to read succeeded");
            assert_eq!(err.kind(), ErrorKind::WouldBlock, "read: {err:?}");
            assert!(start.elapsed() < Duration::from_millis(100), "read waited");

            // Back to blocking: read waits for the data.
            stream.set_nonblocking(false).unwrap();
            flag.store(true, Ordering::Release);
            let start = Instant::now();
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).expect("blocking read failed");
            let waited = start.elapsed();
            assert_eq!(&buf[..n], b"later");

            // And the listener, back to blocking, waits for a connection.
            own.set_nonblocking(false).unwrap();
            let own_addr = own.local_addr().unwrap();
            let connector = corun::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                TcpStream::connect(own_addr).unwrap()
            });
            let start = Instant::now();
            own.accept().expect("blocking accept failed");
            let accept_waited = start.elapsed();
            join_within(connector, 5 * SECOND, "the connector");
            (waited, accept_waited)
        });
        let (mut peer, _) = listener.accept().unwrap();
        wait_for("the reader to go back to blocking", 10 * SECOND, || {
            about_to_block.load(Ordering::Acquire)
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !coroutine.is_finished(),
            "the blocking read returned before any data was sent"
        );
        peer.write_all(b"later").unwrap();
        let (waited, accept_waited) = join_within(coroutine, 10 * SECOND, "the coroutine");
        println!("blocking read waited {waited:?}, blocking accept waited {accept_waited:?}");
        assert!(
            waited >= Duration::from_millis(150),
            "read waited {waited:?}"
        );
        assert!(
            accept_waited >= Duration::from_millis(100),
            "accept waited {accept_waited:?}"
        );
    });
}

/// A free port on 127.0.0.1 that nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    Child::new("connecting_to_a_closed_port_is_refused").run(|| {
        let addr = closed_port();
        let coroutine = corun::spawn(move || {
            let start = Instant::now();
            let plain = TcpStream::connect(addr).map(drop);
            let with_timeout = TcpStream::connect_timeout(&addr, 5 * SECOND).map(drop);
            (plain, with_timeout, start.elapsed())
        });
        let (plain, with_timeout, elapsed) = join_within(coroutine, 10 * SECOND, "the connector");
        println!("connect: {plain:?}; connect_timeout: {with_timeout:?}; in {elapsed:?}");
        let err = plain.expect_err("connect to a closed port succeeded");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "connect: {err:?}");
        let err = with_timeout.expect_err("connect_timeout to a closed port succeeded");
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionRefused,
            "connect_timeout: {err:?}"
        );
        assert!(elapsed < 2 * SECOND, "refusals took {elapsed:?}");
    });
}

/// Makes closing `stream` send a reset instead of a FIN.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn a_reset_from_the_peer_wakes_the_reader_with_connection_reset() {
    Child::new("a_reset_from_the_peer_wakes_the_reader_with_connection_reset").run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let blocking = Arc::new(AtomicBool::new(false));
        let flag = blocking.clone();
        let reader = corun::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            flag.store(true, Ordering::Release);
            stream.read(&mut [0u8; 16])
        });
        let resetter = corun::spawn(move || {
            let (peer, _) = listener.accept().unwrap();
            wait_for("the reader to connect", 10 * SECOND, || {
                blocking.load(Ordering::Acquire)
            });
            // Let the reader block in read first.
            std::thread::sleep(Duration::from_millis(100));
            set_linger_zero(&peer);
            drop(peer);
        });
        join_within(resetter, 10 * SECOND, "the resetting peer");
        let result = join_within(reader, 5 * SECOND, "the reader");
        println!("read after the peer's reset: {result:?}");
        let err = result.expect_err("read after a reset succeeded");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");
    });
}

/// Closes `fd` with libc's `close` (the hooked one, under the runtime).
fn close_fd(fd: RawFd) {
    // SAFETY: the callers own `fd` and never use or close it again.
    let rc = unsafe { libc::close(fd) };
    assert_eq!(rc, 0, "close({fd}): {}", std::io::Error::last_os_error());
}

#[test]
fn closing_a_waited_on_fd_wakes_the_waiter_and_a_reused_number_gets_no_stale_wakeup() {
    const NAME: &str =
        "closing_a_waited_on_fd_wakes_the_waiter_and_a_reused_number_gets_no_stale_wakeup";
    Child::new(NAME).run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();

        // Part 1: coroutine A blocks reading its socket; this thread closes that fd.
        let old_fd = Arc::new(AtomicI32::new(-1));
        let slot = old_fd.clone();
        let a = corun::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            slot.store(stream.as_raw_fd(), Ordering::Release);
            let result = stream.read(&mut [0u8; 16]);
            let returned = Instant::now();
            // The fd was closed behind the stream's back: forget it, so that dropping the
            // stream does not close a number that may belong to someone else by now.
            let _ = stream.into_raw_fd();
            (result, returned)
        });
        let (mut old_peer, _) = listener.accept().unwrap();
        wait_for("A to connect", 10 * SECOND, || {
            old_fd.load(Ordering::Acquire) >= 0
        });
        let fd = old_fd.load(Ordering::Acquire);
        std::thread::sleep(Duration::from_millis(100)); // A blocks in read
        assert!(!a.is_finished(), "A's read returned with nothing sent");
        // A second descriptor keeps the old connection open after `fd` is closed, so the old
        // socket can still become readable (and any registration left behind could fire).
        // SAFETY: `fd` is open (A's socket); the duplicate is owned by `old_dup` below.
        let dup = unsafe { libc::dup(fd) };
        assert!(dup >= 0, "dup: {}", std::io::Error::last_os_error());
        // SAFETY: `dup` is a fresh descriptor nothing else owns.
        let mut old_dup = unsafe { TcpStream::from_raw_fd(dup) };
        let closed_at = Instant::now();
        close_fd(fd);
        let (result, returned) = join_within(a, SECOND, "A to wake after its fd was closed");
        let woke_after = returned.duration_since(closed_at);
        println!("A's read after close: {result:?}, {woke_after:?} after the close");
        let err = result.expect_err("A's read on a closed fd succeeded");
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EBADF),
            "A's read on a closed fd: {err:?}"
        );
        assert!(woke_after < SECOND, "A woke {woke_after:?} after the close");

        // Part 2: a new socket gets the same number; coroutine C blocks reading it.
        let new_local = Arc::new(std::sync::OnceLock::new());
        let reported = new_local.clone();
        let c = corun::spawn(move || {
            let mut fillers = Vec::new(); // take any lower free numbers first
            let mut stream = loop {
                let stream = TcpStream::connect(addr).unwrap();
                if stream.as_raw_fd() == fd || fillers.len() >= 16 {
                    break stream;
                }
                fillers.push(stream);
            };
            assert_eq!(
                stream.as_raw_fd(),
                fd,
                "no new socket got the closed fd number {fd}"
            );
            reported.set(stream.local_addr().unwrap()).unwrap();
            let mut buf = [0u8; 16];
            let n = stream.read(&mut buf).expect("C's read failed");
            let returned = Instant::now();
            drop(fillers);
            (buf[..n].to_vec(), returned)
        });
        wait_for("C to connect", 10 * SECOND, || {
            new_local.get().is_some() || c.is_finished()
        });
        if c.is_finished() {
            join_within(c, SECOND, "C"); // re-raises C's failure
            unreachable!("C finished without reading");
        }
        // Accept (only now, so that no accepted socket takes the number meant for C).
        let mut new_peer = loop {
            let (peer, from) = listener.accept().unwrap();
            if Some(&from) == new_local.get() {
                break peer;
            }
        };
        std::thread::sleep(Duration::from_millis(100)); // C blocks in read

        // Activity on the old connection must not wake C.
        old_peer.write_all(b"OLD").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(old_peer);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !c.is_finished(),
            "C's read returned after activity on the old connection only"
        );
        // The old connection still works through its duplicate.
        let mut old = Vec::new();
        old_dup.read_to_end(&mut old).unwrap();
        assert_eq!(old, b"OLD");
        drop(old_dup);

        let sent_at = Instant::now();
        new_peer.write_all(b"NEW").unwrap();
        let (got, returned) = join_within(c, 5 * SECOND, "C to read the new peer's data");
        println!(
            "C read {:?}, {:?} after the new peer sent it",
            String::from_utf8_lossy(&got),
            returned.duration_since(sent_at)
        );
        assert_eq!(
            got, b"NEW",
            "C read something other than the new peer's data"
        );
    });
}

#[test]
fn closing_from_another_coroutine_on_the_same_worker_wakes_the_waiter() {
    Child::new("closing_from_another_coroutine_on_the_same_worker_wakes_the_waiter")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let fd = Arc::new(AtomicI32::new(-1));
            let slot = fd.clone();
            let reader = corun::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                slot.store(stream.as_raw_fd(), Ordering::Release);
                let result = stream.read(&mut [0u8; 16]);
                let returned = Instant::now();
                let _ = stream.into_raw_fd(); // closed by the other coroutine
                (result, returned)
            });
            let (_peer, _) = listener.accept().unwrap();
            let closer = corun::spawn(move || {
                wait_for("the reader to connect", 10 * SECOND, || {
                    fd.load(Ordering::Acquire) >= 0
                });
                std::thread::sleep(Duration::from_millis(100)); // the reader blocks in read
                let closed_at = Instant::now();
                close_fd(fd.load(Ordering::Acquire));
                closed_at
            });
            let closed_at = join_within(closer, 10 * SECOND, "the closing coroutine");
            let (result, returned) = join_within(reader, SECOND, "the reader to wake");
            let woke_after = returned.duration_since(closed_at);
            println!("read after close: {result:?}, {woke_after:?} after the close");
            let err = result.expect_err("a read on a closed fd succeeded");
            assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err:?}");
            assert!(woke_after < SECOND, "woke {woke_after:?} after the close");
        });
}
