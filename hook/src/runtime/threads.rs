//! The runtime's own OS threads (workers, the monitor, the blocking pool), started here and
//! counted, so that the deadlock check can tell them from the program's threads.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runtime threads started and not yet ended (counted from just before the start).
static OWN: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IS_OWN: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread starts a runtime thread: the `pthread_create` that std makes for
    /// it must make an OS thread, also in threads mode.
    static STARTING_OWN: Cell<bool> = const { Cell::new(false) };
}

/// Ends the count of a runtime thread when it returns (or unwinds).
struct Counted;

impl Drop for Counted {
    fn drop(&mut self) {
        OWN.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a runtime thread named `name` running `body`.
pub fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    OWN.fetch_add(1, Ordering::SeqCst);
    let before = STARTING_OWN.replace(true);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _counted = Counted;
        IS_OWN.with(|own| own.set(true));
        body();
    });
    STARTING_OWN.set(before);
    match spawned {
        Ok(_) => Ok(()),
        Err(err) => {
            OWN.fetch_sub(1, Ordering::SeqCst);
            Err(err)
        }
    }
}

/// Whether the calling thread is starting a runtime thread right now (its `pthread_create`
/// must not become a coroutine).
pub fn starting_own() -> bool {
    STARTING_OWN.try_with(Cell::get).unwrap_or(true)
}

/// How many runtime threads there are now.
pub fn own() -> usize {
    OWN.load(Ordering::SeqCst)
}

/// Whether the calling thread is one of the runtime's.
pub fn is_own() -> bool {
    IS_OWN.try_with(Cell::get).unwrap_or(true)
}

/// In the child of a `fork`: none of the parent's runtime threads exist there (the one thread
/// is the program's, even when it forked from inside a coroutine).
pub fn forget_in_child() {
    OWN.store(0, Ordering::SeqCst);
    let _ = IS_OWN.try_with(|own| own.set(false));
}

/// The threads of this process now (`Threads:` of `/proc/self/status`).
pub fn in_process() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}
