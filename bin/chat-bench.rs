//! chat-bench: opens many WebSocket chat clients against a server and writes one JSON line per
//! measured step (and `{"max_clients":N}` after a search).

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::chat_bench::Args>()
}
