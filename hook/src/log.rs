//! The runtime's own diagnostics: one line each on stderr, filtered by `CORUN_LOG`
//! (`error`, `warn` (default), `info`, `debug`). Written with a raw `write(2)`, never through
//! `println!` or an interposed libc call.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};

use corun::raw_syscall;

/// How much the runtime says.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Level {
    /// Only errors that end the program.
    Error = 0,
    /// Also problems the runtime works around (the default).
    Warn = 1,
    /// Also what the runtime decided at start.
    Info = 2,
    /// Also per-event detail.
    Debug = 3,
}

impl Level {
    /// Parses a `CORUN_LOG` value.
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);

/// Sets the level (from the configuration).
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// A line buffer that does not allocate (usable where allocation is unwise).
struct Line {
    bytes: [u8; 1024],
    len: usize,
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Prints `corun: <level>: <message>` if `level` is enabled.
pub fn emit(level: Level, message: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut line = Line {
        bytes: [0; 1024],
        len: 0,
    };
    let _ = write!(line, "corun: {}: {}", level.label(), message);
    if line.len == line.bytes.len() {
        line.len -= 1;
    }
    line.bytes[line.len] = b'\n';
    raw_syscall::write_all(2, &line.bytes[..=line.len]);
}

/// Prints `corun: <message>` and ends the process with exit status 2. For configuration errors
/// and impossible situations; never returns.
pub fn fatal(message: fmt::Arguments<'_>) -> ! {
    let mut line = Line {
        bytes: [0; 1024],
        len: 0,
    };
    let _ = write!(line, "corun: {message}");
    if line.len == line.bytes.len() {
        line.len -= 1;
    }
    line.bytes[line.len] = b'\n';
    raw_syscall::write_all(2, &line.bytes[..=line.len]);
    // SAFETY: _exit ends the process immediately; no invariants left to keep.
    unsafe { libc::_exit(2) }
}

/// Logs at warn level.
pub fn warn(message: fmt::Arguments<'_>) {
    emit(Level::Warn, message)
}

/// Logs at info level.
pub fn info(message: fmt::Arguments<'_>) {
    emit(Level::Info, message)
}

/// Logs at debug level.
pub fn debug(message: fmt::Arguments<'_>) {
    emit(Level::Debug, message)
}
