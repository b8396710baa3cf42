//! Styles with meaning (state, errors, status). With colour off (`NO_COLOR` or `--no-color`) no
//! style carries a colour at all; emphasis (bold, reversed) stays, and every state is also
//! spelled out in text, so nothing relies on colour alone.

use cmdqv_core::analysis::QueueState;
use ratatui::style::{Color, Modifier, Style};

/// The palette, or its absence.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    pub fn new(no_color: bool) -> Self {
        Self { color: !no_color }
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
        self.fg(Color::DarkGray)
    }

    /// Titles and column headers.
    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Key names in the footer and help.
    pub fn key(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    pub fn error(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
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
        if self.color {
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// Border of the focused pane.
    pub fn border(&self) -> Style {
        self.fg(Color::Gray)
    }

    pub fn state(&self, s: QueueState) -> Style {
        match s {
            QueueState::Disabled => self.dim(),
            QueueState::Emulated => self.fg(Color::Blue),
            QueueState::Hardware => self.ok(),
            QueueState::Error => self.error(),
        }
    }

    /// Colour of a probe attach status.
    pub fn probe(&self, status: &str) -> Style {
        match status {
            "attached" => self.ok(),
            "in-process" => self.fg(Color::Blue),
            "not-requested" => self.dim(),
            "symbol-not-found" | "unsupported" => self.warn(),
            _ => self.error(),
        }
    }

    /// Histogram and sparkline bars.
    pub fn bar(&self) -> Style {
        self.fg(Color::Cyan)
    }
}
