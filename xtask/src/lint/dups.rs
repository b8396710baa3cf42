//! Duplicated stretches: the same [`MIN_LINES`] or more consecutive lines written twice. Lines
//! compare with their white space folded; blank lines, comments, lone punctuation (`}`, `});`)
//! and `use`/`mod` declarations are passed over, so they neither count nor break a stretch.
//!
//! Fn signatures are the one exception: a stretch that lies entirely inside one fn signature at
//! both of its places is not reported, because a trait impl must repeat its trait's parameter
//! list and return type, and generic fns over the same parameters repeat their where clauses.
//! A signature runs from the line of `fn` (when only qualifiers such as `pub(crate)`, `const`
//! or `unsafe` come before it on that line) through the line of the body's opening `{`, or of
//! the `;` ending a declaration, when nothing follows it there. A stretch that reaches into a
//! body, or spans two signatures, is reported as any other.

use std::{
    collections::HashMap,
    fmt,
    ops::{Range, RangeInclusive},
    path::PathBuf,
};

use super::{
    fnlen::signature_end,
    source::{SourceFile, SourceSet},
    tokens::tokenize,
};

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

/// One compared line of a file.
struct Line {
    /// The text with its white space folded.
    text: String,
    /// 1-based line number.
    number: usize,
    /// The fn signature (index in the file's signatures) the whole line lies in, if any.
    signature: Option<usize>,
}

type Lines = Vec<Line>;

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
                .map(|l| l.text.as_str())
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
        .filter_map(|&(a, b)| {
            let mut n = 1;
            while pairs.contains(&((a.0, a.1 + n), (b.0, b.1 + n))) {
                n += 1;
            }
            // The stretch's compared lines at one place.
            let lines =
                |(fi, start): (usize, usize)| &files[fi].1[start..start + n + MIN_LINES - 1];
            if in_one_signature(lines(a)) && in_one_signature(lines(b)) {
                return None;
            }
            let span = |place: (usize, usize)| {
                let stretch = lines(place);
                let rel = set[files[place.0].0].rel.clone();
                (rel, stretch[0].number, stretch[stretch.len() - 1].number)
            };
            Some(Duplicate {
                first: span(a),
                second: span(b),
                lines: n + MIN_LINES - 1,
            })
        })
        .collect();
    out.sort();
    out
}

/// Whether every line of a stretch lies in one and the same fn signature.
fn in_one_signature(stretch: &[Line]) -> bool {
    let first = stretch.first().and_then(|l| l.signature);
    first.is_some() && stretch.iter().all(|l| l.signature == first)
}

/// The lines of `file` that take part in the comparison, white space folded.
fn compared_lines(file: &SourceFile) -> Lines {
    let imports = import_lines(file);
    let signatures = signature_lines(file);
    file.uncommented
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(n, _)| !imports.iter().any(|r| r.contains(n)))
        .map(|(number, l)| Line {
            text: l.split_whitespace().collect::<Vec<_>>().join(" "),
            number,
            signature: signatures.iter().position(|r| r.contains(&number)),
        })
        .filter(|l| !l.text.chars().all(|c| "{}()[];,".contains(c)))
        .collect()
}

/// What may come before `fn` on its line for that line to count as part of the signature.
const QUALIFIERS: &[&str] = &[
    "pub", "(", ")", "crate", "super", "self", "in", "::", "const", "async", "unsafe", "safe",
    "extern", "\"", "default",
];

/// 1-based line ranges, one per fn of `file`, of the lines that hold nothing but the fn's
/// signature (see the module doc); a one-line fn has none.
fn signature_lines(file: &SourceFile) -> Vec<RangeInclusive<usize>> {
    let toks = tokenize(&file.code);
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if !(t.is("fn") && toks.get(i + 1).is_some_and(|n| n.is_ident())) {
            continue;
        }
        let Some(end) = signature_end(&toks, i + 2) else {
            continue;
        };
        let line = file.line_of(t.at);
        let qualified = toks[..i]
            .iter()
            .rev()
            .take_while(|q| file.line_of(q.at) == line)
            .all(|q| QUALIFIERS.contains(&q.text.as_str()));
        let first = if qualified { line } else { line + 1 };
        let rest = &file.code[end.at + 1..];
        let rest = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let last = file.line_of(end.at) - usize::from(!rest.trim().is_empty());
        if first <= last {
            out.push(first..=last);
        }
    }
    out
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

    /// A trait method's signature as the trait declares it (`;`) and its impls repeat it (`{`).
    const SIGNATURE: &str = "    fn alloc(\n        &mut self,\n        id: u32,\n        index: u32,\n        iova: u64,\n        length: u64,\n    ) -> Result<u32, Error>";
    /// A generic fn's signature with a where clause.
    const GENERIC: &str = "pub fn write<M, S>(\n    offset: u64,\n    size: u8,\n    value: u64,\n    mem: &M,\n    sink: &mut S,\n) where\n    M: Memory + ?Sized,\n    S: Sink + ?Sized,\n{\n";

    #[test]
    fn a_repeated_signature_passes_but_a_repeated_body_does_not() {
        let imp = |ty: &str, body: &str| {
            format!("impl T for {ty} {{\n{SIGNATURE} {{\n{body}    }}\n}}\n")
        };
        let files = [
            ("t.rs", format!("pub trait T {{\n{SIGNATURE};\n}}\n")),
            ("a.rs", imp("A", "        Ok(1)\n")),
            ("b.rs", imp("B", "        Ok(2)\n")),
            ("c.rs", imp("C", BLOCK)),
            ("d.rs", imp("D", BLOCK)),
            ("e.rs", format!("{GENERIC}    e(offset);\n}}\n")),
            ("f.rs", format!("{GENERIC}    f(offset);\n}}\n")),
        ];
        let d = duplicates(&set(&files));
        // The signature alone (declared in t.rs, repeated by every impl; the generic one in e.rs
        // and f.rs) is passed over; c.rs and d.rs also share a body, and that stretch counts,
        // from the start of the signature to the body's last shared line.
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].first, ("c.rs".to_string(), 2, 16));
        assert_eq!(d[0].second, ("d.rs".to_string(), 2, 16));
        assert_eq!(d[0].lines, 14);
    }

    #[test]
    fn a_signature_is_its_own_lines_only() {
        let src = "pub(crate) unsafe fn a(\n    x: u8,\n) -> u8 {\n    x\n}\nfn b() -> u8 { 1 }\nlet f = 1; fn c(\n    y: u8,\n) -> u8 { y }\nfn d(&self);\n";
        let lines = signature_lines(&SourceFile::new("s.rs", src));
        // a: lines 1-3; b is one line with its body; c's first line starts with a statement and
        // its last holds the body; d is a one-line declaration.
        assert_eq!(lines, [1..=3, 8..=8, 10..=10]);
    }
}
