//! Stack overflow reporting and the `vm.max_map_count` diagnosis. Each case runs in a child
//! process (this test binary re-executed with `CORUN_TEST_CHILD` set), since it ends the process
//! or exhausts its mappings.

use std::process::{Command, Output};

use corun::coroutine::{Coroutine, DefaultStack, Stack, Yielder};

const CHILD_VAR: &str = "CORUN_TEST_CHILD";

/// Re-runs this binary's test `name` alone, with `CORUN_TEST_CHILD=name`.
fn run_child(name: &str) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .output()
        .expect("cannot re-run the test binary")
}

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_VAR).as_deref() == Ok(name)
}

/// Recurses until the stack runs out (the depth test keeps the compiler from seeing that).
#[inline(never)]
fn overflow(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth as u8; 512]);
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    overflow(depth + 1) + u64::from(frame[7])
}

fn assert_killed_by_overflow_report(out: &Output) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corun: a coroutine has overflowed its stack"),
        "no overflow report on stderr:\n{stderr}"
    );
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "expected an abort after the report; status {:?}, stderr:\n{stderr}",
        out.status
    );
}

#[test]
fn overflow_inside_a_coroutine_is_reported_not_a_bare_segfault() {
    const NAME: &str = "overflow_inside_a_coroutine_is_reported_not_a_bare_segfault";
    if is_child(NAME) {
        let stack = DefaultStack::new(64 * 1024).unwrap();
        let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), u64>, ()| overflow(0));
        co.resume(());
        unreachable!("the overflow must end the process");
    }
    let out = run_child(NAME);
    assert_killed_by_overflow_report(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(64 KiB)"),
        "the report should give the stack size:\n{stderr}"
    );
}

#[test]
fn a_pooled_stack_keeps_its_guard_page() {
    const NAME: &str = "a_pooled_stack_keeps_its_guard_page";
    if is_child(NAME) {
        let stack = DefaultStack::new(32 * 1024).unwrap();
        let base = stack.base();
        let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), u64>, ()| 1);
        co.resume(());
        drop(co.into_stack()); // back to the pool
        let again = DefaultStack::new(32 * 1024).unwrap();
        assert_eq!(again.base(), base, "the stack did not come from the pool");
        println!("reused pooled stack at {base:#x}");
        let mut co = Coroutine::with_stack(again, |_: &Yielder<(), u64>, ()| overflow(0));
        co.resume(());
        unreachable!("the overflow must end the process");
    }
    let out = run_child(NAME);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("reused pooled stack"), "stdout:\n{stdout}");
    assert_killed_by_overflow_report(&out);
}

#[test]
fn other_segfaults_still_kill_with_sigsegv() {
    const NAME: &str = "other_segfaults_still_kill_with_sigsegv";
    if is_child(NAME) {
        // Map a stack so corun's handler is installed, then fault somewhere unrelated.
        let _stack = DefaultStack::new(16 * 1024).unwrap();
        // SAFETY: deliberately invalid: this child process must die of SIGSEGV.
        unsafe { std::ptr::write_volatile(16 as *mut u64, 1) };
        unreachable!();
    }
    use std::os::unix::process::ExitStatusExt;
    let out = run_child(NAME);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "stderr:\n{stderr}"
    );
    assert!(!stderr.contains("overflowed"), "stderr:\n{stderr}");
}

#[test]
fn running_out_of_mappings_names_vm_max_map_count() {
    const NAME: &str = "running_out_of_mappings_names_vm_max_map_count";
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if limit == 0 || limit > 300_000 {
        println!("skipped: vm.max_map_count is {limit}; exhausting it here would take too long");
        return;
    }
    if is_child(NAME) {
        let mut stacks = Vec::new();
        loop {
            match DefaultStack::new(16 * 1024) {
                Ok(stack) => stacks.push(stack),
                Err(err) => {
                    println!("after {} stacks: {err}", stacks.len());
                    return;
                }
            }
            assert!(stacks.len() <= limit, "never ran out of mappings");
        }
    }
    let out = run_child(NAME);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {out:?}");
    assert!(
        stdout.contains("vm.max_map_count is") && stdout.contains("sysctl -w vm.max_map_count="),
        "the error does not explain the limit:\n{stdout}"
    );
}
