//! Scenario 7: what per-coroutine thread identity costs, and what work stealing brings.
//!
//! corun (isolated identity, the default) against itself with `CORUN_TLS=shared` and with
//! `CORUN_STEAL=1`, on the same std programs: a switch round trip (`yield_now`), spawn+join,
//! memory per sleeping coroutine, the echo server at 1,000 connections and CPU-bound
//! coroutines of uneven length.

use std::time::Duration;

use super::echo::{self, Placement};
use super::idle_memory::measure_idle;
use super::spawn_join;
use super::{
    chart_of_tables, corun_mode_notes, count, interleave, run_to_result, Context, Section,
};
use crate::table::{Column, Measurement, Table, CORUN};

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let pair = [t.corun(), t.corun_shared()];
    let trio = [t.corun(), t.corun_shared(), t.corun_steal()];
    let stealing = [t.corun(), t.corun_steal()];
    // The short runs (under a second each) get more repetitions: their differences are a few
    // per cent, less than this machine's run-to-run noise.
    let short_reps = s.reps.max(7);

    let mut yields = Table::new(
        format!(
            "identity: switch round trip ({} `yield_now` in one coroutine)",
            count(s.identity_yields as f64)
        ),
        vec![Column::lower("ns/round trip")],
        short_reps,
    );
    interleave(&mut yields, short_reps, &pair, |peer, launch| {
        let launch = launch.clone().args([
            "yield".to_string(),
            "--yields".to_string(),
            s.identity_yields.to_string(),
        ]);
        let (result, lines) = run_to_result(&launch, Duration::from_secs(30))?;
        let nanos = match (result.number("elapsed_ns"), result.number("yields")) {
            (Some(ns), Some(n)) if n > 0.0 => Some(ns / n),
            _ => None,
        };
        Ok(Measurement {
            values: vec![nanos],
            notes: corun_mode_notes(peer, &lines),
        })
    });
    note_difference(&mut yields, 0, "ns per round trip", "≤ +40 ns");

    let mut spawn_join = Table::new(
        format!(
            "identity: spawn+join ({} empty tasks, batches of {})",
            count(s.spawn_tasks as f64),
            count(s.spawn_batch as f64)
        ),
        vec![Column::lower("µs/task")],
        short_reps,
    );
    interleave(&mut spawn_join, short_reps, &pair, |peer, launch| {
        spawn_join::measure(s, peer, launch)
    });
    note_difference(&mut spawn_join, 0, "µs per task", "none set");

    let mut memory = Table::new(
        format!(
            "identity: memory, {} coroutines sleeping {} s",
            count(s.identity_idle_tasks as f64),
            s.identity_idle_sleep_ms as f64 / 1000.0
        ),
        vec![
            Column::lower("RSS KiB/task"),
            Column::lower("system KiB/task"),
            Column::neither("tasks asleep"),
        ],
        s.reps,
    );
    interleave(&mut memory, s.reps, &pair, |peer, launch| {
        measure_idle(
            peer,
            launch,
            s.identity_idle_tasks,
            s.identity_idle_sleep_ms,
        )
    });
    note_difference(&mut memory, 0, "KiB of RSS per coroutine", "≤ +5 KiB");

    let mut tables = vec![yields, spawn_join, memory];
    // Stealing needs workers running in parallel: it is compared only where the server may
    // use both CPUs.
    for (placement, peers) in [
        (Placement::SameCpu, &pair[..]),
        (Placement::BothCpus, &trio[..]),
    ] {
        let mut table = Table::new(
            format!(
                "identity: echo, {} connections, {}",
                count(s.identity_echo_connections as f64),
                placement.describe()
            ),
            echo::columns(),
            s.reps,
        );
        interleave(&mut table, s.reps, peers, |peer, launch| {
            echo::echo_once(t, peer, launch, s.identity_echo_connections, placement, ctx)
        });
        note_difference(&mut table, 0, "round trips/s", "within 3% of shared");
        tables.push(table);
    }

    let mut uneven = Table::new(
        format!(
            "stealing: {} CPU-bound coroutines of uneven length (every 8th 16× the others)",
            s.uneven_tasks
        ),
        vec![Column::lower("ms"), Column::lower("µs/slice")],
        short_reps,
    );
    interleave(&mut uneven, short_reps, &stealing, |peer, launch| {
        let launch = launch.clone().args([
            "uneven".to_string(),
            "--tasks".to_string(),
            s.uneven_tasks.to_string(),
            "--slices".to_string(),
            s.uneven_slices.to_string(),
        ]);
        let (result, lines) = run_to_result(&launch, Duration::from_secs(60))?;
        let (ms, per_slice) = match (result.number("elapsed_ns"), result.number("slices")) {
            (Some(ns), Some(n)) if n > 0.0 => (Some(ns / 1e6), Some(ns / 1e3 / n)),
            _ => (None, None),
        };
        Ok(Measurement {
            values: vec![ms, per_slice],
            notes: corun_mode_notes(peer, &lines),
        })
    });
    note_stealing(&mut uneven, 0, "ms");
    note_stealing(&mut tables[4], 0, "round trips/s");
    tables.push(uneven);

    let chart = chart_of_tables(
        "identity and stealing: echo round trips per second (higher is better)",
        "round trips/s",
        &[
            (&tables[3], Placement::SameCpu.describe().to_string()),
            (&tables[4], Placement::BothCpus.describe().to_string()),
        ],
        0,
    );
    Section {
        slug: "identity",
        heading: "Per-coroutine identity and work stealing".to_string(),
        description: format!(
            "The same std programs under the hook three ways: corun (per-coroutine thread \
             identity, `CORUN_TLS=isolated`, the default), corun-shared (`CORUN_TLS=shared`: \
             coroutines share their worker's thread pointer) and corun-steal (isolated plus \
             `CORUN_STEAL=1`: an idle worker takes queued coroutines from a busy one). Switch \
             round trip: one coroutine calling `corun::yield_now()` {} times (each a suspend and \
             a resume, with the two thread-pointer writes in isolated mode). Spawn+join and \
             memory as in those scenarios ({} coroutines sleeping {} s). Echo at {} connections \
             as in the echo scenario, with server and load generator both on CPU 0, and both \
             free to use CPUs 0 and 1 (where stealing can move coroutines between workers \
             running in parallel). Uneven: {} CPU-bound coroutines (slices of ~20 µs of \
             arithmetic with `std::thread::yield_now` between them; every 8th runs 16× as many \
             slices as the others), both CPUs free. Each table's note gives isolated − shared \
             and the target, or stealing against none.",
            count(s.identity_yields as f64),
            count(s.identity_idle_tasks as f64),
            s.identity_idle_sleep_ms as f64 / 1000.0,
            count(s.identity_echo_connections as f64),
            s.uneven_tasks
        ),
        tables,
        chart: Some(chart),
    }
}

/// Notes isolated − shared (and the relative change) on `column`, with the target.
fn note_difference(table: &mut Table, column: usize, unit: &str, target: &str) {
    let ours = table.summary(CORUN, column).map(|s| s.median);
    let shared = table.summary("corun-shared", column).map(|s| s.median);
    if let (Some(ours), Some(shared)) = (ours, shared) {
        let relative = if shared != 0.0 {
            format!(" ({:+.1}%)", (ours - shared) / shared * 100.0)
        } else {
            String::new()
        };
        table.note(format!(
            "isolated − shared: {:+.2} {unit}{relative}; target: {target}",
            ours - shared
        ));
    }
}

/// Notes `corun-steal` against the default (no stealing) on `column`.
fn note_stealing(table: &mut Table, column: usize, unit: &str) {
    let none = table.summary(CORUN, column).map(|s| s.median);
    let stealing = table.summary("corun-steal", column).map(|s| s.median);
    if let (Some(stealing), Some(none)) = (stealing, none) {
        if none != 0.0 {
            table.note(format!(
                "stealing ÷ no stealing: {:.2}× ({stealing:.1} vs {none:.1} {unit})",
                stealing / none
            ));
        }
    }
}
