//! The programs of the suite and how each peer is launched.
//!
//! | peer      | program                                   | notes                         |
//! |-----------|-------------------------------------------|-------------------------------|
//! | `corun`   | `std-peer --spawn corun`                  | `LD_PRELOAD=libcorun_hook.so` |
//! | `corun-shared` | the same                             | and `CORUN_TLS=shared`        |
//! | `corun-steal`  | the same                             | and `CORUN_STEAL=1`           |
//! | `corun-threads` | `std-peer --spawn thread`           | under the hook, `CORUN_THREADS=1` (threads mode) |
//! | `corun-std-yield` | the same (yield case: `--call std`) |                              |
//! | `threads` | `std-peer --spawn thread`                 | the same source, OS threads   |
//! | `tokio`   | `tokio-peer`                              |                               |
//! | `may`     | `may-peer`                                |                               |
//! | `go`      | `go-peer` (built from `bench/go`)         |                               |

use std::path::{Path, PathBuf};

use crate::runner::Launch;

/// Where every program lives.
#[derive(Clone, Debug)]
pub struct Toolbox {
    /// The directory of the bench crate's binaries.
    pub bin_dir: PathBuf,
    /// `libcorun_hook.so`.
    pub hook: PathBuf,
    /// The Go peer, if it was built.
    pub go_peer: Option<PathBuf>,
    /// `wrk`, if installed.
    pub wrk: Option<PathBuf>,
}

/// A peer: its name and how to launch it, or why it cannot be.
pub struct Peer {
    pub name: &'static str,
    pub launch: Result<Launch, String>,
}

impl Toolbox {
    fn binary(&self, name: &str) -> Result<Launch, String> {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            Ok(Launch::new(name, path))
        } else {
            Err(format!("{} is not built", path.display()))
        }
    }

    /// `corun`: plain std code under the hook.
    pub fn corun(&self) -> Peer {
        self.corun_with("corun", &[])
    }

    /// `corun-shared`: corun with `CORUN_TLS=shared` (coroutines share their worker's thread
    /// identity).
    pub fn corun_shared(&self) -> Peer {
        self.corun_with("corun-shared", &[("CORUN_TLS", "shared")])
    }

    /// `corun-steal`: corun with `CORUN_STEAL=1` (idle workers take queued coroutines).
    pub fn corun_steal(&self) -> Peer {
        self.corun_with("corun-steal", &[("CORUN_STEAL", "1")])
    }

    /// `corun-std-yield`: corun, named apart for the yield case, where it runs with
    /// `--call std` (`std::thread::yield_now`, which the hook turns into a coroutine yield).
    pub fn corun_std_yield(&self) -> Peer {
        self.corun_with("corun-std-yield", &[])
    }

    /// std-peer under the hook with these extra variables, labelled `name`.
    fn corun_with(&self, name: &'static str, env: &[(&str, &str)]) -> Peer {
        let launch = if self.hook.is_file() {
            let hook = self.hook.display().to_string();
            self.binary("std-peer").map(|l| {
                env.iter().fold(
                    l.args(["--spawn", "corun"]).env("LD_PRELOAD", &hook),
                    |l, (key, value)| l.env(key, value),
                )
            })
        } else {
            Err(format!("{} is not built", self.hook.display()))
        };
        Peer {
            name,
            launch: launch.map(|l| relabel(l, name)),
        }
    }

    /// `threads`: the same std code on OS threads, no hook.
    pub fn threads(&self) -> Peer {
        Peer {
            name: "threads",
            launch: self
                .binary("std-peer")
                .map(|l| relabel(l.args(["--spawn", "thread"]), "threads")),
        }
    }

    /// `corun-threads`: the OS-thread build of the same std code (`--spawn thread`), unchanged,
    /// under the hook in threads mode (`CORUN_THREADS=1`, what `corun run --threads` sets):
    /// its `std::thread::spawn`s become coroutines.
    pub fn corun_threads(&self) -> Peer {
        let launch = if self.hook.is_file() {
            let hook = self.hook.display().to_string();
            self.binary("std-peer").map(|l| {
                l.args(["--spawn", "thread"])
                    .env("LD_PRELOAD", &hook)
                    .env("CORUN_THREADS", "1")
            })
        } else {
            Err(format!("{} is not built", self.hook.display()))
        };
        Peer {
            name: "corun-threads",
            launch: launch.map(|l| relabel(l, "corun-threads")),
        }
    }

    pub fn tokio(&self) -> Peer {
        Peer {
            name: "tokio",
            launch: self.binary("tokio-peer").map(|l| relabel(l, "tokio")),
        }
    }

    pub fn may(&self) -> Peer {
        Peer {
            name: "may",
            launch: self.binary("may-peer").map(|l| relabel(l, "may")),
        }
    }

    pub fn go(&self) -> Peer {
        let launch = match &self.go_peer {
            Some(path) if path.is_file() => Ok(Launch::new("go", path.clone())),
            Some(path) => Err(format!("{} is not built", path.display())),
            None => Err("the Go peer was not built (is `go` installed?)".to_string()),
        };
        Peer { name: "go", launch }
    }

    /// The context-switch microbenchmark for one library.
    pub fn core_switch(&self, library: &'static str) -> Peer {
        Peer {
            name: library,
            launch: self
                .binary("core-switch")
                .map(|l| relabel(l.args(["--peer", library]), library)),
        }
    }

    /// The echo load generator.
    pub fn loadgen(&self) -> Result<Launch, String> {
        self.binary("echo-loadgen")
    }

    /// `wrk`.
    pub fn wrk(&self) -> Result<Launch, String> {
        match &self.wrk {
            Some(path) => Ok(Launch::new("wrk", path.clone())),
            None => Err("wrk is not installed".to_string()),
        }
    }
}

fn relabel(mut launch: Launch, label: &str) -> Launch {
    launch.label = label.to_string();
    launch
}

/// The first `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
