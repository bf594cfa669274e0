//! Stack overflow reporting, slab capacity and the `vm.max_map_count` diagnosis, on both ways
//! of making guard pages (kernel guard regions and `mprotect`). Each case runs in a child
//! process (this test binary re-executed with `CORUN_TEST_CHILD` set), since it ends the
//! process or exhausts its mappings.

use std::process::{Command, Output};

use corun::coroutine::{
    guard_kind, set_guard_mode, Coroutine, DefaultStack, GuardKind, GuardMode, Stack, Yielder,
};

const CHILD_VAR: &str = "CORUN_TEST_CHILD";
/// Which guard mode the child sets before making any stack.
const GUARD_VAR: &str = "CORUN_TEST_GUARD";

/// Re-runs this binary's test `name` alone, with `CORUN_TEST_CHILD=name`, the guard mode and
/// `env`.
fn run_child_env(name: &str, guard: GuardKind, env: &[(&str, String)]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .env(GUARD_VAR, format!("{guard:?}"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("cannot re-run the test binary")
}

fn run_child_with(name: &str, guard: GuardKind) -> Output {
    run_child_env(name, guard, &[])
}

/// Runs child `name` with each guard kind this machine has: it must print `says` and then be
/// killed by an overflow report.
fn each_guard_reports_overflow(name: &str, says: &str) {
    for guard in guard_kinds() {
        let out = run_child_with(name, guard);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(says),
            "{guard:?}: stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_killed_by_overflow_report(&out);
    }
}

fn run_child(name: &str) -> Output {
    run_child_with(name, GuardKind::Mprotect)
}

/// Whether this is the child for `name`; if so, sets the guard mode it was asked for.
fn is_child(name: &str) -> bool {
    if std::env::var(CHILD_VAR).as_deref() != Ok(name) {
        return false;
    }
    let mode = match std::env::var(GUARD_VAR).as_deref() {
        Ok("Madvise") => GuardMode::Madvise,
        _ => GuardMode::Mprotect,
    };
    assert_eq!(set_guard_mode(mode).map(|_| ()), Ok(()));
    true
}

/// The guard kinds this machine can test: `mprotect` always, guard regions on Linux ≥ 6.13.
fn guard_kinds() -> Vec<GuardKind> {
    let mut kinds = vec![GuardKind::Mprotect];
    if guard_kind() == GuardKind::Madvise {
        kinds.push(GuardKind::Madvise);
    } else {
        println!("note: this kernel has no MADV_GUARD_INSTALL; only mprotect guards are tested");
    }
    kinds
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
    for guard in guard_kinds() {
        let out = run_child_with(NAME, guard);
        assert_killed_by_overflow_report(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("(64 KiB)"),
            "{guard:?}: the report should give the stack size:\n{stderr}"
        );
    }
}

#[test]
fn a_reused_slot_keeps_its_guard_page() {
    const NAME: &str = "a_reused_slot_keeps_its_guard_page";
    if is_child(NAME) {
        let stack = DefaultStack::new(32 * 1024).unwrap();
        let base = stack.base();
        let mut co = Coroutine::with_stack(stack, |_: &Yielder<(), u64>, ()| 1);
        co.resume(());
        drop(co.into_stack()); // idle in its slab
        let again = DefaultStack::new(32 * 1024).unwrap();
        assert_eq!(
            again.base(),
            base,
            "the most recently used slot was not reused"
        );
        println!("reused slot at {base:#x}");
        let mut co = Coroutine::with_stack(again, |_: &Yielder<(), u64>, ()| overflow(0));
        co.resume(());
        unreachable!("the overflow must end the process");
    }
    each_guard_reports_overflow(NAME, "reused slot");
}

#[test]
fn every_new_slot_is_guarded_not_only_the_first_of_a_batch() {
    const NAME: &str = "every_new_slot_is_guarded_not_only_the_first_of_a_batch";
    const WHICH_VAR: &str = "CORUN_TEST_WHICH";
    if is_child(NAME) {
        // New slots get their guards in batches; probe the guard of the chosen one of 80.
        let which: usize = std::env::var(WHICH_VAR).unwrap().parse().unwrap();
        let mut stacks: Vec<DefaultStack> = (0..80)
            .map(|_| DefaultStack::new(16 * 1024).unwrap())
            .collect();
        let stack = stacks.swap_remove(which);
        println!("reading below slot {which}");
        // Right below the stack: the guard. (A recursion would not tell a missing guard from a
        // present one: it would run on through the slot below into some other guard.)
        // SAFETY: deliberately reads the guard page; the overflow handler must end the process.
        let word = unsafe { std::ptr::read_volatile((stack.limit() - 8) as *const u64) };
        println!("read {word} below slot {which} without a fault: no guard");
        return;
    }
    for guard in guard_kinds() {
        for which in [1, 31, 32, 47, 79] {
            let out = run_child_env(NAME, guard, &[(WHICH_VAR, which.to_string())]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("reading below slot"),
                "{guard:?} {which}: {stdout}"
            );
            assert_killed_by_overflow_report(&out);
        }
    }
}

#[test]
fn a_trimmed_slot_keeps_its_guard_page_and_reads_zero() {
    const NAME: &str = "a_trimmed_slot_keeps_its_guard_page_and_reads_zero";
    if is_child(NAME) {
        let stack = DefaultStack::new(32 * 1024).unwrap();
        let base = stack.base();
        // SAFETY: the top word of a stack we own and nothing runs on.
        unsafe { *((base - 8) as *mut u64) = 0xdead_beef };
        drop(stack);
        corun::coroutine::trim_pool(0); // gives the idle slot's pages back
        let again = DefaultStack::new(32 * 1024).unwrap();
        assert_eq!(again.base(), base, "the trimmed slot was not reused");
        // SAFETY: as above.
        let word = unsafe { *((base - 8) as *const u64) };
        assert_eq!(word, 0, "a trimmed slot must come back zeroed");
        println!("trimmed slot at {base:#x} reads zero");
        let mut co = Coroutine::with_stack(again, |_: &Yielder<(), u64>, ()| overflow(0));
        co.resume(());
        unreachable!("the overflow must end the process");
    }
    each_guard_reports_overflow(NAME, "reads zero");
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
    let out = run_child(NAME); // mprotect guards: two mappings per stack
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {out:?}");
    assert!(
        stdout.contains("vm.max_map_count is") && stdout.contains("sysctl -w vm.max_map_count="),
        "the error does not explain the limit:\n{stdout}"
    );
}

/// The number of lines in `/proc/self/maps`.
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

#[test]
fn guard_regions_hold_more_stacks_than_mprotect_guards_could() {
    const NAME: &str = "guard_regions_hold_more_stacks_than_mprotect_guards_could";
    if guard_kind() != GuardKind::Madvise {
        println!("skipped: this kernel has no MADV_GUARD_INSTALL");
        return;
    }
    if is_child(NAME) {
        let limit = corun_max_map_count();
        // More live stacks than mprotect guards could ever give (two mappings each).
        let wanted = limit / 2 + 10_000;
        let before = mappings();
        let stacks: Vec<DefaultStack> = (0..wanted)
            .map(|i| {
                DefaultStack::new(16 * 1024)
                    .unwrap_or_else(|e| panic!("stack {i} of {wanted} failed: {e}"))
            })
            .collect();
        let after = mappings();
        println!("{} stacks live, mappings {before} -> {after}", stacks.len());
        assert!(
            after - before < 100,
            "{wanted} slab stacks took {} mappings",
            after - before
        );
        return;
    }
    let out = run_child_with(NAME, GuardKind::Madvise);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("stacks live"),
        "child failed: {out:?}"
    );
}

fn corun_max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65530)
}

#[test]
fn user_memory_reads_bad_pointers_as_faults_not_crashes() {
    // A readable word, an unmapped page, null, and a guard page.
    let word: u64 = 0x1122_3344_5566_7788;
    // SAFETY: reading our own word and three bad addresses through the fault-safe copy.
    unsafe {
        assert_eq!(
            corun::user_memory::read::<u64>(&word as *const u64 as usize),
            Some(word)
        );
        assert_eq!(corun::user_memory::read::<u64>(0x1000), None);
        assert_eq!(corun::user_memory::read::<u64>(0), None);
        let stack = DefaultStack::new(16 * 1024).unwrap();
        assert_eq!(corun::user_memory::read::<u64>(stack.limit() - 8), None);
        let mut out = 0u64;
        assert!(corun::user_memory::write(
            &mut out as *mut u64 as usize,
            &7u64
        ));
        assert_eq!(out, 7);
        assert!(!corun::user_memory::write(0x10, &7u64));
        // Read-only memory: a string literal.
        let text: &'static str = "read only";
        assert!(!corun::user_memory::write(text.as_ptr() as usize, &0u8));
    }
    // And an ordinary fault elsewhere still kills (see other_segfaults_still_kill_with_sigsegv).
}
