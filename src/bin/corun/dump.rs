//! `corun dump PID [--json]`: the client side of the control socket (`corun::control`).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use corun::control;

/// How long the program may take to answer (it waits up to a second per worker for
/// backtraces, then resolves symbols).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn usage(message: &str) -> ExitCode {
    eprintln!("corun: {message}\nusage: corun dump PID [--json] (see corun --help)");
    ExitCode::from(2)
}

fn fail(message: String) -> ExitCode {
    eprintln!("corun: {message}");
    ExitCode::FAILURE
}

/// Runs `corun dump` with the arguments after `dump`.
pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    let mut pid: Option<u32> = None;
    let mut json = false;
    for arg in args {
        match arg.to_str() {
            Some("--json") => json = true,
            Some(text) if pid.is_none() && !text.starts_with('-') => match text.parse::<u32>() {
                Ok(n) if n > 0 => pid = Some(n),
                _ => return usage(&format!("{text:?} is not a process id")),
            },
            Some(text) if text.starts_with('-') => {
                return usage(&format!("unknown option {text:?}"))
            }
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let Some(pid) = pid else {
        return usage("missing PID");
    };
    match dump(pid, json) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&text).and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

fn dump(pid: u32, json: bool) -> Result<Vec<u8>, String> {
    let owner = match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(meta) => meta.uid(),
        Err(_) => return Err(format!("no process {pid} (it has exited, or never ran)")),
    };
    // SAFETY: no preconditions.
    let me = unsafe { libc::geteuid() };
    if !control::allowed(me, owner) {
        return Err(format!(
            "process {pid} belongs to another user (uid {owner}); only that user or root can \
             dump it"
        ));
    }
    let path = control::socket_path(owner, pid);
    let not_corun = || {
        format!(
            "process {pid} is not a corun program with a running runtime (no control socket at \
             {}; it may not have spawned a coroutine yet, or runs with CORUN_CONTROL=0)",
            path.display()
        )
    };
    if !path.exists() {
        return Err(not_corun());
    }
    let mut stream = UnixStream::connect(&path).map_err(|err| match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => format!(
            "process {pid} is not a corun program with a running runtime ({} refuses \
             connections: a socket left by an earlier process with this pid)",
            path.display()
        ),
        _ => format!("cannot connect to {}: {err}", path.display()),
    })?;
    let timeouts = stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(ANSWER_TIMEOUT)));
    let request = if json {
        control::REQUEST_JSON
    } else {
        control::REQUEST_TEXT
    };
    let mut answer = Vec::new();
    timeouts
        .and_then(|()| stream.write_all(request))
        .and_then(|()| stream.read_to_end(&mut answer))
        .map_err(|err| format!("process {pid} did not answer: {err}"))?;
    if answer.is_empty() {
        return Err(format!(
            "process {pid} closed the connection without answering (not allowed?)"
        ));
    }
    Ok(answer)
}
