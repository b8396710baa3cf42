//! The event log pane: its filter, follow mode and scrollback, the actions on them, and the log
//! itself (the full view in the Log tab, the newest lines on the dashboard). Error lines carry a
//! `!` so colour is never the only cue.

use cmdqv_core::analysis::LogLine;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::common::panel;
use super::pane::Pane;
use crate::tui::action::Action;
use crate::tui::model::ViewModel;
use crate::tui::model::log::filtered_rows;
use crate::tui::theme::Theme;

/// The event log and the user's place in it.
pub struct LogPane {
    filter: String,
    /// Indices into the snapshot's log that match the filter, oldest first.
    rows: Vec<usize>,
    /// Stay on the newest line as new ones arrive.
    follow: bool,
    /// Lines between the bottom of the view and the end of the (filtered) log.
    from_bottom: usize,
    /// Lines on screen as last drawn (for PgUp/PgDn).
    page_rows: usize,
}

impl Default for LogPane {
    fn default() -> Self {
        Self {
            filter: String::new(),
            rows: Vec::new(),
            follow: true,
            from_bottom: 0,
            page_rows: 10,
        }
    }
}

impl LogPane {
    pub fn follow(&self) -> bool {
        self.follow
    }

    /// Lines between the bottom of the log view and the newest line (0 when following).
    pub fn scroll(&self) -> usize {
        self.from_bottom
    }

    /// Follow new lines on/off (`f`); following jumps to the end.
    fn toggle_follow(&mut self) {
        self.follow = !self.follow;
        if self.follow {
            self.from_bottom = 0;
        }
    }

    /// The log as shown (filtered), oldest first.
    pub fn visible<'m>(&self, model: Option<&'m ViewModel>) -> Vec<&'m LogLine> {
        let Some(m) = model else {
            return Vec::new();
        };
        self.rows.iter().map(|&i| &m.summary().log[i]).collect()
    }

    fn clamp(&mut self) {
        let max = self.rows.len().saturating_sub(self.page_rows.max(1));
        self.from_bottom = self.from_bottom.min(max);
        if self.follow {
            self.from_bottom = 0;
        }
    }

    /// Scroll by `delta` lines; positive scrolls towards the end.
    fn scroll_by(&mut self, delta: isize) {
        let n = delta.unsigned_abs();
        let scrollable = self.rows.len() > self.page_rows.max(1);
        if delta < 0 && !scrollable {
            // Everything is on screen: nothing to scroll back to, keep following.
        } else if delta < 0 {
            self.follow = false;
            self.from_bottom = self.from_bottom.saturating_add(n);
        } else {
            self.from_bottom = self.from_bottom.saturating_sub(n);
            if self.from_bottom == 0 {
                self.follow = true;
            }
        }
        self.clamp();
    }

    /// The full, scrollable log (the Log tab).
    pub fn render(&mut self, model: &ViewModel, t: &Theme, f: &mut Frame, area: Rect) {
        let title = if self.follow {
            " Event log — following ".to_string()
        } else {
            format!(
                " Event log — scrolled back {} (f follows) ",
                self.from_bottom
            )
        };
        let height = self.draw(model, t, f, area, title, self.from_bottom);
        self.page_rows = height.max(1);
    }

    /// The newest lines (the dashboard's log tail).
    pub fn render_tail(&self, model: &ViewModel, t: &Theme, f: &mut Frame, area: Rect) {
        let title = " Event log (2: full view) ".to_string();
        self.draw(model, t, f, area, title, 0);
    }

    /// Draws the lines that end `from_bottom` lines before the newest; returns the lines that
    /// fit.
    fn draw(
        &self,
        model: &ViewModel,
        t: &Theme,
        f: &mut Frame,
        area: Rect,
        title: String,
        from_bottom: usize,
    ) -> usize {
        let block = panel(title, t);
        let inner = block.inner(area);
        let height = inner.height as usize;
        let end = self.rows.len().saturating_sub(from_bottom);
        let start = end.saturating_sub(height);
        let with_pid = inner.width >= 70;
        let mut lines: Vec<Line> = self.rows[start..end]
            .iter()
            .map(|&i| log_line(model, i, t, with_pid))
            .collect();
        if self.rows.is_empty() {
            let msg = if self.filter.is_empty() {
                "no events yet"
            } else {
                "no line matches the filter (Esc clears it)"
            };
            lines.push(Line::styled(msg, t.dim()));
        }
        f.render_widget(Paragraph::new(lines).block(block), area);
        height
    }
}

impl Pane for LogPane {
    fn filter(&self) -> &str {
        &self.filter
    }

    fn set_filter(&mut self, text: String, model: Option<&ViewModel>) {
        self.filter = text;
        self.rows = model.map_or_else(Vec::new, |m| filtered_rows(&m.summary().log, &self.filter));
        self.from_bottom = 0;
        self.follow = true;
    }

    /// A scrolled-back view stays on the same lines while new ones arrive.
    fn on_snapshot(&mut self, old: Option<&ViewModel>, new: &ViewModel) {
        let anchor = match (self.follow, old, self.rows.last()) {
            (false, Some(old), Some(&i)) => Some(&old.summary().log[i]),
            _ => None,
        };
        let log = &new.summary().log;
        let rows = filtered_rows(log, &self.filter);
        if let Some(anchor) = anchor {
            let appended = match rows.iter().rposition(|&i| log[i] == *anchor) {
                Some(pos) => rows.len() - 1 - pos,
                None => rows.len(),
            };
            self.from_bottom = self.from_bottom.saturating_add(appended);
        }
        self.rows = rows;
        self.clamp();
    }

    fn handle(&mut self, action: Action, _model: Option<&ViewModel>) {
        if action == Action::ToggleFollow {
            self.toggle_follow();
        } else if let Some(delta) = action.rows(self.page_rows) {
            self.scroll_by(delta);
        }
    }

    fn filter_hint(&self) -> &'static str {
        "  (kind or text)   "
    }

    fn status(&self, model: &ViewModel, t: &Theme) -> Vec<Span<'static>> {
        let total = model.summary().log.len();
        vec![
            if self.follow {
                Span::styled("following", t.ok())
            } else {
                Span::styled("scrolled back (f follows)", t.warn())
            },
            Span::styled(format!("  {}/{total} lines", self.rows.len()), t.dim()),
        ]
    }
}

fn log_line<'m>(model: &'m ViewModel, i: usize, t: &Theme, with_pid: bool) -> Line<'m> {
    let l = &model.summary().log[i];
    let text = model.log_text(i);
    let (marker, kind_style, text_style) = if l.is_error {
        (Span::styled("! ", t.error()), t.error(), t.error())
    } else {
        let kind = t.key().remove_modifier(Modifier::BOLD);
        (Span::raw("  "), kind, t.normal())
    };
    let pid = if with_pid {
        Span::styled(text.pid.as_str(), t.dim())
    } else {
        Span::raw("")
    };
    Line::from(vec![
        marker,
        Span::styled(text.ts.as_str(), t.dim()),
        pid,
        Span::styled(text.kind.as_str(), kind_style),
        Span::styled(l.text.as_str(), text_style),
    ])
}
