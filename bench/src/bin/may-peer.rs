//! The may peer: the suite's scenarios written with may's coroutines (`go!`), channels,
//! sleeps and sockets, on may's default configuration (one worker per CPU the process may run
//! on, 32 KiB stacks).
//!
//! The command line is in [`USAGE`] (what `may-peer --help` prints).
//!
//! `go!` wraps may's `unsafe fn spawn`, whose contract is that the coroutine does not block its
//! worker thread in non-may calls and does not rely on thread-local storage across yields;
//! every closure spawned here only uses may's own primitives and atomics.
//!
//! Output follows `corun_bench::protocol`.

use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use may::coroutine::JoinHandle;
use may::go;
use may::net::{TcpListener, TcpStream};

use corun_bench::args::{fail, Args, Command, Opt, Spec};
use corun_bench::procfs;
use corun_bench::protocol::emit;

/// What `may-peer --help` prints.
const USAGE: &str = "\
usage: may-peer COMMAND [OPTIONS]

commands (defaults in brackets):
  spawn-join   [--tasks N] [--batch B]   N empty coroutines [100000], joined B at a time [10000]
  ping-pong    [--round-trips N]         N round trips between two coroutines [100000]
  yield        [--tasks K] [--yields N]  K coroutines [1] each calling
                                         may::coroutine::yield_now() N times [1000000], on
                                         one worker
  idle         [--tasks N] [--sleep-ms MS]
                                         N coroutines [100000] that each sleep MS ms [5000]
  echo-server                            a coroutine-per-connection echo server

Runs on may's default configuration (one worker per CPU this process may use; one for
yield).
Output: bench/src/protocol.rs lines.
";

const SPEC: Spec = Spec {
    program: "may-peer",
    usage: USAGE,
    options: &[],
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
            options: &[Opt::value("tasks"), Opt::value("yields")],
        },
        Command {
            name: "idle",
            options: &[Opt::value("tasks"), Opt::value("sleep-ms")],
        },
        Command {
            name: "echo-server",
            options: &[],
        },
    ],
};

fn main() {
    let args = Args::from_env(&SPEC);
    match args.command.as_str() {
        "spawn-join" => spawn_join(args.get("tasks", 100_000), args.get("batch", 10_000)),
        "ping-pong" => ping_pong(args.get("round-trips", 100_000)),
        "yield" => yields(args.get("tasks", 1), args.get("yields", 1_000_000)),
        "idle" => idle(args.get("tasks", 100_000), args.get("sleep-ms", 5_000)),
        "echo-server" => echo_server(),
        other => unreachable!("`{other}` is not in the spec"),
    }
}

fn spawn_join(tasks: usize, batch: usize) {
    let batch = batch.max(1);
    let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(batch);
    let start = Instant::now();
    let mut done = 0;
    while done < tasks {
        let n = batch.min(tasks - done);
        handles.extend((0..n).map(|_| go!(|| ())));
        for handle in handles.drain(..) {
            handle.join().expect("an empty task panicked");
        }
        done += n;
    }
    emit(
        "RESULT",
        &[
            ("tasks", &tasks),
            ("elapsed_ns", &start.elapsed().as_nanos()),
        ],
    );
}

fn ping_pong(round_trips: u64) {
    use may::sync::mpsc::channel;
    let (to_pong, pong_inbox) = channel::<u64>();
    let (to_ping, ping_inbox) = channel::<u64>();
    let pong = go!(move || {
        for value in pong_inbox {
            if to_ping.send(value + 1).is_err() {
                break;
            }
        }
    });
    let ping = go!(move || {
        let start = Instant::now();
        let mut value = 0;
        for _ in 0..round_trips {
            to_pong.send(value).expect("pong hung up");
            value = ping_inbox.recv().expect("pong hung up");
        }
        (start.elapsed(), value)
    });
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

/// `tasks` coroutines that each call `may::coroutine::yield_now()` `yields` times, on one
/// worker: a coordinator coroutine spawns and joins them, and its time from before the first
/// spawn to after the last join, over all the yields, is the time per yield.
fn yields(tasks: usize, yields: u64) {
    // Before anything starts may's scheduler, which reads it once.
    may::config().set_workers(1);
    let coordinator = go!(move || {
        let start = Instant::now();
        let handles: Vec<JoinHandle<()>> = (0..tasks)
            .map(|_| {
                go!(move || {
                    for _ in 0..yields {
                        may::coroutine::yield_now();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("a yielding task panicked");
        }
        start.elapsed()
    });
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

static ASLEEP: AtomicUsize = AtomicUsize::new(0);
static AWAKE: AtomicUsize = AtomicUsize::new(0);

fn idle(tasks: usize, sleep_ms: u64) {
    let rss_base = procfs::own_rss_kib().unwrap_or(0);
    let nap = Duration::from_millis(sleep_ms);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    // may panics when it cannot create a coroutine (no stack can be mapped). The default panic
    // hook would then capture a backtrace (RUST_BACKTRACE), which needs memory mappings the
    // process no longer has, and hangs: stay quiet while spawning, report the payload instead.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    for i in 0..tasks {
        let spawned = panic::catch_unwind(AssertUnwindSafe(|| {
            go!(move || {
                ASLEEP.fetch_add(1, Ordering::SeqCst);
                may::coroutine::sleep(nap);
                AWAKE.fetch_add(1, Ordering::SeqCst);
            })
        }));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(payload) => {
                emit(
                    "SPAWN_ERROR",
                    &[("spawned", &i), ("message", &panic_message(&payload))],
                );
                break;
            }
        }
    }
    panic::set_hook(default_hook);
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

fn echo_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    emit("PORT", &[("port", &port)]);
    let acceptor = go!(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    go!(move || echo_connection(stream));
                }
                Err(e) => {
                    eprintln!("may-peer: accept: {e}");
                    may::coroutine::sleep(Duration::from_millis(10));
                }
            }
        }
    });
    let _ = acceptor.join();
}

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

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "may panicked while spawning".to_string())
}
