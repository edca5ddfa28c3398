//! The pure core of `allocate`: given what is ordered, what each warehouse holds and what each
//! warehouse costs, choose who ships what. No names, no JSON, no I/O: items and warehouses are
//! indices, and the caller maps them back.
//!
//! Every strategy first decides which items it ships: all of them when every item's total stock
//! covers its demand, none otherwise; with `partial`, exactly the items whose total stock covers
//! their demand (items never compete for stock, so those can always be shipped together).
//! Then, for the shipped items:
//!
//! - [`Strategy::Cheapest`] finds the warehouse *set* that can ship them and is smallest, then
//!   cheapest (lowest sum of costs), then — between sets of equal count and cost — the one whose
//!   warehouses, listed cheapest first, come first lexicographically. It fills each item from the
//!   set's cheaper warehouses first. The search is an exact branch and bound when at most
//!   [`EXACT_LIMIT`] warehouses stock a shipped item, and the same search stopped after
//!   [`NODE_BUDGET`] nodes beyond that (the best set found by then; [`Allocation::bounded`] says so).
//! - [`Strategy::Greedy`] walks the warehouses cheapest first and takes what each has.
//! - [`Strategy::PerItem`] ships each item from the cheapest warehouse holding all of it, or else
//!   splits it over the warehouses cheapest first.
//!
//! "Cheapest first" is the order of the warehouses' costs, ties (and the default, where a
//! warehouse's cost is its 1-based rank in the list) in list order.

/// Up to this many relevant warehouses, `cheapest` is exact.
pub const EXACT_LIMIT: usize = 30;

/// Search nodes `cheapest` may visit when more than [`EXACT_LIMIT`] warehouses are relevant.
pub const NODE_BUDGET: u64 = 20_000;

/// Up to [`EXACT_LIMIT`] relevant warehouses `cheapest` first tries enumeration by count for this
/// many nodes, before it hands the instance to the branch and bound.
const ENUMERATE_BUDGET: u64 = 2_000;

/// Which reading of "the cheapest shipment" to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Strategy {
    /// Fewest warehouses, then the cheapest set, then fill from the cheaper ones first.
    #[default]
    Cheapest,
    /// Walk warehouses in cost order, taking what each has.
    Greedy,
    /// Each item from the cheapest warehouse holding all of it, else split in cost order.
    PerItem,
}

/// One allocation problem in index form.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    /// Ordered quantity per item; zero means "not ordered".
    pub demand: &'a [u64],
    /// Stock per warehouse and item, row-major: `stock[w * demand.len() + i]`.
    pub stock: &'a [u64],
    /// How many warehouses there are (the rows of `stock`).
    pub warehouses: usize,
    /// Each warehouse's cost, when given; otherwise warehouse `w` costs `w + 1` (its rank).
    pub cost: Option<&'a [f64]>,
}

impl Instance<'_> {
    fn items(&self) -> usize {
        self.demand.len()
    }

    fn stock(&self, w: usize, i: usize) -> u64 {
        self.stock[w * self.items() + i]
    }

    /// The cost of warehouse `w` under the cost model.
    pub fn cost_of(&self, w: usize) -> f64 {
        match self.cost {
            Some(cost) => cost[w],
            None => (w + 1) as f64,
        }
    }

    /// Warehouse indices, cheapest first (ties in list order).
    pub fn cost_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.warehouses).collect();
        if let Some(cost) = self.cost {
            order.sort_by(|&a, &b| cost[a].total_cmp(&cost[b]));
        }
        order
    }

    /// The cost of a set of warehouses, summed in one fixed order (cheapest first) so that the
    /// same set always gets the same floating-point sum, whoever computes it.
    pub fn set_cost(&self, set: &[usize]) -> f64 {
        let rank = self.cost_ranks();
        let mut members: Vec<usize> = set.to_vec();
        members.sort_by_key(|&w| rank[w]);
        members.iter().map(|&w| self.cost_of(w)).sum()
    }

    /// Position of each warehouse in [`Instance::cost_order`].
    pub fn cost_ranks(&self) -> Vec<usize> {
        let mut rank = vec![0; self.warehouses];
        for (r, w) in self.cost_order().into_iter().enumerate() {
            rank[w] = r;
        }
        rank
    }
}

/// `qty` units of item `item` from warehouse `warehouse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub warehouse: usize,
    pub item: usize,
    pub qty: u64,
}

/// What a strategy decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    /// Sorted by warehouse (list order), then item; quantities are never zero.
    pub picks: Vec<Pick>,
    /// Items ordered (demand > 0) that are not shipped, in item order.
    pub unshipped: Vec<usize>,
    /// `cheapest` stopped its search at the node budget: the plan may not be the cheapest.
    pub bounded: bool,
    /// How many warehouses stocked a shipped item (what decides exact or bounded search).
    pub relevant: usize,
}

impl Allocation {
    /// The distinct warehouses used, in list order.
    pub fn warehouses(&self) -> Vec<usize> {
        let mut used: Vec<usize> = self.picks.iter().map(|p| p.warehouse).collect();
        used.dedup();
        used
    }
}

/// Allocate one instance. Reuse one `Allocator` across problems: it keeps its scratch space.
#[derive(Debug, Default)]
pub struct Allocator {
    search: Search,
}

impl Allocator {
    pub fn new() -> Self {
        Allocator::default()
    }

    /// An allocator whose `cheapest` always runs the branch and bound (for tests: enumeration
    /// answers most instances first, so this is how the branch and bound is checked on them).
    #[cfg(test)]
    pub(crate) fn branch_and_bound_only() -> Self {
        let mut allocator = Allocator::default();
        allocator.search.skip_enumeration = true;
        allocator
    }

    pub fn allocate(
        &mut self,
        inst: &Instance<'_>,
        strategy: Strategy,
        partial: bool,
    ) -> Allocation {
        let m = inst.items();
        debug_assert_eq!(inst.stock.len(), m * inst.warehouses);
        let mut want: Vec<u64> = inst.demand.to_vec();
        let mut unshipped = Vec::new();
        for (i, want) in want.iter_mut().enumerate() {
            if *want == 0 {
                continue;
            }
            let total = (0..inst.warehouses).fold(0u64, |s, w| s.saturating_add(inst.stock(w, i)));
            if total < *want {
                unshipped.push(i);
            }
        }
        if !unshipped.is_empty() {
            if !partial {
                let ordered = (0..m).filter(|&i| inst.demand[i] > 0).collect();
                return Allocation {
                    unshipped: ordered,
                    ..Allocation::default()
                };
            }
            for &i in &unshipped {
                want[i] = 0;
            }
        }
        let mut allocation = Allocation {
            unshipped,
            ..Allocation::default()
        };
        if want.iter().all(|&q| q == 0) {
            return allocation;
        }
        let order = inst.cost_order();
        let mut picks = match strategy {
            Strategy::Greedy => fill(inst, &want, &order),
            Strategy::PerItem => per_item(inst, &want, &order),
            Strategy::Cheapest => {
                let found = self.search.run(inst, &want, &order);
                allocation.bounded = found.bounded;
                allocation.relevant = found.relevant;
                fill(inst, &want, &found.set)
            }
        };
        picks.sort_unstable_by_key(|p| (p.warehouse, p.item));
        allocation.picks = picks;
        allocation
    }
}

/// Take each item from `warehouses` in the given order until its demand is met.
fn fill(inst: &Instance<'_>, want: &[u64], warehouses: &[usize]) -> Vec<Pick> {
    let mut left = want.to_vec();
    let mut unmet = left.iter().filter(|&&q| q > 0).count();
    let mut picks = Vec::with_capacity(2 * unmet);
    for &w in warehouses {
        if unmet == 0 {
            break;
        }
        for (item, left) in left.iter_mut().enumerate() {
            let qty = (*left).min(inst.stock(w, item));
            if qty > 0 {
                *left -= qty;
                unmet -= usize::from(*left == 0);
                picks.push(Pick {
                    warehouse: w,
                    item,
                    qty,
                });
            }
        }
    }
    debug_assert!(
        left.iter().all(|&q| q == 0),
        "fill is only asked for what stock covers"
    );
    picks
}

fn per_item(inst: &Instance<'_>, want: &[u64], order: &[usize]) -> Vec<Pick> {
    let mut picks = Vec::new();
    for (item, &qty) in want.iter().enumerate() {
        if qty == 0 {
            continue;
        }
        if let Some(&w) = order.iter().find(|&&w| inst.stock(w, item) >= qty) {
            picks.push(Pick {
                warehouse: w,
                item,
                qty,
            });
            continue;
        }
        let mut left = qty;
        for &w in order {
            let take = left.min(inst.stock(w, item));
            if take > 0 {
                left -= take;
                picks.push(Pick {
                    warehouse: w,
                    item,
                    qty: take,
                });
            }
        }
    }
    picks
}

/// The set a search settled on, as warehouse indices cheapest first.
struct Found {
    set: Vec<usize>,
    bounded: bool,
    relevant: usize,
}

const FREE: u8 = 0;
const CHOSEN: u8 = 1;
const EXCLUDED: u8 = 2;

/// Branch and bound over warehouse sets, in the compressed space of the relevant warehouses
/// (cost order, index `j`) and the shipped items (index `a`).
///
/// A node is a set of chosen and a set of excluded warehouses. It picks the unmet item with the
/// fewest free warehouses stocking it; one of those must be in any completion, so it branches on
/// which is the first (cheapest) chosen: branch `k` chooses the `k`-th and excludes the ones before.
/// That partitions the completions, so no set is visited twice, and every minimal set is a leaf.
///
/// Bounds, from the free warehouses only: an item whose free stock falls short kills the node;
/// each unmet item needs at least as many more warehouses as its largest free stocks take to
/// cover it, and all of them together need at least as many as their largest useful totals take to
/// cover the total missing units, and items no free warehouse supplies two of add up their counts,
/// so the set needs at least the largest of those counts (`need`);
/// and those `need` more warehouses each supply something still missing (else the set is not
/// minimal), so they cost at least the `need` cheapest such warehouses.
#[derive(Debug, Default)]
struct Search {
    /// Relevant warehouses, cheapest first: their index in the instance.
    warehouse: Vec<usize>,
    cost: Vec<f64>,
    /// Stock capped at demand, `cap[j * items + a]`.
    cap: Vec<u64>,
    items: usize,
    /// Per item: relevant warehouses stocking it, cheapest first.
    cheapest: Vec<Vec<u32>>,
    /// Per item: relevant warehouses stocking it, largest stock first.
    largest: Vec<Vec<u32>>,
    status: Vec<u8>,
    deficit: Vec<u64>,
    chosen: Vec<u32>,
    chosen_cost: f64,
    /// Deficits and costs before each choice, to restore them exactly.
    undo: Vec<u64>,
    undo_cost: Vec<f64>,
    excluded_log: Vec<u32>,
    /// Scratch: what each free warehouse holds of the missing units.
    units: Vec<u64>,
    /// Scratch: the bound set of a node.
    cheapest_useful: Vec<u32>,
    /// Scratch: a bound set in rank order.
    tie: Vec<u32>,
    /// Scratch: each unmet item's own count bound.
    item_need: Vec<(usize, usize)>,
    /// Per item: a bit per relevant warehouse stocking it (when there are at most 64).
    suppliers: Vec<u64>,
    /// Scratch of `enumerate`: per index `j`, the total and the largest capped stock of each item
    /// over warehouses `j..`; and the deficits at each depth.
    suffix: Vec<u64>,
    suffix_max: Vec<u64>,
    levels: Vec<u64>,
    /// Go straight to the branch and bound (tests).
    skip_enumeration: bool,
    best: Option<Best>,
    slack: f64,
    nodes: u64,
    budget: u64,
}

#[derive(Debug, Clone)]
struct Best {
    count: usize,
    cost: f64,
    /// Members by `j`, ascending (so cheapest first).
    members: Vec<u32>,
}

/// One level of the explicit search stack.
struct Frame {
    item: usize,
    /// Next position in `cheapest[item]` to try.
    next: usize,
    /// The warehouse this frame's current branch chose, to undo.
    current: Option<u32>,
    log_start: usize,
}

enum Node {
    Leaf,
    Pruned,
    Branch(usize),
}

impl Search {
    fn run(&mut self, inst: &Instance<'_>, want: &[u64], order: &[usize]) -> Found {
        let active: Vec<usize> = (0..want.len()).filter(|&i| want[i] > 0).collect();
        self.items = active.len();
        self.warehouse.clear();
        self.cost.clear();
        self.cap.clear();
        for &w in order {
            if active.iter().any(|&i| inst.stock(w, i) > 0) {
                self.warehouse.push(w);
                self.cost.push(inst.cost_of(w));
                self.cap
                    .extend(active.iter().map(|&i| inst.stock(w, i).min(want[i])));
            }
        }
        let r = self.warehouse.len();
        self.deficit.clear();
        self.deficit.extend(active.iter().map(|&i| want[i]));
        // Whole costs (ranks included) sum exactly; others get a margin so that rounding never
        // prunes a set that is really as cheap as the best.
        let total: f64 = self.cost.iter().sum();
        let whole = self.cost.iter().all(|c| c.fract() == 0.0) && total < 2f64.powi(52);
        self.slack = if whole { 0.0 } else { 1e-9 * (1.0 + total) };
        if r <= EXACT_LIMIT && !self.skip_enumeration {
            if let Some(best) = self.enumerate(ENUMERATE_BUDGET) {
                return self.found(best, false, r);
            }
        }
        self.cheapest.resize_with(self.items, Vec::new);
        self.largest.resize_with(self.items, Vec::new);
        for a in 0..self.items {
            let cheapest = &mut self.cheapest[a];
            cheapest.clear();
            cheapest.extend((0..r as u32).filter(|&j| self.cap[j as usize * self.items + a] > 0));
            let largest = &mut self.largest[a];
            largest.clear();
            largest.extend_from_slice(cheapest);
            let (cap, items) = (&self.cap, self.items);
            largest.sort_by(|&x, &y| cap[y as usize * items + a].cmp(&cap[x as usize * items + a]));
        }
        self.suppliers.clear();
        if r <= 64 {
            let cheapest = &self.cheapest;
            self.suppliers.extend(
                cheapest
                    .iter()
                    .map(|js| js.iter().fold(0u64, |m, &j| m | 1 << j)),
            );
        }
        self.status.clear();
        self.status.resize(r, FREE);
        self.chosen.clear();
        self.chosen_cost = 0.0;
        self.undo.clear();
        self.undo_cost.clear();
        self.excluded_log.clear();
        self.best = None;
        // The other readings' sets are the first incumbents: they prune from the start, and a
        // search cut off at its budget is still never worse than either.
        let seeds = [fill(inst, want, order), per_item(inst, want, order)];
        for seed in &seeds {
            self.chosen.clear();
            for pick in seed {
                let j = self.warehouse.iter().position(|&w| w == pick.warehouse);
                let j = j.expect("a pick comes from a warehouse stocking a shipped item") as u32;
                if !self.chosen.contains(&j) {
                    self.chosen.push(j);
                }
            }
            self.leaf();
        }
        self.chosen.clear();
        self.nodes = 0;
        self.budget = if r <= EXACT_LIMIT {
            u64::MAX
        } else {
            NODE_BUDGET
        };
        let bounded = self.search();
        let best = self
            .best
            .take()
            .expect("the order's items are in stock, so a set exists");
        self.found(best, bounded, r)
    }

    fn found(&self, best: Best, bounded: bool, relevant: usize) -> Found {
        Found {
            set: best
                .members
                .iter()
                .map(|&j| self.warehouse[j as usize])
                .collect(),
            bounded,
            relevant,
        }
    }

    /// The exact answer by increasing count: for k = 1, 2, … enumerate the k-sets of relevant
    /// warehouses in rank order (lexicographically, cheapest first) and keep the best cover; the
    /// first k with a cover is the fewest. Per node this costs a pass over the items, against the
    /// branch and bound's sorts and bounds, so on the small instances most lines hold it is several
    /// times faster. `None` when it visits more than `budget` nodes: then the branch and bound
    /// decides.
    ///
    /// Pruning, each exact: a node whose later warehouses cannot meet a deficit (by their total,
    /// or by `left` times their largest stock) has no cover below it; a warehouse that supplies
    /// nothing still missing is never in a fewest-warehouse set (the others would cover without
    /// it, and fewer found none); costs rise with the index, so once the cheapest completion
    /// through warehouse `j` costs more than the best, every later `j` does too; and of two covers
    /// found at the same depth the later one is lexicographically after the earlier.
    fn enumerate(&mut self, budget: u64) -> Option<Best> {
        let (r, m) = (self.warehouse.len(), self.items);
        self.suffix.clear();
        self.suffix.resize((r + 1) * m, 0);
        self.suffix_max.clear();
        self.suffix_max.resize((r + 1) * m, 0);
        for j in (0..r).rev() {
            for a in 0..m {
                let c = self.cap[j * m + a];
                self.suffix[j * m + a] = self.suffix[(j + 1) * m + a].saturating_add(c);
                self.suffix_max[j * m + a] = self.suffix_max[(j + 1) * m + a].max(c);
            }
        }
        self.nodes = 0;
        self.best = None;
        for k in 1..=r {
            self.levels.clear();
            self.levels.extend_from_slice(&self.deficit);
            self.levels.resize((k + 1) * m, 0);
            self.chosen.clear();
            if !self.combinations(0, 0, k, 0.0, budget) {
                self.best = None;
                return None;
            }
            if let Some(best) = self.best.take() {
                return Some(best);
            }
        }
        None
    }

    /// Extend `chosen` (depth members, the last before `from`) by `left` more; `false` when out
    /// of budget. The deficits at each depth are `levels[depth * items..]`.
    fn combinations(
        &mut self,
        depth: usize,
        from: usize,
        left: usize,
        cost: f64,
        budget: u64,
    ) -> bool {
        self.nodes += 1;
        if self.nodes > budget {
            return false;
        }
        let (r, m) = (self.warehouse.len(), self.items);
        let at = depth * m;
        let (deficit, suffix, largest) = (
            &self.levels[at..at + m],
            &self.suffix[from * m..(from + 1) * m],
            &self.suffix_max[from * m..(from + 1) * m],
        );
        let short = (0..m).any(|a| {
            let d = deficit[a];
            d > 0 && (suffix[a] < d || largest[a].saturating_mul(left as u64) < d)
        });
        if short || from + left > r {
            return true;
        }
        for j in from..=r - left {
            let with_j = cost + self.cost[j];
            if let Some(best) = &self.best {
                let bound = self.cost[j + 1..j + left]
                    .iter()
                    .fold(with_j, |s, &c| s + c);
                if bound > best.cost + self.slack {
                    break;
                }
            }
            let (useful, covered) = {
                let (now, next) = self.levels[at..].split_at_mut(m);
                let row = &self.cap[j * m..(j + 1) * m];
                let (mut useful, mut covered) = (false, true);
                for a in 0..m {
                    useful |= now[a] > 0 && row[a] > 0;
                    next[a] = now[a].saturating_sub(row[a]);
                    covered &= next[a] == 0;
                }
                (useful, covered)
            };
            if !useful {
                continue;
            }
            self.chosen.push(j as u32);
            if covered {
                self.leaf();
                self.chosen.pop();
                break;
            }
            if left > 1 && !self.combinations(depth + 1, j + 1, left - 1, with_j, budget) {
                return false;
            }
            self.chosen.pop();
        }
        true
    }

    /// Run the search; returns whether it stopped at the budget.
    fn search(&mut self) -> bool {
        let mut stack: Vec<Frame> = Vec::new();
        match self.visit() {
            Node::Leaf | Node::Pruned => return false,
            Node::Branch(item) => stack.push(self.frame(item)),
        }
        while let Some(frame) = stack.last_mut() {
            if let Some(j) = frame.current.take() {
                self.unchoose(j);
                self.status[j as usize] = EXCLUDED;
                self.excluded_log.push(j);
            }
            let out_of_budget = self.nodes >= self.budget && self.best.is_some();
            let candidates = &self.cheapest[frame.item];
            while frame.next < candidates.len()
                && self.status[candidates[frame.next] as usize] != FREE
            {
                frame.next += 1;
            }
            if out_of_budget || frame.next == candidates.len() {
                for j in self.excluded_log.drain(frame.log_start..) {
                    self.status[j as usize] = FREE;
                }
                // Out of budget, every frame unwinds this way: only the best set found is wanted.
                stack.pop();
                continue;
            }
            let j = candidates[frame.next];
            frame.next += 1;
            frame.current = Some(j);
            self.choose(j);
            if let Node::Branch(item) = self.visit() {
                let next = self.frame(item);
                stack.push(next);
            }
        }
        self.nodes >= self.budget
    }

    fn frame(&self, item: usize) -> Frame {
        Frame {
            item,
            next: 0,
            current: None,
            log_start: self.excluded_log.len(),
        }
    }

    fn choose(&mut self, j: u32) {
        self.status[j as usize] = CHOSEN;
        self.chosen.push(j);
        // Saturating subtraction and float addition cannot be undone exactly: keep what they were.
        self.undo.extend_from_slice(&self.deficit);
        self.undo_cost.push(self.chosen_cost);
        self.chosen_cost += self.cost[j as usize];
        let row = j as usize * self.items;
        for a in 0..self.items {
            self.deficit[a] = self.deficit[a].saturating_sub(self.cap[row + a]);
        }
    }

    fn unchoose(&mut self, j: u32) {
        let popped = self.chosen.pop();
        debug_assert_eq!(popped, Some(j));
        self.status[j as usize] = FREE;
        let from = self.undo.len() - self.items;
        self.deficit.copy_from_slice(&self.undo[from..]);
        self.undo.truncate(from);
        self.chosen_cost = self
            .undo_cost
            .pop()
            .expect("one saved cost per chosen warehouse");
    }

    fn visit(&mut self) -> Node {
        self.nodes += 1;
        if self.deficit.iter().all(|&d| d == 0) {
            self.leaf();
            return Node::Leaf;
        }
        let items = self.items;
        let mut need = 0usize;
        let mut branch = None::<(usize, usize)>;
        self.item_need.clear();
        for a in 0..items {
            let deficit = self.deficit[a];
            if deficit == 0 {
                continue;
            }
            let (mut supply, mut count, mut free) = (0u64, 0usize, 0usize);
            for &j in &self.largest[a] {
                if self.status[j as usize] != FREE {
                    continue;
                }
                free += 1;
                if supply < deficit {
                    supply = supply.saturating_add(self.cap[j as usize * items + a]);
                    count += 1;
                }
            }
            if supply < deficit {
                return Node::Pruned;
            }
            need = need.max(count);
            self.item_need.push((count, a));
            if branch.is_none_or(|(_, fewest)| free < fewest) {
                branch = Some((a, free));
            }
        }
        // Items that no free warehouse supplies two of need separate warehouses: their counts add
        // up. (A greedy pick of such items, largest count first; with at most 64 warehouses.)
        if self.warehouse.len() <= 64 && self.item_need.len() > 1 {
            let free = (0..self.warehouse.len())
                .filter(|&j| self.status[j] == FREE)
                .fold(0u64, |m, j| m | 1 << j);
            self.item_need
                .sort_unstable_by_key(|n| std::cmp::Reverse(n.0));
            let (mut taken, mut disjoint) = (0u64, 0usize);
            for &(count, a) in &self.item_need {
                let suppliers = self.suppliers[a] & free;
                if suppliers & taken == 0 {
                    taken |= suppliers;
                    disjoint += count;
                }
            }
            need = need.max(disjoint);
        }
        // Each more warehouse reduces the total missing units by at most what it holds of them.
        let missing = self.deficit.iter().fold(0u64, |s, &d| s.saturating_add(d));
        self.units.clear();
        for j in 0..self.warehouse.len() {
            if self.status[j] == FREE {
                let row = &self.cap[j * items..(j + 1) * items];
                let units = row
                    .iter()
                    .zip(&self.deficit)
                    .fold(0u64, |s, (&c, &d)| s.saturating_add(c.min(d)));
                self.units.push(units);
            }
        }
        self.units.sort_unstable_by(|a, b| b.cmp(a));
        let mut supply = 0u64;
        let by_units = self.units.iter().take_while(|&&u| {
            let short = supply < missing;
            supply = supply.saturating_add(u);
            short
        });
        need = need.max(by_units.count());
        // The bound set: the `need` cheapest free warehouses that supply something missing.
        let mut bound = self.chosen_cost;
        self.cheapest_useful.clear();
        for j in 0..self.warehouse.len() {
            if self.cheapest_useful.len() == need {
                break;
            }
            if self.status[j] == FREE && self.supplies_a_deficit(j) {
                bound += self.cost[j];
                self.cheapest_useful.push(j as u32);
            }
        }
        if let Some(best) = &self.best {
            let count = self.chosen.len() + need;
            if count > best.count || (count == best.count && bound > best.cost + self.slack) {
                return Node::Pruned;
            }
            // A tie in count and cost goes to the first set in rank order, and no completion comes
            // before the bound set (its k-th member is never after theirs). Needs exact sums.
            if count == best.count
                && self.slack == 0.0
                && bound == best.cost
                && self.cheapest_useful.len() == need
            {
                self.tie.clear();
                self.tie.extend_from_slice(&self.chosen);
                self.tie.extend_from_slice(&self.cheapest_useful);
                self.tie.sort_unstable();
                if self.tie >= best.members {
                    return Node::Pruned;
                }
            }
        }
        // Every completion has at least `need` more warehouses, each supplying something missing,
        // so if the bound set ships the order it is this subtree's best: fewest, cheapest, and
        // (the lowest-ranked useful ones) first in the tie order.
        if self.covers(&self.cheapest_useful) {
            let added = std::mem::take(&mut self.cheapest_useful);
            self.chosen.extend_from_slice(&added);
            self.leaf();
            self.chosen.truncate(self.chosen.len() - added.len());
            self.cheapest_useful = added;
            return Node::Pruned;
        }
        Node::Branch(branch.expect("a node with a deficit has an unmet item").0)
    }

    /// Whether adding `extra` to the chosen warehouses meets every deficit.
    fn covers(&self, extra: &[u32]) -> bool {
        (0..self.items).all(|a| {
            let supply = extra.iter().fold(0u64, |s, &j| {
                s.saturating_add(self.cap[j as usize * self.items + a])
            });
            supply >= self.deficit[a]
        })
    }

    fn supplies_a_deficit(&self, j: usize) -> bool {
        let row = &self.cap[j * self.items..(j + 1) * self.items];
        row.iter().zip(&self.deficit).any(|(&c, &d)| c > 0 && d > 0)
    }

    fn leaf(&mut self) {
        let mut members = self.chosen.clone();
        members.sort_unstable();
        // The canonical sum: cheapest first, as `Instance::set_cost` does.
        let cost: f64 = members.iter().map(|&j| self.cost[j as usize]).sum();
        let better = match &self.best {
            None => true,
            Some(best) => is_better(
                (members.len(), cost, &members),
                (best.count, best.cost, &best.members),
            ),
        };
        if better {
            self.best = Some(Best {
                count: members.len(),
                cost,
                members,
            });
        }
    }
}

/// The cost model's order on warehouse sets: fewer warehouses, then a lower cost, then the set
/// whose members (cheapest first) come first lexicographically.
pub(crate) fn is_better(a: (usize, f64, &[u32]), b: (usize, f64, &[u32])) -> bool {
    use std::cmp::Ordering::*;
    match a.0.cmp(&b.0) {
        Less => true,
        Greater => false,
        Equal => match a.1.total_cmp(&b.1) {
            Less => true,
            Greater => false,
            Equal => a.2 < b.2,
        },
    }
}
