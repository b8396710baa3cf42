//! Small pieces the panes draw with: the bordered panel, the separator, the sort arrow.

use std::borrow::Cow;

use ratatui::text::Span;
use ratatui::widgets::Block;

use crate::tui::theme::Theme;

/// A bordered pane without a title.
pub fn frame(t: &Theme) -> Block<'static> {
    Block::bordered().border_style(t.border())
}

/// A bordered pane with its title in the title style.
pub fn panel<'a>(title: impl Into<Cow<'a, str>>, t: &Theme) -> Block<'a> {
    frame(t).title(Span::styled(title, t.title()))
}

/// The separator between header fields.
pub fn sep(t: &Theme) -> Span<'static> {
    Span::styled(" │ ", t.dim())
}

/// The sort direction after a column title.
pub fn arrow(desc: bool) -> &'static str {
    if desc { "▼" } else { "▲" }
}
