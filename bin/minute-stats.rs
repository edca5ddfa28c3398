//! minute-stats: reads metric events as JSON Lines, writes min/max/mean/median per type per period.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::minute_stats::Args>()
}
