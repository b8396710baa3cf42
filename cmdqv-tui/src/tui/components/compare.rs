//! The comparison of two queues (for example the trapped SMMU queue against a VCMDQ): each
//! one's counters side by side, and their batch latency distributions on one axis.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::charts::{draw_distributions, gone};
use super::common::panel;
use super::detail::detail_info;
use crate::tui::model::ViewModel;
use crate::tui::theme::Theme;

pub fn draw_compare(names: &[String; 2], model: &ViewModel, t: &Theme, f: &mut Frame, area: Rect) {
    f.render_widget(Clear, area);
    let block = panel(format!(" {} vs {} ", names[0], names[1]), t)
        .title_bottom(Line::styled(" Esc closes, m marks other queues ", t.dim()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let top_h = 9u16.min(inner.height / 2);
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_h), Constraint::Fill(1)]).areas(inner);
    let sides = Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).split(top);
    let queues = &model.summary().queues;
    let found: Vec<_> = names
        .iter()
        .map(|n| queues.iter().find(|q| q.name == *n))
        .collect();
    for ((name, q), side) in names.iter().zip(&found).zip(sides.iter()) {
        match q {
            Some(q) => f.render_widget(
                Paragraph::new(detail_info(q, t))
                    .wrap(Wrap { trim: false })
                    .block(panel(format!(" {name} "), t)),
                *side,
            ),
            None => f.render_widget(gone(name, t), *side),
        }
    }
    if let [Some(a), Some(b)] = found[..] {
        draw_distributions(a, b, t, f, bottom);
    }
}
