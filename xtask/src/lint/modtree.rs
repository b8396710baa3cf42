//! The module tree of each crate target, read from its root file through `mod` declarations:
//! which file every module lives in, the items it defines, the names its `use`s bind, and the
//! token ranges of its own non-test code.

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Range,
    path::{Path, PathBuf},
};

use super::{
    source::SourceSet,
    tokens::{Token, UseEntry, close_of, parse_use, skip_item, tokenize},
};

pub struct Module {
    /// The file the module's code is in (inline modules share their parent's).
    pub file: PathBuf,
    pub parent: Option<usize>,
    pub children: BTreeMap<String, usize>,
    /// Names of the items the module defines (fns, types, consts, macros, …).
    pub items: BTreeSet<String>,
    /// The module-level `use` bindings, `pub use` re-exports among them.
    pub uses: Vec<UseEntry>,
    /// Token ranges of the module's own code: its body without inline child modules and
    /// without items under `#[cfg(test)]`.
    pub own: Vec<Range<usize>>,
    /// Where the files of its `mod x;` children are.
    dir: PathBuf,
}

/// Every module of every crate target, and each file's tokens.
pub struct Tree {
    pub modules: Vec<Module>,
    pub tokens: BTreeMap<PathBuf, Vec<Token>>,
    /// Each file with comments blanked (where `#[path = "…"]` values are read).
    texts: BTreeMap<PathBuf, String>,
    /// Files declared as `#[cfg(test)] mod x;` (test code as a whole).
    pub test_files: BTreeSet<PathBuf>,
}

const ITEM_KEYWORDS: [&str; 8] = [
    "fn", "struct", "enum", "union", "trait", "type", "const", "static",
];

impl Tree {
    /// Builds the tree of every root (a crate target's lib.rs or main.rs) in `set`.
    pub fn build(set: &SourceSet, roots: &[PathBuf]) -> Self {
        let tokens = set
            .iter()
            .map(|(p, f)| (p.clone(), tokenize(&f.code)))
            .collect();
        let texts = set
            .iter()
            .map(|(p, f)| (p.clone(), f.uncommented.clone()))
            .collect();
        let mut tree = Tree {
            modules: Vec::new(),
            tokens,
            texts,
            test_files: BTreeSet::new(),
        };
        for root in roots {
            let dir = root.parent().unwrap_or(Path::new("")).to_path_buf();
            tree.add_file_module(root.clone(), None, dir);
        }
        tree
    }

    /// The crate root above `m`.
    pub fn root_of(&self, mut m: usize) -> usize {
        while let Some(p) = self.modules[m].parent {
            m = p;
        }
        m
    }

    fn add_module(&mut self, file: PathBuf, parent: Option<usize>, dir: PathBuf) -> usize {
        self.modules.push(Module {
            file,
            parent,
            children: BTreeMap::new(),
            items: BTreeSet::new(),
            uses: Vec::new(),
            own: Vec::new(),
            dir,
        });
        self.modules.len() - 1
    }

    fn add_file_module(&mut self, file: PathBuf, parent: Option<usize>, dir: PathBuf) -> usize {
        let m = self.add_module(file.clone(), parent, dir);
        let len = self.tokens.get(&file).map_or(0, Vec::len);
        self.walk(m, 0..len);
        m
    }

    /// `mod name;` in module `m`: `dir/name.rs` or `dir/name/mod.rs`, when it is in the set.
    fn child_file(&self, m: usize, name: &str) -> Option<PathBuf> {
        let dir = &self.modules[m].dir;
        [
            dir.join(format!("{name}.rs")),
            dir.join(name).join("mod.rs"),
        ]
        .into_iter()
        .find(|p| self.tokens.contains_key(p))
    }

    /// Reads module `m`'s items from its token range `body`.
    fn walk(&mut self, m: usize, body: Range<usize>) {
        let file = self.modules[m].file.clone();
        let toks = self.tokens.get(&file).cloned().unwrap_or_default();
        let mut cut: Vec<Range<usize>> = Vec::new();
        let mut i = body.start;
        let mut item_start = None;
        let mut attrs = Attrs::default();
        while i < body.end {
            let t = &toks[i];
            if t.is("#") {
                item_start.get_or_insert(i);
                i = self.attribute(&file, &toks, i, &mut attrs);
                continue;
            }
            if let Some(next) = qualifier(&toks, i) {
                item_start.get_or_insert(i);
                i = next;
                continue;
            }
            let start = item_start.take().unwrap_or(i);
            let test = attrs.test;
            let next = self.item(m, &toks, i, body.end, std::mem::take(&mut attrs));
            if test || next.1 {
                cut.push(start..next.0);
            }
            i = next.0;
        }
        self.modules[m].own = subtract(body, cut);
    }

    /// One item at `toks[i]`; returns the index past it and whether it is an inline module
    /// (whose code belongs to that module, not to `m`).
    fn item(
        &mut self,
        m: usize,
        toks: &[Token],
        i: usize,
        end: usize,
        attrs: Attrs,
    ) -> (usize, bool) {
        let test = attrs.test;
        let t = &toks[i];
        let next_ident = toks
            .get(i + 1)
            .filter(|t| t.is_ident())
            .map(|t| t.text.clone());
        if t.is("use") {
            let (entries, next) = parse_use(toks, i);
            if !test {
                self.modules[m].uses.extend(entries);
            }
            return (next, false);
        }
        if t.is("mod") {
            if let Some(name) = next_ident {
                return self.module_item(m, toks, i, &name, attrs);
            }
        }
        if ITEM_KEYWORDS.contains(&t.text.as_str()) {
            let name = match next_ident.as_deref() {
                Some("mut") => toks.get(i + 2).map(|t| t.text.clone()),
                _ => next_ident,
            };
            if let Some(name) = name {
                if !test {
                    self.modules[m].items.insert(name);
                }
                return (skip_item(toks, i, end), false);
            }
        }
        if t.is("impl") {
            return (skip_item(toks, i, end), false);
        }
        if t.is_ident() && toks.get(i + 1).is_some_and(|t| t.is("!")) {
            // `macro_rules! name { … }` defines a macro; any other `name! { … }` expands here.
            if t.is("macro_rules") && !test {
                if let Some(name) = toks.get(i + 2) {
                    self.modules[m].items.insert(name.text.clone());
                }
            }
            return (skip_item(toks, i + 2, end), false);
        }
        (i + 1, false)
    }

    /// `mod name;` or `mod name { … }` at `toks[i]`.
    fn module_item(
        &mut self,
        m: usize,
        toks: &[Token],
        i: usize,
        name: &str,
        attrs: Attrs,
    ) -> (usize, bool) {
        let test = attrs.test;
        let mut dir = self.modules[m].dir.join(name);
        if toks.get(i + 2).is_some_and(|t| t.is("{")) {
            let close = close_of(toks, i + 2);
            if !test {
                let file = self.modules[m].file.clone();
                let child = self.add_module(file, Some(m), dir);
                self.modules[m].children.insert(name.to_string(), child);
                self.walk(child, i + 3..close);
            }
            return (close + 1, true);
        }
        let file = match &attrs.path {
            // `#[path]` is relative to the declaring file's folder, and the file it names
            // keeps its own children beside it, like a mod.rs.
            Some(p) => {
                let base = self.modules[m].file.parent().unwrap_or(Path::new(""));
                let file = normalize(&base.join(p));
                dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
                Some(file).filter(|f| self.tokens.contains_key(f))
            }
            None => self.child_file(m, name),
        };
        if let Some(file) = file {
            if test {
                self.test_files.insert(file);
            } else {
                let child = self.add_file_module(file, Some(m), dir);
                self.modules[m].children.insert(name.to_string(), child);
            }
        }
        (skip_item(toks, i, toks.len()), false)
    }
}

/// What the attributes before an item say that matters here.
#[derive(Default)]
struct Attrs {
    /// `#[cfg(test)]`: test code.
    test: bool,
    /// `#[path = "…"]`: where a `mod x;` file is.
    path: Option<String>,
}

impl Tree {
    /// Reads the attribute `#[…]` or `#![…]` at `toks[i]` of `file` into `attrs`; returns the
    /// index past it.
    fn attribute(&self, file: &Path, toks: &[Token], i: usize, attrs: &mut Attrs) -> usize {
        let mut j = i + 1;
        if toks.get(j).is_some_and(|t| t.is("!")) {
            j += 1;
        }
        if !toks.get(j).is_some_and(|t| t.is("[")) {
            return i + 1;
        }
        let close = close_of(toks, j);
        let inner = &toks[j + 1..close];
        let text: Vec<&str> = inner.iter().map(|t| t.text.as_str()).collect();
        match text.as_slice() {
            ["cfg", "(", "test", ")"] => attrs.test = true,
            // The string's contents are blanked in tokens: read them from the text.
            ["path", "=", "\"", "\""] => {
                let value = self
                    .texts
                    .get(file)
                    .and_then(|t| t.get(inner[2].at + 1..inner[3].at));
                attrs.path = value.map(str::to_string);
            }
            _ => {}
        }
        close + 1
    }
}

/// `a/b/../c` as `a/c` (a `#[path]` may climb out of its folder).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Visibility and qualifiers before an item (`pub(crate)`, `const fn`, `unsafe`, `async`,
/// `extern "C" fn`): the index past the one at `toks[i]`, if it is one.
fn qualifier(toks: &[Token], i: usize) -> Option<usize> {
    let next = |k: usize| toks.get(k).map_or("", |t: &Token| t.text.as_str());
    match toks[i].text.as_str() {
        "pub" if next(i + 1) == "(" => Some(close_of(toks, i + 1) + 1),
        "pub" | "unsafe" | "async" | "default" => Some(i + 1),
        "const" if matches!(next(i + 1), "fn" | "unsafe" | "async" | "extern") => Some(i + 1),
        // The ABI string is blanked to `""` by the masking.
        "extern" if next(i + 1) == "\"" && next(i + 2) == "\"" => Some(i + 3),
        _ => None,
    }
}

/// `whole` without the `cut` ranges (which lie inside it, in order).
fn subtract(whole: Range<usize>, cut: Vec<Range<usize>>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut from = whole.start;
    for c in cut {
        if c.start > from {
            out.push(from..c.start);
        }
        from = from.max(c.end);
    }
    if from < whole.end {
        out.push(from..whole.end);
    }
    out
}
