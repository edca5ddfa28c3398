//! The shared runner: every binary's `main` is one call, `runner::main::<window_agg::Args>()`.
//!
//! Each program's module owns its command line, a clap-derive `Args` whose doc comments are its
//! `--help`, and implements [`Program`] for it; [`main`] parses the arguments and runs it through
//! [`run`]. [`commands`] lists every program's clap definition (man pages and completions are
//! generated from it).
//!
//! It remembers the program's name for diagnostics, runs the body, flushes nothing itself (the
//! body owns its [`crate::output::Output`], which flushes on drop and on every emission point),
//! prints `"<name>: <error>"` on stderr and turns the error into the exit code of
//! [`crate::error`].

use std::process::ExitCode;
use std::sync::OnceLock;

use crate::error::Result;

static PROGRAM: OnceLock<&'static str> = OnceLock::new();

/// The running program's name, as diagnostics print it.
pub fn program() -> &'static str {
    PROGRAM.get().copied().unwrap_or("pipeworks")
}

/// Print a diagnostic line `"<name>: <msg>"` on stderr. Never fails: if stderr is gone, so be it.
pub fn warn(msg: impl std::fmt::Display) {
    use std::io::Write;
    let line = format!("{}: {msg}\n", program());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A program: its command line, and what it does with it.
pub trait Program: clap::Parser {
    /// The binary's name, as diagnostics print it.
    const NAME: &'static str;

    fn run(self) -> Result<()>;
}

/// The whole `main` of a program's binary.
pub fn main<P: Program>() -> ExitCode {
    let args = P::parse();
    run(P::NAME, || args.run())
}

/// Every program's clap definition, in the order of the README's program table.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        crate::gen_events::Args::command(),
        crate::window_agg::Args::command(),
        crate::minute_stats::Args::command(),
        crate::load_monitor::Args::command(),
        crate::allocate::Args::command(),
        crate::chat::Args::command(),
        crate::chat_bench::Args::command(),
        crate::reprice::ticker::Args::command(),
        crate::reprice::feed::Args::command(),
        crate::reprice::api::Args::command(),
        crate::reprice::algorithm::Args::command(),
    ]
}

/// Run a program body and map its result to the process exit code.
pub fn run(name: &'static str, body: impl FnOnce() -> Result<()>) -> ExitCode {
    let _ = PROGRAM.set(name);
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !err.is_silent() {
                warn(&err);
            }
            ExitCode::from(err.exit_code())
        }
    }
}
