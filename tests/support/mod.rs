//! Shared helpers for the integration tests that run code under the preloaded runtime.
//!
//! Each such test re-executes its own test binary in a child process, running only itself
//! (`<exe> <name> --exact --nocapture --test-threads=1`) with `CORUN_TEST_CHILD=<name>` and,
//! normally, `LD_PRELOAD=target/<profile>/libcorun_hook.so`. The child runs the real body; the
//! parent enforces a timeout and checks how the child ended, printing its output on failure.
//!
//! ```ignore
//! #[test]
//! fn sleeps_suspend() {
//!     Child::new("sleeps_suspend").env("CORUN_WORKERS", "1").run(|| {
//!         // runs in the child, under the runtime
//!     });
//! }
//! ```
#![allow(dead_code)] // each test file uses a different part of this module

use std::any::Any;
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The variable that tells a re-executed test binary which test body to run.
pub const CHILD_VAR: &str = "CORUN_TEST_CHILD";

/// How long a child may run before it counts as hung (killed, and the test fails).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// `target/<profile>/libcorun_hook.so`, next to the directory holding this test binary
/// (test binaries live in `target/<profile>/deps/`). Panics with instructions if it is missing.
pub fn hook_path() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary is not in target/<profile>/deps/");
    let hook = profile_dir.join("libcorun_hook.so");
    assert!(
        hook.is_file(),
        "{} does not exist: build the hook first with `cargo build --workspace` (or run `make test`, \
         which does that before `cargo test`)",
        hook.display()
    );
    hook
}

/// Whether this process is the re-executed child for test `name`.
pub fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

/// Panics unless `corun::spawn` really runs coroutines on the preloaded runtime, so that no
/// test can pass by silently falling back to OS threads.
pub fn assert_preloaded() {
    let id = corun::spawn(corun::coroutine_id)
        .join()
        .expect("the probe coroutine panicked");
    assert!(
        id.is_some(),
        "corun::spawn did not run a coroutine on the runtime (LD_PRELOAD={:?})",
        std::env::var_os("LD_PRELOAD")
    );
    assert_eq!(
        corun::coroutine_id(),
        None,
        "the test body itself must run on a plain thread"
    );
}

/// How a child process ended.
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Finished {
    /// The status and both outputs, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "child {} after {:?}\n--- child stdout ---\n{}\n--- child stderr ---\n{}\n--- end ---",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// A test body to run in a child process (see the module docs).
pub struct Child {
    name: String,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    preload: bool,
    timeout: Duration,
    slow_stdout: Option<(usize, Duration)>,
}

impl Child {
    /// The child for test `name` (the test function's name: the child runs only that test).
    pub fn new(name: &str) -> Child {
        Child {
            name: name.to_owned(),
            env: Vec::new(),
            env_remove: Vec::new(),
            preload: true,
            timeout: DEFAULT_TIMEOUT,
            slow_stdout: None,
        }
    }

    /// Sets an environment variable in the child.
    pub fn env(mut self, key: &str, value: &str) -> Child {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(mut self, key: &str) -> Child {
        self.env_remove.push(key.into());
        self
    }

    /// Runs the child without the hook (`LD_PRELOAD` removed from its environment).
    pub fn without_hook(mut self) -> Child {
        self.preload = false;
        self
    }

    /// Sets how long the child may run.
    pub fn timeout(mut self, timeout: Duration) -> Child {
        self.timeout = timeout;
        self
    }

    /// Makes the parent a slow reader of the child's stdout: it reads at most `chunk` bytes at
    /// a time and pauses `pause` after each read, so the pipe fills and the child's writes to
    /// stdout have to wait.
    pub fn slow_stdout(mut self, chunk: usize, pause: Duration) -> Child {
        self.slow_stdout = Some((chunk.max(1), pause));
        self
    }

    /// In the child: checks the runtime is preloaded (unless [`without_hook`](Self::without_hook)),
    /// runs `body` and returns `None`. In the parent: runs the child, asserts it succeeded,
    /// prints its stdout, and returns how it ended.
    pub fn run(self, body: impl FnOnce()) -> Option<Finished> {
        let preload = self.preload;
        let finished = self.run_unchecked(|| {
            if preload {
                assert_preloaded();
            }
            body();
        })?;
        assert!(
            finished.status.success(),
            "the child process failed:\n{}",
            finished.describe()
        );
        println!("{}", finished.stdout);
        Some(finished)
    }

    /// Like [`run`](Self::run) but checks nothing: neither the preload nor the exit status.
    pub fn run_unchecked(self, body: impl FnOnce()) -> Option<Finished> {
        if is_child(&self.name) {
            body();
            return None;
        }
        Some(self.spawn_and_wait())
    }

    fn spawn_and_wait(self) -> Finished {
        let exe = std::env::current_exe().expect("cannot find the test binary");
        let mut command = Command::new(exe);
        command
            .args([
                self.name.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_VAR, &self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.preload {
            command.env("LD_PRELOAD", hook_path());
        } else {
            command.env_remove("LD_PRELOAD");
        }
        for key in &self.env_remove {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let start = Instant::now();
        let mut child = command.spawn().expect("cannot re-run the test binary");
        let stdout = match self.slow_stdout {
            Some((chunk, pause)) => {
                slow_reader(child.stdout.take().expect("piped stdout"), chunk, pause)
            }
            None => reader(child.stdout.take().expect("piped stdout")),
        };
        let stderr = reader(child.stderr.take().expect("piped stderr"));
        let deadline = start + self.timeout;
        let (status, timed_out) = loop {
            if let Some(status) = child.try_wait().expect("cannot wait for the child") {
                break (status, false);
            }
            if Instant::now() >= deadline {
                // Kill only the child we started, by its handle.
                let _ = child.kill();
                break (child.wait().expect("cannot wait for the child"), true);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let finished = Finished {
            status,
            stdout: stdout.join().expect("stdout reader panicked"),
            stderr: stderr.join().expect("stderr reader panicked"),
            elapsed: start.elapsed(),
        };
        assert!(
            !timed_out,
            "the child did not finish within {:?} (hung? deadlock?) and was killed:\n{}",
            self.timeout,
            finished.describe()
        );
        finished
    }
}

/// Reads a child's pipe to the end on a thread.
fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Reads a child's pipe to the end on a thread, `chunk` bytes at a time with a `pause` after
/// each read.
fn slow_reader(
    mut pipe: impl Read + Send + 'static,
    chunk: usize,
    pause: Duration,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
            std::thread::sleep(pause);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits (sleeping 1 ms at a time: inside a coroutine that suspends it) until `cond` holds;
/// panics naming `what` if it does not within `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Joins `handle` once it has finished, failing if it does not finish within `timeout`. A panic
/// inside the coroutine is re-raised here, so assertions inside coroutines fail the test.
pub fn join_within<T>(handle: corun::JoinHandle<T>, timeout: Duration, what: &str) -> T {
    wait_for(what, timeout, || handle.is_finished());
    match handle.join() {
        Ok(value) => value,
        Err(payload) => panic!("{what}: the coroutine panicked: {}", panic_text(&*payload)),
    }
}

/// Joins an OS thread once it has finished, failing if it does not finish within `timeout`. A
/// panic on the thread is re-raised here.
pub fn join_thread_within<T>(
    handle: std::thread::JoinHandle<T>,
    timeout: Duration,
    what: &str,
) -> T {
    wait_for(what, timeout, || handle.is_finished());
    match handle.join() {
        Ok(value) => value,
        Err(payload) => panic!("{what}: the thread panicked: {}", panic_text(&*payload)),
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "<a payload that is not a string>".to_owned()
    }
}

/// How many OS threads this process has now.
pub fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("cannot read /proc/self/task")
        .count()
}

/// How many of this process's OS threads are runtime workers (named `corun-worker-N`).
pub fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("cannot read /proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("corun-worker"))
        .count()
}

/// Recurses until `want` bytes of stack below `top` are in use (whatever the frame size of
/// the build profile); returns the bytes used.
#[inline(never)]
pub fn use_stack(top: usize, want: usize) -> usize {
    let frame = std::hint::black_box([1u8; 256]);
    let used = top - frame.as_ptr() as usize;
    if used >= want {
        return used;
    }
    use_stack(top, want) + usize::from(std::hint::black_box(frame)[255]) - 1
}

/// The address of a local in a frame just below the caller's (about the stack pointer).
#[inline(never)]
pub fn stack_address() -> usize {
    let here = std::hint::black_box(0u8);
    &here as *const u8 as usize
}

/// A coroutine that counts periods of `std::thread::sleep` until stopped: proof that its
/// worker keeps running other coroutines while one waits.
pub struct Ticker {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: corun::JoinHandle<()>,
}

impl Ticker {
    /// Starts the ticker coroutine.
    pub fn start(period: Duration) -> Ticker {
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let ticks = ticks.clone();
            let stop = stop.clone();
            corun::Builder::new()
                .name("ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::sleep(period);
                        ticks.fetch_add(1, Ordering::AcqRel);
                    }
                })
                .expect("cannot spawn the ticker")
        };
        Ticker {
            ticks,
            stop,
            handle,
        }
    }

    /// The shared tick counter (to read inside other coroutines).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.ticks.clone()
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    /// Stops the ticker and returns its total.
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        join_within(self.handle, Duration::from_secs(5), "the ticker to stop");
        self.ticks.load(Ordering::Acquire)
    }
}

/// Sends a number into a channel (boxed: std's and crossbeam's channels share no trait).
pub type SendFn = Box<dyn FnMut(u64) -> bool + Send>;
/// Receives a number from a channel; `None` once the other side has hung up.
pub type RecvFn = Box<dyn FnMut() -> Option<u64> + Send>;

/// A coroutine sends `round_trips` numbers to an OS thread over `ping` and waits for each one
/// back, plus one, over `pong`, on a runtime with a ticker coroutine on the same worker
/// (`CORUN_WORKERS=1`). Now and then the thread makes the coroutine wait a millisecond, so a
/// worker blocked in the channel's `recv` would stop the ticker for long enough to see. Asserts
/// every reply, and that the ticker kept ticking.
pub fn ping_pong_with_thread(
    label: &str,
    round_trips: u64,
    ping: (SendFn, RecvFn),
    pong: (SendFn, RecvFn),
) {
    let ticker = Ticker::start(Duration::from_millis(2));
    let ((mut send_ping, mut recv_ping), (mut send_pong, mut recv_pong)) = (ping, pong);
    let thread = std::thread::spawn(move || {
        while let Some(value) = recv_ping() {
            if value % 10 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !send_pong(value + 1) {
                break;
            }
        }
    });
    let start = Instant::now();
    let coroutine = corun::spawn(move || {
        let mut value = 0;
        for _ in 0..round_trips {
            assert!(send_ping(value), "the pong thread hung up");
            let reply = recv_pong().expect("the pong thread hung up");
            assert_eq!(reply, value + 1);
            value = reply;
        }
        value
    });
    let last = join_within(
        coroutine,
        Duration::from_secs(30),
        "the ping-pong coroutine",
    );
    let elapsed = start.elapsed();
    join_thread_within(thread, Duration::from_secs(5), "the pong thread");
    let ticked = ticker.stop();
    println!("{round_trips} {label} round trips in {elapsed:?}; the ticker ticked {ticked} times");
    assert_eq!(last, round_trips);
    assert!(
        ticked >= 5,
        "the ticker ticked {ticked} times during {elapsed:?} of ping-pong on its worker"
    );
}

/// Printers and lines each for [`println_storm`].
const PRINTERS: usize = 1000;
const LINES_PER_PRINTER: usize = 4;

/// Line `j` of printer `i`, in six pieces printed by one `println!`. The last line of each
/// printer is longer than stdout's 1 KiB line buffer, so std flushes it in the middle: a write
/// that yielded there would let a sibling coroutine mix its text in.
fn printed_line(i: usize, j: usize) -> [String; 6] {
    let len = if j == LINES_PER_PRINTER - 1 { 250 } else { 8 };
    std::array::from_fn(|k| {
        let letter = char::from(b'a' + ((i * 7 + j * 3 + k) % 26) as u8);
        format!("#{i:04}.{j}.{k}:{}", letter.to_string().repeat(len))
    })
}

/// The body of test `name`: `println!` from 1,000 coroutines on `workers` workers while the
/// parent reads the child's stdout slowly. Asserts no panic, and that every line arrives
/// exactly once, whole.
pub fn println_storm(name: &str, workers: &str) {
    let Some(finished) = Child::new(name)
        .env("CORUN_WORKERS", workers)
        .slow_stdout(4096, Duration::from_millis(1))
        .timeout(Duration::from_secs(120))
        .run_unchecked(|| {
            assert_preloaded();
            // End libtest's "test … " line, so that the first payload line starts a line.
            println!();
            let handles: Vec<_> = (0..PRINTERS)
                .map(|i| {
                    corun::spawn(move || {
                        for j in 0..LINES_PER_PRINTER {
                            let p = printed_line(i, j);
                            println!("{}{}{}{}{}{}", p[0], p[1], p[2], p[3], p[4], p[5]);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })
                })
                .collect();
            for handle in handles {
                join_within(handle, Duration::from_secs(100), "a printing coroutine");
            }
        })
    else {
        return; // the child
    };
    let shorten = |text: &str| {
        let chars = text.chars().count();
        if chars <= 4000 {
            text.to_owned()
        } else {
            let head: String = text.chars().take(2000).collect();
            let tail: String = text.chars().skip(chars - 2000).collect();
            format!("{head} … [{} bytes] … {tail}", text.len())
        }
    };
    assert!(
        finished.status.success(),
        "the child failed: {} after {:?}\n--- stderr ---\n{}\n--- stdout (shortened) ---\n{}",
        finished.status,
        finished.elapsed,
        finished.stderr,
        shorten(&finished.stdout)
    );
    let mut expected: std::collections::HashMap<String, usize> = (0..PRINTERS)
        .flat_map(|i| (0..LINES_PER_PRINTER).map(move |j| (printed_line(i, j).concat(), 0)))
        .collect();
    let mut bad = Vec::new();
    let mut payload_lines = 0;
    for line in finished.stdout.lines().filter(|line| line.contains('#')) {
        payload_lines += 1;
        match expected.get_mut(line) {
            Some(count) => *count += 1,
            None => bad.push(line),
        }
    }
    let bad_text: Vec<String> = bad.iter().take(5).map(|line| shorten(line)).collect();
    assert!(
        bad.is_empty(),
        "{} torn or interleaved lines, e.g.:\n{}",
        bad.len(),
        bad_text.join("\n")
    );
    let missing = expected.values().filter(|&&count| count == 0).count();
    let repeated = expected.values().filter(|&&count| count > 1).count();
    println!(
        "{payload_lines} lines ({} bytes) from {PRINTERS} coroutines on {workers} worker(s) \
         through a slow pipe in {:?}",
        finished.stdout.len(),
        finished.elapsed
    );
    assert_eq!(missing, 0, "{missing} lines never arrived");
    assert_eq!(repeated, 0, "{repeated} lines arrived more than once");
    assert_eq!(payload_lines, PRINTERS * LINES_PER_PRINTER);
}
