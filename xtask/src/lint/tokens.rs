//! A token stream over masked source (identifiers, `::`, single punctuation), enough to read
//! module declarations, `use` trees, item names and paths without a full Rust parser.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    /// Byte offset in the file.
    pub at: usize,
}

impl Token {
    pub fn is(&self, s: &str) -> bool {
        self.text == s
    }

    pub fn is_ident(&self) -> bool {
        self.text
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
    }
}

/// Splits masked code (comments and literal contents already blanked) into tokens.
pub fn tokenize(code: &str) -> Vec<Token> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let len = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_alphanumeric() || c == b'_' {
            b[i..]
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                .unwrap_or(b.len() - i)
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            2
        } else {
            // One character (identifiers are ASCII in this workspace; anything else is one token).
            code[i..].chars().next().map_or(1, char::len_utf8)
        };
        out.push(Token {
            text: code[i..i + len].to_string(),
            at: i,
        });
        i += len;
    }
    out
}

/// The index of the token closing the bracket at `open`.
pub fn close_of(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    toks.len().saturating_sub(1)
}

/// From `i`, the index just past the first `;` at bracket depth 0, or past the bracket group
/// that a top-level `{` opens, whichever comes first (the end of an item or statement).
pub fn skip_item(toks: &[Token], mut i: usize, end: usize) -> usize {
    while i < end {
        match toks[i].text.as_str() {
            ";" => return i + 1,
            "{" => return close_of(toks, i) + 1,
            "(" | "[" => i = close_of(toks, i) + 1,
            _ => i += 1,
        }
    }
    end
}

/// One binding a `use` tree makes: the full path, and whether it ends in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseEntry {
    pub path: Vec<String>,
    /// The name the entry binds in its module (`None` for globs and `as _`).
    pub name: Option<String>,
    pub glob: bool,
}

/// Parses the use tree after a `use` keyword at `toks[i]`; returns its entries and the index
/// past its `;`.
pub fn parse_use(toks: &[Token], i: usize) -> (Vec<UseEntry>, usize) {
    let mut out = Vec::new();
    let mut j = i + 1;
    if toks.get(j).is_some_and(|t| t.is("::")) {
        j += 1;
    }
    j = use_tree(toks, j, &[], &mut out);
    while j < toks.len() && !toks[j].is(";") {
        j += 1;
    }
    (out, j + 1)
}

/// One use tree under `prefix` from `toks[j]`; returns the index past it.
fn use_tree(toks: &[Token], mut j: usize, prefix: &[String], out: &mut Vec<UseEntry>) -> usize {
    let mut path = prefix.to_vec();
    while let Some(t) = toks.get(j) {
        if t.is("*") {
            out.push(UseEntry {
                path,
                name: None,
                glob: true,
            });
            return j + 1;
        }
        if t.is("{") {
            j += 1;
            while toks.get(j).is_some_and(|t| !t.is("}")) {
                j = use_tree(toks, j, &path, out);
                if toks.get(j).is_some_and(|t| t.is(",")) {
                    j += 1;
                }
            }
            return j + 1;
        }
        if !t.is_ident() {
            return j;
        }
        if t.is("self") && !path.is_empty() {
            // `a::{self}` binds `a` itself.
        } else {
            path.push(t.text.clone());
        }
        j += 1;
        if toks.get(j).is_some_and(|t| t.is("::")) {
            j += 1;
            continue;
        }
        break;
    }
    let mut name = path.last().cloned();
    if toks.get(j).is_some_and(|t| t.is("as")) {
        name = toks.get(j + 1).map(|t| t.text.clone()).filter(|n| n != "_");
        j += 2;
    }
    out.push(UseEntry {
        path,
        name,
        glob: false,
    });
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uses(src: &str) -> Vec<(String, Option<String>, bool)> {
        let toks = tokenize(src);
        let (entries, end) = parse_use(&toks, 0);
        assert_eq!(end, toks.len());
        entries
            .into_iter()
            .map(|e| (e.path.join("::"), e.name, e.glob))
            .collect()
    }

    #[test]
    fn reads_use_trees() {
        let got = uses("use crate::{a::{self, B as C}, d::*, e};");
        let want = [
            ("crate::a", Some("a"), false),
            ("crate::a::B", Some("C"), false),
            ("crate::d", None, true),
            ("crate::e", Some("e"), false),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(p, n, g)| (p.to_string(), n.map(str::to_string), *g))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            uses("use ::std::io as _;"),
            [("std::io".to_string(), None, false)]
        );
    }

    #[test]
    fn skips_items_and_groups() {
        let toks = tokenize("const A: [u8; 2] = [1; 2]; fn f() { g(); } x");
        let after_const = skip_item(&toks, 0, toks.len());
        assert!(toks[after_const].is("fn"));
        let after_fn = skip_item(&toks, after_const, toks.len());
        assert!(toks[after_fn].is("x"));
    }
}
