//! Function length: a fn whose body runs longer than [`MAX_BODY_LINES`] lines is usually two.
//! Test code (`#[cfg(test)]` items and test-module files) is not measured.

use std::fmt;

use super::{
    source::{SourceFile, matching},
    tokens::{Token, tokenize},
};

/// Lines between a body's opening and closing brace, both excluded.
pub const MAX_BODY_LINES: usize = 80;

/// Functions allowed to be longer: generated tables only, each with the reason. Empty.
const ALLOWLIST: &[(&str, &str)] = &[];

#[derive(Debug, PartialEq, Eq)]
pub struct LongFn {
    pub file: String,
    pub line: usize,
    pub name: String,
    pub body_lines: usize,
}

impl fmt::Display for LongFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "long function: {}:{} fn {} has a body of {} lines (limit {MAX_BODY_LINES})",
            self.file, self.line, self.name, self.body_lines
        )
    }
}

/// Every fn of `file` outside test code whose body is longer than the limit.
pub fn long_fns(file: &SourceFile) -> Vec<LongFn> {
    let tests = file.test_ranges();
    let in_test = |at: usize| tests.iter().any(|r| r.contains(&at));
    let toks = tokenize(&file.code);
    let code = file.code.as_bytes();
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Some(name) = toks.get(i + 1).filter(|n| t.is("fn") && n.is_ident()) else {
            continue;
        };
        if in_test(t.at) || allowed(&file.rel, &name.text) {
            continue;
        }
        let Some(open) = body_open(&toks, i + 2) else {
            continue;
        };
        let Some(close) = matching(code, open) else {
            continue;
        };
        let body_lines = (file.line_of(close) - file.line_of(open)).saturating_sub(1);
        if body_lines > MAX_BODY_LINES {
            out.push(LongFn {
                file: file.rel.clone(),
                line: file.line_of(t.at),
                name: name.text.clone(),
                body_lines,
            });
        }
    }
    out
}

fn allowed(file: &str, name: &str) -> bool {
    ALLOWLIST.iter().any(|&(f, n)| f == file && n == name)
}

/// The byte offset of the `{` opening the body of the fn whose signature starts at `toks[i]`;
/// None for a declaration without a body (`fn f();`).
fn body_open(toks: &[Token], i: usize) -> Option<usize> {
    signature_end(toks, i).filter(|t| t.is("{")).map(|t| t.at)
}

/// The token ending the signature of the fn whose signature continues at `toks[i]` (after its
/// name): the `{` opening its body, or the `;` of a declaration without one.
pub fn signature_end(toks: &[Token], mut i: usize) -> Option<&Token> {
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        match t.text.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth = depth.saturating_sub(1),
            "{" | ";" if depth == 0 => return Some(t),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_body(lines: usize) -> String {
        let body: String = (0..lines)
            .map(|i| format!("    let x{i} = {i};\n"))
            .collect();
        format!("//! t\n\npub fn long(a: [u8; 2]) -> u8 {{\n{body}    0\n}}\n")
    }

    #[test]
    fn an_81_line_body_fails_and_80_passes() {
        // `with_body(n)` has n lets plus the final expression.
        let f = SourceFile::new("a.rs", &with_body(80));
        let long = long_fns(&f);
        assert_eq!(long.len(), 1);
        assert_eq!((long[0].line, long[0].body_lines), (3, 81));
        assert_eq!(long[0].name, "long");
        assert!(long_fns(&SourceFile::new("a.rs", &with_body(79))).is_empty());
    }

    #[test]
    fn test_code_and_declarations_are_not_measured() {
        let test_mod = format!("#[cfg(test)]\nmod tests {{\n{}}}\n", with_body(100));
        let decl = "trait T { fn f(&self); }\nfn g() { let s = \"{\"; }\n";
        let f = SourceFile::new("a.rs", &format!("{test_mod}{decl}"));
        assert!(long_fns(&f).is_empty());
    }
}
