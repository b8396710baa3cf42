//! The eBPF toolchain pin (`ebpf-toolchain.toml` at the repository root): which dated nightly
//! and which bpf-linker build the probes, and the commit and LLVM major that nightly must have.

use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{Context as _, Result, bail};

pub const PIN_FILE: &str = "ebpf-toolchain.toml";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfPin {
    /// A dated rustup toolchain, e.g. `nightly-2026-05-20`.
    pub nightly: String,
    /// Prefix of the commit hash `rustc -vV` must report for that toolchain.
    pub nightly_commit: String,
    /// LLVM major of that nightly; bpf-linker is built with the matching `llvm-N` feature.
    pub llvm_major: String,
    pub bpf_linker: String,
}

impl EbpfPin {
    /// Reads the repository's pin file.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(PIN_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses `key = "value"` lines; `#` comments and blank lines are skipped, anything else,
    /// a missing key or an unknown one is an error.
    pub fn parse(text: &str) -> Result<Self> {
        let mut kv = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .and_then(|(k, v)| Some((k.trim(), unquote(v.trim())?)))
                .with_context(|| format!("line {}: expected key = \"value\"", n + 1))?;
            kv.insert(k.to_string(), v.to_string());
        }
        let mut take = |k: &str| kv.remove(k).with_context(|| format!("no `{k}`"));
        let pin = Self {
            nightly: take("nightly")?,
            nightly_commit: take("nightly-commit")?,
            llvm_major: take("llvm-major")?,
            bpf_linker: take("bpf-linker")?,
        };
        if let Some(k) = kv.keys().next() {
            bail!("unknown key `{k}`");
        }
        Ok(pin)
    }

    /// Checks what `rustc -vV` of the pinned toolchain reports against the pin.
    pub fn verify(&self, commit: &str, llvm: &str) -> Result<()> {
        let major = llvm.split('.').next().unwrap_or_default();
        if !commit.starts_with(&self.nightly_commit) || major != self.llvm_major {
            bail!(
                "toolchain {} reports commit {commit} and LLVM {llvm}, but {PIN_FILE} pins commit \
                 {} and LLVM {}: reinstall it (`rustup toolchain uninstall {}` and re-run \
                 `cargo xtask bootstrap`) or move the pin",
                self.nightly,
                self.nightly_commit,
                self.llvm_major,
                self.nightly
            );
        }
        Ok(())
    }
}

fn unquote(v: &str) -> Option<&str> {
    v.strip_prefix('"')?.strip_suffix('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# pin\nnightly = \"nightly-2026-05-20\"\n\nnightly-commit = \"e50aa6fba\"\n\
                        llvm-major = \"22\"\nbpf-linker = \"0.13.0\"\n";

    #[test]
    fn parses_every_key() {
        let p = EbpfPin::parse(GOOD).unwrap();
        assert_eq!(p.nightly, "nightly-2026-05-20");
        assert_eq!(p.nightly_commit, "e50aa6fba");
        assert_eq!(p.llvm_major, "22");
        assert_eq!(p.bpf_linker, "0.13.0");
    }

    #[test]
    fn rejects_missing_unknown_and_unquoted() {
        let missing = GOOD.replace("bpf-linker = \"0.13.0\"\n", "");
        assert!(EbpfPin::parse(&missing).is_err());
        let unknown = format!("{GOOD}channel = \"x\"\n");
        assert!(EbpfPin::parse(&unknown).is_err());
        let unquoted = GOOD.replace("\"22\"", "22");
        assert!(EbpfPin::parse(&unquoted).is_err());
    }

    #[test]
    fn verify_names_the_pin_on_mismatch() {
        let p = EbpfPin::parse(GOOD).unwrap();
        assert!(
            p.verify("e50aa6fba4e63ab34c72bf9acfd2c307c1155d1a", "22.1.4")
                .is_ok()
        );
        let e = p.verify("9eb3be26b0000", "22.1.4").unwrap_err().to_string();
        assert!(
            e.contains(PIN_FILE) && e.contains("nightly-2026-05-20"),
            "{e}"
        );
        assert!(p.verify("e50aa6fba", "23.0.0").is_err());
    }

    #[test]
    fn the_repository_pin_parses() {
        let p = EbpfPin::load(&crate::sh::root()).unwrap();
        assert!(p.nightly.starts_with("nightly-"), "{p:?}");
    }
}
