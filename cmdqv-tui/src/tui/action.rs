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

    /// The tab's label: `1 Queues`.
    pub fn tab_title(self) -> String {
        format!("{} {}", self.index() + 1, self.title())
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
    /// Mark (or unmark) the selected queue for the compare view.
    ToggleMark,
    /// Compare the two marked queues (or the marked one with the selected one).
    OpenCompare,
}

/// Every action with the name the config file's `[keys]` table gives it.
pub const ACTION_NAMES: [(Action, &str); 28] = [
    (Action::Quit, "quit"),
    (Action::ToggleHelp, "help"),
    (Action::Back, "back"),
    (Action::NextView, "next_view"),
    (Action::PrevView, "prev_view"),
    (Action::Show(View::Queues), "show_queues"),
    (Action::Show(View::Log), "show_log"),
    (Action::Show(View::Probes), "show_probes"),
    (Action::TogglePause, "pause"),
    (Action::RateUp, "faster"),
    (Action::RateDown, "slower"),
    (Action::ToggleRecording, "record"),
    (Action::Up, "up"),
    (Action::Down, "down"),
    (Action::PageUp, "page_up"),
    (Action::PageDown, "page_down"),
    (Action::Top, "top"),
    (Action::Bottom, "bottom"),
    (Action::StartFilter, "filter"),
    (Action::SortNext, "sort_next"),
    (Action::SortReverse, "sort_reverse"),
    (Action::OpenDetail, "open_detail"),
    (Action::ToggleFollow, "follow"),
    (Action::FilterApply, "filter_apply"),
    (Action::FilterCancel, "filter_cancel"),
    (Action::FilterBackspace, "filter_backspace"),
    (Action::ToggleMark, "mark"),
    (Action::OpenCompare, "compare"),
];

impl Action {
    /// The action's name in the config file (`sort_next`).
    pub fn name(self) -> &'static str {
        ACTION_NAMES
            .iter()
            .find(|a| a.0 == self)
            .map_or("?", |a| a.1)
    }

    /// The action a config file name stands for.
    pub fn from_name(name: &str) -> Option<Action> {
        ACTION_NAMES.iter().find(|a| a.1 == name).map(|a| a.0)
    }

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
