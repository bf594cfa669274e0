//! The command lines of the suite's programs and of `scripts/bench.sh`: `--help` prints the
//! usage and exits 0; an unknown argument or a bad value is one line on stderr naming it, exit
//! status 2, and nothing runs (no protocol line on stdout). Good values are accepted.
//!
//! No benchmark is measured here: the few programs that do run get tiny counts, and only
//! that they finished and reported is checked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Every program, by name, with its path.
const PROGRAMS: [(&str, &str); 6] = [
    ("std-peer", env!("CARGO_BIN_EXE_std-peer")),
    ("tokio-peer", env!("CARGO_BIN_EXE_tokio-peer")),
    ("may-peer", env!("CARGO_BIN_EXE_may-peer")),
    ("core-switch", env!("CARGO_BIN_EXE_core-switch")),
    ("echo-loadgen", env!("CARGO_BIN_EXE_echo-loadgen")),
    ("corun-bench", env!("CARGO_BIN_EXE_corun-bench")),
];

/// How long any one run may take before it is killed and the test fails.
const TIMEOUT: Duration = Duration::from_secs(20);

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `command` to completion (killed, and the test failed, after [`TIMEOUT`]).
fn run(mut command: Command) -> Run {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let stdout = drain(&mut child, true);
    let stderr = drain(&mut child, false);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot wait for the child") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(child: &mut Child, stdout: bool) -> thread::JoinHandle<String> {
    let mut pipe: Box<dyn Read + Send> = if stdout {
        Box::new(child.stdout.take().expect("piped"))
    } else {
        Box::new(child.stderr.take().expect("piped"))
    };
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

fn program(path: &str, args: &[&str]) -> Run {
    let mut command = Command::new(path);
    command.args(args).env_remove("LD_PRELOAD");
    run(command)
}

/// Asserts that `run` rejected its command line: status 2, nothing on stdout, one line on
/// stderr that names `what`.
fn assert_rejected(run: &Run, what: &str, shown: &str) {
    assert_eq!(run.status.code(), Some(2), "{shown}: {}", run.stderr);
    assert_eq!(run.stdout, "", "{shown} ran something");
    assert_eq!(run.stderr.lines().count(), 1, "{shown}: {}", run.stderr);
    assert!(run.stderr.contains(what), "{shown}: {}", run.stderr);
}

#[test]
fn every_program_answers_help_with_its_usage() {
    for (name, path) in PROGRAMS {
        for help in ["--help", "-h"] {
            let run = program(path, &[help]);
            assert_eq!(run.status.code(), Some(0), "{name} {help}: {}", run.stderr);
            assert!(
                run.stdout.starts_with(&format!("usage: {name}")),
                "{name} {help}: {}",
                run.stdout
            );
            assert_eq!(run.stderr, "", "{name} {help}");
        }
    }
}

#[test]
fn every_program_rejects_an_unknown_option() {
    for (name, path) in PROGRAMS {
        let run = program(path, &["--bogus"]);
        assert_rejected(&run, "`--bogus`", name);
    }
    let std_peer = PROGRAMS[0].1;
    for (args, what) in [
        (
            &["--spawn", "corun", "ping-pong", "--bogus", "1"][..],
            "`--bogus`",
        ),
        (&["ping-pong", "--tasks", "3"], "does not take --tasks"),
        (&["pong"], "unknown command `pong`"),
        (&[], "no command given"),
        (&["ping-pong", "extra"], "`extra`"),
        (&["ping-pong", "-n", "3"], "`-n`"),
    ] {
        let run = program(std_peer, args);
        assert_rejected(&run, what, &format!("std-peer {args:?}"));
    }
}

#[test]
fn every_program_rejects_a_bad_value() {
    let [std_peer, tokio, may, core_switch, loadgen, driver] = PROGRAMS.map(|(_, path)| path);
    for (path, args, what) in [
        (
            std_peer,
            &["ping-pong", "--round-trips", "many"][..],
            "`many`",
        ),
        (std_peer, &["--spawn", "fibre", "ping-pong"], "`fibre`"),
        (std_peer, &["yield", "--call", "sched"], "`sched`"),
        (
            std_peer,
            &["ping-pong", "--round-trips"],
            "--round-trips needs a value",
        ),
        (tokio, &["idle", "--tasks", "-1"], "`-1`"),
        (may, &["spawn-join", "--batch", "x"], "`x`"),
        (
            core_switch,
            &["--peer", "fibre", "--op", "switch"],
            "`fibre`",
        ),
        (core_switch, &["--op", "switch"], "--peer is required"),
        (
            core_switch,
            &["--peer", "corun", "--op", "switch", "--iters", "1e6"],
            "`1e6`",
        ),
        (
            loadgen,
            &["--addr", "127.0.0.1:1", "--connections", "x"],
            "`x`",
        ),
        (loadgen, &["--connections", "1"], "--addr"),
        (driver, &["--reps", "0"], "`0`"),
        (driver, &["--reps", "x"], "`x`"),
        (driver, &["--only", "switch,nope"], "`nope`"),
        (driver, &["--only", ","], "--only"),
        (driver, &["--quick", "--quick"], "--quick is given twice"),
    ] {
        let run = program(path, args);
        assert_rejected(&run, what, &format!("{path} {args:?}"));
    }
}

#[test]
fn good_values_are_accepted() {
    let [std_peer, tokio, may, core_switch, ..] = PROGRAMS.map(|(_, path)| path);
    for (path, args) in [
        (
            std_peer,
            &[
                "--spawn",
                "thread",
                "spawn-join",
                "--tasks",
                "10",
                "--batch=5",
            ][..],
        ),
        (
            std_peer,
            &["--spawn=thread", "ping-pong", "--round-trips", "10"],
        ),
        (tokio, &["ping-pong", "--round-trips", "10"]),
        (may, &["spawn-join", "--tasks", "10", "--batch", "5"]),
        (
            std_peer,
            &[
                "--spawn", "thread", "yield", "--tasks", "2", "--yields", "10", "--call", "std",
            ],
        ),
        (tokio, &["yield", "--tasks", "2", "--yields", "10"]),
        (may, &["yield", "--tasks", "2", "--yields", "10"]),
        (
            core_switch,
            &[
                "--peer",
                "corun",
                "--op",
                "switch",
                "--iters",
                "100",
                "--batches",
                "1",
            ],
        ),
    ] {
        let run = program(path, args);
        assert!(run.status.success(), "{path} {args:?}: {}", run.stderr);
        assert!(
            run.stdout.lines().any(|l| l.starts_with("RESULT ")),
            "{path} {args:?}: {}",
            run.stdout
        );
    }
}

/// `scripts/bench.sh` with an empty `PATH`: past its command-line check it cannot run a
/// single program (not even `mkdir`), so a check that let something through cannot start the
/// suite, build or install anything.
fn bench_sh(args: &[&str]) -> Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench.sh");
    let empty = std::env::temp_dir().join(format!("corun-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("cannot create an empty PATH directory");
    let mut command = Command::new(find_bash());
    command
        .arg(&script)
        .args(args)
        .env_clear()
        .env("PATH", &empty)
        .env("CARGO", "false");
    let run = run(command);
    let _ = std::fs::remove_dir(&empty);
    run
}

fn find_bash() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("bash"))
        .chain([PathBuf::from("/bin/bash"), PathBuf::from("/usr/bin/bash")])
        .find(|bash| bash.is_file())
        .expect("bash is not installed")
}

#[test]
fn bench_sh_checks_its_command_line_first() {
    let started = Instant::now();
    for help in [&["--help"][..], &["-h"], &["--bogus", "--help"]] {
        let run = bench_sh(help);
        assert_eq!(
            run.status.code(),
            Some(0),
            "bench.sh {help:?}: {}",
            run.stderr
        );
        assert!(
            run.stdout.starts_with("usage: scripts/bench.sh"),
            "{}",
            run.stdout
        );
        assert_eq!(run.stderr, "", "bench.sh {help:?}");
    }
    for (args, what) in [
        (&["--bogus"][..], "`--bogus`"),
        (&["run"], "`run`"),
        (&["--reps"], "--reps needs a value"),
        (&["--reps", "0"], "`0`"),
        (&["--reps=two"], "`two`"),
        (&["--only", "echo,nope"], "`nope`"),
        (&["--only", ","], "--only"),
        (&["--quick", "--quick"], "--quick is given twice"),
        (&["--quick=yes"], "--quick takes no value"),
    ] {
        let run = bench_sh(args);
        assert_rejected(&run, what, &format!("bench.sh {args:?}"));
    }
    // Accepted: the script goes on, and stops at the first program it needs (none is on PATH).
    let run = bench_sh(&["--quick", "--reps", "2", "--only=echo,http", "--out", "x"]);
    assert!(
        !run.status.success() && run.status.code() != Some(2),
        "{:?}: {}",
        run.status,
        run.stderr
    );
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("bench.sh:")),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bench.sh took {:?}",
        started.elapsed()
    );
}

/// `scripts/bench.sh` checks `--only` against its own list of scenarios: it must be the
/// driver's, which `corun-bench --help` prints (and the driver's own tests check its usage
/// against the scenarios it runs).
#[test]
fn bench_sh_knows_the_drivers_scenarios() {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench.sh"))
            .expect("cannot read scripts/bench.sh");
    let listed = script
        .lines()
        .find_map(|l| l.strip_prefix("SCENARIOS=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("bench.sh has no SCENARIOS=\"...\" line")
        .replace(' ', ",");
    let driver = program(PROGRAMS[5].1, &["--help"]).stdout;
    let drivers = driver
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("switch,"))
        .expect("corun-bench --help lists no scenarios");
    assert_eq!(listed, drivers);
}
