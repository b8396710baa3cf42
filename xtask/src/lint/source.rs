//! Rust source as the structure checks read it: the text with comments blanked (and a second
//! view with string and char literals blanked too), byte offsets and line breaks kept, so every
//! finding maps back to a line of the real file.

use std::{collections::BTreeMap, ops::Range, path::PathBuf};

/// One source file, read once.
pub struct SourceFile {
    /// Path relative to the repository root, as findings show it.
    pub rel: String,
    /// Comments blanked; string contents kept (what duplicated lines compare).
    pub uncommented: String,
    /// Comments and the contents of string and char literals blanked (what brace matching,
    /// keywords and paths are read from).
    pub code: String,
    line_starts: Vec<usize>,
}

/// Every source file the checks read, by repository-relative path.
pub type SourceSet = BTreeMap<PathBuf, SourceFile>;

impl SourceFile {
    pub fn new(rel: impl Into<String>, text: &str) -> Self {
        let (uncommented, code) = mask(text);
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            rel: rel.into(),
            uncommented,
            code,
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    /// Byte ranges of the items under `#[cfg(test)]` (test modules, test-only uses and fns).
    pub fn test_ranges(&self) -> Vec<Range<usize>> {
        let code = self.code.as_bytes();
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(at) = find_cfg_test(&self.code, from) {
            let end = item_end(code, at).unwrap_or(code.len());
            out.push(at..end);
            from = end.max(at + 1);
        }
        out
    }
}

/// The next `#[cfg(test)]` attribute at or after `from` (spaces inside it allowed).
fn find_cfg_test(code: &str, from: usize) -> Option<usize> {
    let b = code.as_bytes();
    let mut i = from;
    while let Some(p) = code[i..].find("#[") {
        let at = i + p;
        let close = matching(b, at + 1)?;
        let inner: String = code[at + 2..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if inner == "cfg(test)" {
            return Some(at);
        }
        i = close;
    }
    None
}

/// The end (exclusive) of the item an attribute at `at` belongs to: past the `}` closing its
/// first top-level brace, or past its `;`, whichever comes first.
pub fn item_end(code: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    let mut depth = 0usize;
    while i < code.len() {
        match code[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            b';' if depth == 0 => return Some(i + 1),
            b'{' if depth == 0 => return matching(code, i).map(|c| c + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The offset of the bracket closing the one at `open` (`(`, `[` or `{`), in masked code.
pub fn matching(code: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// What the lexer is inside of.
#[derive(Clone, Copy, PartialEq)]
enum Lex {
    Code,
    LineComment,
    /// Nesting depth of `/* */`.
    BlockComment(usize),
    /// A `"` string; escapes apply unless raw (then the number of `#`s that close it).
    Str {
        raw: Option<usize>,
    },
    Char,
}

/// Returns (comments blanked, comments and literal contents blanked). Blanking replaces each
/// byte with a space and keeps newlines, so offsets and lines stay those of the original.
fn mask(text: &str) -> (String, String) {
    let b = text.as_bytes();
    let mut uncommented = b.to_vec();
    let mut code = b.to_vec();
    let mut state = Lex::Code;
    let mut i = 0;
    while i < b.len() {
        let (next, blank_comment, blank_literal) = lex_step(b, i, &mut state);
        for j in i..next.min(b.len()) {
            if b[j] != b'\n' {
                if blank_comment {
                    uncommented[j] = b' ';
                    code[j] = b' ';
                } else if blank_literal {
                    code[j] = b' ';
                }
            }
        }
        i = next;
    }
    let s = |v: Vec<u8>| {
        String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    };
    (s(uncommented), s(code))
}

/// One lexer step from `i`: returns where the step ends and whether those bytes are comment
/// or literal content.
fn lex_step(b: &[u8], i: usize, state: &mut Lex) -> (usize, bool, bool) {
    let at = |k: usize| b.get(k).copied().unwrap_or(0);
    match *state {
        Lex::LineComment => {
            if b[i] == b'\n' {
                *state = Lex::Code;
                return (i + 1, false, false);
            }
            (i + 1, true, false)
        }
        Lex::BlockComment(d) => {
            if b[i] == b'*' && at(i + 1) == b'/' {
                *state = if d == 1 {
                    Lex::Code
                } else {
                    Lex::BlockComment(d - 1)
                };
                (i + 2, true, false)
            } else if b[i] == b'/' && at(i + 1) == b'*' {
                *state = Lex::BlockComment(d + 1);
                (i + 2, true, false)
            } else {
                (i + 1, true, false)
            }
        }
        Lex::Str { raw } => string_step(b, i, raw, state),
        Lex::Char => {
            if b[i] == b'\\' {
                (i + 2, false, true)
            } else if b[i] == b'\'' {
                *state = Lex::Code;
                (i + 1, false, false)
            } else {
                (i + 1, false, true)
            }
        }
        Lex::Code => code_step(b, i, state),
    }
}

fn string_step(b: &[u8], i: usize, raw: Option<usize>, state: &mut Lex) -> (usize, bool, bool) {
    match raw {
        None if b[i] == b'\\' => (i + 2, false, true),
        None if b[i] == b'"' => {
            *state = Lex::Code;
            (i + 1, false, false)
        }
        Some(hashes)
            if b[i] == b'"' && b[i + 1..].iter().take_while(|&&c| c == b'#').count() >= hashes =>
        {
            *state = Lex::Code;
            (i + 1 + hashes, false, false)
        }
        _ => (i + 1, false, true),
    }
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn code_step(b: &[u8], i: usize, state: &mut Lex) -> (usize, bool, bool) {
    let at = |k: usize| b.get(k).copied().unwrap_or(0);
    let c = b[i];
    let word_start = i == 0 || !is_ident(b[i - 1]);
    match c {
        b'/' if at(i + 1) == b'/' => {
            *state = Lex::LineComment;
            (i + 2, true, false)
        }
        b'/' if at(i + 1) == b'*' => {
            *state = Lex::BlockComment(1);
            (i + 2, true, false)
        }
        b'"' => {
            *state = Lex::Str { raw: None };
            (i + 1, false, false)
        }
        b'r' | b'b' | b'c' if word_start => prefixed_literal(b, i, state),
        b'\'' => char_or_lifetime(b, i, state),
        _ => (i + 1, false, false),
    }
}

/// `r"…"`, `r#"…"#`, `b"…"`, `br"…"`, `c"…"`, `b'x'`: the opening of a prefixed literal, or
/// just the letter when an identifier starts here.
fn prefixed_literal(b: &[u8], i: usize, state: &mut Lex) -> (usize, bool, bool) {
    let mut j = i;
    if matches!(b[j], b'b' | b'c') {
        j += 1;
    }
    if b[i] == b'b' && b.get(j) == Some(&b'\'') {
        *state = Lex::Char;
        return (j + 1, false, false);
    }
    let raw = b.get(j) == Some(&b'r');
    if raw {
        j += 1;
    }
    let hashes = b[j.min(b.len())..]
        .iter()
        .take_while(|&&c| c == b'#')
        .count();
    if b.get(j + hashes) == Some(&b'"') && (raw || hashes == 0) {
        *state = Lex::Str {
            raw: raw.then_some(hashes),
        };
        return (j + hashes + 1, false, false);
    }
    let end = b[i..]
        .iter()
        .position(|&c| !is_ident(c))
        .map_or(b.len(), |p| i + p);
    (end, false, false)
}

/// `'x'`, `'\n'` and `'\u{…}'` are char literals; `'a` in `&'a T` or `'outer:` is a lifetime
/// or label and stays code.
fn char_or_lifetime(b: &[u8], i: usize, state: &mut Lex) -> (usize, bool, bool) {
    let next = b.get(i + 1).copied().unwrap_or(0);
    if next == b'\\' {
        *state = Lex::Char;
        return (i + 1, false, false);
    }
    // One UTF-8 character, then a closing quote: a char literal.
    let width = match next {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    if b.get(i + 1 + width) == Some(&b'\'') {
        *state = Lex::Char;
    }
    (i + 1, false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_comments_and_literals_but_keeps_offsets() {
        let src =
            "let a = \"x // y\"; // c\n/* b /* n */ */ let c = 'x'; let l: &'a str = r#\"q\"#;\n";
        let f = SourceFile::new("t.rs", src);
        assert_eq!(f.code.len(), src.len());
        assert_eq!(f.uncommented.len(), src.len());
        assert!(f.uncommented.contains("\"x // y\""));
        assert!(!f.uncommented.contains("// c"));
        assert!(!f.code.contains("x //"));
        assert!(f.code.contains("let c = ' ';"));
        assert!(f.code.contains("&'a str"));
        assert!(f.code.contains("r#\" \"#;"));
        assert!(!f.code.contains("/*"));
        assert_eq!(f.line_of(src.find("let c").unwrap()), 2);
    }

    #[test]
    fn finds_test_items() {
        let src = "fn a() {}\n#[cfg(test)]\nmod tests {\n    fn b() { let s = \"}\"; }\n}\nfn c() {}\n#[cfg( test )] use x;\n";
        let f = SourceFile::new("t.rs", src);
        let r = f.test_ranges();
        assert_eq!(r.len(), 2);
        assert_eq!(&src[r[0].clone()].lines().last().unwrap(), &"}");
        assert!(src[r[1].clone()].ends_with("use x;"));
    }
}
