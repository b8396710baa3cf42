//! How the UI is set up: its options, the refresh rates it accepts and steps through, and the
//! `NO_COLOR` convention.

/// Options of the live UI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TuiOptions {
    /// Frames (and snapshot pulls) per second, clamped to `MIN_HZ..=MAX_HZ`.
    pub refresh_hz: u32,
    /// No colour at all. `tui::run` also turns this on when `NO_COLOR` is set and
    /// non-empty.
    pub no_color: bool,
}

/// Slowest refresh rate the UI accepts.
pub const MIN_HZ: u32 = 1;
/// Fastest refresh rate the UI accepts.
pub const MAX_HZ: u32 = 60;

/// Steps of the refresh rate for `+` / `-`.
const RATES: [u32; 8] = [1, 2, 5, 10, 15, 20, 30, 60];

impl Default for TuiOptions {
    fn default() -> Self {
        Self {
            refresh_hz: 10,
            no_color: false,
        }
    }
}

impl TuiOptions {
    /// These options with `NO_COLOR` (<https://no-color.org>) from the environment applied.
    pub fn with_env(mut self) -> Self {
        self.no_color |= no_color_env(std::env::var_os("NO_COLOR").as_deref());
        self
    }
}

/// `NO_COLOR` disables colour when it is present and not empty.
pub fn no_color_env(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

/// The next refresh step above `hz` (`+`), or [`MAX_HZ`].
pub fn faster(hz: u32) -> u32 {
    RATES.iter().copied().find(|&r| r > hz).unwrap_or(MAX_HZ)
}

/// The next refresh step below `hz` (`-`), or [`MIN_HZ`].
pub fn slower(hz: u32) -> u32 {
    RATES
        .iter()
        .rev()
        .copied()
        .find(|&r| r < hz)
        .unwrap_or(MIN_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_step_and_stop_at_the_ends() {
        assert_eq!(faster(10), 15);
        assert_eq!(faster(7), 10, "an off-step rate joins the steps");
        assert_eq!(faster(60), MAX_HZ);
        assert_eq!(slower(10), 5);
        assert_eq!(slower(1), MIN_HZ);
    }
}
