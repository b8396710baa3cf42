//! The report's plots, drawn with plotters to inline SVG: lines over time, latency CDFs on a
//! log axis, and grouped bars (p50 bar, p99 whisker).

use plotters::coord::Shift;
use plotters::prelude::*;

/// Size of every plot, in CSS pixels.
pub const WIDTH: u32 = 1100;
pub const HEIGHT: u32 = 440;
/// Series drawn in one plot; the rest stay in the report's table.
pub const MAX_SERIES: usize = 12;

/// A named line of (x, y) points.
pub type Line = (String, Vec<(f64, f64)>);

fn plot_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("drawing a plot: {e}"))
}

fn colour(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Draws into an SVG string; `draw` gets the whole white canvas.
fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
) -> std::io::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root).map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(out)
}

type Chart<'a, X, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>;

fn legend<X: Ranged, Y: Ranged>(
    chart: &mut Chart<'_, X, Y>,
    at: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// One coloured line per series, then the legend.
fn draw_lines<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    series: &[Line],
    at: SeriesLabelPosition,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(chart, at)
}

/// A canvas with only a caption and a sentence (a plot with nothing to draw).
pub fn empty(title: &str, why: &str) -> std::io::Result<String> {
    svg(|root| {
        let area = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        area.draw(&Text::new(why.to_owned(), (40, 60), ("sans-serif", 16)))
            .map_err(|e| e.to_string())
    })
}

/// Lines over a linear x axis (time) with a legend.
pub fn lines(
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Line],
) -> std::io::Result<String> {
    let pts = || series.iter().flat_map(|s| s.1.iter());
    let x_max = pts().map(|p| p.0).fold(0.0, f64::max).max(1e-3);
    let y_max = pts().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut chart, series, SeriesLabelPosition::UpperRight)
    })
}

/// Cumulative distributions over a logarithmic x axis (latency in µs).
pub fn cdfs(title: &str, x_desc: &str, series: &[Line]) -> std::io::Result<String> {
    let xs = || series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let lo = xs().fold(f64::INFINITY, f64::min).clamp(1e-3, 1e9) / 1.5;
    let hi = (xs().fold(0.0, f64::max) * 1.5).max(lo * 10.0);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("fraction of batches")
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut chart, series, SeriesLabelPosition::LowerRight)
    })
}

/// Bars grouped by category (`groups`), one colour per key: the bar is the p50, the whisker
/// the p99. `bars[g]` holds (key index, p50, p99) for group `g`.
pub struct Bars<'a> {
    pub title: &'a str,
    pub y_desc: &'a str,
    pub keys: &'a [String],
    pub groups: &'a [String],
    pub bars: &'a [Vec<(usize, f64, f64)>],
}

pub fn bars(b: &Bars) -> std::io::Result<String> {
    let y_max = b
        .bars
        .iter()
        .flatten()
        .map(|v| v.2.max(v.1))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.1;
    let n = b.groups.len().max(1) as f64;
    let width = 0.8 / b.keys.len().max(1) as f64;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(b.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..n, 0f64..y_max)
            .map_err(|e| e.to_string())?;
        let groups = b.groups;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.len().max(1) * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                let centred = (x - x.floor() - 0.5).abs() < 0.26;
                match groups.get(i) {
                    Some(g) if centred => g.clone(),
                    _ => String::new(),
                }
            })
            .y_desc(b.y_desc)
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, key) in b.keys.iter().enumerate() {
            let c = colour(k);
            let rects = b.bars.iter().enumerate().flat_map(|(g, v)| {
                v.iter()
                    .filter(|v| v.0 == k)
                    .flat_map(move |&(_, p50, p99)| {
                        let x0 = g as f64 + 0.1 + k as f64 * width;
                        let mid = x0 + width / 2.0;
                        [
                            PathElement::new(vec![(mid, p50), (mid, p99)], BLACK.stroke_width(1))
                                .into_dyn(),
                            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, p50)], c.filled())
                                .into_dyn(),
                        ]
                    })
            });
            chart
                .draw_series(rects)
                .map_err(|e| e.to_string())?
                .label(key.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}
