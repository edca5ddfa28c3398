//! Helpers for the repricing-loop tests: the programs by name, the challenge CSV, and /proc
//! readings.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

#[allow(unused_imports)]
pub use crate::common::WITHIN;
use crate::common::{procfs, Daemon};

pub fn exe(name: &str) -> String {
    match name {
        "ticker" => env!("CARGO_BIN_EXE_ticker").into(),
        "data-manager" => env!("CARGO_BIN_EXE_data-manager").into(),
        "price-api" => env!("CARGO_BIN_EXE_price-api").into(),
        "reprice" => env!("CARGO_BIN_EXE_reprice").into(),
        other => panic!("no program {other}"),
    }
}

/// The challenge's CSV (never copied into the repository).
pub fn challenge_csv() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/data.csv").into()
}

pub fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Prices of a single-series CSV, in row order (the test's own reading, as an oracle).
pub fn csv_prices(path: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').nth(1).unwrap().trim().parse().unwrap())
        .collect()
}

/// Start program `name` (stdout and stderr read line by line as they come).
pub fn start(name: &str, args: &[&str], stdin: Stdio) -> Daemon {
    Daemon::program(&exe(name)).args(args).stdin(stdin).start()
}

/// Resident memory (kB), open file descriptors and threads of a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub rss_kb: u64,
    pub fds: usize,
    pub threads: u64,
}

pub fn usage(pid: impl std::fmt::Display + Copy) -> Usage {
    Usage {
        rss_kb: procfs::rss_kb(pid),
        fds: procfs::open_fds(pid),
        threads: procfs::status_field(pid, "Threads"),
    }
}

/// Wait until `pid` has exactly one live child and return it.
pub fn only_child(pid: impl std::fmt::Display, within: Duration) -> i32 {
    procfs::only_child(pid, within) as i32
}

pub fn alive(pid: impl std::fmt::Display) -> bool {
    procfs::alive(pid)
}
