//! Rendering: one component (module) per pane. Everything here reads the [`App`] and writes a
//! [`Frame`]; the only state written back is scroll offsets and the page size for PgUp/PgDn.

mod detail;
mod header;
mod help;
mod log;
mod probes;
mod queues;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::tui::app::{App, View};
use crate::tui::theme::Theme;

use detail::draw_detail;
use header::{draw_footer, draw_header, draw_tabs};
use help::draw_help;
use log::draw_log_view;
use probes::draw_probes;
use queues::draw_dashboard;

pub use help::help_text;

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

fn arrow(desc: bool) -> &'static str {
    if desc { "▼" } else { "▲" }
}
