//! The coroutine dump as one JSON document (`corun dump PID --json`,
//! `CORUN_DUMP_FORMAT=json`). The schema is in README ("Coroutine dumps"); `format` is
//! `"corun-dump"` and `version` is 1; fields are only ever added.

use std::fmt::Write as _;

use super::counters::Counters;
use super::dump::{resolve_trace, Entry, State};
use super::task::WaitInfo;
use super::timer::now_ns;

/// The runtime's part of the document.
pub struct RuntimeInfo {
    pub workers: usize,
    pub spare_workers: usize,
    pub identity: &'static str,
    pub counters: Counters,
}

/// Writes `text` as a JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn opt_string(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.push_str("null"),
    }
}

/// Milliseconds from now to a monotonic deadline (negative once it has passed), or null.
fn deadline_ms(out: &mut String, deadline: u64) {
    if deadline == 0 {
        out.push_str("null");
    } else {
        let ms = (deadline as i128 - now_ns() as i128) / 1_000_000;
        let _ = write!(out, "{ms}");
    }
}

fn wait(out: &mut String, info: WaitInfo) {
    match info {
        WaitInfo::None => out.push_str(r#"{"kind":"wake-up"}"#),
        WaitInfo::Fd {
            fd,
            write,
            deadline,
        } => {
            let direction = if write { "write" } else { "read" };
            let _ = write!(
                out,
                r#"{{"kind":"fd","fd":{fd},"direction":"{direction}","deadline_in_ms":"#
            );
            deadline_ms(out, deadline);
            out.push('}');
        }
        WaitInfo::Poll { nfds, deadline } => {
            let _ = write!(out, r#"{{"kind":"poll","nfds":{nfds},"deadline_in_ms":"#);
            deadline_ms(out, deadline);
            out.push('}');
        }
        WaitInfo::Sleep { deadline } => {
            out.push_str(r#"{"kind":"sleep","deadline_in_ms":"#);
            deadline_ms(out, deadline);
            out.push('}');
        }
        WaitInfo::Futex {
            addr,
            deadline,
            shared,
        } => {
            let _ = write!(
                out,
                r#"{{"kind":"futex","address":"{addr:#x}","shared":{shared},"deadline_in_ms":"#
            );
            deadline_ms(out, deadline);
            out.push('}');
        }
        WaitInfo::Join { id } => {
            let _ = write!(out, r#"{{"kind":"join","coroutine":{id}}}"#);
        }
        WaitInfo::Blocking { call } => {
            out.push_str(r#"{"kind":"blocking-pool","call":"#);
            string(out, call);
            out.push('}');
        }
        WaitInfo::Child { pid } => {
            let _ = write!(out, r#"{{"kind":"child","pid":{pid}}}"#);
        }
    }
}

fn coroutine(out: &mut String, entry: &Entry) {
    let _ = write!(out, r#"{{"id":{},"name":"#, entry.id);
    opt_string(out, entry.name.as_deref());
    let (state, worker) = match entry.state {
        State::NotStarted => ("not-started", None),
        State::Runnable { worker } => ("runnable", Some(worker)),
        State::Running { worker, .. } => ("running", Some(worker)),
        State::Parked { worker, .. } => ("parked", Some(worker)),
    };
    let _ = write!(out, r#","state":"{state}","worker":"#);
    match worker {
        Some(w) => {
            let _ = write!(out, "{w}");
        }
        None => out.push_str("null"),
    }
    out.push_str(r#","wait":"#);
    match entry.state {
        State::Parked { wait: info, .. } => wait(out, info),
        _ => out.push_str("null"),
    }
    out.push_str(r#","for_ms":"#);
    match entry.state {
        State::Parked { for_ns, .. }
        | State::Running {
            for_ns: Some(for_ns),
            ..
        } => {
            let _ = write!(out, "{}", for_ns / 1_000_000);
        }
        _ => out.push_str("null"),
    }
    out.push_str(r#","in_call":"#);
    match entry.state {
        State::Running { call, .. } => opt_string(out, call),
        _ => out.push_str("null"),
    }
    out.push_str(r#","backtrace":"#);
    match &entry.trace {
        None => out.push_str("null"),
        Some(ips) => {
            out.push('[');
            for (i, frame) in resolve_trace(ips).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"function":"#);
                string(out, &frame.function);
                out.push_str(r#","file":"#);
                opt_string(out, frame.file.as_deref());
                out.push_str(r#","line":"#);
                match frame.line {
                    Some(line) => {
                        let _ = write!(out, "{line}");
                    }
                    None => out.push_str("null"),
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// Renders the dump as one JSON document (one line, then a newline).
pub fn render(entries: &[Entry], runtime: &RuntimeInfo) -> String {
    let mut out = String::new();
    let c = &runtime.counters;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let _ = write!(
        out,
        r#"{{"format":"corun-dump","version":1,"pid":{pid},"runtime":{{"workers":{},"spare_workers":{},"identity":"{}","counters":{{"spawned":{},"started":{},"finished":{},"live":{},"context_switches":{},"fd_waiters":{},"futex_waiters":{},"pooled_stacks":{},"blocking_threads":{},"dumps":{},"stuck_incidents":{},"deadlocks":{}}},"runnable":{:?}}},"coroutines":["#,
        runtime.workers,
        runtime.spare_workers,
        runtime.identity,
        c.spawned,
        c.started,
        c.finished,
        c.live(),
        c.switches,
        c.fd_waiters,
        c.futex_waiters,
        c.pooled_stacks,
        c.blocking_threads,
        c.dumps,
        c.stuck_incidents,
        c.deadlocks,
        c.runnable,
    );
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        coroutine(&mut out, entry);
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }
}
