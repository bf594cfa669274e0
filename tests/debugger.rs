//! Debugging tools see through coroutine stacks: gdb's `bt` from inside a coroutine reaches
//! `main`, and valgrind reports no invalid access while coroutines switch stacks.
//!
//! Both run the examples that `cargo test` builds next to this test binary.

mod support;

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/<name>`, built by `cargo test` along with this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (or `make test`), which builds the examples",
        path.display()
    );
    path
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn gdb_backtrace_from_inside_a_coroutine_reaches_main() {
    if !have("gdb") {
        println!("skipped: gdb is not installed");
        return;
    }
    let out = Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            "-ex",
            "break corun_probe_inside_coroutine",
            "-ex",
            "run",
            "-ex",
            "bt",
        ])
        .arg(example("coroutine_backtrace"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let bt: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    let position = |needle: &str| bt.iter().position(|l| l.contains(needle));
    let (probe, trampoline, resumer, main) = (
        position("corun_probe_inside_coroutine"),
        position("corun_coroutine_trampoline"),
        position("resume_from_here"),
        position("coroutine_backtrace::main ()"),
    );
    assert!(
        probe.is_some() && trampoline > probe && resumer > trampoline && main > resumer,
        "gdb's backtrace does not walk from the coroutine to main:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("corrupt stack"), "{text}");
}

/// Runs `program` under valgrind (with `env`) and returns its stdout; fails the test on any
/// error valgrind reports.
fn run_clean_under_valgrind(program: PathBuf, env: &[(&str, PathBuf)]) -> String {
    assert!(
        have("valgrind"),
        "valgrind is not installed (`apt-get install valgrind`; .ci/run installs it)"
    );
    let out = Command::new("valgrind")
        .args(["--error-exitcode=99", "--quiet"])
        .arg(program)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind reported errors:\n{stderr}");
    for bad in [
        "Invalid read",
        "Invalid write",
        "switching stacks",
        "uninitialised",
    ] {
        assert!(
            !stderr.contains(bad),
            "valgrind reported {bad:?}:\n{stderr}"
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn valgrind_sees_no_invalid_access() {
    let stdout = run_clean_under_valgrind(example("coroutine_basics"), &[]);
    assert!(
        stdout.contains("fibonacci: [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]"),
        "{stdout}"
    );
}

#[test]
fn valgrind_sees_no_invalid_access_under_the_runtime() {
    // Five coroutines on slab stacks with their thread areas, sleeping at once.
    let stdout =
        run_clean_under_valgrind(example("sleep"), &[("LD_PRELOAD", support::hook_path())]);
    assert!(
        stdout.contains("after 1 s: 5 of 5 coroutines finished"),
        "{stdout}"
    );
}
