//! The shared runner: every binary's `main` is one call to [`run`].
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
