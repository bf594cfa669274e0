//! Coroutine dumps: what every live coroutine is doing, with a backtrace of its stack.
//!
//! A suspended coroutine records its own backtrace: its worker resumes it with
//! `Resume::Trace`, and `Task::suspend` calls [`capture_backtrace`] on the coroutine's stack
//! and suspends again, unchanged. The unwinder walks from there up to the coroutine's entry.

use std::fmt::Write as _;

use super::task::{Task, WaitInfo};
use super::timer::now_ns;

/// Frames at most per coroutine.
const MAX_FRAMES: usize = 64;

/// The return addresses of the calling coroutine's stack. Cheap and allocation-light, since it
/// runs on the coroutine's (possibly small) stack; symbols are resolved later, on the monitor
/// thread, by [`resolve_trace`].
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

/// One resolved frame of a backtrace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The function (demangled), or the address when no symbol covers it.
    pub function: String,
    /// Source file and line, when debug information has them.
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Symbolises a coroutine's return addresses, without corun's own frames: from the call the
/// coroutine is suspended in (e.g. `recv`) down to the closure given to `corun::spawn`.
pub fn resolve_trace(ips: &[usize]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for &ip in ips {
        let mut resolved = false;
        backtrace::resolve(ip as *mut std::ffi::c_void, |symbol| {
            frames.push(Frame {
                function: symbol
                    .name()
                    .map_or_else(|| format!("{ip:#x}"), |n| format!("{n:#}")),
                file: symbol.filename().map(|f| f.display().to_string()),
                line: symbol.lineno(),
            });
            resolved = true;
        });
        if !resolved {
            frames.push(Frame {
                function: format!("{ip:#x}"),
                file: None,
                line: None,
            });
        }
    }
    // The coroutine's frames start below corun's own: the capture, the switch and the hook,
    // which every suspension goes through (`hooks::guard`); the first frame kept is the
    // interposed libc function itself (e.g. `recv`). A trace taken from a signal (a stuck
    // worker) starts with the handler and the signal frame, before the running code.
    let start = frames
        .iter()
        .rposition(|f| {
            f.function.starts_with("corun_hook::hooks::guard")
                || f.function.starts_with("corun_hook::runtime::stuck::")
                || f.function == "__restore_rt"
        })
        .or_else(|| {
            frames.iter().rposition(|f| {
                f.function.starts_with("corun_hook::runtime::")
                    && !f
                        .function
                        .starts_with("corun_hook::runtime::task::Task::new")
            })
        })
        .map_or(0, |i| i + 1);
    // They end where the coroutine began: the front-end's catch_unwind around the user's
    // closure (below that: corun's entry, the trampoline, then the worker's stack).
    let end = frames[start..]
        .iter()
        .position(|f| {
            let symbol = f.function.as_str();
            symbol.contains("core::panic::unwind_safe")
                || symbol.starts_with("corun::spawn::run")
                || symbol.starts_with("corun_hook::runtime::task::Task::new")
                || symbol.starts_with("corun::coroutine::entry")
                || symbol == "corun_coroutine_trampoline"
        })
        .map_or(frames.len(), |i| start + i);
    frames.truncate(end);
    frames.drain(..start);
    frames
}

/// A backtrace as the text dump shows it, indented under its coroutine.
pub fn format_frames(frames: &[Frame]) -> String {
    let mut out = String::new();
    for frame in frames {
        let _ = writeln!(out, "      {}", frame.function);
        if let Some(file) = &frame.file {
            match frame.line {
                Some(line) => {
                    let _ = writeln!(out, "        at {file}:{line}");
                }
                None => {
                    let _ = writeln!(out, "        at {file}");
                }
            }
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

/// What a wait is, in words.
pub fn describe_wait(info: WaitInfo) -> String {
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
        WaitInfo::Futex {
            addr,
            deadline,
            shared,
        } => {
            format!(
                "waiting on {}futex word {addr:#x} (a lock, condvar or park){}",
                if shared { "process-shared " } else { "" },
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
    label_of(task.id(), task.name().as_deref())
}

fn label_of(id: u64, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("coroutine {id} '{name}'"),
        None => format!("coroutine {id}"),
    }
}

/// What a coroutine was doing when the dump was taken.
#[derive(Debug, Clone, Copy)]
pub enum State {
    /// Spawned; no worker has started it yet.
    NotStarted,
    /// Queued to run on `worker`.
    Runnable { worker: usize },
    /// Running on `worker` for `for_ns` (if known), maybe inside a passed-through call.
    Running {
        worker: usize,
        for_ns: Option<u64>,
        call: Option<&'static str>,
    },
    /// Parked on `worker`, waiting for `wait` since `for_ns` ago.
    Parked {
        worker: usize,
        wait: WaitInfo,
        for_ns: u64,
    },
}

/// One coroutine in a dump, as seen when the dump was requested.
pub struct Entry {
    pub id: u64,
    pub name: Option<String>,
    pub state: State,
    /// Return addresses of its stack, when its worker recorded them in time.
    pub trace: Option<Vec<usize>>,
    /// The worker of a started, suspended coroutine that did not answer the trace request
    /// in time (so there is no backtrace).
    pub trace_missing: Option<usize>,
}

impl Entry {
    /// The "coroutine 7 'name' — state" line of the text dump.
    pub fn header(&self) -> String {
        let label = label_of(self.id, self.name.as_deref());
        let state = match self.state {
            State::NotStarted => "not started yet".to_owned(),
            State::Runnable { worker } => format!("runnable on worker {worker}"),
            State::Running {
                worker,
                for_ns,
                call,
            } => {
                let ran = for_ns
                    .map(|ns| format!(" for {:.3} s", ns as f64 / 1e9))
                    .unwrap_or_default();
                let call = call.map(|c| format!(", inside `{c}`")).unwrap_or_default();
                format!("running on worker {worker}{ran}{call}")
            }
            State::Parked {
                worker,
                wait,
                for_ns,
            } => format!(
                "parked on worker {worker} for {:.3} s: {}",
                for_ns as f64 / 1e9,
                describe_wait(wait)
            ),
        };
        format!("{label} — {state}")
    }
}

/// Takes the state of every live task now (cheap: no symbols yet). `traced` says which
/// workers answered the trace request (their suspended coroutines have fresh backtraces).
pub fn snapshot(tasks: &[std::sync::Arc<Task>], traced: &[bool]) -> Vec<Entry> {
    let coarse_now = super::timer::coarse_now_ns();
    tasks
        .iter()
        .map(|task| {
            let worker = task.worker();
            let state = if !task.started() {
                State::NotStarted
            } else if task.is_running() {
                // How long it has run is the stuck-worker guard's business (it warns); the
                // worker only counts switches.
                State::Running {
                    worker,
                    for_ns: None,
                    call: task.in_call(),
                }
            } else if task.is_parked() {
                State::Parked {
                    worker,
                    wait: task.wait_info(),
                    for_ns: match task.waiting_since() {
                        0 => 0,
                        since => coarse_now.saturating_sub(since),
                    },
                }
            } else {
                State::Runnable { worker }
            };
            let fresh = traced.get(worker).copied().unwrap_or(false);
            let trace = task.take_trace().filter(|_| fresh);
            let trace_missing =
                (trace.is_none() && task.started() && !task.is_running()).then_some(worker);
            Entry {
                id: task.id(),
                name: task.name(),
                state,
                trace,
                trace_missing,
            }
        })
        .collect()
}

/// Renders a dump as text (resolving symbols, which is the slow part).
pub fn render(entries: &[Entry], workers: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "corun: coroutine dump: {} live coroutine(s), {workers} worker(s)",
        entries.len()
    );
    for entry in entries {
        let _ = writeln!(out, "{}", entry.header());
        if let Some(ips) = &entry.trace {
            out.push_str(&format_frames(&resolve_trace(ips)));
        }
        if let Some(worker) = entry.trace_missing {
            let _ = writeln!(
                out,
                "      (no backtrace: worker {worker} did not answer in time)"
            );
        }
    }
    out.push_str("corun: end of coroutine dump\n");
    out
}
