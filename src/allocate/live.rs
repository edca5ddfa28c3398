//! Live inventory: orders drawn down from one inventory, optionally kept crash-safe on disk.
//!
//! `allocate --inventory warehouses.json` reads the warehouse list (the `warehouses` array of a
//! problem line, or an object with that `warehouses` field), then one order per input line:
//! `{"id":"o-1","items":{"apple":5}}` (`id` optional, any JSON value, other fields ignored) or a
//! bare item map `{"apple":5}`. Each order is allocated with the chosen strategy against what is
//! left, drawn down, and answered with
//!
//! ```text
//! {"id":"o-1","seq":1,"shipments":[{"owd":{"apple":5}}]}
//! ```
//!
//! (`"unshipped":{…}` added with `--partial`). `seq` numbers the orders handled over the life of
//! the inventory, from 1. An order that cannot ship gets `"shipments":[]` and draws nothing.
//!
//! ## Crash safety with `--state FILE`
//!
//! Orders are handled in batches: the lines already waiting on the input, at most
//! [`BATCH_ORDERS`]. After a batch is allocated in memory, the remaining inventory, the last `seq`
//! and the batch's output lines are written to a temporary file next to FILE, fsynced, renamed over
//! FILE, and the directory is fsynced: FILE always holds one whole state, old or new. Only then are
//! the batch's lines printed, each with one `write` (whole lines on a pipe). So at any moment,
//! killed or not, the inventory in FILE is the initial inventory minus the shipments of the orders
//! up to FILE's `seq`, and those are the lines printed except, at worst, some lines of the last
//! batch that the kill stopped before they were printed.
//!
//! On start with an existing FILE, allocate loads it (`--inventory` is then ignored) and first
//! prints that last batch's lines again. Hence, after any number of `kill -9`s and restarts: every
//! order drawn down is printed, and a line may be printed twice — the same line with the same
//! `seq`. (At a clean end of input, with everything printed, the state is written once more
//! without lines to print again, so only a crash or a failed write leaves duplicates.) Counting each `seq` once, the shipments printed equal the initial inventory minus the
//! remaining one, unit for unit. The upstream resumes after FILE's `seq` (also after the last `seq`
//! printed); `last_id` in FILE holds the id of that order. An exclusive lock on `FILE.lock` keeps a
//! second allocate from using the same state.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::parse::{
    check_warehouses, first_duplicate, ItemMap, ItemMapVisitor, Name, Quantity, Warehouses,
};
use super::{Allocator, Config, Instance, Shipments, Unshipped};
use crate::error::{Error, Result};
use crate::input::{parse_object, BadLines, Line};
use crate::output::Output;
use crate::runner::warn;

/// The most orders handled between two writes of the state file.
pub const BATCH_ORDERS: usize = 256;

const STATE_VERSION: u32 = 1;

/// One inventory being drawn down.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    pub(super) warehouses: Vec<String>,
    pub(super) cost: Option<Vec<f64>>,
    /// Every item any warehouse lists, by id.
    pub(super) items: Vec<String>,
    pub(super) item_ids: HashMap<String, usize>,
    /// Per warehouse: the item ids it lists, in its own order (kept when written back).
    pub(super) listed: Vec<Vec<usize>>,
    /// Per warehouse: stock by item id.
    pub(super) stock: Vec<Vec<u64>>,
}

impl Inventory {
    /// The allocator's view of `order` against this stock: each ordered item's id (`None` when
    /// no warehouse lists it), the quantities ordered, and the warehouses × items stock matrix
    /// (row-major, one row per warehouse).
    pub(crate) fn order_matrix(
        &self,
        order: &Order<'_>,
    ) -> (Vec<Option<usize>>, Vec<u64>, Vec<u64>) {
        let items = &order.items.0;
        let m = items.len();
        let ids: Vec<Option<usize>> = items
            .iter()
            .map(|(name, _)| self.item_ids.get(name.as_ref()).copied())
            .collect();
        let demand: Vec<u64> = items.iter().map(|(_, q)| *q).collect();
        let mut stock = vec![0u64; self.warehouses.len() * m];
        for (w, row) in stock
            .chunks_mut(m.max(1))
            .enumerate()
            .take(self.warehouses.len())
        {
            for (cell, id) in row.iter_mut().zip(&ids) {
                if let Some(id) = id {
                    *cell = self.stock[w][*id];
                }
            }
        }
        (ids, demand, stock)
    }

    /// Build from parsed warehouses, checking names and costs as a problem line is checked.
    pub fn new(list: &Warehouses<'_>) -> std::result::Result<Self, String> {
        let cost = check_warehouses(list.0.iter().map(|w| (&w.name, w.cost)))?;
        let mut items: Vec<String> = Vec::new();
        let mut item_ids: HashMap<String, usize> = HashMap::new();
        let mut listed = Vec::with_capacity(list.0.len());
        for w in &list.0 {
            let ids: Vec<usize> = w
                .inventory
                .0
                .iter()
                .map(|(name, _)| {
                    *item_ids.entry(name.to_string()).or_insert_with(|| {
                        items.push(name.to_string());
                        items.len() - 1
                    })
                })
                .collect();
            listed.push(ids);
        }
        let stock = list
            .0
            .iter()
            .zip(&listed)
            .map(|(w, ids)| {
                let mut row = vec![0; items.len()];
                for ((_, qty), &id) in w.inventory.0.iter().zip(ids) {
                    row[id] = *qty;
                }
                row
            })
            .collect();
        Ok(Inventory {
            warehouses: list.0.iter().map(|w| w.name.to_string()).collect(),
            cost,
            items,
            item_ids,
            listed,
            stock,
        })
    }

    /// Units of `item` left in warehouse `name` (0 for anything unknown).
    pub fn remaining(&self, name: &str, item: &str) -> u64 {
        let Some(w) = self.warehouses.iter().position(|n| n == name) else {
            return 0;
        };
        self.item_ids.get(item).map_or(0, |&id| self.stock[w][id])
    }
}

impl Serialize for Inventory {
    /// The warehouse list, in the input's shape, with what is left.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct W<'a> {
            name: &'a str,
            inventory: Stock<'a>,
            #[serde(skip_serializing_if = "Option::is_none")]
            cost: Option<f64>,
        }
        struct Stock<'a>(&'a Inventory, usize);
        impl Serialize for Stock<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let (inv, w) = (self.0, self.1);
                let mut map = s.serialize_map(Some(inv.listed[w].len()))?;
                for &id in &inv.listed[w] {
                    map.serialize_entry(&inv.items[id], &inv.stock[w][id])?;
                }
                map.end()
            }
        }
        s.collect_seq((0..self.warehouses.len()).map(|w| W {
            name: &self.warehouses[w],
            inventory: Stock(self, w),
            cost: self.cost.as_ref().map(|c| c[w]),
        }))
    }
}

/// One order line: `{"id":…,"items":{…}}` or a bare item map.
#[derive(Debug, PartialEq)]
pub struct Order<'a> {
    pub id: Value,
    pub items: ItemMap<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Order<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(OrderVisitor)
    }
}

/// A field of an order line, before we know which of the two shapes the line has.
enum Field<'a> {
    Items(ItemMap<'a>),
    Number(serde_json::Number),
    Id(Value),
    /// Not a number nor an item map: what it was, for the message.
    Other(&'static str),
}

struct FieldSeed<'k>(&'k str);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Field<'de>, D::Error> {
        if self.0 == "id" {
            return Value::deserialize(d).map(Field::Id);
        }
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a quantity or an item map")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Number(v.into()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Field<'de>, E> {
        serde_json::Number::from_f64(v)
            .map(Field::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Other("a string"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Field<'de>, E> {
        Ok(Field::Other("null"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Field<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Field<'de>, A::Error> {
        ItemMapVisitor.visit_map(map).map(Field::Items)
    }
}

struct OrderVisitor;

impl<'de> Visitor<'de> for OrderVisitor {
    type Value = Order<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"an order: {"id":…,"items":{item: quantity}} or {item: quantity}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Order<'de>, A::Error> {
        let mut fields: Vec<(std::borrow::Cow<'de, str>, Field<'de>)> = Vec::new();
        while let Some(key) = map.next_key::<Name<'de>>()? {
            let field = map.next_value_seed(FieldSeed(&key.0))?;
            fields.push((key.0, field));
        }
        let items_at = fields.iter().position(|(k, _)| k == "items");
        if let Some(at) = items_at {
            let id = fields
                .iter()
                .find_map(|(k, f)| match f {
                    Field::Id(v) if k == "id" => Some(v.clone()),
                    _ => None,
                })
                .unwrap_or(Value::Null);
            return match fields.swap_remove(at).1 {
                Field::Items(items) => Ok(Order { id, items }),
                _ => Err(de::Error::custom(
                    r#""items" is not an object of item → quantity"#,
                )),
            };
        }
        let mut items = Vec::with_capacity(fields.len());
        for (name, field) in fields {
            let number = match field {
                Field::Number(n) => n,
                Field::Id(Value::Number(n)) => n,
                Field::Id(v) => return Err(not_a_quantity(&name, json_kind(&v))),
                Field::Items(_) => return Err(not_a_quantity(&name, "an object")),
                Field::Other(kind) => return Err(not_a_quantity(&name, kind)),
            };
            let qty = Quantity::deserialize(number)
                .map_err(|e| de::Error::custom(format_args!("item \"{name}\": {e}")))?;
            items.push((name, qty.0));
        }
        if let Some(dup) = first_duplicate(items.iter().map(|(k, _)| k.as_ref())) {
            return Err(de::Error::custom(format_args!(
                "item \"{dup}\" is listed twice"
            )));
        }
        Ok(Order {
            id: Value::Null,
            items: ItemMap(items),
        })
    }
}

fn not_a_quantity<E: de::Error>(name: &str, kind: &str) -> E {
    E::custom(format_args!(
        "item \"{name}\" is {kind}, not a quantity (an order is {{\"id\":…,\"items\":{{…}}}} or a bare map of item → quantity)"
    ))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The inventory, with the allocator that draws orders from it.
pub struct Desk {
    pub inventory: Inventory,
    pub seq: u64,
    pub last_id: Value,
    strategy: super::Strategy,
    partial: bool,
    allocator: Allocator,
}

impl Desk {
    pub fn new(inventory: Inventory, seq: u64, strategy: super::Strategy, partial: bool) -> Self {
        Desk {
            inventory,
            seq,
            last_id: Value::Null,
            strategy,
            partial,
            allocator: Allocator::new(),
        }
    }

    /// Allocate one order, draw it down, and return its output line.
    pub fn take(&mut self, order: &Order<'_>) -> Vec<u8> {
        let inv = &mut self.inventory;
        let items = &order.items.0;
        let n = inv.warehouses.len();
        let (ids, demand, stock) = inv.order_matrix(order);
        let instance = Instance {
            demand: &demand,
            stock: &stock,
            warehouses: n,
            cost: inv.cost.as_deref(),
        };
        let allocation = self
            .allocator
            .allocate(&instance, self.strategy, self.partial);
        for pick in &allocation.picks {
            let id = ids[pick.item].expect("only stocked items are picked");
            inv.stock[pick.warehouse][id] -= pick.qty;
        }
        self.seq += 1;
        self.last_id = order.id.clone();
        let shipments = Shipments {
            picks: &allocation.picks,
            warehouse: &|w| inv.warehouses[w].as_str(),
            item: &|i| items[i].0.as_ref(),
        };
        let unshipped = Unshipped {
            items: &allocation.unshipped,
            name: &|i| items[i].0.as_ref(),
            qty: &|i| items[i].1,
        };
        let line = OrderLine {
            id: &order.id,
            seq: self.seq,
            shipments,
            unshipped: self.partial.then_some(unshipped),
        };
        serde_json::to_vec(&line).expect("an order line always serializes")
    }
}

#[derive(Serialize)]
struct OrderLine<'a> {
    id: &'a Value,
    seq: u64,
    shipments: Shipments<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unshipped: Option<Unshipped<'a>>,
}

/// The state file: what is left, how far we got, and the last batch's lines to print again.
#[derive(Serialize)]
struct StateOut<'a> {
    version: u32,
    seq: u64,
    last_id: &'a Value,
    warehouses: &'a Inventory,
    unconfirmed: Vec<&'a str>,
}

#[derive(Deserialize)]
struct StateIn<'a> {
    version: u32,
    seq: u64,
    #[serde(default)]
    last_id: Value,
    #[serde(borrow)]
    warehouses: Warehouses<'a>,
    #[serde(default)]
    unconfirmed: Vec<String>,
}

/// The state file and the lock that makes it ours.
struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

impl StateFile {
    fn lock(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| Error::usage(format!("--state {}: not a file name", path.display())))?
            .to_string_lossy()
            .into_owned();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let lock_path = dir.join(format!("{name}.lock"));
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                Error::failed(format!(
                    "{} is in use by another allocate ({}): {e}",
                    path.display(),
                    lock_path.display()
                ))
            })?;
        Ok(StateFile {
            path: path.to_path_buf(),
            tmp: dir.join(format!(".{name}.tmp")),
            _lock: lock,
        })
    }

    /// Replace the state atomically ([`crate::durable::replace`]): a temporary file, fsynced and
    /// renamed over the state, then the directory fsynced; a failed write leaves the old state
    /// and no temporary file.
    fn commit(&self, desk: &Desk, lines: &[Vec<u8>]) -> Result<()> {
        let state = StateOut {
            version: STATE_VERSION,
            seq: desk.seq,
            last_id: &desk.last_id,
            warehouses: &desk.inventory,
            unconfirmed: lines
                .iter()
                .map(|l| std::str::from_utf8(l).expect("serde_json writes UTF-8"))
                .collect(),
        };
        let mut bytes = serde_json::to_vec(&state)
            .map_err(|e| Error::failed(format!("encoding state: {e}")))?;
        bytes.push(b'\n');
        crate::durable::replace(&self.path, &self.tmp, |file| {
            file.write_all(&bytes)
                .map_err(|e| Error::io(format!("writing {}", self.tmp.display()), e))
        })?;
        Ok(())
    }
}

pub(super) fn read_inventory(path: &Path) -> Result<Inventory> {
    #[derive(Deserialize)]
    struct Listed<'a> {
        #[serde(borrow)]
        warehouses: Warehouses<'a>,
    }
    let text = fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    // Either the warehouse list itself, or an object holding it as `warehouses`.
    let list = match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str::<Warehouses>(&text)
            .map_err(|e| crate::input::describe_json_error(&text, &e)),
        _ => parse_object::<Listed>(&text).map(|l| l.warehouses),
    };
    let list = list.map_err(|e| Error::failed(format!("{}: {e}", path.display())))?;
    Inventory::new(&list).map_err(|e| Error::failed(format!("{}: {e}", path.display())))
}

fn read_state(path: &Path) -> Result<(Inventory, u64, Value, Vec<String>)> {
    let text = fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let state = parse_object::<StateIn>(&text)
        .map_err(|e| Error::failed(format!("state {}: {e}", path.display())))?;
    if state.version != STATE_VERSION {
        return Err(Error::failed(format!(
            "state {}: version {} is not the version {STATE_VERSION} this allocate writes",
            path.display(),
            state.version
        )));
    }
    let inventory = Inventory::new(&state.warehouses)
        .map_err(|e| Error::failed(format!("state {}: {e}", path.display())))?;
    Ok((inventory, state.seq, state.last_id, state.unconfirmed))
}

/// Run live mode: see the module doc.
pub fn run(config: &Config, out: &mut Output<impl Write>) -> Result<()> {
    let state = config.state.as_deref().map(StateFile::lock).transpose()?;
    let resumed = match &state {
        Some(s) if s.path.exists() => Some(read_state(&s.path)?),
        _ => None,
    };
    let unconfirmed_empty = resumed.as_ref().is_none_or(|r| r.3.is_empty());
    let mut desk = match resumed {
        Some((inventory, seq, last_id, unconfirmed)) => {
            let path = config.state.as_deref().expect("resumed from a state file");
            warn(format_args!(
                "resuming from {} after order seq {seq}",
                path.display()
            ));
            // The last batch may have been drawn down without being printed: print it again.
            for line in &unconfirmed {
                out.emit_raw(line.as_bytes())?;
                out.flush()?;
            }
            let mut desk = Desk::new(inventory, seq, config.strategy, config.partial);
            desk.last_id = last_id;
            desk
        }
        None => {
            let Some(path) = &config.inventory else {
                let state = config
                    .state
                    .as_deref()
                    .expect("live mode has --inventory or --state");
                return Err(Error::usage(format!(
                    "--state {} does not exist yet: give --inventory FILE to start it",
                    state.display()
                )));
            };
            Desk::new(read_inventory(path)?, 0, config.strategy, config.partial)
        }
    };
    let mut bad = config.input.bad_lines();
    let batches = config.input.open()?.spawn();
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(BATCH_ORDERS);
    let mut printed_since_commit = !unconfirmed_empty;
    for batch in batches {
        let batch = batch?;
        // A read may bring more lines than one commit takes.
        for first in (0..batch.len()).step_by(BATCH_ORDERS) {
            lines.clear();
            for i in first..batch.len().min(first + BATCH_ORDERS) {
                if let Some(order) = parse_order(&batch.line(i), &mut bad)? {
                    lines.push(desk.take(&order));
                }
            }
            if lines.is_empty() {
                continue;
            }
            if let Some(state) = &state {
                state.commit(&desk, &lines)?;
            }
            for line in &lines {
                out.emit_raw(line)?;
                out.flush()?;
            }
            printed_since_commit = true;
        }
    }
    // Everything committed was printed: a clean end leaves nothing to print again.
    if let (Some(state), true) = (&state, printed_since_commit) {
        state.commit(&desk, &[])?;
    }
    bad.finish()
}

pub(super) fn parse_order<'l>(line: &Line<'l>, bad: &mut BadLines) -> Result<Option<Order<'l>>> {
    let text = match &line.text {
        Ok(text) => *text,
        Err(e) => return bad.report(line.at, e).map(|()| None),
    };
    match parse_object::<Order>(text) {
        Ok(order) => Ok(Some(order)),
        Err(reason) => bad.report(line.at, reason).map(|()| None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::Strategy;

    fn inventory(text: &str) -> Inventory {
        Inventory::new(&serde_json::from_str::<Warehouses>(text).unwrap()).unwrap()
    }

    #[test]
    fn both_order_shapes_parse() {
        let o = parse_object::<Order>(r#"{"id":"o-1","items":{"b":2,"a":1},"note":"x"}"#).unwrap();
        assert_eq!(o.id, Value::from("o-1"));
        assert_eq!(o.items.0, vec![("b".into(), 2), ("a".into(), 1)]);
        let o = parse_object::<Order>(r#"{"b":2,"a":1}"#).unwrap();
        assert_eq!(o.id, Value::Null);
        assert_eq!(o.items.0, vec![("b".into(), 2), ("a".into(), 1)]);
        let o = parse_object::<Order>(r#"{"items":{"a":1},"id":7}"#).unwrap();
        assert_eq!(o.id, Value::from(7));
    }

    #[test]
    fn bad_orders_say_why() {
        let e = parse_object::<Order>(r#"{"a":-1}"#).unwrap_err();
        assert_eq!(e, r#"item "a": quantity -1 is negative"#);
        let e = parse_object::<Order>(r#"{"id":"o-1","a":1}"#).unwrap_err();
        assert!(
            e.starts_with(r#"item "id" is a string, not a quantity"#),
            "{e}"
        );
        let e = parse_object::<Order>(r#"{"items":3}"#).unwrap_err();
        assert!(e.starts_with(r#""items" is not an object"#), "{e}");
        let e = parse_object::<Order>(r#"{"items":{"a":1.5}}"#).unwrap_err();
        assert_eq!(e, r#"item "a": quantity 1.5 is not a whole number"#);
    }

    #[test]
    fn orders_draw_down_and_stop_when_stock_is_gone() {
        let inv = inventory(
            r#"[{"name":"owd","inventory":{"apple":5}},{"name":"dm","inventory":{"apple":5,"kiwi":1}}]"#,
        );
        let mut desk = Desk::new(inv, 0, Strategy::Cheapest, false);
        let take = |desk: &mut Desk, text: &str| {
            String::from_utf8(desk.take(&parse_object::<Order>(text).unwrap())).unwrap()
        };
        assert_eq!(
            take(&mut desk, r#"{"id":"a","items":{"apple":3}}"#),
            r#"{"id":"a","seq":1,"shipments":[{"owd":{"apple":3}}]}"#
        );
        assert_eq!(
            take(&mut desk, r#"{"apple":4}"#),
            r#"{"id":null,"seq":2,"shipments":[{"dm":{"apple":4}}]}"#
        );
        assert_eq!(
            take(&mut desk, r#"{"apple":4}"#),
            r#"{"id":null,"seq":3,"shipments":[]}"#
        );
        assert_eq!(desk.inventory.remaining("owd", "apple"), 2);
        assert_eq!(desk.inventory.remaining("dm", "apple"), 1);
        assert_eq!(
            take(&mut desk, r#"{"apple":3,"kiwi":1}"#),
            r#"{"id":null,"seq":4,"shipments":[{"owd":{"apple":2}},{"dm":{"apple":1,"kiwi":1}}]}"#
        );
        assert_eq!(desk.inventory.remaining("dm", "kiwi"), 0);
    }

    #[test]
    fn partial_orders_report_what_is_left_out() {
        let inv = inventory(r#"[{"name":"owd","inventory":{"apple":5}}]"#);
        let mut desk = Desk::new(inv, 0, Strategy::Cheapest, true);
        let line =
            desk.take(&parse_object::<Order>(r#"{"id":1,"items":{"apple":2,"pear":1}}"#).unwrap());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"{"id":1,"seq":1,"shipments":[{"owd":{"apple":2}}],"unshipped":{"pear":1}}"#
        );
    }

    #[test]
    fn inventory_round_trips_through_its_serialization() {
        let text = r#"[{"name":"owd","inventory":{"pear":1,"apple":5},"cost":2.5},{"name":"dm","inventory":{"apple":0}}]"#;
        let e = Inventory::new(&serde_json::from_str::<Warehouses>(text).unwrap()).unwrap_err();
        assert!(e.contains("no cost"), "{e}");
        let text = r#"[{"name":"owd","inventory":{"pear":1,"apple":5}},{"name":"dm","inventory":{"apple":0}}]"#;
        let inv = inventory(text);
        let written = serde_json::to_string(&inv).unwrap();
        assert_eq!(written, text);
        assert_eq!(inventory(&written), inv);
    }
}
