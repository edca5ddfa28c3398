//! chat-relay: serves a WebSocket chat room from forked workers; stdin lines are bot messages,
//! stdout is every message in the room as JSON Lines.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::chat::Args>()
}
