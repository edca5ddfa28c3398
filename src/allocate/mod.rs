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

pub mod live;
pub mod parse;
pub mod solve;

use std::io::Write;
use std::path::PathBuf;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::error::Result;
use crate::input::{describe_json_error, parse_object, BadLines, InputArgs, Line};
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
    pub input: InputArgs,
}

/// Run allocate over the configured input, writing one line per problem (or order) to `out`.
pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    if config.inventory.is_some() || config.state.is_some() {
        return live::run(config, out);
    }
    let mut bad = config.input.bad_lines();
    let mut solver = ProblemSolver::new(config.strategy, config.partial);
    let batches = config.input.open()?.spawn(4096);
    for batch in batches {
        for line in batch?.iter() {
            solver.line(&line, &mut bad, out)?;
        }
        // Lines that were waiting are answered; flush so a live producer sees its answers now.
        out.flush()?;
    }
    bad.finish()
}

/// Solves problem lines one after another, reusing its buffers.
pub struct ProblemSolver {
    strategy: Strategy,
    partial: bool,
    allocator: Allocator,
    demand: Vec<u64>,
    stock: Vec<u64>,
    cost: Vec<f64>,
    noted_bounded: bool,
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
            noted_bounded: false,
        }
    }

    /// Answer one input line, or report it as bad.
    pub fn line(
        &mut self,
        line: &Line<'_>,
        bad: &mut BadLines,
        out: &mut Output<impl Write>,
    ) -> Result<()> {
        let text = match &line.text {
            Ok(text) => *text,
            Err(e) => return bad.report(line.at, e),
        };
        let seed = ProblemSeed {
            demand: &mut self.demand,
            stock: &mut self.stock,
            cost: &mut self.cost,
        };
        let problem = match parse_problem(text, seed) {
            Ok(problem) => problem,
            Err(reason) => return bad.report(line.at, reason),
        };
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
        if allocation.relevant > solve::EXACT_LIMIT && !self.noted_bounded {
            self.noted_bounded = true;
            warn(format_args!(
                "{}: {} warehouses stock this order's items; above {} the plan comes from a search \
                 cut off at {} nodes and may not be the cheapest (noted once)",
                line.at,
                allocation.relevant,
                solve::EXACT_LIMIT,
                solve::NODE_BUDGET
            ));
        }
        let shipments = Shipments {
            picks: &allocation.picks,
            warehouse: &|w| warehouses[w].as_ref(),
            item: &|i| order[i].as_ref(),
        };
        if self.partial {
            let unshipped = Unshipped {
                items: &allocation.unshipped,
                name: &|i| order[i].as_ref(),
                qty: &|i| self.demand[i],
            };
            out.emit(&PartialLine {
                shipments,
                unshipped,
            })
        } else {
            out.emit(&shipments)
        }
    }
}

/// Parse a problem line into the seed's buffers, with the messages of [`parse_object`].
fn parse_problem<'a>(
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
