//! The `pipeworks-docs` generator (behind the `docs` feature): writes every program's man page
//! and bash, zsh and fish completions.
//!
//! `pipeworks-docs DIR` writes `DIR/man/man1/<program>.1`, `DIR/bash/<program>.bash`,
//! `DIR/zsh/_<program>` and `DIR/fish/<program>.fish`, all generated from the clap definitions
//! the programs parse their arguments with ([`crate::runner::commands`]), so they cannot drift
//! from `--help`. `make docs` runs it into `target/docs`; `make install` copies the results.
//!
//! `pipeworks-docs --flags DOCS` rewrites the "Every flag" block of each `DOCS/<program>.md` with
//! the program's current `--help` (`tests/doc_examples.rs` fails when a page has drifted).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// The date of the version the man pages describe (CHANGELOG.md's top entry).
const RELEASE_DATE: &str = "2026-12-02";

/// The generator's `main`: `pipeworks-docs DIR` or `pipeworks-docs --flags DOCS`.
pub fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--flags") {
        let docs = std::env::args_os()
            .nth(2)
            .map_or_else(|| PathBuf::from("docs"), PathBuf::from);
        return match write_flags(&docs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("pipeworks-docs: {}: {err}", docs.display());
                ExitCode::from(1)
            }
        };
    }
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: pipeworks-docs DIR   (writes DIR/man/man1, DIR/bash, DIR/zsh, DIR/fish)");
        return ExitCode::from(2);
    };
    match write_all(&dir) {
        Ok(n) => {
            eprintln!(
                "pipeworks-docs: {n} man pages and their completions in {}",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("pipeworks-docs: {}: {err}", dir.display());
            ExitCode::from(1)
        }
    }
}

fn write_all(dir: &Path) -> std::io::Result<usize> {
    let man = dir.join("man/man1");
    std::fs::create_dir_all(&man)?;
    let commands = crate::runner::commands();
    for cmd in &commands {
        let name = cmd.get_name().to_string();
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .date(RELEASE_DATE)
            .render(&mut page)?;
        std::fs::write(man.join(format!("{name}.1")), page)?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let out = dir.join(shell.to_string());
            std::fs::create_dir_all(&out)?;
            clap_complete::generate_to(shell, &mut cmd.clone(), &name, &out)?;
        }
    }
    Ok(commands.len())
}

/// Replace the fenced block under "## Every flag" of each program's page with its `--help`.
fn write_flags(docs: &Path) -> std::io::Result<()> {
    for mut cmd in crate::runner::commands() {
        let name = cmd.get_name().to_string();
        let path = docs.join(format!("{name}.md"));
        let page = std::fs::read_to_string(&path)?;
        let help = cmd.render_long_help().to_string();
        let Some(updated) = replace_flags_block(&page, help.trim_end()) else {
            return Err(std::io::Error::other(format!(
                "{} has no \"## Every flag\" block",
                path.display()
            )));
        };
        if updated != page {
            std::fs::write(&path, updated)?;
            eprintln!("pipeworks-docs: updated {}", path.display());
        }
    }
    Ok(())
}

/// `page` with the first ```text block after "## Every flag" holding `help`.
fn replace_flags_block(page: &str, help: &str) -> Option<String> {
    let section = page.find("\n## Every flag")?;
    let open = section + page[section..].find("```text\n")? + "```text\n".len();
    let close = open + page[open..].find("\n```")?;
    Some(format!("{}{help}{}", &page[..open], &page[close..]))
}
