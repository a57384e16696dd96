//! PNG plots with plotters' bitmap backend. Text is drawn with DejaVu Sans, embedded
//! from the `dejavu` crate and rendered by `ab_glyph`, so no system font or fontconfig
//! is needed.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

const SIZE: (u32, u32) = (960, 540);
const COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];

/// Makes "sans-serif" available to plotters; call once before drawing.
pub fn register_fonts() -> Result<()> {
    register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the embedded font does not parse"))
}

/// One named line.
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Axes<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    pub x_max: f64,
    pub y_max: f64,
    /// A dashed horizontal reference (a target), with its label.
    pub target: Option<(f64, &'a str)>,
    /// Labels for integer x positions instead of numbers.
    pub x_names: Option<&'a [String]>,
}

fn wrap<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("plotting failed: {error:?}")
}

pub fn lines(path: &Path, axes: &Axes<'_>, lines: &[Line]) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(wrap)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..axes.x_max, 0f64..axes.y_max)
        .map_err(wrap)?;
    let names = axes.x_names;
    let format_x = |x: &f64| match names {
        Some(names) if (x - x.round()).abs() < 1e-6 => {
            names.get(x.round() as usize).cloned().unwrap_or_default()
        }
        Some(_) => String::new(),
        // Two decimals at most: tick positions are sums of floating-point steps.
        None => format!("{}", (x * 100.0).round() / 100.0),
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(axes.x)
        .y_desc(axes.y)
        .x_label_formatter(&format_x)
        .label_style(("sans-serif", 15));
    if let Some(names) = names {
        mesh.x_labels(names.len() * 4 + 1);
    }
    mesh.draw().map_err(wrap)?;
    for (index, line) in lines.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(wrap)?
            .label(line.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2))
            });
        if names.is_some() {
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|p| Circle::new(*p, 4, colour.filled())),
                )
                .map_err(wrap)?;
        }
    }
    draw_target(&mut chart, axes)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(wrap)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))
}

/// Grouped bars: `values[group][series]`, one colour per series.
pub fn bars(path: &Path, axes: &Axes<'_>, series: &[String], values: &[Vec<f64>]) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(wrap)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..values.len() as f64, 0f64..axes.y_max)
        .map_err(wrap)?;
    let names = axes.x_names.unwrap_or(&[]);
    let format_x = |x: &f64| {
        // Group g spans [g, g+1): name it at its centre.
        let centre = x - 0.5;
        if (centre - centre.round()).abs() < 1e-6 {
            names
                .get(centre.round() as usize)
                .cloned()
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(values.len() * 2 + 1)
        .x_label_formatter(&format_x)
        .x_desc(axes.x)
        .y_desc(axes.y)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(wrap)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (s, name) in series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let left = |g: usize| g as f64 + 0.1 + s as f64 * width;
        // Bars taller than the axis are cut at its top and carry their value.
        let rects = values.iter().enumerate().map(|(g, row)| {
            Rectangle::new(
                [
                    (left(g), 0.0),
                    (left(g) + width * 0.9, row[s].min(axes.y_max)),
                ],
                colour.filled(),
            )
        });
        chart
            .draw_series(rects)
            .map_err(wrap)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], colour.filled()));
        let clipped = values
            .iter()
            .enumerate()
            .filter(|(_, row)| row[s] > axes.y_max)
            .map(|(g, row)| {
                Text::new(
                    format!("{:.0}×", row[s]),
                    (left(g), axes.y_max * 0.92),
                    ("sans-serif", 16).into_font().color(&WHITE),
                )
            });
        chart.draw_series(clipped).map_err(wrap)?;
    }
    draw_target(&mut chart, axes)?;
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(wrap)?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn draw_target(chart: &mut Chart<'_, '_>, axes: &Axes<'_>) -> Result<()> {
    let Some((y, label)) = axes.target else {
        return Ok(());
    };
    let x_max = chart.x_range().end;
    let dashes = (0..40).map(|i| {
        let from = x_max * f64::from(i) / 40.0;
        PathElement::new(
            vec![(from, y), (from + x_max / 80.0, y)],
            BLACK.stroke_width(1),
        )
    });
    chart.draw_series(dashes).map_err(wrap)?;
    chart
        .draw_series(std::iter::once(Text::new(
            label.to_owned(),
            (x_max * 0.01, y),
            ("sans-serif", 15),
        )))
        .map_err(wrap)?;
    Ok(())
}

/// An empirical CDF of `samples` as a line: (value, fraction at or below it).
pub fn cdf(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len().max(1) as f64;
    // At most ~400 points: enough for a smooth curve in a 960-pixel plot.
    let step = (sorted.len() / 400).max(1);
    let mut points: Vec<_> = sorted
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect();
    if let Some(last) = sorted.last() {
        points.push((*last, 1.0));
    }
    points
}
