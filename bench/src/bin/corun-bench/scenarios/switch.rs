//! Scenario 1: the context-switch core — corun's `corun::coroutine` vs corosensei 0.3 vs
//! `generator` (may's core). No hook: this is the library on its own.

use std::time::Duration;

use super::{chart_of_tables, count, interleave, run_to_result, Context, Section};
use crate::table::{Column, Measurement, Table};

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let peers = [
        ctx.tools.core_switch("corun"),
        ctx.tools.core_switch("corosensei"),
        ctx.tools.core_switch("generator"),
    ];
    let cases = [
        (
            "switch",
            "one resume + one suspend round trip passing a usize",
            s.switch_iters,
        ),
        (
            "call",
            "create a coroutine on an already-allocated stack, run it to return, drop it",
            s.call_iters,
        ),
    ];
    let mut tables = Vec::new();
    for (op, what, iters) in cases {
        let mut table = Table::new(
            format!("{op}: {what}"),
            vec![Column::lower("ns/op")],
            s.reps,
        );
        interleave(&mut table, s.reps, &peers, |_, launch| {
            let launch = launch.clone().args([
                "--op".to_string(),
                op.to_string(),
                "--iters".to_string(),
                iters.to_string(),
                "--batches".to_string(),
                s.switch_batches.to_string(),
            ]);
            let (result, _) = run_to_result(&launch, Duration::from_secs(60))?;
            Ok(Measurement {
                values: vec![result.number("ns_per_op")],
                notes: Vec::new(),
            })
        });
        tables.push(table);
    }
    let chart = chart_of_tables(
        "context switch core (lower is better)",
        "ns per operation",
        &[
            (&tables[0], "switch".to_string()),
            (&tables[1], "call".to_string()),
        ],
        0,
    );
    Section {
        slug: "switch",
        heading: "Context-switch core: switch and call".to_string(),
        description: format!(
            "`core-switch` runs one library per process, {} timed batches after a warm-up; \
             each run reports its median batch. switch: {} round trips per batch; call: {} \
             coroutines per batch, all on one 64 KiB stack that is reused (`with_stack` / \
             `into_stack` for corun and corosensei, `init_code` on a finished generator for \
             `generator`). No hook is preloaded: this measures the library alone.",
            s.switch_batches,
            count(s.switch_iters as f64),
            count(s.call_iters as f64)
        ),
        tables,
        chart: Some(chart),
    }
}
