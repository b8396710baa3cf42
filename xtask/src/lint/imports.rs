//! Import loops: which file each source file uses (through `use`, `crate::`/`super::`/`self::`
//! paths and paths into its child modules, re-exports followed to the file that defines the
//! name), and every group of files that reach each other in a loop.
//!
//! Declaring `mod x` is not a use; code under `#[cfg(test)]` is not looked at (a test module's
//! `use super::*` stays inside its own file anyway).

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
    path::PathBuf,
};

use super::{
    modtree::Tree,
    source::SourceSet,
    tokens::{Token, parse_use},
};

/// file → used file → the names it uses there.
type Graph = BTreeMap<PathBuf, BTreeMap<PathBuf, BTreeSet<String>>>;

/// Re-exports are followed at most this deep (a re-export loop is a compile error anyway).
const MAX_DEPTH: usize = 16;

/// Files that use each other in a loop.
#[derive(Debug, PartialEq, Eq)]
pub struct ImportLoop {
    /// One shortest loop through the group, first file repeated at the end.
    pub cycle: Vec<String>,
    /// Every use between files of the group: (from, to, names).
    pub edges: Vec<(String, String, Vec<String>)>,
}

impl fmt::Display for ImportLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.cycle.len() - 1;
        writeln!(
            f,
            "import loop ({files} files): {}",
            self.cycle.join(" -> ")
        )?;
        for (from, to, names) in &self.edges {
            writeln!(f, "  {from} -> {to}: {}", names.join(", "))?;
        }
        Ok(())
    }
}

/// Every import loop among the files of `tree` (read from `set`).
pub fn import_loops(set: &SourceSet, tree: &Tree) -> Vec<ImportLoop> {
    let graph = Resolver { tree }.graph();
    let rel = |p: &PathBuf| {
        set.get(p)
            .map_or_else(|| p.display().to_string(), |f| f.rel.clone())
    };
    strongly_connected(&graph)
        .into_iter()
        .filter(|group| group.len() > 1)
        .map(|group| {
            let cycle = shortest_cycle(&graph, &group);
            let mut edges = Vec::new();
            for from in &group {
                for (to, names) in graph[from].iter().filter(|(to, _)| group.contains(*to)) {
                    edges.push((rel(from), rel(to), names.iter().cloned().collect()));
                }
            }
            ImportLoop {
                cycle: cycle.iter().map(rel).collect(),
                edges,
            }
        })
        .collect()
}

/// Where a path leads: a module, and the item named in it (if the path goes past modules).
type Target = (usize, Option<String>);

struct Resolver<'a> {
    tree: &'a Tree,
}

impl Resolver<'_> {
    /// The file graph of every module's own code.
    fn graph(&self) -> Graph {
        let mut g = Graph::new();
        for (m, module) in self.tree.modules.iter().enumerate() {
            let from = &module.file;
            g.entry(from.clone()).or_default();
            let Some(toks) = self.tree.tokens.get(from) else {
                continue;
            };
            for r in &module.own {
                for (target, name) in self.references(m, &toks[r.clone()]) {
                    let to = self.file_of(target, 0);
                    if &to != from {
                        g.entry(from.clone())
                            .or_default()
                            .entry(to)
                            .or_default()
                            .insert(name);
                    }
                }
            }
        }
        g
    }

    /// Every path in `toks` (code of module `m`) that leads into the crate, with the name shown
    /// for it: `use` trees, and paths that start at `crate`, `super`, `self`, a child module or
    /// a name a `use` of `m` binds.
    fn references(&self, m: usize, toks: &[Token]) -> Vec<(Target, String)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            let after_sep = i > 0 && (toks[i - 1].is("::") || toks[i - 1].is("$"));
            if toks[i].is("use") {
                let (entries, next) = parse_use(toks, i);
                for e in entries {
                    let shown = e.name.clone().unwrap_or_else(|| label(&e.path, e.glob));
                    if let Some(t) = self.resolve(m, &e.path, 0) {
                        out.push((t, shown));
                    }
                }
                i = next;
                continue;
            }
            if toks[i].is_ident() && !after_sep && toks.get(i + 1).is_some_and(|t| t.is("::")) {
                let path = path_at(toks, i);
                if let Some(t) = self.resolve(m, &path, 0) {
                    let shown = t.1.clone().unwrap_or_else(|| label(&path, false));
                    out.push((t, shown));
                }
                i += 2 * path.len() - 1;
                continue;
            }
            i += 1;
        }
        out
    }

    /// Resolves `path` as written in module `m`; None for paths outside the crate.
    fn resolve(&self, m: usize, path: &[String], depth: usize) -> Option<Target> {
        let modules = &self.tree.modules;
        let (first, rest) = path.split_first()?;
        let mut rest = rest;
        let mut cur = match first.as_str() {
            "crate" => self.tree.root_of(m),
            "self" => m,
            "super" => modules[m].parent?,
            name => match modules[m].children.get(name) {
                Some(&child) => child,
                None => {
                    // A name bound by a `use` of `m`: continue from where it leads.
                    let (bound, item) = self.through_use(m, name, depth)?;
                    if item.is_some() {
                        return Some((bound, item));
                    }
                    bound
                }
            },
        };
        while let Some((seg, tail)) = rest.split_first() {
            let next = match seg.as_str() {
                "super" => modules[cur].parent,
                "self" => Some(cur),
                s => modules[cur].children.get(s).copied(),
            };
            match next {
                Some(n) => (cur, rest) = (n, tail),
                None => return Some((cur, Some(seg.clone()))),
            }
        }
        Some((cur, None))
    }

    /// Follows the `use` of module `m` that binds `name`.
    fn through_use(&self, m: usize, name: &str, depth: usize) -> Option<Target> {
        if depth >= MAX_DEPTH {
            return None;
        }
        let e = self.tree.modules[m]
            .uses
            .iter()
            .find(|e| !e.glob && e.name.as_deref() == Some(name))?;
        self.resolve(m, &e.path, depth + 1)
    }

    /// The file that defines what `target` names: an item defined in its module is there; one
    /// the module only re-exports (or imports) is where that `use` leads.
    fn file_of(&self, (m, item): Target, depth: usize) -> PathBuf {
        let module = &self.tree.modules[m];
        let Some(name) = item else {
            return module.file.clone();
        };
        if module.items.contains(&name) || depth >= MAX_DEPTH {
            return module.file.clone();
        }
        if let Some(t) = self.through_use(m, &name, depth) {
            return self.file_of(t, depth + 1);
        }
        for glob in module.uses.iter().filter(|e| e.glob) {
            if let Some((g, None)) = self.resolve(m, &glob.path, depth + 1) {
                if self.binds(g, &name) {
                    return self.file_of((g, Some(name)), depth + 1);
                }
            }
        }
        module.file.clone()
    }

    fn binds(&self, m: usize, name: &str) -> bool {
        let module = &self.tree.modules[m];
        module.items.contains(name)
            || module.children.contains_key(name)
            || module.uses.iter().any(|e| e.name.as_deref() == Some(name))
    }
}

/// The path `a::b::c` starting at `toks[i]` (identifiers joined by `::`).
fn path_at(toks: &[Token], mut i: usize) -> Vec<String> {
    let mut path = vec![toks[i].text.clone()];
    while toks.get(i + 1).is_some_and(|t| t.is("::"))
        && toks.get(i + 2).is_some_and(|t| t.is_ident())
    {
        path.push(toks[i + 2].text.clone());
        i += 2;
    }
    path
}

fn label(path: &[String], glob: bool) -> String {
    let last = path.last().map_or("crate", String::as_str);
    if glob {
        format!("{last}::*")
    } else {
        last.to_string()
    }
}

/// Tarjan's strongly connected components, each sorted; in file order of their first file.
fn strongly_connected(g: &Graph) -> Vec<Vec<PathBuf>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a PathBuf, (usize, usize)>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a PathBuf) {
        let n = s.index.len();
        s.index.insert(v, (n, n));
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.g.get(v).into_iter().flat_map(BTreeMap::keys) {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.index[w].1.min(s.index[v].1);
                s.index.get_mut(v).expect("visited").1 = low;
            } else if s.on_stack.contains(w) {
                let low = s.index[w].0.min(s.index[v].1);
                s.index.get_mut(v).expect("visited").1 = low;
            }
        }
        if s.index[v].0 == s.index[v].1 {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            group.sort();
            s.out.push(group);
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest loop from the group's first file back to itself, within the group.
fn shortest_cycle(g: &Graph, group: &[PathBuf]) -> Vec<PathBuf> {
    let start = &group[0];
    let mut prev: BTreeMap<&PathBuf, &PathBuf> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in g[v].keys().filter(|w| group.contains(*w)) {
            if w == start {
                let mut back = Vec::new();
                let mut at = v;
                while at != start {
                    back.push(at.clone());
                    at = prev[at];
                }
                back.reverse();
                let mut cycle = vec![start.clone()];
                cycle.extend(back);
                cycle.push(start.clone());
                return cycle;
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    group.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::source::SourceFile;

    fn loops(files: &[(&str, &str)]) -> Vec<ImportLoop> {
        let set: SourceSet = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), SourceFile::new(*p, t)))
            .collect();
        let tree = Tree::build(&set, &[PathBuf::from("src/lib.rs")]);
        import_loops(&set, &tree)
    }

    #[test]
    fn finds_a_loop_and_names_what_each_side_uses() {
        let l = loops(&[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            ("src/a.rs", "use crate::b::{Bee, bee};\npub struct Ay;\n"),
            (
                "src/b.rs",
                "pub struct Bee;\npub fn bee() { let _ = super::a::Ay; }\n",
            ),
        ]);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].cycle, ["src/a.rs", "src/b.rs", "src/a.rs"]);
        let edges: Vec<_> = l[0]
            .edges
            .iter()
            .map(|(f, t, n)| format!("{f}>{t}:{}", n.join(",")))
            .collect();
        assert_eq!(edges, ["src/a.rs>src/b.rs:Bee,bee", "src/b.rs>src/a.rs:Ay"]);
    }

    #[test]
    fn a_chain_and_mod_declarations_are_not_loops() {
        let l = loops(&[
            ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
            ("src/a.rs", "use crate::b::Bee;\n"),
            ("src/b.rs", "pub struct Bee;\nfn f() { crate::c::g(); }\n"),
            ("src/c.rs", "pub fn g() {}\n"),
        ]);
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn test_module_uses_are_not_edges() {
        let l = loops(&[
            ("src/lib.rs", "mod a;\nmod b;\n"),
            (
                "src/a.rs",
                "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::g;\n}\n",
            ),
            ("src/b.rs", "pub fn g() { crate::a::f(); }\n"),
        ]);
        assert!(l.is_empty(), "{l:?}");
    }

    #[test]
    fn re_exports_are_edges_and_are_followed_to_the_defining_file() {
        // lib.rs re-exports a's item; c uses it through the re-export: the use leads to a.rs,
        // not to lib.rs, so lib -> a and c -> a make no loop.
        let through = loops(&[
            ("src/lib.rs", "mod a;\nmod c;\npub use a::Ay;\n"),
            ("src/a.rs", "pub struct Ay;\n"),
            ("src/c.rs", "use crate::Ay;\n"),
        ]);
        assert!(through.is_empty(), "{through:?}");
        // A parent that re-exports its child and defines what the child uses: a loop.
        let l = loops(&[
            ("src/lib.rs", "mod ui;\n"),
            (
                "src/ui/mod.rs",
                "mod app;\npub use app::App;\npub enum Control { Quit }\n",
            ),
            ("src/ui/app.rs", "use super::Control;\npub struct App;\n"),
        ]);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(
            l[0].cycle,
            ["src/ui/app.rs", "src/ui/mod.rs", "src/ui/app.rs"]
        );
    }

    #[test]
    fn paths_through_use_aliases_and_child_modules_count() {
        let l = loops(&[
            ("src/lib.rs", "mod x;\nmod y;\n"),
            ("src/x/mod.rs", "mod inner;\npub fn h() { inner::k(); }\n"),
            (
                "src/x/inner.rs",
                "use crate::y as why;\npub fn k() { why::z(); }\n",
            ),
            ("src/y.rs", "pub fn z() { crate::x::h(); }\n"),
        ]);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(l[0].cycle.len(), 4, "{l:?}");
    }

    #[test]
    fn path_attributes_lead_to_their_file() {
        let l = loops(&[
            (
                "src/lib.rs",
                "#[path = \"impls/x_impl.rs\"]\nmod x;\nmod y;\n",
            ),
            ("src/impls/x_impl.rs", "pub fn h() { crate::y::z(); }\n"),
            ("src/y.rs", "pub fn z() { crate::x::h(); }\n"),
        ]);
        assert_eq!(l.len(), 1, "{l:?}");
        assert_eq!(
            l[0].cycle,
            ["src/impls/x_impl.rs", "src/y.rs", "src/impls/x_impl.rs"]
        );
    }
}
