//! The UI state and what every [`Action`] does to it. No terminal here: [`App::draw`] renders
//! into any ratatui [`Frame`], so tests and benches use `TestBackend`.

use std::cmp::Ordering;

use cmdqv_core::analysis::{LogLine, ProbeStatus, QueueState, QueueSummary, Summary};
use crossterm::event::KeyEvent;
use ratatui::Frame;

use super::keymap::{self, Action, Context};
use super::theme::Theme;
use super::{Control, MAX_HZ, MIN_HZ, TuiOptions};

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

    fn index(self) -> usize {
        match self {
            View::Queues => 0,
            View::Log => 1,
            View::Probes => 2,
        }
    }
}

/// Columns of the VCMDQ table the user can sort by (`s` cycles, `S` reverses).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortColumn {
    #[default]
    Id,
    Name,
    Vintf,
    State,
    Size,
    Prod,
    Cons,
    Occupancy,
    CmdRate,
    SyncRate,
    P50,
    P99,
    Max,
    Batch,
    Commands,
    Errors,
}

impl SortColumn {
    pub const ALL: [SortColumn; 16] = [
        SortColumn::Id,
        SortColumn::Name,
        SortColumn::Vintf,
        SortColumn::State,
        SortColumn::Size,
        SortColumn::Prod,
        SortColumn::Cons,
        SortColumn::Occupancy,
        SortColumn::CmdRate,
        SortColumn::SyncRate,
        SortColumn::P50,
        SortColumn::P99,
        SortColumn::Max,
        SortColumn::Batch,
        SortColumn::Commands,
        SortColumn::Errors,
    ];

    /// The column header (also shown as "sort: …").
    pub fn title(self) -> &'static str {
        match self {
            SortColumn::Id => "ID",
            SortColumn::Name => "NAME",
            SortColumn::Vintf => "VI/LQ",
            SortColumn::State => "STATE",
            SortColumn::Size => "SIZE",
            SortColumn::Prod => "PROD",
            SortColumn::Cons => "CONS",
            SortColumn::Occupancy => "OCC",
            SortColumn::CmdRate => "CMD/s",
            SortColumn::SyncRate => "SYNC/s",
            SortColumn::P50 => "p50",
            SortColumn::P99 => "p99",
            SortColumn::Max => "MAX",
            SortColumn::Batch => "BATCH",
            SortColumn::Commands => "CMDS",
            SortColumn::Errors => "ERR",
        }
    }

    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Columns where "bigger first" is the useful default direction.
    fn descending_by_default(self) -> bool {
        !matches!(
            self,
            SortColumn::Id | SortColumn::Name | SortColumn::Vintf | SortColumn::State
        )
    }

    /// Compare two queues by this column (ascending).
    pub fn compare(self, a: &QueueSummary, b: &QueueSummary) -> Ordering {
        let f = |x: f64, y: f64| x.total_cmp(&y);
        match self {
            // The SMMU's own queue (no global id) sorts first.
            SortColumn::Id => a.global_id.cmp(&b.global_id),
            SortColumn::Name => a.name.cmp(&b.name),
            SortColumn::Vintf => (a.vintf, a.lvcmdq).cmp(&(b.vintf, b.lvcmdq)),
            SortColumn::State => state_rank(a.state).cmp(&state_rank(b.state)),
            SortColumn::Size => a.log2size.cmp(&b.log2size),
            SortColumn::Prod => a.prod.cmp(&b.prod),
            SortColumn::Cons => a.cons.cmp(&b.cons),
            SortColumn::Occupancy => f(a.occupancy, b.occupancy),
            SortColumn::CmdRate => f(a.commands_per_s, b.commands_per_s),
            SortColumn::SyncRate => f(a.syncs_per_s, b.syncs_per_s),
            SortColumn::P50 => a.batch_latency_ns.p50.cmp(&b.batch_latency_ns.p50),
            SortColumn::P99 => a.batch_latency_ns.p99.cmp(&b.batch_latency_ns.p99),
            SortColumn::Max => a.batch_latency_ns.max.cmp(&b.batch_latency_ns.max),
            SortColumn::Batch => f(a.mean_batch_size, b.mean_batch_size),
            SortColumn::Commands => a.commands.cmp(&b.commands),
            SortColumn::Errors => a.errors.cmp(&b.errors),
        }
    }
}

fn state_rank(s: QueueState) -> u8 {
    match s {
        QueueState::Error => 0,
        QueueState::Hardware => 1,
        QueueState::Emulated => 2,
        QueueState::Disabled => 3,
    }
}

/// How a queue state is written in the table (colour is never the only cue).
pub fn state_label(s: QueueState) -> &'static str {
    match s {
        QueueState::Disabled => "disabled",
        QueueState::Emulated => "emulated",
        QueueState::Hardware => "hardware",
        QueueState::Error => "error",
    }
}

/// Does a queue match a filter? Case-insensitive substring of its name or state
/// (`hw`/`hardware-backed` also match hardware-backed queues).
pub fn queue_matches(q: &QueueSummary, filter: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    let long = match q.state {
        QueueState::Hardware => "hardware-backed hw",
        QueueState::Emulated => "emulated",
        QueueState::Disabled => "disabled",
        QueueState::Error => "error",
    };
    q.name.to_lowercase().contains(&f) || long.contains(&f)
}

/// Does a log line match a filter? Case-insensitive substring of its kind or text.
pub fn log_matches(l: &LogLine, filter: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    l.kind.to_lowercase().contains(&f) || l.text.to_lowercase().contains(&f)
}

/// Does a probe match a filter? Case-insensitive substring of its name, status or reason.
pub fn probe_matches(p: &ProbeStatus, filter: &str) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    [&p.name, &p.status, &p.reason]
        .iter()
        .any(|s| s.to_lowercase().contains(&f))
}

/// Steps of the refresh rate for `+` / `-`.
const RATES: [u32; 8] = [1, 2, 5, 10, 15, 20, 30, 60];

/// All the state of the live UI.
pub struct App {
    pub(super) theme: Theme,
    pub(super) refresh_hz: u32,
    pub(super) paused: bool,
    pub(super) recording: Option<String>,
    pub(super) finished: bool,
    pub(super) summary: Option<Summary>,
    pub(super) view: View,
    pub(super) help: bool,
    pub(super) detail: bool,
    pub(super) sort: SortColumn,
    pub(super) sort_desc: bool,
    /// Filter text per view (queues, log, probes).
    pub(super) filters: [String; 3],
    /// Typing a filter for the current view.
    pub(super) editing_filter: bool,
    /// Selected queue, by name, so it survives re-sorting and new snapshots.
    pub(super) selected: Option<String>,
    pub(super) log_follow: bool,
    /// Log lines between the bottom of the log view and the end of the (filtered) log.
    pub(super) log_from_bottom: usize,
    pub(super) probe_sel: usize,
    /// First visible row of the queue table and probe table (kept across frames).
    pub(super) queue_offset: usize,
    pub(super) probe_offset: usize,
    /// Rows of the current list as last drawn (for PgUp/PgDn).
    pub(super) page_rows: usize,
    quit: bool,
}

impl App {
    pub fn new(opts: TuiOptions) -> Self {
        Self {
            theme: Theme::new(opts.no_color),
            refresh_hz: opts.refresh_hz.clamp(MIN_HZ, MAX_HZ),
            paused: false,
            recording: None,
            finished: false,
            summary: None,
            view: View::Queues,
            help: false,
            detail: false,
            sort: SortColumn::Id,
            sort_desc: false,
            filters: Default::default(),
            editing_filter: false,
            selected: None,
            log_follow: true,
            log_from_bottom: 0,
            probe_sel: 0,
            queue_offset: 0,
            probe_offset: 0,
            page_rows: 10,
            quit: false,
        }
    }

    /// Take a new snapshot. Ignored while paused (the view stays frozen on what was there).
    pub fn update(&mut self, s: Summary) {
        if self.paused && self.summary.is_some() {
            return;
        }
        // Keep a scrolled-back log view on the same lines while new ones arrive.
        let anchor = (!self.log_follow)
            .then(|| self.filtered_log().last().map(|l| (*l).clone()))
            .flatten();
        self.summary = Some(s);
        if let Some(anchor) = anchor {
            let lines = self.filtered_log();
            let appended = match lines.iter().rposition(|l| **l == anchor) {
                Some(pos) => lines.len() - 1 - pos,
                None => lines.len(),
            };
            self.log_from_bottom = self.log_from_bottom.saturating_add(appended);
        }
        self.clamp_log_scroll();
        self.fix_selection();
    }

    /// Keep a visible queue selected: the first one when the selection is gone (filtered out,
    /// no longer reported).
    fn fix_selection(&mut self) {
        let visible = self.visible_queues();
        if self.selected_index(&visible).is_none() {
            let first = visible.first().map(|q| q.name.clone());
            // While the detail view is open its queue stays selected even if it vanished.
            if !self.detail || first.is_some() && self.selected.is_none() {
                self.selected = first;
            }
        }
    }

    /// Set the recording indicator (the file being written), or clear it.
    pub fn set_recording(&mut self, r: Option<String>) {
        self.recording = r;
    }

    /// Mark the collector as stopped for good (the header says so).
    pub fn set_finished(&mut self, finished: bool) {
        self.finished = finished;
    }

    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn refresh_hz(&self) -> u32 {
        self.refresh_hz
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    pub fn help_open(&self) -> bool {
        self.help
    }

    pub fn detail_open(&self) -> bool {
        self.detail
    }

    pub fn editing_filter(&self) -> bool {
        self.editing_filter
    }

    pub fn log_follow(&self) -> bool {
        self.log_follow
    }

    /// Lines between the bottom of the log view and the newest line (0 when following).
    pub fn log_scroll(&self) -> usize {
        self.log_from_bottom
    }

    pub fn sort(&self) -> (SortColumn, bool) {
        (self.sort, self.sort_desc)
    }

    /// Sort the queue table by `col`; `descending` flips the order.
    pub fn set_sort(&mut self, col: SortColumn, descending: bool) {
        self.sort = col;
        self.sort_desc = descending;
    }

    /// The filter text of a view.
    pub fn filter(&self, v: View) -> &str {
        &self.filters[v.index()]
    }

    pub fn set_filter(&mut self, v: View, text: &str) {
        self.filters[v.index()] = text.to_string();
        match v {
            View::Log => {
                self.log_from_bottom = 0;
                self.log_follow = true;
            }
            View::Queues => self.fix_selection(),
            View::Probes => self.probe_sel = 0,
        }
    }

    /// Name of the selected queue.
    pub fn selected_queue(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The queue table as shown: filtered, then sorted (ties broken by name, so it is stable).
    pub fn visible_queues(&self) -> Vec<&QueueSummary> {
        let Some(s) = &self.summary else {
            return Vec::new();
        };
        let filter = self.filter(View::Queues);
        let mut v: Vec<&QueueSummary> = s
            .queues
            .iter()
            .filter(|q| queue_matches(q, filter))
            .collect();
        let (col, desc) = (self.sort, self.sort_desc);
        v.sort_by(|a, b| {
            let o = col.compare(a, b);
            let o = if desc { o.reverse() } else { o };
            o.then_with(|| a.name.cmp(&b.name))
        });
        v
    }

    /// The log as shown (filtered), oldest first.
    pub fn filtered_log(&self) -> Vec<&LogLine> {
        let Some(s) = &self.summary else {
            return Vec::new();
        };
        let filter = self.filter(View::Log);
        s.log.iter().filter(|l| log_matches(l, filter)).collect()
    }

    pub(super) fn filtered_probes(&self) -> Vec<&ProbeStatus> {
        let Some(s) = &self.summary else {
            return Vec::new();
        };
        let filter = self.filter(View::Probes);
        s.probes
            .iter()
            .filter(|p| probe_matches(p, filter))
            .collect()
    }

    /// Index of the selected queue in [`visible_queues`](Self::visible_queues).
    pub(super) fn selected_index(&self, visible: &[&QueueSummary]) -> Option<usize> {
        let name = self.selected.as_deref()?;
        visible.iter().position(|q| q.name == name)
    }

    /// The contexts that are live now, most specific first (drives dispatch and the footer).
    pub fn contexts(&self) -> Vec<Context> {
        if self.editing_filter {
            vec![Context::Filter]
        } else if self.help {
            vec![Context::Help, Context::Global]
        } else if self.detail {
            vec![Context::Detail, Context::Global]
        } else {
            match self.view {
                View::Queues => vec![Context::Queues, Context::List, Context::Global],
                View::Log => vec![Context::Log, Context::List, Context::Global],
                View::Probes => vec![Context::List, Context::Global],
            }
        }
    }

    /// What a key would do now, per the keymap.
    pub fn action_for(&self, key: &KeyEvent) -> Option<Action> {
        let found = keymap::lookup(&self.contexts(), key);
        if found.is_none() && self.editing_filter {
            // Ctrl-C still quits while typing.
            let ctrl = key
                .modifiers
                .contains(crossterm::event::KeyModifiers::CONTROL);
            if ctrl {
                return keymap::lookup(&[Context::Global], key);
            }
        }
        found
    }

    /// Handle a key: dispatch through the keymap (or type into the filter), return the control
    /// message the collector must get, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Control> {
        use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if let Some(action) = self.action_for(&key) {
            return self.apply(action);
        }
        if self.editing_filter {
            if let KeyCode::Char(ch) = key.code {
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                {
                    let i = self.view.index();
                    self.filters[i].push(ch);
                    let text = self.filters[i].clone();
                    self.set_filter(self.view, &text);
                }
            }
        }
        None
    }

    /// Perform one action; returns the control message for the collector, if any.
    pub fn apply(&mut self, action: Action) -> Option<Control> {
        match action {
            Action::Quit => {
                self.quit = true;
                return Some(Control::Quit);
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::Back => {
                if self.help {
                    self.help = false;
                } else if self.detail {
                    self.detail = false;
                } else {
                    let v = self.view;
                    self.set_filter(v, "");
                }
            }
            Action::NextView => self.show(View::ALL[(self.view.index() + 1) % 3]),
            Action::PrevView => self.show(View::ALL[(self.view.index() + 2) % 3]),
            Action::Show(v) => self.show(v),
            Action::TogglePause => {
                self.paused = !self.paused;
                return Some(Control::Pause(self.paused));
            }
            Action::RateUp | Action::RateDown => {
                let hz = self.refresh_hz;
                let next = if action == Action::RateUp {
                    RATES.iter().copied().find(|&r| r > hz).unwrap_or(MAX_HZ)
                } else {
                    RATES
                        .iter()
                        .rev()
                        .copied()
                        .find(|&r| r < hz)
                        .unwrap_or(MIN_HZ)
                };
                if next != hz {
                    self.refresh_hz = next;
                    return Some(Control::RefreshHz(next));
                }
            }
            Action::ToggleRecording => return Some(Control::ToggleRecording),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(self.page_rows.max(1) as isize)),
            Action::PageDown => self.move_by(self.page_rows.max(1) as isize),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::StartFilter => self.editing_filter = true,
            Action::SortNext => {
                self.sort = self.sort.next();
                self.sort_desc = self.sort.descending_by_default();
            }
            Action::SortReverse => self.sort_desc = !self.sort_desc,
            Action::OpenDetail => {
                if self.selected.is_some() {
                    self.detail = true;
                }
            }
            Action::ToggleFollow => {
                self.log_follow = !self.log_follow;
                if self.log_follow {
                    self.log_from_bottom = 0;
                }
            }
            Action::FilterApply => self.editing_filter = false,
            Action::FilterCancel => {
                self.editing_filter = false;
                let v = self.view;
                self.set_filter(v, "");
            }
            Action::FilterBackspace => {
                let i = self.view.index();
                self.filters[i].pop();
                let text = self.filters[i].clone();
                self.set_filter(self.view, &text);
            }
        }
        None
    }

    fn show(&mut self, v: View) {
        self.view = v;
        self.detail = false;
        self.editing_filter = false;
    }

    /// Move the selection (queues, probes) or scroll (log) by `delta` rows.
    fn move_by(&mut self, delta: isize) {
        let view = if self.detail { View::Queues } else { self.view };
        match view {
            View::Queues => {
                let visible = self.visible_queues();
                if visible.is_empty() {
                    return;
                }
                let cur = self.selected_index(&visible).unwrap_or(0);
                let next = cur.saturating_add_signed(delta).min(visible.len() - 1);
                self.selected = Some(visible[next].name.clone());
            }
            View::Log => {
                // Positive delta scrolls towards the end.
                let up = delta < 0;
                let n = delta.unsigned_abs();
                let scrollable = self.filtered_log().len() > self.page_rows.max(1);
                if up && !scrollable {
                    // Everything is on screen: nothing to scroll back to, keep following.
                } else if up {
                    self.log_follow = false;
                    self.log_from_bottom = self.log_from_bottom.saturating_add(n);
                } else {
                    self.log_from_bottom = self.log_from_bottom.saturating_sub(n);
                    if self.log_from_bottom == 0 {
                        self.log_follow = true;
                    }
                }
                self.clamp_log_scroll();
            }
            View::Probes => {
                let n = self.filtered_probes().len();
                self.probe_sel = self
                    .probe_sel
                    .saturating_add_signed(delta)
                    .min(n.saturating_sub(1));
            }
        }
    }

    fn clamp_log_scroll(&mut self) {
        let len = self.filtered_log().len();
        let max = len.saturating_sub(self.page_rows.max(1));
        self.log_from_bottom = self.log_from_bottom.min(max);
        if self.log_follow {
            self.log_from_bottom = 0;
        }
    }

    /// Render the whole UI into `f`.
    pub fn draw(&mut self, f: &mut Frame) {
        super::view::draw(self, f);
    }
}
