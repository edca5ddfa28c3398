//! Reading problems, warehouses and orders from JSON, keeping the order of object keys (the
//! output lists items in the order's own order) and refusing what the cost model cannot use:
//! negative or fractional quantities, duplicate items, duplicate or missing warehouse names,
//! inventories that are not objects, costs that are not non-negative numbers.
//!
//! Strings are borrowed from the input line when they hold no escapes, so a problem costs few
//! allocations.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The largest cost accepted: sums of many costs stay far from overflow and exact enough.
pub const MAX_COST: f64 = 1e15;

/// One input line of the default mode: an order and the warehouses to ship it from.
#[derive(Debug, Deserialize)]
pub struct ProblemLine<'a> {
    #[serde(borrow)]
    pub order: ItemMap<'a>,
    #[serde(borrow)]
    pub warehouses: Warehouses<'a>,
}

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
            Err(E::custom(format_args!("quantity {v} is not a whole number")))
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
                    Err(E::custom(format_args!("cost {v} is not a number from 0 to 1e15")))
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
            return Err(de::Error::custom(format_args!("item \"{dup}\" is listed twice")));
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
pub fn first_duplicate<'s>(names: impl ExactSizeIterator<Item = &'s str> + Clone) -> Option<&'s str> {
    if names.len() <= 16 {
        let all: Vec<&str> = names.collect();
        (1..all.len()).find_map(|i| all[..i].contains(&all[i]).then_some(all[i]))
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
    Ok(Some(warehouses.map(|(_, c)| c.map_or(0.0, |c| c.0)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_object;

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
        assert!(e.starts_with(r#"item "a": invalid type: string "3", expected a whole quantity"#), "{e}");
    }

    #[test]
    fn warehouse_errors_name_the_warehouse() {
        let e = problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":{}},{"inventory":{}}]}"#)
            .unwrap_err();
        assert_eq!(e, r#"warehouse 2: missing field "name""#);
        let e = problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":[1]}]}"#).unwrap_err();
        assert_eq!(e, "warehouse 1: invalid type: sequence, expected an object of item → quantity");
        let e = problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":{"a":-2}}]}"#)
            .unwrap_err();
        assert_eq!(e, r#"warehouse 1: item "a": quantity -2 is negative"#);
        let e = problem(r#"{"order":{"a":1},"warehouses":[{"name":"x","inventory":{},"cost":-1}]}"#)
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
        assert_eq!(first_duplicate(names.iter().map(String::as_str)), Some("n0"));
        let unique: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        assert_eq!(first_duplicate(unique.iter().map(String::as_str)), None);
    }
}
