//! The `load` profile: CPU and RAM readings of `--servers N` servers, for `load-monitor`.
//!
//! ```text
//! {"server":"server0001","cpu":37.5,"ram":61.2,"timestamp":"2017-01-03T15:53:01.494821Z"}
//! ```
//!
//! Servers are named `server0001` … `serverNNNN` and report in turn (event i is server i mod N).
//! `cpu` and `ram` are percentages of the machine's capacity, 0 to 100 with one decimal. Each
//! server's load is a bounded random walk (steps of up to ±5 points for CPU, ±1 for RAM), so the
//! series look like machines under changing load rather than noise.

use super::text::{self, Stamp};
use crate::error::{Error, Result};
use crate::time::Micros;

/// The most servers the profile names (the names have four digits).
pub const MAX_SERVERS: u32 = 9999;

pub struct Load {
    /// Per server: CPU and RAM in tenths of a percent.
    servers: Vec<(u32, u32)>,
    next: usize,
    stamp: Stamp,
}

impl Load {
    pub fn new(servers: u32, rng: &mut fastrand::Rng) -> Result<Self> {
        if servers == 0 || servers > MAX_SERVERS {
            return Err(Error::usage(format!(
                "--servers must be between 1 and {MAX_SERVERS}"
            )));
        }
        Ok(Load {
            servers: (0..servers)
                .map(|_| (rng.u32(50..700), rng.u32(200..800)))
                .collect(),
            next: 0,
            stamp: Stamp::default(),
        })
    }

    pub fn write(&mut self, rng: &mut fastrand::Rng, at: Micros, out: &mut Vec<u8>) {
        let index = self.next;
        self.next = (self.next + 1) % self.servers.len();
        let (cpu, ram) = &mut self.servers[index];
        *cpu = walk(rng, *cpu, 50);
        *ram = walk(rng, *ram, 10);
        out.extend_from_slice(br#"{"server":"server"#);
        let n = index as u32 + 1;
        out.extend_from_slice(&[
            b'0' + (n / 1000 % 10) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ]);
        out.extend_from_slice(br#"","cpu":"#);
        text::push_tenths(out, *cpu);
        out.extend_from_slice(br#","ram":"#);
        text::push_tenths(out, *ram);
        out.extend_from_slice(br#","timestamp":"#);
        self.stamp.push_micros(out, at);
        out.push(b'}');
    }
}

/// One step of a random walk on 0..=1000 tenths, at most `step` tenths either way.
fn walk(rng: &mut fastrand::Rng, v: u32, step: u32) -> u32 {
    let delta = rng.u32(..=2 * step);
    (v + delta).saturating_sub(step).min(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_report_in_turn_within_bounds() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut gen = Load::new(3, &mut rng).unwrap();
        let mut names = Vec::new();
        for i in 0..3000 {
            let mut out = Vec::new();
            gen.write(&mut rng, i * 1_000_000, &mut out);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            for key in ["cpu", "ram"] {
                let p = v[key].as_f64().unwrap();
                assert!((0.0..=100.0).contains(&p), "{v}");
            }
            names.push(v["server"].as_str().unwrap().to_string());
        }
        assert_eq!(
            &names[..4],
            ["server0001", "server0002", "server0003", "server0001"]
        );
        assert!(Load::new(0, &mut rng).is_err());
    }
}
