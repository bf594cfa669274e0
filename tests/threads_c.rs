//! Threads mode with a C program: `tests/c/pthreads.c`, built here with `cc -pthread`, uses
//! pthread_create/join/detach/exit, cleanup handlers, mutex + condvar, rwlock, barrier, once,
//! keys, semaphores, names and stack sizes the ordinary way, and checks the error answers of
//! the mutex kinds, timed waits and rwlocks (`mutex-kinds`). It runs twice — on plain glibc
//! (the program is right) and under `corun run --threads` (its threads are coroutines) — and
//! both runs must pass every part; under corun the 1,000 workers run on a few OS threads.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds the C program once per test binary run.
fn program() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pthreads");
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/pthreads.c");
    let status = Command::new("cc")
        .args(["-O1", "-g", "-pthread", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("run cc (install a C compiler: the Debian package gcc)");
    assert!(status.success(), "cc failed to build {}", source.display());
    out
}

/// Runs `command` with a time limit; returns (success, stdout, stderr).
fn run(mut command: Command, limit: Duration) -> (bool, String, String) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "the C program did not finish within {limit:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PARTS: [&str; 14] = [
    "work-queue",
    "os-thread-unlock",
    "detached",
    "semaphores",
    "once",
    "key-destructors",
    "pthread-exit",
    "joins",
    "names",
    "rwlock",
    "barrier",
    "stack-size",
    "mutex-kinds",
    "all ok",
];

fn assert_all_parts(stdout: &str, stderr: &str) {
    for part in PARTS {
        let line = if part == "all ok" {
            part.to_string()
        } else {
            format!("ok {part}")
        };
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "`{line}` missing:\n{stdout}\n--- stderr\n{stderr}"
        );
    }
}

#[test]
fn c_pthreads_program_as_coroutines() {
    let program = program();

    // On plain glibc first: the program itself is right.
    let (ok, stdout, stderr) = run(Command::new(&program), Duration::from_secs(60));
    assert!(ok, "plain run failed:\n{stdout}\n{stderr}");
    assert_all_parts(&stdout, &stderr);

    let mut command = Command::new(env!("CARGO_BIN_EXE_corun"));
    command
        .args(["run", "--threads", "--workers", "2", "--"])
        .arg(&program)
        .env_remove("CORUN_TLS");
    let (ok, stdout, stderr) = run(command, Duration::from_secs(120));
    assert!(ok, "run under corun --threads failed:\n{stdout}\n{stderr}");
    assert_all_parts(&stdout, &stderr);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("ok work-queue"))
        .expect("the work-queue line");
    let os_threads: usize = line
        .rsplit_once(", ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no OS thread count in {line:?}"));
    assert!(
        os_threads <= 14,
        "{os_threads} OS threads while 1,000 C threads ran:\n{stdout}"
    );
}
