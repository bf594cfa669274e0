//! Running one peer program: environment, CPU pinning, a deadline, output capture, and a
//! guaranteed kill.
//!
//! Every program runs in its own process group and is killed (the whole group, `SIGKILL`)
//! when its deadline passes, when the driver is done with it, or when its [`Running`] is
//! dropped. Each started PID is also appended to a PID file, so `scripts/bench.sh` can kill
//! leftovers if the driver itself dies.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use corun_bench::protocol::Line;

/// Where started PIDs are recorded (set once by `main`).
static PID_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Records every started PID in `path` (one per line).
pub fn record_pids_in(path: PathBuf) {
    let _ = PID_FILE.set(path);
}

/// How to start a program.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Shown in failure messages.
    pub label: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cpus: Option<Vec<usize>>,
}

impl Launch {
    /// A launch of `program` with no arguments.
    pub fn new(label: &str, program: PathBuf) -> Launch {
        Launch {
            label: label.to_string(),
            program,
            args: Vec::new(),
            env: Vec::new(),
            cpus: None,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: ToString,
    {
        self.args.extend(args.into_iter().map(|a| a.to_string()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Pins the program to these CPUs (set in the child before `exec`, so the PID is the
    /// program's own and no `taskset` process sees `LD_PRELOAD`).
    pub fn pinned(mut self, cpus: &[usize]) -> Launch {
        self.cpus = Some(cpus.to_vec());
        self
    }
}

/// A started program whose stdout lines are collected as they come.
pub struct Running {
    label: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    deadline: Instant,
    timeout: Duration,
    exited: Option<ExitStatus>,
}

impl Running {
    /// Starts `launch`; it must be done within `timeout` or it is killed.
    pub fn start(launch: &Launch, timeout: Duration) -> Result<Running, String> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cpus) = &launch.cpus {
            pin_child(&mut command, cpus);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.program.display()))?;
        record_pid(child.id());

        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut child_stderr = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = child_stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut text = sink.lock().unwrap_or_else(|e| e.into_inner());
                // Keep the last 64 KiB: enough for any diagnosis.
                text.push_str(&String::from_utf8_lossy(&chunk[..n]));
                if text.len() > 64 * 1024 {
                    let cut = text.len() - 32 * 1024;
                    let cut = (cut..text.len())
                        .find(|&i| text.is_char_boundary(i))
                        .unwrap_or(0);
                    text.drain(..cut);
                }
            }
        });
        Ok(Running {
            label: launch.label.clone(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
            deadline: Instant::now() + timeout,
            timeout,
            exited: None,
        })
    }

    /// The program's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far.
    pub fn output(&self) -> &[String] {
        &self.seen
    }

    /// Every protocol line so far.
    pub fn protocol_lines(&self) -> Vec<Line> {
        self.seen.iter().filter_map(|l| Line::parse(l)).collect()
    }

    /// Waits for a protocol line with `tag`.
    pub fn wait_for(&mut self, tag: &str) -> Result<Line, String> {
        loop {
            match self.next_line()? {
                Some(line) => {
                    if let Some(parsed) = Line::parse(&line).filter(|l| l.tag == tag) {
                        return Ok(parsed);
                    }
                }
                None => {
                    return Err(format!(
                        "{} ended before printing {tag}: {}",
                        self.label,
                        self.exit_description()
                    ))
                }
            }
        }
    }

    /// Waits for the program to exit; an exit other than status 0 is an error.
    pub fn finish(&mut self) -> Result<(), String> {
        while self.next_line()?.is_some() {}
        match self.exited {
            Some(status) if status.success() => Ok(()),
            _ => Err(format!("{}: {}", self.label, self.exit_description())),
        }
    }

    /// Whether the program is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited.is_none()
    }

    /// Why the program is not running: its exit status, and its last stderr lines.
    pub fn exit_description(&self) -> String {
        let status = match self.exited {
            Some(status) => describe_status(status),
            None => "still running".to_string(),
        };
        let tail = self.stderr_tail(3);
        if tail.is_empty() {
            status
        } else {
            format!("{status}; stderr: {tail}")
        }
    }

    /// The last `n` non-empty stderr lines, joined with ` | `.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }

    /// The next stdout line; `None` once stdout is closed and the program has exited.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(Some(line))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(format!(
                    "timeout: {} did not finish within {} s (killed)",
                    self.label,
                    self.timeout.as_secs()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.wait_until_deadline()?;
                Ok(None)
            }
        }
    }

    /// Stdout is closed: wait for the exit itself, up to the deadline.
    fn wait_until_deadline(&mut self) -> Result<(), String> {
        while self.is_running() {
            if Instant::now() >= self.deadline {
                self.kill();
                return Err(format!(
                    "timeout: {} closed its output but did not exit within {} s (killed)",
                    self.label,
                    self.timeout.as_secs()
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        // Let the stderr reader catch up with the last words.
        thread::sleep(Duration::from_millis(20));
        Ok(())
    }

    /// Kills the program's process group and reaps it.
    pub fn kill(&mut self) {
        if self.is_running() {
            let group = self.child.id() as libc::pid_t;
            // SAFETY: kill has no memory preconditions; the negative PID names the process group
            // this child leads (it was started with process_group(0)) and it has not been
            // reaped yet, so the id cannot have been reused.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            self.exited = self.child.wait().ok();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal} ({})", signal_name(signal)),
        _ => status.to_string(),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

fn record_pid(pid: u32) {
    let Some(path) = PID_FILE.get() else { return };
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{pid}");
    }
}

/// Makes the child set its own CPU affinity between `fork` and `exec`.
fn pin_child(command: &mut Command, cpus: &[usize]) {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET only sets the bit for `cpu` in `set`; its indexing is bounds-checked.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the closure runs in the forked child before exec; it only makes one system call
    // (sched_setaffinity, async-signal-safe) on a value prepared before the fork, and allocates
    // nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}
