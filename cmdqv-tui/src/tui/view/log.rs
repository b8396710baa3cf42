//! The event log: follow mode, scrollback, filter, error lines marked.

use cmdqv_core::analysis::LogLine;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::tui::app::{App, View};
use crate::tui::format;
use crate::tui::theme::Theme;

pub(super) fn log_line(l: &LogLine, t: &Theme, with_pid: bool) -> Line<'static> {
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
pub(super) fn draw_log(app: &mut App, f: &mut Frame, area: Rect, tail_only: bool) {
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

pub(super) fn draw_log_view(app: &mut App, f: &mut Frame, area: Rect) {
    draw_log(app, f, area, false);
}
