//! Starting up: `corun::spawn` without the hook preloaded, and bad `CORUN_*` settings. Each test
//! runs in a child process (see `support`).

mod support;

use std::time::Duration;

use support::{stack_address, use_stack, worker_threads, Child, Finished};

#[test]
fn without_the_hook_spawn_falls_back_to_threads_and_warns_once() {
    let finished = Child::new("without_the_hook_spawn_falls_back_to_threads_and_warns_once")
        .without_hook()
        .run(|| {
            assert!(
                std::env::var_os("LD_PRELOAD").is_none(),
                "LD_PRELOAD is set in the child"
            );
            assert_eq!(corun::coroutine_id(), None);
            let handles: Vec<_> = (0..5u32)
                .map(|i| {
                    corun::spawn(move || {
                        std::thread::sleep(Duration::from_millis(10));
                        assert_eq!(corun::coroutine_id(), None, "no runtime, no coroutine id");
                        i * i
                    })
                })
                .collect();
            let named = corun::Builder::new()
                .name("fallback-thread".into())
                .stack_size(64 * 1024)
                .spawn(|| std::thread::current().name().map(str::to_owned))
                .unwrap();
            assert_eq!(
                named.id(),
                None,
                "a thread-backed handle has no coroutine id"
            );
            assert_eq!(named.join().unwrap().as_deref(), Some("fallback-thread"));
            let sum: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(sum, 1 + 4 + 9 + 16);
            let panicked = corun::spawn(|| panic!("fallback panic")).join();
            assert!(panicked.is_err(), "a panic on a fallback thread joined Ok");
        });
    let Some(finished) = finished else { return };
    let warnings = finished
        .stderr
        .lines()
        .filter(|line| line.contains("libcorun_hook.so"))
        .count();
    assert_eq!(
        warnings,
        1,
        "expected exactly one warning naming libcorun_hook.so:\n{}",
        finished.describe()
    );
}

/// Runs a preloaded child with `var=value` and checks it stops at once with status 2 and one
/// line on stderr naming the variable and the value, with no panic.
fn assert_rejected(test: &str, var: &str, value: &str) {
    let finished = Child::new(test)
        .env(var, value)
        .env("RUST_BACKTRACE", "1")
        .run_unchecked(|| panic!("the child ran its test body despite {var}={value:?}"));
    let Some(finished) = finished else { return };
    check_rejection(&finished, var, value);
}

fn check_rejection(finished: &Finished, var: &str, value: &str) {
    let described = finished.describe();
    assert_eq!(
        finished.status.code(),
        Some(2),
        "{var}={value:?} should stop the program with status 2:\n{described}"
    );
    let lines: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{described}");
    assert!(
        lines[0].contains(var) && lines[0].contains(value),
        "the message does not name {var} and {value:?}:\n{described}"
    );
    assert!(
        !finished.stderr.contains("panicked") && !finished.stderr.contains("backtrace"),
        "a configuration error must not panic:\n{described}"
    );
    assert!(
        !finished.stdout.contains("running 1 test"),
        "the bad setting was not caught at start:\n{described}"
    );
}

#[test]
fn corun_workers_abc_is_rejected_at_start() {
    assert_rejected(
        "corun_workers_abc_is_rejected_at_start",
        "CORUN_WORKERS",
        "abc",
    );
}

#[test]
fn corun_workers_zero_is_rejected_at_start() {
    assert_rejected(
        "corun_workers_zero_is_rejected_at_start",
        "CORUN_WORKERS",
        "0",
    );
}

#[test]
fn corun_stack_size_12x_is_rejected_at_start() {
    assert_rejected(
        "corun_stack_size_12x_is_rejected_at_start",
        "CORUN_STACK_SIZE",
        "12x",
    );
}

#[test]
fn corun_guard_pkey_is_rejected_at_start() {
    assert_rejected(
        "corun_guard_pkey_is_rejected_at_start",
        "CORUN_GUARD",
        "pkey",
    );
}

#[test]
fn good_settings_are_accepted() {
    Child::new("good_settings_are_accepted")
        .env("CORUN_WORKERS", "3")
        .env("CORUN_STACK_SIZE", "512K")
        .env("CORUN_LOG", "warn")
        .run(|| {
            // A 512 KiB default stack holds what 256 KiB would not.
            let used = corun::spawn(|| use_stack(stack_address(), 400 * 1024))
                .join()
                .unwrap();
            assert!(used >= 400 * 1024);
            assert_eq!(
                worker_threads(),
                3,
                "CORUN_WORKERS=3 did not give 3 workers"
            );
        });
}
