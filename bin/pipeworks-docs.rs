//! pipeworks-docs: writes every program's man page and shell completions (see `pipeworks::docs`).

fn main() -> std::process::ExitCode {
    pipeworks::docs::main()
}
