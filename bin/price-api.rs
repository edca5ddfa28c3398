//! price-api: the marketplace stub of the repricing loop (HTTP, JSON answers).

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::reprice::api::Args>()
}
