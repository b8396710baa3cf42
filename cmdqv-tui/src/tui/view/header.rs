//! The header (source, target, rates, drops, PAUSED/REC), the view tabs and the footer hints.

use cmdqv_core::analysis::QueueState;
use cmdqv_core::event::Source;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

use crate::tui::app::{App, View};
use crate::tui::format;
use crate::tui::keymap;

use super::probes::{ProbeClass, probe_class};
use super::{arrow, sep};

pub(super) fn draw_header(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut l1: Vec<Span> = vec![Span::styled("cmdqv", t.title()), Span::raw(" ")];
    if app.paused {
        l1.push(Span::styled(" PAUSED ", t.badge(Color::Yellow)));
        l1.push(Span::raw(" "));
    }
    if app.finished {
        l1.push(Span::styled(" ENDED ", t.badge(Color::Magenta)));
        l1.push(Span::raw(" "));
    }
    if let Some(file) = &app.recording {
        l1.push(Span::styled(format!(" ● REC {file} "), t.badge(Color::Red)));
        l1.push(Span::raw(" "));
    }
    let Some(s) = &app.summary else {
        l1.push(Span::styled("waiting for the first snapshot…", t.dim()));
        let l2 = Line::from(vec![Span::styled(
            format!("refresh {} Hz", app.refresh_hz),
            t.dim(),
        )]);
        f.render_widget(Paragraph::new(vec![Line::from(l1), l2]), area);
        return;
    };
    match s.source {
        Source::Ebpf => l1.push(Span::styled("source: eBPF", t.ok())),
        Source::InProcess => l1.push(Span::styled(
            "source: in-process (no eBPF)",
            t.warn().add_modifier(Modifier::BOLD),
        )),
        Source::Replay => l1.push(Span::styled("source: replay", t.normal())),
    }
    l1.push(sep(t));
    l1.push(Span::styled("target ", t.dim()));
    l1.push(Span::raw(s.target.clone()));
    if !s.notes.is_empty() {
        l1.push(sep(t));
        let n = s.notes.len();
        l1.push(Span::styled(
            format!("{n} note{} (3 Probes)", if n == 1 { "" } else { "s" }),
            t.warn(),
        ));
    }

    let mut l2: Vec<Span> = vec![
        Span::styled("events ", t.dim()),
        Span::raw(format::count(s.events)),
        Span::styled(" (", t.dim()),
        Span::raw(format::rate(s.events_per_s)),
        Span::styled("/s)", t.dim()),
        sep(t),
    ];
    if s.drops > 0 {
        l2.push(Span::styled(
            format!("! drops {}", format::count(s.drops)),
            t.error(),
        ));
    } else {
        l2.push(Span::styled("drops ", t.dim()));
        l2.push(Span::raw("0"));
    }
    l2.extend([
        sep(t),
        Span::styled("up ", t.dim()),
        Span::raw(format::uptime(s.elapsed_s)),
        sep(t),
        Span::raw(format!("{} Hz", app.refresh_hz)),
        sep(t),
    ]);
    let count = |st| s.queues.iter().filter(|q| q.state == st).count();
    l2.push(Span::raw(format!("{} queues ", s.queues.len())));
    l2.push(Span::styled(
        format!("{} hw", count(QueueState::Hardware)),
        t.state(QueueState::Hardware),
    ));
    l2.push(Span::raw(" "));
    l2.push(Span::styled(
        format!("{} emu", count(QueueState::Emulated)),
        t.state(QueueState::Emulated),
    ));
    let errs = count(QueueState::Error);
    if errs > 0 {
        l2.push(Span::raw(" "));
        l2.push(Span::styled(format!("!{errs} err"), t.error()));
    }
    f.render_widget(Paragraph::new(vec![Line::from(l1), Line::from(l2)]), area);
}

pub(super) fn draw_tabs(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let titles: Vec<Line> = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title())))
        .collect();
    let sel = View::ALL.iter().position(|&v| v == app.view);
    let [left, right] =
        Layout::horizontal([Constraint::Length(32), Constraint::Fill(1)]).areas(area);
    let tabs = Tabs::new(titles)
        .select(sel)
        .style(t.dim())
        .highlight_style(t.selected().add_modifier(Modifier::BOLD))
        .divider(Span::styled("│", t.dim()));
    f.render_widget(tabs, left);

    let mut info: Vec<Span> = Vec::new();
    let filter = app.filter(app.view);
    if !filter.is_empty() || app.editing_filter {
        info.push(Span::styled("filter ", t.dim()));
        info.push(Span::styled(format!("\"{filter}\""), t.key()));
        info.push(Span::raw("  "));
    }
    if let Some(s) = &app.summary {
        match app.view {
            View::Queues => {
                let (col, desc) = app.sort();
                info.push(Span::styled("sort ", t.dim()));
                info.push(Span::raw(format!("{}{}", col.title(), arrow(desc))));
                info.push(Span::styled(
                    format!("  {}/{} queues", app.visible_queues().len(), s.queues.len()),
                    t.dim(),
                ));
            }
            View::Log => {
                if app.log_follow {
                    info.push(Span::styled("following", t.ok()));
                } else {
                    info.push(Span::styled("scrolled back (f follows)", t.warn()));
                }
                info.push(Span::styled(
                    format!("  {}/{} lines", app.filtered_log().len(), s.log.len()),
                    t.dim(),
                ));
            }
            View::Probes => {
                let ok = s
                    .probes
                    .iter()
                    .filter(|p| probe_class(&p.status) == ProbeClass::Ok)
                    .count();
                info.push(Span::styled(
                    format!("{ok}/{} probes ok", s.probes.len()),
                    t.dim(),
                ));
            }
        }
    }
    info.push(Span::raw(" "));
    f.render_widget(
        Paragraph::new(Line::from(info)).alignment(Alignment::Right),
        right,
    );
}

pub(super) fn draw_footer(app: &App, f: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut spans: Vec<Span> = Vec::new();
    if app.editing_filter {
        spans.push(Span::styled("/", t.key()));
        spans.push(Span::raw(app.filter(app.view).to_string()));
        spans.push(Span::styled(
            "█",
            t.normal().add_modifier(Modifier::SLOW_BLINK),
        ));
        spans.push(Span::styled(
            match app.view {
                View::Queues => "  (name or state)   ",
                View::Log => "  (kind or text)   ",
                View::Probes => "  (name, status or reason)   ",
            },
            t.dim(),
        ));
    }
    let mut hints = keymap::hints(&app.contexts());
    // The ways to quit and to the help stay visible however narrow the footer.
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
    let used: usize = spans.iter().map(|s| s.width()).sum();
    while hints.len() > pinned && used + width(&hints) > area.width as usize {
        hints.remove(hints.len() - pinned - 1);
    }
    for (k, w) in hints {
        spans.push(Span::styled(k, t.key()));
        spans.push(Span::raw(format!(" {w}")));
        spans.push(Span::raw("  "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}
