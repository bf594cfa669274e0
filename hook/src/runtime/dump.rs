//! Coroutine dumps: what every live coroutine is doing, with a backtrace of its stack.
//!
//! A suspended coroutine records its own backtrace: its worker resumes it with
//! `Resume::Trace`, and `Task::suspend` calls [`capture_backtrace`] on the coroutine's stack
//! and suspends again, unchanged. The unwinder walks from there up to the coroutine's entry.

use std::fmt::Write as _;

use super::task::{Task, WaitInfo};
use super::timer::now_ns;
use super::Runtime;

/// Frames at most per coroutine.
const MAX_FRAMES: usize = 64;

/// The return addresses of the calling coroutine's stack. Cheap and allocation-light, since it
/// runs on the coroutine's (possibly small) stack; symbols are resolved later, on the monitor
/// thread, by [`format_trace`].
pub fn capture_backtrace() -> Vec<usize> {
    let mut ips = Vec::with_capacity(MAX_FRAMES);
    // SAFETY: `trace_unsynchronized` requires that no other thread unwinds through it at the
    // same time in a way that matters for this unwinder; libgcc's unwinder is thread-safe, and
    // the closure only records addresses.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            ips.push(frame.ip() as usize);
            ips.len() < MAX_FRAMES
        })
    };
    ips
}

/// Symbolises a coroutine's return addresses, without corun's own frames: from the call the
/// coroutine is suspended in (e.g. `recv`) down to the closure given to `corun::spawn`.
pub fn format_trace(ips: &[usize]) -> String {
    let mut frames: Vec<(String, Option<String>)> = Vec::new();
    for &ip in ips {
        let mut resolved = false;
        backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
            let name = symbol
                .name()
                .map_or_else(|| format!("{ip:#x}"), |n| format!("{n:#}"));
            let location = match (symbol.filename(), symbol.lineno()) {
                (Some(file), Some(line)) => Some(format!("{}:{line}", file.display())),
                _ => None,
            };
            frames.push((name, location));
            resolved = true;
        });
        if !resolved {
            frames.push((format!("{ip:#x}"), None));
        }
    }
    // The coroutine's frames start below corun's own: the capture, the switch and the hook,
    // which every suspension goes through (`hooks::guard`); the first frame kept is the
    // interposed libc function itself (e.g. `recv`).
    let start = frames
        .iter()
        .rposition(|(symbol, _)| symbol.starts_with("corun_hook::hooks::guard"))
        .or_else(|| {
            frames.iter().rposition(|(symbol, _)| {
                symbol.starts_with("corun_hook::runtime::")
                    && !symbol.starts_with("corun_hook::runtime::task::Task::new")
            })
        })
        .map_or(0, |i| i + 1);
    // They end where the coroutine began: the front-end's catch_unwind around the user's
    // closure (below that: corun's entry, the trampoline, then the worker's stack).
    let end = frames[start..]
        .iter()
        .position(|(symbol, _)| {
            symbol.contains("core::panic::unwind_safe")
                || symbol.starts_with("corun::spawn::run")
                || symbol.starts_with("corun_hook::runtime::task::Task::new")
                || symbol.starts_with("corun::coroutine::entry")
                || symbol == "corun_coroutine_trampoline"
        })
        .map_or(frames.len(), |i| start + i);
    let mut out = String::new();
    for (symbol, location) in &frames[start..end] {
        let _ = writeln!(out, "      {symbol}");
        if let Some(location) = location {
            let _ = writeln!(out, "        at {location}");
        }
    }
    if out.is_empty() {
        out.push_str("      (no frames could be resolved)\n");
    }
    out
}

/// "in 1.25 s" / "1.25 s ago" relative to now, for a monotonic deadline.
fn relative(deadline: u64) -> String {
    let now = now_ns();
    if deadline >= now {
        format!("in {:.3} s", (deadline - now) as f64 / 1e9)
    } else {
        format!("{:.3} s ago", (now - deadline) as f64 / 1e9)
    }
}

fn describe_wait(info: WaitInfo) -> String {
    let timeout = |deadline: u64| {
        if deadline == 0 {
            String::new()
        } else {
            format!(", times out {}", relative(deadline))
        }
    };
    match info {
        WaitInfo::None => "waiting for a wake-up".into(),
        WaitInfo::Fd {
            fd,
            write,
            deadline,
        } => format!(
            "waiting for fd {fd} to become {}{}",
            if write { "writable" } else { "readable" },
            timeout(deadline)
        ),
        WaitInfo::Poll { nfds, deadline } => format!("polling {nfds} fd(s){}", timeout(deadline)),
        WaitInfo::Sleep { deadline } => format!("sleeping, wakes {}", relative(deadline)),
        WaitInfo::Futex { addr, deadline } => {
            format!(
                "waiting on futex word {addr:#x} (a lock, condvar or park){}",
                timeout(deadline)
            )
        }
        WaitInfo::Join { id } => format!("joining coroutine {id}"),
        WaitInfo::Blocking { call } => format!("waiting for `{call}` on the blocking pool"),
        WaitInfo::Child { pid } => format!("waiting for child process {pid}"),
    }
}

/// "coroutine 7 'name'".
pub fn label(task: &Task) -> String {
    match task.name() {
        Some(name) => format!("coroutine {} '{name}'", task.id()),
        None => format!("coroutine {}", task.id()),
    }
}

/// One coroutine in a dump, as seen when the dump was requested.
pub struct Entry {
    header: String,
    trace: Option<Vec<usize>>,
    note: Option<String>,
}

/// Takes the state of every live task now (cheap: no symbols yet). `traced` says which
/// workers answered the trace request (their suspended coroutines have fresh backtraces).
pub fn snapshot(runtime: &Runtime, tasks: &[std::sync::Arc<Task>], traced: &[bool]) -> Vec<Entry> {
    tasks
        .iter()
        .map(|task| {
            let worker = task.worker();
            let state = if !task.started() {
                "not started yet".to_owned()
            } else if task.is_running() {
                let ran = runtime
                    .all_workers()
                    .get(worker)
                    .and_then(|w| w.running())
                    .filter(|(t, _)| t.id() == task.id())
                    .map(|(_, since)| {
                        format!(" for {:.3} s", now_ns().saturating_sub(since) as f64 / 1e9)
                    })
                    .unwrap_or_default();
                let call = task
                    .in_call()
                    .map(|c| format!(", inside `{c}`"))
                    .unwrap_or_default();
                format!("running on worker {worker}{ran}{call}")
            } else if task.is_parked() {
                format!(
                    "parked on worker {worker}: {}",
                    describe_wait(task.wait_info())
                )
            } else {
                format!("runnable on worker {worker}")
            };
            let fresh = traced.get(worker).copied().unwrap_or(false);
            let trace = task.take_trace().filter(|_| fresh);
            let note = (trace.is_none() && task.started() && !task.is_running())
                .then(|| format!("      (no backtrace: worker {worker} did not answer in time)\n"));
            Entry {
                header: format!("{} — {state}", label(task)),
                trace,
                note,
            }
        })
        .collect()
}

/// Renders a dump (resolving symbols, which is the slow part).
pub fn render(entries: &[Entry], workers: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "corun: coroutine dump: {} live coroutine(s), {workers} worker(s)",
        entries.len()
    );
    for entry in entries {
        let _ = writeln!(out, "{}", entry.header);
        if let Some(ips) = &entry.trace {
            out.push_str(&format_trace(ips));
        }
        if let Some(note) = &entry.note {
            out.push_str(note);
        }
    }
    out.push_str("corun: end of coroutine dump\n");
    out
}
