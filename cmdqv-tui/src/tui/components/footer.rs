//! The footer: the filter being typed, then the key hints of the live contexts, generated from
//! the keymap; the ways to quit and to the help stay however narrow the terminal.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::keymap::{Context, Keymap};
use crate::tui::theme::Theme;

/// The filter text being typed and what it matches.
pub struct FilterInput<'a> {
    pub text: &'a str,
    pub hint: &'static str,
}

pub fn draw_footer(
    input: Option<FilterInput>,
    keymap: &Keymap,
    contexts: &[Context],
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    let mut spans: Vec<Span> = Vec::new();
    if let Some(input) = input {
        spans.push(Span::styled("/", t.key()));
        spans.push(Span::raw(input.text));
        spans.push(Span::styled(
            "█",
            t.normal().add_modifier(Modifier::SLOW_BLINK),
        ));
        spans.push(Span::styled(input.hint, t.dim()));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    for (k, w) in fitting_hints(keymap, contexts, used, area.width as usize) {
        spans.push(Span::styled(k, t.key()));
        spans.push(Span::raw(format!(" {w}")));
        spans.push(Span::raw("  "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The hints that fit after `used` of `total` columns: "quit" and "help" last and never
/// dropped, the others dropped from the end.
fn fitting_hints(
    keymap: &Keymap,
    contexts: &[Context],
    used: usize,
    total: usize,
) -> Vec<(String, &'static str)> {
    let mut hints = keymap.hints(contexts);
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
    while hints.len() > pinned && used + width(&hints) > total {
        hints.remove(hints.len() - pinned - 1);
    }
    hints
}
