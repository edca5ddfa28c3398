//! Unit tests for every seed case and semantic rule, and property tests of the solver against a
//! brute-force oracle.

use proptest::prelude::{
    any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig,
    TestCaseError,
};
use proptest::strategy::Strategy as Gen;

use super::*;

/// Answer one problem line as the program would.
fn answer(text: &str, strategy: Strategy, partial: bool) -> Result<String, String> {
    let mut out = Vec::new();
    ProblemSolver::new(strategy, partial)
        .answer(text, &mut out)
        .map_err(|reason| format!("line 1: {reason}"))?;
    Ok(String::from_utf8(out).unwrap().trim_end().to_string())
}

fn cheapest(text: &str) -> String {
    answer(text, Strategy::Cheapest, false).unwrap()
}

/// A problem line from a compact spec: `order` as `item:qty` pairs, warehouses as `name:item=qty,…`.
fn problem(order: &str, warehouses: &[&str]) -> String {
    let items = |spec: &str| -> String {
        spec.split(',')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                format!("\"{k}\":{v}")
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let list: Vec<String> = warehouses
        .iter()
        .map(|w| {
            let (name, rest) = w.split_once(':').unwrap();
            let (inv, cost) = match rest.split_once('$') {
                Some((inv, cost)) => (inv, format!(",\"cost\":{cost}")),
                None => (rest, String::new()),
            };
            format!(
                "{{\"name\":\"{name}\",\"inventory\":{{{}}}{cost}}}",
                items(inv)
            )
        })
        .collect();
    format!(
        "{{\"order\":{{{}}},\"warehouses\":[{}]}}",
        items(order),
        list.join(",")
    )
}

// The seed's examples.

#[test]
fn seed_happy_case_exact_match() {
    assert_eq!(
        cheapest(r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":1}}]}"#),
        r#"[{"owd":{"apple":1}}]"#
    );
}

#[test]
fn seed_not_enough_inventory_ships_nothing() {
    assert_eq!(
        cheapest(r#"{"order":{"apple":1},"warehouses":[{"name":"owd","inventory":{"apple":0}}]}"#),
        "[]"
    );
}

#[test]
fn seed_split_when_that_is_the_only_way_lists_warehouses_in_cost_order() {
    // The seed prints dm first; we list warehouses in their input (cost) order.
    assert_eq!(
        cheapest(
            r#"{"order":{"apple":10},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"apple":5}}]}"#
        ),
        r#"[{"owd":{"apple":5}},{"dm":{"apple":5}}]"#
    );
}

#[test]
fn seed_inventory_distribution_example() {
    let line = r#"{"order":{"apple":5,"banana":5,"orange":5},"warehouses":[{"name":"owd","inventory":{"apple":5,"orange":10}},{"name":"dm","inventory":{"banana":5,"orange":10}}]}"#;
    assert_eq!(
        cheapest(line),
        r#"[{"owd":{"apple":5,"orange":5}},{"dm":{"banana":5}}]"#
    );
}

#[test]
fn issue_output_example() {
    let line = r#"{"order":{"apple":5,"banana":5},"warehouses":[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"banana":5}}]}"#;
    assert_eq!(
        cheapest(line),
        r#"[{"owd":{"apple":5}},{"dm":{"banana":5}}]"#
    );
}

// The cost model, rule by rule.

#[test]
fn one_warehouse_beats_a_split_even_when_it_is_dearer() {
    let line = problem("apple=10", &["owd:apple=5", "dm:apple=10"]);
    assert_eq!(cheapest(&line), r#"[{"dm":{"apple":10}}]"#);
    let line = problem("apple=10", &["owd:apple=5", "dm:apple=5"]);
    assert_eq!(
        cheapest(&line),
        r#"[{"owd":{"apple":5}},{"dm":{"apple":5}}]"#
    );
}

#[test]
fn fewest_warehouses_first_across_items() {
    let line = problem("a=1,b=1", &["w1:a=1", "w2:b=1", "w3:a=1,b=1"]);
    assert_eq!(cheapest(&line), r#"[{"w3":{"a":1,"b":1}}]"#);
}

#[test]
fn among_equally_many_the_lowest_rank_sum_wins() {
    // {w1,w3} (1+3) beats {w2,w3} (2+3) and {w2,w4} (2+4).
    let line = problem("a=1,b=1", &["w1:a=1", "w2:a=1", "w3:b=1", "w4:b=1"]);
    assert_eq!(cheapest(&line), r#"[{"w1":{"a":1}},{"w3":{"b":1}}]"#);
}

#[test]
fn equal_rank_sums_go_to_the_set_whose_cheapest_member_is_cheaper() {
    // Only {w1,w4} and {w2,w3} cover a–d; both sum to 5.
    let line = problem(
        "a=1,b=1,c=1,d=1",
        &["w1:a=1,b=1", "w2:a=1,c=1", "w3:b=1,d=1", "w4:c=1,d=1"],
    );
    assert_eq!(
        cheapest(&line),
        r#"[{"w1":{"a":1,"b":1}},{"w4":{"c":1,"d":1}}]"#
    );
}

#[test]
fn each_item_fills_from_the_cheaper_warehouses_of_the_set() {
    let line = problem("a=3,c=1", &["w1:a=2,c=1", "w2:a=2"]);
    assert_eq!(cheapest(&line), r#"[{"w1":{"a":2,"c":1}},{"w2":{"a":1}}]"#);
}

#[test]
fn cost_fields_replace_ranks_when_every_warehouse_has_one() {
    let line = problem("a=1", &["w1:a=1$5", "w2:a=1$2"]);
    assert_eq!(cheapest(&line), r#"[{"w2":{"a":1}}]"#);
    // Ranks would pick {w1,w2}; costs pick {w2,w3}.
    let line = problem("a=2", &["w1:a=1$10", "w2:a=1$1", "w3:a=1$2.5"]);
    assert_eq!(cheapest(&line), r#"[{"w2":{"a":1}},{"w3":{"a":1}}]"#);
}

#[test]
fn with_costs_output_keeps_list_order_and_fills_from_the_lower_cost() {
    let line = problem("a=3,b=1", &["w1:a=2,b=1$9", "w2:a=2$1"]);
    assert_eq!(cheapest(&line), r#"[{"w1":{"a":1,"b":1}},{"w2":{"a":2}}]"#);
}

#[test]
fn equal_costs_break_ties_by_list_order() {
    let line = problem("a=2", &["w1:a=1$0", "w2:a=1$1", "w3:a=1$1"]);
    assert_eq!(cheapest(&line), r#"[{"w1":{"a":1}},{"w2":{"a":1}}]"#);
}

#[test]
fn items_keep_the_order_s_order_not_the_inventory_s() {
    let line = problem("zucchini=1,apple=1", &["w:apple=3,zucchini=3"]);
    assert_eq!(cheapest(&line), r#"[{"w":{"zucchini":1,"apple":1}}]"#);
}

#[test]
fn zero_quantities_empty_orders_and_empty_lists_ship_nothing() {
    assert_eq!(cheapest(&problem("apple=0", &["w:apple=5"])), "[]");
    assert_eq!(
        cheapest(&problem("apple=0,kiwi=2", &["w:apple=5,kiwi=2"])),
        r#"[{"w":{"kiwi":2}}]"#
    );
    assert_eq!(cheapest(&problem("", &["w:apple=5"])), "[]");
    assert_eq!(cheapest(&problem("apple=1", &[])), "[]");
    assert_eq!(cheapest(&problem("", &[])), "[]");
}

#[test]
fn an_order_that_cannot_ship_completely_ships_nothing() {
    assert_eq!(cheapest(&problem("apple=1,pear=1", &["w:apple=5"])), "[]");
    assert_eq!(
        cheapest(&problem("apple=11", &["w:apple=5", "v:apple=5"])),
        "[]"
    );
}

#[test]
fn partial_ships_the_complete_items_and_reports_the_rest() {
    let line = problem(
        "apple=10,banana=2,pear=1",
        &["w:apple=5,banana=3", "v:apple=4"],
    );
    assert_eq!(
        answer(&line, Strategy::Cheapest, true).unwrap(),
        r#"{"shipments":[{"w":{"banana":2}}],"unshipped":{"apple":10,"pear":1}}"#
    );
    let line = problem("apple=1", &["w:apple=5"]);
    assert_eq!(
        answer(&line, Strategy::Cheapest, true).unwrap(),
        r#"{"shipments":[{"w":{"apple":1}}],"unshipped":{}}"#
    );
    assert_eq!(
        answer(&problem("", &[]), Strategy::Greedy, true).unwrap(),
        r#"{"shipments":[],"unshipped":{}}"#
    );
}

#[test]
fn greedy_takes_what_each_warehouse_has_in_order() {
    let line = problem("apple=10", &["owd:apple=5", "dm:apple=10"]);
    assert_eq!(
        answer(&line, Strategy::Greedy, false).unwrap(),
        r#"[{"owd":{"apple":5}},{"dm":{"apple":5}}]"#
    );
    let line = problem("a=3,b=1", &["w1:a=2,b=1$9", "w2:a=2$1"]);
    assert_eq!(
        answer(&line, Strategy::Greedy, false).unwrap(),
        r#"[{"w1":{"a":1,"b":1}},{"w2":{"a":2}}]"#
    );
    assert_eq!(
        answer(&problem("a=3", &["w1:a=2"]), Strategy::Greedy, false).unwrap(),
        "[]"
    );
}

#[test]
fn per_item_ships_each_item_whole_when_one_warehouse_can() {
    let line = problem("a=5,b=5", &["w1:a=5,b=2", "w2:b=5"]);
    assert_eq!(
        answer(&line, Strategy::PerItem, false).unwrap(),
        r#"[{"w1":{"a":5}},{"w2":{"b":5}}]"#
    );
    assert_eq!(
        answer(&line, Strategy::Greedy, false).unwrap(),
        r#"[{"w1":{"a":5,"b":2}},{"w2":{"b":3}}]"#
    );
    let line = problem("a=5", &["w1:a=2", "w2:a=4", "w3:a=1"]);
    assert_eq!(
        answer(&line, Strategy::PerItem, false).unwrap(),
        r#"[{"w1":{"a":2}},{"w2":{"a":3}}]"#
    );
    assert_eq!(
        answer(&line, Strategy::Cheapest, false).unwrap(),
        r#"[{"w1":{"a":2}},{"w2":{"a":3}}]"#
    );
}

#[test]
fn inventory_items_outside_the_order_are_ignored() {
    let line = problem("a=1", &["w1:z=100", "w2:a=1,z=3"]);
    assert_eq!(cheapest(&line), r#"[{"w2":{"a":1}}]"#);
}

#[test]
fn bad_problems_are_reported_not_solved() {
    let e = answer(
        &problem("a=1", &["w:a=1", "w:a=2"]),
        Strategy::Cheapest,
        false,
    )
    .unwrap_err();
    assert_eq!(e, r#"line 1: warehouse "w" is listed twice"#);
    let e = answer(
        &problem("a=1", &["w:a=1$1", "v:a=2"]),
        Strategy::Cheapest,
        false,
    )
    .unwrap_err();
    assert!(e.starts_with(r#"line 1: warehouse "v" has no cost"#), "{e}");
    let e = answer(
        r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":7}]}"#,
        Strategy::Cheapest,
        false,
    )
    .unwrap_err();
    assert_eq!(
        e,
        "line 1: warehouse 1: invalid type: integer `7`, expected an object of item → quantity"
            .replace('`', "\"")
    );
    let e = answer(r#"{"order":{"a":1}}"#, Strategy::Cheapest, false).unwrap_err();
    assert_eq!(e, r#"line 1: missing field "warehouses""#);
    let e = answer(
        r#"{"order":{"a":0.5},"warehouses":[]}"#,
        Strategy::Cheapest,
        false,
    )
    .unwrap_err();
    assert_eq!(e, r#"line 1: item "a": quantity 0.5 is not a whole number"#);
}

#[test]
fn huge_quantities_do_not_overflow() {
    let max = u64::MAX;
    let line = problem(
        &format!("a={max}"),
        &[&format!("w1:a={max}"), &format!("w2:a={max}")],
    );
    assert_eq!(cheapest(&line), format!(r#"[{{"w1":{{"a":{max}}}}}]"#));
    let line = problem(
        &format!("a={max}"),
        &[
            &format!("w1:a={}", max - 1),
            "w2:a=1",
            &format!("w3:a={max}"),
        ],
    );
    assert_eq!(cheapest(&line), format!(r#"[{{"w3":{{"a":{max}}}}}]"#));
}

#[test]
fn more_than_thirty_relevant_warehouses_use_the_bounded_search() {
    let names: Vec<String> = (0..40).map(|i| format!("w{i}:a=1,b=1")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let line = problem("a=3,b=3", &names);
    assert_eq!(
        cheapest(&line),
        r#"[{"w0":{"a":1,"b":1}},{"w1":{"a":1,"b":1}},{"w2":{"a":1,"b":1}}]"#
    );
    let demand = [3u64];
    let stock = vec![1u64; 40];
    let inst = Instance {
        demand: &demand,
        stock: &stock,
        warehouses: 40,
        cost: None,
    };
    let got = Allocator::new().allocate(&inst, Strategy::Cheapest, false);
    assert_eq!(got.relevant, 40);
    assert_eq!(got.warehouses(), [0, 1, 2]);
}

#[test]
fn thirty_warehouses_with_many_ties_finish_exactly() {
    // 30 interchangeable warehouses, 15 needed per item: the bounds must cut the C(30,15) sets.
    let demand = [15u64, 15, 15];
    let stock = vec![1u64; 90];
    let inst = Instance {
        demand: &demand,
        stock: &stock,
        warehouses: 30,
        cost: None,
    };
    let got = Allocator::new().allocate(&inst, Strategy::Cheapest, false);
    assert!(!got.bounded);
    assert_eq!(got.warehouses(), (0..15).collect::<Vec<_>>());
}

// Properties, against a brute-force oracle.

/// A random instance: up to `max_w` warehouses, up to 5 items, sparse small stocks, optional costs
/// drawn from a few values (so ties happen) and not sorted.
fn instance(max_w: usize) -> impl Gen<Value = (Vec<u64>, Vec<u64>, usize, Option<Vec<f64>>)> {
    (0..=max_w, 0usize..=5).prop_flat_map(|(n, m)| {
        let qty = prop_oneof![3 => Just(0u64), 4 => 1u64..=4, 1 => 5u64..=9];
        let cost = prop::sample::select(vec![0.0, 1.0, 1.0, 2.0, 2.5, 3.0, 7.0, 1e15]);
        (
            prop::collection::vec(0u64..=6, m),
            prop::collection::vec(qty, n * m),
            Just(n),
            prop::option::of(prop::collection::vec(cost, n)),
        )
    })
}

/// The cost model by exhaustion: every subset of warehouses, best by (count, cost, members
/// cheapest first), filled cheapest first.
fn brute_force(inst: &Instance<'_>, partial: bool) -> Allocation {
    let m = inst.demand.len();
    let n = inst.warehouses;
    let total = |i: usize| (0..n).map(|w| inst.stock[w * m + i] as u128).sum::<u128>();
    let ordered: Vec<usize> = (0..m).filter(|&i| inst.demand[i] > 0).collect();
    let short: Vec<usize> = ordered
        .iter()
        .copied()
        .filter(|&i| total(i) < inst.demand[i] as u128)
        .collect();
    if !short.is_empty() && !partial {
        return Allocation {
            unshipped: ordered,
            ..Allocation::default()
        };
    }
    let ship: Vec<usize> = ordered
        .iter()
        .copied()
        .filter(|i| !short.contains(i))
        .collect();
    let mut cost_order: Vec<usize> = (0..n).collect();
    cost_order.sort_by(|&a, &b| {
        inst.cost_of(a)
            .partial_cmp(&inst.cost_of(b))
            .unwrap()
            .then(a.cmp(&b))
    });
    let rank = |w: usize| cost_order.iter().position(|&x| x == w).unwrap();
    let mut best: Option<(usize, f64, Vec<usize>)> = None;
    if !ship.is_empty() {
        for mask in 0u32..(1 << n) {
            let members: Vec<usize> = (0..n).filter(|w| mask & (1 << w) != 0).collect();
            let covers = ship.iter().all(|&i| {
                members
                    .iter()
                    .map(|&w| inst.stock[w * m + i] as u128)
                    .sum::<u128>()
                    >= inst.demand[i] as u128
            });
            if !covers {
                continue;
            }
            let mut ranks: Vec<usize> = members.iter().map(|&w| rank(w)).collect();
            ranks.sort();
            let cost: f64 = ranks.iter().map(|&r| inst.cost_of(cost_order[r])).sum();
            let key = (members.len(), cost, ranks);
            let better = match &best {
                None => true,
                Some(b) => (key.0, key.1)
                    .partial_cmp(&(b.0, b.1))
                    .unwrap()
                    .then_with(|| key.2.cmp(&b.2))
                    .is_lt(),
            };
            if better {
                best = Some(key);
            }
        }
    }
    let mut picks = Vec::new();
    if let Some((_, _, ranks)) = best {
        for &i in &ship {
            let mut left = inst.demand[i];
            for &r in &ranks {
                let w = cost_order[r];
                let take = left.min(inst.stock[w * m + i]);
                if take > 0 {
                    left -= take;
                    picks.push(Pick {
                        warehouse: w,
                        item: i,
                        qty: take,
                    });
                }
            }
        }
    }
    picks.sort_by_key(|p| (p.warehouse, p.item));
    Allocation {
        picks,
        unshipped: short,
        ..Allocation::default()
    }
}

/// What every strategy's allocation must satisfy.
fn check_valid(inst: &Instance<'_>, got: &Allocation, partial: bool) -> Result<(), TestCaseError> {
    let m = inst.demand.len();
    let mut shipped = vec![0u64; m];
    for (k, p) in got.picks.iter().enumerate() {
        prop_assert!(p.qty > 0);
        prop_assert!(
            inst.demand[p.item] > 0,
            "ships {:?}, which was not ordered",
            p
        );
        prop_assert!(
            p.qty <= inst.stock[p.warehouse * m + p.item],
            "ships more than stock: {:?}",
            p
        );
        if k > 0 {
            let prev = got.picks[k - 1];
            prop_assert!(
                (prev.warehouse, prev.item) < (p.warehouse, p.item),
                "picks out of order"
            );
        }
        shipped[p.item] += p.qty;
    }
    let ordered: Vec<usize> = (0..m).filter(|&i| inst.demand[i] > 0).collect();
    for &i in &ordered {
        if got.unshipped.contains(&i) {
            prop_assert_eq!(shipped[i], 0);
        } else {
            prop_assert_eq!(
                shipped[i],
                inst.demand[i],
                "item {} ships a different quantity",
                i
            );
        }
    }
    if !partial && !got.unshipped.is_empty() {
        prop_assert!(got.picks.is_empty());
    }
    Ok(())
}

fn key(inst: &Instance<'_>, got: &Allocation) -> (usize, f64) {
    let used = got.warehouses();
    (used.len(), inst.set_cost(&used))
}

/// Enumeration by count answers most instances; the branch and bound (its fallback) must agree,
/// and both must equal exhaustion.
fn both_searches_equal_brute_force(
    inst: &Instance<'_>,
    partial: bool,
) -> Result<(), TestCaseError> {
    let want = brute_force(inst, partial);
    for mut allocator in [Allocator::new(), Allocator::branch_and_bound_only()] {
        let got = allocator.allocate(inst, Strategy::Cheapest, partial);
        prop_assert_eq!(&got.picks, &want.picks);
        prop_assert_eq!(&got.unshipped, &want.unshipped);
        prop_assert!(!got.bounded);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn cheapest_equals_brute_force(
        (demand, stock, n, cost) in instance(9),
        partial in any::<bool>(),
    ) {
        let inst = Instance { demand: &demand, stock: &stock, warehouses: n, cost: cost.as_deref() };
        both_searches_equal_brute_force(&inst, partial)?;
    }

    #[test]
    fn every_strategy_ships_the_order_within_stock(
        (demand, stock, n, cost) in instance(12),
        partial in any::<bool>(),
    ) {
        let inst = Instance { demand: &demand, stock: &stock, warehouses: n, cost: cost.as_deref() };
        let mut allocator = Allocator::new();
        for strategy in [Strategy::Cheapest, Strategy::Greedy, Strategy::PerItem] {
            let got = allocator.allocate(&inst, strategy, partial);
            check_valid(&inst, &got, partial)?;
        }
    }

    #[test]
    fn cheapest_is_never_worse_than_the_other_readings(
        (demand, stock, n, cost) in instance(12),
        partial in any::<bool>(),
    ) {
        let inst = Instance { demand: &demand, stock: &stock, warehouses: n, cost: cost.as_deref() };
        let mut allocator = Allocator::new();
        let best = allocator.allocate(&inst, Strategy::Cheapest, partial);
        for strategy in [Strategy::Greedy, Strategy::PerItem] {
            let other = allocator.allocate(&inst, strategy, partial);
            prop_assert_eq!(&best.unshipped, &other.unshipped);
            let (b, o) = (key(&inst, &best), key(&inst, &other));
            prop_assert!(b.0 < o.0 || (b.0 == o.0 && b.1 <= o.1), "{:?} worse than {:?} {:?}", b, strategy, o);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Larger instances, where pruning does real work, still agree with exhaustion.
    #[test]
    fn cheapest_equals_brute_force_up_to_fourteen_warehouses(
        (demand, stock, n, cost) in (10usize..=14, 1usize..=5).prop_flat_map(|(n, m)| (
            prop::collection::vec(1u64..=8, m),
            prop::collection::vec(prop_oneof![2 => Just(0u64), 3 => 1u64..=4], n * m),
            Just(n),
            prop::option::of(prop::collection::vec(prop::sample::select(vec![1.0, 2.0, 3.0, 4.5]), n)),
        )),
    ) {
        let inst = Instance { demand: &demand, stock: &stock, warehouses: n, cost: cost.as_deref() };
        both_searches_equal_brute_force(&inst, false)?;
    }

    /// Near-identical warehouses with tied whole costs: every same-size set ties, so the tie
    /// order decides and its pruning is what is tested.
    #[test]
    fn ties_everywhere_still_equal_brute_force(
        (demand, stock, n, cost) in (8usize..=16, 1usize..=4).prop_flat_map(|(n, m)| (
            prop::collection::vec(3u64..=12, m),
            prop::collection::vec(1u64..=2, n * m),
            Just(n),
            prop::option::of(prop::collection::vec(prop::sample::select(vec![1.0, 1.0, 2.0]), n)),
        )),
    ) {
        let inst = Instance { demand: &demand, stock: &stock, warehouses: n, cost: cost.as_deref() };
        both_searches_equal_brute_force(&inst, false)?;
    }

    /// Bounded search (over 30 relevant warehouses) still returns a valid plan no worse than greedy.
    #[test]
    fn bounded_search_is_valid_and_no_worse_than_greedy(
        (demand, stock, n) in (31usize..=60, 1usize..=6).prop_flat_map(|(n, m)| (
            prop::collection::vec(1u64..=12, m),
            prop::collection::vec(prop_oneof![1 => Just(0u64), 3 => 1u64..=3], n * m),
            Just(n),
        )),
    ) {
        let inst = Instance { demand: &demand, stock: &stock, warehouses: n, cost: None };
        let mut allocator = Allocator::new();
        let got = allocator.allocate(&inst, Strategy::Cheapest, true);
        check_valid(&inst, &got, true)?;
        let greedy = allocator.allocate(&inst, Strategy::Greedy, true);
        let (b, o) = (key(&inst, &got), key(&inst, &greedy));
        prop_assert!(b.0 < o.0 || (b.0 == o.0 && b.1 <= o.1));
    }
}

#[test]
fn warehouses_before_order_parse_the_same() {
    let line = r#"{"warehouses":[{"inventory":{"b":9,"a":9},"name":"w1","cost":3},{"name":"w2","inventory":{"a":9},"cost":1}],"x":[1],"order":{"a":2,"b":1}}"#;
    assert_eq!(cheapest(line), r#"[{"w1":{"a":2,"b":1}}]"#);
    let line = r#"{"warehouses":[{"name":"w","inventory":{}},{"name":"w","inventory":{}}],"order":{"a":1}}"#;
    assert_eq!(
        answer(line, Strategy::Cheapest, false).unwrap_err(),
        r#"line 1: warehouse "w" is listed twice"#
    );
}

#[test]
fn malformed_warehouses_and_orders_name_the_problem() {
    let e = |line: &str| answer(line, Strategy::Cheapest, false).unwrap_err();
    assert_eq!(
        e(r#"{"warehouses":[]}"#),
        r#"line 1: missing field "order""#
    );
    assert_eq!(
        e(r#"{"order":{"a":1},"warehouses":[{"name":"w"}]}"#),
        r#"line 1: warehouse 1: missing field "inventory""#
    );
    assert_eq!(
        e(r#"{"order":{"a":1},"warehouses":[{"name":"w","inventory":{"a":1,"z":1,"a":2}}]}"#),
        r#"line 1: warehouse 1: item "a" is listed twice"#
    );
    assert_eq!(
        e(r#"{"order":{"a":1},"warehouses":[{"name":7,"inventory":{}}]}"#),
        r#"line 1: warehouse 1: invalid type: integer "7", expected a name"#
    );
    assert_eq!(
        e(r#"{"order":[1],"warehouses":[]}"#),
        r#"line 1: invalid type: sequence, expected an object of item → quantity"#
    );
    assert_eq!(
        e(r#"{"order":{"a":1},"warehouses":{}}"#),
        "line 1: invalid type: map, expected a list of warehouses"
    );
    assert_eq!(e("[]"), "line 1: expected a JSON object, got an array");
    assert!(e(r#"{"order":{"a":1},"warehouses":[]"#).starts_with("line 1: truncated JSON"));
    assert!(
        e(r#"{"order":{"a":1},"warehouses":[]} x"#).starts_with("line 1: invalid JSON at column")
    );
}

/// What the fast reader buys, per line on one thread (CPU time, best of 5), against serde's reading
/// and against simd-json's tape alone (the floor of any reader built on the shared fast path,
/// [`crate::fields`], before a single field is looked at). `benches/allocate-reader.sh` runs it on
/// the benchmark's problems: `ALLOCATE_READER_FILE=… cargo test --release --lib
/// allocate::tests::reader_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn reader_cost() {
    let path = std::env::var("ALLOCATE_READER_FILE")
        .expect("ALLOCATE_READER_FILE names a file of problem lines");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cpu = || {
        use nix::sys::resource::{getrusage, UsageWho};
        let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    };
    let best = |f: &mut dyn FnMut(&str)| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let started = cpu();
            for line in &lines {
                f(line);
            }
            best = best.min(cpu() - started);
        }
        best / lines.len() as f64 * 1e9
    };
    let (mut demand, mut stock, mut cost) = (Vec::new(), Vec::new(), Vec::new());
    let mut scratch = fast::Scratch::default();
    let fast_ns = best(&mut |line| {
        let mut seed = ProblemSeed {
            demand: &mut demand,
            stock: &mut stock,
            cost: &mut cost,
        };
        assert!(fast::parse(line, &mut seed, &mut scratch).is_some());
    });
    let serde_ns = best(&mut |line| {
        let seed = ProblemSeed {
            demand: &mut demand,
            stock: &mut stock,
            cost: &mut cost,
        };
        assert!(parse_problem_serde(line, seed).is_ok());
    });
    let mut buffers = simd_json::Buffers::new(4096);
    let mut tape = Some(simd_json::Tape::null());
    let mut padded = Vec::new();
    let copy_ns = best(&mut |line| {
        padded.clear();
        padded.extend_from_slice(line.as_bytes());
        padded.extend_from_slice(&[b' '; simd_json::INPUT_PADDING]);
    });
    let tape_ns = best(&mut |line| {
        padded.clear();
        padded.extend_from_slice(line.as_bytes());
        padded.extend_from_slice(&[b' '; simd_json::INPUT_PADDING]);
        let mut t = tape.take().unwrap().reset();
        assert!(simd_json::fill_tape_padded(&mut padded, line.len(), &mut buffers, &mut t).is_ok());
        tape = Some(t.reset());
    }) - copy_ns;
    let bytes = text.len() / lines.len();
    eprintln!(
        "{} problem lines of {bytes} bytes on average; ns per line on one thread (best of 5):",
        lines.len()
    );
    eprintln!("  fast reader (src/allocate/fast.rs), complete read:  {fast_ns:7.0}");
    eprintln!("  serde_json reader (parse.rs), complete read:        {serde_ns:7.0}");
    eprintln!("  simd-json tape alone, no field read yet:            {tape_ns:7.0}");
}
