//! The detail view of one queue: counters, last error with its command, commands/s and p99
//! batch latency over time (charts with time axes), phases of the batch latency, latency
//! histogram, last commands.

use cmdqv_core::analysis::{QueueError, QueueSummary};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::charts::draw_time_charts;
use super::common::panel;
use super::phases::{draw_phases, phases_height};
use crate::tui::format;
use crate::tui::model::history::QueueHistory;
use crate::tui::model::queues::state_label;
use crate::tui::theme::Theme;

/// The detail of `q`, the queue selected by `name`; `q` is `None` once the snapshot no longer
/// reports that queue. `history` is its points over time, `now` the snapshot's time.
pub fn draw_detail(
    name: Option<&str>,
    q: Option<&QueueSummary>,
    history: (Option<&QueueHistory>, f64),
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    f.render_widget(Clear, area);
    let Some(q) = q else {
        let name = name.unwrap_or_default();
        f.render_widget(
            Paragraph::new(format!("queue {name} is no longer reported (Esc closes)"))
                .style(t.dim())
                .block(Block::bordered()),
            area,
        );
        return;
    };
    let block = panel(format!(" {} — detail ", q.name), t)
        .title_bottom(Line::styled(" Esc closes, ↑/↓ other queue ", t.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);

    let top_h = 7u16.min(inner.height / 2);
    let rest = inner.height.saturating_sub(top_h);
    let chart_h = (rest / 2).max(rest.min(8));
    let [top, charts, bottom] = Layout::vertical([
        Constraint::Length(top_h),
        Constraint::Length(chart_h),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let [info, err] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Fill(1)]).areas(top);
    f.render_widget(
        Paragraph::new(detail_info(q, t)).wrap(Wrap { trim: false }),
        info,
    );
    f.render_widget(last_error(q, t), err);
    draw_time_charts(history.0, history.1, t, f, charts);
    let [left, recent] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(bottom);
    // A panel too short for one phase row between its borders is left out.
    let phases_h = Some(phases_height(q).min(left.height / 2))
        .filter(|h| *h >= 3)
        .unwrap_or(0);
    let [phases, hist] =
        Layout::vertical([Constraint::Length(phases_h), Constraint::Fill(1)]).areas(left);
    if phases_h > 0 {
        draw_phases(q, t, f, phases);
    }
    draw_histogram(q, t, f, hist);
    draw_recent(q, t, f, recent);
}

/// A label before a value.
fn label(s: &'static str, t: &Theme) -> Span<'static> {
    Span::styled(s, t.dim())
}

/// The counters at the top left, one line each (also the compare view's).
pub fn detail_info(q: &QueueSummary, t: &Theme) -> Vec<Line<'static>> {
    vec![
        Line::from(vec![
            label("state ", t),
            Span::styled(state_label(q.state), t.state(q.state)),
            label("  global ", t),
            Span::raw(format::id(q.global_id)),
            label("  VINTF ", t),
            Span::raw(format::id(q.vintf)),
            label(" LVCMDQ ", t),
            Span::raw(format::id(q.lvcmdq)),
        ]),
        Line::from(vec![
            label("size ", t),
            Span::raw(format::entries(q.log2size)),
            label("  PROD ", t),
            Span::raw(format!("{:#x}", q.prod)),
            label(" CONS ", t),
            Span::raw(format!("{:#x}", q.cons)),
            label("  occupancy ", t),
            Span::raw(format::percent(q.occupancy)),
        ]),
        Line::from(vec![
            label("commands ", t),
            Span::raw(count_and_rate(q.commands, q.commands_per_s)),
            label("  CMD_SYNC ", t),
            Span::raw(count_and_rate(q.syncs, q.syncs_per_s)),
        ]),
        Line::from(vec![
            label("batches ", t),
            Span::raw(format::count(q.batches)),
            label("  mean size ", t),
            Span::raw(format::rate(q.mean_batch_size)),
        ]),
        Line::from(vec![label("latency ", t), Span::raw(latency_text(q))]),
        errors_line(q, t),
        Line::from(vec![label("opcodes ", t), Span::raw(opcodes_text(q))]),
    ]
}

/// `12.3k (456/s)`.
fn count_and_rate(n: u64, per_s: f64) -> String {
    format!("{} ({}/s)", format::count(n), format::rate(per_s))
}

fn latency_text(q: &QueueSummary) -> String {
    let lat = &q.batch_latency_ns;
    let mean = if lat.count == 0 || !lat.mean.is_finite() || lat.mean < 0.0 {
        "-".to_string()
    } else {
        format::ns(lat.mean as u64)
    };
    format!(
        "p50 {} p99 {} max {} mean {mean} (n={})",
        format::latency(lat.count, lat.p50),
        format::latency(lat.count, lat.p99),
        format::latency(lat.count, lat.max),
        format::count(lat.count)
    )
}

fn errors_line(q: &QueueSummary, t: &Theme) -> Line<'static> {
    let mut errors: Vec<String> = q
        .errors_by_code
        .iter()
        .map(|(k, v)| format!("{k} {}", format::count(*v)))
        .collect();
    if errors.is_empty() {
        errors.push("none".into());
    }
    Line::from(vec![
        label("errors ", t),
        Span::styled(
            format!("{}: {}", format::count(q.errors), errors.join(", ")),
            if q.errors > 0 { t.error() } else { t.normal() },
        ),
    ])
}

/// Opcodes by count, the most frequent first.
fn opcodes_text(q: &QueueSummary) -> String {
    let mut ops: Vec<(&String, &u64)> = q.opcodes.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    ops.iter()
        .map(|(k, v)| format!("{k} {}", format::count(**v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn last_error(q: &QueueSummary, t: &Theme) -> Paragraph<'static> {
    let block = panel(" Last error ", t);
    let Some(e) = &q.last_error else {
        return Paragraph::new(Line::styled("no error", t.dim())).block(block);
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(if e.acknowledged { "  " } else { "! " }, t.error()),
            Span::styled(format!("{} (code {})", e.name, e.code), t.error()),
            Span::raw(format!(" at index {:#x}", e.index)),
        ]),
        Line::from(if e.acknowledged {
            Span::styled("acknowledged (GERRORN toggled)", t.ok())
        } else {
            Span::styled("NOT acknowledged: queue stopped", t.error())
        }),
        Line::from(vec![
            Span::styled("at ", t.dim()),
            Span::raw(format::timestamp(e.ts_ns)),
        ]),
    ];
    lines.extend(error_command(q, e, t));
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block)
}

/// The command that faulted, raw and (when it is among the recent ones) decoded.
fn error_command(q: &QueueSummary, e: &QueueError, t: &Theme) -> Vec<Line<'static>> {
    let Some([w0, w1]) = e.command else {
        return vec![Line::styled("command not captured", t.dim())];
    };
    let mut lines = vec![Line::from(vec![
        Span::styled("cmd ", t.dim()),
        Span::raw(format!("{w0:016x} {w1:016x}")),
    ])];
    let decoded = q
        .recent
        .iter()
        .rev()
        .find(|r| r.index == e.index && r.w0 == w0 && r.w1 == w1);
    if let Some(r) = decoded {
        lines.push(Line::from(vec![
            Span::styled("    ", t.dim()),
            Span::raw(r.text.clone()),
        ]));
    }
    lines
}

/// Start of the `rows` consecutive buckets with the most samples.
fn densest_window(buckets: &[(u64, u64)], rows: usize) -> usize {
    if buckets.len() <= rows || rows == 0 {
        return 0;
    }
    (0..=buckets.len() - rows)
        .max_by_key(|&s| {
            buckets[s..s + rows]
                .iter()
                .map(|b| u128::from(b.1))
                .sum::<u128>()
        })
        .unwrap_or(0)
}

fn draw_histogram(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
    let block = panel(" batch latency histogram ", t);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let h = &q.latency_histogram;
    let first = h.iter().position(|b| b.1 > 0);
    let last = h.iter().rposition(|b| b.1 > 0);
    let (Some(first), Some(last)) = (first, last) else {
        f.render_widget(Paragraph::new("no samples").style(t.dim()), inner);
        return;
    };
    let range = &h[first..=last];
    let rows = inner.height as usize;
    let start = densest_window(range, rows);
    let shown = &range[start..(start + rows).min(range.len())];
    let max = shown.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    let label_w = 8usize;
    let count_w = 6usize;
    let bar_w = (inner.width as usize).saturating_sub(label_w + count_w + 2);
    let lines: Vec<Line> = shown
        .iter()
        .map(|&(ub, n)| {
            let len = ((n as u128 * bar_w as u128) / max as u128) as usize;
            let len = if n > 0 { len.max(1) } else { 0 };
            Line::from(vec![
                Span::styled(
                    format!("{:>w$} ", format!("≤{}", format::ns(ub)), w = label_w),
                    t.dim(),
                ),
                Span::styled("█".repeat(len), t.bar()),
                Span::raw(" ".repeat(bar_w - len.min(bar_w))),
                Span::raw(format!(" {:>w$}", format::count(n), w = count_w)),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

fn draw_recent(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
    let block = panel(" last commands ", t);
    let rows = block.inner(area).height as usize;
    let err_index = q.last_error.as_ref().map(|e| e.index);
    let tail = &q.recent[q.recent.len().saturating_sub(rows)..];
    let mut lines: Vec<Line> = tail
        .iter()
        .map(|r| {
            let is_err = Some(r.index) == err_index;
            Line::from(vec![
                Span::styled(if is_err { "! " } else { "  " }, t.error()),
                Span::styled(format!("{:>6x} ", r.index), t.dim()),
                Span::styled(r.text.as_str(), if is_err { t.error() } else { t.normal() }),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("no command seen yet", t.dim()));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}
