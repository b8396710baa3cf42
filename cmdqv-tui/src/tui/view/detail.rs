//! The detail view of one queue: counters, last error with its command, rate sparkline,
//! latency histogram, last commands.

use cmdqv_core::analysis::QueueSummary;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Sparkline, Wrap};

use crate::tui::app::{App, state_label};
use crate::tui::format;
use crate::tui::theme::Theme;

pub(super) fn selected_queue(app: &App) -> Option<&QueueSummary> {
    let name = app.selected.as_deref()?;
    app.summary.as_ref()?.queues.iter().find(|q| q.name == name)
}

pub(super) fn draw_detail(app: &mut App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    f.render_widget(Clear, area);
    let Some(q) = selected_queue(app) else {
        let name = app.selected.clone().unwrap_or_default();
        f.render_widget(
            Paragraph::new(format!("queue {name} is no longer reported (Esc closes)"))
                .style(t.dim())
                .block(Block::bordered()),
            area,
        );
        return;
    };
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(format!(" {} — detail ", q.name), t.title()))
        .title_bottom(Line::styled(" Esc closes, ↑/↓ other queue ", t.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);

    let top_h = 7u16.min(inner.height / 2);
    let spark_h = 5u16.min(inner.height.saturating_sub(top_h) / 2);
    let [top, spark, bottom] = Layout::vertical([
        Constraint::Length(top_h),
        Constraint::Length(spark_h),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let [info, err] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Fill(1)]).areas(top);
    f.render_widget(
        Paragraph::new(detail_info(q, &t)).wrap(Wrap { trim: false }),
        info,
    );
    f.render_widget(last_error(q, &t), err);

    // Sparkline of commands/s: the newest samples that fit.
    let spark_block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(
            format!(
                " commands/s, last {} intervals, peak {} ",
                q.rate_history.len(),
                format::count(q.rate_history.iter().copied().max().unwrap_or(0))
            ),
            t.title(),
        ));
    let w = spark_block.inner(spark).width as usize;
    let tail = &q.rate_history[q.rate_history.len().saturating_sub(w)..];
    // Scaled to 0..=1000 here: the widget's own scaling overflows on huge values.
    let peak = tail.iter().copied().max().unwrap_or(0).max(1);
    let scaled: Vec<u64> = tail
        .iter()
        .map(|&v| (u128::from(v) * 1000 / u128::from(peak)) as u64)
        .collect();
    f.render_widget(
        Sparkline::default()
            .data(&scaled)
            .max(1000)
            .style(t.bar())
            .block(spark_block),
        spark,
    );

    let [hist, recent] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(bottom);
    draw_histogram(q, &t, f, hist);
    draw_recent(q, &t, f, recent);
}

pub(super) fn detail_info(q: &QueueSummary, t: &Theme) -> Vec<Line<'static>> {
    let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    let lat = &q.batch_latency_ns;
    let mut errors: Vec<String> = q
        .errors_by_code
        .iter()
        .map(|(k, v)| format!("{k} {}", format::count(*v)))
        .collect();
    if errors.is_empty() {
        errors.push("none".into());
    }
    let mut ops: Vec<(&String, &u64)> = q.opcodes.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let ops: Vec<String> = ops
        .iter()
        .map(|(k, v)| format!("{k} {}", format::count(**v)))
        .collect();
    let d = |s: &'static str| Span::styled(s, t.dim());
    vec![
        Line::from(vec![
            d("state "),
            Span::styled(state_label(q.state), t.state(q.state)),
            d("  global "),
            Span::raw(opt(q.global_id)),
            d("  VINTF "),
            Span::raw(opt(q.vintf)),
            d(" LVCMDQ "),
            Span::raw(opt(q.lvcmdq)),
        ]),
        Line::from(vec![
            d("size "),
            Span::raw(format::entries(q.log2size)),
            d("  PROD "),
            Span::raw(format!("{:#x}", q.prod)),
            d(" CONS "),
            Span::raw(format!("{:#x}", q.cons)),
            d("  occupancy "),
            Span::raw(format::percent(q.occupancy)),
        ]),
        Line::from(vec![
            d("commands "),
            Span::raw(format!(
                "{} ({}/s)",
                format::count(q.commands),
                format::rate(q.commands_per_s)
            )),
            d("  CMD_SYNC "),
            Span::raw(format!(
                "{} ({}/s)",
                format::count(q.syncs),
                format::rate(q.syncs_per_s)
            )),
        ]),
        Line::from(vec![
            d("batches "),
            Span::raw(format::count(q.batches)),
            d("  mean size "),
            Span::raw(format::rate(q.mean_batch_size)),
        ]),
        Line::from(vec![
            d("latency "),
            Span::raw(format!(
                "p50 {} p99 {} max {} mean {} (n={})",
                format::latency(lat.count, lat.p50),
                format::latency(lat.count, lat.p99),
                format::latency(lat.count, lat.max),
                if lat.count == 0 || !lat.mean.is_finite() || lat.mean < 0.0 {
                    "-".to_string()
                } else {
                    format::ns(lat.mean as u64)
                },
                format::count(lat.count)
            )),
        ]),
        Line::from(vec![
            d("errors "),
            Span::styled(
                format!("{}: {}", format::count(q.errors), errors.join(", ")),
                if q.errors > 0 { t.error() } else { t.normal() },
            ),
        ]),
        Line::from(vec![d("opcodes "), Span::raw(ops.join(", "))]),
    ]
}

pub(super) fn last_error(q: &QueueSummary, t: &Theme) -> Paragraph<'static> {
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(" Last error ", t.title()));
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
    match e.command {
        Some([w0, w1]) => {
            lines.push(Line::from(vec![
                Span::styled("cmd ", t.dim()),
                Span::raw(format!("{w0:016x} {w1:016x}")),
            ]));
            if let Some(r) = q
                .recent
                .iter()
                .rev()
                .find(|r| r.index == e.index && r.w0 == w0 && r.w1 == w1)
            {
                lines.push(Line::from(vec![
                    Span::styled("    ", t.dim()),
                    Span::raw(r.text.clone()),
                ]));
            }
        }
        None => lines.push(Line::styled("command not captured", t.dim())),
    }
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block)
}

pub(super) fn draw_histogram(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(" batch latency histogram ", t.title()));
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
    // The densest window of buckets that fits.
    let start = if range.len() <= rows || rows == 0 {
        0
    } else {
        (0..=range.len() - rows)
            .max_by_key(|&s| {
                range[s..s + rows]
                    .iter()
                    .map(|b| u128::from(b.1))
                    .sum::<u128>()
            })
            .unwrap_or(0)
    };
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

pub(super) fn draw_recent(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(" last commands ", t.title()));
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
                Span::styled(r.text.clone(), if is_err { t.error() } else { t.normal() }),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::styled("no command seen yet", t.dim()));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}
