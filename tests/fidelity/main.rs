//! The differential test of the hooks: every case (an interposed call × a kind of fd × an
//! edge input, see `cases.rs`) is run three ways and the results compared case by case:
//!
//! - **libc**: a plain thread, no hook preloaded: the truth;
//! - **coroutine**: inside a corun coroutine, under the hook;
//! - **thread**: a plain thread under the hook, on an fd a coroutine made (so a socket is one
//!   the runtime manages).
//!
//! Each way runs in child processes (this binary again, with `CORUN_TEST_FIDELITY_MODE`), the
//! cases one after another, each reported on its own line; a case that crashes its child or
//! hangs is that case's failure, and a new child goes on with the next. A case that disagrees
//! is run again, alone, both ways before it counts, so one slow moment of a busy machine does
//! not. Disagreements the README documents as unavoidable are listed in `DOCUMENTED` (and
//! printed); any other fails the test.

#[path = "../support/mod.rs"]
mod support;

mod cases;
mod fixtures;
mod signals;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use cases::{Case, Report};
use fixtures::Fixture;

const MODE_VAR: &str = "CORUN_TEST_FIDELITY_MODE";
const FROM_VAR: &str = "CORUN_TEST_FIDELITY_FROM";
const ONLY_VAR: &str = "CORUN_TEST_FIDELITY_ONLY";

/// How a case is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Libc,
    Coroutine,
    Thread,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Libc => "libc",
            Mode::Coroutine => "coroutine",
            Mode::Thread => "thread",
        }
    }

    fn parse(text: &str) -> Option<Mode> {
        [Mode::Libc, Mode::Coroutine, Mode::Thread]
            .into_iter()
            .find(|m| m.name() == text)
    }
}

/// Disagreements the README documents (case name, mode, why), printed but not failures.
const DOCUMENTED: &[(&str, Mode, &str)] = &[
    (
        "ppoll-bad-timeout",
        Mode::Coroutine,
        "glibc's ppoll reads the timespec itself and dies of SIGSEGV; the hook returns the \
         kernel's EFAULT",
    ),
    (
        "select-bad-timeout",
        Mode::Coroutine,
        "glibc's select reads the timeval itself and dies of SIGSEGV; the hook returns the \
         kernel's EFAULT",
    ),
];

fn main() {
    match std::env::var(MODE_VAR)
        .ok()
        .as_deref()
        .and_then(Mode::parse)
    {
        Some(mode) => child(mode),
        None => parent(),
    }
}

// --- the child: runs cases and reports each on a line --------------------------------------

fn child(mode: Mode) {
    // The same in every mode: a write to a closed socket must not end the process.
    // SAFETY: ignoring SIGPIPE is always allowed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if mode != Mode::Libc {
        let id = corun::spawn(corun::coroutine_id).join().unwrap();
        assert!(
            id.is_some(),
            "the {} mode runs without the runtime (LD_PRELOAD={:?})",
            mode.name(),
            std::env::var_os("LD_PRELOAD")
        );
    }
    let all = cases::all();
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let indices: Vec<usize> = match var(ONLY_VAR) {
        Some(only) => vec![only],
        None => (var(FROM_VAR).unwrap_or(0)..all.len()).collect(),
    };
    let mut out = std::io::stdout().lock();
    for i in indices {
        let text = run_case(mode, &all[i]);
        writeln!(out, "CASE {i} {text}").unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "DONE").unwrap();
}

/// Runs one case in `mode` and returns what it saw.
fn run_case(mode: Mode, case: &Case) -> String {
    let run = case.run;
    let kind = case.kind;
    let body = move |fixture: Option<&Fixture>| {
        let mut report = Report::default();
        run(fixture, &mut report);
        report.finish().text
    };
    match mode {
        Mode::Libc => body(kind.map(Fixture::new).as_ref()),
        Mode::Coroutine => corun::spawn(move || body(kind.map(Fixture::new).as_ref()))
            .join()
            .unwrap_or_else(|_| "PANIC in the coroutine".to_string()),
        Mode::Thread => {
            // The fixture is made by a coroutine (so its sockets are managed), then used here.
            let fixture = corun::spawn(move || kind.map(Fixture::new))
                .join()
                .expect("the fixture panicked");
            body(fixture.as_ref())
        }
    }
}

// --- the parent: runs every mode, compares ---------------------------------------------------

/// What a child said about one case, or how it failed.
type Seen = Result<String, String>;

fn parent() {
    let all = cases::all();
    let started = Instant::now();
    let libc = run_mode(Mode::Libc, all.len());
    let mut failures = Vec::new();
    let mut documented = Vec::new();
    let mut agreeing = 0;
    for mode in [Mode::Coroutine, Mode::Thread] {
        let hooked = run_mode(mode, all.len());
        for (i, case) in all.iter().enumerate() {
            if libc[i] == hooked[i] {
                agreeing += 1;
                continue;
            }
            // Confirm: run the case again, alone, both ways.
            let (again_libc, again_hooked) = (run_one(Mode::Libc, i), run_one(mode, i));
            if again_libc == again_hooked {
                agreeing += 1;
                continue;
            }
            let line = format!(
                "{} [{}]\n    libc: {}\n    {}: {}",
                case.name,
                mode.name(),
                show(&again_libc),
                mode.name(),
                show(&again_hooked)
            );
            match DOCUMENTED
                .iter()
                .find(|(name, m, _)| *name == case.name && *m == mode)
            {
                Some((_, _, why)) => documented.push(format!("{line}\n    documented: {why}")),
                None => failures.push(line),
            }
        }
    }
    println!(
        "{} cases × 2 hooked ways: {agreeing} agree with libc, {} documented differences, {} \
         disagreements ({:.1} s)",
        all.len(),
        documented.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    for line in &documented {
        println!("documented: {line}");
    }
    for line in &failures {
        println!("DISAGREE: {line}");
    }
    assert!(all.len() >= 400, "the matrix has only {} cases", all.len());
    assert!(
        failures.is_empty(),
        "{} cases disagree with libc (see above)",
        failures.len()
    );
    println!("ok");
}

fn show(seen: &Seen) -> String {
    match seen {
        Ok(text) => text.clone(),
        Err(failure) => format!("FAILED: {failure}"),
    }
}

/// Runs every case in `mode`, restarting a child after a case that crashed or hung it.
fn run_mode(mode: Mode, count: usize) -> Vec<Seen> {
    let mut seen: Vec<Option<Seen>> = vec![None; count];
    let mut from = 0;
    while from < count {
        let next = run_child(mode, Some(from), None, &mut seen);
        from = next;
    }
    seen.into_iter()
        .map(|s| s.unwrap_or_else(|| Err("not run".to_string())))
        .collect()
}

/// Runs case `index` alone in `mode`.
fn run_one(mode: Mode, index: usize) -> Seen {
    let mut seen: Vec<Option<Seen>> = vec![None; index + 1];
    run_child(mode, None, Some(index), &mut seen);
    seen[index]
        .take()
        .unwrap_or_else(|| Err("not run".to_string()))
}

/// Runs one child (from case `from`, or only case `only`) and records what it reports into
/// `seen`. Returns the index to go on from: the end, or the case after one that crashed the
/// child or hung (recorded as its failure).
fn run_child(
    mode: Mode,
    from: Option<usize>,
    only: Option<usize>,
    seen: &mut [Option<Seen>],
) -> usize {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(MODE_VAR, mode.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if mode == Mode::Libc {
        command.env_remove("LD_PRELOAD");
    } else {
        command.env("LD_PRELOAD", support::hook_path());
    }
    if let Some(from) = from {
        command.env(FROM_VAR, from.to_string());
    }
    if let Some(only) = only {
        command.env(ONLY_VAR, only.to_string());
    }
    let mut child = command.spawn().expect("cannot start a fidelity child");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let mut next = only.unwrap_or(from.unwrap_or(0));
    let end = only.map_or(seen.len(), |i| i + 1);
    loop {
        match rx.recv_timeout(cases::HANG) {
            Ok(line) if line == "DONE" => {
                let _ = child.wait();
                return end;
            }
            Ok(line) => {
                let Some(rest) = line.strip_prefix("CASE ") else {
                    continue;
                };
                let (index, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let index: usize = index.parse().expect("a case index");
                seen[index] = Some(Ok(text.to_string()));
                next = index + 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                if next < end {
                    seen[next] = Some(Err(format!("hung (no answer within {:?})", cases::HANG)));
                }
                return next + 1;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("cannot wait for a fidelity child");
                let stderr = errors.join().unwrap_or_default();
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                if next < end {
                    seen[next] = Some(Err(format!("the process died ({status}): {last}")));
                }
                return next + 1;
            }
        }
    }
}
