//! The Queues tab: the VCMDQ table on top, the VINTF & host panel and the log tail below.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

use super::devices::draw_devices;
use super::log::LogPane;
use super::queues::QueueTable;
use crate::tui::model::ViewModel;
use crate::tui::theme::Theme;

pub fn draw_dashboard(
    queues: &mut QueueTable,
    log: &LogPane,
    model: &ViewModel,
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    // The table takes what its rows need (at least 5 lines); the panels below get the rest.
    let rows = queues.row_count() as u16;
    let table_h = rows.saturating_add(3).max(5);
    let bottom_h = (area.height / 3)
        .clamp(6, 14)
        .max(area.height.saturating_sub(table_h))
        .min(area.height.saturating_sub(5));
    let [table, bottom] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(bottom_h)]).areas(area);
    queues.render(model, t, f, table);
    let [dev, tail] =
        Layout::horizontal([Constraint::Percentage(42), Constraint::Fill(1)]).areas(bottom);
    draw_devices(model, t, f, dev);
    log.render_tail(model, t, f, tail);
}
