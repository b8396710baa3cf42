//! The `?` popup, generated from the keymap, and the same help as plain text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::common::panel;
use crate::tui::keymap::{self, HelpLine, Keymap};
use crate::tui::theme::Theme;

pub fn draw_help(keymap: &Keymap, t: &Theme, f: &mut Frame, area: Rect) {
    let help = keymap.help_lines();
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
    let block = panel(" Keys (from the keymap) ", t)
        .title_bottom(Line::styled(" Esc or ? closes ", t.dim()));
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    let areas = Layout::horizontal(vec![Constraint::Fill(1); cols]).split(inner);
    for (chunk, a) in help.chunks(rows).zip(areas.iter()) {
        let lines: Vec<Line> = chunk.iter().map(|l| help_line(l, key_w, t)).collect();
        f.render_widget(Paragraph::new(lines), *a);
    }
}

fn help_line<'a>(l: &'a HelpLine, key_w: usize, t: &Theme) -> Line<'a> {
    if l.is_heading {
        Line::styled(l.keys.as_str(), t.title())
    } else {
        Line::from(vec![
            Span::styled(format!(" {:<key_w$} ", l.keys), t.key()),
            Span::raw(l.text),
        ])
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
