//! What Linux's `/proc` says about a process: memory, CPU, descriptors, children, liveness. The
//! one reader of `/proc/PID/status` and `/proc/PID/stat` for every test.

use std::time::{Duration, Instant};

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, `Threads`…), 0 when the process or the
/// field is gone.
pub fn status_field(pid: impl std::fmt::Display, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resident memory now, in kB.
pub fn rss_kb(pid: impl std::fmt::Display) -> u64 {
    status_field(pid, "VmRSS")
}

/// Peak resident memory so far, in kB.
pub fn peak_rss_kb(pid: impl std::fmt::Display) -> u64 {
    status_field(pid, "VmHWM")
}

/// The fields of `/proc/PID/stat` after the command name (which is in parentheses and may hold
/// spaces): `[0]` is the state, `[1]` the parent pid, `[11]`/`[12]` user/system ticks.
fn stat_fields(pid: impl std::fmt::Display) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// User + system CPU seconds a process (or `"self"`) has used so far.
pub fn cpu_seconds(pid: impl std::fmt::Display) -> f64 {
    let fields = stat_fields(&pid).unwrap_or_else(|| panic!("no /proc/{pid}/stat"));
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Open file descriptors of a process (0 once it is gone).
pub fn open_fds(pid: impl std::fmt::Display) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Whether the process exists and is not a zombie.
pub fn alive(pid: impl std::fmt::Display) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

/// Pids of the live children of `pid` (forked by any of its threads).
pub fn children(pid: impl std::fmt::Display) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|&child| alive(child))
        .collect()
}

/// Wait until `pid` has exactly one live child and return it.
pub fn only_child(pid: impl std::fmt::Display, within: Duration) -> u32 {
    let deadline = Instant::now() + within;
    loop {
        let kids = children(&pid);
        if kids.len() == 1 {
            return kids[0];
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} has children {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The most file descriptors a process held while it was watched (sampled every 5 ms).
pub struct PeakFds {
    watching: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<usize>,
}

impl PeakFds {
    pub fn watch(pid: u32) -> PeakFds {
        let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let still = watching.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while still.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(open_fds(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        PeakFds { watching, sampler }
    }

    /// Stop watching; the peak.
    pub fn stop(self) -> usize {
        self.watching
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap()
    }
}

/// The peak resident memory (kB) of a process, sampled every 10 ms until it ends.
pub fn watch_peak_rss(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while alive(pid) {
            peak = peak.max(peak_rss_kb(pid));
            std::thread::sleep(Duration::from_millis(10));
        }
        peak
    })
}
