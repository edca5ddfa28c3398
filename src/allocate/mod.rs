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

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::error::Result;
use crate::input::{parse_object, BadLines, InputArgs, Line};
use crate::output::Output;
use crate::runner::warn;
use parse::{check_warehouses, ProblemLine};
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
            noted_bounded: false,
        }
    }

    /// Answer one input line, or report it as bad.
    pub fn line(&mut self, line: &Line<'_>, bad: &mut BadLines, out: &mut Output<impl Write>) -> Result<()> {
        let text = match &line.text {
            Ok(text) => *text,
            Err(e) => return bad.report(line.at, e),
        };
        let problem = match parse_object::<ProblemLine>(text) {
            Ok(problem) => problem,
            Err(reason) => return bad.report(line.at, reason),
        };
        let warehouses = &problem.warehouses.0;
        let cost = match check_warehouses(warehouses.iter().map(|w| (&w.name, w.cost))) {
            Ok(cost) => cost,
            Err(reason) => return bad.report(line.at, reason),
        };
        let order = &problem.order.0;
        self.demand.clear();
        self.demand.extend(order.iter().map(|(_, q)| *q));
        let m = order.len();
        self.stock.clear();
        self.stock.resize(m * warehouses.len(), 0);
        let index = ItemIndex::new(order.iter().map(|(k, _)| k.as_ref()));
        for (w, warehouse) in warehouses.iter().enumerate() {
            for (item, qty) in &warehouse.inventory.0 {
                if let Some(i) = index.find(item) {
                    self.stock[w * m + i] = *qty;
                }
            }
        }
        let instance = Instance {
            demand: &self.demand,
            stock: &self.stock,
            warehouses: warehouses.len(),
            cost: cost.as_deref(),
        };
        let allocation = self.allocator.allocate(&instance, self.strategy, self.partial);
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
            warehouse: &|w| warehouses[w].name.as_ref(),
            item: &|i| order[i].0.as_ref(),
        };
        if self.partial {
            let unshipped = Unshipped {
                items: &allocation.unshipped,
                name: &|i| order[i].0.as_ref(),
                qty: &|i| order[i].1,
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

/// Finds an order item by name: a scan for small orders, a hash map for large ones.
pub(crate) enum ItemIndex<'a> {
    Scan(Vec<&'a str>),
    Hash(HashMap<&'a str, usize>),
}

impl<'a> ItemIndex<'a> {
    pub(crate) fn new(names: impl ExactSizeIterator<Item = &'a str>) -> Self {
        if names.len() <= 16 {
            ItemIndex::Scan(names.collect())
        } else {
            ItemIndex::Hash(names.enumerate().map(|(i, n)| (n, i)).collect())
        }
    }

    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        match self {
            ItemIndex::Scan(names) => names.iter().position(|n| *n == name),
            ItemIndex::Hash(map) => map.get(name).copied(),
        }
    }
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
