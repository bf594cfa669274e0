//! Scenario 4: memory held by sleeping tasks, and how many coroutines corun can hold at once.

use std::time::Duration;

use corun_bench::procfs;

use super::{corun_mode_notes, count, interleave, Context, Section};
use crate::chart::BarChart;
use crate::peers::Peer;
use crate::runner::{Launch, Running};
use crate::table::{Column, Measurement, Outcome, Table};

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let peers = [t.corun(), t.tokio(), t.may(), t.go(), t.threads()];
    let mut table = Table::new(
        format!(
            "idle memory: {} tasks sleeping {} s (OS threads: {})",
            count(s.idle_tasks as f64),
            s.idle_sleep_ms as f64 / 1000.0,
            count(s.idle_thread_tasks as f64)
        ),
        vec![
            Column::lower("RSS KiB/task"),
            Column::lower("system KiB/task"),
            Column::neither("tasks asleep"),
        ],
        s.reps,
    );
    table.note(
        "system KiB/task is machine-wide: memory other processes take or free during the run \
         (a build, another benchmark) lands in it too, so small or negative values are noise",
    );
    interleave(&mut table, s.reps, &peers, |peer, launch| {
        let tasks = if peer.name == "threads" {
            s.idle_thread_tasks
        } else {
            s.idle_tasks
        };
        measure_idle(peer, launch, tasks, s.idle_sleep_ms)
    });

    let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    let mut capacity = Table::new(
        format!(
            "corun capacity: coroutines held at once, up to {} (vm.max_map_count = \
             {max_map_count})",
            count(s.capacity_max as f64)
        ),
        vec![
            Column::neither("RSS KiB/coroutine"),
            Column::neither("mappings"),
            Column::neither("µs/spawn"),
        ],
        s.reps,
    )
    .without_ratio();
    let corun = t.corun();
    for _ in 0..s.reps {
        measure_capacity(&corun, s.capacity_max, &mut capacity);
    }
    capacity_note(&mut capacity);

    let chart = BarChart {
        title: "idle memory per task (lower is better)".to_string(),
        y_label: "KiB per task".to_string(),
        groups: vec![
            "RSS per task".to_string(),
            "system memory per task".to_string(),
        ],
        values: (0..2)
            .map(|column| {
                table
                    .peers()
                    .iter()
                    .map(|p| table.summary(p, column))
                    .collect()
            })
            .collect(),
        series: table.peers(),
    };
    Section {
        slug: "idle-memory",
        heading: "Idle memory".to_string(),
        description: format!(
            "Each program starts {} tasks (OS threads: {}) that each sleep {} s (corun: \
             `std::thread::sleep` under the hook; tokio: `tokio::time::sleep`; may: \
             `may::coroutine::sleep`; Go: `time.Sleep`) and prints READY once every task has \
             reached its sleep. RSS per task = (VmRSS of the process at READY − its VmRSS before \
             spawning) / tasks; system memory per task = (MemTotal − MemAvailable at READY − \
             the same just before the program started) / tasks, after folding the kernel's \
             per-CPU counters (`/proc/sys/vm/stat_refresh`); it includes kernel memory (thread \
             stacks, page tables) and anything else the machine did meanwhile, so it is noisier. The capacity run \
             spawns corun coroutines that stay alive (each waits to read a `std::sync::RwLock` \
             the probe holds for writing, parked on its futex) until `corun::Builder::spawn` \
             returns an error or {} are alive, and at 1,000, 10,000, 100,000 and 1,000,000 \
             reports its RSS per coroutine, its memory mappings and the time per spawn just \
             before (the median of ten slices of the last 10,000 spawns, or of all of them).",
            count(s.idle_tasks as f64),
            count(s.idle_thread_tasks as f64),
            s.idle_sleep_ms as f64 / 1000.0,
            count(s.capacity_max as f64)
        ),
        tables: vec![table, capacity],
        chart: Some(chart),
    }
}

/// Starts `launch`'s `idle` program: `tasks` tasks that each sleep `sleep_ms`.
pub fn start_idle(launch: &Launch, tasks: usize, sleep_ms: u64) -> Result<Running, String> {
    let launch = launch.clone().args([
        "idle".to_string(),
        "--tasks".to_string(),
        tasks.to_string(),
        "--sleep-ms".to_string(),
        sleep_ms.to_string(),
    ]);
    Running::start(
        &launch,
        Duration::from_millis(sleep_ms) + Duration::from_secs(180),
    )
}

/// One run of `tasks` sleeping tasks of `peer`: RSS and system memory per task, tasks asleep.
pub fn measure_idle(peer: &Peer, launch: &Launch, tasks: usize, sleep_ms: u64) -> Outcome {
    refresh_memory_counters();
    let system_before = procfs::system_used_kib().ok();
    let mut run = start_idle(launch, tasks, sleep_ms)?;
    let ready = run.wait_for("READY")?;
    refresh_memory_counters();
    let rss = procfs::rss_kib(run.pid()).ok();
    let system_during = procfs::system_used_kib().ok();
    run.finish()?;

    let lines = run.protocol_lines();
    let mut notes = corun_mode_notes(peer, &lines);
    let spawned = ready.number("spawned").unwrap_or(0.0);
    if let Some(error) = lines.iter().find(|l| l.tag == "SPAWN_ERROR") {
        notes.push(format!(
            "held {} of {} tasks; the next spawn failed: {}",
            count(spawned),
            count(tasks as f64),
            error.text("message").unwrap_or("(no message)")
        ));
    }
    if spawned <= 0.0 {
        return Err("no task could be spawned".to_string());
    }
    let woke_early = ready.number("woke_early").unwrap_or(0.0);
    if woke_early > 0.0 {
        notes.push(format!(
            "{} tasks had already woken up when the last one fell asleep (spawning took {} ms)",
            count(woke_early),
            ready.text("spawn_ms").unwrap_or("?")
        ));
    }
    let rss_base = ready.number("rss_base_kib").unwrap_or(0.0);
    let rss_per_task = rss.map(|rss| (rss as f64 - rss_base) / spawned);
    let system_per_task = match (system_before, system_during) {
        (Some(before), Some(during)) => Some((during as f64 - before as f64) / spawned),
        _ => None,
    };
    Ok(Measurement {
        values: vec![rss_per_task, system_per_task, Some(spawned)],
        notes,
    })
}

/// One run of the capacity probe of `peer`: a row per checkpoint it reaches (RSS per
/// coroutine, process mappings, µs per spawn), and how it ended in the notes.
fn measure_capacity(peer: &Peer, max: usize, table: &mut Table) {
    let outcome = (|| {
        let launch = peer.launch.clone()?.args([
            "capacity".to_string(),
            "--max".to_string(),
            max.to_string(),
        ]);
        let mut run = Running::start(&launch, Duration::from_secs(300))?;
        let line = run.wait_for("CAPACITY")?;
        run.finish()?;
        Ok::<_, String>((line, run.protocol_lines()))
    })();
    eprintln!(
        "  capacity: {}",
        if outcome.is_ok() { "done" } else { "failed" }
    );
    let (line, lines) = match outcome {
        Ok(found) => found,
        Err(reason) => {
            table.record("capacity", Err(reason));
            return;
        }
    };
    for note in corun_mode_notes(peer, &lines) {
        table.note(note);
    }
    for checkpoint in lines.iter().filter(|l| l.tag == "CHECKPOINT") {
        let held = checkpoint.number("held").unwrap_or(0.0);
        table.record(
            &format!("at {}", count(held)),
            Ok(Measurement {
                values: vec![
                    checkpoint.number("rss_kib").map(|kib| kib / held.max(1.0)),
                    checkpoint.number("mappings"),
                    checkpoint.number("us_per_spawn"),
                ],
                notes: Vec::new(),
            }),
        );
    }
    let held = line.number("spawned").unwrap_or(0.0);
    match line.text("message") {
        Some(message) => table.note(format!(
            "held {} at most; the next spawn failed with: {message}",
            count(held)
        )),
        None => table.note(format!(
            "no spawn failed: the probe stopped at its cap of {} (the real limit is higher)",
            count(held)
        )),
    }
}

/// How spawning at the last checkpoint compares with the first (medians over the runs).
fn capacity_note(table: &mut Table) {
    let rows = table.peers();
    let cost = |row: &String| table.summary(row, 2).map(|s| s.median);
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        if let (Some(a), Some(b)) = (cost(first), cost(last)) {
            if first != last && a > 0.0 {
                let note = format!(
                    "spawning {} cost {:.2}× spawning {} (µs/spawn: the median of ten slices of \
                     the 10,000 spawns before each checkpoint, or of all before it)",
                    last.trim_start_matches("at "),
                    b / a,
                    first.trim_start_matches("at ")
                );
                table.note(note);
            }
        }
    }
}

/// Makes `/proc/meminfo` current: the kernel folds its per-CPU memory counters into the global
/// ones only every `vm.stat_interval` (1 s) unless `/proc/sys/vm/stat_refresh` is written
/// (root only). Without that right, waits the interval out.
fn refresh_memory_counters() {
    use std::io::ErrorKind;
    match std::fs::write("/proc/sys/vm/stat_refresh", "1") {
        // EINVAL still refreshes (the kernel only reports that it saw a negative counter).
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::InvalidInput => {}
        Err(_) => std::thread::sleep(Duration::from_millis(1100)),
    }
}
