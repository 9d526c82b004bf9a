//! `homeport completions SHELL` and `homeport man`.
//!
//! Completion is dynamic (clap_complete's `CompleteEnv`): the script a shell loads is a few lines
//! that call `homeport` back with the words typed so far (`COMPLETE=bash homeport -- …`), and the
//! binary answers from its own command definitions — so subcommands and flags never drift from
//! the binary — and from the config for TARGET and APP values. A static script could not know the
//! targets; one that called a hidden helper would need a hand-written part per shell. The script
//! calls `homeport` by name on PATH, so it survives upgrades and moves of the binary.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::Failure;
use crate::cli::Cli;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(shell: Shell) -> Result<(), Failure> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut buf = Vec::new();
    completer
        .write_registration("COMPLETE", "homeport", "homeport", "homeport", &mut buf)
        .map_err(|e| Failure::new(1, format!("cannot write the script: {e}")))?;
    crate::out::write(&String::from_utf8_lossy(&buf)).map(drop)
}

pub fn man(out: Option<&Path>) -> Result<(), Failure> {
    let cmd = Cli::command();
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map_err(|e| {
                Failure::new(1, format!("cannot write pages in {}: {e}", dir.display()))
            })?;
        outln!("Wrote the manual pages to {}", dir.display())?;
        return Ok(());
    }
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .map_err(|e| Failure::new(1, format!("cannot render the page: {e}")))?;
    crate::out::write(&String::from_utf8_lossy(&buf)).map(drop)
}
