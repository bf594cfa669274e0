//! The `corun` launcher: finding the hook, LD_PRELOAD handling, options, errors, help.

use std::path::PathBuf;
use std::process::{Command, Output};

fn corun() -> Command {
    Command::new(env!("CARGO_BIN_EXE_corun"))
}

/// `target/<profile>/libcorun_hook.so`, next to the launcher (built with the workspace).
fn hook() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corun")).with_file_name("libcorun_hook.so")
}

/// `target/<profile>/examples/<name>` (the Makefile builds the examples before the tests).
fn example(name: &str) -> PathBuf {
    let path = hook().with_file_name("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples first",
        path.display()
    );
    path
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_documents_every_option_and_variable() {
    let out = corun().arg("--help").output().unwrap();
    assert!(out.status.success());
    let (stdout, _) = text(&out);
    for needle in [
        "corun run [--threads] [--workers N] [--compact-tls] [--] PROGRAM",
        "--threads",
        "--workers N",
        "--compact-tls",
        "CORUN_WORKERS",
        "CORUN_STACK_SIZE",
        "CORUN_STACK_POOL",
        "CORUN_GUARD",
        "CORUN_BLOCKING_THREADS",
        "CORUN_STUCK_MS",
        "CORUN_MIGRATE",
        "CORUN_DUMP",
        "CORUN_DUMP_SIGNAL",
        "CORUN_LOG",
        "CORUN_TLS",
        "CORUN_STEAL",
        "CORUN_THREADS",
        "CORUN_HOOK",
    ] {
        assert!(
            stdout.contains(needle),
            "--help does not mention {needle}:\n{stdout}"
        );
    }
}

#[test]
fn run_preloads_the_hook_first_and_keeps_ld_preload() {
    assert!(
        hook().is_file(),
        "build the workspace first: {} is missing",
        hook().display()
    );
    let out = corun()
        .args([
            "run",
            "--workers",
            "3",
            "--",
            "sh",
            "-c",
            "echo \"$LD_PRELOAD|$CORUN_WORKERS\"",
        ])
        .env("LD_PRELOAD", "/lib/x86_64-linux-gnu/libc.so.6")
        .env_remove("CORUN_HOOK")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let expected = format!("{}:/lib/x86_64-linux-gnu/libc.so.6|3", hook().display());
    assert_eq!(stdout.trim(), expected);
}

#[test]
fn compact_tls_limits_glibcs_surplus_and_keeps_the_users_tunables() {
    let out = corun()
        .args([
            "run",
            "--compact-tls",
            "--",
            "sh",
            "-c",
            "echo \"$GLIBC_TUNABLES\"",
        ])
        .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=5")
        .env_remove("CORUN_HOOK")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0:glibc.malloc.tcache_count=5"
    );

    // The runtime sees the small surplus: each thread area then keeps all of it free.
    let surplus = |compact: bool| -> usize {
        let mut command = corun();
        command.arg("run");
        if compact {
            command.arg("--compact-tls");
        }
        let out = command
            .args(["--", example("sleep").to_str().unwrap()])
            .env("CORUN_LOG", "info")
            .env_remove("CORUN_HOOK")
            .env_remove("GLIBC_TUNABLES")
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("kept free of glibc's"))
            .unwrap_or_else(|| panic!("no thread-area line in:\n{stderr}"));
        let after = line.split("kept free of glibc's ").nth(1).unwrap();
        after.split('-').next().unwrap().parse().unwrap()
    };
    let (compact, default) = (surplus(true), surplus(false));
    println!("glibc's static TLS surplus: {compact} bytes with --compact-tls, {default} without");
    assert!(compact < 400, "--compact-tls left a {compact}-byte surplus");
    assert!(default >= 1664, "the default surplus is {default} bytes");
}

#[test]
fn corun_hook_overrides_the_search_and_missing_hooks_are_clear_errors() {
    let out = corun()
        .args(["run", "true"])
        .env("CORUN_HOOK", "/nonexistent/libcorun_hook.so")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("CORUN_HOOK=/nonexistent/libcorun_hook.so does not exist"),
        "{stderr}"
    );

    // A copy of the launcher with no hook anywhere near it says where it looked.
    let dir = std::env::temp_dir().join(format!("corun-launcher-test-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("corun");
    std::fs::copy(env!("CARGO_BIN_EXE_corun"), &copy).unwrap();
    // A freshly written executable can be briefly "busy" (ETXTBSY) while another test thread's
    // fork still holds the copy's write descriptor: retry a few times.
    let mut attempts = 0;
    let out = loop {
        match Command::new(&copy)
            .args(["run", "true"])
            .env_remove("CORUN_HOOK")
            .output()
        {
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    let (_, stderr) = text(&out);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("cannot find libcorun_hook.so; looked in:"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&bin.join("libcorun_hook.so").display().to_string()),
        "{stderr}"
    );
    assert!(
        stderr.contains("cargo build --release -p corun-hook"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["run"][..],
        &["run", "--workers"],
        &["run", "--workers", "0", "true"],
        &["run", "--workers", "many", "true"],
        &["run", "--bogus", "true"],
        &["frobnicate"],
        &[],
    ] {
        let out = corun().args(args).output().unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("corun: "), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_program_is_reported() {
    let out = corun()
        .args(["run", "--", "/nonexistent/program"])
        .env("CORUN_HOOK", hook())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run \"/nonexistent/program\""),
        "{stderr}"
    );
}

#[test]
fn programs_run_as_coroutines_under_the_launcher() {
    let out = corun()
        .args(["run", "--workers", "2", "--"])
        .arg(env!("CARGO_BIN_EXE_corun"))
        .arg("--version")
        .env_remove("CORUN_HOOK")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("corun "), "{stdout}");
}
