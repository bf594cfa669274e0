//! Plain std code, spawning with `corun::spawn` (run it with `libcorun_hook.so` preloaded) or
//! with `std::thread::spawn` (`--spawn thread`): the same source for both.
//!
//! The command line is in [`USAGE`] (what `std-peer --help` prints).
//!
//! Everything inside the tasks is ordinary blocking std code: `std::sync::mpsc`,
//! `std::thread::sleep`, `std::net::TcpStream::read` / `write_all`. Output follows
//! `corun_bench::protocol`; the first line is `MODE kind=coroutine|os-thread`, from a probe
//! task asking `corun::coroutine_id()` (without the runtime, `corun::spawn` uses OS threads).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, RwLock};
use std::time::{Duration, Instant};

use corun_bench::args::{fail, Args, Command, Opt, Spec};
use corun_bench::procfs;
use corun_bench::protocol::emit;

/// What a task runs on.
#[derive(Clone, Copy, PartialEq)]
enum Spawner {
    Corun,
    Thread,
}

/// A joinable task of either kind.
enum Task<T> {
    Corun(corun::JoinHandle<T>),
    Thread(std::thread::JoinHandle<T>),
}

impl Spawner {
    fn spawn<F, T>(self, f: F) -> io::Result<Task<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self {
            Spawner::Corun => corun::Builder::new().spawn(f).map(Task::Corun),
            Spawner::Thread => std::thread::Builder::new().spawn(f).map(Task::Thread),
        }
    }
}

impl<T> Task<T> {
    fn join(self) -> std::thread::Result<T> {
        match self {
            Task::Corun(handle) => handle.join(),
            Task::Thread(handle) => handle.join(),
        }
    }
}

/// What `std-peer --help` prints.
const USAGE: &str = "\
usage: std-peer [--spawn corun|thread] COMMAND [OPTIONS]

commands (defaults in brackets):
  spawn-join   [--tasks N] [--batch B]   N empty tasks [100000], joined B at a time [10000]
  ping-pong    [--round-trips N]         N round trips between two tasks [100000]
  yield        [--tasks K] [--yields N] [--call corun|std]
                                         K tasks [1] each yielding N times [1000000] with
                                         corun::yield_now (corun, the default) or
                                         std::thread::yield_now (std: sched_yield, which
                                         the hook turns into a coroutine yield); with
                                         CORUN_WORKERS=1, all on one worker
  uneven       [--tasks N] [--slices S]   N CPU-bound tasks [64]; every 8th runs 16 x S
                                         slices [200] of ~20 us, the others S, with
                                         std::thread::yield_now between slices
  idle         [--tasks N] [--sleep-ms MS]
                                         N tasks [100000] that each sleep MS ms [5000]
  capacity     [--max N] [--max-os-threads N]
                                         hold tasks until a spawn fails or N are alive
                                         [250000; on OS threads --max-os-threads, 10000]
  echo-server                            a thread-per-connection echo server
  http-server                            a thread-per-connection HTTP/1.1 hello-world

--spawn corun (the default) spawns with corun::spawn: run it with
LD_PRELOAD=libcorun_hook.so, or it runs on OS threads (the MODE line says which).
--spawn thread spawns with std::thread::spawn. Output: bench/src/protocol.rs lines.
";

const SPEC: Spec = Spec {
    program: "std-peer",
    usage: USAGE,
    options: &[Opt::value("spawn")],
    commands: &[
        Command {
            name: "spawn-join",
            options: &[Opt::value("tasks"), Opt::value("batch")],
        },
        Command {
            name: "ping-pong",
            options: &[Opt::value("round-trips")],
        },
        Command {
            name: "yield",
            options: &[
                Opt::value("tasks"),
                Opt::value("yields"),
                Opt::value("call"),
            ],
        },
        Command {
            name: "uneven",
            options: &[Opt::value("tasks"), Opt::value("slices")],
        },
        Command {
            name: "idle",
            options: &[Opt::value("tasks"), Opt::value("sleep-ms")],
        },
        Command {
            name: "capacity",
            options: &[Opt::value("max"), Opt::value("max-os-threads")],
        },
        Command {
            name: "echo-server",
            options: &[],
        },
        Command {
            name: "http-server",
            options: &[],
        },
    ],
};

/// A command with its options read: everything is checked before anything runs.
enum Work {
    SpawnJoin {
        tasks: usize,
        batch: usize,
    },
    PingPong {
        round_trips: u64,
    },
    Yield {
        tasks: usize,
        yields: u64,
        call: YieldCall,
    },
    Uneven {
        tasks: usize,
        slices: u64,
    },
    Idle {
        tasks: usize,
        sleep_ms: u64,
    },
    Capacity {
        max: usize,
        max_os_threads: usize,
    },
    EchoServer,
    HttpServer,
}

impl Work {
    fn from_args(args: &Args) -> Work {
        match args.command.as_str() {
            "spawn-join" => Work::SpawnJoin {
                tasks: args.get("tasks", 100_000),
                batch: args.get("batch", 10_000),
            },
            "ping-pong" => Work::PingPong {
                round_trips: args.get("round-trips", 100_000),
            },
            "yield" => Work::Yield {
                tasks: args.get("tasks", 1),
                yields: args.get("yields", 1_000_000),
                call: match args.choice("call", &["corun", "std"], Some("corun")) {
                    "std" => YieldCall::Std,
                    _ => YieldCall::Corun,
                },
            },
            "uneven" => Work::Uneven {
                tasks: args.get("tasks", 64),
                slices: args.get("slices", 200),
            },
            "idle" => Work::Idle {
                tasks: args.get("tasks", 100_000),
                sleep_ms: args.get("sleep-ms", 5_000),
            },
            "capacity" => Work::Capacity {
                max: args.get("max", 250_000),
                max_os_threads: args.get("max-os-threads", 10_000),
            },
            "echo-server" => Work::EchoServer,
            "http-server" => Work::HttpServer,
            other => unreachable!("`{other}` is not in the spec"),
        }
    }
}

fn main() {
    let args = Args::from_env(&SPEC);
    let spawner = match args.choice("spawn", &["corun", "thread"], Some("corun")) {
        "thread" => Spawner::Thread,
        _ => Spawner::Corun,
    };
    let work = Work::from_args(&args);
    let on_coroutines = report_mode(spawner);
    match work {
        Work::SpawnJoin { tasks, batch } => spawn_join(spawner, tasks, batch),
        Work::PingPong { round_trips } => ping_pong(spawner, round_trips),
        Work::Yield {
            tasks,
            yields: n,
            call,
        } => yields(spawner, tasks, n, call),
        Work::Uneven { tasks, slices } => uneven(spawner, tasks, slices),
        Work::Idle { tasks, sleep_ms } => idle(spawner, tasks, sleep_ms),
        Work::Capacity {
            max,
            max_os_threads,
        } => capacity(spawner, if on_coroutines { max } else { max_os_threads }),
        Work::EchoServer => serve(spawner, echo_connection),
        Work::HttpServer => serve(spawner, http_connection),
    }
}

/// Prints `MODE kind=…`: whether spawned tasks run as corun coroutines. Returns true if so.
fn report_mode(spawner: Spawner) -> bool {
    let on_coroutines = spawner == Spawner::Corun
        && spawner
            .spawn(|| corun::coroutine_id().is_some())
            .ok()
            .and_then(|task| task.join().ok())
            .unwrap_or(false);
    let kind = if on_coroutines {
        "coroutine"
    } else {
        "os-thread"
    };
    emit("MODE", &[("kind", &kind)]);
    on_coroutines
}

/// `tasks` empty tasks, spawned and joined `batch` at a time.
fn spawn_join(spawner: Spawner, tasks: usize, batch: usize) {
    let batch = batch.max(1);
    let mut handles = Vec::with_capacity(batch);
    let start = Instant::now();
    let mut done = 0;
    while done < tasks {
        let n = batch.min(tasks - done);
        for _ in 0..n {
            handles.push(
                spawner
                    .spawn(|| ())
                    .unwrap_or_else(|e| spawn_failed(done, &e)),
            );
        }
        for handle in handles.drain(..) {
            handle.join().expect("an empty task panicked");
        }
        done += n;
    }
    let elapsed = start.elapsed();
    emit(
        "RESULT",
        &[("tasks", &tasks), ("elapsed_ns", &elapsed.as_nanos())],
    );
}

/// `round_trips` messages bounced between two tasks over `std::sync::mpsc` channels.
fn ping_pong(spawner: Spawner, round_trips: u64) {
    let (to_pong, pong_inbox) = mpsc::channel::<u64>();
    let (to_ping, ping_inbox) = mpsc::channel::<u64>();
    let pong = spawner
        .spawn(move || {
            for value in pong_inbox {
                if to_ping.send(value + 1).is_err() {
                    break;
                }
            }
        })
        .unwrap_or_else(|e| spawn_failed(0, &e));
    let ping = spawner
        .spawn(move || {
            let start = Instant::now();
            let mut value = 0;
            for _ in 0..round_trips {
                to_pong.send(value).expect("pong hung up");
                value = ping_inbox.recv().expect("pong hung up");
            }
            (start.elapsed(), value)
        })
        .unwrap_or_else(|e| spawn_failed(1, &e));
    let (elapsed, value) = ping.join().expect("ping panicked");
    pong.join().expect("pong panicked");
    assert_eq!(value, round_trips, "lost a message");
    emit(
        "RESULT",
        &[
            ("round_trips", &round_trips),
            ("elapsed_ns", &elapsed.as_nanos()),
        ],
    );
}

/// Which yield the `yield` tasks call.
#[derive(Clone, Copy)]
enum YieldCall {
    /// `corun::yield_now()` (without the runtime: `std::thread::yield_now()`).
    Corun,
    /// `std::thread::yield_now()`: `sched_yield`, which the hook turns into a coroutine yield.
    Std,
}

/// `tasks` tasks that each yield `yields` times. A coordinator task spawns them and joins
/// them; its time from before the first spawn to after the last join, over all the yields, is
/// the time per yield. With corun on one worker each yield suspends a coroutine and resumes
/// the next one in the worker's queue (with one task, the same one: a switch round trip,
/// thread-pointer switches included); the coordinator is parked in `join` meanwhile. With
/// threads, each is a `sched_yield` system call.
fn yields(spawner: Spawner, tasks: usize, yields: u64, call: YieldCall) {
    let coordinator = spawner
        .spawn(move || {
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|i| {
                    spawner
                        .spawn(move || {
                            for _ in 0..yields {
                                match call {
                                    YieldCall::Corun => corun::yield_now(),
                                    YieldCall::Std => std::thread::yield_now(),
                                }
                            }
                        })
                        .unwrap_or_else(|e| spawn_failed(i + 1, &e))
                })
                .collect();
            for handle in handles {
                handle.join().expect("a yielding task panicked");
            }
            start.elapsed()
        })
        .unwrap_or_else(|e| spawn_failed(0, &e));
    let elapsed = coordinator.join().expect("the coordinator panicked");
    emit(
        "RESULT",
        &[
            ("tasks", &tasks),
            ("yields", &(tasks as u64 * yields)),
            ("elapsed_ns", &elapsed.as_nanos()),
        ],
    );
}

/// `tasks` CPU-bound tasks of uneven length (every 8th sixteen times the others), each
/// yielding between slices of arithmetic: where they start decides nothing about when they
/// end, so a worker whose tasks are done early idles unless it takes queued ones elsewhere.
fn uneven(spawner: Spawner, tasks: usize, slices: u64) {
    let coordinator = spawner
        .spawn(move || {
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|i| {
                    let mine = if i % 8 == 7 { 16 * slices } else { slices };
                    spawner
                        .spawn(move || {
                            let mut state = i as u64 + 1;
                            for _ in 0..mine {
                                state = cpu_slice(state);
                                std::thread::yield_now();
                            }
                            state
                        })
                        .unwrap_or_else(|e| spawn_failed(i + 1, &e))
                })
                .collect();
            let mut checksum = 0u64;
            for handle in handles {
                checksum ^= handle.join().expect("an uneven task panicked");
            }
            (start.elapsed(), checksum)
        })
        .unwrap_or_else(|e| spawn_failed(0, &e));
    let (elapsed, checksum) = coordinator.join().expect("the coordinator panicked");
    let slices_run: u64 = (0..tasks)
        .map(|i| if i % 8 == 7 { 16 * slices } else { slices })
        .sum();
    emit(
        "RESULT",
        &[
            ("tasks", &tasks),
            ("slices", &slices_run),
            ("checksum", &checksum),
            ("elapsed_ns", &elapsed.as_nanos()),
        ],
    );
}

/// About 20 µs of arithmetic (xorshift steps the optimiser cannot drop).
fn cpu_slice(mut state: u64) -> u64 {
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = std::hint::black_box(state);
    }
    state
}

static ASLEEP: AtomicUsize = AtomicUsize::new(0);
static AWAKE: AtomicUsize = AtomicUsize::new(0);

/// `tasks` tasks that each sleep `sleep_ms`. Prints `READY` once all are asleep, so the driver
/// can read this process's memory, then joins them.
fn idle(spawner: Spawner, tasks: usize, sleep_ms: u64) {
    let rss_base = procfs::own_rss_kib().unwrap_or(0);
    let nap = Duration::from_millis(sleep_ms);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let task = spawner.spawn(move || {
            ASLEEP.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(nap);
            AWAKE.fetch_add(1, Ordering::SeqCst);
        });
        match task {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                emit("SPAWN_ERROR", &[("spawned", &i), ("message", &e)]);
                break;
            }
        }
    }
    let spawned = handles.len();
    let spawn_time = start.elapsed();
    while ASLEEP.load(Ordering::SeqCst) < spawned {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready_time = start.elapsed();
    emit(
        "READY",
        &[
            ("spawned", &spawned),
            ("woke_early", &AWAKE.load(Ordering::SeqCst)),
            ("spawn_ms", &(spawn_time.as_secs_f64() * 1000.0)),
            ("ready_ms", &(ready_time.as_secs_f64() * 1000.0)),
            ("rss_base_kib", &rss_base),
        ],
    );
    for handle in handles {
        handle.join().expect("a sleeping task panicked");
    }
    emit(
        "RESULT",
        &[
            ("spawned", &spawned),
            ("woke", &AWAKE.load(Ordering::SeqCst)),
            ("elapsed_ms", &start.elapsed().as_millis()),
        ],
    );
}

/// Held for writing while the capacity probe piles up tasks, each waiting to read it (parked on
/// its futex: no task wakes until the probe is done, so spawning is all that is measured).
static GATE: RwLock<()> = RwLock::new(());
/// Capacity-probe tasks that have reached the gate.
static AT_GATE: AtomicUsize = AtomicUsize::new(0);

/// The checkpoints of the capacity probe.
const CHECKPOINTS: [usize; 4] = [1_000, 10_000, 100_000, 1_000_000];
/// The cost of "the Nth spawn" at a checkpoint: the median of ten slices of the spawns before
/// it, this many in all (or all N, if fewer).
const SPAWN_WINDOW: usize = 10_000;

/// Waits (on this thread) until `n` capacity-probe tasks have reached the gate.
fn wait_at_gate(n: usize) {
    while AT_GATE.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Spawns tasks that stay alive (waiting at a gate) until a spawn fails or `max` are alive.
/// At each checkpoint N, once every task has reached the gate, prints `CHECKPOINT held=N
/// rss_kib=… mappings=… us_per_spawn=…`: RSS above the base, and the time per spawn over the
/// 10,000 spawns before N (all N if fewer), timed from a moment every earlier task was parked,
/// as the median of ten equal slices. Then `CAPACITY spawned=N max=… [message=…]`.
fn capacity(spawner: Spawner, max: usize) {
    let rss_base = procfs::own_rss_kib().unwrap_or(0);
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    let mut handles = Vec::with_capacity(max);
    let mut error = None;
    // Per checkpoint: when each tenth of its window started.
    let mut slices: Vec<Instant> = Vec::with_capacity(11);
    while handles.len() < max {
        let held = handles.len();
        if let Some(&checkpoint) = CHECKPOINTS.iter().find(|&&c| c > held) {
            let window = SPAWN_WINDOW.min(checkpoint);
            let start = checkpoint - window;
            if held == start {
                // Time the window with every earlier task parked, so it measures spawning at
                // that scale, not a backlog of tasks still starting.
                wait_at_gate(held);
                slices.clear();
            }
            if held >= start && (held - start) % (window / 10) == 0 {
                slices.push(Instant::now());
            }
        }
        let task = spawner.spawn(|| {
            AT_GATE.fetch_add(1, Ordering::SeqCst);
            drop(GATE.read());
        });
        match task {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
        let held = handles.len();
        if CHECKPOINTS.contains(&held) {
            slices.push(Instant::now());
            let per_slice = SPAWN_WINDOW.min(held) / 10;
            let mut costs: Vec<f64> = slices
                .windows(2)
                .map(|w| (w[1] - w[0]).as_secs_f64() * 1e6 / per_slice as f64)
                .collect();
            costs.sort_by(f64::total_cmp);
            wait_at_gate(held);
            emit(
                "CHECKPOINT",
                &[
                    ("held", &held),
                    (
                        "rss_kib",
                        &procfs::own_rss_kib().unwrap_or(0).saturating_sub(rss_base),
                    ),
                    ("mappings", &procfs::own_mappings().unwrap_or(0)),
                    (
                        "us_per_spawn",
                        &costs.get(costs.len() / 2).copied().unwrap_or(f64::NAN),
                    ),
                ],
            );
        }
    }
    let spawned = handles.len();
    match &error {
        Some(e) => emit(
            "CAPACITY",
            &[("spawned", &spawned), ("max", &max), ("message", e)],
        ),
        None => emit("CAPACITY", &[("spawned", &spawned), ("max", &max)]),
    }
    drop(gate);
    for handle in handles {
        handle.join().expect("a task panicked");
    }
    emit("RESULT", &[("spawned", &spawned)]);
}

/// The thread-per-connection accept loop: one task per accepted connection.
fn serve(spawner: Spawner, handler: fn(TcpStream)) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    emit("PORT", &[("port", &port)]);
    let mut failed_spawns = 0u64;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = spawner.spawn(move || handler(stream)) {
                    failed_spawns += 1;
                    if failed_spawns.is_power_of_two() {
                        eprintln!("std-peer: spawn failed ({failed_spawns} so far): {e}");
                    }
                }
            }
            Err(e) => {
                eprintln!("std-peer: accept: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Echoes everything back until the peer closes.
fn echo_connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 4096];
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
}

const HTTP_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// A minimal HTTP/1.1 keep-alive server: answers every request (headers only, no body, as
/// `wrk` sends them) with a fixed hello-world, pipelined requests included.
fn http_connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    let mut out = Vec::with_capacity(HTTP_RESPONSE.len() * 4);
    loop {
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut consumed = 0;
        out.clear();
        while let Some(end) = find_header_end(&buf[consumed..filled]) {
            consumed += end;
            out.extend_from_slice(HTTP_RESPONSE);
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
        if filled == buf.len() {
            return; // a request larger than the buffer: not for this server
        }
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// The length of the first request's header block (through the blank line), if complete.
fn find_header_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn spawn_failed(spawned: usize, error: &io::Error) -> ! {
    emit("SPAWN_ERROR", &[("spawned", &spawned), ("message", error)]);
    std::process::exit(1)
}
