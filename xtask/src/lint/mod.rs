//! `cargo xtask lint`: the project's own structure checks over every workspace crate's src/:
//! no import loops between files, no function body over 80 lines outside test code, no stretch
//! of six or more lines written twice (fn signatures aside: trait impls must repeat them).
//! `cargo test` cannot see these, so CI runs them.

mod dups;
mod fnlen;
mod imports;
mod modtree;
mod source;
mod tokens;
mod workspace;

use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;

use self::{
    dups::{Duplicate, MIN_LINES, duplicates},
    fnlen::{LongFn, MAX_BODY_LINES, long_fns},
    imports::{ImportLoop, import_loops},
    modtree::Tree,
    workspace::Workspace,
};

/// Options of `cargo xtask lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Print the findings and exit 0 (without it, any finding fails the task)
    #[arg(long)]
    report: bool,
}

/// Everything the checks found.
pub struct Findings {
    pub loops: Vec<ImportLoop>,
    pub long_fns: Vec<LongFn>,
    pub duplicates: Vec<Duplicate>,
    pub files: usize,
}

impl Findings {
    pub fn count(&self) -> usize {
        self.loops.len() + self.long_fns.len() + self.duplicates.len()
    }

    /// One line of counts (the last line `cargo xtask lint` prints).
    pub fn summary(&self) -> String {
        format!(
            "lint: {} files; {} import loops, {} functions over {MAX_BODY_LINES} lines, \
             {} duplicated stretches of {MIN_LINES}+ lines",
            self.files,
            self.loops.len(),
            self.long_fns.len(),
            self.duplicates.len()
        )
    }

    fn print(&self) {
        for l in &self.loops {
            print!("{l}");
        }
        for f in &self.long_fns {
            print!("{f}");
        }
        for d in &self.duplicates {
            print!("{d}");
        }
        println!("{}", self.summary());
    }
}

/// Runs every check over the workspace under `root`.
pub fn collect(root: &Path) -> Result<Findings> {
    let ws = Workspace::load(root)?;
    let tree = Tree::build(&ws.files, &ws.roots);
    let loops = import_loops(&ws.files, &tree);
    let long = ws
        .files
        .iter()
        .filter(|(p, _)| !tree.test_files.contains(*p))
        .flat_map(|(_, f)| long_fns(f))
        .collect();
    Ok(Findings {
        loops,
        long_fns: long,
        duplicates: duplicates(&ws.files),
        files: ws.files.len(),
    })
}

/// Prints every finding; fails when there is any (the step `cargo xtask test` runs).
pub fn check(root: &Path) -> Result<()> {
    let f = collect(root)?;
    f.print();
    if f.count() > 0 {
        bail!(
            "the structure lint found {} problems (listed above; `cargo xtask lint --report` lists them without failing)",
            f.count()
        );
    }
    Ok(())
}

/// `cargo xtask lint [--report]`.
pub fn run(args: &LintArgs, root: &Path) -> Result<()> {
    if args.report {
        collect(root)?.print();
        return Ok(());
    }
    check(root)
}
