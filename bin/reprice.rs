//! reprice: reads tick lines, writes one new price line per book per tick.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::reprice::algorithm::Args>()
}
