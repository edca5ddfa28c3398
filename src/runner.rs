//! The shared runner: every binary's `main` is one call, `runner::main::<window_agg::Args>()`.
//!
//! Each program's module owns its command line, a clap-derive `Args` whose doc comments are its
//! `--help`, and implements [`Program`] for it; [`main`] parses the arguments and runs it through
//! [`run`]. [`commands`] lists every program's clap definition (man pages and completions are
//! generated from it).
//!
//! The runner owns what every program shares, and hands it to the body as a [`Process`]: the
//! program's name for diagnostics, its stdout as an [`Output`] (which the runner flushes at the
//! end, so a write error there is reported like any other). Programs with something to finish on
//! SIGINT or SIGTERM take them the one shared way, [`crate::stop::Stop`]. Input comes from the shared reader of
//! [`crate::input`] (`InputArgs::open` for bulk input, `Splitter` for a poll loop). The runner prints
//! `"<name>: <error>"` on stderr and turns the error into the exit code of [`crate::error`].

use std::io;
use std::process::ExitCode;
use std::sync::OnceLock;

use crate::error::Result;
use crate::output::Output;

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

    fn run(self, process: &mut Process) -> Result<()>;
}

/// What the runner hands every program: see the module doc.
pub struct Process {
    name: &'static str,
    output: Option<Output<io::Stdout>>,
}

impl Process {
    fn new(name: &'static str) -> Self {
        Process { name, output: None }
    }

    /// The program's name, as diagnostics print it.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// JSON Lines on stdout. Streaming programs flush it at each emission point; whatever is
    /// left when the program returns, the runner flushes.
    pub fn output(&mut self) -> &mut Output<io::Stdout> {
        self.output.get_or_insert_with(Output::stdout)
    }

    /// Flush what is left of the output.
    fn finish(&mut self) -> Result<()> {
        match self.output.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

/// The whole `main` of a program's binary.
pub fn main<P: Program>() -> ExitCode {
    let args = P::parse();
    run(P::NAME, |process| args.run(process))
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

/// Run a program body, flush its output, and map the result to the process exit code.
pub fn run(name: &'static str, body: impl FnOnce(&mut Process) -> Result<()>) -> ExitCode {
    let _ = PROGRAM.set(name);
    let mut process = Process::new(name);
    let result = body(&mut process);
    // The body's own error says more than a flush that failed after it.
    let flushed = process.finish();
    match result.and(flushed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if !err.is_silent() {
                warn(&err);
            }
            ExitCode::from(err.exit_code())
        }
    }
}
