//! The VINTF & host panel of the dashboard: every VINTF (enable, ownership, VMID, LVCMDQ error
//! map, SID table), the emulated ↔ hardware handovers and the host's iommufd ioctls.

use cmdqv_core::analysis::{Handover, VintfSummary};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::common::panel;
use crate::tui::format;
use crate::tui::model::ViewModel;
use crate::tui::model::devices::VintfText;
use crate::tui::theme::Theme;

pub fn draw_devices(model: &ViewModel, t: &Theme, f: &mut Frame, area: Rect) {
    let s = model.summary();
    let mut lines: Vec<Line> = Vec::new();
    if s.vintfs.is_empty() {
        lines.push(Line::styled("no VINTF reported", t.dim()));
    }
    for (v, text) in s.vintfs.iter().zip(model.vintf_text()) {
        lines.extend(vintf_lines(v, text, t));
    }
    if let Some(h) = &s.handover {
        lines.push(handover_line(h, t));
    }
    for (name, &(n, errs)) in &s.ioctls {
        lines.push(ioctl_line(name, n, errs, t));
    }
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(panel(" VINTFs & host ", t));
    f.render_widget(p, area);
}

fn vintf_lines<'m>(v: &VintfSummary, text: &'m VintfText, t: &Theme) -> Vec<Line<'m>> {
    let mut head = vec![
        Span::styled(format!("VINTF{}", v.index), t.title()),
        Span::raw(" "),
        if v.enabled {
            Span::styled("enabled", t.ok())
        } else {
            Span::styled("disabled", t.dim())
        },
        Span::raw(format!(" HYP_OWN={} VMID {}", u8::from(v.hyp_own), v.vmid)),
        Span::raw(" "),
    ];
    if text.has_errors {
        head.push(Span::styled("! ", t.error()));
    }
    let err_style = if text.has_errors { t.error() } else { t.dim() };
    head.push(Span::styled(format!("ERR_MAP {}", text.err_map), err_style));
    let sids = match &text.sids {
        None => Line::styled("  no SID_MATCH entries", t.dim()),
        Some(sids) => Line::from(vec![
            Span::styled("  vSID→pSID ", t.dim()),
            Span::raw(sids.as_str()),
        ]),
    };
    vec![Line::from(head), sids]
}

fn handover_line(h: &Handover, t: &Theme) -> Line<'static> {
    let bad = h.commands_lost > 0 || h.view_mismatches > 0;
    Line::from(vec![
        Span::styled("handover ", t.dim()),
        Span::styled(
            format!(
                "{}{} (lost {}, view mismatches {})",
                if bad { "! " } else { "" },
                h.handovers,
                h.commands_lost,
                h.view_mismatches
            ),
            if bad { t.error() } else { t.normal() },
        ),
    ])
}

fn ioctl_line(name: &str, n: u64, errs: u64, t: &Theme) -> Line<'static> {
    let mut l = vec![
        Span::styled("ioctl ", t.dim()),
        Span::raw(format!("{name} ×{}", format::count(n))),
    ];
    if errs > 0 {
        l.push(Span::styled(
            format!(" ! {} failed", format::count(errs)),
            t.error(),
        ));
    }
    Line::from(l)
}
