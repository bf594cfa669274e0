//! The echo load generator, the same for every peer.
//!
//! The command line is in [`USAGE`] (what `echo-loadgen --help` prints).
//!
//! Opens N connections (at most P connecting at once; whatever is not connected when the
//! connect phase ends counts as failed), then on each one sends a message, waits for the whole
//! echo, and repeats. After a warm-up, it counts round trips and records their latency (HDR
//! histogram) for the measurement window, and reads the server's CPU time (`/proc/PID/stat`)
//! at the window's start and end.
//!
//! Single-threaded (tokio's current-thread runtime), so pinning this process to one CPU pins
//! the whole load generator. Prints `RESULT round_trips=… seconds=… p50_us=… p99_us=…
//! server_cpu_s=… connected=… connect_errors=… connect_ms=… io_errors=… message=…`.

use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::LocalSet;

use corun_bench::args::{fail, Args, Opt, Spec};
use corun_bench::procfs;
use corun_bench::protocol::emit;

/// What the connection tasks share (all on one thread).
struct Shared {
    measuring: Cell<bool>,
    stop: Cell<bool>,
    round_trips: Cell<u64>,
    io_errors: Cell<u64>,
    latency_ns: RefCell<Histogram<u64>>,
}

struct Options {
    addr: SocketAddr,
    connections: usize,
    message_bytes: usize,
    warmup: Duration,
    duration: Duration,
    server_pid: Option<u32>,
    connect_parallelism: usize,
    connect_phase: Duration,
}

/// What `echo-loadgen --help` prints.
const USAGE: &str = "\
usage: echo-loadgen --addr IP:PORT [OPTIONS]

  --addr IP:PORT             the echo server
  --connections N            connections, each one message in flight [100]
  --message-bytes B          bytes per message [64]
  --warmup-ms MS             round trips before the window are not counted [1000]
  --duration-ms MS           the measurement window [5000]
  --server-pid PID           read this process's CPU time over the window [none]
  --connect-parallelism P    connections being set up at once [64]
  --connect-phase-ms MS      connections not up by then count as failed [20000]

Prints `RESULT round_trips=... seconds=... p50_us=... p99_us=... ...` (bench/src/protocol.rs).
";

const SPEC: Spec = Spec {
    program: "echo-loadgen",
    usage: USAGE,
    options: &[
        Opt::value("addr"),
        Opt::value("connections"),
        Opt::value("message-bytes"),
        Opt::value("warmup-ms"),
        Opt::value("duration-ms"),
        Opt::value("server-pid"),
        Opt::value("connect-parallelism"),
        Opt::value("connect-phase-ms"),
    ],
    commands: &[],
};

fn main() {
    let args = Args::from_env(&SPEC);
    let addr = args.text("addr", "");
    let options = Options {
        addr: addr
            .parse()
            .unwrap_or_else(|_| fail(&format!("--addr must be IP:PORT, not `{addr}`"))),
        connections: args.get("connections", 100),
        message_bytes: args.get("message-bytes", 64),
        warmup: Duration::from_millis(args.get("warmup-ms", 1000)),
        duration: Duration::from_millis(args.get("duration-ms", 5000)),
        server_pid: Some(args.get("server-pid", 0u32)).filter(|&pid| pid != 0),
        connect_parallelism: args.get("connect-parallelism", 64),
        connect_phase: Duration::from_millis(args.get("connect-phase-ms", 20_000)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot start tokio: {e}")));
    LocalSet::new().block_on(&runtime, run(options));
    // Connection tasks are still looping; leaving closes every socket at once.
    std::process::exit(0);
}

async fn run(options: Options) {
    let shared = Rc::new(Shared {
        measuring: Cell::new(false),
        stop: Cell::new(false),
        round_trips: Cell::new(0),
        io_errors: Cell::new(0),
        // 1 ns .. 100 s, 3 significant digits.
        latency_ns: RefCell::new(
            Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds"),
        ),
    });

    // Connect everything first: echo traffic on early connections would slow the rest.
    let connecting = Instant::now();
    let (streams, connect_errors, first_error) = connect_all(&options).await;
    let connect_ms = connecting.elapsed().as_millis();
    let connected = streams.len();
    for stream in streams {
        tokio::task::spawn_local(echo_loop(stream, options.message_bytes, shared.clone()));
    }
    if connected == 0 {
        emit(
            "RESULT",
            &[
                ("connected", &0),
                ("connect_errors", &connect_errors),
                ("message", &first_error.unwrap_or_default()),
            ],
        );
        return;
    }

    tokio::time::sleep(options.warmup).await;
    shared.latency_ns.borrow_mut().reset();
    shared.round_trips.set(0);
    let cpu_before = options
        .server_pid
        .and_then(|pid| procfs::cpu_seconds(pid).ok());
    let start = Instant::now();
    shared.measuring.set(true);
    tokio::time::sleep(options.duration).await;
    shared.measuring.set(false);
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = options
        .server_pid
        .and_then(|pid| procfs::cpu_seconds(pid).ok());
    shared.stop.set(true);

    let histogram = shared.latency_ns.borrow();
    let micros = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let server_cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => format!("{:.3}", after - before),
        _ => "nan".to_string(),
    };
    let p50 = format!("{:.1}", micros(0.5));
    let p99 = format!("{:.1}", micros(0.99));
    let seconds = format!("{seconds:.4}");
    let first_error = first_error.unwrap_or_default();
    let fields: [(&str, &dyn Display); 10] = [
        ("round_trips", &shared.round_trips.get()),
        ("seconds", &seconds),
        ("p50_us", &p50),
        ("p99_us", &p99),
        ("server_cpu_s", &server_cpu),
        ("connected", &connected),
        ("connect_errors", &connect_errors),
        ("connect_ms", &connect_ms),
        ("io_errors", &shared.io_errors.get()),
        ("message", &first_error),
    ];
    emit("RESULT", &fields);
}

/// Opens the connections, at most `connect_parallelism` at a time, until the connect phase
/// ends. A connection counts as
/// open after its first echo: that keeps at most `connect_parallelism` connections waiting
/// in the server's accept queue (std's backlog is 128; an overflow costs a 1 s SYN retry).
/// Returns the streams, how many attempts failed, and the first failure's text.
async fn connect_all(options: &Options) -> (Vec<TcpStream>, usize, Option<String>) {
    let permits = Rc::new(Semaphore::new(options.connect_parallelism.max(1)));
    let deadline = tokio::time::Instant::now() + options.connect_phase;
    let mut attempts = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let permits = permits.clone();
        let (addr, size) = (options.addr, options.message_bytes);
        attempts.push(tokio::task::spawn_local(async move {
            let attempt = async {
                let _permit = permits.acquire().await.expect("semaphore is never closed");
                open(addr, size).await
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(result) => result,
                Err(_) => Err("connect and first echo: not done within the connect phase".into()),
            }
        }));
    }
    let mut streams = Vec::with_capacity(options.connections);
    let (mut failures, mut first_error) = (0, None);
    for attempt in attempts {
        match attempt.await {
            Ok(Ok(stream)) => streams.push(stream),
            Ok(Err(e)) => {
                failures += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                failures += 1;
                first_error.get_or_insert(format!("connect task failed: {e}"));
            }
        }
    }
    (streams, failures, first_error)
}

/// Connects and completes one echo.
async fn open(addr: SocketAddr, size: usize) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut echo = vec![0u8; size];
    stream
        .write_all(&vec![b'x'; size])
        .await
        .map_err(|e| format!("first send: {e}"))?;
    stream
        .read_exact(&mut echo)
        .await
        .map_err(|e| format!("first echo: {e}"))?;
    Ok(stream)
}

/// One connection: send, wait for the full echo, record, repeat.
async fn echo_loop(mut stream: TcpStream, size: usize, shared: Rc<Shared>) {
    let message = vec![b'x'; size];
    let mut echo = vec![0u8; size];
    while !shared.stop.get() {
        let start = Instant::now();
        let ok =
            stream.write_all(&message).await.is_ok() && stream.read_exact(&mut echo).await.is_ok();
        if !ok {
            shared.io_errors.set(shared.io_errors.get() + 1);
            return;
        }
        if shared.measuring.get() {
            let nanos = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            let _ = shared.latency_ns.borrow_mut().record(nanos.max(1));
            shared.round_trips.set(shared.round_trips.get() + 1);
        }
    }
}
