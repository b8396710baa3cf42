//! Duplicated stretches: the same [`MIN_LINES`] or more consecutive lines written twice. Lines
//! compare with their white space folded; blank lines, comments, lone punctuation (`}`, `});`)
//! and `use`/`mod` declarations are passed over, so they neither count nor break a stretch.

use std::{collections::HashMap, fmt, ops::Range, path::PathBuf};

use super::source::{SourceFile, SourceSet};

pub const MIN_LINES: usize = 6;

/// Two places holding the same stretch; lines are 1-based and inclusive.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duplicate {
    pub first: (String, usize, usize),
    pub second: (String, usize, usize),
    /// How many compared lines the stretch has.
    pub lines: usize,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = (&self.first, &self.second);
        writeln!(
            f,
            "duplicated stretch ({} lines): {}:{}-{} and {}:{}-{}",
            self.lines, a.0, a.1, a.2, b.0, b.1, b.2
        )
    }
}

/// A file's compared lines: (folded text, 1-based line number).
type Lines = Vec<(String, usize)>;

/// Every maximal stretch of at least [`MIN_LINES`] compared lines that appears twice in `set`
/// (two files, or two places of one file that do not overlap).
pub fn duplicates(set: &SourceSet) -> Vec<Duplicate> {
    let files: Vec<(&PathBuf, Lines)> = set.iter().map(|(p, f)| (p, compared_lines(f))).collect();
    // Every window of MIN_LINES lines, by its text.
    let mut windows: HashMap<Vec<&str>, Vec<(usize, usize)>> = HashMap::new();
    for (fi, (_, lines)) in files.iter().enumerate() {
        for start in 0..(lines.len() + 1).saturating_sub(MIN_LINES) {
            let key = lines[start..start + MIN_LINES]
                .iter()
                .map(|(t, _)| t.as_str())
                .collect();
            windows.entry(key).or_default().push((fi, start));
        }
    }
    let mut pairs = std::collections::BTreeSet::new();
    for places in windows.values().filter(|p| p.len() > 1) {
        for (k, &a) in places.iter().enumerate() {
            for &b in &places[k + 1..] {
                if a.0 != b.0 || b.1 >= a.1 + MIN_LINES {
                    pairs.insert((a, b));
                }
            }
        }
    }
    let mut out: Vec<Duplicate> = pairs
        .iter()
        .filter(|&&(a, b)| {
            !pairs.contains(&((a.0, a.1.wrapping_sub(1)), (b.0, b.1.wrapping_sub(1))))
        })
        .map(|&(a, b)| {
            let mut n = 1;
            while pairs.contains(&((a.0, a.1 + n), (b.0, b.1 + n))) {
                n += 1;
            }
            let span = |(fi, start): (usize, usize)| {
                let (path, lines) = &files[fi];
                let rel = set[*path].rel.clone();
                (rel, lines[start].1, lines[start + n + MIN_LINES - 2].1)
            };
            Duplicate {
                first: span(a),
                second: span(b),
                lines: n + MIN_LINES - 1,
            }
        })
        .collect();
    out.sort();
    out
}

/// The lines of `file` that take part in the comparison, white space folded.
fn compared_lines(file: &SourceFile) -> Lines {
    let imports = import_lines(file);
    file.uncommented
        .lines()
        .enumerate()
        .filter(|(i, _)| !imports.iter().any(|r| r.contains(&(i + 1))))
        .map(|(i, l)| (l.split_whitespace().collect::<Vec<_>>().join(" "), i + 1))
        .filter(|(l, _)| !l.chars().all(|c| "{}()[];,".contains(c)))
        .collect()
}

/// 1-based line ranges of `use` and `mod x;` declarations (of any visibility).
fn import_lines(file: &SourceFile) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (i, line) in file.code.lines().enumerate() {
        let t = line.trim_start();
        // `pub`, `pub(crate)`, `pub(super)` … before the keyword.
        let t = t.strip_prefix("pub").map_or(t, |r| {
            r.trim_start_matches(|c: char| !c.is_whitespace())
                .trim_start()
        });
        let starts = t.starts_with("use ") || (t.starts_with("mod ") && t.ends_with(';'));
        if open.is_none() && starts {
            open = Some(i + 1);
        }
        if let Some(start) = open.filter(|_| line.contains(';')) {
            out.push(start..i + 2);
            open = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "let a = f(1);\nlet b = g(a);\nif b > 2 {\n    h(b);\n}\nlet c = a + b;\nprintln!(\"{c}\");\nreturn c;\n";

    fn set(files: &[(&str, String)]) -> SourceSet {
        files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), SourceFile::new(*p, t)))
            .collect()
    }

    #[test]
    fn reports_a_stretch_written_twice() {
        let a = format!("fn a() {{\n{BLOCK}}}\n");
        let b = format!(
            "fn b() {{\n    // the same, reindented\n{}}}\n",
            BLOCK.replace('\n', "\n  ")
        );
        let d = duplicates(&set(&[("a.rs", a), ("b.rs", b)]));
        assert_eq!(d.len(), 1, "{d:?}");
        // 7 compared lines (the lone `}` is passed over), ending at `return c;`.
        assert_eq!(d[0].lines, 7);
        assert_eq!(d[0].first, ("a.rs".to_string(), 2, 9));
        assert_eq!(d[0].second, ("b.rs".to_string(), 3, 10));
    }

    #[test]
    fn changed_lines_strings_imports_and_short_stretches_pass() {
        let a = format!("fn a() {{\n{BLOCK}}}\n");
        let b = format!(
            "fn b() {{\n{}}}\n",
            BLOCK.replace("return c;", "return c + 1;")
        );
        let imports = "use std::{\n    fs,\n    io,\n    path,\n    env,\n    fmt,\n};\n";
        let short: String = BLOCK.lines().take(5).map(|l| format!("{l}\n")).collect();
        let files = [
            ("a.rs", a),
            ("b.rs", b),
            ("c.rs", format!("{imports}fn c() {{}}\n")),
            ("d.rs", format!("{imports}fn d() {{\n{short}}}\n")),
            (
                "e.rs",
                format!("fn e() {{\n{}}}\n", BLOCK.replace("{c}", "c={c}")),
            ),
        ];
        let d = duplicates(&set(&files));
        // Only a.rs/b.rs share six lines (up to the changed one); c/d share imports only,
        // d's four lines are too short to count, and e's changed string cuts its stretch to five.
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].first.0.as_str(), d[0].second.0.as_str()),
            ("a.rs", "b.rs")
        );
        assert_eq!(d[0].lines, 6);
    }
}
