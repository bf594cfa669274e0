//! Threads mode (`corun run --threads`, `CORUN_THREADS=1`): an unmodified std program that does
//! not use corun (`examples/plain_threads.rs`) runs its threads as coroutines. Each test runs
//! the example under the launcher with a time limit and checks what it printed.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/corun`.
fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corun"))
}

/// `target/<profile>/examples/plain_threads` (the Makefile builds the examples before the
/// tests).
fn program() -> PathBuf {
    let path = launcher().with_file_name("examples").join("plain_threads");
    assert!(
        path.exists(),
        "{} is missing: build the examples first (`cargo build --workspace --examples`)",
        path.display()
    );
    path
}

/// What a run printed.
struct Ran {
    stdout: String,
    stderr: String,
    success: bool,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "success: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.success, self.stdout, self.stderr
        )
    }

    /// The whole number just before `unit` in the line starting with `prefix`.
    fn number_before(&self, prefix: &str, unit: &str) -> usize {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line:\n{}", self.describe()));
        let end = line
            .find(unit)
            .unwrap_or_else(|| panic!("no `{unit}` in {line:?}"));
        line[..end]
            .trim_end()
            .rsplit(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number before `{unit}` in {line:?}"))
    }
}

/// Runs the example with `args`, under `corun run --threads --workers 2` (or, with
/// `threads: false`, under the plain launcher), killing it after `limit`.
fn run(args: &[&str], threads: bool, limit: Duration) -> Ran {
    let mut command = Command::new(launcher());
    command.arg("run");
    if threads {
        command.arg("--threads");
    }
    command
        .args(["--workers", "2", "--"])
        .arg(program())
        .args(args)
        .env_remove("CORUN_THREADS")
        .env_remove("CORUN_TLS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start the launcher");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "plain_threads {args:?} did not finish within {limit:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        success: status.success(),
    }
}

/// OS threads allowed besides the 2 workers: the main thread, the monitor and the blocking
/// pool (up to `CORUN_BLOCKING_THREADS`, 8 by default), with a little room.
const OTHER_OS_THREADS: usize = 12;

/// A thread-per-connection echo server with 5,000 client threads (and a checking thread per
/// client, and a server thread per connection: 15,000 threads), every byte checked, on at
/// most the workers and a few more OS threads.
#[test]
fn thread_per_connection_echo_with_5000_clients() {
    let ran = run(&["echo", "5000"], true, Duration::from_secs(180));
    assert!(ran.success, "{}", ran.describe());
    assert_eq!(
        ran.number_before("echo:", "bytes echoed"),
        5000 * 64 * 1024,
        "{}",
        ran.describe()
    );
    assert_eq!(
        ran.number_before("echo:", "failed"),
        0,
        "{}",
        ran.describe()
    );
    let os_threads = ran.number_before("echo:", "OS threads while");
    assert!(
        os_threads <= 2 + OTHER_OS_THREADS,
        "{os_threads} OS threads while 5,000 clients were connected:\n{}",
        ran.describe()
    );
}

/// 10,000 threads sleeping 200 ms each finish in well under 5 s, on a few OS threads.
#[test]
fn ten_thousand_sleeping_threads() {
    let ran = run(&["sleep", "10000"], true, Duration::from_secs(60));
    assert!(ran.success, "{}", ran.describe());
    let ms = ran.number_before("sleep:", "ms,");
    assert!(
        ms < 5_000,
        "10,000 × 200 ms sleeps took {ms} ms:\n{}",
        ran.describe()
    );
    let os_threads = ran.number_before("sleep:", "OS threads");
    assert!(
        os_threads <= 2 + OTHER_OS_THREADS,
        "{os_threads} OS threads:\n{}",
        ran.describe()
    );
}

/// Without `--threads` the same program's threads are OS threads (the mode is what converts
/// them): 300 sleeping threads are 300 OS threads.
#[test]
fn without_threads_mode_threads_stay_os_threads() {
    let ran = run(&["sleep", "300"], false, Duration::from_secs(60));
    assert!(ran.success, "{}", ran.describe());
    let os_threads = ran.number_before("sleep:", "OS threads");
    assert!(
        os_threads >= 300,
        "{os_threads} OS threads:\n{}",
        ran.describe()
    );
}

/// std's synchronisation, scope, names, thread-locals, panics and stack sizes among
/// coroutine threads.
#[test]
fn std_sync_among_coroutine_threads() {
    let ran = run(&["sync"], true, Duration::from_secs(60));
    assert!(ran.success, "{}", ran.describe());
    for part in [
        "mpsc",
        "mutex+condvar",
        "barrier",
        "rwlock",
        "park",
        "scope",
        "names+thread_local",
        "panic-join",
        "stack-size",
    ] {
        assert!(
            ran.stdout.contains(part),
            "`{part}` did not pass:\n{}",
            ran.describe()
        );
    }
    // The panicking thread's message names the thread as std does, and nothing else went
    // wrong: no corun warning.
    assert!(ran.stderr.contains("on purpose"), "{}", ran.describe());
    assert!(!ran.stderr.contains("corun:"), "{}", ran.describe());
}

/// `CORUN_THREADS=1` with shared identity is ignored with a warning naming why; the threads
/// stay OS threads and the program still works.
#[test]
fn shared_identity_keeps_os_threads_with_a_warning() {
    let mut command = Command::new(launcher());
    let out = command
        .args(["run", "--threads", "--workers", "2", "--"])
        .arg(program())
        .args(["sleep", "50"])
        .env("CORUN_TLS", "shared")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("CORUN_THREADS=1 ignored") && stderr.contains("identity"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("CORUN_THREADS=1 ignored").count(),
        1,
        "{stderr}"
    );
}

/// A ticker thread keeps ticking while other threads spin or read a large file (calls that
/// pass through and cannot be suspended): the stuck-worker guard hands the other coroutines
/// to a fresh thread (on by default in threads mode), so no tick waits for the busy ones.
#[test]
fn a_ticker_keeps_ticking_beside_spinning_and_reading_threads() {
    let ran = run(&["ticker"], true, Duration::from_secs(60));
    assert!(ran.success, "{}", ran.describe());
    let gap = ran.number_before("ticker:", "ms");
    assert!(
        gap < 1_000,
        "the ticker waited {gap} ms (the spinners run 1.5 s each):\n{}",
        ran.describe()
    );
}
