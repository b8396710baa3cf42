//! The config file: `$XDG_CONFIG_HOME/cmdqv/config.toml` (else `~/.config/cmdqv/config.toml`),
//! or the file `--config FILE` names. It sets the first view, the refresh rate, the queue
//! table's columns and their order, the theme, mouse capture and key overrides. A file is taken
//! whole or not at all: anything wrong in it is one [`ConfigError`] naming the file, the line and
//! the key, and cmdqv does not start with half of it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

use super::action::{ACTION_NAMES, Action, View};
use super::keymap::{KEYMAP, Key, Keymap, Overrides};
use super::model::queues::{COLUMN_KEYS, SortColumn};
use super::options::{MAX_HZ, MIN_HZ};
use super::theme::Palette;

/// Everything the config file sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The view shown first.
    pub view: View,
    /// Frames (and snapshots) per second; a `--refresh-hz` flag wins over it.
    pub refresh_hz: u32,
    /// The queue table's columns, in order.
    pub columns: Vec<SortColumn>,
    pub theme: Palette,
    /// Capture the mouse (`--no-mouse` turns it off whatever the file says).
    pub mouse: bool,
    /// Actions whose keys the file replaces.
    pub keys: Overrides,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            view: View::Queues,
            refresh_hz: 10,
            columns: SortColumn::ALL.to_vec(),
            theme: Palette::Dark,
            mouse: true,
            keys: Vec::new(),
        }
    }
}

impl Config {
    /// The keymap: the defaults with this file's overrides.
    pub fn keymap(&self) -> Keymap {
        Keymap::with_overrides(&self.keys)
    }
}

/// A config file cmdqv refuses, with where the fault is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// The key's dotted path (`ui.refresh_hz`), empty when no key is involved.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The file as written; names are checked where they are read, so toml knows their place.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    #[serde(default)]
    ui: UiRepr,
    #[serde(default)]
    queues: QueuesRepr,
    #[serde(default)]
    keys: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct UiRepr {
    #[serde(deserialize_with = "view")]
    view: View,
    #[serde(deserialize_with = "refresh_hz")]
    refresh_hz: u32,
    #[serde(deserialize_with = "palette")]
    theme: Palette,
    mouse: bool,
}

impl Default for UiRepr {
    fn default() -> Self {
        let d = Config::default();
        Self {
            view: d.view,
            refresh_hz: d.refresh_hz,
            theme: d.theme,
            mouse: d.mouse,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QueuesRepr {
    #[serde(deserialize_with = "columns")]
    columns: Vec<SortColumn>,
}

impl Default for QueuesRepr {
    fn default() -> Self {
        Self {
            columns: Config::default().columns,
        }
    }
}

const VIEW_NAMES: [&str; 3] = ["queues", "log", "probes"];
const THEME_NAMES: [&str; 3] = ["dark", "light", "high-contrast"];

/// A string that must be one of `names`; the error lists them.
fn one_of<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [&'static str],
) -> Result<usize, D::Error> {
    let s = String::deserialize(d)?;
    names
        .iter()
        .position(|n| *n == s)
        .ok_or_else(|| D::Error::unknown_variant(&s, names))
}

fn view<'de, D: Deserializer<'de>>(d: D) -> Result<View, D::Error> {
    Ok(View::ALL[one_of(d, &VIEW_NAMES)?])
}

fn palette<'de, D: Deserializer<'de>>(d: D) -> Result<Palette, D::Error> {
    Ok(Palette::ALL[one_of(d, &THEME_NAMES)?])
}

fn refresh_hz<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let hz = i64::deserialize(d)?;
    u32::try_from(hz)
        .ok()
        .filter(|hz| (MIN_HZ..=MAX_HZ).contains(hz))
        .ok_or_else(|| {
            D::Error::custom(format!(
                "{hz} is outside {MIN_HZ}..={MAX_HZ} (frames per second)"
            ))
        })
}

/// One column's name, checked where it is read (so an error points at its line).
struct ColumnName(SortColumn);

impl<'de> Deserialize<'de> for ColumnName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = String::deserialize(d)?;
        SortColumn::from_key(&n)
            .map(ColumnName)
            .ok_or_else(|| D::Error::unknown_variant(&n, &COLUMN_KEYS))
    }
}

fn columns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SortColumn>, D::Error> {
    let names = Vec::<ColumnName>::deserialize(d)?;
    let mut out = Vec::with_capacity(names.len());
    for ColumnName(c) in names {
        if out.contains(&c) {
            return Err(D::Error::custom(format!(
                "column `{}` is listed twice",
                c.key()
            )));
        }
        out.push(c);
    }
    if !out.contains(&SortColumn::Name) {
        return Err(D::Error::custom("the columns must include `name`"));
    }
    Ok(out)
}

/// Parse a config file's text; `file` is only named in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let repr: FileRepr = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| named_in(text, s, e.message()));
        let (line, key) = at.map_or((1, String::new()), |at| key_at(text, at));
        ConfigError {
            file: file.to_path_buf(),
            line,
            key,
            message: e.message().trim().to_string(),
        }
    })?;
    let keys = key_overrides(&repr.keys).map_err(|(action, message)| ConfigError {
        file: file.to_path_buf(),
        line: line_of(text, "keys", &action),
        key: format!("keys.{action}"),
        message,
    })?;
    Ok(Config {
        view: repr.ui.view,
        refresh_hz: repr.ui.refresh_hz,
        columns: repr.queues.columns,
        theme: repr.ui.theme,
        mouse: repr.ui.mouse,
        keys,
    })
}

/// The `[keys]` table as overrides; an error names the action it is about.
fn key_overrides(table: &toml::Table) -> Result<Overrides, (String, String)> {
    let mut out = Vec::new();
    for (name, value) in table {
        let fail = |m: String| (name.clone(), m);
        let action = Action::from_name(name)
            .filter(|a| KEYMAP.iter().any(|b| b.action == *a))
            .ok_or_else(|| {
                fail(format!(
                    "unknown action `{name}` (one of: {})",
                    bound_action_names().join(", ")
                ))
            })?;
        let list = value.as_array().ok_or_else(|| {
            fail(format!(
                "expected a list of keys, found {}",
                value.type_str()
            ))
        })?;
        let mut keys = Vec::with_capacity(list.len());
        for v in list {
            let s = v
                .as_str()
                .ok_or_else(|| fail(format!("expected a key name, found {}", v.type_str())))?;
            keys.push(Key::parse(s).map_err(fail)?);
        }
        if keys.is_empty() {
            return Err(fail("an action needs at least one key".into()));
        }
        out.push((action, keys));
    }
    if let Some((key, a, b)) = Keymap::with_overrides(&out).conflict() {
        let name = [a, b]
            .into_iter()
            .find(|x| out.iter().any(|o| o.0 == *x))
            .unwrap_or(b)
            .name();
        let other = if name == a.name() { b } else { a };
        return Err((
            name.to_string(),
            format!("`{}` is also bound to `{}` there", key.name(), other.name()),
        ));
    }
    Ok(out)
}

/// The names of the actions the keymap binds, in [`ACTION_NAMES`] order.
fn bound_action_names() -> Vec<&'static str> {
    ACTION_NAMES
        .iter()
        .filter(|(a, _)| KEYMAP.iter().any(|b| b.action == *a))
        .map(|(_, n)| *n)
        .collect()
}

/// Where in `span` the error is: toml points at a whole array when one of its names is wrong;
/// the name the message quotes (`unknown variant `nope``) is then looked up inside it.
fn named_in(text: &str, span: std::ops::Range<usize>, message: &str) -> usize {
    let quoted = message
        .split_once("unknown variant `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| format!("\"{name}\""));
    let inside = text.get(span.clone()).zip(quoted.as_deref());
    match inside.and_then(|(s, q)| s.find(q)) {
        Some(i) => span.start + i,
        None => span.start,
    }
}

/// The 1-based line of byte `offset`, and the dotted key written there or above it in the same
/// table (toml points at a value or a key; the key may sit lines above a long array's element).
fn key_at(text: &str, offset: usize) -> (usize, String) {
    let offset = offset.min(text.len());
    let line_idx = text[..offset].matches('\n').count();
    let lines: Vec<&str> = text.lines().collect();
    let mut key = None;
    let mut section = String::new();
    for l in lines.iter().take(line_idx + 1).rev() {
        let t = l.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            break;
        }
        if key.is_none() && !t.starts_with('#') {
            key = t
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string());
        }
    }
    let path = match (section.is_empty(), key) {
        (_, None) => section,
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{section}.{k}"),
    };
    (line_idx + 1, path)
}

/// The 1-based line where `key` is set in table `section` (1 if it cannot be found).
fn line_of(text: &str, section: &str, key: &str) -> usize {
    let mut in_section = false;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            in_section = t.trim_matches(|c| c == '[' || c == ']').trim() == section;
        } else if in_section
            && t.split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return i + 1;
        }
    }
    1
}

/// Where the config file is looked for when `--config` does not name one:
/// `$XDG_CONFIG_HOME/cmdqv/config.toml`, else `$HOME/.config/cmdqv/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
        Some(PathBuf::from(home).join(".config"))
    })?;
    Some(base.join("cmdqv").join("config.toml"))
}

/// The config: from `explicit` (which must exist), else from [`default_path`] if there is a file
/// there, else the defaults. Returns the file it read, if any.
pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Some(p) if p.exists() => p,
            _ => return Ok((Config::default(), None)),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
        file: path.clone(),
        line: 0,
        key: String::new(),
        message: format!("cannot read it: {e}"),
    })?;
    Ok((parse(&text, &path)?, Some(path)))
}

static INSTALLED: OnceLock<Config> = OnceLock::new();

/// Make `cfg` the configuration the terminal UI starts with (once, before it starts; later calls
/// are ignored).
pub fn install(cfg: Config) {
    let _ = INSTALLED.set(cfg);
}

/// The installed configuration, or the defaults.
pub fn installed() -> Config {
    INSTALLED.get().cloned().unwrap_or_default()
}

/// The default file, every setting at its default, with comments (`cmdqv config
/// --print-default`). The `[keys]` lines are commented out: uncommented they bind what the
/// defaults bind.
pub fn default_file() -> String {
    let d = Config::default();
    let quoted = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let columns: Vec<&str> = d.columns.iter().map(|c| c.key()).collect();
    let mut out = format!(
        "{HEADER}\n[ui]\n{VIEW_HELP}view = \"{}\"\n{HZ_HELP}refresh_hz = {}\n{THEME_HELP}theme = \"{}\"\n{MOUSE_HELP}mouse = {}\n\n[queues]\n{COLUMNS_HELP}columns = [{}]\n\n[keys]\n{KEYS_HELP}",
        VIEW_NAMES[d.view.index()],
        d.refresh_hz,
        d.theme.name(),
        d.mouse,
        quoted(&columns),
    );
    for name in bound_action_names() {
        let Some(action) = Action::from_name(name) else {
            continue;
        };
        let mut keys: Vec<String> = Vec::new();
        for b in KEYMAP.iter().filter(|b| b.action == action) {
            for k in b.keys.iter() {
                if !keys.contains(&k.name()) {
                    keys.push(k.name());
                }
            }
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        out.push_str(&format!("# {name} = [{}]\n", quoted(&keys)));
    }
    out
}

const HEADER: &str = "\
# cmdqv configuration. cmdqv reads $XDG_CONFIG_HOME/cmdqv/config.toml (without XDG_CONFIG_HOME:
# ~/.config/cmdqv/config.toml), or the file given with --config FILE. Every setting may be left
# out; this file lists the defaults (`cmdqv config --print-default`). Flags on the command line
# win over the file (--refresh-hz, --no-mouse, --no-color), and NO_COLOR is always honoured.
# A wrong key or value stops cmdqv with the file, line and key; nothing of the file is used then.
";
const VIEW_HELP: &str = "# The view shown first: \"queues\", \"log\" or \"probes\".\n";
const HZ_HELP: &str =
    "# Frames (and snapshots) per second, 1-60; `+` and `-` change it while running.\n";
const THEME_HELP: &str =
    "# Colours: \"dark\" (dark terminals), \"light\" (light backgrounds) or \"high-contrast\".\n";
const MOUSE_HELP: &str = "# Mouse capture (click a row or a header, wheel). false leaves the terminal's own\n# text selection working (as --no-mouse does).\n";
const COLUMNS_HELP: &str = "# The queue table's columns, in this order (`name` is required). A narrow terminal drops\n# the least wanted first. Names: id name vintf state size prod cons occupancy cmd_rate\n# sync_rate p50 p99 max batch commands errors cerr\n";
const KEYS_HELP: &str = "# Rebind an action: `action = [keys]` replaces the action's default keys everywhere it\n# is bound. Keys are written as the help shows them: \"q\", \"Ctrl-C\", \"Alt-x\", \"space\",\n# \"Enter\", \"Esc\", \"Tab\", \"Shift-Tab\", \"Backspace\", \"↑\" or \"Up\", \"PgUp\", \"Home\", \"F5\".\n# A key bound to two actions in one place is refused. The defaults:\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(text, Path::new("c.toml")).unwrap_err()
    }

    #[test]
    fn the_printed_default_parses_back_to_the_defaults() {
        let text = default_file();
        assert_eq!(
            parse(&text, Path::new("d.toml")).unwrap(),
            Config::default()
        );
        assert_eq!(parse("", Path::new("e.toml")).unwrap(), Config::default());
    }

    #[test]
    fn the_default_keys_uncommented_dispatch_as_the_defaults() {
        let text = default_file().replace("\n# ", "\n").replace("\n#\n", "\n");
        let keys_part = &text[text.find("[keys]").unwrap()..];
        let only_keys: String = keys_part
            .lines()
            .filter(|l| {
                let action = l.split_once(" = [").map(|(k, _)| k);
                l.starts_with('[') || action.is_some_and(|k| Action::from_name(k).is_some())
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = parse(&only_keys, Path::new("k.toml")).unwrap();
        assert_eq!(cfg.keys.len(), bound_action_names().len());
        let map = cfg.keymap();
        assert!(map.conflict().is_none());
        for b in KEYMAP {
            for k in b.keys.iter() {
                let ev = crossterm::event::KeyEvent::new(k.code, k.mods);
                assert_eq!(
                    map.lookup(&[b.context], &ev),
                    crate::tui::keymap::lookup(&[b.context], &ev),
                    "{} in {:?}",
                    k.name(),
                    b.context
                );
            }
        }
    }

    #[test]
    fn settings_are_read() {
        let cfg = parse(
            "[ui]\nview = \"log\"\nrefresh_hz = 30\ntheme = \"high-contrast\"\nmouse = false\n[queues]\ncolumns = [\"name\", \"p99\", \"cerr\"]\n[keys]\nquit = [\"x\", \"Ctrl-q\"]\n",
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(cfg.view, View::Log);
        assert_eq!(cfg.refresh_hz, 30);
        assert_eq!(cfg.theme, Palette::HighContrast);
        assert!(!cfg.mouse);
        assert_eq!(
            cfg.columns,
            [SortColumn::Name, SortColumn::P99, SortColumn::CError]
        );
        assert_eq!(cfg.keys[0].0, Action::Quit);
        assert_eq!(cfg.keys[0].1[1], Key::parse("Ctrl-Q").unwrap());
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let e = err("[ui]\nview = \"log\"\ncolour = \"red\"\n");
        assert_eq!((e.line, e.key.as_str()), (3, "ui.colour"), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = err("[ui]\n\nrefresh_hz = \"fast\"\n");
        assert_eq!((e.line, e.key.as_str()), (3, "ui.refresh_hz"), "{e}");
        let e = err("[ui]\nrefresh_hz = 500\n");
        assert_eq!((e.line, e.key.as_str()), (2, "ui.refresh_hz"), "{e}");
        let e = err("[ui]\ntheme = \"pink\"\n");
        assert_eq!((e.line, e.key.as_str()), (2, "ui.theme"), "{e}");
        let e = err("[queues]\ncolumns = [\n  \"name\",\n  \"nope\",\n]\n");
        assert_eq!((e.line, e.key.as_str()), (4, "queues.columns"), "{e}");
        let e = err("[queues]\ncolumns = [\"p99\"]\n");
        assert_eq!(e.key, "queues.columns", "{e}");
        let e = err("[keys]\nquit = [\"q\"]\nsort_next = [\"Hyper-x\"]\n");
        assert_eq!((e.line, e.key.as_str()), (3, "keys.sort_next"), "{e}");
        let e = err("[keys]\njump = [\"x\"]\n");
        assert_eq!((e.line, e.key.as_str()), (2, "keys.jump"), "{e}");
        let e = err("[keys]\n\nsort_next = [\"S\"]\n");
        assert_eq!((e.line, e.key.as_str()), (3, "keys.sort_next"), "{e}");
        assert!(e.message.contains("sort_reverse"), "{e}");
        let e = err("[ui\nview = 1\n");
        assert_eq!(e.line, 1, "{e}");
        assert_eq!(
            err("[ui]\nmouse = 3\n").to_string().lines().count(),
            1,
            "one line"
        );
        assert!(
            err("[ui]\nmouse = 3\n")
                .to_string()
                .starts_with("config file c.toml:2: key `ui.mouse`: ")
        );
    }

    #[test]
    fn keys_round_trip_through_their_names() {
        for b in KEYMAP {
            for k in b.keys.iter() {
                assert_eq!(Key::parse(&k.name()), Ok(*k), "{}", k.name());
            }
        }
        assert!(Key::parse("Hyper-x").is_err());
        assert!(Key::parse("F13").is_err());
    }
}
