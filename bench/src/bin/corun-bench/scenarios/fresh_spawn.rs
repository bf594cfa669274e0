//! Scenario: spawning sleeping tasks that all stay alive: every spawn needs a fresh task
//! (stack, thread area) rather than one a finished task left behind, as spawn+join measures.

use super::idle_memory::start_idle;
use super::{chart_of_tables, corun_mode_notes, count, interleave, Context, Section};
use crate::peers::Peer;
use crate::runner::Launch;
use crate::table::{Column, Measurement, Outcome, Table};

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let mut tables = Vec::new();
    for &tasks in &s.fresh_spawn_tasks {
        let mut peers = vec![t.corun(), t.tokio(), t.may(), t.go()];
        if tasks <= s.idle_thread_tasks {
            peers.push(t.threads());
        }
        let mut table = Table::new(
            format!("fresh spawn: {} sleeping tasks", count(tasks as f64)),
            vec![
                Column::lower("spawn µs/task"),
                Column::lower("until asleep µs/task"),
                Column::neither("tasks asleep"),
            ],
            s.reps,
        );
        if tasks > s.idle_thread_tasks {
            table.note(format!(
                "OS threads run only up to {} tasks",
                count(s.idle_thread_tasks as f64)
            ));
        }
        interleave(&mut table, s.reps, &peers, |peer, launch| {
            measure(peer, launch, tasks)
        });
        tables.push(table);
    }
    let labelled: Vec<(&Table, String)> = tables
        .iter()
        .zip(&s.fresh_spawn_tasks)
        .map(|(table, &tasks)| (table, count(tasks as f64)))
        .collect();
    let chart = chart_of_tables(
        "fresh spawn, µs per sleeping task (lower is better)",
        "µs per spawn",
        &labelled,
        0,
    );
    Section {
        slug: "fresh-spawn",
        heading: "Fresh spawn".to_string(),
        description: format!(
            "Each program spawns N tasks that all sleep (the `idle` program of the idle-memory \
             scenario, N = {}), so no task can reuse what a finished one left: every spawn takes \
             a stack (and, in corun, a thread area) it has never used. *spawn* = the spawning \
             loop's time / N; *until asleep* = the time until every task has reached its sleep \
             / N (it includes the tasks' start, which runs on other threads).",
            s.fresh_spawn_tasks
                .iter()
                .map(|&n| count(n as f64))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        tables,
        chart: Some(chart),
    }
}

/// One run of `tasks` sleeping tasks of `peer`: µs per spawn, µs per task until all sleep.
fn measure(peer: &Peer, launch: &Launch, tasks: usize) -> Outcome {
    // Long enough that the first task is still asleep when the last one is spawned.
    let sleep_ms = 3_000 + tasks as u64 * 6 / 1_000;
    let mut run = start_idle(launch, tasks, sleep_ms)?;
    let ready = run.wait_for("READY")?;
    run.finish()?;
    let lines = run.protocol_lines();
    let mut notes = corun_mode_notes(peer, &lines);
    let spawned = ready.number("spawned").unwrap_or(0.0);
    if let Some(error) = lines.iter().find(|l| l.tag == "SPAWN_ERROR") {
        return Err(format!(
            "the spawn after {} failed: {}",
            count(spawned),
            error.text("message").unwrap_or("(no message)")
        ));
    }
    if spawned <= 0.0 {
        return Err("no task could be spawned".to_string());
    }
    if ready.number("woke_early").unwrap_or(0.0) > 0.0 {
        notes.push("some tasks woke before the last one fell asleep".to_string());
    }
    let per_task = |key: &str| ready.number(key).map(|ms| ms * 1000.0 / spawned);
    Ok(Measurement {
        values: vec![per_task("spawn_ms"), per_task("ready_ms"), Some(spawned)],
        notes,
    })
}
