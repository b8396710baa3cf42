//! What the structure checks read: every workspace crate's src/ folder (from `cargo metadata`,
//! so the eBPF crate and any new member are included), and each crate target's root file.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use super::source::{SourceFile, SourceSet};
use crate::sh::output;

/// The crates' source files and their targets' root files (paths relative to `root`).
pub struct Workspace {
    pub files: SourceSet,
    pub roots: Vec<PathBuf>,
}

/// Target kinds whose root starts a module tree in src/ (tests, benches, examples and build
/// scripts live elsewhere).
const ROOT_KINDS: [&str; 6] = ["lib", "rlib", "bin", "proc-macro", "cdylib", "staticlib"];

impl Workspace {
    pub fn load(root: &Path) -> Result<Self> {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let meta = output(Command::new(cargo).current_dir(root).args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ]))?;
        let meta: serde_json::Value =
            serde_json::from_str(&meta).context("parsing cargo metadata")?;
        let mut files = SourceSet::new();
        let mut roots = Vec::new();
        for pkg in meta["packages"].as_array().into_iter().flatten() {
            let manifest = PathBuf::from(pkg["manifest_path"].as_str().unwrap_or_default());
            let src = manifest.parent().unwrap_or(root).join("src");
            for t in pkg["targets"].as_array().into_iter().flatten() {
                let is_root_kind = t["kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| ROOT_KINDS.contains(&k.as_str().unwrap_or_default()));
                let path = PathBuf::from(t["src_path"].as_str().unwrap_or_default());
                if is_root_kind && path.starts_with(&src) {
                    roots.push(relative(root, &path));
                }
            }
            read_rs_files(root, &src, &mut files)?;
        }
        roots.sort();
        Ok(Self { files, roots })
    }
}

fn relative(root: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(root).unwrap_or(p).to_path_buf()
}

fn read_rs_files(root: &Path, dir: &Path, out: &mut SourceSet) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(()), // a crate without src/
    };
    for e in entries {
        let p = e?.path();
        if p.is_dir() {
            read_rs_files(root, &p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text =
                fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let rel = relative(root, &p);
            out.insert(
                rel.clone(),
                SourceFile::new(rel.display().to_string(), &text),
            );
        }
    }
    Ok(())
}
