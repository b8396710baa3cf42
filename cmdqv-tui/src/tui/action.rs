//! The words every layer of the UI shares: which view is shown ([`View`]) and what a key asks
//! for ([`Action`]). This file depends on nothing else in the UI, so the keymap, the panes and
//! the app can all name both without importing one another.

/// The top-level views (tabs).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum View {
    /// Dashboard: VCMDQ table, VINTF/device panel, log tail.
    #[default]
    Queues,
    /// The event log with scrollback.
    Log,
    /// Probe attach status and notes.
    Probes,
}

impl View {
    pub const ALL: [View; 3] = [View::Queues, View::Log, View::Probes];

    pub fn title(self) -> &'static str {
        match self {
            View::Queues => "Queues",
            View::Log => "Log",
            View::Probes => "Probes",
        }
    }

    /// Position in [`View::ALL`] (and in the tab line).
    pub fn index(self) -> usize {
        match self {
            View::Queues => 0,
            View::Log => 1,
            View::Probes => 2,
        }
    }

    /// The tab after this one, wrapping around (Tab).
    pub fn next(self) -> Self {
        Self::ALL[(self.index() + 1) % Self::ALL.len()]
    }

    /// The tab before this one, wrapping around (Shift-Tab).
    pub fn prev(self) -> Self {
        Self::ALL[(self.index() + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// Everything a key can ask the app to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    ToggleHelp,
    /// Close the topmost popup, or clear the active filter.
    Back,
    NextView,
    PrevView,
    Show(View),
    TogglePause,
    RateUp,
    RateDown,
    ToggleRecording,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    StartFilter,
    SortNext,
    SortReverse,
    OpenDetail,
    ToggleFollow,
    FilterApply,
    FilterCancel,
    FilterBackspace,
}

impl Action {
    /// How many rows a moving action goes, on a page of `page` rows (positive: down, towards
    /// the end); `None` for an action that does not move.
    pub fn rows(self, page: usize) -> Option<isize> {
        let page = page.max(1) as isize;
        match self {
            Action::Up => Some(-1),
            Action::Down => Some(1),
            Action::PageUp => Some(-page),
            Action::PageDown => Some(page),
            Action::Top => Some(isize::MIN / 2),
            Action::Bottom => Some(isize::MAX / 2),
            _ => None,
        }
    }
}
