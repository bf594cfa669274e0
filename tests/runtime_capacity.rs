//! How many coroutines the runtime holds at once at the default `vm.max_map_count`: with kernel
//! guard regions (one mapping per slab of stacks) far more than the 32k that two mappings per
//! stack allow; with `CORUN_GUARD=mprotect`, spawning stops at the limit with a message that
//! names it. Each case runs in a child process under the hook.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use corun::coroutine::{guard_kind, GuardKind};
use support::Child;

/// Held for writing by the test body while coroutines pile up, each waiting to read it.
static GATE: RwLock<()> = RwLock::new(());
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// A coroutine that waits at the gate (parked on its futex) until the body opens it.
fn wait_at_gate() {
    WAITING.fetch_add(1, Ordering::SeqCst);
    drop(GATE.read().unwrap());
}

fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// Waits (on this plain thread) until `n` coroutines have reached the gate.
fn until_waiting(n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while WAITING.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} coroutines reached the gate",
            WAITING.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_hundred_thousand_coroutines_at_once_at_the_default_map_count() {
    const COROUTINES: usize = 200_000;
    if guard_kind() != GuardKind::Madvise {
        println!("skipped: this kernel has no MADV_GUARD_INSTALL (Linux 6.13+)");
        return;
    }
    Child::new("two_hundred_thousand_coroutines_at_once_at_the_default_map_count")
        .env("CORUN_WORKERS", "2")
        .timeout(Duration::from_secs(120))
        .run(|| {
            support::assert_preloaded();
            let limit = max_map_count();
            let before = mappings();
            let gate = GATE.write().unwrap();
            let handles: Vec<_> = (0..COROUTINES)
                .map(|i| {
                    corun::Builder::new()
                        .spawn(wait_at_gate)
                        .unwrap_or_else(|e| panic!("spawn {i} of {COROUTINES} failed: {e}"))
                })
                .collect();
            until_waiting(COROUTINES, Duration::from_secs(60));
            let during = mappings();
            println!(
                "{COROUTINES} coroutines waiting at once; mappings {before} -> {during}; \
                 vm.max_map_count {limit}"
            );
            assert!(
                during < 1000,
                "{COROUTINES} coroutines took {during} mappings"
            );
            // One futex wake releases them all: it must cost in proportion to the waiters, not
            // to their square (a loose bound: linear takes 1.5 s here, quadratic 9 s).
            let opened = Instant::now();
            drop(gate);
            for handle in handles {
                handle.join().expect("a waiting coroutine panicked");
            }
            let released = opened.elapsed();
            println!("released and joined in {released:?}");
            assert!(
                released < Duration::from_secs(6),
                "releasing {COROUTINES} waiting coroutines took {released:?}"
            );
        });
}

#[test]
fn with_mprotect_guards_spawn_fails_naming_the_map_count() {
    let limit = max_map_count();
    if limit == 0 || limit > 300_000 {
        println!("skipped: vm.max_map_count is {limit}; exhausting it here would take too long");
        return;
    }
    Child::new("with_mprotect_guards_spawn_fails_naming_the_map_count")
        .env("CORUN_WORKERS", "2")
        .env("CORUN_GUARD", "mprotect")
        .timeout(Duration::from_secs(120))
        .run(|| {
            support::assert_preloaded();
            let gate = GATE.write().unwrap();
            let mut handles = Vec::with_capacity(limit);
            // At the limit nothing in the process can map anything (a heap growing, a thread):
            // hold some mappings back and give them up as soon as the spawn has failed.
            let headroom = Headroom::take(256);
            let error = loop {
                match corun::Builder::new().spawn(wait_at_gate) {
                    Ok(handle) => handles.push(handle),
                    Err(err) => break err,
                }
                assert!(handles.len() <= limit, "never ran out of mappings");
            };
            drop(headroom);
            let message = error.to_string();
            println!("after {} coroutines: {message}", handles.len());
            assert!(
                message.contains("vm.max_map_count is") && message.contains("sysctl -w"),
                "the spawn error does not explain the limit: {message}"
            );
            assert!(
                handles.len() > limit / 2 - 2000,
                "only {} coroutines before the limit",
                handles.len()
            );
            drop(gate);
            for handle in handles {
                handle.join().expect("a waiting coroutine panicked");
            }
        });
}

/// Single pages mapped apart from each other (alternating protections, so the kernel cannot
/// merge neighbours): each one is a mapping held back until dropped.
struct Headroom(Vec<usize>);

impl Headroom {
    fn take(pages: usize) -> Headroom {
        let prots = [libc::PROT_READ, libc::PROT_NONE];
        let mapped = (0..pages)
            .map(|i| {
                // SAFETY: a fresh one-page anonymous mapping, unmapped in `drop`.
                let ptr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        prots[i % 2],
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                assert_ne!(ptr, libc::MAP_FAILED, "cannot map headroom page {i}");
                ptr as usize
            })
            .collect();
        Headroom(mapped)
    }
}

impl Drop for Headroom {
    fn drop(&mut self) {
        for &page in &self.0 {
            // SAFETY: a page mapped in `take`, used by nothing.
            unsafe { libc::munmap(page as *mut libc::c_void, 4096) };
        }
    }
}
