//! allocate: reads order/warehouse problems (or orders against one inventory) as JSON Lines,
//! writes the cheapest shipment of each.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pipeworks::allocate::{self, Config, Strategy};
use pipeworks::input::InputArgs;
use pipeworks::output::Output;

/// The cheapest shipment of an order from warehouses listed cheapest first.
///
/// Each input line is a problem `{"order":{item: qty},"warehouses":[{"name","inventory"},…]}` and
/// each output line its shipments `[{"owd":{"apple":5}},…]`, warehouses in input (cost) order.
/// The default strategy ships the whole order or nothing (`[]`), from the fewest warehouses, then
/// the cheapest set (sum of list ranks, or of `"cost"` fields when every warehouse has one), filling
/// each item from the cheaper warehouses first; it is exact up to 30 warehouses stocking the order.
/// With --inventory, input lines are orders drawn down from one inventory; with --state that
/// inventory survives crashes (see the README for the exact guarantee).
#[derive(Parser, Debug)]
#[command(
    name = "allocate",
    version,
    after_help = "\
Examples:
  echo '{\"order\":{\"apple\":10},\"warehouses\":[{\"name\":\"owd\",\"inventory\":{\"apple\":5}},\
{\"name\":\"dm\",\"inventory\":{\"apple\":10}}]}' | allocate
      -> [{\"dm\":{\"apple\":10}}]
  allocate --strategy greedy problems.jsonl | jq -c 'length'
  tail -f orders.jsonl | allocate --inventory warehouses.json --state stock.json --partial

Order lines for --inventory: {\"id\":\"o-1\",\"items\":{\"apple\":5}} or {\"apple\":5}; answers:
  {\"id\":\"o-1\",\"seq\":1,\"shipments\":[{\"owd\":{\"apple\":5}}]}"
)]
struct Args {
    /// How to read "cheapest": fewest warehouses then cheapest set (cheapest), plain fill in cost
    /// order (greedy), or each item from one warehouse when one holds it all (per-item).
    #[arg(long, value_enum, default_value_t = Strategy::Cheapest)]
    strategy: Strategy,

    /// Ship the items that can be shipped completely and report the rest:
    /// {"shipments":[…],"unshipped":{item: ordered qty}}.
    #[arg(long)]
    partial: bool,

    /// Live mode: read orders and draw them down from this warehouse list (a JSON array, or an
    /// object with a "warehouses" array), or from the stock in Redis at redis://HOST:PORT/KEY,
    /// shared by every allocate using that KEY.
    #[arg(long, value_name = "FILE")]
    inventory: Option<PathBuf>,

    /// Live mode: keep the remaining inventory in FILE, replaced atomically after each batch.
    /// After a crash, restart with the same FILE and the orders after its "seq"; the last batch's
    /// lines are printed again first (deduplicate by seq).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// With --inventory redis://HOST:PORT/KEY: seed KEY from this warehouse list when it holds no
    /// inventory yet (ignored, with a note, when it does).
    #[arg(long, value_name = "FILE")]
    seed_from: Option<PathBuf>,

    /// With --inventory redis://HOST:PORT/KEY: print the current stock as a warehouse list (the
    /// seed file's shape) and stop.
    #[arg(long)]
    show: bool,

    #[command(flatten)]
    input: InputArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    pipeworks::run("allocate", || {
        let config = Config {
            strategy: args.strategy,
            partial: args.partial,
            inventory: args.inventory,
            state: args.state,
            seed_from: args.seed_from,
            show: args.show,
            input: args.input,
        };
        allocate::run(&config, &mut Output::stdout())
    })
}
