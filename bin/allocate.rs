//! allocate: reads order/warehouse problems (or orders against one inventory) as JSON Lines,
//! writes the cheapest shipment of each.

fn main() -> std::process::ExitCode {
    pipeworks::runner::main::<pipeworks::allocate::Args>()
}
