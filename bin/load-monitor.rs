//! load-monitor: records CPU/RAM load per server (HTTP or JSON lines) and reports the last hour
//! by minute and the last day by hour.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::load_monitor::Args>()
}
