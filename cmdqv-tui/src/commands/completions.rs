//! `cmdqv completions SHELL` and `cmdqv man`: shell completion scripts (clap_complete) and man
//! pages (clap_mangen), generated from the same clap definition as the command line itself, so
//! they cannot drift from it. The Debian package ships both (`cargo xtask package`).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Command};
use clap_complete::Shell;

#[derive(Args, Clone, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Clone, Debug)]
pub struct ManArgs {
    /// Write `cmdqv.1` and one page per subcommand (`cmdqv-sim.1`, …) into this directory
    /// instead of printing `cmdqv.1` to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script for `a.shell` to stdout.
pub fn completions(a: CompletionsArgs, mut cmd: Command) -> Result<()> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(a.shell, &mut cmd, name, &mut std::io::stdout().lock());
    Ok(())
}

/// Prints the man page, or writes every page into `a.dir`.
pub fn man(a: ManArgs, cmd: Command) -> Result<()> {
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))
        }
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout().lock())
            .context("writing the man page to stdout"),
    }
}
