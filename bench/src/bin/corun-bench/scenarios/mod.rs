//! The scenarios. Each one runs every peer on the same work, interleaved, and returns a
//! [`Section`] of the report: its tables and its chart.

pub mod echo;
pub mod fresh_spawn;
pub mod http;
pub mod identity;
pub mod idle_memory;
pub mod ping_pong;
pub mod spawn_join;
pub mod switch;
pub mod yields;

use std::io::Write;
use std::time::Duration;

use corun_bench::protocol::Line;

use crate::chart::BarChart;
use crate::peers::{Peer, Toolbox};
use crate::runner::{Launch, Running};
use crate::settings::Settings;
use crate::table::{Outcome, Table, CORUN};

/// What every scenario gets.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub tools: &'a Toolbox,
}

/// One scenario's part of the report.
pub struct Section {
    /// File-name stem of the chart (`echo` → `echo.png`).
    pub slug: &'static str,
    pub heading: String,
    /// What was measured and how, for the report.
    pub description: String,
    pub tables: Vec<Table>,
    pub chart: Option<BarChart>,
}

/// A scenario's entry point.
pub type Scenario = fn(&Context) -> Section;

/// Every scenario, in the order the suite runs them: `(name for --only, runner)`.
pub const ALL: [(&str, Scenario); 9] = [
    ("switch", switch::run),
    ("spawn-join", spawn_join::run),
    ("ping-pong", ping_pong::run),
    ("yield", yields::run),
    ("idle-memory", idle_memory::run),
    ("fresh-spawn", fresh_spawn::run),
    ("echo", echo::run),
    ("http", http::run),
    ("identity", identity::run),
];

/// Runs `run_one` for each peer, `reps` times, interleaved (A B C A B C …), recording each
/// outcome in `table`. A peer that fails is not run again for this table (its failure is
/// usually deterministic, and a timeout would cost the same again). Progress goes to stderr.
pub fn interleave(
    table: &mut Table,
    reps: usize,
    peers: &[Peer],
    mut run_one: impl FnMut(&Peer, &Launch) -> Outcome,
) {
    let started = std::time::Instant::now();
    eprint!("  {}:", table.title);
    for rep in 0..reps.max(1) {
        for peer in peers {
            if table.has_failed(peer.name) {
                continue;
            }
            let outcome = match &peer.launch {
                Ok(launch) => run_one(peer, launch),
                Err(reason) => Err(reason.clone()),
            };
            let mark = if outcome.is_ok() { "" } else { " (failed)" };
            eprint!(" {}{mark}", peer.name);
            let _ = std::io::stderr().flush();
            table.record(peer.name, outcome);
        }
        if rep + 1 < reps {
            eprint!(" |");
        }
    }
    eprintln!("  ({:.0} s)", started.elapsed().as_secs_f64());
}

/// Runs a program to completion and returns its `RESULT` line and all its protocol lines.
/// A failed spawn (`SPAWN_ERROR`) is reported as such.
pub fn run_to_result(launch: &Launch, timeout: Duration) -> Result<(Line, Vec<Line>), String> {
    let mut run = Running::start(launch, timeout)?;
    let finished = run.finish();
    let lines = run.protocol_lines();
    if let Some(error) = lines.iter().find(|l| l.tag == "SPAWN_ERROR") {
        return Err(format!(
            "spawn failed after {} tasks: {}",
            error.text("spawned").unwrap_or("?"),
            error.text("message").unwrap_or("(no message)")
        ));
    }
    finished?;
    let result = lines
        .iter()
        .rev()
        .find(|l| l.tag == "RESULT")
        .cloned()
        .ok_or_else(|| format!("{} printed no RESULT line", launch.label))?;
    Ok((result, lines))
}

/// A note for the corun peer when `corun::spawn` ran on OS threads (std-peer's `MODE` probe).
pub fn corun_mode_notes(peer: &Peer, lines: &[Line]) -> Vec<String> {
    let on_threads = lines
        .iter()
        .any(|l| l.tag == "MODE" && l.text("kind") == Some("os-thread"));
    if peer.name == CORUN && on_threads {
        vec![
            "corun::spawn ran on OS threads: the corun runtime was not active in the hook, so \
              these are not coroutine numbers"
                .to_string(),
        ]
    } else {
        Vec::new()
    }
}

/// A chart of `column` of each table: one group per table, one bar per peer.
pub fn chart_of_tables(
    title: &str,
    y_label: &str,
    tables: &[(&Table, String)],
    column: usize,
) -> BarChart {
    let mut series: Vec<String> = Vec::new();
    for (table, _) in tables {
        for peer in table.peers() {
            if !series.contains(&peer) {
                series.push(peer);
            }
        }
    }
    BarChart {
        title: title.to_string(),
        y_label: y_label.to_string(),
        groups: tables.iter().map(|(_, label)| label.clone()).collect(),
        values: tables
            .iter()
            .map(|(table, _)| series.iter().map(|p| table.summary(p, column)).collect())
            .collect(),
        series,
    }
}

/// The per-process open-file limit (soft), which children inherit.
pub fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

/// `12345` → `12,345`, for titles.
pub fn count(n: impl Into<f64>) -> String {
    crate::stats::format_number(n.into())
}
