//! The two header lines (PAUSED/ENDED/REC badges, source, target, notes; events, drops,
//! uptime, refresh rate, queue states) and the tab line with the focused pane's status.

use cmdqv_core::analysis::{QueueState, Summary};
use cmdqv_core::event::Source;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

use super::common::sep;
use crate::tui::action::View;
use crate::tui::format;
use crate::tui::model::ViewModel;
use crate::tui::theme::Theme;

/// What the header says about the UI itself, apart from the snapshot.
pub struct Status<'a> {
    pub paused: bool,
    pub finished: bool,
    /// The file being recorded to.
    pub recording: Option<&'a str>,
    pub refresh_hz: u32,
}

pub fn draw_header(
    status: &Status,
    model: Option<&ViewModel>,
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    let mut l1: Vec<Span> = vec![Span::styled("cmdqv", t.title()), Span::raw(" ")];
    l1.extend(badges(status, t));
    let l2 = match model {
        None => {
            l1.push(Span::styled("waiting for the first snapshot…", t.dim()));
            let hz = format!("refresh {} Hz", status.refresh_hz);
            vec![Span::styled(hz, t.dim())]
        }
        Some(m) => {
            l1.extend(origin(m.summary(), t));
            traffic(m, status.refresh_hz, t)
        }
    };
    f.render_widget(Paragraph::new(vec![Line::from(l1), Line::from(l2)]), area);
}

/// PAUSED, ENDED and REC, each followed by a space.
fn badges(status: &Status, t: &Theme) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    if status.paused {
        out.push(Span::styled(" PAUSED ", t.badge(Color::Yellow)));
        out.push(Span::raw(" "));
    }
    if status.finished {
        out.push(Span::styled(" ENDED ", t.badge(Color::Magenta)));
        out.push(Span::raw(" "));
    }
    if let Some(file) = status.recording {
        out.push(Span::styled(format!(" ● REC {file} "), t.badge(Color::Red)));
        out.push(Span::raw(" "));
    }
    out
}

/// Where the events come from: source, target, notes.
fn origin<'m>(s: &'m Summary, t: &Theme) -> Vec<Span<'m>> {
    let mut out = vec![
        match s.source {
            Source::Ebpf => Span::styled("source: eBPF", t.ok()),
            Source::InProcess => Span::styled(
                "source: in-process (no eBPF)",
                t.warn().add_modifier(Modifier::BOLD),
            ),
            Source::Replay => Span::styled("source: replay", t.normal()),
        },
        sep(t),
        Span::styled("target ", t.dim()),
        Span::raw(s.target.as_str()),
    ];
    if !s.notes.is_empty() {
        let n = s.notes.len();
        out.push(sep(t));
        out.push(Span::styled(
            format!("{n} note{} (3 Probes)", if n == 1 { "" } else { "s" }),
            t.warn(),
        ));
    }
    out
}

/// The second line: events and their rate, drops, uptime, refresh rate, queues by state.
fn traffic(m: &ViewModel, refresh_hz: u32, t: &Theme) -> Vec<Span<'static>> {
    let s = m.summary();
    let mut out: Vec<Span> = vec![
        Span::styled("events ", t.dim()),
        Span::raw(format::count(s.events)),
        Span::styled(" (", t.dim()),
        Span::raw(format::rate(s.events_per_s)),
        Span::styled("/s)", t.dim()),
        sep(t),
    ];
    if s.drops > 0 {
        out.push(Span::styled(
            format!("! drops {}", format::count(s.drops)),
            t.error(),
        ));
    } else {
        out.push(Span::styled("drops ", t.dim()));
        out.push(Span::raw("0"));
    }
    out.extend([
        sep(t),
        Span::styled("up ", t.dim()),
        Span::raw(format::uptime(s.elapsed_s)),
        sep(t),
        Span::raw(format!("{refresh_hz} Hz")),
        sep(t),
    ]);
    let states = m.states();
    out.push(Span::raw(format!("{} queues ", s.queues.len())));
    out.push(Span::styled(
        format!("{} hw", states.hardware),
        t.state(QueueState::Hardware),
    ));
    out.push(Span::raw(" "));
    out.push(Span::styled(
        format!("{} emu", states.emulated),
        t.state(QueueState::Emulated),
    ));
    if states.error > 0 {
        out.push(Span::raw(" "));
        out.push(Span::styled(format!("!{} err", states.error), t.error()));
    }
    out
}

/// The tabs, and at the right the filter (`Some` while it is set or typed) and the focused
/// pane's `status`.
pub fn draw_tabs(
    view: View,
    filter: Option<&str>,
    status: Vec<Span<'static>>,
    t: &Theme,
    f: &mut Frame,
    area: Rect,
) {
    let titles: Vec<Line> = View::ALL
        .iter()
        .map(|v| Line::from(v.tab_title()))
        .collect();
    let [left, right] =
        Layout::horizontal([Constraint::Length(32), Constraint::Fill(1)]).areas(area);
    let tabs = Tabs::new(titles)
        .select(Some(view.index()))
        .style(t.dim())
        .highlight_style(t.selected().add_modifier(Modifier::BOLD))
        .divider(Span::styled("│", t.dim()));
    f.render_widget(tabs, left);

    let mut info: Vec<Span> = Vec::new();
    if let Some(filter) = filter {
        info.push(Span::styled("filter ", t.dim()));
        info.push(Span::styled(format!("\"{filter}\""), t.key()));
        info.push(Span::raw("  "));
    }
    info.extend(status);
    info.push(Span::raw(" "));
    f.render_widget(
        Paragraph::new(Line::from(info)).alignment(Alignment::Right),
        right,
    );
}
