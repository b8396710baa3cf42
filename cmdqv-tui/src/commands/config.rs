//! `cmdqv config`: the config file of the terminal UI: print the default file with its comments
//! (`--print-default`), or check the file cmdqv would read (`--check`).

use anyhow::{Result, bail};
use clap::Args;

use crate::tui::config;

#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// Print the full default config file, with comments, to stdout.
    #[arg(long)]
    pub print_default: bool,
    /// Read the config file (--config FILE, else the default place) and say whether it is good.
    #[arg(long, conflicts_with = "print_default")]
    pub check: bool,
}

/// Runs `cmdqv config`; `file` is the global `--config FILE`.
pub fn run(a: ConfigArgs, file: Option<&std::path::Path>) -> Result<()> {
    if a.print_default {
        print!("{}", config::default_file());
        return Ok(());
    }
    if !a.check {
        bail!("say what to do: --print-default or --check (see cmdqv config --help)");
    }
    match config::load(file)? {
        (_, Some(path)) => println!("{}: ok", path.display()),
        (_, None) => match config::default_path() {
            Some(p) => println!("no config file at {} (the defaults apply)", p.display()),
            None => println!("no config file (neither XDG_CONFIG_HOME nor HOME is set)"),
        },
    }
    Ok(())
}
