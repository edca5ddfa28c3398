//! Reading problems, warehouses and orders from JSON, keeping the order of object keys (the
//! output lists items in the order's own order) and refusing what the cost model cannot use:
//! negative or fractional quantities, duplicate items, duplicate or missing warehouse names,
//! inventories that are not objects, costs that are not non-negative numbers.
//!
//! Strings are borrowed from the input line when they hold no escapes, so a problem costs few
//! allocations.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The largest cost accepted: sums of many costs stay far from overflow and exact enough.
pub const MAX_COST: f64 = 1e15;

/// A map of item → whole non-negative quantity, in the order its keys were written.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ItemMap<'a>(pub Vec<(Cow<'a, str>, u64)>);

/// A warehouse as the input writes it.
#[derive(Debug, Deserialize)]
pub struct Warehouse<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub inventory: ItemMap<'a>,
    #[serde(default)]
    pub cost: Option<Cost>,
}

/// The warehouse list; an error inside one names the warehouse by its position.
#[derive(Debug, Default)]
pub struct Warehouses<'a>(pub Vec<Warehouse<'a>>);

/// A warehouse's cost: a finite number from 0 to [`MAX_COST`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost(pub f64);

/// A whole, non-negative quantity. Whole-valued floats (`5.0`, `1e3`) are accepted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity(pub u64);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a whole quantity of 0 or more")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Ok(Quantity(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        u64::try_from(v)
            .map(Quantity)
            .map_err(|_| E::custom(format_args!("quantity {v} is negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        if v < 0.0 {
            Err(E::custom(format_args!("quantity {v} is negative")))
        } else if v.fract() != 0.0 || !v.is_finite() {
            Err(E::custom(format_args!(
                "quantity {v} is not a whole number"
            )))
        } else if v >= u64::MAX as f64 {
            Err(E::custom(format_args!("quantity {v} is too large")))
        } else {
            Ok(Quantity(v as u64))
        }
    }
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Cost;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a cost: a number from 0 to 1e15")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cost, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cost, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cost, E> {
                if (0.0..=MAX_COST).contains(&v) {
                    Ok(Cost(v))
                } else {
                    Err(E::custom(format_args!(
                        "cost {v} is not a number from 0 to 1e15"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A string borrowed from the input when it has no escapes (serde's own `Cow` impl always copies).
pub(crate) struct Name<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads a map of item → quantity, refusing duplicates; shared by orders and inventories.
pub(crate) struct ItemMapVisitor;

impl<'de> Visitor<'de> for ItemMapVisitor {
    type Value = ItemMap<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of item → quantity")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemMap<'de>, A::Error> {
        let mut items: Vec<(Cow<'de, str>, u64)> = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            let qty = map
                .next_value::<Quantity>()
                .map_err(|e| de::Error::custom(format_args!("item \"{key}\": {}", bare(&e))))?;
            items.push((key, qty.0));
        }
        if let Some(dup) = first_duplicate(items.iter().map(|(k, _)| k.as_ref())) {
            return Err(de::Error::custom(format_args!(
                "item \"{dup}\" is listed twice"
            )));
        }
        Ok(ItemMap(items))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ItemMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ItemMapVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Warehouses<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Warehouses<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of warehouses")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Warehouses<'de>, A::Error> {
                let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(8));
                loop {
                    let position = list.len() + 1;
                    match seq.next_element::<Warehouse<'de>>() {
                        Ok(Some(w)) => list.push(w),
                        Ok(None) => break,
                        Err(e) => {
                            return Err(de::Error::custom(format_args!(
                                "warehouse {position}: {}",
                                bare(&e)
                            )))
                        }
                    }
                }
                Ok(Warehouses(list))
            }
        }
        d.deserialize_seq(V)
    }
}

/// An inner error's message without serde_json's ` at line 1 column N` (the outer error adds one
/// for the whole line, which the shared error formatting removes).
fn bare(e: &impl fmt::Display) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// The first name that occurs twice, if any.
pub fn first_duplicate<'s>(
    names: impl ExactSizeIterator<Item = &'s str> + Clone,
) -> Option<&'s str> {
    if names.len() <= 16 {
        let all: Vec<(u64, &str)> = names.map(|n| (name_hash(n), n)).collect();
        (1..all.len()).find_map(|i| all[..i].contains(&all[i]).then_some(all[i].1))
    } else {
        let mut seen = HashSet::with_capacity(names.len());
        names.into_iter().find(|n| !seen.insert(*n))
    }
}

/// Checks the rules that span warehouses: unique names, and costs given for all or none.
/// Returns the costs when every warehouse has one.
pub fn check_warehouses<'w, N: AsRef<str> + 'w>(
    warehouses: impl ExactSizeIterator<Item = (&'w N, Option<Cost>)> + Clone,
) -> Result<Option<Vec<f64>>, String> {
    if let Some(dup) = first_duplicate(warehouses.clone().map(|(n, _)| n.as_ref())) {
        return Err(format!("warehouse \"{dup}\" is listed twice"));
    }
    let with_cost = warehouses.clone().filter(|(_, c)| c.is_some()).count();
    if with_cost == 0 {
        return Ok(None);
    }
    if with_cost < warehouses.len() {
        let (missing, _) = warehouses
            .clone()
            .find(|(_, c)| c.is_none())
            .expect("some warehouse lacks a cost");
        return Err(format!(
            "warehouse \"{}\" has no cost while others have one; give every warehouse a cost or none",
            missing.as_ref()
        ));
    }
    Ok(Some(
        warehouses.map(|(_, c)| c.map_or(0.0, |c| c.0)).collect(),
    ))
}

/// A cheap hash of a name, to compare names by one integer before comparing their bytes. Names
/// are short, so up to 16 bytes it is two overlapping loads and one multiply; a collision only
/// costs a byte comparison.
pub(crate) fn name_hash(name: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let b = name.as_bytes();
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64;
    let (lo, hi) = match n {
        0 => (0, 0),
        1..=3 => (
            (b[0] as u64) | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16,
            0,
        ),
        4..=7 => (half(0), half(n - 4)),
        8..=16 => (word(0), word(n - 8)),
        _ => {
            let mut h = n as u64;
            for chunk in b.chunks_exact(8) {
                h = (h ^ u64::from_le_bytes(chunk.try_into().expect("8 bytes")))
                    .wrapping_mul(K)
                    .rotate_left(31);
            }
            (h, word(n - 8))
        }
    };
    let h = (lo ^ hi.rotate_left(32) ^ n as u64).wrapping_mul(K);
    h ^ (h >> 32)
}

/// Names with their hashes; finds a name by hash first.
#[derive(Debug, Default)]
pub(crate) struct NameSet<'a> {
    pub names: Vec<Cow<'a, str>>,
    hashes: Vec<u64>,
    /// For large sets: hash → first position with that hash.
    index: Option<HashMap<u64, usize>>,
}

impl<'a> NameSet<'a> {
    pub(crate) fn find(&self, name: &str, hash: u64) -> Option<usize> {
        if let Some(index) = &self.index {
            let &at = index.get(&hash)?;
            if self.names[at] == name {
                return Some(at);
            }
            // A hash collision: fall back to the scan.
        }
        self.hashes
            .iter()
            .enumerate()
            .find(|&(i, &h)| h == hash && self.names[i] == name)
            .map(|(i, _)| i)
    }

    /// Add a name; `Err(name)` if it is already there.
    pub(crate) fn insert(&mut self, name: Cow<'a, str>) -> Result<usize, Cow<'a, str>> {
        let hash = name_hash(&name);
        if self.find(&name, hash).is_some() {
            return Err(name);
        }
        let at = self.names.len();
        self.names.push(name);
        self.hashes.push(hash);
        if let Some(index) = &mut self.index {
            index.entry(hash).or_insert(at);
        } else if self.names.len() > 24 {
            let mut index = HashMap::with_capacity(self.names.len() * 2);
            for (i, &h) in self.hashes.iter().enumerate() {
                index.entry(h).or_insert(i);
            }
            self.index = Some(index);
        }
        Ok(at)
    }
}

/// A problem line parsed straight into the solver's buffers: the order's demand, and a stock
/// matrix with one row per warehouse whose columns are the order's items. Inventory entries are
/// matched to order items as they are read, so a problem allocates a handful of vectors, not one
/// per warehouse. (When `warehouses` comes before `order` in a line, the warehouses are read the
/// generic way first and matched after.)
pub struct ProblemSeed<'s> {
    pub demand: &'s mut Vec<u64>,
    pub stock: &'s mut Vec<u64>,
    pub cost: &'s mut Vec<f64>,
}

/// What a [`ProblemSeed`] returns besides the buffers it filled.
#[derive(Debug, PartialEq)]
pub struct Problem<'a> {
    /// The order's item names, in its order (the columns of `stock`).
    pub items: Vec<Cow<'a, str>>,
    /// The warehouse names, in list order (the rows of `stock`).
    pub warehouses: Vec<Cow<'a, str>>,
    /// Whether every warehouse has a cost (then `cost` holds them).
    pub has_cost: bool,
}

impl<'de> DeserializeSeed<'de> for ProblemSeed<'_> {
    type Value = Problem<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Problem<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ProblemSeed<'_> {
    type Value = Problem<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a problem {"order":{…},"warehouses":[…]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Problem<'de>, A::Error> {
        self.demand.clear();
        self.stock.clear();
        self.cost.clear();
        let mut items: Option<NameSet<'de>> = None;
        let mut rows: Option<Rows<'de>> = None;
        let mut deferred: Option<Warehouses<'de>> = None;
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            match key.as_ref() {
                "order" => {
                    if items.is_some() {
                        return Err(de::Error::duplicate_field("order"));
                    }
                    let order = map.next_value::<ItemMap<'de>>()?;
                    let mut set = NameSet::default();
                    for (name, qty) in order.0 {
                        set.insert(name).map_err(|dup| duplicate_item(&dup))?;
                        self.demand.push(qty);
                    }
                    items = Some(set);
                }
                "warehouses" => {
                    if rows.is_some() || deferred.is_some() {
                        return Err(de::Error::duplicate_field("warehouses"));
                    }
                    match &items {
                        Some(items) => {
                            rows = Some(map.next_value_seed(RowsSeed {
                                items,
                                stock: self.stock,
                                cost: self.cost,
                            })?);
                        }
                        None => deferred = Some(map.next_value::<Warehouses<'de>>()?),
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let items = items.ok_or_else(|| de::Error::missing_field("order"))?;
        let rows = match (rows, deferred) {
            (Some(rows), _) => rows,
            (None, Some(list)) => {
                let mut rows = Rows::default();
                let m = items.names.len();
                for w in list.0 {
                    self.stock.resize(self.stock.len() + m, 0);
                    let row = self.stock.len() - m;
                    for (name, qty) in &w.inventory.0 {
                        if let Some(i) = items.find(name, name_hash(name)) {
                            self.stock[row + i] = *qty;
                        }
                    }
                    rows.push(w.name, w.cost, self.cost);
                }
                rows
            }
            (None, None) => return Err(de::Error::missing_field("warehouses")),
        };
        let has_cost = rows.finish::<A::Error>(self.cost)?;
        Ok(Problem {
            items: items.names,
            warehouses: rows.names.names,
            has_cost,
        })
    }
}

fn duplicate_item<E: de::Error>(name: &str) -> E {
    E::custom(format_args!("item \"{name}\" is listed twice"))
}

/// Warehouse names and costs as they are read, checked for duplicates and for costs on some but
/// not all.
#[derive(Default)]
struct Rows<'a> {
    names: NameSet<'a>,
    duplicate: Option<Cow<'a, str>>,
    with_cost: usize,
    first_without_cost: Option<usize>,
}

impl<'a> Rows<'a> {
    fn push(&mut self, name: Cow<'a, str>, cost: Option<Cost>, costs: &mut Vec<f64>) {
        let at = self.names.names.len();
        match cost {
            Some(c) => {
                self.with_cost += 1;
                costs.push(c.0);
            }
            None => {
                self.first_without_cost.get_or_insert(at);
                costs.push(0.0);
            }
        }
        if let Err(dup) = self.names.insert(name.clone()) {
            self.duplicate.get_or_insert(dup);
            // Keep rows and names aligned; the line is refused anyway.
            self.names.names.push(name);
        }
    }

    fn finish<E: de::Error>(&self, costs: &mut Vec<f64>) -> Result<bool, E> {
        if let Some(dup) = &self.duplicate {
            return Err(E::custom(format_args!(
                "warehouse \"{dup}\" is listed twice"
            )));
        }
        match (self.with_cost, self.first_without_cost) {
            (0, _) => {
                costs.clear();
                Ok(false)
            }
            (_, None) => Ok(true),
            (_, Some(at)) => Err(E::custom(format_args!(
                "warehouse \"{}\" has no cost while others have one; give every warehouse a cost or none",
                self.names.names[at]
            ))),
        }
    }
}

struct RowsSeed<'s, 'de> {
    items: &'s NameSet<'de>,
    stock: &'s mut Vec<u64>,
    cost: &'s mut Vec<f64>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, 'de> {
    type Value = Rows<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Rows<'de>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, 'de> {
    type Value = Rows<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of warehouses")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows<'de>, A::Error> {
        let mut rows = Rows::default();
        let mut seen: Vec<(u64, Cow<'de, str>)> = Vec::new();
        loop {
            let position = rows.names.names.len() + 1;
            let row = RowSeed {
                items: self.items,
                stock: self.stock,
                seen: &mut seen,
            };
            match seq.next_element_seed(row) {
                Ok(Some((name, cost))) => rows.push(name, cost, self.cost),
                Ok(None) => break,
                Err(e) => {
                    return Err(de::Error::custom(format_args!(
                        "warehouse {position}: {}",
                        bare(&e)
                    )))
                }
            }
        }
        Ok(rows)
    }
}

/// One warehouse: appends its stock row, returns its name and cost.
struct RowSeed<'s, 'de> {
    items: &'s NameSet<'de>,
    stock: &'s mut Vec<u64>,
    seen: &'s mut Vec<(u64, Cow<'de, str>)>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, 'de> {
    type Value = (Cow<'de, str>, Option<Cost>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, 'de> {
    type Value = (Cow<'de, str>, Option<Cost>);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a warehouse {"name":…,"inventory":{…}}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let m = self.items.names.len();
        let row = self.stock.len();
        self.stock.resize(row + m, 0);
        let (mut name, mut cost, mut inventory) = (None, None, false);
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            match key.as_ref() {
                "name" => {
                    if name.is_some() {
                        return Err(de::Error::duplicate_field("name"));
                    }
                    name = Some(map.next_value::<Name<'de>>()?.0);
                }
                "inventory" => {
                    if inventory {
                        return Err(de::Error::duplicate_field("inventory"));
                    }
                    inventory = true;
                    self.seen.clear();
                    map.next_value_seed(StockSeed {
                        items: self.items,
                        row: &mut self.stock[row..row + m],
                        seen: self.seen,
                    })?;
                }
                "cost" => {
                    if cost.is_some() {
                        return Err(de::Error::duplicate_field("cost"));
                    }
                    cost = Some(map.next_value::<Option<Cost>>()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        if !inventory {
            return Err(de::Error::missing_field("inventory"));
        }
        Ok((name, cost.flatten()))
    }
}

/// An inventory object, written into one stock row as it is read.
struct StockSeed<'s, 'de> {
    items: &'s NameSet<'de>,
    row: &'s mut [u64],
    seen: &'s mut Vec<(u64, Cow<'de, str>)>,
}

impl<'de> DeserializeSeed<'de> for StockSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StockSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of item → quantity")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            let qty = map
                .next_value::<Quantity>()
                .map_err(|e| de::Error::custom(format_args!("item \"{key}\": {}", bare(&e))))?;
            let hash = name_hash(&key);
            if self.seen.iter().any(|(h, n)| *h == hash && *n == key) {
                return Err(duplicate_item(&key));
            }
            if let Some(i) = self.items.find(&key, hash) {
                self.row[i] = qty.0;
            }
            self.seen.push((hash, key));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_object;

    /// The item maps and warehouse lists as a line holds them (live mode reads its inventory file
    /// and orders with these readers; problem lines go through [`ProblemSeed`]).
    #[derive(Debug, Deserialize)]
    struct ProblemLine<'a> {
        #[serde(borrow)]
        order: ItemMap<'a>,
        #[serde(borrow)]
        warehouses: Warehouses<'a>,
    }

    fn problem(text: &str) -> Result<ProblemLine<'_>, String> {
        parse_object::<ProblemLine>(text)
    }

    #[test]
    fn keys_keep_their_written_order() {
        let p = problem(r#"{"order":{"zucchini":1,"apple":2,"mango":3},"warehouses":[]}"#).unwrap();
        let names: Vec<&str> = p.order.0.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(names, ["zucchini", "apple", "mango"]);
    }

    #[test]
    fn escaped_names_are_decoded() {
        let p = problem(r#"{"order":{"a\"b":1},"warehouses":[{"name":"w\u00e9","inventory":{}}]}"#)
            .unwrap();
        assert_eq!(p.order.0[0].0, "a\"b");
        assert_eq!(p.warehouses.0[0].name, "wé");
    }

    #[test]
    fn whole_floats_are_quantities_fractions_and_negatives_are_not() {
        let p = problem(r#"{"order":{"a":5.0,"b":1e3},"warehouses":[]}"#).unwrap();
        assert_eq!(p.order.0[0].1, 5);
        assert_eq!(p.order.0[1].1, 1000);
        let e = problem(r#"{"order":{"a":-1},"warehouses":[]}"#).unwrap_err();
        assert_eq!(e, r#"item "a": quantity -1 is negative"#);
        let e = problem(r#"{"order":{"a":1.5},"warehouses":[]}"#).unwrap_err();
        assert_eq!(e, r#"item "a": quantity 1.5 is not a whole number"#);
        let e = problem(r#"{"order":{"a":"3"},"warehouses":[]}"#).unwrap_err();
        assert!(
            e.starts_with(r#"item "a": invalid type: string "3", expected a whole quantity"#),
            "{e}"
        );
    }

    #[test]
    fn warehouse_errors_name_the_warehouse() {
        let e = problem(
            r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":{}},{"inventory":{}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e, r#"warehouse 2: missing field "name""#);
        let e = problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":[1]}]}"#)
            .unwrap_err();
        assert_eq!(
            e,
            "warehouse 1: invalid type: sequence, expected an object of item → quantity"
        );
        let e = problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":{"a":-2}}]}"#)
            .unwrap_err();
        assert_eq!(e, r#"warehouse 1: item "a": quantity -2 is negative"#);
        let e =
            problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":{},"cost":-1}]}"#)
                .unwrap_err();
        assert_eq!(e, "warehouse 1: cost -1 is not a number from 0 to 1e15");
    }

    #[test]
    fn duplicates_are_refused() {
        let e = problem(r#"{"order":{"a":1,"a":2},"warehouses":[]}"#).unwrap_err();
        assert_eq!(e, r#"item "a" is listed twice"#);
        let p = problem(r#"{"order":{},"warehouses":[{"name":"x","inventory":{}},{"name":"x","inventory":{}}]}"#)
            .unwrap();
        let e = check_warehouses(p.warehouses.0.iter().map(|w| (&w.name, w.cost))).unwrap_err();
        assert_eq!(e, r#"warehouse "x" is listed twice"#);
    }

    #[test]
    fn costs_are_all_or_nothing() {
        let p = problem(r#"{"order":{},"warehouses":[{"name":"x","inventory":{},"cost":2},{"name":"y","inventory":{}}]}"#)
            .unwrap();
        let e = check_warehouses(p.warehouses.0.iter().map(|w| (&w.name, w.cost))).unwrap_err();
        assert!(e.starts_with(r#"warehouse "y" has no cost"#), "{e}");
    }

    #[test]
    fn many_names_use_the_hash_path() {
        let names: Vec<String> = (0..40).map(|i| format!("n{}", i % 39)).collect();
        assert_eq!(
            first_duplicate(names.iter().map(String::as_str)),
            Some("n0")
        );
        let unique: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        assert_eq!(first_duplicate(unique.iter().map(String::as_str)), None);
    }
}
