//! The trapped path's line under the queue table when the sim's guest runs in KVM vCPUs: its
//! exits per second and where a batch's time goes (measured phases), then what is modelled,
//! labelled so, never added to the measured figures.

use cmdqv_core::analysis::Summary;

use crate::tui::format;

/// The phases as the line names them, in batch order.
const PHASES: [(&str, &str); 4] = [
    ("exit", "exit"),
    ("vmm_dispatch", "VMM dispatch"),
    ("consumption", "consumption"),
    ("resume", "resume"),
];

/// `trapped: 1.2k exits/s · batch p50: exit 3.1µs, … · modelled: host_invalidate_ns 28000`,
/// or `None` without a KVM comparison in the snapshot.
pub fn trapped_line(s: &Summary) -> Option<String> {
    let c = s.sim.as_ref()?.comparison.as_ref()?;
    let t = &c.trapped;
    let per_s = if s.elapsed_s > 0.0 {
        t.exits as f64 / s.elapsed_s
    } else {
        0.0
    };
    let mut line = format!("trapped: {} exits/s", format::rate(per_s));
    let phases: Vec<String> = PHASES
        .iter()
        .filter_map(|(key, name)| {
            Some(format!(
                "{name} {}",
                format::ns(t.breakdown_ns.get(*key)?.p50)
            ))
        })
        .collect();
    if !phases.is_empty() {
        line += &format!(" · batch p50: {}", phases.join(", "));
    }
    // The modelled inputs of the trapped path, by name (`trapped NAME: VALUE (why)`).
    let modelled: Vec<&str> = c
        .modelled
        .iter()
        .filter_map(|m| m.strip_prefix("trapped "))
        .map(|m| m.split(" (").next().unwrap_or(m))
        .collect();
    if !modelled.is_empty() {
        line += &format!(" · modelled (not run here): {}", modelled.join(", "));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use cmdqv_core::{
        analysis::{Collector, CollectorConfig, Comparison, Latency, SimReport},
        event::Source,
    };

    use super::*;

    fn empty() -> Summary {
        Collector::new(CollectorConfig::new(Source::Ebpf, "t")).snapshot(0)
    }

    #[test]
    fn the_line_has_exits_per_second_the_phases_and_the_modelled_part_apart() {
        let mut c = Comparison::default();
        c.trapped.exits = 3000;
        for (k, v) in [("exit", 3_000), ("resume", 6_000)] {
            let l = Latency {
                p50: v,
                ..Default::default()
            };
            c.trapped.breakdown_ns.insert(k.into(), l);
        }
        c.modelled = vec![
            "trapped host_invalidate_ns: 28000 (HWPT_INVALIDATE; not run here)".into(),
            "direct hw_latency_ns: 4500 (not run here)".into(),
        ];
        let mut s = empty();
        assert!(trapped_line(&s).is_none());
        s.elapsed_s = 2.0;
        s.sim = Some(SimReport {
            guest_engine: "kvm".into(),
            comparison: Some(c),
        });
        let line = trapped_line(&s).unwrap();
        assert!(
            line.starts_with("trapped: 1.50k exits/s · batch p50: exit 3.00µs, resume 6.00µs"),
            "{line}"
        );
        assert!(line.contains(", resume "), "{line}");
        assert!(
            line.ends_with(" · modelled (not run here): host_invalidate_ns: 28000"),
            "{line}"
        );
    }
}
