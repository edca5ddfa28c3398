//! CPU time of the benchmark itself (getrusage) and of the server under test (the `/proc` stat of
//! each given pid and of all its descendants, so forked workers and gunicorn's children count).

use std::collections::HashMap;
use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};

/// User + system CPU time this process has used so far.
pub fn own() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
            };
            tv(u.user_time()) + tv(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// A process as `/proc/PID/stat` shows it: parent and CPU ticks used (user + system).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub ppid: i32,
    pub ticks: u64,
}

/// Parse the text of `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses,
/// so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        ppid,
        ticks: utime + stime,
    })
}

/// The CPU ticks used so far by `roots` and all their living descendants, given every process.
pub fn tree_ticks(procs: &HashMap<i32, ProcStat>, roots: &[i32]) -> u64 {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, stat) in procs {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut total = 0;
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(stat) = procs.get(&pid) {
            total += stat.ticks;
        }
        if let Some(kids) = children.get(&pid) {
            todo.extend(kids);
        }
    }
    total
}

/// CPU time used so far by the server processes `roots` and their descendants.
pub fn server(roots: &[i32]) -> Duration {
    let mut procs = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            {
                procs.insert(pid, stat);
            }
        }
    }
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100) as u64;
    let ticks = tree_ticks(&procs, roots);
    Duration::from_micros(ticks * 1_000_000 / hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_stat_line_whose_name_has_spaces() {
        let text = "4242 (gunicorn: worker (x)) S 4200 4200 4200 0 -1 4194560 1 0 0 0 \
                    150 30 0 0 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                ppid: 4200,
                ticks: 180
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_tree_counts_every_descendant_once() {
        let procs: HashMap<i32, ProcStat> = [
            (
                1,
                ProcStat {
                    ppid: 0,
                    ticks: 1000,
                },
            ),
            (10, ProcStat { ppid: 1, ticks: 5 }),
            (11, ProcStat { ppid: 10, ticks: 7 }),
            (
                12,
                ProcStat {
                    ppid: 10,
                    ticks: 11,
                },
            ),
            (
                13,
                ProcStat {
                    ppid: 11,
                    ticks: 13,
                },
            ),
            (20, ProcStat { ppid: 1, ticks: 17 }),
        ]
        .into();
        assert_eq!(tree_ticks(&procs, &[10]), 5 + 7 + 11 + 13);
        assert_eq!(tree_ticks(&procs, &[11, 13, 20]), 7 + 13 + 17);
        assert_eq!(tree_ticks(&procs, &[99]), 0);
    }

    #[test]
    fn our_own_cpu_time_grows_with_work() {
        let before = own();
        let mut x = 0u64;
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        assert!(own() > before);
    }
}
