//! data-manager: answers JSON-line requests for the last N competitor prices from a CSV feed.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::reprice::feed::Args>()
}
