//! A plain std program — it does not use corun at all — whose threads become coroutines when
//! it runs under `corun run --threads` (or `CORUN_THREADS=1` with the hook preloaded).
//!
//! ```text
//! cargo build --release --workspace --examples
//! target/release/corun run --threads -- target/release/examples/plain_threads
//! ```
//!
//! Without arguments it runs a small version of each part and prints a summary. The parts,
//! which the tests run at full size (`tests/threads_mode.rs`):
//!
//! - `echo CLIENTS`: a thread-per-connection TCP echo server and CLIENTS client threads, every
//!   byte checked; while all clients are connected it reports how many OS threads the process
//!   has (`/proc/self/status`).
//! - `sleep THREADS`: THREADS threads that each `thread::sleep(200 ms)`, and the wall time.
//! - `ticker`: a thread ticking every 10 ms while four threads spin on the CPU and four read
//!   a large regular file (calls no runtime can suspend): the longest gap between ticks.
//! - `sync`: std's mpsc, Mutex + Condvar, Barrier, RwLock, park/unpark, `thread::scope`,
//!   names, `thread_local!`, a panicking thread's join and a stack size, among such threads.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> usize {
        match args.get(i) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                eprintln!("plain_threads: {text:?} is not a whole number");
                std::process::exit(2)
            }),
        }
    };
    match args.first().map(String::as_str) {
        None => {
            echo(number(1, 200));
            sleepers(1_000);
            sync();
        }
        Some("echo") => echo(number(1, 1_000)),
        Some("sleep") => sleepers(number(1, 10_000)),
        Some("sync") => sync(),
        Some("ticker") => ticker(),
        Some(other) => {
            eprintln!(
                "plain_threads: unknown part {other:?}; expected echo, sleep, ticker or sync"
            );
            std::process::exit(2)
        }
    }
}

/// Threads of this process now, from `/proc/self/status`.
fn os_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Connections the echo server has accepted.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

/// Bytes each echo client sends, in writes of `CHUNK`.
const PER_CLIENT: usize = 64 * 1024;
const CHUNK: usize = 4 * 1024;

/// The byte at `offset` of client `client`'s stream: every client's bytes differ.
fn pattern(client: usize, offset: usize) -> u8 {
    (client.wrapping_mul(31).wrapping_add(offset.wrapping_mul(7)) % 251) as u8
}

fn echo(clients: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    // The server: one thread per connection, as plain std servers are written.
    thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.expect("accept");
                ACCEPTED.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let mut buf = [0u8; CHUNK];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        })
        .expect("spawn the acceptor");

    let start = Instant::now();
    // Every client connects, then waits until all are connected before sending.
    let connected = Arc::new(Barrier::new(clients + 1));
    let go = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let (connected, go) = (connected.clone(), go.clone());
            thread::spawn(move || -> io::Result<usize> {
                // std listens with a backlog of 128: connections the server has not accepted
                // yet beyond that are dropped (and later reset), so stay at most 64 ahead.
                while ACCEPTED.load(Ordering::SeqCst) + 64 < client {
                    thread::sleep(Duration::from_millis(1));
                }
                let stream = TcpStream::connect(addr);
                connected.wait();
                go.wait();
                let mut stream = stream?;
                let mut reader = stream.try_clone()?;
                let check = thread::spawn(move || -> io::Result<usize> {
                    let mut buf = [0u8; CHUNK];
                    let mut seen = 0;
                    while seen < PER_CLIENT {
                        let n = reader.read(&mut buf)?;
                        if n == 0 {
                            return Err(io::Error::other("the server closed early"));
                        }
                        for (i, &b) in buf[..n].iter().enumerate() {
                            if b != pattern(client, seen + i) {
                                return Err(io::Error::other(format!(
                                    "client {client}: byte {} is wrong",
                                    seen + i
                                )));
                            }
                        }
                        seen += n;
                    }
                    Ok(seen)
                });
                let mut chunk = [0u8; CHUNK];
                for offset in (0..PER_CLIENT).step_by(CHUNK) {
                    for (i, b) in chunk.iter_mut().enumerate() {
                        *b = pattern(client, offset + i);
                    }
                    stream.write_all(&chunk)?;
                }
                check.join().expect("a checking thread panicked")
            })
        })
        .collect();
    connected.wait();
    let threads_while_connected = os_threads();
    go.wait();
    let mut bytes_ok = 0;
    let mut failed = 0;
    for handle in handles {
        match handle.join().expect("a client thread panicked") {
            Ok(n) => bytes_ok += n,
            Err(err) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("plain_threads: a client failed: {err}");
                }
            }
        }
    }
    println!(
        "echo: {clients} clients, {bytes_ok} bytes echoed and checked, {failed} failed, \
         {threads_while_connected} OS threads while all were connected, {} ms",
        start.elapsed().as_millis()
    );
}

fn sleepers(threads: usize) {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| thread::spawn(|| thread::sleep(Duration::from_millis(200))))
        .collect();
    let peak = os_threads();
    for handle in handles {
        handle.join().expect("a sleeping thread panicked");
    }
    println!(
        "sleep: {threads} threads slept 200 ms in {} ms, {peak} OS threads",
        start.elapsed().as_millis()
    );
}

fn ticker() {
    let path = std::env::temp_dir().join(format!("plain_threads-{}.data", std::process::id()));
    std::fs::write(&path, vec![1u8; 64 << 20]).expect("write the data file");
    let stop = Arc::new(AtomicUsize::new(0));
    let ticks = {
        let stop = stop.clone();
        thread::spawn(move || {
            let (mut last, mut longest, mut ticks) = (Instant::now(), Duration::ZERO, 0u32);
            while stop.load(Ordering::SeqCst) == 0 {
                thread::sleep(Duration::from_millis(10));
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
                ticks += 1;
            }
            (ticks, longest)
        })
    };
    thread::sleep(Duration::from_millis(50));
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(thread::spawn(|| {
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < Duration::from_millis(1_500) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }));
        let path = path.clone();
        busy.push(thread::spawn(move || {
            for _ in 0..4 {
                let data = std::fs::read(&path).expect("read the data file");
                std::hint::black_box(data);
            }
        }));
    }
    busy.into_iter()
        .for_each(|h| h.join().expect("a busy thread"));
    stop.store(1, Ordering::SeqCst);
    let (ticks, longest) = ticks.join().expect("the ticker");
    let _ = std::fs::remove_file(&path);
    println!(
        "ticker: {ticks} ticks, longest gap {} ms",
        longest.as_millis()
    );
}

thread_local! {
    static MINE: Cell<usize> = const { Cell::new(0) };
}

fn sync() {
    let mut passed = Vec::new();

    // mpsc between many threads.
    let (tx, rx) = mpsc::channel();
    let senders: Vec<_> = (0..100)
        .map(|i| {
            let tx = tx.clone();
            thread::spawn(move || tx.send(i).expect("send"))
        })
        .collect();
    drop(tx);
    senders
        .into_iter()
        .for_each(|h| h.join().expect("a sender"));
    assert_eq!(rx.iter().sum::<usize>(), (0..100).sum::<usize>());
    passed.push("mpsc");

    // A Mutex + Condvar work queue.
    let queue = Arc::new((Mutex::new((Vec::<usize>::new(), false)), Condvar::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let (queue, done) = (queue.clone(), done.clone());
            thread::spawn(move || loop {
                let (lock, ready) = &*queue;
                let mut state = lock.lock().expect("lock");
                while state.0.is_empty() && !state.1 {
                    state = ready.wait(state).expect("wait");
                }
                match state.0.pop() {
                    Some(job) => {
                        drop(state);
                        done.fetch_add(job, Ordering::SeqCst);
                    }
                    None => return,
                }
            })
        })
        .collect();
    for job in 1..=1_000 {
        let (lock, ready) = &*queue;
        lock.lock().expect("lock").0.push(job);
        ready.notify_one();
    }
    {
        let (lock, ready) = &*queue;
        lock.lock().expect("lock").1 = true;
        ready.notify_all();
    }
    workers
        .into_iter()
        .for_each(|h| h.join().expect("a worker"));
    assert_eq!(done.load(Ordering::SeqCst), (1..=1_000).sum::<usize>());
    passed.push("mutex+condvar");

    // Barrier.
    let barrier = Arc::new(Barrier::new(20));
    let leaders: usize = (0..20)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || barrier.wait().is_leader() as usize)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("a barrier thread"))
        .sum();
    assert_eq!(leaders, 1);
    passed.push("barrier");

    // RwLock: readers share, a writer excludes.
    let lock = Arc::new(RwLock::new(0usize));
    let writers: Vec<_> = (0..10)
        .map(|_| {
            let lock = lock.clone();
            thread::spawn(move || {
                for _ in 0..100 {
                    *lock.write().expect("write") += 1;
                    let _ = *lock.read().expect("read");
                }
            })
        })
        .collect();
    writers
        .into_iter()
        .for_each(|h| h.join().expect("a writer"));
    assert_eq!(*lock.read().expect("read"), 1_000);
    passed.push("rwlock");

    // park / unpark.
    let flag = Arc::new(AtomicUsize::new(0));
    let parked = {
        let flag = flag.clone();
        thread::spawn(move || {
            while flag.load(Ordering::SeqCst) == 0 {
                thread::park();
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    flag.store(1, Ordering::SeqCst);
    parked.thread().unpark();
    parked.join().expect("the parked thread");
    passed.push("park");

    // thread::scope borrowing the caller's data.
    let mut counts = [0usize; 8];
    thread::scope(|scope| {
        for (i, count) in counts.iter_mut().enumerate() {
            scope.spawn(move || *count = i * 10);
        }
    });
    assert_eq!(counts, [0, 10, 20, 30, 40, 50, 60, 70]);
    passed.push("scope");

    // Names and thread_local!s belong to each thread.
    let named: Vec<_> = (0..10)
        .map(|i| {
            thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    MINE.set(i);
                    thread::sleep(Duration::from_millis(5));
                    (thread::current().name().map(str::to_owned), MINE.get())
                })
                .expect("spawn")
        })
        .collect();
    for (i, handle) in named.into_iter().enumerate() {
        let (name, mine) = handle.join().expect("a named thread");
        assert_eq!(name.as_deref(), Some(format!("worker-{i}").as_str()));
        assert_eq!(mine, i);
    }
    passed.push("names+thread_local");

    // A panicking thread's join says so.
    let panicked = thread::spawn(|| panic!("on purpose")).join();
    assert!(panicked.is_err());
    passed.push("panic-join");

    // A stack size: 512 KiB of locals fit in a thread asked for 4 MiB.
    let deep = thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(|| {
            let big = [7u8; 512 * 1024];
            std::hint::black_box(&big)
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>()
        })
        .expect("spawn")
        .join()
        .expect("the deep thread");
    assert_eq!(deep, 7 * 512 * 1024);
    passed.push("stack-size");

    println!("sync: ok: {}", passed.join(", "));
}
