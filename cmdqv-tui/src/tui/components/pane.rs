//! What the three list panes (queue table, event log, probes) have in common, so the app can
//! route the shared actions — the filter, moving, a new snapshot, the tab-line status — to
//! whichever pane has the focus without knowing which one it is.

use ratatui::text::Span;

use crate::tui::action::Action;
use crate::tui::model::ViewModel;
use crate::tui::theme::Theme;

pub trait Pane {
    /// The pane's filter text.
    fn filter(&self) -> &str;
    /// Replace the filter and re-select the rows (`model` is `None` before the first snapshot).
    fn set_filter(&mut self, text: String, model: Option<&ViewModel>);
    /// `new` replaced `old`: rebuild the rows and keep the user's place.
    fn on_snapshot(&mut self, old: Option<&ViewModel>, new: &ViewModel);
    /// Do what `action` asks of this pane: move the selection or scroll ([`Action::rows`]),
    /// and the pane's own actions (sort, follow, open the detail). Others are ignored.
    fn handle(&mut self, action: Action, model: Option<&ViewModel>);
    /// What the filter matches, shown after the filter being typed.
    fn filter_hint(&self) -> &'static str;
    /// The pane's status at the right of the tab line.
    fn status(&self, model: &ViewModel, t: &Theme) -> Vec<Span<'static>>;
}
