//! Schedule generators and their registry.
//!
//! Every generator takes [`Params`] and returns a [`Schedule`]; [`generate`] looks a name up in
//! [`registry`], builds the schedule and validates it, so nothing invalid leaves the engine.

pub mod blocks;
pub mod classic;
pub mod greedy;
pub mod rounds;
pub mod zeropp;

use crate::error::Error;
use crate::ir::Schedule;
use crate::simulate::Costs;
use crate::validate::validate;

/// A memory budget per device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MemoryBudget {
    /// Absolute activation units (1 unit = one microbatch on one 1F1B stage).
    Units(f64),
    /// A multiple of 1F1B's peak, `min(p, m)` units.
    Of1f1b(f64),
}

impl MemoryBudget {
    /// Parses `0.5x` (a multiple of 1F1B's peak) or `4` (units).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let t = text.trim();
        let bad = || {
            Error::parse(
                "memory budget",
                format!("`{t}`: write units (`4`) or a multiple of 1F1B's peak (`0.5x`)"),
            )
        };
        let (num, of) = match t.strip_suffix(['x', 'X']) {
            Some(n) => (n, true),
            None => (t, false),
        };
        let v: f64 = num.trim().parse().map_err(|_| bad())?;
        if !(v.is_finite() && v > 0.0) {
            return Err(bad());
        }
        Ok(if of {
            MemoryBudget::Of1f1b(v)
        } else {
            MemoryBudget::Units(v)
        })
    }

    /// The budget in units for `p` devices and `m` microbatches.
    pub fn units(self, p: u32, m: u32) -> f64 {
        match self {
            MemoryBudget::Units(u) => u,
            MemoryBudget::Of1f1b(k) => k * p.min(m) as f64,
        }
    }
}

/// Everything a generator may use.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Devices `p`.
    pub devices: u32,
    /// Microbatches `m`.
    pub microbatches: u32,
    /// Chunks per device for looped placements (`None`: the schedule's default).
    pub chunks: Option<u32>,
    /// Pass costs, for cost-aware generators.
    pub costs: Costs,
    /// Memory budget, for memory-aware generators.
    pub memory: Option<MemoryBudget>,
}

impl Params {
    /// Parameters with unit costs and no budget.
    pub fn new(devices: u32, microbatches: u32) -> Self {
        Params {
            devices,
            microbatches,
            chunks: None,
            costs: Costs::default(),
            memory: None,
        }
    }

    /// Checks `p ≥ 1` and `m ≥ 1`.
    pub fn check(&self) -> Result<(), Error> {
        if self.devices == 0 {
            return Err(Error::config(
                "the number of devices is 0; use at least 1 (-p 1)",
            ));
        }
        if self.microbatches == 0 {
            return Err(Error::config(
                "the number of microbatches is 0; use at least 1 (-m 1)",
            ));
        }
        Ok(())
    }
}

/// A registered schedule generator.
pub struct Generator {
    /// Name on the command line.
    pub name: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// Its constraints, one line.
    pub constraints: &'static str,
    /// Builds the schedule (unvalidated).
    pub build: fn(&Params) -> Result<Schedule, Error>,
}

/// ZB-H1: B/W split, 1F1B's warm-up; device `i` lets its W lag `i` microbatches behind its B so
/// the lagging Ws fill the cool-down. Peak `p` units on every device. Under unequal costs the
/// greedy list scheduler at the same memory is tried too and kept when it is faster.
pub fn zb_h1(prm: &Params) -> Result<Schedule, Error> {
    let p = prm.devices;
    let direct = classic::zero_bubble_lagged("zb-h1", prm, |i| p - 1 - i, |i| i)?;
    cost_aware(direct, prm, p as f64)
}

/// ZB-H2: B/W split, `2(p-1-i)` warm-up forwards on device `i` and W lagging `2i`; peak `2p - 1`.
/// Under unequal costs the greedy list scheduler at the same memory is tried too.
pub fn zb_h2(prm: &Params) -> Result<Schedule, Error> {
    let p = prm.devices;
    let direct = classic::zero_bubble_lagged("zb-h2", prm, |i| 2 * (p - 1 - i), |i| 2 * i)?;
    let limit = (2 * p - 1).min(prm.microbatches.max(1) + p - 1) as f64;
    cost_aware(direct, prm, limit)
}

/// The direct schedule, or the sequential greedy list schedule at the same memory `limit` when
/// that is faster under `prm.costs` (never at equal F, B, W costs with no latency, where the
/// direct schedules are already the reference).
fn cost_aware(direct: Schedule, prm: &Params, limit: f64) -> Result<Schedule, Error> {
    let c = prm.costs;
    if c.f == c.b && c.b == c.w && c.comm == 0.0 {
        return Ok(direct);
    }
    let cfg = crate::simulate::SimConfig::with_costs(c);
    let base = crate::simulate::simulate(&direct, &cfg)?;
    let limit = limit.max(base.max_peak());
    let p = prm.devices;
    let mut best = (base.makespan, direct);
    for pace in [None, Some(p as f64)] {
        let o = greedy::GreedyOptions {
            name: best.1.name.clone(),
            devices: p,
            microbatches: prm.microbatches,
            placement: crate::ir::Placement::Sequential,
            durations: vec![[c.f, c.b, c.w, c.bw_cost()]; p as usize],
            comm: c.comm,
            activation: vec![1.0; p as usize],
            limit: vec![limit; p as usize],
            pace: pace.map(|x| vec![x; p as usize]),
            split_backward: true,
            max_in_flight: None,
            reserve: false,
        };
        let Ok(s) = greedy::list_schedule(&o) else {
            continue;
        };
        let Ok(r) = crate::simulate::simulate(&s, &cfg) else {
            continue;
        };
        if r.makespan < best.0 - 1e-9 && r.max_peak() <= limit + 1e-9 {
            best = (r.makespan, s);
        }
    }
    Ok(best.1)
}

static REGISTRY: &[Generator] = &[
    Generator {
        name: "gpipe",
        summary: "GPipe: all forwards, then all fused backwards; memory grows with m",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement",
        build: classic::gpipe,
    },
    Generator {
        name: "1f1b",
        summary: "one-forward-one-backward (PipeDream-flush): p-1-i warm-up forwards, memory p",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement",
        build: classic::one_f_one_b,
    },
    Generator {
        name: "interleaved-1f1b",
        summary: "Megatron's interleaved 1F1B, depth-first over v chunks per device; bubble ≈ (p-1)/(v·m)",
        constraints: "m a multiple of p; looped placement, --chunks v (default 2)",
        build: classic::interleaved,
    },
    Generator {
        name: "bfs",
        summary: "breadth-first looped pipeline: all microbatches through a chunk before the next; memory m",
        constraints: "any p ≥ 1, m ≥ 1; looped placement, --chunks v (default 2)",
        build: classic::breadth_first,
    },
    Generator {
        name: "zb-h1",
        summary: "zero-bubble H1: B/W split, W fills the cool-down; 1F1B's memory, bubble ≈ 1/3 of 1F1B",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement; uses --cost",
        build: zb_h1,
    },
    Generator {
        name: "zb-h2",
        summary: "zero-bubble H2: B/W split, 2p-1 warm-up forwards; memory 2p-1, bubble near zero",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement; uses --cost",
        build: zb_h2,
    },
    Generator {
        name: "v-min",
        summary: "V-Min building block: V-shape, about 1/3 of 1F1B's activation memory",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses --cost",
        build: blocks::v_min,
    },
    Generator {
        name: "v-half",
        summary: "V-Half building block: V-shape, about 1/2 of 1F1B's activation memory",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses --cost",
        build: blocks::v_half,
    },
    Generator {
        name: "v-zb",
        summary: "V-ZB building block: V-shape, 1F1B's memory, nearly zero bubble",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses --cost",
        build: blocks::v_zb,
    },
    Generator {
        name: "zb-v",
        summary: "ZB-V: V-shape, B/W split, greedy at 1F1B's memory; nearly zero bubble",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses --cost",
        build: blocks::zb_v,
    },
    Generator {
        name: "auto",
        summary: "best schedule found within a memory budget (blocks, greedy, direct) under the costs",
        constraints: "any p ≥ 1, m ≥ 1; --memory (default 1x = 1F1B's), uses --cost",
        build: blocks::auto,
    },
    Generator {
        name: "zeropp",
        summary: "ZeroPP: looped, units of U microbatches (F breadth-first, B critical, W fills), units overlap",
        constraints: "any p ≥ 1, m ≥ 1; looped placement, --chunks v (default 2); U = smallest divisor of m ≥ p (--unit with --fsdp)",
        build: zeropp::zeropp,
    },
];

/// All registered generators, in the order `list` shows them.
pub fn registry() -> &'static [Generator] {
    REGISTRY
}

/// Looks a generator up by name, suggesting the nearest name on a miss.
pub fn find(name: &str) -> Result<&'static Generator, Error> {
    let key = name.trim().to_ascii_lowercase();
    if let Some(g) = REGISTRY.iter().find(|g| g.name == key) {
        return Ok(g);
    }
    let suggestion = REGISTRY
        .iter()
        .map(|g| (edit_distance(&key, g.name), g.name))
        .min()
        .filter(|(d, n)| *d <= (n.len() / 2).max(2))
        .map(|(_, n)| n.to_string());
    Err(Error::UnknownSchedule {
        name: name.to_string(),
        suggestion,
    })
}

/// Builds a schedule by name and validates it.
pub fn generate(name: &str, prm: &Params) -> Result<Schedule, Error> {
    let g = find(name)?;
    prm.check()?;
    let s = (g.build)(prm)?;
    validate(&s)?;
    Ok(s)
}

/// Levenshtein distance, for name suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
