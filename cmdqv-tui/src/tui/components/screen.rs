//! The frame around the panes: the smallest terminal the layout takes, the screen shown when
//! the terminal is smaller, the four bands (header, tabs, body, footer) and the body shown
//! before the first snapshot.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::common::frame;
use crate::tui::theme::Theme;

/// Smallest terminal the dashboard is laid out for.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;

/// Is `area` big enough for the dashboard?
pub fn fits(area: Rect) -> bool {
    area.width >= MIN_WIDTH && area.height >= MIN_HEIGHT
}

/// Header, tabs, body, footer.
pub fn bands(area: Rect) -> [Rect; 4] {
    Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area)
}

/// Instead of a squeezed dashboard: what size is needed, and how to quit.
pub fn too_small(t: &Theme, f: &mut Frame, area: Rect) {
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
        Line::styled(msg, t.warn()),
        Line::styled("q quits", t.dim()),
    ])
    .alignment(Alignment::Center)
    .wrap(Wrap { trim: true });
    f.render_widget(p, r.intersection(area));
}

/// The body before the collector's first snapshot.
pub fn waiting(t: &Theme, f: &mut Frame, area: Rect) {
    let p = Paragraph::new("waiting for the first snapshot from the collector…")
        .style(t.dim())
        .alignment(Alignment::Center)
        .block(frame(t));
    f.render_widget(p, area);
}
