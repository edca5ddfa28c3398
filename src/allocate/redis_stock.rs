//! `--inventory redis://HOST:PORT/KEY`: one stock in Redis, shared by any number of allocate
//! processes on any number of hosts.
//!
//! ## Keys
//! All under the hash tag `{KEY}` (one cluster slot): `{KEY}:layout` the seed's warehouse list
//! (names, costs, item order; its quantities are the seed's), `{KEY}:stock` a hash of what is left
//! (field `W:ITEM`, W the warehouse's index in the list), `{KEY}:seq` the last `seq` handed out,
//! `{KEY}:done:DAY` a hash of order token → the answer line printed for it, one per day of
//! Redis's clock (days since 1970, UTC), expiring [`DONE_TTL_SECS`] after its first order.
//!
//! ## One order
//! allocate keeps a copy of the stock (read once at start, kept up to date from every reply). For
//! each order it plans with the same allocator as the file form against that copy, then runs one
//! Lua script (EVALSHA) with the order's token, its answer line (without `seq`), and for every
//! cell the plan depended on (each warehouse listing an ordered item) the value planned against and
//! the units taken. Redis runs a script atomically. The script
//! 1. answers with the stored line if the token is in `done` (the order was applied already);
//! 2. compares every cell with the value planned against; if any differs it applies nothing and
//!    returns the current values, and allocate plans again against them;
//! 3. otherwise draws the units, `INCR`s `seq`, stores the answer under the token, returns `seq`.
//!
//! An order's answer depends only on those cells, so an answer applied in step 3 is exactly the
//! answer of serving the orders one by one in `seq` order (the order Redis applied them).
//!
//! Why Lua and not `WATCH`/`MULTI`: the check, the draw-down, `seq` and the idempotency record
//! are one round trip, and a conflict returns the fresh values in that same reply, so a retry
//! costs one more round trip, not WATCH + read + MULTI/EXEC again. With `WATCH` any write to the
//! watched keys (the whole stock hash) aborts every other process's transaction, so 8 processes
//! drawing from one stock retry each other in storms; the script only retries when a cell the
//! order depends on really changed.
//!
//! ## Redis going away
//! The token is the order's `id` (its JSON text) when it has one, else a token unique to this
//! process and line. When the connection fails with an order in flight, allocate reconnects
//! (100 ms doubling to 2 s, for up to [`GIVE_UP`]) and runs the script again with the same token:
//! the script itself says whether the order had been applied (step 1) or not (then it is applied
//! now), and allocate says which on stderr. So the order in flight is applied once or not at all.
//! What a restart can lose is what Redis itself loses: with `appendonly yes` and
//! `appendfsync always` nothing acknowledged; with `everysec` up to about a second of applied
//! orders (printed, but their stock back); without persistence the whole inventory — allocate
//! then stops ("holds no inventory") rather than seed it again. A failover to an asynchronous
//! replica can lose the writes it had not received, like any Redis write.
//!
//! An `id` seen before is answered with its first answer again and draws nothing (said on
//! stderr). The idempotency records are bounded in time: the script looks an order's token up
//! in today's and yesterday's `done` hash, so an `id` is recognised for at least a day (up to
//! two) and a retry after a reconnect always; an `id` sent again days later is a new order. The
//! day comes from Redis's `TIME`, read at start and carried on by the monotonic clock, so every
//! process on every host agrees on it whatever their own clocks say.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use redis::{Connection, Script};
use serde_json::Value;

use super::live::{parse_order, read_inventory, Inventory, Order};
use super::{Allocator, Config, Instance, Shipments, Unshipped};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::runner::warn;

/// How long a day's idempotency records live (three days: each is looked up on its day and the
/// next).
pub const DONE_TTL_SECS: u64 = 259_200;

/// How long allocate keeps trying to reach Redis before it stops.
pub const GIVE_UP: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

const TAKE: &str = r#"
local stock, seqk, done, layout, before = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('EXISTS', layout) == 0 then return {'gone'} end
local prior = redis.call('HGET', done, ARGV[1]) or redis.call('HGET', before, ARGV[1])
if prior then return {'done', prior} end
local k = tonumber(ARGV[4])
local stale = {}
for c = 0, k - 1 do
  local f = ARGV[5 + 3 * c]
  local v = redis.call('HGET', stock, f) or '0'
  if v ~= ARGV[6 + 3 * c] then stale[#stale + 1] = f; stale[#stale + 1] = v end
end
if #stale > 0 then
  for c = 0, k - 1 do
    local f = ARGV[5 + 3 * c]
    stale[#stale + 1] = f; stale[#stale + 1] = redis.call('HGET', stock, f) or '0'
  end
  table.insert(stale, 1, 'stale')
  return stale
end
for c = 0, k - 1 do
  local t = tonumber(ARGV[7 + 3 * c])
  if t > 0 then redis.call('HINCRBY', stock, ARGV[5 + 3 * c], -t) end
end
local seq = redis.call('INCR', seqk)
redis.call('HSET', done, ARGV[1], ARGV[2] .. seq .. ARGV[3])
if redis.call('TTL', done) < 0 then redis.call('EXPIRE', done, '259200') end
return {'applied', tostring(seq)}
"#;

const SEED: &str = r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SET', KEYS[4], ARGV[1])
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], 0)
return 1
"#;

struct Keys {
    stock: String,
    seq: String,
    done: String,
    layout: String,
}

impl Keys {
    fn new(key: &str) -> Self {
        Keys {
            stock: format!("{{{key}}}:stock"),
            seq: format!("{{{key}}}:seq"),
            done: format!("{{{key}}}:done:"),
            layout: format!("{{{key}}}:layout"),
        }
    }
}

/// Redis's day (days since 1970 on its clock), carried on from one `TIME` by the monotonic clock.
struct Day {
    secs_at_start: u64,
    start: Instant,
}

impl Day {
    fn read(link: &mut Link) -> Result<Day> {
        let mut lost = false;
        let (secs, _micros): (u64, u64) =
            link.call(|con| redis::cmd("TIME").query(con), &mut lost)?;
        Ok(Day {
            secs_at_start: secs,
            start: Instant::now(),
        })
    }

    fn now(&self) -> u64 {
        (self.secs_at_start + self.start.elapsed().as_secs()) / 86_400
    }
}

fn field(w: usize, item: &str) -> String {
    format!("{w}:{item}")
}

/// A connection that comes back after Redis goes away.
struct Link {
    client: redis::Client,
    con: Option<Connection>,
    url: String,
}

fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("LOADING")
}

impl Link {
    fn open(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::usage(format!("--inventory {url}: {e}")))?;
        Ok(Link {
            client,
            con: None,
            url: url.to_string(),
        })
    }

    /// Run `f` on a connection, reconnecting on failures that a reconnect can cure. `lost` is
    /// set when a call failed after it may have reached Redis.
    fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
        lost: &mut bool,
    ) -> Result<T> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut said = false;
        loop {
            let err = match self.con.as_mut() {
                Some(con) => match f(con) {
                    Ok(v) => {
                        if said {
                            warn(format_args!("redis {}: connected again", self.url));
                        }
                        return Ok(v);
                    }
                    Err(e) => {
                        self.con = None;
                        *lost = true;
                        e
                    }
                },
                None => match self.client.get_connection_with_timeout(IO_TIMEOUT) {
                    Ok(con) => {
                        con.set_read_timeout(Some(IO_TIMEOUT)).ok();
                        con.set_write_timeout(Some(IO_TIMEOUT)).ok();
                        self.con = Some(con);
                        continue;
                    }
                    Err(e) => e,
                },
            };
            if !transient(&err) {
                return Err(Error::failed(format!("redis {}: {err}", self.url)));
            }
            if start.elapsed() > GIVE_UP {
                return Err(Error::failed(format!(
                    "redis {}: unreachable for {}s: {err}",
                    self.url,
                    GIVE_UP.as_secs()
                )));
            }
            if !said {
                warn(format_args!("redis {}: {err}; reconnecting", self.url));
                said = true;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Load the inventory (layout with the current stock), or None when the key holds none.
fn load(link: &mut Link, keys: &Keys) -> Result<Option<(Inventory, u64)>> {
    let mut lost = false;
    let (layout, stock, seq): (Option<String>, HashMap<String, u64>, Option<u64>) = link.call(
        |con| {
            redis::pipe()
                .atomic()
                .get(&keys.layout)
                .hgetall(&keys.stock)
                .get(&keys.seq)
                .query(con)
        },
        &mut lost,
    )?;
    let Some(layout) = layout else {
        return Ok(None);
    };
    let list = serde_json::from_str::<super::parse::Warehouses>(&layout).map_err(|e| {
        Error::failed(format!(
            "{}: layout is not a warehouse list: {e}",
            keys.layout
        ))
    })?;
    let mut inv =
        Inventory::new(&list).map_err(|e| Error::failed(format!("{}: {e}", keys.layout)))?;
    for w in 0..inv.warehouses.len() {
        for &id in &inv.listed[w].clone() {
            inv.stock[w][id] = stock.get(&field(w, &inv.items[id])).copied().unwrap_or(0);
        }
    }
    Ok(Some((inv, seq.unwrap_or(0))))
}

fn seed(link: &mut Link, keys: &Keys, path: &Path, day: u64) -> Result<bool> {
    let inv = read_inventory(path)?;
    let mut layout = serde_json::to_string(&inv).expect("an inventory serializes");
    layout.shrink_to_fit();
    let script = Script::new(SEED);
    let mut lost = false;
    let seeded: i64 = link.call(
        |con| {
            let mut inv_call = script.key(&keys.stock);
            inv_call
                .key(&keys.seq)
                .key(format!("{}{day}", keys.done))
                .key(&keys.layout)
                .arg(&layout);
            for w in 0..inv.warehouses.len() {
                for &id in &inv.listed[w] {
                    if inv.stock[w][id] > i64::MAX as u64 {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "quantity above 2^63-1",
                        )));
                    }
                    inv_call.arg(field(w, &inv.items[id])).arg(inv.stock[w][id]);
                }
            }
            inv_call.invoke(con)
        },
        &mut lost,
    )?;
    Ok(seeded == 1)
}

/// What one order depends on and does, planned against the local copy.
struct Plan {
    prefix: String,
    suffix: String,
    /// (warehouse, item id, value planned against, units taken)
    cells: Vec<(usize, usize, u64, u64)>,
}

fn plan(inv: &Inventory, allocator: &mut Allocator, config: &Config, order: &Order<'_>) -> Plan {
    let items = &order.items.0;
    let n = inv.warehouses.len();
    let (ids, demand, stock) = inv.order_matrix(order);
    let mut cells = Vec::new();
    for w in 0..n {
        for id in ids.iter().flatten() {
            if inv.listed[w].contains(id)
                && !cells
                    .iter()
                    .any(|c: &(usize, usize, u64, u64)| c.0 == w && c.1 == *id)
            {
                cells.push((w, *id, inv.stock[w][*id], 0));
            }
        }
    }
    let instance = Instance {
        demand: &demand,
        stock: &stock,
        warehouses: n,
        cost: inv.cost.as_deref(),
    };
    let allocation = allocator.allocate(&instance, config.strategy, config.partial);
    for pick in &allocation.picks {
        let id = ids[pick.item].expect("only stocked items are picked");
        let cell = cells
            .iter_mut()
            .find(|c| c.0 == pick.warehouse && c.1 == id)
            .expect("a picked cell is listed");
        cell.3 += pick.qty;
    }
    let mut prefix = String::from("{\"id\":");
    prefix.push_str(&serde_json::to_string(&order.id).expect("an id serializes"));
    prefix.push_str(",\"seq\":");
    let mut suffix = String::from(",\"shipments\":");
    let shipments = Shipments {
        picks: &allocation.picks,
        warehouse: &|w| inv.warehouses[w].as_str(),
        item: &|i| items[i].0.as_ref(),
    };
    suffix.push_str(&serde_json::to_string(&shipments).expect("shipments serialize"));
    if config.partial {
        let unshipped = Unshipped {
            items: &allocation.unshipped,
            name: &|i| items[i].0.as_ref(),
            qty: &|i| items[i].1,
        };
        suffix.push_str(",\"unshipped\":");
        suffix.push_str(&serde_json::to_string(&unshipped).expect("unshipped serializes"));
    }
    suffix.push('}');
    Plan {
        prefix,
        suffix,
        cells,
    }
}

/// Run `--inventory redis://…`: see the module doc.
pub fn run(config: &Config, url: &str, out: &mut Output<impl Write>) -> Result<()> {
    if config.state.is_some() {
        return Err(Error::usage(
            "--state is for a file inventory; a redis:// inventory is kept by Redis",
        ));
    }
    let (conn_url, key) = crate::config::split_redis_url("--inventory", url)?;
    let keys = Keys::new(&key);
    let mut link = Link::open(&conn_url)?;
    if let Some(path) = &config.seed_from {
        let today = Day::read(&mut link)?.now();
        if !seed(&mut link, &keys, path, today)? {
            warn(format_args!(
                "{url} holds an inventory already; --seed-from {} ignored",
                path.display()
            ));
        }
    }
    let Some((mut inv, _)) = load(&mut link, &keys)? else {
        return Err(Error::failed(format!(
            "{url} holds no inventory: give --seed-from FILE to start one"
        )));
    };
    if config.show {
        let line = serde_json::to_vec(&inv).expect("an inventory serializes");
        out.emit_raw(&line)?;
        return out.flush();
    }
    let day = Day::read(&mut link)?;
    let run_token = format!("{:016x}-{}", fastrand::u64(..), std::process::id());
    let script = Script::new(TAKE);
    let mut allocator = Allocator::new();
    let mut bad = config.input.bad_lines();
    let batches = config.input.open()?.spawn();
    for batch in batches {
        let batch = batch?;
        for i in 0..batch.len() {
            let line = batch.line(i);
            let Some(order) = parse_order(&line, &mut bad)? else {
                continue;
            };
            let token = match &order.id {
                Value::Null => format!("run:{run_token}:{}", line.at),
                id => format!("id:{id}"),
            };
            let mut lost = false;
            let answer = loop {
                let today = day.now();
                let (done, before) = (
                    format!("{}{today}", keys.done),
                    format!("{}{}", keys.done, today.saturating_sub(1)),
                );
                let p = plan(&inv, &mut allocator, config, &order);
                let reply: Vec<String> = link.call(
                    |con| {
                        let mut call = script.key(&keys.stock);
                        call.key(&keys.seq)
                            .key(&done)
                            .key(&keys.layout)
                            .key(&before)
                            .arg(&token)
                            .arg(&p.prefix)
                            .arg(&p.suffix)
                            .arg(p.cells.len());
                        for &(w, id, expect, take) in &p.cells {
                            call.arg(field(w, &inv.items[id])).arg(expect).arg(take);
                        }
                        call.invoke(con)
                    },
                    &mut lost,
                )?;
                match reply.first().map(String::as_str) {
                    Some("applied") => {
                        for &(w, id, expect, take) in &p.cells {
                            inv.stock[w][id] = expect - take;
                        }
                        if lost {
                            warn(format_args!(
                                "{}: redis went away with this order in flight; it had not been \
                                 applied, and is applied now (seq {})",
                                line.at, reply[1]
                            ));
                        }
                        break format!("{}{}{}", p.prefix, reply[1], p.suffix);
                    }
                    Some("done") => {
                        if lost {
                            warn(format_args!(
                                "{}: redis went away with this order in flight; it had been \
                                 applied once, its answer follows",
                                line.at
                            ));
                        } else {
                            warn(format_args!(
                                "{}: order id {} was applied already; its first answer is \
                                 printed again and nothing is drawn",
                                line.at, order.id
                            ));
                        }
                        break reply[1].clone();
                    }
                    Some("stale") => {
                        // Pairs of (field, value): the changed cells, then every cell.
                        for pair in reply[1..].chunks(2) {
                            let (w, item) = pair[0].split_once(':').expect("fields are W:ITEM");
                            let w: usize = w.parse().expect("fields start with an index");
                            let id = inv.item_ids[item];
                            inv.stock[w][id] = pair[1].parse().map_err(|_| {
                                Error::failed(format!(
                                    "{}: {} is not a quantity",
                                    keys.stock, pair[1]
                                ))
                            })?;
                        }
                    }
                    Some("gone") => {
                        return Err(Error::failed(format!(
                            "{url} holds no inventory any more (redis restarted without \
                             persistence?); stopping at {} rather than seeding it again",
                            line.at
                        )));
                    }
                    _ => {
                        return Err(Error::failed(format!(
                            "redis {conn_url}: unexpected script reply {reply:?}"
                        )))
                    }
                }
            };
            out.emit_raw(answer.as_bytes())?;
        }
        out.flush()?;
    }
    bad.finish()
}
