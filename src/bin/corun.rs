//! `corun`: runs a program with the corun runtime preloaded.
//!
//! ```text
//! corun run [--threads] [--workers N] [--compact-tls] [--] PROGRAM [ARGS…]
//! corun dump PID [--json]
//! ```
//!
//! `run` finds `libcorun_hook.so`, puts it first in `LD_PRELOAD` (keeping what was there), sets
//! `CORUN_WORKERS` and glibc's static-TLS tunables if asked, and replaces itself with the
//! program. `dump` asks a running corun program for its coroutine dump, through the program's
//! control socket (see `corun::control`).

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[path = "corun/dump.rs"]
mod dump;

const HOOK_FILE: &str = "libcorun_hook.so";

const HELP: &str = "\
corun: run a program with the corun runtime preloaded

Usage:
  corun run [--threads] [--workers N] [--compact-tls] [--] PROGRAM [ARGS...]
  corun dump PID [--json]
  corun --help | --version

Inside the program, every closure given to corun::spawn runs as a coroutine, and blocking std
calls in it (sockets, sleeps, std::sync, DNS, pipes, child processes) suspend the coroutine
instead of the OS thread.

corun dump PID prints the coroutine dump of running program PID (text, or one JSON document
with --json) without stopping it; only the program's user (or root) may. It works for every
program whose runtime has started, unless it was run with CORUN_CONTROL=0.

Options of run:
  --threads       threads become coroutines (sets CORUN_THREADS=1): every pthread_create
                  of the program (std::thread::spawn, thread::scope, C pthreads) starts a
                  coroutine with its own thread identity; the program need not use corun
  --workers N     worker threads (sets CORUN_WORKERS; 1 to 64)
  --compact-tls   limit glibc's static TLS surplus to what each coroutine's thread area
                  keeps free (adds glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0 to
                  GLIBC_TUNABLES): a library dlopen'ed later that needs more initial-exec
                  TLS then fails to load instead of sharing memory with the stacks of
                  coroutines already running. Child processes inherit GLIBC_TUNABLES.
  --              end of options: everything after is the program and its arguments

Finding the runtime (libcorun_hook.so), in this order:
  1. $CORUN_HOOK, if set (the path of the library)
  2. next to the corun executable
  3. the cargo target directories next to the corun executable's (release, then debug)
The library is put first in LD_PRELOAD; entries already there are kept after it.

Environment read by the runtime (checked at start; a bad value stops the program with a
message naming the variable):
  CORUN_WORKERS=N           worker threads, 1 to 64 (default: the CPUs available)
  CORUN_STACK_SIZE=SIZE     default coroutine stack, 16K to 1G (default 256K)
  CORUN_STACK_POOL=N        most idle stacks per size class that keep their memory,
                            0 to 1000000 (default 16384; beyond 256 it is given back over time)
  CORUN_GUARD=MODE          stack guard pages: madvise (kernel guard regions, Linux 6.13+),
                            mprotect (two mappings per stack) or auto (default auto)
  CORUN_BLOCKING_THREADS=N  threads for DNS and corun::unblock, 1 to 256 (default 8)
  CORUN_STUCK_MS=MS         warn when a worker runs one coroutine longer than this, 0 = never,
                            up to 3600000 (default 100)
  CORUN_MIGRATE=0|1         let a stuck worker's started coroutines move to a spare worker
                            (default 0; see README: thread-locals move with them)
  CORUN_DUMP=0|1            print a coroutine dump on CORUN_DUMP_SIGNAL (default 0)
  CORUN_DUMP_SIGNAL=SIG     QUIT, USR1, USR2 or a number (default QUIT)
  CORUN_DUMP_FORMAT=FMT     text or json, for the signal's dumps (default text)
  CORUN_CONTROL=0|1         answer `corun dump PID` on a private control socket (default 1)
  CORUN_DEADLOCK=MODE       when every coroutine waits for something nothing can bring:
                            warn (report once), abort (report, exit 2) or off (default warn)
  CORUN_TRACE=sched:MS      print a scheduler trace line every MS ms (10 to 3600000)
  CORUN_TLS=MODE            isolated: each coroutine has its own thread identity
                            (thread_local!, ThreadId, errno); shared: coroutines share
                            their worker's (faster switch, less memory) (default isolated)
  CORUN_STEAL=0|1           idle workers take queued coroutines from busy ones (isolated
                            identity only; default 0)
  CORUN_THREADS=0|1         the program's threads become coroutines (what --threads sets;
                            isolated identity only; default 0)
  CORUN_LOG=LEVEL           error, warn, info or debug (default warn)
  CORUN_HOOK=PATH           (launcher only) where libcorun_hook.so is
";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next().as_deref().map(OsStr::to_str) {
        Some(Some("run")) => {}
        Some(Some("dump")) => return dump::main(args),
        Some(Some("--help" | "-h" | "help")) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some(Some("--version" | "-V")) => {
            println!("corun {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            return usage_error(&format!(
                "unknown command {:?}",
                other.unwrap_or("<not UTF-8>")
            ))
        }
        None => return usage_error("missing command"),
    }
    let mut workers: Option<OsString> = None;
    let mut compact_tls = false;
    let mut threads = false;
    let mut rest: Vec<OsString> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => {
                rest.extend(args.by_ref());
                break;
            }
            Some("--workers") => match args.next() {
                Some(n) => workers = Some(n),
                None => return usage_error("--workers needs a value"),
            },
            Some(s) if s.starts_with("--workers=") => {
                workers = Some(s["--workers=".len()..].into())
            }
            Some("--compact-tls") => compact_tls = true,
            Some("--threads") => threads = true,
            Some(s) if s.starts_with('-') && rest.is_empty() => {
                return usage_error(&format!("unknown option {s:?}"))
            }
            _ => {
                rest.push(arg);
                rest.extend(args.by_ref());
                break;
            }
        }
    }
    let Some((program, program_args)) = rest.split_first() else {
        return usage_error("missing PROGRAM");
    };
    if let Some(n) = &workers {
        let valid = n
            .to_str()
            .and_then(|s| s.parse::<usize>().ok())
            .is_some_and(|n| (1..=64).contains(&n));
        if !valid {
            eprintln!("corun: --workers {n:?} is not valid: expected a whole number from 1 to 64");
            return ExitCode::from(2);
        }
    }
    let hook = match find_hook() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("corun: {message}");
            return ExitCode::from(2);
        }
    };
    let mut command = Command::new(program);
    command
        .args(program_args)
        .env("LD_PRELOAD", preload_value(&hook));
    if let Some(n) = workers {
        command.env("CORUN_WORKERS", n);
    }
    if compact_tls {
        command.env("GLIBC_TUNABLES", compact_tunables());
    }
    if threads {
        command.env("CORUN_THREADS", "1");
    }
    let err = command.exec();
    eprintln!("corun: cannot run {program:?}: {err}");
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("corun: {message}\nusage: corun run [--threads] [--workers N] [--compact-tls] [--] PROGRAM [ARGS...] | corun dump PID [--json] (see corun --help)");
    ExitCode::from(2)
}

/// glibc's tunables for compact thread areas: one namespace and no optional static TLS leave a
/// static-TLS surplus of 288 bytes, exactly what the runtime keeps free in each coroutine's
/// thread area. The user's own `GLIBC_TUNABLES` come after, so theirs win where they overlap.
fn compact_tunables() -> OsString {
    let mut value = OsString::from("glibc.rtld.nns=1:glibc.rtld.optional_static_tls=0");
    if let Some(existing) = std::env::var_os("GLIBC_TUNABLES").filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}

/// `LD_PRELOAD` with `hook` first and whatever was there after it.
fn preload_value(hook: &Path) -> OsString {
    let mut value = OsString::from(hook);
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(existing);
    }
    value
}

/// Where the hook library is, or an error naming every place looked at.
fn find_hook() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CORUN_HOOK") {
        let path = PathBuf::from(path);
        return check_readable(&path)
            .map(|()| path.clone())
            .map_err(|why| format!("CORUN_HOOK={} {why}", path.display()));
    }
    let mut looked = Vec::new();
    let exe = std::env::current_exe()
        .map_err(|err| format!("cannot locate the corun executable: {err}"))?;
    if let Some(dir) = exe.parent() {
        let mut candidates = vec![dir.join(HOOK_FILE)];
        // A cargo target dir: target/<profile>/corun → target/{release,debug}/libcorun_hook.so.
        if let Some(target) = dir.parent() {
            candidates.push(target.join("release").join(HOOK_FILE));
            candidates.push(target.join("debug").join(HOOK_FILE));
        }
        for candidate in candidates {
            match check_readable(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(why) => looked.push(format!("  {} ({why})", candidate.display())),
            }
        }
    }
    Err(format!(
        "cannot find {HOOK_FILE}; looked in:\n  $CORUN_HOOK (not set)\n{}\nbuild it with `cargo build --release -p corun-hook`, or set CORUN_HOOK to its path",
        looked.join("\n")
    ))
}

fn check_readable(path: &Path) -> Result<(), String> {
    match std::fs::File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.is_file() => Ok(()),
            Ok(_) => Err("is not a file".into()),
            Err(err) => Err(format!("cannot be read: {err}")),
        },
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(err) => Err(format!("cannot be read: {err}")),
    }
}
