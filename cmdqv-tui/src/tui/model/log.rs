//! The event log's data: which lines a filter keeps, and each line's columns as text.

use cmdqv_core::analysis::LogLine;

use super::filter;
use crate::tui::format;

/// Does a log line match a filter? Case-insensitive substring of its kind or text.
pub fn log_matches(l: &LogLine, filter: &str) -> bool {
    filter::one(l, filter, matches_lower)
}

fn matches_lower(l: &LogLine, lower: &str) -> bool {
    filter::contains(&l.kind, lower) || filter::contains(&l.text, lower)
}

/// Indices of the lines that match `filter`, oldest first.
pub fn filtered_rows(log: &[LogLine], filter: &str) -> Vec<usize> {
    filter::matching(log, filter, matches_lower)
}

/// A log line's fixed-width columns, padded as the log view aligns them.
pub struct LogText {
    /// Timestamp, right-aligned to 10 columns, and a space.
    pub ts: String,
    /// Pid, right-aligned to 7 columns, and a space.
    pub pid: String,
    /// Kind, left-aligned to 6 columns.
    pub kind: String,
}

impl LogText {
    pub fn new(l: &LogLine) -> Self {
        Self {
            ts: format!("{:>10} ", format::timestamp(l.ts_ns)),
            pid: format!("{:>7} ", l.pid),
            kind: format!("{:<6}", l.kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, text: &str) -> LogLine {
        LogLine {
            ts_ns: 12_345_678_901,
            pid: 42,
            kind: kind.into(),
            text: text.into(),
            is_error: false,
        }
    }

    #[test]
    fn filter_matches_kind_or_text_ignoring_case() {
        let log = [
            line("mmio", "W PROD"),
            line("ioctl", "ENOTTY"),
            line("cmd", "x"),
        ];
        assert_eq!(filtered_rows(&log, ""), [0, 1, 2]);
        assert_eq!(filtered_rows(&log, "IOCTL"), [1]);
        assert_eq!(filtered_rows(&log, "prod"), [0]);
        assert!(log_matches(&log[1], "enotty"));
        assert!(!log_matches(&log[2], "mmio"));
    }

    #[test]
    fn columns_are_padded() {
        let text = LogText::new(&line("cmd", "x"));
        assert_eq!(text.ts, " 12.345678 ");
        assert_eq!(text.pid, "     42 ");
        assert_eq!(text.kind, "cmd   ");
    }
}
