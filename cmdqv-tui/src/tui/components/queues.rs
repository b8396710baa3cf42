//! The VCMDQ table pane: its sort, filter, selection and scroll, the actions on them, and the
//! table itself (the columns that fit the width; only the rows on screen are built). The detail
//! view shows the selected queue, so whether it is open is this pane's state too.

use std::ops::Range;

use cmdqv_core::analysis::{QueueState, QueueSummary};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, HighlightSpacing, Paragraph, Row, Table, TableState};

use super::common::{arrow, panel};
use super::hit::{TableGeom, TableHit};
use super::pane::Pane;
use crate::tui::action::Action;
use crate::tui::model::ViewModel;
use crate::tui::model::queues::{QueueText, SortColumn, cons_error, queue_alert, sorted_rows};
use crate::tui::theme::Theme;

/// Queue table columns in their default order: the sort key, the width, and how badly the
/// column is wanted when the terminal is narrow (0 = always).
pub const COLUMNS: [(SortColumn, u16, u8); 17] = [
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
    (SortColumn::CError, 5, 4),
];

/// The width and priority of a column.
pub fn column_spec(col: SortColumn) -> (SortColumn, u16, u8) {
    COLUMNS[COLUMNS.iter().position(|c| c.0 == col).unwrap_or(0)]
}

/// The columns of `shown` that fit in `width`, in display order.
fn fitting_columns(shown: &[(SortColumn, u16, u8)], width: u16) -> Vec<(SortColumn, u16)> {
    // Selection symbol and error marker, each with its spacing.
    let mut budget = i32::from(width) - 4;
    let mut by_prio: Vec<_> = shown.to_vec();
    by_prio.sort_by_key(|c| c.2);
    let mut keep = Vec::new();
    for (col, w, _) in by_prio {
        let need = i32::from(w) + 1;
        if need <= budget {
            budget -= need;
            keep.push(col);
        }
    }
    shown
        .iter()
        .filter(|c| keep.contains(&c.0))
        .map(|c| (c.0, c.1))
        .collect()
}

/// The queue table and everything the user set on it.
pub struct QueueTable {
    sort: SortColumn,
    desc: bool,
    filter: String,
    /// Indices into the snapshot's queues: filtered, then sorted.
    rows: Vec<usize>,
    /// Longest name among `rows` in characters, at most 64 (the name column's width).
    longest_name: usize,
    /// Selected queue, by name, so it survives re-sorting and new snapshots.
    selected: Option<String>,
    /// The selected queue's detail view is open.
    detail: bool,
    /// Queues marked for the compare view, by name, oldest first (at most two).
    marked: Vec<String>,
    /// First visible row (kept across frames).
    offset: usize,
    /// Rows on screen as last drawn (for PgUp/PgDn).
    page_rows: usize,
    /// The columns shown, in order (the config file chooses them).
    columns: Vec<(SortColumn, u16, u8)>,
    /// Where the table was drawn (mouse hit-testing).
    geom: TableGeom<SortColumn>,
}

impl Default for QueueTable {
    fn default() -> Self {
        Self {
            sort: SortColumn::Id,
            desc: false,
            filter: String::new(),
            rows: Vec::new(),
            longest_name: 0,
            selected: None,
            detail: false,
            marked: Vec::new(),
            offset: 0,
            page_rows: 10,
            columns: COLUMNS.to_vec(),
            geom: TableGeom::default(),
        }
    }
}

impl QueueTable {
    /// A table showing `columns`, in that order (all of them when empty).
    pub fn with_columns(columns: &[SortColumn]) -> Self {
        let mut t = Self::default();
        if !columns.is_empty() {
            t.columns = columns.iter().map(|&c| column_spec(c)).collect();
        }
        t
    }

    /// The table as last drawn, for the mouse.
    pub fn geom(&self) -> &TableGeom<SortColumn> {
        &self.geom
    }

    /// A left click at `(x, y)`: on a header sorts by that column (again: reverses), on a row
    /// selects it, on the selected row opens its detail (so a double click opens too).
    /// Returns whether it changed anything.
    pub fn click(&mut self, x: u16, y: u16, model: Option<&ViewModel>) -> bool {
        match self.geom.hit(x, y) {
            Some(TableHit::Header(col)) if col == self.sort => {
                self.set_sort(col, !self.desc, model);
                true
            }
            Some(TableHit::Header(col)) => {
                self.set_sort(col, col.descending_by_default(), model);
                true
            }
            Some(TableHit::Row(row)) if Some(row) == self.selected_row(model) => {
                self.open_detail();
                true
            }
            Some(TableHit::Row(row)) => {
                let Some(m) = model else { return false };
                let name = self
                    .rows
                    .get(row)
                    .map(|&i| m.summary().queues[i].name.clone());
                self.selected = name;
                true
            }
            _ => false,
        }
    }

    pub fn sort(&self) -> (SortColumn, bool) {
        (self.sort, self.desc)
    }

    /// Sort by `col`; `desc` flips the order.
    pub fn set_sort(&mut self, col: SortColumn, desc: bool, model: Option<&ViewModel>) {
        self.sort = col;
        self.desc = desc;
        self.rebuild_rows(model);
    }

    /// Name of the selected queue.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub fn detail_open(&self) -> bool {
        self.detail
    }

    /// Open the selected queue's detail view; without a selection there is nothing to open.
    fn open_detail(&mut self) {
        if self.selected.is_some() {
            self.detail = true;
        }
    }

    pub fn close_detail(&mut self) {
        self.detail = false;
    }

    /// Mark the selected queue, or unmark it; a third mark drops the oldest.
    fn toggle_mark(&mut self) {
        let Some(sel) = self.selected.clone() else {
            return;
        };
        if let Some(i) = self.marked.iter().position(|m| *m == sel) {
            self.marked.remove(i);
        } else {
            if self.marked.len() == 2 {
                self.marked.remove(0);
            }
            self.marked.push(sel);
        }
    }

    pub fn marked(&self) -> &[String] {
        &self.marked
    }

    /// The two queues to compare: the marked two, or the marked one and the selected one.
    pub fn compare_pair(&self) -> Option<[String; 2]> {
        match (&self.marked[..], &self.selected) {
            ([a, b], _) => Some([a.clone(), b.clone()]),
            ([a], Some(s)) if a != s => Some([a.clone(), s.clone()]),
            _ => None,
        }
    }

    /// Number of rows the table shows.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// The queues as shown: filtered, then sorted.
    pub fn visible<'m>(&self, model: Option<&'m ViewModel>) -> Vec<&'m QueueSummary> {
        let Some(m) = model else {
            return Vec::new();
        };
        self.rows.iter().map(|&i| &m.summary().queues[i]).collect()
    }

    /// The selected queue in the snapshot, also when the filter hides it (the detail view).
    pub fn selected_queue<'m>(&self, model: &'m ViewModel) -> Option<&'m QueueSummary> {
        let name = self.selected.as_deref()?;
        model.summary().queues.iter().find(|q| q.name == name)
    }

    fn rebuild_rows(&mut self, model: Option<&ViewModel>) {
        let Some(m) = model else {
            self.rows.clear();
            self.longest_name = 0;
            return;
        };
        let queues = &m.summary().queues;
        self.rows = sorted_rows(queues, &self.filter, self.sort, self.desc);
        let longest = self.rows.iter().map(|&i| queues[i].name.chars().count());
        self.longest_name = longest.max().unwrap_or(0).min(64);
    }

    /// Rebuild the rows and keep a visible queue selected: the first one when the selection is
    /// gone (filtered out, no longer reported).
    fn reselect(&mut self, model: Option<&ViewModel>) {
        self.rebuild_rows(model);
        if self.selected_row(model).is_some() {
            return;
        }
        let first = model.and_then(|m| {
            let i = *self.rows.first()?;
            Some(m.summary().queues[i].name.clone())
        });
        // While the detail view is open its queue stays selected even if it vanished.
        if !self.detail || first.is_some() && self.selected.is_none() {
            self.selected = first;
        }
    }

    /// Position of the selected queue in the rows.
    fn selected_row(&self, model: Option<&ViewModel>) -> Option<usize> {
        let (name, m) = (self.selected.as_deref()?, model?);
        let queues = &m.summary().queues;
        self.rows.iter().position(|&i| queues[i].name == name)
    }

    fn move_by(&mut self, delta: isize, model: Option<&ViewModel>) {
        let Some(m) = model else { return };
        if self.rows.is_empty() {
            return;
        }
        let cur = self.selected_row(model).unwrap_or(0);
        let next = cur.saturating_add_signed(delta).min(self.rows.len() - 1);
        self.selected = Some(m.summary().queues[self.rows[next]].name.clone());
    }

    /// The rows on screen for a page of `page` rows: the window keeps the selection visible,
    /// moving as little as possible, like a table with state would.
    fn scroll_to(&mut self, selected: Option<usize>, page: usize) -> Range<usize> {
        let len = self.rows.len();
        let mut offset = self.offset.min(len.saturating_sub(page));
        if let Some(sel) = selected {
            if sel < offset {
                offset = sel;
            } else if sel >= offset + page {
                offset = sel + 1 - page;
            }
        }
        self.offset = offset;
        offset.min(len)..(offset + page).min(len)
    }

    pub fn render(&mut self, model: &ViewModel, t: &Theme, f: &mut Frame, area: Rect) {
        let mut block = panel(" VCMDQs ", t);
        if let Some(line) = model.trapped_line() {
            block = block.title_bottom(Line::styled(format!(" {line} "), t.dim()));
        }
        let inner = block.inner(area);
        let cols = fitting_columns(&self.columns, inner.width);
        let selected = self.selected_row(Some(model));
        // Only the rows on screen are built (300 queues cost no more than 30).
        let page = usize::from(inner.height.saturating_sub(1)).max(1);
        let window = self.scroll_to(selected, page);
        let first = window.start;
        let rows: Vec<Row> = self.rows[window]
            .iter()
            .map(|&i| queue_row(model, i, &cols, &self.marked, t))
            .collect();
        let empty = rows.is_empty();
        let widths = self.widths(&cols, inner.width);
        self.remember_geom(area, inner, &cols, &widths, first);
        let table = Table::new(rows, widths)
            .header(header_row(&cols, self.sort, self.desc, t))
            .block(block)
            .column_spacing(1)
            .row_highlight_style(t.selected())
            .highlight_symbol(">")
            .highlight_spacing(HighlightSpacing::Always)
            .flex(Flex::Start);
        let mut state = TableState::default().with_selected(selected.map(|s| s - self.offset));
        f.render_stateful_widget(table, area, &mut state);
        self.page_rows = page;
        if empty {
            self.render_empty(inner, t, f);
        }
    }

    /// Where the header cells and rows landed, laid out as the table lays itself out: the
    /// selection symbol's column, then the columns with one space between them.
    fn remember_geom(
        &mut self,
        area: Rect,
        inner: Rect,
        cols: &[(SortColumn, u16)],
        widths: &[Constraint],
        offset: usize,
    ) {
        let cells = Rect {
            x: inner.x + 1,
            width: inner.width.saturating_sub(1),
            ..inner
        };
        let rects = Layout::horizontal(widths.iter().copied())
            .flex(Flex::Start)
            .spacing(1)
            .split(cells);
        self.geom = TableGeom {
            area,
            header_y: Some(inner.y),
            rows: Rect {
                y: inner.y + 1,
                height: inner.height.saturating_sub(1),
                ..inner
            },
            offset,
            len: self.rows.len(),
            cols: cols
                .iter()
                .zip(rects.iter().skip(1))
                .map(|(c, r)| (c.0, r.x, r.width))
                .collect(),
        };
    }

    /// Column widths. The name column grows to the longest name (up to 32) when there is room;
    /// extra space is left at the right rather than stretching the numbers apart.
    fn widths(&self, cols: &[(SortColumn, u16)], width: u16) -> Vec<Constraint> {
        let fixed: u16 = cols
            .iter()
            .filter(|(c, _)| *c != SortColumn::Name)
            .map(|(_, w)| w + 1)
            .sum();
        let name_room = width.saturating_sub(fixed + 4);
        let name_w = (self.longest_name as u16)
            .clamp(10, 32)
            .min(name_room.max(10));
        let col_width = |&(c, w): &(SortColumn, u16)| {
            Constraint::Length(if c == SortColumn::Name { name_w } else { w })
        };
        std::iter::once(Constraint::Length(1))
            .chain(cols.iter().map(col_width))
            .collect()
    }

    fn render_empty(&self, inner: Rect, t: &Theme, f: &mut Frame) {
        let msg = if self.filter.is_empty() {
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

impl Pane for QueueTable {
    fn filter(&self) -> &str {
        &self.filter
    }

    fn set_filter(&mut self, text: String, model: Option<&ViewModel>) {
        self.filter = text;
        self.reselect(model);
    }

    fn on_snapshot(&mut self, _old: Option<&ViewModel>, new: &ViewModel) {
        self.reselect(Some(new));
    }

    fn handle(&mut self, action: Action, model: Option<&ViewModel>) {
        match action {
            Action::SortNext => {
                let col = self.sort.next();
                self.set_sort(col, col.descending_by_default(), model);
            }
            Action::SortReverse => self.set_sort(self.sort, !self.desc, model),
            Action::OpenDetail => self.open_detail(),
            Action::ToggleMark => self.toggle_mark(),
            _ => {
                if let Some(delta) = action.rows(self.page_rows) {
                    self.move_by(delta, model);
                }
            }
        }
    }

    fn filter_hint(&self) -> &'static str {
        "  (name or state)   "
    }

    fn status(&self, model: &ViewModel, t: &Theme) -> Vec<Span<'static>> {
        let total = model.summary().queues.len();
        vec![
            Span::styled("sort ", t.dim()),
            Span::raw(format!("{}{}", self.sort.title(), arrow(self.desc))),
            Span::styled(format!("  {}/{total} queues", self.rows.len()), t.dim()),
        ]
    }
}

fn header_row(cols: &[(SortColumn, u16)], sort: SortColumn, desc: bool, t: &Theme) -> Row<'static> {
    let title = |&(c, _): &(SortColumn, u16)| {
        if c != sort {
            return Cell::from(c.title());
        }
        Cell::from(format!("{}{}", c.title(), arrow(desc)))
            .style(Style::new().add_modifier(Modifier::UNDERLINED))
    };
    Row::new(std::iter::once(Cell::from(" ")).chain(cols.iter().map(title))).style(t.title())
}

fn queue_row<'m>(
    model: &'m ViewModel,
    i: usize,
    cols: &[(SortColumn, u16)],
    marked: &[String],
    t: &Theme,
) -> Row<'m> {
    let q = &model.summary().queues[i];
    let text = model.queue_text(i);
    // An error outranks a mark: a marked queue in error shows `!` (the compare view names it).
    let marker = if queue_alert(q) {
        Cell::from(Span::styled("!", t.error()))
    } else if marked.contains(&q.name) {
        Cell::from(Span::styled("*", t.key()))
    } else {
        Cell::from(" ")
    };
    let cells = cols.iter().map(|&(c, _)| queue_cell(q, text, c, t));
    let row = Row::new(std::iter::once(marker).chain(cells));
    if q.state == QueueState::Disabled {
        row.style(t.dim())
    } else {
        row
    }
}

fn queue_cell<'m>(q: &QueueSummary, text: &'m QueueText, col: SortColumn, t: &Theme) -> Cell<'m> {
    let s = text.cell(col);
    match col {
        SortColumn::State => Cell::from(Span::styled(s, t.state(q.state))),
        SortColumn::Errors => {
            let style = if q.errors > 0 { t.error() } else { t.dim() };
            Cell::from(Span::styled(s, style))
        }
        SortColumn::CError => {
            let style = if cons_error(q).code() != 0 {
                t.error()
            } else {
                t.dim()
            };
            Cell::from(Span::styled(s, style))
        }
        _ => Cell::from(s),
    }
}
