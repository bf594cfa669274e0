//! DNS, `corun::unblock`, pipes, FIFOs, eventfds, regular files, stdout and child processes
//! under the runtime. Most tests run on one worker with a ticker coroutine, which can only keep
//! ticking if the coroutine under test suspends instead of blocking the thread. Each test runs
//! in a child process with the hook preloaded (see `support`).

mod support;

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{join_within, panic_text, Child, Ticker};

const SECOND: Duration = Duration::from_secs(1);

/// Ticks of `counter` since `before`.
fn since(counter: &Arc<AtomicU64>, before: u64) -> u64 {
    counter.load(Ordering::SeqCst) - before
}

/// How many of this process's threads belong to the runtime's blocking pool.
fn blocking_pool_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("cannot read /proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("corun-blocking"))
        .count()
}

/// A fresh directory under the system's temp dir (removed by the caller).
fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!("corun-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).expect("cannot create a temp dir");
    dir
}

// ---------------------------------------------------------------------------------------------
// DNS and unblock
// ---------------------------------------------------------------------------------------------

fn lookup_localhost() -> Result<Vec<SocketAddr>, String> {
    ("localhost", 80)
        .to_socket_addrs()
        .map(|addrs| addrs.collect())
        .map_err(|err| err.to_string())
}

/// 100 concurrent lookups of localhost in coroutines on one worker all give what the same
/// lookup gives on a plain thread, and they run on the blocking pool.
#[test]
fn dns_lookups_in_100_coroutines() {
    const LOOKUPS: usize = 100;
    Child::new("dns_lookups_in_100_coroutines")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let expected = lookup_localhost().expect("localhost does not resolve on a thread");
            assert!(!expected.is_empty());
            let start = Instant::now();
            let handles: Vec<_> = (0..LOOKUPS)
                .map(|_| corun::spawn(lookup_localhost))
                .collect();
            for handle in handles {
                let got = join_within(handle, 30 * SECOND, "a lookup coroutine");
                assert_eq!(
                    got.as_ref(),
                    Ok(&expected),
                    "a lookup in a coroutine differs from the same lookup on a thread"
                );
            }
            let elapsed = start.elapsed();
            let pool = blocking_pool_threads();
            println!(
                "{LOOKUPS} lookups of localhost -> {expected:?} in {elapsed:?}; {pool} blocking-pool \
                 threads"
            );
            assert!(
                pool >= 1,
                "no corun-blocking thread exists after {LOOKUPS} lookups in coroutines: \
                 getaddrinfo did not go to the blocking pool"
            );
        });
}

/// `getnameinfo` of 127.0.0.1:80 (host and service).
fn reverse_lookup(flags: libc::c_int) -> Result<(String, String), libc::c_int> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 80u16.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    let mut host = [0 as libc::c_char; 1025];
    let mut serv = [0 as libc::c_char; 64];
    // SAFETY: a valid sockaddr_in of the given length and two buffers of the given sizes.
    let rc = unsafe {
        libc::getnameinfo(
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    // SAFETY: on success both buffers hold NUL-terminated strings.
    let (host, serv) = unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
    Ok((
        host.to_string_lossy().into_owned(),
        serv.to_string_lossy().into_owned(),
    ))
}

/// A reverse lookup of 127.0.0.1 in coroutines gives the same strings as on a plain thread.
#[test]
fn getnameinfo_in_coroutines() {
    Child::new("getnameinfo_in_coroutines")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            for flags in [0, libc::NI_NUMERICHOST | libc::NI_NUMERICSERV] {
                let expected = reverse_lookup(flags);
                println!("getnameinfo(127.0.0.1:80, {flags:#x}) on a thread: {expected:?}");
                assert!(expected.is_ok(), "getnameinfo failed on a plain thread");
                let handles: Vec<_> = (0..10)
                    .map(|_| corun::spawn(move || reverse_lookup(flags)))
                    .collect();
                for handle in handles {
                    let got = join_within(handle, 30 * SECOND, "a getnameinfo coroutine");
                    assert_eq!(got, expected, "getnameinfo differs in a coroutine");
                }
            }
        });
}

/// A lookup that fails gives the same error in a coroutine as on a plain thread.
#[test]
fn failing_lookup_in_a_coroutine() {
    const HOST: &str = "no-such-host.invalid";
    Child::new("failing_lookup_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let lookup = || match (HOST, 80).to_socket_addrs() {
                Ok(addrs) => Ok(addrs.collect::<Vec<_>>()),
                Err(err) => Err((err.kind(), err.raw_os_error(), err.to_string())),
            };
            let expected = lookup();
            println!("{HOST} on a thread: {expected:?}");
            let Err((kind, os_error, _)) = &expected else {
                panic!("{HOST} resolved on a thread: {expected:?}");
            };
            let got = join_within(corun::spawn(lookup), 30 * SECOND, "the lookup coroutine");
            println!("{HOST} in a coroutine: {got:?}");
            match &got {
                Err((got_kind, got_os_error, _)) => {
                    assert_eq!(got_kind, kind, "different error kinds");
                    assert_eq!(got_os_error, os_error, "different OS errors");
                }
                Ok(addrs) => panic!("{HOST} resolved in a coroutine: {addrs:?}"),
            }
            assert_eq!(got, expected, "different errors");
        });
}

/// Blocks the OS thread for real for `duration` (a raw `nanosleep` system call, which no hook
/// turns into a suspension).
fn block_thread_for(duration: Duration) {
    let ts = libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid timespec; no remainder wanted.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &ts as *const libc::timespec,
            std::ptr::null_mut::<libc::timespec>(),
        )
    };
    assert_eq!(rc, 0, "nanosleep: {}", std::io::Error::last_os_error());
}

/// `corun::unblock` runs a closure that blocks its thread for 200 ms off the worker (a ticker on
/// the same worker keeps ticking), returns its value, and lets a panic inside come out.
#[test]
fn unblock_runs_blocking_work_off_the_worker() {
    Child::new("unblock_runs_blocking_work_off_the_worker")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let handle = corun::spawn(move || {
                let before = ticks.load(Ordering::SeqCst);
                let start = Instant::now();
                let (value, inner_id) = corun::unblock(|| {
                    block_thread_for(Duration::from_millis(200));
                    (42, corun::coroutine_id())
                });
                let took = start.elapsed();
                let ticked = since(&ticks, before);
                let panicked = std::panic::catch_unwind(|| {
                    corun::unblock(|| -> u32 { panic!("boom inside unblock") })
                });
                let payload = panicked
                    .err()
                    .map(|payload| panic_text(&*payload))
                    .unwrap_or_default();
                let after = corun::unblock(|| 7);
                (value, inner_id, took, ticked, payload, after)
            });
            let (value, inner_id, took, ticked, payload, after) =
                join_within(handle, 10 * SECOND, "the coroutine calling unblock");
            ticker.stop();
            println!("unblock(200 ms) -> {value} after {took:?}; {ticked} ticks meanwhile");
            assert_eq!(value, 42);
            assert_eq!(
                inner_id, None,
                "the unblock closure ran inside a coroutine, not on a plain thread"
            );
            assert!(
                took >= Duration::from_millis(200),
                "returned after {took:?}"
            );
            assert!(
                took < Duration::from_millis(1500),
                "returned after {took:?}"
            );
            assert!(
                ticked >= 5,
                "the ticker ticked {ticked} times while unblock ran a 200 ms blocking closure"
            );
            assert_eq!(
                payload, "boom inside unblock",
                "the panic did not come out of unblock"
            );
            assert_eq!(after, 7, "unblock did not work after a panic");
        });
}

// ---------------------------------------------------------------------------------------------
// Pipes, FIFOs, eventfds, regular files
// ---------------------------------------------------------------------------------------------

/// A new pipe: (read end, write end).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe writes.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: pipe just opened both fds; each File owns one.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

fn set_nonblocking(fd: RawFd, on: bool) {
    // SAFETY: F_GETFL / F_SETFL on an open fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert!(flags >= 0, "F_GETFL: {}", std::io::Error::last_os_error());
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        let rc = libc::fcntl(fd, libc::F_SETFL, flags);
        assert_eq!(rc, 0, "F_SETFL: {}", std::io::Error::last_os_error());
    }
}

/// On one worker with a ticker: a coroutine reads from `reader` (nothing there yet) while
/// another calls `write` 200 ms later. The read must suspend (the ticker keeps ticking) and
/// return what was written.
fn read_waits_for_a_later_write(
    what: &str,
    reader: Arc<File>,
    write: impl FnOnce() + Send + 'static,
    expected: &[u8],
) {
    let ticker = Ticker::start(Duration::from_millis(10));
    let ticks = ticker.counter();
    let reading = corun::spawn(move || {
        let before = ticks.load(Ordering::SeqCst);
        let start = Instant::now();
        let mut buf = [0u8; 256];
        let n = (&*reader).read(&mut buf).expect("read failed");
        (buf[..n].to_vec(), start.elapsed(), since(&ticks, before))
    });
    let writing = corun::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        write();
    });
    let (got, waited, ticked) = join_within(reading, 10 * SECOND, "the reading coroutine");
    join_within(writing, 5 * SECOND, "the writing coroutine");
    ticker.stop();
    println!(
        "{what}: read {} bytes after {waited:?}; {ticked} ticks",
        got.len()
    );
    assert_eq!(got, expected, "{what}: read the wrong data");
    assert!(
        waited >= Duration::from_millis(150),
        "{what}: the read returned after {waited:?}, before the write"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "{what}: took {waited:?}"
    );
    assert!(
        ticked >= 5,
        "{what}: the ticker ticked {ticked} times while a coroutine on its worker waited to read"
    );
}

#[test]
fn pipe_read_suspends_until_written() {
    Child::new("pipe_read_suspends_until_written")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let (reader, mut writer) = pipe();
            read_waits_for_a_later_write(
                "pipe",
                Arc::new(reader),
                move || writer.write_all(b"through the pipe").unwrap(),
                b"through the pipe",
            );
        });
}

#[test]
fn fifo_read_suspends_until_written() {
    Child::new("fifo_read_suspends_until_written")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let dir = temp_dir("fifo");
            let path = dir.join("fifo");
            let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
            assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
            // Open the read end without waiting for a writer, then the write end (which does
            // not wait, as there is a reader), then make the read end blocking again.
            let reader = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .expect("cannot open the FIFO for reading");
            let mut writer = OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("cannot open the FIFO for writing");
            set_nonblocking(reader.as_raw_fd(), false);
            read_waits_for_a_later_write(
                "FIFO",
                Arc::new(reader),
                move || writer.write_all(b"through the fifo").unwrap(),
                b"through the fifo",
            );
            std::fs::remove_dir_all(&dir).unwrap();
        });
}

#[test]
fn eventfd_read_suspends_until_written() {
    Child::new("eventfd_read_suspends_until_written")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            // SAFETY: plain eventfd creation (blocking, initial count 0).
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
            assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
            // SAFETY: eventfd just returned this fd; the File owns it.
            let eventfd = Arc::new(unsafe { File::from_raw_fd(fd) });
            let writer = eventfd.clone();
            read_waits_for_a_later_write(
                "eventfd",
                eventfd,
                move || {
                    (&*writer).write_all(&5u64.to_ne_bytes()).unwrap();
                },
                &5u64.to_ne_bytes(),
            );
        });
}

/// A coroutine writes 1 MiB into a pipe that another coroutine on the same worker reads slowly:
/// the writer must suspend whenever the pipe is full, and every byte must arrive intact.
#[test]
fn one_mib_through_a_slowly_read_pipe() {
    const LEN: usize = 1 << 20;
    Child::new("one_mib_through_a_slowly_read_pipe")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let (mut reader, mut writer) = pipe();
            let data: Arc<Vec<u8>> = Arc::new(
                (0..LEN)
                    .map(|i| (i.wrapping_mul(7) ^ (i >> 12)) as u8)
                    .collect(),
            );
            let start = Instant::now();
            let writing = {
                let data = data.clone();
                corun::spawn(move || {
                    writer
                        .write_all(&data)
                        .expect("write_all into the pipe failed");
                    start.elapsed()
                })
            };
            let reading = corun::spawn(move || {
                let mut got = Vec::with_capacity(LEN);
                let mut buf = vec![0u8; 8192];
                let mut reads = 0;
                loop {
                    let n = reader.read(&mut buf).expect("read from the pipe failed");
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    reads += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                (got, reads)
            });
            let wrote_in = join_within(writing, 30 * SECOND, "the writing coroutine");
            let (got, reads) = join_within(reading, 30 * SECOND, "the reading coroutine");
            let ticked = ticker.stop();
            println!(
                "1 MiB written in {wrote_in:?}, read in {reads} reads after {:?}; {ticked} ticks",
                start.elapsed()
            );
            assert_eq!(got.len(), LEN, "the reader got {} bytes", got.len());
            if let Some(at) = got.iter().zip(data.iter()).position(|(a, b)| a != b) {
                panic!("the data differs from byte {at} on");
            }
            assert!(ticked >= 5, "the ticker ticked {ticked} times meanwhile");
        });
}

/// Pipes the user made non-blocking give `EAGAIN` at once, as libc does.
#[test]
fn nonblocking_pipe_gives_eagain() {
    Child::new("nonblocking_pipe_gives_eagain")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let handle = corun::spawn(|| {
                let start = Instant::now();
                let mut buf = [0u8; 16];
                let expect_eagain = |result: std::io::Result<usize>, what: &str| match result {
                    Err(err) => {
                        assert_eq!(err.kind(), ErrorKind::WouldBlock, "{what}: {err}");
                        assert_eq!(err.raw_os_error(), Some(libc::EAGAIN), "{what}: {err}");
                    }
                    Ok(n) => panic!("{what}: got {n} bytes instead of EAGAIN"),
                };

                // Made non-blocking before the runtime ever saw it.
                let (mut reader, mut writer) = pipe();
                set_nonblocking(reader.as_raw_fd(), true);
                expect_eagain(reader.read(&mut buf), "read of an empty non-blocking pipe");

                // Used (blocking) first, then made non-blocking.
                let (mut reader2, mut writer2) = pipe();
                writer2.write_all(b"x").unwrap();
                assert_eq!(reader2.read(&mut buf).unwrap(), 1);
                set_nonblocking(reader2.as_raw_fd(), true);
                expect_eagain(
                    reader2.read(&mut buf),
                    "read after switching to non-blocking",
                );
                // SAFETY: F_GETFL on an open fd.
                let flags = unsafe { libc::fcntl(reader2.as_raw_fd(), libc::F_GETFL) };
                assert_ne!(flags & libc::O_NONBLOCK, 0, "F_GETFL lost O_NONBLOCK");

                // Created non-blocking with pipe2.
                let mut fds = [0; 2];
                // SAFETY: room for two fds.
                let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) };
                assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
                // SAFETY: pipe2 just opened both fds; each File owns one.
                let (mut reader3, _writer3) =
                    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
                expect_eagain(reader3.read(&mut buf), "read of an empty pipe2(O_NONBLOCK)");

                // A full non-blocking pipe: writes stop with EAGAIN.
                set_nonblocking(writer.as_raw_fd(), true);
                let chunk = [0u8; 4096];
                let mut written = 0usize;
                loop {
                    match writer.write(&chunk) {
                        Ok(n) => written += n,
                        Err(err) => {
                            expect_eagain(Err(err), "write to a full non-blocking pipe");
                            break;
                        }
                    }
                    assert!(written < 64 << 20, "wrote {written} bytes without EAGAIN");
                }
                (start.elapsed(), written)
            });
            let (took, written) = join_within(handle, 10 * SECOND, "the coroutine");
            println!("all EAGAINs within {took:?}; the pipe took {written} bytes");
            assert!(
                took < Duration::from_millis(500),
                "non-blocking calls took {took:?}"
            );
        });
}

/// Regular files pass through: reading and writing them in a coroutine works as usual.
#[test]
fn regular_files_pass_through() {
    Child::new("regular_files_pass_through")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let handle = corun::spawn(|| {
                let dir = temp_dir("file");
                let path = dir.join("data");
                let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
                std::fs::write(&path, &data).expect("cannot write the file");
                let read = std::fs::read(&path).expect("cannot read the file");
                assert!(read == data, "the file's content differs");
                let mut file = File::open(&path).unwrap();
                let mut buf = [0u8; 1000];
                assert_eq!(file.read(&mut buf).unwrap(), 1000);
                assert_eq!(&buf[..], &data[..1000]);
                let mut rest = Vec::new();
                file.read_to_end(&mut rest).unwrap();
                assert_eq!(rest.len(), data.len() - 1000);
                let start = Instant::now();
                assert_eq!(file.read(&mut buf).unwrap(), 0, "no end of file");
                let eof_took = start.elapsed();
                std::fs::remove_dir_all(&dir).unwrap();
                eof_took
            });
            let eof_took = join_within(handle, 10 * SECOND, "the file coroutine");
            assert!(
                eof_took < Duration::from_millis(500),
                "a read at end of file took {eof_took:?}"
            );
        });
}

// ---------------------------------------------------------------------------------------------
// stdout
// ---------------------------------------------------------------------------------------------

/// `println!` from 1,000 coroutines on two workers while the parent reads the child's stdout
/// slowly: no panic, and every line arrives exactly once, whole.
#[test]
fn println_from_1000_coroutines_to_a_slow_pipe() {
    support::println_storm("println_from_1000_coroutines_to_a_slow_pipe", "2");
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Ten `sleep 0.3` children run at once from coroutines on one worker: about 300 ms in all.
#[test]
fn ten_child_processes_in_coroutines_overlap() {
    const CHILDREN: usize = 10;
    Child::new("ten_child_processes_in_coroutines_overlap")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let start = Instant::now();
            let handles: Vec<_> = (0..CHILDREN)
                .map(|_| {
                    corun::spawn(|| {
                        Command::new("sleep")
                            .arg("0.3")
                            .output()
                            .expect("cannot run sleep")
                    })
                })
                .collect();
            for handle in handles {
                let output = join_within(handle, 30 * SECOND, "a coroutine running sleep");
                assert!(output.status.success(), "sleep failed: {output:?}");
            }
            let elapsed = start.elapsed();
            let ticked = ticker.stop();
            println!(
                "{CHILDREN} concurrent `sleep 0.3` children took {elapsed:?} in all; {ticked} ticks"
            );
            assert!(
                elapsed >= Duration::from_millis(300),
                "the sleeps ended after {elapsed:?}"
            );
            assert!(
                elapsed < Duration::from_millis(1500),
                "{CHILDREN} concurrent `sleep 0.3` took {elapsed:?}: the waits did not overlap"
            );
            assert!(ticked >= 5, "the ticker ticked {ticked} times meanwhile");
        });
}

/// `Command::output` in a coroutine collects stdout, stderr and the exit code.
#[test]
fn command_output_in_a_coroutine() {
    Child::new("command_output_in_a_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let handle = corun::spawn(|| {
                let small = Command::new("sh")
                    .args(["-c", "echo out; echo err >&2; exit 3"])
                    .output()
                    .expect("cannot run sh");
                // Large enough to fill both pipes, so the reads of the two must interleave.
                let large = Command::new("sh")
                    .args([
                        "-c",
                        "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2; exit 0",
                    ])
                    .output()
                    .expect("cannot run sh");
                (small, large)
            });
            let (small, large) = join_within(handle, 30 * SECOND, "the coroutine");
            assert_eq!(String::from_utf8_lossy(&small.stdout), "out\n");
            assert_eq!(String::from_utf8_lossy(&small.stderr), "err\n");
            assert_eq!(small.status.code(), Some(3), "{:?}", small.status);
            assert!(large.status.success(), "{:?}", large.status);
            assert_eq!(large.stdout.len(), 300_000);
            assert_eq!(large.stderr.len(), 200_000);
            assert!(large.stdout.iter().chain(&large.stderr).all(|&b| b == 0));
        });
}

/// `std::process::Child::wait` in a coroutine suspends it; the worker keeps ticking.
#[test]
fn child_wait_suspends_the_coroutine() {
    Child::new("child_wait_suspends_the_coroutine")
        .env("CORUN_WORKERS", "1")
        .run(|| {
            let ticker = Ticker::start(Duration::from_millis(10));
            let ticks = ticker.counter();
            let handle = corun::spawn(move || {
                let mut child = Command::new("sleep")
                    .arg("0.3")
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("cannot run sleep");
                let before = ticks.load(Ordering::SeqCst);
                let start = Instant::now();
                let status = child.wait().expect("wait failed");
                (status, start.elapsed(), since(&ticks, before))
            });
            let (status, waited, ticked) = join_within(handle, 10 * SECOND, "the coroutine");
            ticker.stop();
            println!("wait() for `sleep 0.3` returned {status} after {waited:?}; {ticked} ticks");
            assert!(status.success(), "{status}");
            assert!(waited >= Duration::from_millis(200), "after {waited:?}");
            assert!(waited < Duration::from_millis(1500), "after {waited:?}");
            assert!(
                ticked >= 5,
                "the ticker ticked {ticked} times while a coroutine on its worker waited for a child"
            );
        });
}
