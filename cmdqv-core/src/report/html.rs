//! The report's HTML page: inline CSS, the queues' table, one section per plot (its SVG
//! inline), the errors by queue. Everything the recording supplies is escaped.

use std::fmt::Write as _;

use super::stats::Stats;
use crate::analysis::{Summary, format_duration_ns};
use crate::record::ReplayInfo;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;background:#fff}\
h1{font-size:26px}h2{font-size:20px;margin-top:28px}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
th{background:#eef}td:first-child,th:first-child{text-align:left}\
.note{color:#555;max-width:1100px}.meta{color:#333}section{margin-bottom:20px}";

/// Text made safe for HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A bucket width for people.
pub fn duration(ns: u64) -> String {
    format_duration_ns(ns)
}

fn header(out: &mut String, summary: &Summary, replayed: &ReplayInfo, stats: &Stats) {
    let _ = write!(
        out,
        "<h1>cmdqv report: {}</h1><p class=\"meta\">source {} · {} events over {:.3} s · {} queues · recorded by cmdqv {}</p>",
        esc(&summary.target),
        esc(replayed.meta.source.as_str()),
        stats.events,
        stats.duration_s(),
        summary.queues.len(),
        esc(&replayed.meta.tool_version),
    );
    if let Some(t) = &replayed.truncated {
        let _ = write!(
            out,
            "<p class=\"note\">The file is truncated: read up to byte {} ({} trailing bytes ignored).</p>",
            t.offset, t.ignored_bytes
        );
    }
    if replayed.bad_records > 0 {
        let _ = write!(
            out,
            "<p class=\"note\">{} corrupt records skipped.</p>",
            replayed.bad_records
        );
    }
    for n in &summary.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(n));
    }
}

fn queue_table(out: &mut String, summary: &Summary) {
    out.push_str(
        "<h2>Queues</h2><table><tr><th>queue</th><th>commands</th><th>batches</th><th>commands/s</th>\
         <th>mean batch</th><th>latency p50</th><th>latency p99</th><th>max</th><th>errors</th></tr>",
    );
    for q in &summary.queues {
        let l = q.batch_latency_ns;
        let errors: Vec<String> = q
            .errors_by_code
            .iter()
            .map(|(k, v)| format!("{} {v}", esc(k)))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&q.name),
            q.commands,
            q.batches,
            q.commands_per_s,
            q.mean_batch_size,
            format_duration_ns(l.p50),
            format_duration_ns(l.p99),
            format_duration_ns(l.max),
            if errors.is_empty() {
                "0".to_owned()
            } else {
                errors.join(", ")
            },
        );
    }
    out.push_str("</table>");
}

/// The whole page; `sections` are (title, note, inline SVG).
pub fn page(
    summary: &Summary,
    replayed: &ReplayInfo,
    stats: &Stats,
    sections: &[(&str, String, String)],
) -> String {
    let mut out =
        String::with_capacity(64 * 1024 + sections.iter().map(|s| s.2.len()).sum::<usize>());
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cmdqv report: {}</title><style>{STYLE}</style></head><body>",
        esc(&summary.target)
    );
    header(&mut out, summary, replayed, stats);
    queue_table(&mut out, summary);
    for (title, note, svg) in sections {
        let _ = write!(
            out,
            "<section><h2>{}</h2><p class=\"note\">{}</p>",
            esc(title),
            esc(note)
        );
        out.push_str(svg);
        out.push_str("</section>");
    }
    let errors: Vec<_> = summary
        .queues
        .iter()
        .filter_map(|q| Some((q, q.last_error.as_ref()?)))
        .collect();
    if !errors.is_empty() {
        out.push_str("<h2>Last error per queue</h2><table><tr><th>queue</th><th>error</th><th>CONS</th><th>acknowledged</th></tr>");
        for (q, e) in errors {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&q.name),
                esc(&e.name),
                e.index,
                e.acknowledged
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}
