//! `corun-bench`: runs corun and its peers side by side and writes the report.
//!
//! The command line is in [`USAGE`] (what `corun-bench --help` prints). `scripts/bench.sh`
//! builds everything and calls this. Tables go to stdout as each scenario finishes, progress
//! to stderr; `DIR/report.md` and one `DIR/<scenario>.png` per scenario are written at the end.

mod chart;
mod peers;
mod report;
mod runner;
mod scenarios;
mod settings;
mod stats;
mod table;

use std::path::PathBuf;
use std::time::Instant;

use corun_bench::args::{bad_usage, fail, Args, Opt, Spec};

use crate::peers::{find_on_path, Toolbox};
use crate::scenarios::{Context, ALL};
use crate::settings::Settings;

/// What `corun-bench --help` prints.
const USAGE: &str = "\
usage: corun-bench [--hook PATH] [--go-peer PATH] [--out DIR] [--quick] [--reps N]
                   [--only SCENARIO,...]

  --hook PATH      libcorun_hook.so [target/release/libcorun_hook.so]
  --go-peer PATH   the Go peer (bench/go); without it, Go is reported as failed
  --out DIR        where report.md and the charts go [target/bench]
  --quick          1 run per peer, small counts: a smoke test
  --reps N         runs per peer in every case, N >= 1 [3; 1 with --quick]
  --only LIST      only these scenarios, comma-separated:
                   switch,spawn-join,ping-pong,yield,idle-memory,fresh-spawn,echo,http,identity

scripts/bench.sh (make bench) builds everything and runs this.
";

const SPEC: Spec = Spec {
    program: "corun-bench",
    usage: USAGE,
    options: &[
        Opt::value("hook"),
        Opt::value("go-peer"),
        Opt::value("out"),
        Opt::flag("quick"),
        Opt::value("reps"),
        Opt::value("only"),
    ],
    commands: &[],
};

fn main() {
    let args = Args::from_env(&SPEC);
    let mut settings = if args.flag("quick") {
        Settings::quick()
    } else {
        Settings::full()
    };
    settings.reps = args.get("reps", settings.reps);
    if settings.reps == 0 {
        bad_usage(
            SPEC.program,
            &"bad value `0` for --reps (expected 1 or more)",
        );
    }
    let only_list = args.value::<String>("only").unwrap_or_default();
    let only: Vec<&str> = only_list
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    if only_list.is_some() && only.is_empty() {
        bad_usage(SPEC.program, &"--only needs at least one scenario");
    }
    if let Some(unknown) = only
        .iter()
        .find(|n| !ALL.iter().any(|(name, _)| name == *n))
    {
        bad_usage(
            SPEC.program,
            &format!("unknown scenario `{unknown}` in --only"),
        );
    }

    let out_dir = PathBuf::from(args.text("out", "target/bench"));
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", out_dir.display())));
    runner::record_pids_in(out_dir.join("children.pids"));
    raise_open_file_limit();

    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| fail("cannot find the directory of this program"));
    let go_peer = Some(args.text("go-peer", "")).filter(|p| !p.is_empty());
    let tools = Toolbox {
        bin_dir,
        hook: PathBuf::from(args.text("hook", "target/release/libcorun_hook.so")),
        go_peer: go_peer.map(PathBuf::from),
        wrk: find_on_path("wrk"),
    };
    let font = chart::load_font();
    if font.is_none() {
        eprintln!("corun-bench: no TrueType font found; charts will have no text");
    }

    let started = Instant::now();
    let context = Context {
        settings: &settings,
        tools: &tools,
    };
    let mut sections = Vec::new();
    for (name, run) in ALL {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        eprintln!("[{:>4.0} s] {name}", started.elapsed().as_secs_f64());
        let section = run(&context);
        for table in &section.tables {
            println!("{}", table.to_text());
        }
        sections.push(section);
    }

    let charts: Vec<Result<PathBuf, String>> = sections
        .iter()
        .map(|section| {
            let chart = section.chart.as_ref().ok_or("no chart for this scenario")?;
            let file = PathBuf::from(format!("{}.png", section.slug));
            chart::draw(chart, &out_dir.join(&file), font.is_some())?;
            Ok(file)
        })
        .collect();
    let info = report::RunInfo {
        settings: &settings,
        elapsed: started.elapsed(),
        font,
        charts,
        hook: tools.hook.clone(),
    };
    match report::write(&out_dir, &sections, &info) {
        Ok(path) => println!("report: {}", path.display()),
        Err(e) => fail(&format!("cannot write the report: {e}")),
    }
    for chart in info.charts.iter() {
        match chart {
            Ok(file) => println!("chart:  {}", out_dir.join(file).display()),
            Err(reason) => println!("chart:  none ({reason})"),
        }
    }
    println!("total:  {:.0} s", info.elapsed.as_secs_f64());
}

/// Raises the soft open-file limit to the hard one, for this process and its children.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ALL, USAGE};

    /// `--help` lists every scenario `--only` takes, in the order they run.
    #[test]
    fn usage_lists_every_scenario() {
        let names: Vec<&str> = ALL.iter().map(|(name, _)| *name).collect();
        let listed = USAGE
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(names[0]))
            .expect("the usage lists no scenarios");
        assert_eq!(listed, names.join(","));
    }
}
