//! Rendering: one function per pane. Everything here reads the [`App`] and writes a [`Frame`];
//! the only state written back is scroll offsets and the page size for PgUp/PgDn.

use cmdqv_core::analysis::{LogLine, QueueState, QueueSummary, VintfSummary};
use cmdqv_core::event::Source;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Sparkline, Table, TableState, Tabs, Wrap,
};

use super::app::{App, SortColumn, View, state_label};
use super::format;
use super::keymap;
use super::theme::Theme;

/// Smallest terminal the dashboard is laid out for.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

pub(super) fn draw(app: &mut App, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(app, f, area);
        return;
    }
    let [header, tabs, body, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(app, f, header);
    draw_tabs(app, f, tabs);
    if app.summary.is_none() {
        let p = Paragraph::new("waiting for the first snapshot from the collector…")
            .style(app.theme.dim())
            .alignment(Alignment::Center)
            .block(Block::bordered().border_style(app.theme.border()));
        f.render_widget(p, body);
    } else if app.detail {
        draw_detail(app, f, body);
    } else {
        match app.view {
            View::Queues => draw_dashboard(app, f, body),
            View::Log => draw_log_view(app, f, body),
            View::Probes => draw_probes(app, f, body),
        }
    }
    draw_footer(app, f, footer);
    if app.help {
        draw_help(app, f, area);
    }
}

fn too_small(app: &App, f: &mut Frame, area: Rect) {
    let msg = format!(
        "terminal too small (need {MIN_WIDTH}×{MIN_HEIGHT}, have {}×{})",
        area.width, area.height
    );
    let y = area.height / 2;
    let r = Rect::new(
        area.x,
        area.y + y.saturating_sub(1),
        area.width,
        area.height - y + 1,
    );
    let p = Paragraph::new(vec![
        Line::styled(msg, app.theme.warn()),
        Line::styled("q quits", app.theme.dim()),
    ])
    .alignment(Alignment::Center)
    .wrap(Wrap { trim: true });
    f.render_widget(p, r.intersection(area));
}

fn sep(t: &Theme) -> Span<'static> {
    Span::styled(" │ ", t.dim())
}

fn draw_header(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut l1: Vec<Span> = vec![Span::styled("cmdqv", t.title()), Span::raw(" ")];
    if app.paused {
        l1.push(Span::styled(" PAUSED ", t.badge(Color::Yellow)));
        l1.push(Span::raw(" "));
    }
    if let Some(file) = &app.recording {
        l1.push(Span::styled(format!(" ● REC {file} "), t.badge(Color::Red)));
        l1.push(Span::raw(" "));
    }
    let Some(s) = &app.summary else {
        l1.push(Span::styled("waiting for the first snapshot…", t.dim()));
        let l2 = Line::from(vec![Span::styled(
            format!("refresh {} Hz", app.refresh_hz),
            t.dim(),
        )]);
        f.render_widget(Paragraph::new(vec![Line::from(l1), l2]), area);
        return;
    };
    match s.source {
        Source::Ebpf => l1.push(Span::styled("source: eBPF", t.ok())),
        Source::InProcess => l1.push(Span::styled(
            "source: in-process (no eBPF)",
            t.warn().add_modifier(Modifier::BOLD),
        )),
        Source::Replay => l1.push(Span::styled("source: replay", t.normal())),
    }
    l1.push(sep(t));
    l1.push(Span::styled("target ", t.dim()));
    l1.push(Span::raw(s.target.clone()));
    if !s.notes.is_empty() {
        l1.push(sep(t));
        let n = s.notes.len();
        l1.push(Span::styled(
            format!("{n} note{} (3 Probes)", if n == 1 { "" } else { "s" }),
            t.warn(),
        ));
    }

    let mut l2: Vec<Span> = vec![
        Span::styled("events ", t.dim()),
        Span::raw(format::count(s.events)),
        Span::styled(" (", t.dim()),
        Span::raw(format::rate(s.events_per_s)),
        Span::styled("/s)", t.dim()),
        sep(t),
    ];
    if s.drops > 0 {
        l2.push(Span::styled(
            format!("! drops {}", format::count(s.drops)),
            t.error(),
        ));
    } else {
        l2.push(Span::styled("drops ", t.dim()));
        l2.push(Span::raw("0"));
    }
    l2.extend([
        sep(t),
        Span::styled("up ", t.dim()),
        Span::raw(format::uptime(s.elapsed_s)),
        sep(t),
        Span::raw(format!("{} Hz", app.refresh_hz)),
        sep(t),
    ]);
    let count = |st| s.queues.iter().filter(|q| q.state == st).count();
    l2.push(Span::raw(format!("{} queues ", s.queues.len())));
    l2.push(Span::styled(
        format!("{} hw", count(QueueState::Hardware)),
        t.state(QueueState::Hardware),
    ));
    l2.push(Span::raw(" "));
    l2.push(Span::styled(
        format!("{} emu", count(QueueState::Emulated)),
        t.state(QueueState::Emulated),
    ));
    let errs = count(QueueState::Error);
    if errs > 0 {
        l2.push(Span::raw(" "));
        l2.push(Span::styled(format!("!{errs} err"), t.error()));
    }
    f.render_widget(Paragraph::new(vec![Line::from(l1), Line::from(l2)]), area);
}

fn draw_tabs(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let titles: Vec<Line> = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title())))
        .collect();
    let sel = View::ALL.iter().position(|&v| v == app.view);
    let [left, right] =
        Layout::horizontal([Constraint::Length(32), Constraint::Fill(1)]).areas(area);
    let tabs = Tabs::new(titles)
        .select(sel)
        .style(t.dim())
        .highlight_style(t.selected().add_modifier(Modifier::BOLD))
        .divider(Span::styled("│", t.dim()));
    f.render_widget(tabs, left);

    let mut info: Vec<Span> = Vec::new();
    let filter = app.filter(app.view);
    if !filter.is_empty() || app.editing_filter {
        info.push(Span::styled("filter ", t.dim()));
        info.push(Span::styled(format!("\"{filter}\""), t.key()));
        info.push(Span::raw("  "));
    }
    if let Some(s) = &app.summary {
        match app.view {
            View::Queues => {
                let (col, desc) = app.sort();
                info.push(Span::styled("sort ", t.dim()));
                info.push(Span::raw(format!("{}{}", col.title(), arrow(desc))));
                info.push(Span::styled(
                    format!("  {}/{} queues", app.visible_queues().len(), s.queues.len()),
                    t.dim(),
                ));
            }
            View::Log => {
                if app.log_follow {
                    info.push(Span::styled("following", t.ok()));
                } else {
                    info.push(Span::styled("scrolled back (f follows)", t.warn()));
                }
                info.push(Span::styled(
                    format!("  {}/{} lines", app.filtered_log().len(), s.log.len()),
                    t.dim(),
                ));
            }
            View::Probes => {
                let ok = s
                    .probes
                    .iter()
                    .filter(|p| probe_class(&p.status) == ProbeClass::Ok)
                    .count();
                info.push(Span::styled(
                    format!("{ok}/{} probes ok", s.probes.len()),
                    t.dim(),
                ));
            }
        }
    }
    info.push(Span::raw(" "));
    f.render_widget(
        Paragraph::new(Line::from(info)).alignment(Alignment::Right),
        right,
    );
}

fn arrow(desc: bool) -> &'static str {
    if desc { "▼" } else { "▲" }
}

fn draw_footer(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut spans: Vec<Span> = Vec::new();
    if app.editing_filter {
        spans.push(Span::styled("/", t.key()));
        spans.push(Span::raw(app.filter(app.view).to_string()));
        spans.push(Span::styled(
            "█",
            t.normal().add_modifier(Modifier::SLOW_BLINK),
        ));
        spans.push(Span::styled(
            match app.view {
                View::Queues => "  (name or state)   ",
                View::Log => "  (kind or text)   ",
                View::Probes => "  (name, status or reason)   ",
            },
            t.dim(),
        ));
    }
    let mut hints = keymap::hints(&app.contexts());
    // The ways to quit and to the help stay visible however narrow the footer.
    let mut pinned = 0;
    for word in ["quit", "help"] {
        if let Some(i) = hints.iter().position(|(_, w)| *w == word) {
            let h = hints.remove(i);
            hints.push(h);
            pinned += 1;
        }
    }
    let width = |h: &[(String, &str)]| -> usize {
        h.iter()
            .map(|(k, w)| k.chars().count() + w.chars().count() + 3)
            .sum()
    };
    let used: usize = spans.iter().map(|s| s.width()).sum();
    while hints.len() > pinned && used + width(&hints) > area.width as usize {
        hints.remove(hints.len() - pinned - 1);
    }
    for (k, w) in hints {
        spans.push(Span::styled(k, t.key()));
        spans.push(Span::raw(format!(" {w}")));
        spans.push(Span::raw("  "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Queue table columns: the sort key, the width, and how badly the column is wanted when the
/// terminal is narrow (0 = always).
const COLUMNS: [(SortColumn, u16, u8); 16] = [
    (SortColumn::Id, 3, 5),
    (SortColumn::Name, 10, 0),
    (SortColumn::Vintf, 6, 6),
    (SortColumn::State, 8, 1),
    (SortColumn::Size, 5, 10),
    (SortColumn::Prod, 8, 11),
    (SortColumn::Cons, 8, 12),
    (SortColumn::Occupancy, 4, 9),
    (SortColumn::CmdRate, 6, 2),
    (SortColumn::SyncRate, 7, 7),
    (SortColumn::P50, 6, 8),
    (SortColumn::P99, 6, 3),
    (SortColumn::Max, 6, 13),
    (SortColumn::Batch, 6, 14),
    (SortColumn::Commands, 6, 15),
    (SortColumn::Errors, 5, 4),
];

/// The columns that fit in `width`, in display order.
pub(super) fn fitting_columns(width: u16) -> Vec<(SortColumn, u16)> {
    // Selection symbol and error marker, each with its spacing.
    let mut budget = i32::from(width) - 4;
    let mut by_prio: Vec<_> = COLUMNS.to_vec();
    by_prio.sort_by_key(|c| c.2);
    let mut keep = Vec::new();
    for (col, w, _) in by_prio {
        let need = i32::from(w) + 1;
        if need <= budget {
            budget -= need;
            keep.push(col);
        }
    }
    COLUMNS
        .iter()
        .filter(|c| keep.contains(&c.0))
        .map(|c| (c.0, c.1))
        .collect()
}

fn queue_cell(q: &QueueSummary, col: SortColumn, t: &Theme) -> Cell<'static> {
    let lat = &q.batch_latency_ns;
    let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
    match col {
        SortColumn::Id => Cell::from(opt(q.global_id)),
        SortColumn::Name => Cell::from(q.name.clone()),
        SortColumn::Vintf => Cell::from(match (q.vintf, q.lvcmdq) {
            (None, None) => "-".to_string(),
            (v, l) => format!("{}/{}", opt(v), opt(l)),
        }),
        SortColumn::State => Cell::from(Span::styled(state_label(q.state), t.state(q.state))),
        SortColumn::Size => Cell::from(format::entries(q.log2size)),
        SortColumn::Prod => Cell::from(format!("{:x}", q.prod)),
        SortColumn::Cons => Cell::from(format!("{:x}", q.cons)),
        SortColumn::Occupancy => Cell::from(format::percent(q.occupancy)),
        SortColumn::CmdRate => Cell::from(format::rate(q.commands_per_s)),
        SortColumn::SyncRate => Cell::from(format::rate(q.syncs_per_s)),
        SortColumn::P50 => Cell::from(format::latency(lat.count, lat.p50)),
        SortColumn::P99 => Cell::from(format::latency(lat.count, lat.p99)),
        SortColumn::Max => Cell::from(format::latency(lat.count, lat.max)),
        SortColumn::Batch => Cell::from(if q.batches == 0 {
            "-".to_string()
        } else {
            format::rate(q.mean_batch_size)
        }),
        SortColumn::Commands => Cell::from(format::count(q.commands)),
        SortColumn::Errors => {
            let style = if q.errors > 0 { t.error() } else { t.dim() };
            Cell::from(Span::styled(format::count(q.errors), style))
        }
    }
}

/// A queue wants attention: stopped on an error, or an error not yet acknowledged.
fn queue_alert(q: &QueueSummary) -> bool {
    q.state == QueueState::Error || q.last_error.as_ref().is_some_and(|e| !e.acknowledged)
}

fn draw_queue_table(app: &mut App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(" VCMDQs ", t.title()));
    let inner = block.inner(area);
    let cols = fitting_columns(inner.width);
    let (sort, desc) = app.sort();
    let header = Row::new(
        std::iter::once(Cell::from(" ")).chain(cols.iter().map(|(c, _)| {
            let mut title = c.title().to_string();
            if *c == sort {
                title.push_str(arrow(desc));
            }
            let mut cell = Cell::from(title);
            if *c == sort {
                cell = cell.style(Style::new().add_modifier(Modifier::UNDERLINED));
            }
            cell
        })),
    )
    .style(t.title());
    let visible = app.visible_queues();
    let selected = app.selected_index(&visible);
    let longest_name = visible
        .iter()
        .map(|q| q.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(64);
    // Only the rows on screen are built (300 queues cost no more than 30). The window keeps
    // the selection visible, moving as little as possible, like a table with state would.
    let page = usize::from(inner.height.saturating_sub(1)).max(1);
    let mut offset = app.queue_offset.min(visible.len().saturating_sub(page));
    if let Some(sel) = selected {
        if sel < offset {
            offset = sel;
        } else if sel >= offset + page {
            offset = sel + 1 - page;
        }
    }
    let window = &visible[offset.min(visible.len())..(offset + page).min(visible.len())];
    let rows: Vec<Row> = window
        .iter()
        .map(|q| {
            let marker = if queue_alert(q) {
                Cell::from(Span::styled("!", t.error()))
            } else {
                Cell::from(" ")
            };
            let row = Row::new(
                std::iter::once(marker).chain(cols.iter().map(|(c, _)| queue_cell(q, *c, &t))),
            );
            if q.state == QueueState::Disabled {
                row.style(t.dim())
            } else {
                row
            }
        })
        .collect();
    let empty = rows.is_empty();
    drop(visible);
    // The name column grows to the longest name (up to 32) when there is room; extra space is
    // left at the right rather than stretching the numbers apart.
    let fixed: u16 = cols
        .iter()
        .filter(|(c, _)| *c != SortColumn::Name)
        .map(|(_, w)| w + 1)
        .sum();
    let name_room = inner.width.saturating_sub(fixed + 4);
    let name_w = (longest_name as u16).clamp(10, 32).min(name_room.max(10));
    let widths = std::iter::once(Constraint::Length(1)).chain(cols.iter().map(|(c, w)| {
        if *c == SortColumn::Name {
            Constraint::Length(name_w)
        } else {
            Constraint::Length(*w)
        }
    }));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(t.selected())
        .highlight_symbol(">")
        .highlight_spacing(HighlightSpacing::Always)
        .flex(Flex::Start);
    let mut state = TableState::default().with_selected(selected.map(|s| s - offset));
    f.render_stateful_widget(table, area, &mut state);
    app.queue_offset = offset;
    app.page_rows = page;
    if empty {
        let msg = if app.filter(View::Queues).is_empty() {
            "no queues reported yet"
        } else {
            "no queue matches the filter (Esc clears it)"
        };
        let r = Rect::new(inner.x, inner.y + 1, inner.width, 1).intersection(inner);
        f.render_widget(
            Paragraph::new(msg)
                .style(t.dim())
                .alignment(Alignment::Center),
            r,
        );
    }
}

fn draw_dashboard(app: &mut App, f: &mut Frame, area: Rect) {
    // The table takes what its rows need (at least 5 lines); the panels below get the rest.
    let rows = app.visible_queues().len() as u16;
    let table_h = rows.saturating_add(3).max(5);
    let bottom_h = (area.height / 3)
        .clamp(6, 14)
        .max(area.height.saturating_sub(table_h))
        .min(area.height.saturating_sub(5));
    let [table, bottom] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(bottom_h)]).areas(area);
    draw_queue_table(app, f, table);
    let [dev, log] =
        Layout::horizontal([Constraint::Percentage(42), Constraint::Fill(1)]).areas(bottom);
    draw_devices(app, f, dev);
    draw_log(app, f, log, true);
}

fn err_map_list(map: [u64; 2]) -> String {
    let bits: Vec<String> = (0..128u32)
        .filter(|&i| map[(i / 64) as usize] >> (i % 64) & 1 == 1)
        .map(|i| i.to_string())
        .collect();
    if bits.is_empty() {
        "none".into()
    } else {
        format!("{{{}}}", bits.join(","))
    }
}

fn vintf_lines(v: &VintfSummary, t: &Theme) -> Vec<Line<'static>> {
    let mut head = vec![
        Span::styled(format!("VINTF{}", v.index), t.title()),
        Span::raw(" "),
        if v.enabled {
            Span::styled("enabled", t.ok())
        } else {
            Span::styled("disabled", t.dim())
        },
        Span::raw(format!(" HYP_OWN={} VMID {}", u8::from(v.hyp_own), v.vmid)),
    ];
    let errs = err_map_list(v.lvcmdq_err_map);
    let err_style = if errs == "none" { t.dim() } else { t.error() };
    head.push(Span::raw(" "));
    if errs != "none" {
        head.push(Span::styled("! ", t.error()));
    }
    head.push(Span::styled(format!("ERR_MAP {errs}"), err_style));
    let mut out = vec![Line::from(head)];
    if v.sids.is_empty() {
        out.push(Line::styled("  no SID_MATCH entries", t.dim()));
    } else {
        let sids: Vec<String> = v
            .sids
            .iter()
            .map(|(slot, vsid, psid)| format!("{slot}:{vsid:#x}→{psid:#x}"))
            .collect();
        out.push(Line::from(vec![
            Span::styled("  vSID→pSID ", t.dim()),
            Span::raw(sids.join(" ")),
        ]));
    }
    out
}

fn draw_devices(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let Some(s) = &app.summary else { return };
    let mut lines: Vec<Line> = Vec::new();
    if s.vintfs.is_empty() {
        lines.push(Line::styled("no VINTF reported", t.dim()));
    }
    for v in &s.vintfs {
        lines.extend(vintf_lines(v, t));
    }
    if let Some(h) = &s.handover {
        let bad = h.commands_lost > 0 || h.view_mismatches > 0;
        lines.push(Line::from(vec![
            Span::styled("handover ", t.dim()),
            Span::styled(
                format!(
                    "{}{} (lost {}, view mismatches {})",
                    if bad { "! " } else { "" },
                    h.handovers,
                    h.commands_lost,
                    h.view_mismatches
                ),
                if bad { t.error() } else { t.normal() },
            ),
        ]));
    }
    for (name, (n, errs)) in &s.ioctls {
        let mut l = vec![
            Span::styled("ioctl ", t.dim()),
            Span::raw(format!("{name} ×{}", format::count(*n))),
        ];
        if *errs > 0 {
            l.push(Span::styled(
                format!(" ! {} failed", format::count(*errs)),
                t.error(),
            ));
        }
        lines.push(Line::from(l));
    }
    let p = Paragraph::new(lines).wrap(Wrap { trim: false }).block(
        Block::bordered()
            .border_style(t.border())
            .title(Span::styled(" VINTFs & host ", t.title())),
    );
    f.render_widget(p, area);
}

fn log_line(l: &LogLine, t: &Theme, with_pid: bool) -> Line<'static> {
    let text_style = if l.is_error { t.error() } else { t.normal() };
    let pid = if with_pid {
        Span::styled(format!("{:>7} ", l.pid), t.dim())
    } else {
        Span::raw("")
    };
    Line::from(vec![
        if l.is_error {
            Span::styled("! ", t.error())
        } else {
            Span::raw("  ")
        },
        Span::styled(format!("{:>10} ", format::timestamp(l.ts_ns)), t.dim()),
        pid,
        Span::styled(
            format!("{:<6}", l.kind),
            if l.is_error {
                t.error()
            } else {
                t.key().remove_modifier(Modifier::BOLD)
            },
        ),
        Span::styled(l.text.clone(), text_style),
    ])
}

/// The event log: the tail on the dashboard, the scrollable full view in the Log tab.
fn draw_log(app: &mut App, f: &mut Frame, area: Rect, tail_only: bool) {
    let t = app.theme;
    let title = if tail_only {
        " Event log (2: full view) ".to_string()
    } else if app.log_follow {
        " Event log — following ".to_string()
    } else {
        format!(
            " Event log — scrolled back {} (f follows) ",
            app.log_from_bottom
        )
    };
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(title, t.title()));
    let inner = block.inner(area);
    let height = inner.height as usize;
    let from_bottom = if tail_only { 0 } else { app.log_from_bottom };
    let lines: Vec<Line> = {
        let log = app.filtered_log();
        let end = log.len().saturating_sub(from_bottom);
        let start = end.saturating_sub(height);
        let mut v: Vec<Line> = log[start..end]
            .iter()
            .map(|l| log_line(l, &t, inner.width >= 70))
            .collect();
        if log.is_empty() {
            v.push(Line::styled(
                if app.filter(View::Log).is_empty() {
                    "no events yet"
                } else {
                    "no line matches the filter (Esc clears it)"
                },
                t.dim(),
            ));
        }
        v
    };
    if !tail_only {
        app.page_rows = height.max(1);
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_log_view(app: &mut App, f: &mut Frame, area: Rect) {
    draw_log(app, f, area, false);
}

fn draw_probes(app: &mut App, f: &mut Frame, area: Rect) {
    let t = app.theme;
    let Some(s) = &app.summary else { return };
    let notes: Vec<Line> = s
        .notes
        .iter()
        .map(|n| Line::from(vec![Span::styled("• ", t.warn()), Span::raw(n.clone())]))
        .collect();
    let notes_h = if notes.is_empty() {
        0
    } else {
        (notes.len() as u16 + 2).min(area.height / 3).max(3)
    };
    let [notes_area, table_area] =
        Layout::vertical([Constraint::Length(notes_h), Constraint::Fill(1)]).areas(area);
    if !notes.is_empty() {
        f.render_widget(
            Paragraph::new(notes).wrap(Wrap { trim: false }).block(
                Block::bordered()
                    .border_style(t.border())
                    .title(Span::styled(" Notes ", t.title())),
            ),
            notes_area,
        );
    }
    let probes = app.filtered_probes();
    let rows: Vec<Row> = probes
        .iter()
        .map(|p| {
            let style = t.probe(&p.status);
            let marker = match probe_class(&p.status) {
                ProbeClass::Missing => "?",
                ProbeClass::Failed => "!",
                _ => " ",
            };
            Row::new(vec![
                Cell::from(Span::styled(marker, style)),
                Cell::from(p.name.clone()),
                Cell::from(Span::styled(p.status.clone(), style)),
                Cell::from(p.reason.clone()),
            ])
        })
        .collect();
    let n = rows.len();
    let total = s.probes.len();
    let mut counts = [0usize; 4];
    for p in &s.probes {
        counts[probe_class(&p.status) as usize] += 1;
    }
    let title = format!(
        " Probes ({total}): {} ok, {} missing, {} failed, {} off ",
        counts[0], counts[1], counts[2], counts[3]
    );
    let name_w = probes
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5)
        .min(table_area.width as usize * 2 / 5) as u16;
    let widths = [
        Constraint::Length(1),
        Constraint::Length(name_w),
        Constraint::Length(17),
        Constraint::Fill(1),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(vec!["", "PROBE", "STATUS", "REASON"]).style(t.title()))
        .column_spacing(1)
        .row_highlight_style(t.selected())
        .highlight_symbol(">")
        .highlight_spacing(HighlightSpacing::Always)
        .block(
            Block::bordered()
                .border_style(t.border())
                .title(Span::styled(title, t.title())),
        );
    let sel = (n > 0).then_some(app.probe_sel.min(n.saturating_sub(1)));
    let mut state = TableState::default()
        .with_offset(app.probe_offset)
        .with_selected(sel);
    f.render_stateful_widget(table, table_area, &mut state);
    app.probe_offset = state.offset();
    app.page_rows = table_area.height.saturating_sub(3).max(1) as usize;
    if n == 0 {
        let r = Rect::new(
            table_area.x + 1,
            table_area.y + 2,
            table_area.width.saturating_sub(2),
            1,
        )
        .intersection(table_area);
        let msg = if total == 0 {
            "no probe reported"
        } else {
            "no probe matches the filter (Esc clears it)"
        };
        f.render_widget(Paragraph::new(msg).style(t.dim()), r);
    }
}

/// Probe statuses grouped by what they mean for the user.
#[derive(Copy, Clone, PartialEq, Eq)]
enum ProbeClass {
    Ok = 0,
    Missing = 1,
    Failed = 2,
    Off = 3,
}

fn probe_class(status: &str) -> ProbeClass {
    match status {
        "attached" | "in-process" => ProbeClass::Ok,
        "symbol-not-found" | "unsupported" => ProbeClass::Missing,
        "not-requested" => ProbeClass::Off,
        _ => ProbeClass::Failed,
    }
}

fn selected_queue(app: &App) -> Option<&QueueSummary> {
    let name = app.selected.as_deref()?;
    app.summary.as_ref()?.queues.iter().find(|q| q.name == name)
}

fn draw_detail(app: &mut App, f: &mut Frame, area: Rect) {
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

fn detail_info(q: &QueueSummary, t: &Theme) -> Vec<Line<'static>> {
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

fn last_error(q: &QueueSummary, t: &Theme) -> Paragraph<'static> {
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

fn draw_histogram(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
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

fn draw_recent(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
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

fn draw_help(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let help = keymap::help_lines();
    let key_w = help
        .iter()
        .filter(|l| !l.is_heading)
        .map(|l| l.keys.chars().count())
        .max()
        .unwrap_or(4);
    let text_w = help
        .iter()
        .map(|l| l.text.chars().count())
        .max()
        .unwrap_or(10);
    let max_rows = area.height.saturating_sub(4).max(1) as usize;
    let cols = help.len().div_ceil(max_rows).max(1);
    let rows = help.len().div_ceil(cols);
    let col_w = key_w + text_w + 4;
    let width = area
        .width
        .saturating_sub(4)
        .min((col_w * cols + 2).min(u16::MAX as usize) as u16);
    let height = (rows as u16 + 2).min(area.height);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    f.render_widget(Clear, popup);
    let block = Block::bordered()
        .border_style(t.border())
        .title(Span::styled(" Keys (from the keymap) ", t.title()))
        .title_bottom(Line::styled(" Esc or ? closes ", t.dim()));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let areas = Layout::horizontal(vec![Constraint::Fill(1); cols]).split(inner);
    for (chunk, a) in help.chunks(rows).zip(areas.iter()) {
        let lines: Vec<Line> = chunk
            .iter()
            .map(|l| {
                if l.is_heading {
                    Line::styled(l.keys.clone(), t.title())
                } else {
                    Line::from(vec![
                        Span::styled(format!(" {:<key_w$} ", l.keys), t.key()),
                        Span::raw(l.text),
                    ])
                }
            })
            .collect();
        f.render_widget(Paragraph::new(lines), *a);
    }
}

/// Help as plain text (tests check that every binding is listed).
pub fn help_text() -> String {
    keymap::help_lines()
        .iter()
        .map(|l| {
            if l.is_heading {
                l.keys.to_string()
            } else {
                format!("  {}  {}", l.keys, l.text)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
