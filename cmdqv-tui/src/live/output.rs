//! Headless output: one JSON summary (and one per `--interval`), or a readable table.

use cmdqv_core::analysis::{Summary, format_duration_ns};

use crate::live::identity::TargetId;

/// How summaries are printed: JSON lines or the table.
#[derive(Clone, Debug)]
pub struct Printer {
    pub json: bool,
    /// What the JSON records' identity names as the target.
    pub target: TargetId,
}

impl Printer {
    pub fn print(&self, s: &Summary) {
        if self.json {
            print_json(s, &self.target)
        } else {
            print_text(s)
        }
    }
}

/// Prints a summary as one line of JSON, stamped with its identity.
pub fn print_json(s: &Summary, target: &TargetId) {
    match serde_json::to_string(&target.stamped(s)) {
        Ok(j) => println!("{j}"),
        Err(e) => eprintln!("cmdqv: cannot serialise the summary: {e}"),
    }
}

/// Prints a summary for a person.
pub fn print_text(s: &Summary) {
    println!(
        "target {}  source {}  {:.1}s  events {} ({:.0}/s)  drops {}",
        s.target,
        s.source.as_str(),
        s.elapsed_s,
        s.events,
        s.events_per_s,
        s.drops
    );
    for n in &s.notes {
        println!("note: {n}");
    }
    println!(
        "{:<10} {:>5} {:>6} {:<9} {:>10} {:>8} {:>7} {:>10} {:>10} {:>10} {:>6}",
        "queue",
        "vintf",
        "lvcmdq",
        "state",
        "commands",
        "syncs",
        "errors",
        "cmds/s",
        "p50",
        "p99",
        "batch"
    );
    for q in &s.queues {
        let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:>5} {:>6} {:<9} {:>10} {:>8} {:>7} {:>10.0} {:>10} {:>10} {:>6.1}",
            q.name,
            opt(q.vintf),
            opt(q.lvcmdq),
            format!("{:?}", q.state).to_lowercase(),
            q.commands,
            q.syncs,
            q.errors,
            q.commands_per_s,
            format_duration_ns(q.batch_latency_ns.p50),
            format_duration_ns(q.batch_latency_ns.p99),
            q.mean_batch_size
        );
    }
    if !s.probes.is_empty() {
        println!("probes:");
        for p in &s.probes {
            println!("  {:<40} {:<18} {}", p.name, p.status, p.reason);
        }
    }
    if let Some(h) = &s.handover {
        println!(
            "handover: {} handovers, {} commands lost, {} view mismatches",
            h.handovers, h.commands_lost, h.view_mismatches
        );
    }
}
