//! How a live run is shown and for how long: the output flags every target and replay share,
//! and the options the runner takes from them.

use std::{path::PathBuf, time::Duration};

use clap::Args;

/// Output flags shared by every target and by replay.
#[derive(Args, Clone, Debug, Default)]
pub struct OutputArgs {
    /// No terminal UI: print a summary at the end (and per --interval).
    #[arg(long)]
    pub headless: bool,
    /// Stop after this long (e.g. 5s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Print summaries as JSON (one object per line).
    #[arg(long)]
    pub json: bool,
    /// Also print a summary every interval (headless).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
}

/// What the live runner does besides collecting.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Print the final summary instead of showing the TUI.
    pub headless: bool,
    pub json: bool,
    /// Print (headless) a summary per interval.
    pub interval: Option<Duration>,
    /// Record every event to this file from the start.
    pub record: Option<PathBuf>,
    /// TUI frames (and snapshots) per second.
    pub refresh_hz: u32,
}

impl LiveOptions {
    /// The options a target's flags ask for; `cmdqv record` forces headless.
    pub fn new(out: &OutputArgs, record: Option<PathBuf>, refresh_hz: u32) -> Self {
        Self {
            headless: out.headless || record.is_some(),
            json: out.json,
            interval: out.interval,
            record,
            refresh_hz,
        }
    }
}

/// Parses `5s`, `500ms`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration `{s}` (try 5s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}` (use ms, s, m or h)")),
    };
    if !secs.is_finite() || !(0.0..=1e7).contains(&secs) {
        return Err(format!("duration `{s}` out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
