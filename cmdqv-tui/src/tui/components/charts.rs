//! Charts with labelled axes (ratatui's `Chart`): a queue's commands/s and interval p99 batch
//! latency over the last minutes (time axis in seconds before now), and two queues' batch
//! latency distributions on one logarithmic latency axis.

use cmdqv_core::analysis::QueueSummary;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph};

use super::common::panel;
use crate::tui::format;
use crate::tui::model::history::{INTERVAL_S, Point, QueueHistory};
use crate::tui::theme::Theme;

/// Time windows the x axis snaps to, in seconds.
const WINDOWS: [f64; 6] = [30.0, 60.0, 120.0, 300.0, 600.0, 1200.0];

/// Commands/s (left) and p99 batch latency (right) of one queue over the last minutes.
pub fn draw_time_charts(h: Option<&QueueHistory>, now: f64, t: &Theme, f: &mut Frame, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(area);
    let points = h
        .map(|h| h.points().iter().collect::<Vec<_>>())
        .unwrap_or_default();
    let window = window_for(&points, now);
    let rate: Vec<(f64, f64)> = series(&points, now, window, |p| Some(p.commands_per_s));
    let p99: Vec<(f64, f64)> = series(&points, now, window, |p| p.p99_ns.map(|v| v as f64));
    let title = format!(" commands/s, last {} ", format::uptime(window));
    time_chart(&rate, window, &title, "cmd/s", format::rate, t, f, left);
    let title = format!(" p99 batch latency, last {} ", format::uptime(window));
    let ns = |v: f64| format::ns(v as u64);
    time_chart(&p99, window, &title, "p99", ns, t, f, right);
}

/// The smallest window in [`WINDOWS`] that holds every point (the largest one otherwise).
fn window_for(points: &[&Point], now: f64) -> f64 {
    let span = points.first().map_or(0.0, |p| now - p.t);
    WINDOWS
        .into_iter()
        .find(|&w| span <= w)
        .unwrap_or(WINDOWS[WINDOWS.len() - 1])
}

/// `(seconds before now, value)` of the points inside the window with a finite value.
fn series(
    points: &[&Point],
    now: f64,
    window: f64,
    value: impl Fn(&Point) -> Option<f64>,
) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| Some((p.t - now, value(p)?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite() && *x >= -window && *y >= 0.0)
        .collect()
}

/// One time chart: x from `-window` to now, y from 0 to the peak, both axes labelled.
#[allow(clippy::too_many_arguments)]
fn time_chart(
    data: &[(f64, f64)],
    window: f64,
    title: &str,
    unit: &'static str,
    label: impl Fn(f64) -> String,
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    let block = panel(title.to_string(), t);
    if data.len() < 2 {
        let msg = format!("collecting (a point every {INTERVAL_S:.0}s)");
        f.render_widget(Paragraph::new(msg).style(t.dim()).block(block), area);
        return;
    }
    let peak = data.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = if peak > 0.0 { peak * 1.1 } else { 1.0 };
    let x_labels = [
        format!("-{}", format::uptime(window)),
        format!("-{}", format::uptime(window / 2.0)),
        "now".to_string(),
    ];
    let y_labels = ["0".to_string(), label(top / 2.0), label(top)];
    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(t.bar())
        .data(data);
    let chart = Chart::new(vec![dataset])
        .block(block)
        .x_axis(axis("time", t).bounds([-window, 0.0]).labels(x_labels))
        .y_axis(axis(unit, t).bounds([0.0, top]).labels(y_labels));
    f.render_widget(chart, area);
}

fn axis<'a>(title: &'a str, t: &Theme) -> Axis<'a> {
    Axis::default()
        .title(Line::styled(title, t.dim()))
        .style(t.dim())
}

/// The share of each queue's batches per latency bucket, both on one log10 latency axis.
pub fn draw_distributions(
    a: &QueueSummary,
    b: &QueueSummary,
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    let title = format!(
        " batch latency distribution (% of batches per bucket): p99 {} {} vs {} {}{} ",
        a.name,
        format::latency(a.batch_latency_ns.count, a.batch_latency_ns.p99),
        b.name,
        format::latency(b.batch_latency_ns.count, b.batch_latency_ns.p99),
        ratio(a, b)
    );
    let block = panel(title, t);
    let (da, db) = (distribution(a), distribution(b));
    let xs = da.iter().chain(&db).map(|p| p.0);
    let (lo, hi) = (
        xs.clone().fold(f64::INFINITY, f64::min),
        xs.fold(f64::NEG_INFINITY, f64::max),
    );
    if !lo.is_finite() || !hi.is_finite() {
        let p = Paragraph::new("no batches in either queue yet")
            .style(t.dim())
            .alignment(Alignment::Center)
            .block(block);
        f.render_widget(p, area);
        return;
    }
    let (lo, hi, labels) = decades(lo, hi);
    let peak = da
        .iter()
        .chain(&db)
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1.0);
    let top = (peak * 1.1).min(100.0);
    let set = |name: &str, data, style: Style| {
        Dataset::default()
            .name(name.to_string())
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(style)
            .data(data)
    };
    let chart = Chart::new(vec![
        set(&a.name, &da, t.bar()),
        set(&b.name, &db, t.warn()),
    ])
    .block(block)
    .legend_position(Some(LegendPosition::TopRight))
    .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
    .x_axis(
        axis("batch latency (log)", t)
            .bounds([lo, hi])
            .labels(labels),
    )
    .y_axis(axis("% batches", t).bounds([0.0, top]).labels([
        "0%".to_string(),
        format!("{:.0}%", top / 2.0),
        format!("{top:.0}%"),
    ]));
    f.render_widget(chart, area);
}

/// ` (3.4×)`: how much slower the slower queue's p99 is, when both have batches.
fn ratio(a: &QueueSummary, b: &QueueSummary) -> String {
    let (pa, pb) = (a.batch_latency_ns.p99 as f64, b.batch_latency_ns.p99 as f64);
    if a.batch_latency_ns.count == 0 || b.batch_latency_ns.count == 0 || pa <= 0.0 || pb <= 0.0 {
        return String::new();
    }
    format!(" ({:.1}×)", pa.max(pb) / pa.min(pb))
}

/// `(log10 of the bucket's upper bound in ns, % of the queue's batches)` per non-empty bucket.
fn distribution(q: &QueueSummary) -> Vec<(f64, f64)> {
    let total: u128 = q.latency_histogram.iter().map(|b| u128::from(b.1)).sum();
    if total == 0 {
        return Vec::new();
    }
    q.latency_histogram
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(ub, n)| ((ub as f64).log10(), (n as f64 / total as f64) * 100.0))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// Decade-aligned bounds around `[lo, hi]` (log10 ns) with one label per tick: labels are spread
/// evenly over the axis, so they sit on whole decades (every other one past six).
fn decades(lo: f64, hi: f64) -> (f64, f64, Vec<String>) {
    let lo = lo.floor();
    let mut hi = hi.ceil().max(lo + 1.0);
    let step = if hi - lo > 6.0 { 2.0 } else { 1.0 };
    if (hi - lo) % step != 0.0 {
        hi += 1.0;
    }
    let ticks = ((hi - lo) / step) as usize;
    let labels = (0..=ticks)
        .map(|i| format::ns(10f64.powf(lo + i as f64 * step).min(u64::MAX as f64) as u64))
        .collect();
    (lo, hi, labels)
}

/// A bordered pane saying that a queue of the comparison is gone.
pub fn gone(name: &str, t: &Theme) -> Paragraph<'static> {
    Paragraph::new(format!("queue {name} is no longer reported"))
        .style(t.dim())
        .block(Block::bordered().border_style(t.border()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decade_ticks_cover_the_range() {
        let (lo, hi, labels) = decades(3.2, 4.6);
        assert_eq!((lo, hi), (3.0, 5.0));
        assert_eq!(labels, ["1.00µs", "10.0µs", "100µs"]);
        let (lo, hi, labels) = decades(0.0, 19.0);
        assert_eq!((lo, hi), (0.0, 20.0));
        assert_eq!(labels.len(), 11);
        assert_eq!(labels.last().unwrap(), ">1d");
    }

    #[test]
    fn windows_snap_to_the_span() {
        let p = |t| Point {
            t,
            commands_per_s: 1.0,
            p99_ns: None,
        };
        let (a, b) = (p(10.0), p(100.0));
        assert_eq!(window_for(&[&a, &b], 100.0), 120.0);
        assert_eq!(window_for(&[], 5.0), 30.0);
        assert_eq!(
            series(&[&a, &b], 100.0, 60.0, |p| Some(p.commands_per_s)),
            [(0.0, 1.0)]
        );
    }
}
