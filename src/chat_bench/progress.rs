//! Progress on stderr: a bar when stderr is a terminal, otherwise one line per phase (so logs and
//! test output show where a step is without being flooded).

use std::fmt::Display;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runner::warn;

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    phase: &'static str,
    unit: &'static str,
}

impl Progress {
    /// A bar if stderr is a terminal, plain lines otherwise.
    pub fn stderr() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} {wide_bar} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            label: String::new(),
            phase: "",
            unit: "",
        }
    }

    /// A new step with this label (e.g. `300 clients`).
    pub fn step(&mut self, label: String) {
        self.label = label;
        if let Some(bar) = &self.bar {
            bar.set_prefix(self.label.clone());
        }
    }

    /// A phase of the step, counting `unit`s (clients, milliseconds, deliveries) up to `len`.
    pub fn phase(&mut self, name: &'static str, unit: &'static str, len: u64) {
        self.phase = name;
        self.unit = unit;
        match &self.bar {
            Some(bar) => {
                bar.set_length(len);
                bar.set_position(0);
                bar.set_message(format!("{unit} · {name}"));
            }
            None => warn(format_args!("{}: {name}", self.label)),
        }
    }

    pub fn update(&mut self, pos: u64, delivered: Option<u64>) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            if let Some(d) = delivered {
                bar.set_message(format!("{} · {} · {d} delivered", self.unit, self.phase));
            }
        }
    }

    /// Something the user should know, printed whole even while the bar is drawn.
    pub fn note(&self, msg: impl Display) {
        let line = format!("{}: {msg}", self.label);
        match &self.bar {
            Some(bar) => bar.suspend(|| warn(&line)),
            None => warn(&line),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
