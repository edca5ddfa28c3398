//! window-agg: reads events as JSON Lines, writes the sliding N-minute summary by type and tracking id.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::window_agg::Args>()
}
