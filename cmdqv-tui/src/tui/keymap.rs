//! Every key binding, as data. Dispatch ([`lookup`]), the footer hints ([`hints`]) and the `?` help
//! ([`help_lines`]) are all generated from [`KEYMAP`], so they cannot disagree. A [`Keymap`] is
//! [`KEYMAP`] with the config file's overrides applied; the app dispatches, hints and helps from
//! it the same way.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use super::action::Action;
use super::action::View;

/// Where a binding applies. The app asks for a stack of contexts, most specific first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    /// Everywhere except while typing a filter.
    Global,
    /// Any list view (queue table, log, probes).
    List,
    /// The VCMDQ table.
    Queues,
    /// The event log.
    Log,
    /// The detail view of one queue.
    Detail,
    /// Two queues compared.
    Compare,
    /// The help popup.
    Help,
    /// Typing a filter (other printable keys are inserted into the filter text).
    Filter,
}

impl Context {
    /// Heading of this context in the help popup.
    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Global",
            Context::List => "Lists",
            Context::Queues => "Queue table",
            Context::Log => "Event log",
            Context::Detail => "Queue detail",
            Context::Compare => "Compare view",
            Context::Help => "Help",
            Context::Filter => "Filter input",
        }
    }

    /// Order of the sections in the help popup.
    pub const ALL: [Context; 8] = [
        Context::Global,
        Context::List,
        Context::Queues,
        Context::Log,
        Context::Detail,
        Context::Compare,
        Context::Filter,
        Context::Help,
    ];
}

/// One physical key: a code plus the modifiers that matter (Ctrl, Alt).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

const fn k(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

const fn c(ch: char) -> Key {
    k(KeyCode::Char(ch))
}

const fn ctrl(ch: char) -> Key {
    Key {
        code: KeyCode::Char(ch),
        mods: KeyModifiers::CONTROL,
    }
}

impl Key {
    /// How the key is written in the footer and the help: `q`, `Ctrl-C`, `space`, `↑`, `PgUp`.
    pub fn name(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "space".to_string(),
            KeyCode::Char(c) if self.mods.contains(KeyModifiers::CONTROL) => {
                c.to_ascii_uppercase().to_string()
            }
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::BackTab => "Shift-Tab".into(),
            other => other.to_string(),
        };
        let mut name = String::new();
        if self.mods.contains(KeyModifiers::CONTROL) {
            name.push_str("Ctrl-");
        }
        if self.mods.contains(KeyModifiers::ALT) {
            name.push_str("Alt-");
        }
        name + &base
    }

    /// A key as [`Key::name`] writes it (`q`, `Ctrl-C`, `space`, `↑` or `Up`, `PgUp`, `F5`).
    pub fn parse(s: &str) -> Result<Key, String> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            if let Some(r) = rest
                .strip_prefix("Ctrl-")
                .or_else(|| rest.strip_prefix("ctrl-"))
            {
                mods |= KeyModifiers::CONTROL;
                rest = r;
            } else if let Some(r) = rest
                .strip_prefix("Alt-")
                .or_else(|| rest.strip_prefix("alt-"))
            {
                mods |= KeyModifiers::ALT;
                rest = r;
            } else {
                break;
            }
        }
        let code = key_code(rest).ok_or_else(|| {
            format!("unknown key `{s}` (a character, space, Enter, Esc, Tab, Shift-Tab, Backspace, ↑ ↓ ← →, Up, Down, Left, Right, PgUp, PgDn, Home, End, Delete, Insert, F1-F12; Ctrl- and Alt- before one)")
        })?;
        let code = match code {
            // Control letters are stored lower-case, as `ctrl('c')` does.
            KeyCode::Char(c) if mods.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            c => c,
        };
        Ok(Key { code, mods })
    }

    /// Does a terminal key event match this key? Shift is ignored (it is part of the character:
    /// `S`, `?`, `+`), Ctrl and Alt must match.
    pub fn matches(&self, ev: &KeyEvent) -> bool {
        let relevant = KeyModifiers::CONTROL | KeyModifiers::ALT;
        let same_code = match (self.code, ev.code) {
            (KeyCode::Char(a), KeyCode::Char(b)) if self.mods.contains(KeyModifiers::CONTROL) => {
                a.eq_ignore_ascii_case(&b)
            }
            (a, b) => a == b,
        };
        same_code && (ev.modifiers & relevant) == (self.mods & relevant)
    }
}

/// The key code a name stands for (no modifiers).
fn key_code(s: &str) -> Option<KeyCode> {
    let mut chars = s.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Some(match c {
            '↑' => KeyCode::Up,
            '↓' => KeyCode::Down,
            '←' => KeyCode::Left,
            '→' => KeyCode::Right,
            c => KeyCode::Char(c),
        });
    }
    if let Some(n) = s.strip_prefix('F').and_then(|n| n.parse::<u8>().ok()) {
        return (1..=12).contains(&n).then_some(KeyCode::F(n));
    }
    Some(match s.to_ascii_lowercase().as_str() {
        "space" => KeyCode::Char(' '),
        "enter" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "shift-tab" | "backtab" => KeyCode::BackTab,
        "backspace" => KeyCode::Backspace,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pgup" | "pageup" => KeyCode::PageUp,
        "pgdn" | "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "delete" | "del" => KeyCode::Delete,
        "insert" | "ins" => KeyCode::Insert,
        _ => return None,
    })
}

/// One binding: keys, what they do, where, and how they are described.
#[derive(Copy, Clone, Debug)]
pub struct Binding {
    pub context: Context,
    pub keys: &'static [Key],
    pub action: Action,
    /// One line in the `?` help.
    pub help: &'static str,
    /// Short word in the footer; `None` keeps the binding out of the footer.
    pub hint: Option<&'static str>,
}

impl Binding {
    /// The keys as written in the footer and the help, generated from [`Binding::keys`].
    pub fn label(&self) -> String {
        self.keys
            .iter()
            .map(Key::name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

const fn b(
    context: Context,
    keys: &'static [Key],
    action: Action,
    help: &'static str,
    hint: Option<&'static str>,
) -> Binding {
    Binding {
        context,
        keys,
        action,
        help,
        hint,
    }
}

use Context as X;
use KeyCode as K;

/// The whole keymap. Within a context the first match wins; contexts are searched most specific
/// first (see [`lookup`]). Footer hints appear in this order.
#[rustfmt::skip]
pub static KEYMAP: &[Binding] = &[
    // Filter input (typing mode).
    b(X::Filter, &[k(K::Enter)], Action::FilterApply, "keep the filter", Some("apply")),
    b(X::Filter, &[k(K::Esc)], Action::FilterCancel, "clear the filter", Some("cancel")),
    b(X::Filter, &[k(K::Backspace)], Action::FilterBackspace, "delete the last character", None),
    // Help popup.
    b(X::Help, &[k(K::Esc)], Action::Back, "close the help", Some("close")),
    b(X::Help, &[c('?')], Action::ToggleHelp, "close the help", None),
    // Detail view.
    b(X::Detail, &[k(K::Esc)], Action::Back, "close the detail view", Some("close")),
    b(X::Detail, &[k(K::Up), c('k')], Action::Up, "previous queue", Some("prev")),
    b(X::Detail, &[k(K::Down), c('j')], Action::Down, "next queue", Some("next")),
    // Compare view.
    b(X::Compare, &[k(K::Esc)], Action::Back, "close the comparison", Some("close")),
    // Queue table.
    b(X::Queues, &[k(K::Enter)], Action::OpenDetail, "open the queue's detail", Some("detail")),
    b(X::Queues, &[c('s')], Action::SortNext, "sort by the next column", Some("sort")),
    b(X::Queues, &[c('S')], Action::SortReverse, "reverse the sort order", Some("reverse")),
    b(X::Queues, &[c('m')], Action::ToggleMark, "mark / unmark to compare (2)", Some("mark")),
    b(X::Queues, &[c('c')], Action::OpenCompare, "compare the marked queues", Some("compare")),
    // Event log.
    b(X::Log, &[c('f')], Action::ToggleFollow, "follow new lines on/off", Some("follow")),
    // Any list.
    b(X::List, &[k(K::Up), c('k')], Action::Up, "move up", None),
    b(X::List, &[k(K::Down), c('j')], Action::Down, "move down", None),
    b(X::List, &[k(K::PageUp)], Action::PageUp, "page up (scroll back)", None),
    b(X::List, &[k(K::PageDown)], Action::PageDown, "page down", None),
    b(X::List, &[k(K::Home), c('g')], Action::Top, "go to the top", None),
    b(X::List, &[k(K::End), c('G')], Action::Bottom, "to the end (log: follow)", None),
    b(X::List, &[c('/')], Action::StartFilter, "filter the list", Some("filter")),
    // Global.
    b(X::Global, &[c(' ')], Action::TogglePause, "pause / resume collection", Some("pause")),
    b(X::Global, &[c('+'), c('=')], Action::RateUp, "faster refresh", Some("faster")),
    b(X::Global, &[c('-')], Action::RateDown, "slower refresh", Some("slower")),
    b(X::Global, &[c('r')], Action::ToggleRecording, "start / stop recording", Some("rec")),
    b(X::Global, &[k(K::Tab)], Action::NextView, "next view", Some("view")),
    b(X::Global, &[k(K::BackTab)], Action::PrevView, "previous view", None),
    b(X::Global, &[c('1')], Action::Show(View::Queues), "queue view", None),
    b(X::Global, &[c('2')], Action::Show(View::Log), "log view", None),
    b(X::Global, &[c('3')], Action::Show(View::Probes), "probes view", None),
    b(X::Global, &[k(K::Esc)], Action::Back, "close popup / clear filter", None),
    b(X::Global, &[c('q')], Action::Quit, "quit", Some("quit")),
    b(X::Global, &[ctrl('c')], Action::Quit, "quit", None),
    b(X::Global, &[c('?')], Action::ToggleHelp, "this help", Some("help")),
];

/// The action bound to `key` in the first of `contexts` that binds it.
pub fn lookup(contexts: &[Context], key: &KeyEvent) -> Option<Action> {
    Keymap::default().lookup(contexts, key)
}

/// Footer hints `(first key, word)` for a context stack, most specific first, without
/// duplicates.
pub fn hints(contexts: &[Context]) -> Vec<(String, &'static str)> {
    Keymap::default().hints(contexts)
}

/// The help text: per context a heading, then one `(keys, description)` line per binding.
/// A heading is a line with an empty description and `is_heading` set.
pub fn help_lines() -> Vec<HelpLine> {
    Keymap::default().help_lines()
}

/// The help lines of the bindings, then the mouse and the column legend.
fn help_lines_of(entries: &[Entry]) -> Vec<HelpLine> {
    let mut out = Vec::new();
    for cx in Context::ALL {
        let mut first = true;
        for e in entries.iter().filter(|e| e.b.context == cx) {
            if first {
                out.push(HelpLine {
                    keys: cx.title().to_string(),
                    text: "",
                    is_heading: true,
                });
                first = false;
            }
            out.push(HelpLine {
                keys: e.label(),
                text: e.b.help,
                is_heading: false,
            });
        }
    }
    push_section(&mut out, "Mouse (off: --no-mouse)", MOUSE);
    push_section(&mut out, "Queue table columns", LEGEND);
    out
}

/// What the mouse does (shown in the help after the keys).
pub const MOUSE: &[(&str, &str)] = &[
    ("click", "select a row; a tab"),
    ("click again", "open the selected row"),
    ("click header", "sort by it; again: reverse"),
    ("wheel", "scroll the table or the log"),
];

/// Actions whose keys are replaced, with their new keys (the config file's `[keys]`).
pub type Overrides = Vec<(Action, Vec<Key>)>;

/// [`KEYMAP`] with some actions' keys replaced (the config file's `[keys]`).
#[derive(Clone, Debug)]
pub struct Keymap {
    entries: Vec<Entry>,
}

/// A binding of [`KEYMAP`] with the keys it has in this keymap.
#[derive(Clone, Debug)]
struct Entry {
    b: &'static Binding,
    keys: Vec<Key>,
}

impl Entry {
    fn label(&self) -> String {
        self.keys
            .iter()
            .map(Key::name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Default for Keymap {
    fn default() -> Self {
        Self::with_overrides(&[])
    }
}

impl Keymap {
    /// The default keymap with each `(action, keys)` applied: in every context that binds the
    /// action, its first binding gets `keys` and any further one in that context goes.
    pub fn with_overrides(overrides: &[(Action, Vec<Key>)]) -> Self {
        let mut entries: Vec<Entry> = Vec::with_capacity(KEYMAP.len());
        for b in KEYMAP {
            let keys = match overrides.iter().find(|o| o.0 == b.action) {
                None => b.keys.to_vec(),
                Some(_)
                    if entries
                        .iter()
                        .any(|e| e.b.context == b.context && e.b.action == b.action) =>
                {
                    continue;
                }
                Some((_, keys)) => keys.clone(),
            };
            entries.push(Entry { b, keys });
        }
        Self { entries }
    }

    /// A key bound to two different actions in one context: `(key, first, second)`.
    pub fn conflict(&self) -> Option<(Key, Action, Action)> {
        let all = self
            .entries
            .iter()
            .flat_map(|e| e.keys.iter().map(move |k| (e.b, *k)));
        for (i, (a, ka)) in all.clone().enumerate() {
            let clash = all
                .clone()
                .skip(i + 1)
                .find(|(b, kb)| b.context == a.context && *kb == ka && b.action != a.action);
            if let Some((b, _)) = clash {
                return Some((ka, a.action, b.action));
            }
        }
        None
    }

    /// The action bound to `key` in the first of `contexts` that binds it.
    pub fn lookup(&self, contexts: &[Context], key: &KeyEvent) -> Option<Action> {
        contexts.iter().find_map(|&cx| {
            self.entries
                .iter()
                .filter(|e| e.b.context == cx)
                .find(|e| e.keys.iter().any(|k| k.matches(key)))
                .map(|e| e.b.action)
        })
    }

    /// Footer hints `(first key, word)` for a context stack, most specific first, without
    /// duplicates.
    pub fn hints(&self, contexts: &[Context]) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = Vec::new();
        let mut seen: Vec<Action> = Vec::new();
        for &cx in contexts {
            for e in self.entries.iter().filter(|e| e.b.context == cx) {
                if let (Some(h), Some(k)) = (e.b.hint, e.keys.first()) {
                    if !seen.contains(&e.b.action) {
                        seen.push(e.b.action);
                        out.push((k.name(), h));
                    }
                }
            }
        }
        out
    }

    /// The help text: per context a heading, then one `(keys, description)` line per binding.
    pub fn help_lines(&self) -> Vec<HelpLine> {
        help_lines_of(&self.entries)
    }
}

/// How the queue table writes what is not plain text (shown after the keys in the help).
pub const LEGEND: &[(&str, &str)] = &[
    ("PROD CONS", "hex index; ` w`: wrap bit on"),
    ("CERR", "CONS.ERR: ILL ABT ATC IAC"),
    ("ERR", "errors; raw registers: detail"),
];

/// A heading and its `(keys, text)` lines.
fn push_section(out: &mut Vec<HelpLine>, title: &str, lines: &[(&str, &'static str)]) {
    out.push(HelpLine {
        keys: title.to_string(),
        text: "",
        is_heading: true,
    });
    out.extend(lines.iter().map(|&(keys, text)| HelpLine {
        keys: keys.to_string(),
        text,
        is_heading: false,
    }));
}

/// One line of the generated help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelpLine {
    pub keys: String,
    pub text: &'static str,
    pub is_heading: bool,
}
