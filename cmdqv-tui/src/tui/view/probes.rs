//! Probe attach status and the notes the user must see.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};

use crate::tui::app::App;

pub(super) fn draw_probes(app: &mut App, f: &mut Frame, area: Rect) {
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
    // The selected probe in full below the table (reasons are often longer than their column).
    let [table_area, sel_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(4)]).areas(table_area);
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
    let selected = sel.and_then(|i| probes.get(i)).map(|p| {
        let style = t.probe(&p.status);
        Line::from(vec![
            Span::styled(p.name.clone(), t.title()),
            Span::raw(" "),
            Span::styled(p.status.clone(), style),
            Span::styled(": ", t.dim()),
            Span::raw(if p.reason.is_empty() {
                "-".to_string()
            } else {
                p.reason.clone()
            }),
        ])
    });
    f.render_widget(
        Paragraph::new(selected.unwrap_or_default())
            .wrap(Wrap { trim: false })
            .block(Block::bordered().border_style(t.border())),
        sel_area,
    );
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
pub(super) enum ProbeClass {
    Ok = 0,
    Missing = 1,
    Failed = 2,
    Off = 3,
}

pub(super) fn probe_class(status: &str) -> ProbeClass {
    match status {
        "attached" | "in-process" => ProbeClass::Ok,
        "symbol-not-found" | "unsupported" => ProbeClass::Missing,
        "not-requested" => ProbeClass::Off,
        _ => ProbeClass::Failed,
    }
}
