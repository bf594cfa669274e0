//! Scenario 3: round trips over channels between two tasks.

use std::time::Duration;

use super::{
    chart_of_tables, corun_mode_notes, count, interleave, run_to_result, Context, Section,
};
use crate::table::{Column, Measurement, Table};

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let peers = [t.corun(), t.tokio(), t.may(), t.go(), t.threads()];
    let mut table = Table::new(
        format!(
            "ping-pong: {} round trips between two tasks over channels",
            count(s.round_trips as f64)
        ),
        vec![Column::lower("µs/round trip")],
        s.reps,
    );
    let timeout = Duration::from_secs(20);
    interleave(&mut table, s.reps, &peers, |peer, launch| {
        let launch = launch.clone().args([
            "ping-pong".to_string(),
            "--round-trips".to_string(),
            s.round_trips.to_string(),
        ]);
        let (result, lines) = run_to_result(&launch, timeout)?;
        let micros = match (result.number("elapsed_ns"), result.number("round_trips")) {
            (Some(ns), Some(n)) if n > 0.0 => Some(ns / n / 1000.0),
            _ => None,
        };
        Ok(Measurement {
            values: vec![micros],
            notes: corun_mode_notes(peer, &lines),
        })
    });
    let chart = chart_of_tables(
        "ping-pong, µs per round trip (lower is better)",
        "µs per round trip",
        &[(&table, "ping-pong".to_string())],
        0,
    );
    Section {
        slug: "ping-pong",
        heading: "Ping-pong over channels".to_string(),
        description: format!(
            "{} round trips of a number between two tasks, each side blocking on its inbox. \
             corun: `std::sync::mpsc` inside two `corun::spawn`ed coroutines under the hook; \
             tokio: `tokio::sync::mpsc::unbounded_channel`; may: `may::sync::mpsc`; Go: channels \
             with a buffer of 1; threads: `std::sync::mpsc` between two OS threads. Timeout {} s \
             per run.",
            count(s.round_trips as f64),
            timeout.as_secs()
        ),
        tables: vec![table],
        chart: Some(chart),
    }
}
