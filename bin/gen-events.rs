//! gen-events: writes random events as JSON Lines on stdout at a steady rate.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::gen_events::Args>()
}
