//! The `CORUN_*` environment variables, read and validated once at start.
//!
//! A bad value stops the program with one line naming the variable, the value and what is
//! accepted (never a panic).

use std::sync::OnceLock;

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
    /// Diagnostics level (`CORUN_LOG`; default `warn`).
    pub log: Level,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// The configuration, read from the environment on first use.
pub fn get() -> &'static Config {
    CONFIG.get_or_init(|| match read(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(message) => log::fatal(format_args!("{message}")),
    })
}

/// Reads the configuration through `var` (the environment, or a map in tests).
pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let workers = match var("CORUN_WORKERS") {
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_WORKERS),
        Some(text) => parse_count(&text)
            .filter(|n| (1..=MAX_WORKERS).contains(n))
            .ok_or_else(|| {
                format!(
                    "CORUN_WORKERS={text:?} is not valid: expected a whole number from 1 to {MAX_WORKERS}"
                )
            })?,
    };
    let stack_size = match var("CORUN_STACK_SIZE") {
        None => corun::coroutine::DEFAULT_STACK_SIZE,
        Some(text) => parse_size(&text)
            .filter(|n| (16 * 1024..=1 << 30).contains(n))
            .ok_or_else(|| {
                format!(
                    "CORUN_STACK_SIZE={text:?} is not valid: expected a size from 16K to 1G, in \
                     bytes or with a K, M or G suffix (e.g. 262144, 256K, 1M)"
                )
            })?,
    };
    let log = match var("CORUN_LOG") {
        None => Level::Warn,
        Some(text) => Level::parse(&text).ok_or_else(|| {
            format!("CORUN_LOG={text:?} is not valid: expected one of error, warn, info, debug")
        })?,
    };
    Ok(Config {
        workers,
        stack_size,
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
