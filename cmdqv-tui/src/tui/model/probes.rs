//! The probe list's data: what each attach status means for the user, and which probes a
//! filter keeps.

use cmdqv_core::analysis::ProbeStatus;

use super::filter;

/// Probe statuses grouped by what they mean for the user.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProbeClass {
    Ok = 0,
    Missing = 1,
    Failed = 2,
    Off = 3,
}

impl ProbeClass {
    /// The marker in the probe table's first column (colour is never the only cue).
    pub fn marker(self) -> &'static str {
        match self {
            ProbeClass::Missing => "?",
            ProbeClass::Failed => "!",
            ProbeClass::Ok | ProbeClass::Off => " ",
        }
    }
}

pub fn probe_class(status: &str) -> ProbeClass {
    match status {
        "attached" | "in-process" => ProbeClass::Ok,
        "symbol-not-found" | "unsupported" => ProbeClass::Missing,
        "not-requested" => ProbeClass::Off,
        _ => ProbeClass::Failed,
    }
}

/// Does a probe match a filter? Case-insensitive substring of its name, status or reason.
pub fn probe_matches(p: &ProbeStatus, filter: &str) -> bool {
    filter::one(p, filter, matches_lower)
}

fn matches_lower(p: &ProbeStatus, lower: &str) -> bool {
    [&p.name, &p.status, &p.reason]
        .iter()
        .any(|s| filter::contains(s, lower))
}

/// Indices of the probes that match `filter`, in reported order.
pub fn filtered_rows(probes: &[ProbeStatus], filter: &str) -> Vec<usize> {
    filter::matching(probes, filter, matches_lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_classes_with_markers() {
        assert_eq!(probe_class("attached"), ProbeClass::Ok);
        assert_eq!(probe_class("in-process"), ProbeClass::Ok);
        assert_eq!(probe_class("unsupported"), ProbeClass::Missing);
        assert_eq!(probe_class("not-requested"), ProbeClass::Off);
        assert_eq!(probe_class("permission-denied"), ProbeClass::Failed);
        assert_eq!(ProbeClass::Missing.marker(), "?");
        assert_eq!(ProbeClass::Failed.marker(), "!");
        let p = ProbeStatus {
            name: "kvm_exit".into(),
            status: "attached".into(),
            reason: "Tracepoint".into(),
        };
        assert!(probe_matches(&p, "TRACE"));
        assert_eq!(filtered_rows(&[p.clone(), p], "exit"), [0, 1]);
    }
}
