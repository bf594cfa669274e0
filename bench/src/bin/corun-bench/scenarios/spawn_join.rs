//! Scenario 2: spawn and join empty tasks, in batches.

use std::time::Duration;

use super::{
    chart_of_tables, corun_mode_notes, count, interleave, run_to_result, Context, Section,
};
use crate::peers::Peer;
use crate::runner::Launch;
use crate::settings::Settings;
use crate::table::{Column, Measurement, Outcome, Table};

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let peers = [t.corun(), t.tokio(), t.may(), t.go(), t.threads()];
    let mut table = Table::new(
        format!(
            "spawn+join: {} empty tasks, joined in batches of {}",
            count(s.spawn_tasks as f64),
            count(s.spawn_batch as f64)
        ),
        vec![Column::lower("µs/task")],
        s.reps,
    );
    interleave(&mut table, s.reps, &peers, |peer, launch| {
        measure(s, peer, launch)
    });
    let chart = chart_of_tables(
        "spawn + join, µs per task (lower is better)",
        "µs per task",
        &[(&table, "spawn+join".to_string())],
        0,
    );
    Section {
        slug: "spawn-join",
        heading: "Spawn + join".to_string(),
        description: format!(
            "{} empty tasks: spawn {}, join them all, repeat. corun: `corun::spawn(|| ())` + \
             `JoinHandle::join()` under the hook; tokio: `tokio::spawn` + `.await`; may: `go!` + \
             `join()`; Go: goroutine + `sync.WaitGroup`; threads: `std::thread::spawn` + \
             `join()`.",
            count(s.spawn_tasks as f64),
            count(s.spawn_batch as f64)
        ),
        tables: vec![table],
        chart: Some(chart),
    }
}

/// One run of `spawn-join` for `peer`: µs per task.
pub fn measure(s: &Settings, peer: &Peer, launch: &Launch) -> Outcome {
    let launch = launch.clone().args([
        "spawn-join".to_string(),
        "--tasks".to_string(),
        s.spawn_tasks.to_string(),
        "--batch".to_string(),
        s.spawn_batch.to_string(),
    ]);
    let (result, lines) = run_to_result(&launch, Duration::from_secs(30))?;
    let micros = match (result.number("elapsed_ns"), result.number("tasks")) {
        (Some(ns), Some(tasks)) if tasks > 0.0 => Some(ns / tasks / 1000.0),
        _ => None,
    };
    Ok(Measurement {
        values: vec![micros],
        notes: corun_mode_notes(peer, &lines),
    })
}
