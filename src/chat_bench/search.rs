//! The capacity search: grow the number of clients (doubling) until a step fails, then bisect
//! between the largest ok and the smallest failed count until they are within the tolerance.
//! Pure: it is told each step's verdict and says which count to try next.

#[derive(Debug, Clone)]
pub struct Search {
    start: u32,
    max: u32,
    /// Stop bisecting when the bracket is narrower than this share of the lower bound (percent).
    tolerance_pct: u32,
    /// The largest count that was ok.
    ok: Option<u32>,
    /// The smallest count that failed.
    failed: Option<u32>,
}

impl Search {
    pub fn new(start: u32, max: u32, tolerance_pct: u32) -> Search {
        let max = max.max(1);
        Search {
            start: start.clamp(1, max),
            max,
            tolerance_pct,
            ok: None,
            failed: None,
        }
    }

    /// The next count to measure, or `None` when the answer is known.
    pub fn next(&self) -> Option<u32> {
        match (self.ok, self.failed) {
            (None, None) => Some(self.start),
            (Some(ok), None) if ok >= self.max => None,
            (Some(ok), None) => Some(ok.saturating_mul(2).min(self.max)),
            (ok, Some(failed)) => {
                let ok = ok.unwrap_or(0);
                let width = failed.saturating_sub(ok);
                let enough = (u64::from(ok) * u64::from(self.tolerance_pct) / 100).max(1);
                (u64::from(width) > enough).then(|| ok + width / 2)
            }
        }
    }

    /// Tell the search how a count did.
    pub fn record(&mut self, clients: u32, ok: bool) {
        if ok {
            if self.ok.is_none_or(|o| clients > o) {
                self.ok = Some(clients);
            }
            // A noisy machine can pass a count above one that failed: the bracket moves up.
            if self.failed.is_some_and(|f| f <= clients) {
                self.failed = None;
            }
        } else {
            if self.failed.is_none_or(|f| clients < f) {
                self.failed = Some(clients);
            }
            if self.ok.is_some_and(|o| o >= clients) {
                self.ok = None;
            }
        }
    }

    /// The largest count that held (0 if none did).
    pub fn max_clients(&self) -> u32 {
        self.ok.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(search: &mut Search, capacity: u32) -> Vec<u32> {
        let mut steps = Vec::new();
        while let Some(n) = search.next() {
            steps.push(n);
            assert!(steps.len() < 100, "search does not end: {steps:?}");
            search.record(n, n <= capacity);
        }
        steps
    }

    #[test]
    fn grows_then_bisects() {
        let mut s = Search::new(100, 100_000, 5);
        let steps = run(&mut s, 1000);
        assert_eq!(&steps[..5], &[100, 200, 400, 800, 1600]);
        assert!(steps[5..].iter().all(|&n| n > 800 && n < 1600));
        let found = s.max_clients();
        assert!((950..=1000).contains(&found), "{found} from {steps:?}");
    }

    #[test]
    fn a_server_that_holds_nobody_gives_zero() {
        let mut s = Search::new(50, 1000, 5);
        run(&mut s, 0);
        assert_eq!(s.max_clients(), 0);
    }

    #[test]
    fn stops_at_the_maximum() {
        let mut s = Search::new(100, 500, 5);
        assert_eq!(run(&mut s, 10_000), [100, 200, 400, 500]);
        assert_eq!(s.max_clients(), 500);
    }

    proptest! {
        #[test]
        fn finds_the_capacity_within_the_tolerance(
            start in 1u32..500, capacity in 0u32..20_000, tolerance in 0u32..20,
        ) {
            let mut s = Search::new(start, 50_000, tolerance);
            run(&mut s, capacity);
            let found = s.max_clients();
            prop_assert!(found <= capacity);
            let slack = (u64::from(found) * u64::from(tolerance) / 100).max(1);
            prop_assert!(u64::from(capacity - found) < slack,
                "capacity {} found {} tolerance {}", capacity, found, tolerance);
        }
    }
}
