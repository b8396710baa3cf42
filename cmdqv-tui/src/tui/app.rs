//! The UI at the top: the panes composed into one [`App`], the keys dispatched through the
//! keymap to whoever handles the [`Action`], and the frame drawn from the current view model.
//! No terminal here: [`App::draw`] renders into any ratatui [`Frame`], so tests and benches use
//! `TestBackend`.

use cmdqv_core::analysis::{LogLine, QueueSummary, Summary};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::Frame;
use ratatui::layout::Rect;

use super::action::Action;
use super::components::compare::draw_compare;
use super::components::dashboard::draw_dashboard;
use super::components::detail::draw_detail;
use super::components::footer::{FilterInput, draw_footer};
use super::components::header::{Status, draw_header, draw_tabs};
use super::components::help::draw_help;
use super::components::log::LogPane;
use super::components::pane::Pane;
use super::components::probes::ProbeList;
use super::components::queues::QueueTable;
use super::components::screen;
use super::config::Config;
use super::keymap::{Context, Keymap};
use super::model::ViewModel;
use super::model::history::History;
use super::options::{self, MAX_HZ, MIN_HZ, TuiOptions};
use super::source::Control;
use super::theme::Theme;

// Where these two were defined before they moved down the pyramid; the paths still work.
pub use super::action::View;
pub use super::model::queues::SortColumn;

/// All the state of the live UI.
pub struct App {
    theme: Theme,
    refresh_hz: u32,
    paused: bool,
    recording: Option<String>,
    finished: bool,
    /// The snapshot on screen, ready to render (`None` before the first one).
    model: Option<ViewModel>,
    view: View,
    help: bool,
    /// Typing a filter for the current view.
    editing_filter: bool,
    quit: bool,
    queues: QueueTable,
    log: LogPane,
    probes: ProbeList,
    /// The two queues the compare view shows, while it is open.
    compare: Option<[String; 2]>,
    /// Per-interval points of every queue, for the charts (outlives the snapshots).
    history: History,
    /// The default keymap with the config file's overrides.
    keymap: Keymap,
    /// Mouse events are acted on (capture is on); without capture the terminal may still pass
    /// mouse-like bytes through, and they must do nothing.
    mouse: bool,
    /// The tab line and the body as last drawn (mouse hit-testing).
    tabs_area: Rect,
    body_area: Rect,
}

/// Rows one wheel notch moves.
const WHEEL_ROWS: usize = 3;

impl App {
    pub fn new(opts: TuiOptions) -> Self {
        Self {
            theme: Theme::new(opts.no_color),
            refresh_hz: opts.refresh_hz.clamp(MIN_HZ, MAX_HZ),
            paused: false,
            recording: None,
            finished: false,
            model: None,
            view: View::Queues,
            help: false,
            editing_filter: false,
            quit: false,
            queues: QueueTable::default(),
            log: LogPane::default(),
            probes: ProbeList::default(),
            compare: None,
            history: History::default(),
            keymap: Keymap::default(),
            mouse: true,
            tabs_area: Rect::default(),
            body_area: Rect::default(),
        }
    }

    /// An app set up as the config file says: first view, columns, theme, keys.
    pub fn with_config(opts: TuiOptions, cfg: &Config) -> Self {
        let no_color = opts.no_color;
        let mut app = Self::new(TuiOptions {
            refresh_hz: opts.refresh_hz,
            no_color,
        });
        app.theme = Theme::with_palette(cfg.theme, no_color);
        app.view = cfg.view;
        app.queues = QueueTable::with_columns(&cfg.columns);
        app.keymap = cfg.keymap();
        app.mouse = cfg.mouse;
        app
    }

    /// The keymap in use (defaults plus the config file's overrides).
    pub fn keymap(&self) -> &Keymap {
        &self.keymap
    }

    /// Take a new snapshot. Ignored while paused (the view stays frozen on what was there).
    pub fn update(&mut self, s: Summary) {
        if self.paused && self.model.is_some() {
            return;
        }
        self.history.observe(&s);
        let old = self.model.take();
        let new = ViewModel::from(s);
        for v in View::ALL {
            self.pane_mut(v).on_snapshot(old.as_ref(), &new);
        }
        self.model = Some(new);
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
        self.model.as_ref().map(ViewModel::summary)
    }

    /// The snapshot on screen with what the panes derived from it.
    pub fn view_model(&self) -> Option<&ViewModel> {
        self.model.as_ref()
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
        self.queues.detail_open()
    }

    /// The two queues being compared, while the compare view is open.
    pub fn compare_open(&self) -> Option<&[String; 2]> {
        self.compare.as_ref()
    }

    /// The queues marked for comparison.
    pub fn marked_queues(&self) -> &[String] {
        self.queues.marked()
    }

    /// The charts' points over time.
    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn editing_filter(&self) -> bool {
        self.editing_filter
    }

    pub fn log_follow(&self) -> bool {
        self.log.follow()
    }

    /// Lines between the bottom of the log view and the newest line (0 when following).
    pub fn log_scroll(&self) -> usize {
        self.log.scroll()
    }

    pub fn sort(&self) -> (SortColumn, bool) {
        self.queues.sort()
    }

    /// Sort the queue table by `col`; `descending` flips the order.
    pub fn set_sort(&mut self, col: SortColumn, descending: bool) {
        self.queues.set_sort(col, descending, self.model.as_ref());
    }

    /// The filter text of a view.
    pub fn filter(&self, v: View) -> &str {
        self.pane(v).filter()
    }

    pub fn set_filter(&mut self, v: View, text: &str) {
        let model = self.model.as_ref();
        pane_of(v, &mut self.queues, &mut self.log, &mut self.probes)
            .set_filter(text.to_string(), model);
    }

    /// Name of the selected queue.
    pub fn selected_queue(&self) -> Option<&str> {
        self.queues.selected()
    }

    /// The queue table as shown: filtered, then sorted (ties broken by name, so it is stable).
    pub fn visible_queues(&self) -> Vec<&QueueSummary> {
        self.queues.visible(self.model.as_ref())
    }

    /// The log as shown (filtered), oldest first.
    pub fn filtered_log(&self) -> Vec<&LogLine> {
        self.log.visible(self.model.as_ref())
    }

    /// The contexts that are live now, most specific first (drives dispatch and the footer).
    pub fn contexts(&self) -> Vec<Context> {
        if self.editing_filter {
            vec![Context::Filter]
        } else if self.help {
            vec![Context::Help, Context::Global]
        } else if self.compare.is_some() {
            vec![Context::Compare, Context::Global]
        } else if self.queues.detail_open() {
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
        let found = self.keymap.lookup(&self.contexts(), key);
        if found.is_none() && self.editing_filter {
            // Ctrl-C still quits while typing.
            if key.modifiers.contains(KeyModifiers::CONTROL) {
                return self.keymap.lookup(&[Context::Global], key);
            }
        }
        found
    }

    /// Handle a key: dispatch through the keymap (or type into the filter), return the control
    /// message the collector must get, if any.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Control> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if let Some(action) = self.action_for(&key) {
            return self.apply(action);
        }
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        if let (true, KeyCode::Char(ch), true) = (self.editing_filter, key.code, plain) {
            self.edit_filter(|text| text.push(ch));
        }
        None
    }

    /// Perform one action; returns the control message for the collector, if any.
    pub fn apply(&mut self, action: Action) -> Option<Control> {
        match action {
            Action::Quit => {
                self.quit = true;
                Some(Control::Quit)
            }
            Action::TogglePause => {
                self.paused = !self.paused;
                Some(Control::Pause(self.paused))
            }
            Action::RateUp => self.set_rate(options::faster(self.refresh_hz)),
            Action::RateDown => self.set_rate(options::slower(self.refresh_hz)),
            Action::ToggleRecording => Some(Control::ToggleRecording),
            _ => {
                self.apply_in_ui(action);
                None
            }
        }
    }

    /// The actions that change only the UI (views, popups, filters, the panes).
    fn apply_in_ui(&mut self, action: Action) {
        let model = self.model.as_ref();
        match action {
            Action::ToggleHelp => self.help = !self.help,
            Action::Back => self.back(),
            Action::NextView => self.show(self.view.next()),
            Action::PrevView => self.show(self.view.prev()),
            Action::Show(v) => self.show(v),
            Action::StartFilter => self.editing_filter = true,
            Action::FilterApply => self.editing_filter = false,
            Action::FilterCancel => {
                self.editing_filter = false;
                self.set_filter(self.view, "");
            }
            Action::FilterBackspace => self.edit_filter(|text| {
                text.pop();
            }),
            // The panes' own actions go to their pane, whichever view is shown.
            Action::SortNext | Action::SortReverse | Action::OpenDetail | Action::ToggleMark => {
                self.queues.handle(action, model)
            }
            Action::OpenCompare => self.compare = self.queues.compare_pair(),
            Action::ToggleFollow => self.log.handle(action, model),
            Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom => {
                // In the detail view the arrows go to the next queue.
                let v = if self.queues.detail_open() {
                    View::Queues
                } else {
                    self.view
                };
                pane_of(v, &mut self.queues, &mut self.log, &mut self.probes).handle(action, model);
            }
            // `apply` sends these to the collector.
            Action::Quit
            | Action::TogglePause
            | Action::RateUp
            | Action::RateDown
            | Action::ToggleRecording => {}
        }
    }

    /// Handle a mouse event: a left click on a tab shows it, on the queue table's header sorts
    /// (again: reverses), on a row selects it and on the selected row opens its detail; the
    /// wheel moves through the table, the log or the probes. Returns whether anything changed
    /// (the frame is then redrawn at once).
    pub fn on_mouse(&mut self, ev: MouseEvent) -> bool {
        if !self.mouse {
            return false;
        }
        let (x, y) = (ev.column, ev.row);
        match ev.kind {
            MouseEventKind::Down(MouseButton::Left) => self.click(x, y),
            MouseEventKind::ScrollUp => self.wheel(Action::Up, x, y),
            MouseEventKind::ScrollDown => self.wheel(Action::Down, x, y),
            _ => false,
        }
    }

    fn click(&mut self, x: u16, y: u16) -> bool {
        if self.help {
            self.help = false;
            return true;
        }
        if self.tabs_area.contains((x, y).into()) {
            return match tab_at(self.tabs_area, x) {
                Some(v) => {
                    self.show(v);
                    true
                }
                None => false,
            };
        }
        if self.compare.is_some() || self.queues.detail_open() || self.view != View::Queues {
            return false;
        }
        self.queues.click(x, y, self.model.as_ref())
    }

    /// One wheel notch over `(x, y)`: `step` is [`Action::Up`] or [`Action::Down`].
    fn wheel(&mut self, step: Action, x: u16, y: u16) -> bool {
        if self.help || self.compare.is_some() || !self.body_area.contains((x, y).into()) {
            return false;
        }
        let model = self.model.as_ref();
        // The detail view goes to the previous or next queue, one per notch, as ↑/↓ do there.
        let (v, n) = if self.queues.detail_open() {
            (View::Queues, 1)
        } else if self.view == View::Queues && !self.queues.geom().contains(x, y) {
            // Under the table the dashboard shows the log's newest lines: nothing to scroll.
            return false;
        } else {
            (self.view, WHEEL_ROWS)
        };
        let pane = pane_of(v, &mut self.queues, &mut self.log, &mut self.probes);
        for _ in 0..n {
            pane.handle(step, model);
        }
        true
    }

    fn set_rate(&mut self, hz: u32) -> Option<Control> {
        (hz != self.refresh_hz).then(|| {
            self.refresh_hz = hz;
            Control::RefreshHz(hz)
        })
    }

    /// Esc: close the topmost popup, or clear the filter.
    fn back(&mut self) {
        if self.help {
            self.help = false;
        } else if self.compare.is_some() {
            self.compare = None;
        } else if self.queues.detail_open() {
            self.queues.close_detail();
        } else {
            self.set_filter(self.view, "");
        }
    }

    fn show(&mut self, v: View) {
        self.view = v;
        self.compare = None;
        self.queues.close_detail();
        self.editing_filter = false;
    }

    /// Change the current view's filter text through `edit`.
    fn edit_filter(&mut self, edit: impl FnOnce(&mut String)) {
        let mut text = self.filter(self.view).to_string();
        edit(&mut text);
        self.set_filter(self.view, &text);
    }

    fn pane(&self, v: View) -> &dyn Pane {
        match v {
            View::Queues => &self.queues,
            View::Log => &self.log,
            View::Probes => &self.probes,
        }
    }

    fn pane_mut(&mut self, v: View) -> &mut dyn Pane {
        pane_of(v, &mut self.queues, &mut self.log, &mut self.probes)
    }

    /// Render the whole UI into `f`.
    pub fn draw(&mut self, f: &mut Frame) {
        let area = f.area();
        if !screen::fits(area) {
            screen::too_small(&self.theme, f, area);
            return;
        }
        let [header, tabs, body, footer] = screen::bands(area);
        self.tabs_area = tabs;
        self.body_area = body;
        let status = Status {
            paused: self.paused,
            finished: self.finished,
            recording: self.recording.as_deref(),
            refresh_hz: self.refresh_hz,
        };
        draw_header(&status, self.model.as_ref(), &self.theme, f, header);
        self.draw_tabs(f, tabs);
        self.draw_body(f, body);
        let pane = self.pane(self.view);
        let input = self.editing_filter.then(|| FilterInput {
            text: pane.filter(),
            hint: pane.filter_hint(),
        });
        draw_footer(
            input,
            &self.keymap,
            &self.contexts(),
            &self.theme,
            f,
            footer,
        );
        if self.help {
            draw_help(&self.keymap, &self.theme, f, area);
        }
    }

    fn draw_tabs(&self, f: &mut Frame, area: Rect) {
        let pane = self.pane(self.view);
        let filter = pane.filter();
        let shown = (!filter.is_empty() || self.editing_filter).then_some(filter);
        let status = match &self.model {
            Some(m) => pane.status(m, &self.theme),
            None => Vec::new(),
        };
        draw_tabs(self.view, shown, status, &self.theme, f, area);
    }

    fn draw_body(&mut self, f: &mut Frame, area: Rect) {
        let t = &self.theme;
        let Some(model) = &self.model else {
            screen::waiting(t, f, area);
            return;
        };
        if let Some(names) = &self.compare {
            draw_compare(names, model, t, f, area);
            return;
        }
        if self.queues.detail_open() {
            let q = self.queues.selected_queue(model);
            let h = self.queues.selected().and_then(|n| self.history.queue(n));
            let now = model.summary().elapsed_s;
            draw_detail(self.queues.selected(), q, (h, now), t, f, area);
            return;
        }
        match self.view {
            View::Queues => draw_dashboard(&mut self.queues, &self.log, model, t, f, area),
            View::Log => self.log.render(model, t, f, area),
            View::Probes => self.probes.render(model, t, f, area),
        }
    }
}

/// The tab under column `x` of the tab line: each title is drawn padded by a space on both
/// sides, then a one-column divider (ratatui's `Tabs` defaults).
fn tab_at(tabs: Rect, x: u16) -> Option<View> {
    let mut start = tabs.x;
    for v in View::ALL {
        let end = start + v.tab_title().chars().count() as u16 + 2;
        if (start..end).contains(&x) {
            return Some(v);
        }
        start = end + 1;
    }
    None
}

/// The pane of view `v`, borrowed apart from the rest of the app so the view model can be
/// passed to it at the same time.
fn pane_of<'a>(
    v: View,
    queues: &'a mut QueueTable,
    log: &'a mut LogPane,
    probes: &'a mut ProbeList,
) -> &'a mut dyn Pane {
    match v {
        View::Queues => queues,
        View::Log => log,
        View::Probes => probes,
    }
}
