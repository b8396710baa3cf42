//! The dashboard: the VCMDQ table (sortable, filterable, columns that fit the width), the
//! VINTF/host panel and the log tail.

use cmdqv_core::analysis::{QueueState, QueueSummary, VintfSummary};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};

use crate::tui::app::{App, SortColumn, View, state_label};
use crate::tui::format;
use crate::tui::theme::Theme;

use super::arrow;
use super::log::draw_log;

/// Queue table columns: the sort key, the width, and how badly the column is wanted when the
/// terminal is narrow (0 = always).
pub(super) const COLUMNS: [(SortColumn, u16, u8); 16] = [
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

pub(super) fn queue_cell(q: &QueueSummary, col: SortColumn, t: &Theme) -> Cell<'static> {
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
pub(super) fn queue_alert(q: &QueueSummary) -> bool {
    q.state == QueueState::Error || q.last_error.as_ref().is_some_and(|e| !e.acknowledged)
}

pub(super) fn draw_queue_table(app: &mut App, f: &mut Frame, area: Rect) {
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

pub(super) fn draw_dashboard(app: &mut App, f: &mut Frame, area: Rect) {
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

pub(super) fn err_map_list(map: [u64; 2]) -> String {
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

pub(super) fn vintf_lines(v: &VintfSummary, t: &Theme) -> Vec<Line<'static>> {
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

pub(super) fn draw_devices(app: &App, f: &mut Frame, area: Rect) {
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
