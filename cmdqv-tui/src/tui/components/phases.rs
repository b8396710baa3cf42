//! Where the selected queue's batch time goes: one row per phase the source can see (p50, p99,
//! samples), in batch order, for the detail view. Phases the source cannot see are not listed.

use cmdqv_core::analysis::{PHASES, QueueSummary};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::common::panel;
use crate::tui::format;
use crate::tui::theme::Theme;

/// Rows the panel wants (its phases and the border); 0 when the queue has none, so the detail
/// view keeps its layout for sources that report no phases.
pub fn phases_height(q: &QueueSummary) -> u16 {
    if q.phases_ns.is_empty() {
        0
    } else {
        q.phases_ns.len().min(PHASES.len()) as u16 + 2
    }
}

/// The phase rows of `q`, in batch order.
fn phase_lines(q: &QueueSummary, t: &Theme) -> Vec<Line<'static>> {
    PHASES
        .iter()
        .filter_map(|p| Some((p.name(), q.phases_ns.get(p.name())?)))
        .map(|(name, l)| {
            Line::from(vec![
                Span::styled(format!("{name:<20}"), t.dim()),
                Span::raw(format!(
                    "p50 {:>7}  p99 {:>7}  n={}",
                    format::latency(l.count, l.p50),
                    format::latency(l.count, l.p99),
                    format::count(l.count)
                )),
            ])
        })
        .collect()
}

pub fn draw_phases(q: &QueueSummary, t: &Theme, f: &mut Frame, area: Rect) {
    let block = panel(" where batch time goes (phases) ", t);
    f.render_widget(Paragraph::new(phase_lines(q, t)).block(block), area);
}
