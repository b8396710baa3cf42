//! The probes pane: attach status of every probe, the notes the user must see, and the
//! selected probe in full below the table (reasons are often longer than their column).

use cmdqv_core::analysis::{ProbeStatus, Summary};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};

use super::common::{frame, panel};
use super::pane::Pane;
use crate::tui::action::Action;
use crate::tui::model::ViewModel;
use crate::tui::model::probes::{ProbeClass, filtered_rows};
use crate::tui::theme::Theme;

/// The probe table and the user's place in it.
pub struct ProbeList {
    filter: String,
    /// Indices into the snapshot's probes that match the filter.
    rows: Vec<usize>,
    /// Selected row (clamped to the rows when drawn).
    sel: usize,
    /// First visible row (kept across frames).
    offset: usize,
    /// Rows on screen as last drawn (for PgUp/PgDn).
    page_rows: usize,
}

impl Default for ProbeList {
    fn default() -> Self {
        Self {
            filter: String::new(),
            rows: Vec::new(),
            sel: 0,
            offset: 0,
            page_rows: 10,
        }
    }
}

impl ProbeList {
    fn rebuild_rows(&mut self, model: Option<&ViewModel>) {
        self.rows = model.map_or_else(Vec::new, |m| {
            filtered_rows(&m.summary().probes, &self.filter)
        });
    }

    pub fn render(&mut self, model: &ViewModel, t: &Theme, f: &mut Frame, area: Rect) {
        let s = model.summary();
        let notes_h = if s.notes.is_empty() {
            0
        } else {
            (s.notes.len() as u16 + 2).min(area.height / 3).max(3)
        };
        let [notes_area, table_area] =
            Layout::vertical([Constraint::Length(notes_h), Constraint::Fill(1)]).areas(area);
        let [table_area, sel_area] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(4)]).areas(table_area);
        if !s.notes.is_empty() {
            render_notes(s, t, f, notes_area);
        }
        let n = self.rows.len();
        let sel = (n > 0).then_some(self.sel.min(n.saturating_sub(1)));
        let selected = sel.map(|i| selected_line(&s.probes[self.rows[i]], t));
        f.render_widget(
            Paragraph::new(selected.unwrap_or_default())
                .wrap(Wrap { trim: false })
                .block(frame(t)),
            sel_area,
        );
        let mut state = TableState::default()
            .with_offset(self.offset)
            .with_selected(sel);
        f.render_stateful_widget(
            self.table(model, t, table_area.width),
            table_area,
            &mut state,
        );
        self.offset = state.offset();
        self.page_rows = table_area.height.saturating_sub(3).max(1) as usize;
        if n == 0 {
            render_empty(s, t, f, table_area);
        }
    }

    fn table<'m>(&self, model: &'m ViewModel, t: &Theme, width: u16) -> Table<'m> {
        let probes = &model.summary().probes;
        let rows: Vec<Row> = self
            .rows
            .iter()
            .map(|&i| probe_row(&probes[i], model.probe_class(i), t))
            .collect();
        let name_w = self
            .rows
            .iter()
            .map(|&i| probes[i].name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5)
            .min(width as usize * 2 / 5) as u16;
        let widths = [
            Constraint::Length(1),
            Constraint::Length(name_w),
            Constraint::Length(17),
            Constraint::Fill(1),
        ];
        Table::new(rows, widths)
            .header(Row::new(vec!["", "PROBE", "STATUS", "REASON"]).style(t.title()))
            .column_spacing(1)
            .row_highlight_style(t.selected())
            .highlight_symbol(">")
            .highlight_spacing(HighlightSpacing::Always)
            .block(panel(table_title(model), t))
    }
}

impl Pane for ProbeList {
    fn filter(&self) -> &str {
        &self.filter
    }

    fn set_filter(&mut self, text: String, model: Option<&ViewModel>) {
        self.filter = text;
        self.rebuild_rows(model);
        self.sel = 0;
    }

    fn on_snapshot(&mut self, _old: Option<&ViewModel>, new: &ViewModel) {
        self.rebuild_rows(Some(new));
    }

    fn handle(&mut self, action: Action, _model: Option<&ViewModel>) {
        if let Some(delta) = action.rows(self.page_rows) {
            let last = self.rows.len().saturating_sub(1);
            self.sel = self.sel.saturating_add_signed(delta).min(last);
        }
    }

    fn filter_hint(&self) -> &'static str {
        "  (name, status or reason)   "
    }

    fn status(&self, model: &ViewModel, t: &Theme) -> Vec<Span<'static>> {
        let ok = model.probe_count(ProbeClass::Ok);
        let total = model.summary().probes.len();
        vec![Span::styled(format!("{ok}/{total} probes ok"), t.dim())]
    }
}

fn render_notes(s: &Summary, t: &Theme, f: &mut Frame, area: Rect) {
    let notes: Vec<Line> = s
        .notes
        .iter()
        .map(|n| Line::from(vec![Span::styled("• ", t.warn()), Span::raw(n.as_str())]))
        .collect();
    f.render_widget(
        Paragraph::new(notes)
            .wrap(Wrap { trim: false })
            .block(panel(" Notes ", t)),
        area,
    );
}

/// " Probes (N): a ok, b missing, c failed, d off ", over all probes (not just the filtered).
fn table_title(model: &ViewModel) -> String {
    let n = |c| model.probe_count(c);
    format!(
        " Probes ({}): {} ok, {} missing, {} failed, {} off ",
        model.summary().probes.len(),
        n(ProbeClass::Ok),
        n(ProbeClass::Missing),
        n(ProbeClass::Failed),
        n(ProbeClass::Off)
    )
}

fn probe_row<'m>(p: &'m ProbeStatus, class: ProbeClass, t: &Theme) -> Row<'m> {
    let style = t.probe(&p.status);
    Row::new(vec![
        Cell::from(Span::styled(class.marker(), style)),
        Cell::from(p.name.as_str()),
        Cell::from(Span::styled(p.status.as_str(), style)),
        Cell::from(p.reason.as_str()),
    ])
}

fn selected_line<'m>(p: &'m ProbeStatus, t: &Theme) -> Line<'m> {
    let reason = if p.reason.is_empty() { "-" } else { &p.reason };
    Line::from(vec![
        Span::styled(p.name.as_str(), t.title()),
        Span::raw(" "),
        Span::styled(p.status.as_str(), t.probe(&p.status)),
        Span::styled(": ", t.dim()),
        Span::raw(reason),
    ])
}

fn render_empty(s: &Summary, t: &Theme, f: &mut Frame, table_area: Rect) {
    let r = Rect::new(
        table_area.x + 1,
        table_area.y + 2,
        table_area.width.saturating_sub(2),
        1,
    )
    .intersection(table_area);
    let msg = if s.probes.is_empty() {
        "no probe reported"
    } else {
        "no probe matches the filter (Esc clears it)"
    };
    f.render_widget(Paragraph::new(msg).style(t.dim()), r);
}
