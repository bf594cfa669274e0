//! Outside a coroutine, a preloaded process behaves as without the hook: plain threads sleep,
//! block in socket calls and see their own non-blocking settings exactly as libc gives them,
//! even on sockets a coroutine used first. Each test runs in a child process with the hook
//! preloaded and the runtime started (see `support`).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use support::{join_within, Child};

const SECOND: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Whether the kernel-visible-to-the-user `O_NONBLOCK` flag is set (through the hooked fcntl).
fn nonblocking_flag(stream: &impl AsRawFd) -> bool {
    // SAFETY: F_GETFL on an open fd has no other preconditions.
    let flags = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0, "F_GETFL: {}", std::io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

/// Sends `data` on `stream` from a new plain thread after `delay`.
fn send_later(
    mut stream: TcpStream,
    delay: Duration,
    data: &'static [u8],
) -> thread::JoinHandle<TcpStream> {
    thread::spawn(move || {
        thread::sleep(delay);
        stream.write_all(data).unwrap();
        stream
    })
}

/// Reads from `stream` on the current (plain) thread, expecting it to block about `delay`
/// until `expected` arrives.
fn assert_read_blocks_until_data(stream: &mut TcpStream, delay: Duration, expected: &[u8]) {
    let start = Instant::now();
    let mut buf = vec![0u8; expected.len()];
    stream.read_exact(&mut buf).expect("blocking read failed");
    let waited = start.elapsed();
    assert_eq!(buf, expected);
    assert!(
        waited >= delay - 50 * MS,
        "a blocking read on a plain thread returned after {waited:?}, before the data was sent \
         (after {delay:?})"
    );
}

/// Checks non-blocking and blocking behaviour, a read timeout and a large blocking write on a
/// plain thread.
fn check_plain_thread_semantics(mut stream: TcpStream, peer: TcpStream) {
    assert!(
        !nonblocking_flag(&stream),
        "a blocking socket reports O_NONBLOCK"
    );

    // Non-blocking: WouldBlock at once.
    stream.set_nonblocking(true).unwrap();
    assert!(nonblocking_flag(&stream));
    let start = Instant::now();
    let err = stream
        .read(&mut [0u8; 8])
        .expect_err("read with no data succeeded");
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err:?}");
    assert!(start.elapsed() < 100 * MS, "a non-blocking read waited");

    // Blocking again: the read waits for the data.
    stream.set_nonblocking(false).unwrap();
    assert!(!nonblocking_flag(&stream));
    let sender = send_later(peer, 200 * MS, b"blocking-data");
    assert_read_blocks_until_data(&mut stream, 200 * MS, b"blocking-data");
    let mut peer = sender.join().unwrap();

    // A read timeout is honoured.
    stream.set_read_timeout(Some(200 * MS)).unwrap();
    let start = Instant::now();
    let err = stream
        .read(&mut [0u8; 8])
        .expect_err("read with no data succeeded");
    let waited = start.elapsed();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err:?}"
    );
    assert!(
        waited >= 150 * MS && waited < 2 * SECOND,
        "a 200 ms read timeout expired after {waited:?}"
    );
    stream.set_read_timeout(None).unwrap();

    // A large blocking write completes in full while the peer drains slowly.
    const BIG: usize = 8 << 20;
    let reader = thread::spawn(move || {
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        thread::sleep(100 * MS); // let the writer fill the buffers first
        while total < BIG {
            let n = peer.read(&mut buf).unwrap();
            assert!(n > 0, "early end of stream after {total} bytes");
            assert!(buf[..n].iter().all(|&b| b == 0xa5), "corrupt data");
            total += n;
        }
        total
    });
    let data = vec![0xa5u8; BIG];
    let written = stream.write(&data).expect("a large blocking write failed");
    assert_eq!(
        written, BIG,
        "a blocking write returned short on a plain thread"
    );
    assert_eq!(reader.join().unwrap(), BIG);
}

#[test]
fn plain_thread_sleep_is_a_real_sleep() {
    Child::new("plain_thread_sleep_is_a_real_sleep").run(|| {
        let start = Instant::now();
        thread::sleep(150 * MS);
        let slept = start.elapsed();
        assert!(
            slept >= 150 * MS && slept < 2 * SECOND,
            "sleep(150 ms) on a plain thread took {slept:?}"
        );
        // The same from another plain thread.
        let other = thread::spawn(|| {
            let start = Instant::now();
            thread::sleep(100 * MS);
            start.elapsed()
        });
        assert!(other.join().unwrap() >= 100 * MS);
        // libc's own error for a bad timespec, on a plain thread and in a coroutine alike.
        let bad = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000_000,
        };
        let nanosleep_error = move || {
            // SAFETY: a valid timespec pointer; `rem` may be null.
            let rc = unsafe { libc::nanosleep(&bad, std::ptr::null_mut()) };
            (rc, std::io::Error::last_os_error().raw_os_error())
        };
        assert_eq!(nanosleep_error(), (-1, Some(libc::EINVAL)));
        let in_coroutine = join_within(corun::spawn(nanosleep_error), SECOND, "nanosleep");
        assert_eq!(in_coroutine, (-1, Some(libc::EINVAL)), "inside a coroutine");
    });
}

#[test]
fn plain_thread_socket_io_blocks_as_without_the_hook() {
    Child::new("plain_thread_socket_io_blocks_as_without_the_hook").run(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        check_plain_thread_semantics(stream, peer);
    });
}

#[test]
fn a_socket_first_used_by_a_coroutine_blocks_a_plain_thread_as_without_the_hook() {
    const NAME: &str =
        "a_socket_first_used_by_a_coroutine_blocks_a_plain_thread_as_without_the_hook";
    Child::new(NAME).run(|| {
        // The coroutine makes the listener and a stream (managed by the runtime), uses both,
        // and hands them to this plain thread.
        let (listener, stream, peer) = join_within(
            corun::spawn(|| {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let connector = corun::spawn(move || TcpStream::connect(addr).unwrap());
                let (mut server_side, _) = listener.accept().unwrap();
                let mut stream = join_within(connector, 5 * SECOND, "the connector");
                stream.write_all(b"ping").unwrap();
                let mut buf = [0u8; 4];
                server_side.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"ping");
                (listener, stream, server_side)
            }),
            10 * SECOND,
            "the coroutine",
        );
        assert!(
            !nonblocking_flag(&listener),
            "a blocking listener used by a coroutine reports O_NONBLOCK"
        );

        // A blocking accept on this thread waits for a connection.
        let addr = listener.local_addr().unwrap();
        let connector = thread::spawn(move || {
            thread::sleep(150 * MS);
            TcpStream::connect(addr).unwrap()
        });
        let start = Instant::now();
        let (_accepted, _) = listener.accept().expect("blocking accept failed");
        let waited = start.elapsed();
        assert!(
            waited >= 100 * MS,
            "a blocking accept on a plain thread returned after {waited:?}, before anyone \
             connected"
        );
        connector.join().unwrap();

        // The streams: blocking reads, non-blocking reads, timeouts and writes, both the
        // connecting side and the accepted side.
        let mut stream = stream;
        let sender = send_later(peer.try_clone().unwrap(), 200 * MS, b"pong");
        assert_read_blocks_until_data(&mut stream, 200 * MS, b"pong");
        sender.join().unwrap();
        check_plain_thread_semantics(stream, peer);
    });
}
