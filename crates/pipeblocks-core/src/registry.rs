//! The registry of named schedules: what each is, which parameters it reads, and
//! [`generate`], which builds a schedule by name and validates it, so nothing invalid leaves the
//! engine.

use crate::error::Error;
use crate::generators::{self, classic, zeropp};
use crate::ir::Schedule;
use crate::params::Params;
use crate::search;
use crate::validate::validate;

/// Which of [`Params`]' options a generator reads (the others it ignores).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uses {
    /// Chunks per device (looped placements).
    pub chunks: bool,
    /// The memory budget.
    pub budget: bool,
    /// The stages' costs (a cost-aware order; every schedule is simulated under them anyway).
    pub costs: bool,
    /// ZeroPP's group size, which is also its FSDP gather window.
    pub group: bool,
}

const FIXED: Uses = Uses {
    chunks: false,
    budget: false,
    costs: false,
    group: false,
};
const LOOPED: Uses = Uses {
    chunks: true,
    ..FIXED
};
const COSTED: Uses = Uses {
    costs: true,
    ..FIXED
};

/// A registered schedule generator.
pub struct Generator {
    /// Name on the command line.
    pub name: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// Its constraints, one line.
    pub constraints: &'static str,
    /// The parameters it reads.
    pub uses: Uses,
    /// Builds the schedule (unvalidated).
    pub build: fn(&Params) -> Result<Schedule, Error>,
}

impl Generator {
    /// Microbatches per FSDP gather window of its schedules: ZeroPP's group, else the whole
    /// step (each stage gathered once per phase).
    pub fn fsdp_window(&self, prm: &Params) -> u32 {
        if self.uses.group {
            zeropp::group_of(prm)
        } else {
            prm.microbatches()
        }
    }
}

static REGISTRY: &[Generator] = &[
    Generator {
        name: "gpipe",
        summary: "GPipe: all forwards, then all fused backwards; memory grows with m",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement",
        uses: FIXED,
        build: classic::gpipe,
    },
    Generator {
        name: "1f1b",
        summary: "one-forward-one-backward (PipeDream-flush): p-1-i warm-up forwards, memory p",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement",
        uses: FIXED,
        build: classic::one_f_one_b,
    },
    Generator {
        name: "interleaved-1f1b",
        summary: "Megatron's interleaved 1F1B, depth-first over v chunks per device; bubble ≈ (p-1)/(v·m)",
        constraints: "m a multiple of p; looped placement, v chunks per device (default 2)",
        uses: LOOPED,
        build: classic::interleaved,
    },
    Generator {
        name: "bfs",
        summary: "breadth-first looped pipeline: all microbatches through a chunk before the next; memory m",
        constraints: "any p ≥ 1, m ≥ 1; looped placement, v chunks per device (default 2)",
        uses: LOOPED,
        build: classic::breadth_first,
    },
    Generator {
        name: "zb-h1",
        summary: "zero-bubble H1: B/W split, W fills the cool-down; 1F1B's memory, bubble ≈ 1/3 of 1F1B",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement; uses the costs",
        uses: COSTED,
        build: generators::zb_h1,
    },
    Generator {
        name: "zb-h2",
        summary: "zero-bubble H2: B/W split, 2p-1 warm-up forwards; memory 2p-1, bubble near zero",
        constraints: "any p ≥ 1, m ≥ 1; sequential placement; uses the costs",
        uses: COSTED,
        build: generators::zb_h2,
    },
    Generator {
        name: "v-min",
        summary: "V-Min building block: V-shape, about 1/3 of 1F1B's activation memory",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses the costs",
        uses: COSTED,
        build: generators::v_min,
    },
    Generator {
        name: "v-half",
        summary: "V-Half building block: V-shape, about 1/2 of 1F1B's activation memory",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses the costs",
        uses: COSTED,
        build: generators::v_half,
    },
    Generator {
        name: "v-zb",
        summary: "V-ZB building block: V-shape, 1F1B's memory, nearly zero bubble",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses the costs",
        uses: COSTED,
        build: generators::v_zb,
    },
    Generator {
        name: "zb-v",
        summary: "ZB-V: V-shape, B/W split, greedy at 1F1B's memory; nearly zero bubble",
        constraints: "any p ≥ 1, m ≥ 1; V-shape placement (2 stages per device); uses the costs",
        uses: COSTED,
        build: search::zb_v,
    },
    Generator {
        name: "dualpipev",
        summary: "DeepSeek's DualPipeV: V-shape, forwards overlapped with backwards in pairs, split at the ends",
        constraints: "m ≥ 2p; V-shape placement (2 stages per device)",
        uses: FIXED,
        build: generators::dualpipe::dualpipev,
    },
    Generator {
        name: "dualpipe",
        summary: "DeepSeek's DualPipe: two pipelines in opposite directions (two parameter copies), forward/backward pairs",
        constraints: "p even, m even and ≥ 2p; bidirectional placement (2 stages per device)",
        uses: FIXED,
        build: generators::dualpipe::dualpipe,
    },
    Generator {
        name: "auto",
        summary: "best schedule found within a memory budget (blocks, greedy, direct) under the costs",
        constraints: "any p ≥ 1, m ≥ 1; a memory budget (default 1x = 1F1B's); uses the costs",
        uses: Uses {
            budget: true,
            ..COSTED
        },
        build: search::auto,
    },
    Generator {
        name: "zeropp",
        summary: "ZeroPP: looped, groups of U microbatches (F breadth-first, B critical, W fills), groups overlap",
        constraints: "any p ≥ 1, m ≥ 1; looped placement, v chunks per device (default 2); groups of U microbatches, by default the smallest divisor of m ≥ p",
        uses: Uses {
            chunks: true,
            budget: true,
            costs: true,
            group: true,
        },
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
