//! Human units for the tables: durations (ns/µs/ms/s), rates, counts, sizes. Every function takes
//! any value (NaN, infinities, `u64::MAX`) and returns a short string; none of them panics.

/// A duration in nanoseconds: `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn ns(v: u64) -> String {
    let f = v as f64;
    if v < 1_000 {
        format!("{v}ns")
    } else if v < 1_000_000 {
        format!("{}µs", three_digits(f / 1e3))
    } else if v < 1_000_000_000 {
        format!("{}ms", three_digits(f / 1e6))
    } else if f < 1e5 * 1e9 {
        format!("{}s", three_digits(f / 1e9))
    } else {
        ">1d".to_string()
    }
}

/// A latency that has no samples yet is shown as `-`.
pub fn latency(count: u64, v: u64) -> String {
    if count == 0 { "-".into() } else { ns(v) }
}

/// Three significant digits at most: `1.23`, `12.3`, `123`.
fn three_digits(f: f64) -> String {
    if f < 9.995 {
        format!("{f:.2}")
    } else if f < 99.95 {
        format!("{f:.1}")
    } else {
        format!("{f:.0}")
    }
}

/// A per-second rate: `0`, `12.3`, `456`, `1.23k`, `45.6M`.
pub fn rate(v: f64) -> String {
    if !v.is_finite() || v < 0.0 {
        return "-".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    scaled(v)
}

/// An event count: `999`, `1.23k`, `4.56M`, `7.89G`.
pub fn count(v: u64) -> String {
    if v < 1_000 {
        v.to_string()
    } else {
        scaled(v as f64)
    }
}

fn scaled(v: f64) -> String {
    const UNITS: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut v = v;
    let mut unit = 0;
    while v >= 999.5 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 && v < 100.0 && v.fract() != 0.0 {
        return three_digits(v);
    }
    if unit == 0 {
        return format!("{v:.0}");
    }
    if v >= 999.5 {
        return "huge".into();
    }
    format!("{}{}", three_digits(v), UNITS[unit])
}

/// Ring size in entries from log2size: `256`, `32Ki`, `1Mi`; sizes past 2^63 show as `2^N`.
pub fn entries(log2size: u8) -> String {
    match 1u64.checked_shl(log2size.into()) {
        Some(n) if n < 1 << 10 => n.to_string(),
        Some(n) if n < 1 << 20 => format!("{}Ki", n >> 10),
        Some(n) if n < 1 << 30 => format!("{}Mi", n >> 20),
        _ => format!("2^{log2size}"),
    }
}

/// A fraction 0..=1 as a percentage: `0%`, `37%`, `100%`.
pub fn percent(frac: f64) -> String {
    if !frac.is_finite() {
        return "-".into();
    }
    format!("{:.0}%", (frac.clamp(0.0, 1.0) * 100.0))
}

/// Elapsed seconds as `12s`, `4:05`, `1:02:03`, `3d04:05:06`.
pub fn uptime(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let s = secs.min(u64::MAX as f64 / 2.0) as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}:{m:02}:{sec:02}")
    } else if h > 0 {
        format!("{h}:{m:02}:{sec:02}")
    } else if m > 0 {
        format!("{m}:{sec:02}")
    } else {
        format!("{sec}s")
    }
}

/// An optional id or index: the number, or `-` when there is none.
pub fn id(v: Option<u32>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// A monotonic timestamp as seconds with microseconds: `12.345678`.
pub fn timestamp(ts_ns: u64) -> String {
    format!(
        "{}.{:06}",
        ts_ns / 1_000_000_000,
        ts_ns % 1_000_000_000 / 1_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(ns(0), "0ns");
        assert_eq!(ns(850), "850ns");
        assert_eq!(ns(5_300), "5.30µs");
        assert_eq!(ns(35_700), "35.7µs");
        assert_eq!(ns(999_999), "1000µs");
        assert_eq!(ns(4_560_000), "4.56ms");
        assert_eq!(ns(1_230_000_000), "1.23s");
        assert_eq!(ns(u64::MAX), ">1d");
        assert_eq!(latency(0, 5), "-");
    }

    #[test]
    fn rates_and_counts_scale() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(456.0), "456");
        assert_eq!(rate(1_234.0), "1.23k");
        assert_eq!(rate(45_600_000.0), "45.6M");
        assert_eq!(rate(f64::NAN), "-");
        assert_eq!(rate(f64::INFINITY), "-");
        assert_eq!(rate(f64::MAX), "huge");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1.00k");
        assert_eq!(count(u64::MAX), "18.4E");
    }

    #[test]
    fn sizes_percent_uptime() {
        assert_eq!(entries(8), "256");
        assert_eq!(entries(15), "32Ki");
        assert_eq!(entries(20), "1Mi");
        assert_eq!(entries(255), "2^255");
        assert_eq!(percent(0.374), "37%");
        assert_eq!(percent(7.0), "100%");
        assert_eq!(percent(f64::NAN), "-");
        assert_eq!(uptime(12.9), "12s");
        assert_eq!(uptime(245.0), "4:05");
        assert_eq!(uptime(3_723.0), "1:02:03");
        assert_eq!(uptime(f64::INFINITY), "-");
        assert_eq!(timestamp(12_345_678_901), "12.345678");
        assert_eq!(id(Some(7)), "7");
        assert_eq!(id(None), "-");
    }
}
