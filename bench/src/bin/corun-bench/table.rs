//! A result table: one row per peer, one column per metric, median [min–max] per cell, and
//! corun's ratio to each peer on the first metric. Rendered as text (terminal) or Markdown.

use crate::stats::{format_summary, summarize, Summary};

/// Which direction of a metric is better.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Better {
    Higher,
    Lower,
    /// A count shown for information.
    Neither,
}

/// A metric column.
#[derive(Clone, Debug)]
pub struct Column {
    pub title: String,
    pub better: Better,
}

impl Column {
    pub fn higher(title: &str) -> Column {
        Column {
            title: title.to_string(),
            better: Better::Higher,
        }
    }

    pub fn lower(title: &str) -> Column {
        Column {
            title: title.to_string(),
            better: Better::Lower,
        }
    }

    pub fn neither(title: &str) -> Column {
        Column {
            title: title.to_string(),
            better: Better::Neither,
        }
    }
}

/// What one run of one peer measured: a value per column (`None`: not measurable this run),
/// and notes worth showing under the table.
#[derive(Debug, Default)]
pub struct Measurement {
    pub values: Vec<Option<f64>>,
    pub notes: Vec<String>,
}

/// The outcome of one run: measured, or failed with a reason.
pub type Outcome = Result<Measurement, String>;

#[derive(Debug)]
struct Row {
    peer: String,
    samples: Vec<Vec<f64>>,
    failures: Vec<String>,
    notes: Vec<String>,
}

/// One table of results.
#[derive(Debug)]
pub struct Table {
    pub title: String,
    columns: Vec<Column>,
    rows: Vec<Row>,
    notes: Vec<String>,
    show_ratio: bool,
    planned_runs: usize,
}

/// The peer every ratio is taken against.
pub const CORUN: &str = "corun";

impl Table {
    /// An empty table; `planned_runs` is the repetitions per peer (for the header).
    pub fn new(title: impl Into<String>, columns: Vec<Column>, planned_runs: usize) -> Table {
        Table {
            title: title.into(),
            columns,
            rows: Vec::new(),
            notes: Vec::new(),
            show_ratio: true,
            planned_runs,
        }
    }

    /// Drops the ratio column (for tables with no peers to compare).
    pub fn without_ratio(mut self) -> Table {
        self.show_ratio = false;
        self
    }

    /// Adds a note under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Records one run of `peer`. Rows appear in the order peers are first recorded.
    pub fn record(&mut self, peer: &str, outcome: Outcome) {
        let columns = self.columns.len();
        let row = self.row_mut(peer);
        match outcome {
            Ok(measurement) => {
                for (column, value) in measurement.values.into_iter().enumerate().take(columns) {
                    if let Some(value) = value.filter(|v| v.is_finite()) {
                        row.samples[column].push(value);
                    }
                }
                for note in measurement.notes {
                    if !row.notes.contains(&note) {
                        row.notes.push(note);
                    }
                }
            }
            Err(reason) => row.failures.push(reason),
        }
    }

    /// Whether `peer` has failed at least once in this table.
    pub fn has_failed(&self, peer: &str) -> bool {
        self.rows
            .iter()
            .any(|r| r.peer == peer && !r.failures.is_empty())
    }

    /// The peers in row order.
    pub fn peers(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.peer.clone()).collect()
    }

    /// The summary of `peer`'s samples in `column`.
    pub fn summary(&self, peer: &str, column: usize) -> Option<Summary> {
        let row = self.rows.iter().find(|r| r.peer == peer)?;
        summarize(row.samples.get(column)?)
    }

    /// corun's median divided by `peer`'s, on the first column.
    pub fn ratio(&self, peer: &str) -> Option<f64> {
        let ours = self.summary(CORUN, 0)?.median;
        let theirs = self.summary(peer, 0)?.median;
        (theirs != 0.0).then(|| ours / theirs)
    }

    fn row_mut(&mut self, peer: &str) -> &mut Row {
        let index = match self.rows.iter().position(|r| r.peer == peer) {
            Some(index) => index,
            None => {
                self.rows.push(Row {
                    peer: peer.to_string(),
                    samples: vec![Vec::new(); self.columns.len()],
                    failures: Vec::new(),
                    notes: Vec::new(),
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[index]
    }

    /// The header's explanation lines: statistic, directions, ratio.
    fn legend(&self) -> Vec<String> {
        let mut legend = Vec::new();
        let titles = |better: Better| -> Vec<&str> {
            self.columns
                .iter()
                .filter(|c| c.better == better)
                .map(|c| c.title.as_str())
                .collect()
        };
        let mut directions = Vec::new();
        for (better, words) in [
            (Better::Higher, "higher is better"),
            (Better::Lower, "lower is better"),
        ] {
            let names = titles(better);
            if !names.is_empty() {
                directions.push(format!("{words}: {}", names.join(", ")));
            }
        }
        if !directions.is_empty() {
            legend.push(directions.join("; "));
        }
        if self.show_ratio {
            if let Some(first) = self.columns.first() {
                let favours = match first.better {
                    Better::Higher => "above 1.00 favours corun",
                    Better::Lower => "below 1.00 favours corun",
                    Better::Neither => "no direction",
                };
                legend.push(format!(
                    "corun ratio = corun / peer on {} ({favours})",
                    first.title
                ));
            }
        }
        legend
    }

    /// The statistic in the title line, e.g. `median of 3 runs [min–max]`.
    fn statistic(&self) -> String {
        if self.planned_runs > 1 {
            format!("median of {} runs [min–max]", self.planned_runs)
        } else {
            "1 run".to_string()
        }
    }

    /// The cells of every row: peer, one per column, the ratio; or peer and a failure.
    fn cells(&self) -> Vec<(Vec<String>, bool)> {
        self.rows
            .iter()
            .map(|row| {
                let measured = row.samples.iter().any(|s| !s.is_empty());
                if !measured {
                    let reason = row
                        .failures
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "no data".into());
                    return (vec![row.peer.clone(), format!("failed: {reason}")], false);
                }
                let mut cells = vec![row.peer.clone()];
                for column in 0..self.columns.len() {
                    cells.push(
                        summarize(&row.samples[column])
                            .map(|s| format_summary(&s))
                            .unwrap_or_else(|| "n/a".to_string()),
                    );
                }
                if self.show_ratio {
                    cells.push(
                        self.ratio(&row.peer)
                            .map(|r| format!("{r:.2}"))
                            .unwrap_or_else(|| "n/a".to_string()),
                    );
                }
                (cells, true)
            })
            .collect()
    }

    /// Notes: the table's, then each row's (failed runs among them).
    fn all_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        for row in &self.rows {
            for note in &row.notes {
                notes.push(format!("{}: {note}", row.peer));
            }
            let measured = row.samples.iter().any(|s| !s.is_empty());
            if measured && !row.failures.is_empty() {
                notes.push(format!(
                    "{}: {} run(s) failed: {}",
                    row.peer,
                    row.failures.len(),
                    row.failures[0]
                ));
            }
            if !measured && row.failures.len() > 1 {
                notes.push(format!(
                    "{}: all {} runs failed",
                    row.peer,
                    row.failures.len()
                ));
            }
        }
        notes
    }

    fn header(&self) -> Vec<String> {
        let mut header = vec!["peer".to_string()];
        header.extend(self.columns.iter().map(|c| c.title.clone()));
        if self.show_ratio {
            header.push("corun ratio".to_string());
        }
        header
    }

    /// Plain-text rendering for the terminal.
    pub fn to_text(&self) -> String {
        let header = self.header();
        let rows = self.cells();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for (cells, full) in &rows {
            if *full {
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let pad = |text: &str, width: usize| {
            format!(
                "{text}{}",
                " ".repeat(width.saturating_sub(text.chars().count()))
            )
        };
        let mut out = format!("{}   ({})\n", self.title, self.statistic());
        for line in self.legend() {
            out.push_str(&format!("  {line}\n"));
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, &w)| pad(cell, w))
                .collect();
            format!("{}\n", padded.join("   ").trim_end())
        };
        out.push_str(&line(&header));
        for (cells, full) in &rows {
            if *full {
                out.push_str(&line(cells));
            } else {
                out.push_str(&format!("{}   {}\n", pad(&cells[0], widths[0]), cells[1]));
            }
        }
        for note in self.all_notes() {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }

    /// Markdown rendering for the report.
    pub fn to_markdown(&self) -> String {
        let header = self.header();
        let mut out = format!("#### {}\n\n{}", self.title, self.statistic());
        for line in self.legend() {
            out.push_str(&format!("; {line}"));
        }
        out.push_str(".\n\n");
        out.push_str(&format!("| {} |\n", header.join(" | ")));
        let aligns: Vec<&str> = (0..header.len())
            .map(|i| if i == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("|{}|\n", aligns.join("|")));
        for (cells, full) in self.cells() {
            let mut cells: Vec<String> = cells.iter().map(|c| escape(c)).collect();
            if !full {
                cells.resize(header.len(), String::new());
            }
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        let notes = self.all_notes();
        if !notes.is_empty() {
            out.push('\n');
            for note in notes {
                out.push_str(&format!("- {}\n", escape(&note)));
            }
        }
        out.push('\n');
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(values: &[f64]) -> Outcome {
        Ok(Measurement {
            values: values.iter().map(|&v| Some(v)).collect(),
            notes: Vec::new(),
        })
    }

    #[test]
    fn ratios_medians_and_failures() {
        let mut table = Table::new(
            "echo",
            vec![Column::higher("round trips/s"), Column::lower("p99 µs")],
            3,
        );
        for v in [100.0, 120.0, 110.0] {
            table.record(CORUN, measured(&[v, 5.0]));
            table.record("tokio", measured(&[v / 2.0, 4.0]));
        }
        table.record("may", Err("timeout".to_string()));
        assert_eq!(table.summary(CORUN, 0).unwrap().median, 110.0);
        assert_eq!(table.ratio("tokio"), Some(2.0));
        assert_eq!(table.ratio("may"), None);
        let text = table.to_text();
        assert!(text.contains("110 [100–120]"), "{text}");
        assert!(text.contains("failed: timeout"), "{text}");
        assert!(text.contains("2.00"), "{text}");
        let markdown = table.to_markdown();
        assert!(
            markdown.contains("| may | failed: timeout |  |  |\n"),
            "{markdown}"
        );
    }
}
