//! Scenario 6: an HTTP/1.1 keep-alive hello-world driven by `wrk`.

use std::time::Duration;

use super::{chart_of_tables, corun_mode_notes, count, interleave, Context, Section};
use crate::peers::{Peer, Toolbox};
use crate::runner::{Launch, Running};
use crate::table::{Column, Measurement, Outcome, Table};

/// What `wrk --latency` printed that the tables use.
#[derive(Debug, Default, PartialEq)]
struct WrkReport {
    requests_per_second: Option<f64>,
    /// 50, 75, 90, 99th percentile latencies in µs.
    percentiles_us: [Option<f64>; 4],
    socket_errors: Option<String>,
    non_2xx: Option<f64>,
}

const PERCENTILES: [&str; 4] = ["50%", "75%", "90%", "99%"];

pub fn run(ctx: &Context) -> Section {
    let s = ctx.settings;
    let t = ctx.tools;
    let peers = [t.corun(), t.corun_threads(), t.tokio(), t.go()];
    let mut tables = Vec::new();
    for &connections in &s.http_connections {
        let mut table = Table::new(
            format!("http, {} connections", count(connections as f64)),
            vec![
                Column::higher("requests/s"),
                Column::lower("p50 µs"),
                Column::lower("p75 µs"),
                Column::lower("p90 µs"),
                Column::lower("p99 µs"),
            ],
            s.reps,
        );
        interleave(&mut table, s.reps, &peers, |peer, launch| {
            http_once(t, peer, launch, connections, s.http_duration_s)
        });
        tables.push(table);
    }
    let pairs: Vec<(&Table, String)> = tables
        .iter()
        .zip(&s.http_connections)
        .map(|(table, c)| (table, format!("{} connections", count(*c as f64))))
        .collect();
    let chart = chart_of_tables(
        "http hello-world: requests per second (higher is better)",
        "requests/s",
        &pairs,
        0,
    );
    Section {
        slug: "http",
        heading: "HTTP/1.1 keep-alive hello-world".to_string(),
        description: format!(
            "`wrk -t2 -cN -d{}s --latency` against a hello-world server (13-byte body), server \
             and wrk unpinned on the machine's CPUs. corun: a minimal HTTP/1.1 server written \
             with std (thread-per-connection, `corun::spawn`, plain `read` / `write_all`) under \
             the hook; corun-threads: the same source built with `std::thread::spawn`, unchanged, \
             under the hook in threads mode (`CORUN_THREADS=1`); tokio: hyper 1 `http1::Builder::serve_connection` per connection; Go: \
             `net/http`. Latency percentiles are wrk's (its default 2 s request timeout).",
            s.http_duration_s
        ),
        tables,
        chart: Some(chart),
    }
}

fn http_once(
    tools: &Toolbox,
    peer: &Peer,
    launch: &Launch,
    connections: usize,
    duration_s: u64,
) -> Outcome {
    let wrk = tools.wrk()?;
    let timeout = Duration::from_secs(duration_s + 120);
    let mut server = Running::start(&launch.clone().args(["http-server"]), timeout)?;
    let port = server
        .wait_for("PORT")?
        .number("port")
        .ok_or("the server printed no port")?;
    let wrk = wrk.args([
        "-t2".to_string(),
        format!("-c{connections}"),
        format!("-d{duration_s}s"),
        "--latency".to_string(),
        format!("http://127.0.0.1:{port}/"),
    ]);
    let mut client = Running::start(&wrk, Duration::from_secs(duration_s + 60))?;
    let finished = client.finish();
    if !server.is_running() {
        return Err(format!("the server exited: {}", server.exit_description()));
    }
    finished?;
    server.kill();

    let report = parse_wrk(client.output());
    let Some(rps) = report.requests_per_second.filter(|r| *r > 0.0) else {
        return Err(format!(
            "wrk reported no requests: {}",
            client.output().join(" | ")
        ));
    };
    let mut notes = corun_mode_notes(peer, &server.protocol_lines());
    if let Some(errors) = report.socket_errors {
        notes.push(format!("wrk socket errors: {errors}"));
    }
    if let Some(bad) = report.non_2xx {
        notes.push(format!("{} non-2xx responses", count(bad)));
    }
    let mut values = vec![Some(rps)];
    values.extend(report.percentiles_us);
    Ok(Measurement { values, notes })
}

/// Reads `Requests/sec:`, the `Latency Distribution` lines, `Socket errors:` and
/// `Non-2xx or 3xx responses:` from wrk's output.
fn parse_wrk(lines: &[String]) -> WrkReport {
    let mut report = WrkReport::default();
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            report.requests_per_second = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            report.socket_errors = Some(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = rest.trim().parse().ok();
        } else if let Some((label, value)) = line.split_once(char::is_whitespace) {
            if let Some(i) = PERCENTILES.iter().position(|p| *p == label) {
                report.percentiles_us[i] = parse_duration_us(value.trim());
            }
        }
    }
    report
}

/// `455.00us`, `2.46ms`, `1.01s` → microseconds.
fn parse_duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let output = "Running 5s test @ http://127.0.0.1:8080/
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.13us  100.00us   5.00ms   90.00%
    Req/Sec    98.00k     2.00k  100.00k    70.00%
  Latency Distribution
     50%  455.00us
     75%  600.00us
     90%    1.20ms
     99%    2.46ms
  975000 requests in 5.00s, 100.00MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
Requests/sec: 195000.50
Transfer/sec:     20.00MB";
        let lines: Vec<String> = output.lines().map(str::to_string).collect();
        let report = parse_wrk(&lines);
        assert_eq!(report.requests_per_second, Some(195000.5));
        assert_eq!(
            report.percentiles_us,
            [Some(455.0), Some(600.0), Some(1200.0), Some(2460.0)]
        );
        assert_eq!(
            report.socket_errors.as_deref(),
            Some("connect 0, read 12, write 0, timeout 3")
        );
        assert_eq!(report.non_2xx, None);
    }
}
