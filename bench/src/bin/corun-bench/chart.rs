//! One PNG bar chart per scenario: groups of bars (one bar per peer), each bar the median with
//! a min–max whisker and its value written above.
//!
//! Text needs a TrueType font file: [`load_font`] registers the first one found (DejaVu Sans
//! from Debian's `fonts-dejavu-core` first). Without one, charts are drawn without any text and
//! the report says so.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::stats::{format_compact, Summary};

/// A grouped bar chart.
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    /// One label per group of bars.
    pub groups: Vec<String>,
    /// One name per bar in a group (the peers).
    pub series: Vec<String>,
    /// `values[group][series]`; `None` for a peer that failed or was not run.
    pub values: Vec<Vec<Option<Summary>>>,
}

/// Registers a font for chart text; returns the file used, or `None` if none was found.
pub fn load_font() -> Option<PathBuf> {
    let preferred = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    ];
    let candidates = preferred
        .iter()
        .map(PathBuf::from)
        .chain(find_ttf_files(Path::new("/usr/share/fonts"), 4));
    for path in candidates {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // plotters keeps fonts for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            && ("sans-serif", 12).into_font().box_size("Ag 1.0").is_ok()
        {
            return Some(path);
        }
    }
    None
}

fn find_ttf_files(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            found.extend(find_ttf_files(&path, depth - 1));
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ttf"))
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Width of the legend column right of the plot.
const LEGEND_WIDTH: u32 = 130;

/// Draws `chart` into a PNG at `path`; with `text` false, draws no text at all.
pub fn draw(chart: &BarChart, path: &Path, text: bool) -> Result<(), String> {
    let bars = chart.groups.len() * chart.series.len().max(1);
    let width = (300 + 40 * bars as u32).clamp(720, 1500);
    let root = BitMapBackend::new(path, (width, 560)).into_drawing_area();
    draw_on(&root, chart, text).map_err(|e| format!("cannot draw {}: {e}", path.display()))?;
    root.present()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_on(root: &DrawingArea<BitMapBackend, Shift>, chart: &BarChart, text: bool) -> DrawResult {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let (plot_area, legend_area) = root.split_horizontally(width - LEGEND_WIDTH);
    if text {
        draw_legend(&legend_area, &chart.series)?;
    }
    let groups = chart.groups.len().max(1);
    let series = chart.series.len().max(1);
    let top = chart
        .values
        .iter()
        .flatten()
        .flatten()
        .map(|s| s.max.max(s.median))
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.2 } else { 1.0 };

    let mut builder = ChartBuilder::on(&plot_area);
    builder.margin(16).margin_right(24);
    if text {
        builder
            .caption(&chart.title, ("sans-serif", 22))
            .x_label_area_size(44)
            .y_label_area_size(84);
    } else {
        builder.x_label_area_size(10).y_label_area_size(10);
    }
    let mut plot = builder.build_cartesian_2d(0f64..groups as f64, 0f64..top)?;

    let y_format = |v: &f64| format_compact(*v);
    let mut mesh = plot.configure_mesh();
    mesh.disable_x_mesh().x_labels(0);
    if text {
        mesh.y_desc(chart.y_label.as_str())
            .y_label_formatter(&y_format)
            .axis_desc_style(("sans-serif", 15));
    } else {
        mesh.y_labels(0);
    }
    mesh.draw()?;

    let slot = 0.84 / series as f64;
    let label_style = ("sans-serif", 12)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (s, name) in chart.series.iter().enumerate() {
        let color = peer_color(name, s);
        let mut bars = Vec::new();
        for (g, row) in chart.values.iter().enumerate() {
            let Some(value) = row.get(s).copied().flatten() else {
                continue;
            };
            let x0 = g as f64 + 0.08 + s as f64 * slot;
            bars.push(Rectangle::new(
                [(x0 + slot * 0.08, 0.0), (x0 + slot * 0.92, value.median)],
                color.filled(),
            ));
        }
        plot.draw_series(bars)?;
        for (g, row) in chart.values.iter().enumerate() {
            let x = g as f64 + 0.08 + (s as f64 + 0.5) * slot;
            match row.get(s).copied().flatten() {
                Some(value) => {
                    if value.count > 1 {
                        let cap = slot * 0.2;
                        plot.draw_series([
                            PathElement::new(
                                [(x, value.min), (x, value.max)],
                                BLACK.stroke_width(1),
                            ),
                            PathElement::new([(x - cap, value.min), (x + cap, value.min)], BLACK),
                            PathElement::new([(x - cap, value.max), (x + cap, value.max)], BLACK),
                        ])?;
                    }
                    if text {
                        let label = format_compact(value.median);
                        plot.draw_series([Text::new(
                            label,
                            (x, value.max.max(value.median)),
                            label_style.clone(),
                        )])?;
                    }
                }
                None if text => {
                    plot.draw_series([Text::new(
                        "n/a".to_string(),
                        (x, 0.0),
                        label_style.clone(),
                    )])?;
                }
                None => {}
            }
        }
    }

    if text {
        let (_, y_pixels) = plot.plotting_area().get_pixel_range();
        let group_style = ("sans-serif", 14)
            .into_font()
            .into_text_style(root)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (g, label) in chart.groups.iter().enumerate() {
            let (x, _) = plot.backend_coord(&(g as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                label.as_str(),
                (x, y_pixels.end + 10),
                group_style.clone(),
            ))?;
        }
    }
    Ok(())
}

/// One coloured square and name per series, top to bottom.
fn draw_legend(area: &DrawingArea<BitMapBackend, Shift>, series: &[String]) -> DrawResult {
    let style = ("sans-serif", 14)
        .into_font()
        .into_text_style(area)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, name) in series.iter().enumerate() {
        let y = 70 + 24 * i as i32;
        let color = peer_color(name, i);
        area.draw(&Rectangle::new([(6, y - 7), (20, y + 7)], color.filled()))?;
        area.draw(&Text::new(name.as_str(), (28, y), style.clone()))?;
    }
    Ok(())
}

/// A fixed colour per known peer, so every chart uses the same one.
fn peer_color(name: &str, index: usize) -> RGBColor {
    match name {
        "corun" => RGBColor(214, 39, 40),
        "corosensei" | "tokio" => RGBColor(31, 119, 180),
        "generator" | "may" => RGBColor(44, 160, 44),
        "go" => RGBColor(23, 190, 207),
        "threads" => RGBColor(127, 127, 127),
        "corun-shared" => RGBColor(255, 127, 14),
        "corun-steal" => RGBColor(148, 103, 189),
        "corun-std-yield" => RGBColor(140, 86, 75),
        "corun-threads" => RGBColor(214, 39, 40),
        _ => {
            let (r, g, b) = Palette99::pick(index).rgb();
            RGBColor(r, g, b)
        }
    }
}
