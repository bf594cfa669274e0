//! Scenario: yield round trips — a few tasks yielding in a loop on one worker.

use std::time::Duration;

use super::{
    chart_of_tables, corun_mode_notes, count, interleave, run_to_result, Context, Section,
};
use crate::table::{Column, Measurement, Table, CORUN};

/// The CPU every program of this scenario is pinned to.
const CPU: usize = 0;

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let peers = [
        t.corun(),
        t.corun_std_yield(),
        t.tokio(),
        t.may(),
        t.go(),
        t.threads(),
    ];
    let mut table = Table::new(
        format!(
            "yield: {} tasks yielding {} times each on one worker (CPU {CPU})",
            s.yield_tasks,
            count(s.yield_yields as f64)
        ),
        vec![Column::lower("ns/yield")],
        s.reps,
    );
    let timeout = Duration::from_secs(60);
    interleave(&mut table, s.reps, &peers, |peer, launch| {
        let mut launch = launch.clone().pinned(&[CPU]).args([
            "yield".to_string(),
            "--tasks".to_string(),
            s.yield_tasks.to_string(),
            "--yields".to_string(),
            s.yield_yields.to_string(),
        ]);
        // std-peer: which yield to call; corun gets one worker (the others set theirs).
        let call = match peer.name {
            CORUN => Some("corun"),
            "corun-std-yield" | "threads" => Some("std"),
            _ => None,
        };
        if let Some(call) = call {
            launch = launch.args(["--call", call]);
        }
        if peer.name.starts_with(CORUN) {
            launch = launch.env("CORUN_WORKERS", "1");
        }
        let (result, lines) = run_to_result(&launch, timeout)?;
        let nanos = match (result.number("elapsed_ns"), result.number("yields")) {
            (Some(ns), Some(n)) if n > 0.0 => Some(ns / n),
            _ => None,
        };
        Ok(Measurement {
            values: vec![nanos],
            notes: corun_mode_notes(peer, &lines),
        })
    });
    let chart = chart_of_tables(
        "yield, ns per yield round trip (lower is better)",
        "ns per yield",
        &[(&table, "yield".to_string())],
        0,
    );
    Section {
        slug: "yield",
        heading: "Yield round trip".to_string(),
        description: format!(
            "{} tasks each yield {} times in a loop, all on one worker: every program is \
             pinned to CPU {CPU} and runs one worker (corun: `CORUN_WORKERS=1`; tokio: \
             `worker_threads(1)`; may: `set_workers(1)`; Go: `GOMAXPROCS=1`). A coordinator \
             task spawns them and joins them; its time from before the first spawn to after the \
             last join, divided by all the yields, is the time per yield: a task suspends to \
             the scheduler, which resumes the next one in line. corun: `corun::yield_now()` \
             in `corun::spawn`ed coroutines under the hook; corun-std-yield: the same program \
             calling `std::thread::yield_now()` (`sched_yield`, which the hook turns into a \
             coroutine yield); tokio: `tokio::task::yield_now().await`; may: \
             `may::coroutine::yield_now()`; Go: `runtime.Gosched()`; threads: \
             `std::thread::yield_now()` (the `sched_yield` system call) in OS threads sharing \
             the CPU. Timeout {} s per run.",
            s.yield_tasks,
            count(s.yield_yields as f64),
            timeout.as_secs()
        ),
        tables: vec![table],
        chart: Some(chart),
    }
}
