//! ticker: writes `{"tick":N,"at":…}` lines on an absolute schedule, to stdout or a named pipe.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::reprice::ticker::Args>()
}
