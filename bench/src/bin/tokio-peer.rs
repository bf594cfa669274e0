//! The tokio peer: the suite's scenarios written as idiomatic tokio (and hyper for HTTP), on
//! tokio's default multi-threaded runtime (one worker per CPU the process may run on).
//!
//! The command line is in [`USAGE`] (what `tokio-peer --help` prints). Output follows
//! `corun_bench::protocol`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use corun_bench::args::{fail, Args, Command, Opt, Spec};
use corun_bench::procfs;
use corun_bench::protocol::emit;

/// What `tokio-peer --help` prints.
const USAGE: &str = "\
usage: tokio-peer COMMAND [OPTIONS]

commands (defaults in brackets):
  spawn-join   [--tasks N] [--batch B]   N empty tasks [100000], joined B at a time [10000]
  ping-pong    [--round-trips N]         N round trips between two tasks [100000]
  yield        [--tasks K] [--yields N]  K tasks [1] each calling
                                         tokio::task::yield_now().await N times [1000000],
                                         on a runtime of one worker
  idle         [--tasks N] [--sleep-ms MS]
                                         N tasks [100000] that each sleep MS ms [5000]
  echo-server                            a task-per-connection echo server
  http-server                            a hyper HTTP/1.1 hello-world server

Runs on tokio's multi-threaded runtime (one worker per CPU this process may use; one for
yield).
Output: bench/src/protocol.rs lines.
";

const SPEC: Spec = Spec {
    program: "tokio-peer",
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
        Command {
            name: "http-server",
            options: &[],
        },
    ],
};

/// A command with its options read: everything is checked before anything runs.
enum Work {
    SpawnJoin { tasks: usize, batch: usize },
    PingPong { round_trips: u64 },
    Yield { tasks: usize, yields: u64 },
    Idle { tasks: usize, sleep_ms: u64 },
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
            },
            "idle" => Work::Idle {
                tasks: args.get("tasks", 100_000),
                sleep_ms: args.get("sleep-ms", 5_000),
            },
            "echo-server" => Work::EchoServer,
            "http-server" => Work::HttpServer,
            other => unreachable!("`{other}` is not in the spec"),
        }
    }
}

fn main() {
    let work = Work::from_args(&Args::from_env(&SPEC));
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Work::Yield { .. } = work {
        builder.worker_threads(1);
    }
    let runtime = builder
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start tokio: {e}")));
    runtime.block_on(async {
        match work {
            Work::SpawnJoin { tasks, batch } => spawn_join(tasks, batch).await,
            Work::PingPong { round_trips } => ping_pong(round_trips).await,
            Work::Yield { tasks, yields: n } => yields(tasks, n).await,
            Work::Idle { tasks, sleep_ms } => idle(tasks, sleep_ms).await,
            Work::EchoServer => echo_server().await,
            Work::HttpServer => http_server().await,
        }
    });
}

async fn spawn_join(tasks: usize, batch: usize) {
    let batch = batch.max(1);
    let mut handles = Vec::with_capacity(batch);
    let start = Instant::now();
    let mut done = 0;
    while done < tasks {
        let n = batch.min(tasks - done);
        handles.extend((0..n).map(|_| tokio::spawn(async {})));
        for handle in handles.drain(..) {
            handle.await.expect("an empty task panicked");
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

async fn ping_pong(round_trips: u64) {
    use tokio::sync::mpsc::unbounded_channel;
    let (to_pong, mut pong_inbox) = unbounded_channel::<u64>();
    let (to_ping, mut ping_inbox) = unbounded_channel::<u64>();
    let pong = tokio::spawn(async move {
        while let Some(value) = pong_inbox.recv().await {
            if to_ping.send(value + 1).is_err() {
                break;
            }
        }
    });
    let ping = tokio::spawn(async move {
        let start = Instant::now();
        let mut value = 0;
        for _ in 0..round_trips {
            to_pong.send(value).expect("pong hung up");
            value = ping_inbox.recv().await.expect("pong hung up");
        }
        (start.elapsed(), value)
    });
    let (elapsed, value) = ping.await.expect("ping panicked");
    pong.await.expect("pong panicked");
    assert_eq!(value, round_trips, "lost a message");
    emit(
        "RESULT",
        &[
            ("round_trips", &round_trips),
            ("elapsed_ns", &elapsed.as_nanos()),
        ],
    );
}

/// `tasks` tasks that each call `tokio::task::yield_now().await` `yields` times, on the one
/// worker: a coordinator task spawns and awaits them, and its time from before the first spawn
/// to after the last join, over all the yields, is the time per yield.
async fn yields(tasks: usize, yields: u64) {
    let coordinator = tokio::spawn(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("a yielding task panicked");
        }
        start.elapsed()
    });
    let elapsed = coordinator.await.expect("the coordinator panicked");
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

async fn idle(tasks: usize, sleep_ms: u64) {
    let rss_base = procfs::own_rss_kib().unwrap_or(0);
    let nap = Duration::from_millis(sleep_ms);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            tokio::spawn(async move {
                ASLEEP.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(nap).await;
                AWAKE.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let spawn_time = start.elapsed();
    while ASLEEP.load(Ordering::SeqCst) < tasks {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ready_time = start.elapsed();
    emit(
        "READY",
        &[
            ("spawned", &tasks),
            ("woke_early", &AWAKE.load(Ordering::SeqCst)),
            ("spawn_ms", &(spawn_time.as_secs_f64() * 1000.0)),
            ("ready_ms", &(ready_time.as_secs_f64() * 1000.0)),
            ("rss_base_kib", &rss_base),
        ],
    );
    for handle in handles {
        handle.await.expect("a sleeping task panicked");
    }
    emit(
        "RESULT",
        &[
            ("spawned", &tasks),
            ("woke", &AWAKE.load(Ordering::SeqCst)),
            ("elapsed_ms", &start.elapsed().as_millis()),
        ],
    );
}

async fn listen() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| fail(&format!("bind: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    emit("PORT", &[("port", &port)]);
    listener
}

async fn echo_server() {
    let listener = listen().await;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo_connection(stream));
            }
            Err(e) => {
                eprintln!("tokio-peer: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo_connection(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn http_server() {
    let listener = listen().await;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("tokio-peer: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}
