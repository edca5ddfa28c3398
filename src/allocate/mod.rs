//! allocate: the cheapest shipment of an order from warehouses listed cheapest first (seed `000_…`,
//! part 1).
//!
//! Input, one problem per line (`cost` optional, see below):
//!
//! ```text
//! {"order":{"apple":5,"banana":5},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"banana":5}}]}
//! ```
//!
//! Output, one line per problem: the shipments, warehouses in their input (cost) order, items
//! within a warehouse in the order's item order, and nothing else:
//!
//! ```text
//! [{"owd":{"apple":5}},{"dm":{"banana":5}}]
//! ```
//!
//! The cost model (strategy `cheapest`, the default), in priority order:
//! 1. the whole order ships, or nothing does (`[]`);
//! 2. from the fewest warehouses;
//! 3. among those, the cheapest set: the lowest sum of the warehouses' cost ranks (1 for the first
//!    listed, 2 for the second, …), or of their `"cost"` fields when every warehouse has one;
//!    equal sums go to the set whose warehouses, cheapest first, come first;
//! 4. within the set, each item is filled from the cheaper warehouses first.
//!
//! Choosing the set is a set-cover problem; [`solve`] solves it exactly by branch and bound while
//! at most 30 warehouses stock an ordered item, and by the same search cut off at a node budget
//! beyond that (said once on stderr). `--strategy greedy` and `--strategy per-item` give the other
//! common readings. Zero quantities are ignored; an empty order or warehouse list ships `[]`.
//!
//! `--partial` ships the items whose total stock covers them and reports the others, so each line
//! becomes `{"shipments":[…],"unshipped":{"banana":5}}` (`unshipped` holds the ordered quantity of
//! every item not shipped at all; it is `{}` when everything ships).
//!
//! With `--inventory FILE`, lines are orders drawn from one inventory instead; see [`live`].

pub mod fast;
pub mod live;
pub mod parse;
pub mod redis_stock;
pub mod solve;

use std::io::Write;
use std::path::PathBuf;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::error::Result;
use crate::input::{
    describe_json_error, parse_object, parse_workers, spawn_parsed_with, Batch, InputArgs,
};
use crate::output::Output;
use crate::runner::warn;
use parse::{Problem, ProblemSeed};
pub use solve::{Allocation, Allocator, Instance, Pick, Strategy};

/// What allocate is asked to do (the binary's flags, already parsed).
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub strategy: Strategy,
    pub partial: bool,
    /// Live mode: draw orders from this inventory (a JSON list of warehouses).
    pub inventory: Option<PathBuf>,
    /// Live mode: keep the remaining inventory in this file, crash-safe.
    pub state: Option<PathBuf>,
    /// `--inventory redis://…`: seed the key from this warehouse file when it holds nothing.
    pub seed_from: Option<PathBuf>,
    /// `--inventory redis://…`: print the current stock as a warehouse list and stop.
    pub show: bool,
    pub input: InputArgs,
}

/// Run allocate over the configured input, writing one line per problem (or order) to `out`.
///
/// Problems do not depend on each other, so batches of lines are parsed and solved on every core
/// ([`spawn_parsed_with`], one solver per thread) and their answers written here in input order.
pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    if let Some(url) = config
        .inventory
        .as_deref()
        .and_then(|p| p.to_str())
        .filter(|p| p.starts_with("redis://"))
    {
        return redis_stock::run(config, url, out);
    }
    if config.seed_from.is_some() || config.show {
        return Err(crate::error::Error::usage(
            "--seed-from and --show go with --inventory redis://HOST:PORT/KEY",
        ));
    }
    if config.inventory.is_some() || config.state.is_some() {
        return live::run(config, out);
    }
    let mut bad = config.input.bad_lines();
    let (strategy, partial) = (config.strategy, config.partial);
    let batches = spawn_parsed_with(
        config.input.open()?,
        parse_workers(8),
        move || ProblemSolver::new(strategy, partial),
        ProblemSolver::batch,
    );
    let mut noted_bounded = false;
    for item in batches {
        let (batch, answers) = item?;
        if let Some((at, relevant)) = answers.bounded.filter(|_| !noted_bounded) {
            noted_bounded = true;
            let line = batch.location(at);
            warn(format_args!(
                "{line}: {relevant} warehouses stock this order's items; above {} the plan comes \
                 from a search cut off at {} nodes and may not be the cheapest (noted once)",
                solve::EXACT_LIMIT,
                solve::NODE_BUDGET
            ));
        }
        let mut written = 0;
        for (line, end) in batch.iter().zip(&answers.ends) {
            match end {
                Ok(end) => {
                    out.write_lines(&answers.text[written..*end])?;
                    written = *end;
                }
                Err(reason) => bad.report(line.at, reason)?,
            }
        }
        // Lines that were waiting are answered; flush so a live producer sees its answers now.
        out.flush()?;
    }
    bad.finish()
}

/// The answers to one batch of problem lines.
#[derive(Debug, Default)]
pub struct Answers {
    /// The output lines, each ending in a newline.
    pub text: Vec<u8>,
    /// Per input line: where its answer ends in `text`, or why the line is bad.
    pub ends: Vec<std::result::Result<usize, String>>,
    /// The first line whose plan came from the bounded search, and how many warehouses were
    /// relevant there.
    pub bounded: Option<(usize, usize)>,
}

/// Solves problem lines one after another, reusing its buffers.
pub struct ProblemSolver {
    strategy: Strategy,
    partial: bool,
    allocator: Allocator,
    demand: Vec<u64>,
    stock: Vec<u64>,
    cost: Vec<f64>,
    scratch: fast::Scratch,
}

impl ProblemSolver {
    pub fn new(strategy: Strategy, partial: bool) -> Self {
        ProblemSolver {
            strategy,
            partial,
            allocator: Allocator::new(),
            demand: Vec::new(),
            stock: Vec::new(),
            cost: Vec::new(),
            scratch: fast::Scratch::default(),
        }
    }

    /// Answer every line of a batch.
    pub fn batch(&mut self, batch: &mut Batch) -> Answers {
        let mut answers = Answers {
            // Room for a typical answer per line, so a batch's answers are rarely copied to grow.
            text: Vec::with_capacity(batch.len() * 160),
            ends: Vec::with_capacity(batch.len()),
            bounded: None,
        };
        for (i, line) in batch.iter().enumerate() {
            let end = match line.text {
                Ok(text) => self.answer(text, &mut answers.text).map(|relevant| {
                    if relevant > solve::EXACT_LIMIT && answers.bounded.is_none() {
                        answers.bounded = Some((i, relevant));
                    }
                    answers.text.len()
                }),
                Err(e) => Err(e.to_string()),
            };
            answers.ends.push(end);
        }
        answers
    }

    /// Append the answer to one problem line to `out` as a JSON line, or say why the line is bad.
    /// Returns how many warehouses stocked the order's items (above [`solve::EXACT_LIMIT`] the
    /// plan comes from a bounded search).
    pub fn answer(&mut self, text: &str, out: &mut Vec<u8>) -> std::result::Result<usize, String> {
        let seed = ProblemSeed {
            demand: &mut self.demand,
            stock: &mut self.stock,
            cost: &mut self.cost,
        };
        let problem = parse_problem(text, seed, &mut self.scratch)?;
        let (order, warehouses) = (&problem.items, &problem.warehouses);
        let instance = Instance {
            demand: &self.demand,
            stock: &self.stock,
            warehouses: warehouses.len(),
            cost: problem.has_cost.then_some(&self.cost[..]),
        };
        let allocation = self
            .allocator
            .allocate(&instance, self.strategy, self.partial);
        let shipments = Shipments {
            picks: &allocation.picks,
            warehouse: &|w| warehouses[w].as_ref(),
            item: &|i| order[i].as_ref(),
        };
        let written = if self.partial {
            let unshipped = Unshipped {
                items: &allocation.unshipped,
                name: &|i| order[i].as_ref(),
                qty: &|i| self.demand[i],
            };
            serde_json::to_writer(
                &mut *out,
                &PartialLine {
                    shipments,
                    unshipped,
                },
            )
        } else {
            serde_json::to_writer(&mut *out, &shipments)
        };
        written.expect("serializing to memory cannot fail");
        out.push(b'\n');
        Ok(allocation.relevant)
    }
}

/// Parse a problem line into the seed's buffers: by the fast reader when the line has the common
/// shape, else by serde, which also words every error (with the messages of [`parse_object`]).
fn parse_problem<'a>(
    text: &'a str,
    mut seed: ProblemSeed<'_>,
    scratch: &mut fast::Scratch,
) -> std::result::Result<Problem<'a>, String> {
    match fast::parse(text, &mut seed, scratch) {
        Some(problem) => Ok(problem),
        None => parse_problem_serde(text, seed),
    }
}

/// Parse a problem line with serde_json: the reference reading.
fn parse_problem_serde<'a>(
    text: &'a str,
    seed: ProblemSeed<'_>,
) -> std::result::Result<Problem<'a>, String> {
    use serde::de::DeserializeSeed;
    if !text.trim_start().starts_with('{') {
        // Let the shared parser say what the line is instead.
        parse_object::<serde::de::IgnoredAny>(text)?;
    }
    let mut de = serde_json::Deserializer::from_str(text);
    seed.deserialize(&mut de)
        .and_then(|problem| de.end().map(|()| problem))
        .map_err(|e| describe_json_error(text, &e))
}

type NameOf<'a> = &'a dyn Fn(usize) -> &'a str;

/// The shipment list `[{"owd":{"apple":5}},…]` of an allocation, written straight from its picks
/// (sorted by warehouse, then item), so key order is exactly the picks' order.
pub struct Shipments<'a> {
    pub picks: &'a [Pick],
    pub warehouse: NameOf<'a>,
    pub item: NameOf<'a>,
}

impl Serialize for Shipments<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let groups = self.picks.chunk_by(|a, b| a.warehouse == b.warehouse);
        let mut seq = s.serialize_seq(None)?;
        for group in groups {
            seq.serialize_element(&OneWarehouse {
                picks: group,
                warehouse: self.warehouse,
                item: self.item,
            })?;
        }
        seq.end()
    }
}

struct OneWarehouse<'a> {
    picks: &'a [Pick],
    warehouse: NameOf<'a>,
    item: NameOf<'a>,
}

impl Serialize for OneWarehouse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry((self.warehouse)(self.picks[0].warehouse), &Items(self))?;
        map.end()
    }
}

struct Items<'a, 'b>(&'b OneWarehouse<'a>);

impl Serialize for Items<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.picks.len()))?;
        for pick in self.0.picks {
            map.serialize_entry((self.0.item)(pick.item), &pick.qty)?;
        }
        map.end()
    }
}

/// The `unshipped` object of `--partial`: item → ordered quantity, in the order's item order.
pub struct Unshipped<'a> {
    pub items: &'a [usize],
    pub name: NameOf<'a>,
    pub qty: &'a dyn Fn(usize) -> u64,
}

impl Serialize for Unshipped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.items.len()))?;
        for &i in self.items {
            map.serialize_entry((self.name)(i), &(self.qty)(i))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct PartialLine<'a> {
    shipments: Shipments<'a>,
    unshipped: Unshipped<'a>,
}

#[cfg(test)]
mod tests;

pub use cli::Args;

/// The command line of `allocate`: its doc comments are `allocate --help`.
mod cli {
    use std::path::PathBuf;

    use crate::allocate::{self, Config, Strategy};
    use crate::input::InputArgs;
    use clap::Parser;

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
    pub struct Args {
        /// How to read "cheapest": fewest warehouses then cheapest set (cheapest), plain fill in cost
        /// order (greedy), or each item from one warehouse when one holds it all (per-item).
        #[arg(help_heading = "Allocation", long, value_enum, default_value_t = Strategy::Cheapest)]
        strategy: Strategy,

        /// Ship the items that can be shipped completely and report the rest:
        /// {"shipments":[…],"unshipped":{item: ordered qty}}.
        #[arg(help_heading = "Allocation", long)]
        partial: bool,

        /// Live mode: read orders and draw them down from this warehouse list (a JSON array, or an
        /// object with a "warehouses" array), or from the stock in Redis at redis://HOST:PORT/KEY,
        /// shared by every allocate using that KEY.
        #[arg(help_heading = "Live inventory", long, value_name = "FILE")]
        inventory: Option<PathBuf>,

        /// Live mode: keep the remaining inventory in FILE, replaced atomically after each batch.
        /// After a crash, restart with the same FILE and the orders after its "seq"; the last batch's
        /// lines are printed again first (deduplicate by seq).
        #[arg(help_heading = "Live inventory", long, value_name = "FILE")]
        state: Option<PathBuf>,

        /// With --inventory redis://HOST:PORT/KEY: seed KEY from this warehouse list when it holds no
        /// inventory yet (ignored, with a note, when it does).
        #[arg(help_heading = "Live inventory", long, value_name = "FILE")]
        seed_from: Option<PathBuf>,

        /// With --inventory redis://HOST:PORT/KEY: print the current stock as a warehouse list (the
        /// seed file's shape) and stop.
        #[arg(help_heading = "Live inventory", long)]
        show: bool,

        #[command(flatten)]
        input: InputArgs,
    }

    impl crate::runner::Program for Args {
        const NAME: &'static str = "allocate";

        fn run(self, process: &mut crate::runner::Process) -> crate::error::Result<()> {
            let args = self;
            let config = Config {
                strategy: args.strategy,
                partial: args.partial,
                inventory: args.inventory,
                state: args.state,
                seed_from: args.seed_from,
                show: args.show,
                input: args.input,
            };
            allocate::run(&config, process.output())
        }
    }
}
