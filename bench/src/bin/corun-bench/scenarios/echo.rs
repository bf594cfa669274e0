//! Scenario 5: a TCP echo server under load from `echo-loadgen`, with server and load
//! generator on the same CPU and on different CPUs.

use std::time::Duration;

use super::{
    chart_of_tables, corun_mode_notes, count, interleave, open_file_limit, Context, Section,
};
use crate::peers::{Peer, Toolbox};
use crate::runner::{Launch, Running};
use crate::table::{Column, Measurement, Outcome, Table};

/// Where the server and the load generator run.
#[derive(Clone, Copy)]
pub enum Placement {
    /// Both pinned to CPU 0.
    SameCpu,
    /// The server pinned to CPU 0, the load generator to CPU 1.
    DifferentCpus,
    /// Both on CPUs 0 and 1, placed by the kernel (the server's workers can run in parallel).
    BothCpus,
}

impl Placement {
    /// The CPUs of the server and of the load generator.
    fn cpus(self) -> (&'static [usize], &'static [usize]) {
        match self {
            Placement::SameCpu => (&[0], &[0]),
            Placement::DifferentCpus => (&[0], &[1]),
            Placement::BothCpus => (&[0, 1], &[0, 1]),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Placement::SameCpu => "same CPU",
            Placement::DifferentCpus => "different CPUs",
            Placement::BothCpus => "both on CPUs 0-1",
        }
    }
}

/// The columns of every echo table.
pub fn columns() -> Vec<Column> {
    vec![
        Column::higher("round trips/s"),
        Column::lower("p50 µs"),
        Column::lower("p99 µs"),
        Column::lower("server CPU µs/rt"),
    ]
}

/// The longest the load generator spends connecting before it measures what it has.
const CONNECT_PHASE: Duration = Duration::from_secs(20);

/// File descriptors a process keeps for itself besides the connections.
const FD_RESERVE: u64 = 64;

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let peers = [
        t.corun(),
        t.corun_threads(),
        t.tokio(),
        t.may(),
        t.go(),
        t.threads(),
    ];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placements: &[Placement] = if cpus >= 2 {
        &[Placement::SameCpu, Placement::DifferentCpus]
    } else {
        &[Placement::SameCpu]
    };
    let fd_limit = open_file_limit();
    let mut tables = Vec::new();
    let mut labels = Vec::new();
    for &connections in &s.echo_connections {
        let fits = (fd_limit.saturating_sub(FD_RESERVE) as usize).min(connections);
        for &placement in placements {
            let mut table = Table::new(
                format!(
                    "echo, {} connections, {}",
                    count(fits as f64),
                    placement.describe()
                ),
                columns(),
                s.reps,
            );
            if fits < connections {
                table.note(format!(
                    "{} connections were planned, but the open-file limit ({fd_limit}) lets \
                     each process hold only {fits}",
                    count(connections as f64)
                ));
            }
            interleave(&mut table, s.reps, &peers, |peer, launch| {
                echo_once(t, peer, launch, fits, placement, ctx)
            });
            labels.push(format!("{}, {}", count(fits as f64), placement.describe()));
            tables.push(table);
        }
    }
    if placements.len() < 2 {
        if let Some(first) = tables.first_mut() {
            first.note("this machine has one CPU: the different-CPU cases were skipped");
        }
    }
    let pairs: Vec<(&Table, String)> = tables.iter().zip(labels).collect();
    let chart = chart_of_tables(
        "echo: round trips per second (higher is better)",
        "round trips/s",
        &pairs,
        0,
    );
    Section {
        slug: "echo",
        heading: "TCP echo".to_string(),
        description: format!(
            "N connections each send 64 bytes and wait for the 64-byte echo, then repeat. One \
             load generator for every peer (`echo-loadgen`: tokio current-thread runtime, one \
             task per connection, HDR histogram of round-trip latency). Warm-up {} ms after all \
             connections are up, then a {} s window. The server is pinned to CPU 0; the load \
             generator to CPU 0 (same CPU) or CPU 1 (different CPUs). Server CPU = utime + stime \
             of the server process (/proc/PID/stat) over the window, per round trip. corun: a \
             std thread-per-connection server (`TcpListener` accept loop, `corun::spawn` per \
             connection, plain `read` / `write_all`) under the hook; threads: the same source \
             with `std::thread::spawn`; corun-threads: that OS-thread binary unchanged under \
             the hook in threads mode (`CORUN_THREADS=1`), its threads coroutines; tokio, may, \
             Go: the same server written idiomatically for each.",
            s.echo_warmup_ms,
            s.echo_duration_ms as f64 / 1000.0
        ),
        tables,
        chart: Some(chart),
    }
}

/// One run of the echo server of `peer` under `connections` connections.
pub fn echo_once(
    tools: &Toolbox,
    peer: &Peer,
    launch: &Launch,
    connections: usize,
    placement: Placement,
    ctx: &Context,
) -> Outcome {
    let s = ctx.settings;
    let (server_cpu, client_cpu) = placement.cpus();
    let window = Duration::from_millis(s.echo_warmup_ms + s.echo_duration_ms);
    let server_launch = launch.clone().args(["echo-server"]).pinned(server_cpu);
    let mut server = Running::start(&server_launch, window + Duration::from_secs(90))?;
    let port = server
        .wait_for("PORT")?
        .number("port")
        .ok_or("the server printed no port")?;
    let loadgen = tools.loadgen()?.pinned(client_cpu).args([
        "--addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--connections".to_string(),
        connections.to_string(),
        "--warmup-ms".to_string(),
        s.echo_warmup_ms.to_string(),
        "--duration-ms".to_string(),
        s.echo_duration_ms.to_string(),
        "--server-pid".to_string(),
        server.pid().to_string(),
        "--connect-phase-ms".to_string(),
        CONNECT_PHASE.as_millis().to_string(),
    ]);
    // The load generator bounds its own connect phase (CONNECT_PHASE); this is a safety net.
    let mut client = Running::start(&loadgen, window + CONNECT_PHASE + Duration::from_secs(20))?;
    let finished = client.finish();
    if !server.is_running() {
        return Err(format!("the server exited: {}", server.exit_description()));
    }
    finished?;
    server.kill();

    let mut notes = corun_mode_notes(peer, &server.protocol_lines());
    let result = client
        .protocol_lines()
        .into_iter()
        .rev()
        .find(|l| l.tag == "RESULT")
        .ok_or("the load generator printed no RESULT")?;
    let connected = result.number("connected").unwrap_or(0.0);
    let first_error = result.text("message").unwrap_or("").to_string();
    if connected <= 0.0 {
        return Err(format!("no connection could be made: {first_error}"));
    }
    if connected < connections as f64 {
        notes.push(format!(
            "only {} of {} connections were established ({first_error})",
            count(connected),
            count(connections as f64)
        ));
    }
    let io_errors = result.number("io_errors").unwrap_or(0.0);
    if io_errors > 0.0 {
        let server_said = server.stderr_tail(1);
        notes.push(format!(
            "{} connections broke during the run{}",
            count(io_errors),
            if server_said.is_empty() {
                String::new()
            } else {
                format!(" (server: {server_said})")
            }
        ));
    }
    let round_trips = result.number("round_trips").unwrap_or(0.0);
    let seconds = result.number("seconds").unwrap_or(0.0);
    if round_trips <= 0.0 || seconds <= 0.0 {
        return Err("no round trip completed in the window".to_string());
    }
    let cpu = result
        .number("server_cpu_s")
        .map(|cpu| cpu * 1e6 / round_trips);
    Ok(Measurement {
        values: vec![
            Some(round_trips / seconds),
            result.number("p50_us"),
            result.number("p99_us"),
            cpu,
        ],
        notes,
    })
}
