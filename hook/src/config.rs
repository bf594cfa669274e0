//! The `CORUN_*` environment variables, read and validated once when the library loads.
//!
//! A bad value stops the program with one line naming the variable, the value and what is
//! accepted (never a panic). An unknown `CORUN_*` variable (a typo, likely) gets a warning.

use std::sync::OnceLock;

use corun::coroutine::GuardMode;

use crate::log::{self, Level};

/// The most workers a runtime may have (the reactor tracks fd registrations in a 64-bit mask).
pub const MAX_WORKERS: usize = 64;

/// The runtime's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads (`CORUN_WORKERS`; default: the number of CPUs available).
    pub workers: usize,
    /// Default coroutine stack size in bytes (`CORUN_STACK_SIZE`; default 256 KiB).
    pub stack_size: usize,
    /// The most idle stacks per size class that keep their memory (`CORUN_STACK_POOL`;
    /// default 16384). The monitor gives back the memory of idle stacks beyond 256 per class,
    /// half of them per second.
    pub stack_pool: usize,
    /// How stack guard pages are made (`CORUN_GUARD`: auto, madvise or mprotect; default auto).
    pub guard: GuardMode,
    /// Threads of the blocking pool (`CORUN_BLOCKING_THREADS`; default 8).
    pub blocking_threads: usize,
    /// Warn when a worker runs one coroutine longer than this, in ms; 0 turns the guard off
    /// (`CORUN_STUCK_MS`; default 100, [`THREADS_STUCK_MS`] in threads mode).
    pub stuck_ms: u64,
    /// Whether a stuck worker's started coroutines may move to a spare worker
    /// (`CORUN_MIGRATE`; default off, on in threads mode: Go's hand-off).
    pub migrate: bool,
    /// The signal that prints a coroutine dump, if dumps are on (`CORUN_DUMP`,
    /// `CORUN_DUMP_SIGNAL`; default off, SIGQUIT).
    pub dump_signal: Option<i32>,
    /// Diagnostics level (`CORUN_LOG`; default `warn`).
    pub log: Level,
    /// Whether each coroutine gets its own thread identity (`CORUN_TLS=isolated`, the
    /// default) or shares its worker's (`shared`).
    pub isolated_tls: bool,
    /// Whether an idle worker takes runnable, started coroutines from a busy one
    /// (`CORUN_STEAL=0|1`; `None` when unset: off). Only with isolated identity, which makes
    /// moving a started coroutine sound: `Some(true)` with `CORUN_TLS=shared` is ignored with
    /// a warning.
    pub steal: Option<bool>,
    /// Whether the program's own threads become coroutines (`CORUN_THREADS=1`, what
    /// `corun run --threads` sets; default off): see `crate::threads`.
    pub threads: bool,
    /// The format of signal-triggered dumps (`CORUN_DUMP_FORMAT`: text or json; default text).
    pub dump_json: bool,
    /// Whether the process answers `corun dump PID` on its control socket (`CORUN_CONTROL`;
    /// default 1).
    pub control: bool,
    /// What a detected deadlock does (`CORUN_DEADLOCK`: warn, abort or off; default warn).
    pub deadlock: Deadlock,
    /// Print a scheduler trace line every this many ms (`CORUN_TRACE=sched:MS`; default off).
    pub trace_ms: Option<u64>,
}

/// What the runtime does when every coroutine waits for something nothing can bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadlock {
    /// Print the report and the dump once, and let the program sit.
    Warn,
    /// Print them, then exit with status 2 (as Go does).
    Abort,
    /// Do not look.
    Off,
}

/// Every variable the runtime reads (the launcher's `CORUN_HOOK` too, so it is not "unknown").
pub const VARIABLES: [&str; 18] = [
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
    "CORUN_DUMP_FORMAT",
    "CORUN_CONTROL",
    "CORUN_DEADLOCK",
    "CORUN_TRACE",
    "CORUN_HOOK",
];

/// The stuck threshold in threads mode, where a stuck worker hands its coroutines off.
pub const THREADS_STUCK_MS: u64 = 20;

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration, read from the environment on first use.
pub fn get() -> &'static Config {
    CONFIG.get_or_init(|| {
        let config = match read(|name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(message) => log::fatal(format_args!("{message}")),
        };
        log::set_level(config.log);
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("CORUN_")
                && !name.starts_with("CORUN_TEST_")
                && !VARIABLES.contains(&name)
            {
                log::warn(format_args!(
                    "ignoring unknown variable {name} (known: {})",
                    VARIABLES.join(", ")
                ));
            }
        }
        config
    })
}

/// One variable: absent → `default`; present → `parse` or an error naming what is accepted.
fn var<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    accepted: &str,
    default: impl FnOnce() -> T,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, String> {
    match lookup(name) {
        None => Ok(default()),
        Some(text) => {
            parse(&text).ok_or_else(|| format!("{name}={text:?} is not valid: expected {accepted}"))
        }
    }
}

/// Reads the configuration through `lookup` (the environment, or a map in tests).
pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let workers = var(
        &lookup,
        "CORUN_WORKERS",
        &format!("a whole number from 1 to {MAX_WORKERS}"),
        || {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_WORKERS)
        },
        |t| parse_count(t).filter(|n| (1..=MAX_WORKERS).contains(n)),
    )?;
    let stack_size = var(
        &lookup,
        "CORUN_STACK_SIZE",
        "a size from 16K to 1G, in bytes or with a K, M or G suffix (e.g. 262144, 256K, 1M)",
        || corun::coroutine::DEFAULT_STACK_SIZE,
        |t| parse_size(t).filter(|n| (16 * 1024..=1 << 30).contains(n)),
    )?;
    let stack_pool = var(
        &lookup,
        "CORUN_STACK_POOL",
        "a whole number from 0 to 1000000",
        || 16384,
        |t| parse_count(t).filter(|n| *n <= 1_000_000),
    )?;
    let guard = var(
        &lookup,
        "CORUN_GUARD",
        "auto, madvise or mprotect",
        || GuardMode::Auto,
        |t| match t {
            "auto" => Some(GuardMode::Auto),
            "madvise" => Some(GuardMode::Madvise),
            "mprotect" => Some(GuardMode::Mprotect),
            _ => None,
        },
    )?;
    let blocking_threads = var(
        &lookup,
        "CORUN_BLOCKING_THREADS",
        "a whole number from 1 to 256",
        || 8,
        |t| parse_count(t).filter(|n| (1..=256).contains(n)),
    )?;
    let stuck_ms = var(
        &lookup,
        "CORUN_STUCK_MS",
        "a whole number of milliseconds from 0 (never warn) to 3600000",
        || None,
        |t| {
            parse_count(t)
                .filter(|n| *n <= 3_600_000)
                .map(|n| Some(n as u64))
        },
    )?;
    let migrate = var(
        &lookup,
        "CORUN_MIGRATE",
        "0 or 1",
        || None,
        |t| parse_flag(t).map(Some),
    )?;
    let dump = var(&lookup, "CORUN_DUMP", "0 or 1", || false, parse_flag)?;
    let dump_signal = var(
        &lookup,
        "CORUN_DUMP_SIGNAL",
        "QUIT, USR1, USR2 (with or without SIG) or a signal number from 1 to 64 other than KILL, STOP, SEGV, BUS, ILL, FPE",
        || libc::SIGQUIT,
        parse_signal,
    )?;
    let log = var(
        &lookup,
        "CORUN_LOG",
        "one of error, warn, info, debug",
        || Level::Warn,
        Level::parse,
    )?;
    let isolated_tls = var(
        &lookup,
        "CORUN_TLS",
        "isolated or shared",
        || true,
        |t| match t {
            "isolated" => Some(true),
            "shared" => Some(false),
            _ => None,
        },
    )?;
    let steal = var(
        &lookup,
        "CORUN_STEAL",
        "0 or 1",
        || None,
        |t| parse_flag(t).map(Some),
    )?;
    let dump_json = var(
        &lookup,
        "CORUN_DUMP_FORMAT",
        "text or json",
        || false,
        |t| match t {
            "text" => Some(false),
            "json" => Some(true),
            _ => None,
        },
    )?;
    let control = var(&lookup, "CORUN_CONTROL", "0 or 1", || true, parse_flag)?;
    let deadlock = var(
        &lookup,
        "CORUN_DEADLOCK",
        "warn, abort or off",
        || Deadlock::Warn,
        |t| match t {
            "warn" => Some(Deadlock::Warn),
            "abort" => Some(Deadlock::Abort),
            "off" => Some(Deadlock::Off),
            _ => None,
        },
    )?;
    let trace_ms = var(
        &lookup,
        "CORUN_TRACE",
        "sched:MS, MS a whole number of milliseconds from 10 to 3600000",
        || None,
        |t| {
            let ms = parse_count(t.strip_prefix("sched:")?)?;
            (10..=3_600_000).contains(&ms).then_some(Some(ms as u64))
        },
    )?;
    let threads = var(&lookup, "CORUN_THREADS", "0 or 1", || false, parse_flag)?;
    // In threads mode a worker stuck in a pass-through call hands its coroutines over by
    // default: coroutine threads have their own identity, so moving them is sound.
    let migrate = migrate.unwrap_or(threads);
    // There a hand-off is routine, so it comes sooner (as Go's sysmon retakes a processor
    // after 10–20 ms).
    let stuck_ms = stuck_ms.unwrap_or(if threads { THREADS_STUCK_MS } else { 100 });
    Ok(Config {
        threads,
        dump_json,
        control,
        deadlock,
        trace_ms,
        isolated_tls,
        steal,
        workers,
        stack_size,
        stack_pool,
        guard,
        blocking_threads,
        stuck_ms,
        migrate,
        dump_signal: dump.then_some(dump_signal),
        log,
    })
}

/// A plain decimal count.
fn parse_count(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A byte size: decimal, optionally followed by K, M or G (powers of 1024).
fn parse_size(text: &str) -> Option<usize> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    parse_count(digits)?.checked_mul(1usize << shift)
}

fn parse_flag(text: &str) -> Option<bool> {
    match text {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// A signal for dumps: a name or a number, not one the runtime or the kernel needs for itself.
fn parse_signal(text: &str) -> Option<i32> {
    let name = text.strip_prefix("SIG").unwrap_or(text);
    let signal = match name {
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => parse_count(name).and_then(|n| i32::try_from(n).ok())?,
    };
    let forbidden = [
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
    ];
    ((1..=64).contains(&signal) && !forbidden.contains(&signal)).then_some(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, String> {
        read(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let config = with(&[]).unwrap();
        assert!((1..=MAX_WORKERS).contains(&config.workers));
        assert_eq!(config.stack_size, 256 * 1024);
        assert_eq!(config.stack_pool, 16384);
        assert_eq!(config.guard, GuardMode::Auto);
        assert_eq!(config.stuck_ms, 100);
        assert!(!config.migrate);
        assert_eq!(config.steal, None);
        assert!(!config.threads);
        assert!(config.isolated_tls);
        assert_eq!(config.dump_signal, None);
        assert_eq!(config.log, Level::Warn);
        assert!(!config.dump_json);
        assert!(config.control);
        assert_eq!(config.deadlock, Deadlock::Warn);
        assert_eq!(config.trace_ms, None);
    }

    #[test]
    fn good_values() {
        let config = with(&[
            ("CORUN_WORKERS", "3"),
            ("CORUN_STACK_SIZE", "1M"),
            ("CORUN_STACK_POOL", "0"),
            ("CORUN_GUARD", "mprotect"),
            ("CORUN_STUCK_MS", "0"),
            ("CORUN_MIGRATE", "1"),
            ("CORUN_DUMP", "1"),
            ("CORUN_DUMP_SIGNAL", "SIGUSR1"),
            ("CORUN_LOG", "debug"),
            ("CORUN_TLS", "shared"),
            ("CORUN_STEAL", "1"),
            ("CORUN_THREADS", "1"),
            ("CORUN_DUMP_FORMAT", "json"),
            ("CORUN_CONTROL", "0"),
            ("CORUN_DEADLOCK", "abort"),
            ("CORUN_TRACE", "sched:250"),
        ])
        .unwrap();
        assert!(config.dump_json);
        assert!(!config.control);
        assert_eq!(config.deadlock, Deadlock::Abort);
        assert_eq!(config.trace_ms, Some(250));
        assert_eq!(config.workers, 3);
        assert_eq!(config.stack_size, 1 << 20);
        assert_eq!(config.stack_pool, 0);
        assert_eq!(config.guard, GuardMode::Mprotect);
        assert_eq!(config.stuck_ms, 0);
        assert!(config.migrate);
        assert_eq!(config.dump_signal, Some(libc::SIGUSR1));
        assert_eq!(config.log, Level::Debug);
        assert!(!config.isolated_tls);
        assert_eq!(config.steal, Some(true));
        assert!(config.threads);
    }

    #[test]
    fn threads_mode_hands_off_stuck_workers_by_default() {
        assert!(with(&[("CORUN_THREADS", "1")]).unwrap().migrate);
        assert_eq!(
            with(&[("CORUN_THREADS", "1")]).unwrap().stuck_ms,
            THREADS_STUCK_MS
        );
        assert_eq!(
            with(&[("CORUN_THREADS", "1"), ("CORUN_STUCK_MS", "300")])
                .unwrap()
                .stuck_ms,
            300
        );
        assert!(
            !with(&[("CORUN_THREADS", "1"), ("CORUN_MIGRATE", "0")])
                .unwrap()
                .migrate
        );
        assert!(!with(&[]).unwrap().migrate);
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_accepted() {
        for (name, value, accepted) in [
            ("CORUN_WORKERS", "0", "from 1 to 64"),
            ("CORUN_WORKERS", "abc", "from 1 to 64"),
            ("CORUN_WORKERS", "65", "from 1 to 64"),
            ("CORUN_STACK_SIZE", "12x", "16K to 1G"),
            ("CORUN_STACK_SIZE", "1K", "16K to 1G"),
            ("CORUN_STACK_POOL", "-1", "0 to 1000000"),
            ("CORUN_GUARD", "pkey", "auto, madvise or mprotect"),
            ("CORUN_GUARD", "", "auto, madvise or mprotect"),
            ("CORUN_STUCK_MS", "1.5", "milliseconds"),
            ("CORUN_MIGRATE", "yes", "0 or 1"),
            ("CORUN_DUMP_SIGNAL", "KILL", "QUIT, USR1"),
            ("CORUN_DUMP_SIGNAL", "11", "QUIT, USR1"),
            ("CORUN_LOG", "verbose", "error, warn"),
            ("CORUN_TLS", "private", "isolated or shared"),
            ("CORUN_STEAL", "on", "0 or 1"),
            ("CORUN_THREADS", "yes", "0 or 1"),
            ("CORUN_DUMP_FORMAT", "yaml", "text or json"),
            ("CORUN_CONTROL", "off", "0 or 1"),
            ("CORUN_DEADLOCK", "panic", "warn, abort or off"),
            ("CORUN_TRACE", "sched", "sched:MS"),
            ("CORUN_TRACE", "sched:5", "from 10"),
            ("CORUN_TRACE", "gc:100", "sched:MS"),
        ] {
            let err = with(&[(name, value)]).unwrap_err();
            assert!(
                err.starts_with(&format!("{name}=\"{value}\" is not valid")),
                "{err}"
            );
            assert!(err.contains(accepted), "{err}");
        }
    }
}
