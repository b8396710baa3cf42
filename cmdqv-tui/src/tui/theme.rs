//! Styles with meaning (state, errors, status), in one of three palettes: `dark` (for dark
//! terminals, the default), `light` (dark colours for light backgrounds) and `high-contrast`
//! (bright colours only, no dimmed text, the selection reversed). With colour off (`NO_COLOR`
//! or `--no-color`) no style carries a colour at all, whatever the palette; emphasis (bold,
//! reversed) stays, and every state is also spelled out in text, so nothing relies on colour
//! alone.

use cmdqv_core::analysis::QueueState;
use ratatui::style::{Color, Modifier, Style};

/// Which colours the roles get (the config file's `theme`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Palette {
    #[default]
    Dark,
    Light,
    HighContrast,
}

impl Palette {
    pub const ALL: [Palette; 3] = [Palette::Dark, Palette::Light, Palette::HighContrast];

    /// The name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Palette::Dark => "dark",
            Palette::Light => "light",
            Palette::HighContrast => "high-contrast",
        }
    }
}

/// The palette, or its absence.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Theme {
    color: bool,
    palette: Palette,
}

impl Theme {
    pub fn new(no_color: bool) -> Self {
        Self::with_palette(Palette::Dark, no_color)
    }

    /// `palette`'s colours, or none at all with `no_color`.
    pub fn with_palette(palette: Palette, no_color: bool) -> Self {
        Self {
            color: !no_color,
            palette,
        }
    }

    pub fn palette(&self) -> Palette {
        self.palette
    }

    /// The colour of a role in this palette: `[dark, light, high-contrast]`.
    fn pick(&self, c: [Color; 3]) -> Color {
        match self.palette {
            Palette::Dark => c[0],
            Palette::Light => c[1],
            Palette::HighContrast => c[2],
        }
    }

    fn role(&self, c: [Color; 3]) -> Style {
        self.fg(self.pick(c))
    }

    pub fn has_color(&self) -> bool {
        self.color
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// Plain text.
    pub fn normal(&self) -> Style {
        Style::new()
    }

    /// Secondary text (units, separators, idle rows).
    pub fn dim(&self) -> Style {
        self.role([Color::DarkGray, Color::Indexed(243), Color::White])
    }

    /// Titles and column headers.
    pub fn title(&self) -> Style {
        self.role([Color::Cyan, Color::Blue, Color::White])
            .add_modifier(Modifier::BOLD)
    }

    /// Key names in the footer and help.
    pub fn key(&self) -> Style {
        self.role([Color::Yellow, Color::Magenta, Color::LightYellow])
            .add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.role([Color::Red, Color::Red, Color::LightRed])
            .add_modifier(Modifier::BOLD)
    }

    pub fn warn(&self) -> Style {
        self.role([Color::Yellow, Color::Indexed(130), Color::LightYellow])
    }

    pub fn ok(&self) -> Style {
        self.role([Color::Green, Color::Indexed(28), Color::LightGreen])
    }

    /// Emulated queues and the in-process source.
    fn info(&self) -> Style {
        self.role([Color::Blue, Color::Blue, Color::LightCyan])
    }

    /// Badges that must catch the eye (PAUSED, REC, in-process source).
    pub fn badge(&self, c: Color) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(c)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    /// The selected row or tab.
    pub fn selected(&self) -> Style {
        if self.color && self.palette != Palette::HighContrast {
            let bg = self.pick([Color::DarkGray, Color::Indexed(252), Color::Reset]);
            Style::new().bg(bg).add_modifier(Modifier::BOLD)
        } else if self.color {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// Border of the focused pane.
    pub fn border(&self) -> Style {
        self.role([Color::Gray, Color::DarkGray, Color::White])
    }

    pub fn state(&self, s: QueueState) -> Style {
        match s {
            QueueState::Disabled => self.dim(),
            QueueState::Emulated => self.info(),
            QueueState::Hardware => self.ok(),
            QueueState::Error => self.error(),
        }
    }

    /// Colour of a probe attach status.
    pub fn probe(&self, status: &str) -> Style {
        match status {
            "attached" => self.ok(),
            "in-process" => self.info(),
            "not-requested" => self.dim(),
            "symbol-not-found" | "unsupported" => self.warn(),
            _ => self.error(),
        }
    }

    /// Histogram and sparkline bars.
    pub fn bar(&self) -> Style {
        self.role([Color::Cyan, Color::Blue, Color::White])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dark_is_the_old_palette_and_no_color_wins_over_every_palette() {
        let dark = Theme::new(false);
        let old_selected = Style::new()
            .bg(Color::DarkGray)
            .add_modifier(Modifier::BOLD);
        assert_eq!(dark.selected(), old_selected);
        assert_eq!(dark.title().fg, Some(Color::Cyan));
        let light = Theme::with_palette(Palette::Light, false);
        assert_ne!(light.title(), dark.title());
        let hc = Theme::with_palette(Palette::HighContrast, false);
        assert!(hc.selected().add_modifier.contains(Modifier::REVERSED));
        assert_eq!(hc.dim().fg, Some(Color::White), "no dimmed text");
        for p in Palette::ALL {
            let t = Theme::with_palette(p, true);
            for s in [
                t.dim(),
                t.title(),
                t.key(),
                t.error(),
                t.warn(),
                t.ok(),
                t.bar(),
            ] {
                assert_eq!((s.fg, s.bg), (None, None), "{p:?}");
            }
            assert_eq!(t.selected().bg, None);
        }
    }
}
