//! The monitor thread: coroutine dumps on a signal, and the stuck-worker guard.
//!
//! It also trims the stack slabs: idle stacks left over from a burst of coroutines give their
//! memory back (`MADV_DONTNEED`; their thread areas retire first), half of the excess over 256
//! per size class every second.
//!
//! **Stuck workers.** A worker that has run one coroutine for longer than `CORUN_STUCK_MS`
//! without switching (a CPU loop, or a blocking call corun does not intercept) stalls the
//! coroutines pinned to it. The monitor warns once per incident, naming the coroutine (and the
//! interposed call it is in, if any). Coroutines that have not started are never pinned: they
//! wait in the injector for any free worker, and if no active worker is free the monitor
//! starts a spare one. Started coroutines of the stuck worker are held, unless
//! `CORUN_MIGRATE=1`: then the worker itself (queue, timers, reactor) is handed to a fresh
//! thread, which resumes them there (moving them across threads; see README for the
//! thread-local caveat).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::timer::now_ns;
use super::{dump, registry, Runtime};
use crate::config;
use crate::log;
use crate::sync::{futex_wait_timeout, futex_wake};
use corun::raw_syscall;

/// Bumped by the dump signal handler.
static DUMP_REQUESTS: AtomicU32 = AtomicU32::new(0);
/// Rung (bumped) by signal handlers that have work for the monitor; it waits on this word.
static BELL: AtomicU32 = AtomicU32::new(0);

/// Wakes the monitor to look at dump requests and signals that arrived (async-signal-safe:
/// an atomic add and a raw futex wake).
pub fn ring() {
    BELL.fetch_add(1, Ordering::SeqCst);
    futex_wake(&BELL, 1);
}
/// Dumps written so far.
static DUMPS_PRINTED: AtomicU64 = AtomicU64::new(0);

/// How many coroutine dumps have been written (for stats).
pub fn dumps_printed() -> u64 {
    DUMPS_PRINTED.load(Ordering::SeqCst)
}

/// Pooled stacks per size class the monitor leaves alone when it trims the pool.
const POOL_KEEP: usize = 256;
/// How often the monitor trims the stack slabs.
const TRIM_EVERY_NS: u64 = 1_000_000_000;

/// Starts the monitor: dumps, the stuck-worker guard, and trimming the stack slabs.
pub fn start(runtime: &'static Runtime) {
    super::timer::tick_coarse_clock();
    let config = config::get();
    if let Some(signal) = config.dump_signal {
        install_dump_handler(signal);
    }
    if config.control {
        super::control::open();
    }
    if config.stuck_ms > 0 {
        super::stuck::install();
    }
    let spawned = super::threads::spawn("corun-sysmon".into(), move || monitor(runtime));
    if let Err(err) = spawned {
        log::warn(format_args!(
            "cannot start the monitor thread: {err}; no dumps or stuck-worker warnings"
        ));
    }
}

fn install_dump_handler(signal: i32) {
    // SAFETY: a zeroed sigaction with a plain handler is valid; the handler is async-signal-safe
    // (one atomic add and one raw futex wake).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_dump_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        // The real one: the hook's own `sigaction` would put the trampoline in front.
        if crate::real::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            log::warn(format_args!(
                "cannot install the dump handler for signal {signal}"
            ));
        }
    }
}

extern "C" fn on_dump_signal(_: libc::c_int) {
    DUMP_REQUESTS.fetch_add(1, Ordering::SeqCst);
    ring();
}

fn monitor(runtime: &'static Runtime) {
    // The kernel must not pick the monitor for the process's signals (the dump signal's
    // handler runs on another thread, and rings the monitor).
    crate::signal::block_all_on_this_thread();
    let config = config::get();
    let mut tick = if config.stuck_ms == 0 {
        Duration::from_millis(250)
    } else {
        Duration::from_millis((config.stuck_ms / 4).clamp(5, 100))
    };
    let mut trace = config.trace_ms.map(|ms| {
        tick = tick.min(Duration::from_millis(ms / 2));
        super::trace::Trace::new(ms, runtime)
    });
    let mut last_trim = now_ns();
    let mut dumps_done = 0;
    // Per worker slot: what the worker ran when last looked at, since when, and whether that
    // incident was reported.
    let mut watch = vec![Watch::default(); runtime.all_workers().len()];
    let mut rung = BELL.load(Ordering::SeqCst);
    let mut deadlock = super::deadlock::Detector::default();
    loop {
        let bell = BELL.load(Ordering::SeqCst);
        if bell == rung {
            futex_wait_timeout(&BELL, bell, tick);
        }
        rung = BELL.load(Ordering::SeqCst);
        super::timer::tick_coarse_clock();
        crate::signal::interrupt::deliver();
        let requests = DUMP_REQUESTS.load(Ordering::SeqCst);
        if requests != dumps_done {
            dumps_done = requests;
            let text = take_dump(runtime, config.dump_json);
            raw_syscall::write_all(2, text.as_bytes());
        }
        super::control::serve_pending(|json| take_dump(runtime, json));
        deadlock.check(runtime);
        if let Some(trace) = &mut trace {
            trace.tick(runtime);
        }
        if config.stuck_ms > 0 {
            check_stuck(runtime, config.stuck_ms, config.migrate, &mut watch);
        }
        if now_ns().saturating_sub(last_trim) >= TRIM_EVERY_NS {
            last_trim = now_ns();
            corun::coroutine::trim_pool(POOL_KEEP);
        }
    }
}

/// Asks every worker for backtraces (waiting up to a second for each), then renders the dump
/// as text or JSON.
pub fn take_dump(runtime: &'static Runtime, json: bool) -> String {
    let workers = runtime.workers();
    let requests: Vec<u32> = workers.iter().map(|w| w.request_traces()).collect();
    let deadline = now_ns() + 1_000_000_000;
    let mut traced = vec![false; runtime.all_workers().len()];
    for (worker, request) in workers.iter().zip(requests) {
        loop {
            let done = worker.traces_done().load(Ordering::SeqCst);
            if done == request {
                traced[worker.index()] = true;
                break;
            }
            let now = now_ns();
            if now >= deadline {
                break;
            }
            futex_wait_timeout(
                worker.traces_done(),
                done,
                Duration::from_nanos((deadline - now).min(50_000_000)),
            );
        }
    }
    let entries = dump::snapshot(&registry::snapshot(), &traced);
    let text = if json {
        let config = config::get();
        let info = super::dump_json::RuntimeInfo {
            workers: workers.len(),
            spare_workers: workers.len().saturating_sub(config.workers),
            identity: if crate::identity::enabled() {
                "isolated"
            } else {
                "shared"
            },
            counters: super::counters::gather(Some(runtime)),
        };
        super::dump_json::render(&entries, &info)
    } else {
        dump::render(&entries, workers.len())
    };
    DUMPS_PRINTED.fetch_add(1, Ordering::SeqCst);
    text
}

/// What the monitor last saw a worker do.
#[derive(Clone, Copy, Default)]
struct Watch {
    /// The worker's resume count then (it changes on every switch).
    switches: u64,
    /// When that count was first seen while the worker was running a task (monotonic ns).
    since: u64,
    reported: bool,
}

/// Warns about (and works around) workers stuck in one coroutine: the same task running with
/// the same resume count for longer than the threshold.
fn check_stuck(runtime: &'static Runtime, stuck_ms: u64, migrate: bool, watch: &mut [Watch]) {
    let threshold = stuck_ms * 1_000_000;
    let now = now_ns();
    for worker in runtime.workers() {
        let seen = &mut watch[worker.index()];
        let Some((task, switches)) = worker.running() else {
            seen.since = 0;
            worker.set_stuck(false);
            continue;
        };
        if seen.since == 0 || seen.switches != switches {
            worker.set_stuck(false);
            *seen = Watch {
                switches,
                since: now,
                reported: false,
            };
            continue;
        }
        if now.saturating_sub(seen.since) < threshold || seen.reported {
            continue;
        }
        seen.reported = true;
        worker.set_stuck(true);
        super::counters::note_stuck();
        let since = seen.since;
        let mut message = format!(
            "worker {} has run {} for {} ms without switching",
            worker.index(),
            dump::label(task),
            now.saturating_sub(since) / 1_000_000
        );
        match task.in_call() {
            Some(call) => message.push_str(&format!(
                ", inside `{call}`, which passes through to libc there (corun cannot suspend it)"
            )),
            None => {
                message.push_str(" (a CPU-bound loop, or a blocking call corun does not intercept)")
            }
        }
        if migrate && runtime.hand_off(worker) {
            // The worker itself (queue, timers, reactor) went to a fresh thread, which also
            // takes new coroutines.
            message.push_str("; its other coroutines move to a new thread (CORUN_MIGRATE=1)");
            if config::get().threads {
                // Routine in threads mode (a thread reading a file, a CPU loop): said at info
                // level, without the stack (taking it would hold the monitor up to 200 ms,
                // while other workers may get stuck meanwhile).
                log::info(format_args!("{message}"));
                continue;
            }
        } else {
            if migrate {
                message.push_str(&format!(
                    "; {} threads are stuck after hand-offs already, the most there may be",
                    super::MAX_HANDED_OFF
                ));
            }
            let others_busy = runtime
                .workers()
                .iter()
                .all(|w| w.running().is_some() || std::ptr::eq(w, worker));
            if others_busy {
                match runtime.start_spare() {
                    Some(index) => message.push_str(&format!(
                        "; new coroutines now also run on spare worker {index}"
                    )),
                    None => message.push_str("; no spare worker is left for new coroutines"),
                }
            } else {
                message.push_str("; new coroutines go to the other workers");
            }
            message.push_str(&format!(
                "; its other started coroutines ({} runnable now) are held until it switches \
                 (CORUN_MIGRATE=1 would move them to a new thread)",
                worker.stats().runnable
            ));
        }
        // The one-line warning first: taking and symbolising the stack can take a while (the
        // debug info is read on first use), and the program may be gone by then.
        log::warn(format_args!("{message}"));
        let stack = where_it_runs(worker, switches);
        // Below the one-line warning (which has a bounded buffer), at the same level.
        if !stack.is_empty() && log::enabled(log::Level::Warn) {
            raw_syscall::write_all(2, stack.as_bytes());
        }
    }
}

/// The stuck coroutine's stack (or the system call it is blocked in), for the warning, if the
/// worker is still in the same coroutine.
fn where_it_runs(worker: &super::worker::Worker, switches: u64) -> String {
    let seen = super::stuck::look_at(worker.tid(), Duration::from_millis(200));
    let same = worker.running().is_some_and(|(_, now)| now == switches);
    match seen {
        super::stuck::Seen::Stack(ips) if same => format!(
            "  where it runs now:\n{}",
            dump::format_frames(&dump::resolve_trace(&ips))
        ),
        super::stuck::Seen::Syscall(nr) => format!(
            "  it is blocked in system call {nr} (no stack taken, so as not to interrupt it)\n"
        ),
        _ => String::new(),
    }
}
