//! `block` (show a building block), `frontier` (memory/bubble Pareto frontier) and the
//! `generate --block FILE` path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use pipeblocks_core::block::{self, Block};
use pipeblocks_core::search::{from_block, frontier as frontier_points};
use pipeblocks_core::{validate, Params, Schedule, StageCosts};

use crate::common::{read_text, whole, write_stdout, CostArg, ScheduleSpec};

/// `block` arguments.
#[derive(Args, Debug)]
pub struct BlockArgs {
    /// Named block: 1f1b, zb-h1, v-min, v-half or v-zb.
    #[arg(short = 's', long = "schedule", required_unless_present = "from")]
    schedule: Option<String>,
    /// Number of devices p (for a named block).
    #[arg(short = 'p', long = "devices", required_unless_present = "from",
          allow_negative_numbers = true,
          value_parser = whole::<u32>("-p", "the number of devices", 1, None))]
    devices: Option<u32>,
    /// Read the block from a JSON block file instead.
    #[arg(long = "from", conflicts_with_all = ["schedule", "devices"])]
    from: Option<PathBuf>,
    /// Print the block as a JSON block file (a starting point for your own).
    #[arg(long)]
    json: bool,
}

/// `frontier` arguments.
#[derive(Args, Debug)]
pub struct FrontierArgs {
    /// Number of devices p.
    #[arg(short = 'p', long = "devices", allow_negative_numbers = true,
          value_parser = whole::<u32>("-p", "the number of devices", 1, None))]
    devices: u32,
    /// Number of microbatches m.
    #[arg(short = 'm', long = "microbatches", allow_negative_numbers = true,
          value_parser = whole::<u32>("-m", "the number of microbatches", 1, None))]
    microbatches: u32,
    #[command(flatten)]
    cost: CostArg,
    /// Print the points as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Reads a JSON block file.
pub fn read_block(path: &Path) -> Result<Block> {
    let text = read_text(path)?;
    Block::from_json(&text).with_context(|| format!("{}", path.display()))
}

/// `pipeblocks block`.
pub fn block(a: BlockArgs) -> Result<()> {
    let b = match (&a.from, &a.schedule, a.devices) {
        (Some(path), _, _) => read_block(path)?,
        (None, Some(name), Some(p)) => block::named(name, p)?,
        _ => bail!("give -s NAME -p P, or --from FILE"),
    };
    let text = if a.json {
        b.analyse()?;
        b.to_json()
    } else {
        describe(&b)?
    };
    write_stdout(&text)
}

/// A block in text: per device its passes by offset, each stage's lifespan and the device's
/// memory bound.
fn describe(b: &Block) -> Result<String> {
    let info = b.analyse()?;
    let p = b.devices;
    let mut out = format!(
        "block {}: {} devices, {} stages ({} placement), period {} slots, length {} slots\n",
        b.name,
        p,
        b.stages(),
        b.placement.describe(),
        b.period,
        info.length
    );
    for d in 0..p {
        let on = |s: u32| b.placement.device_of(s, p) == d;
        let mut v: Vec<_> = b.passes.iter().filter(|q| on(q.stage)).collect();
        v.sort_by_key(|q| q.offset);
        let items: Vec<String> = v
            .iter()
            .map(|q| format!("{}{}@{}", q.kind, q.stage, q.offset))
            .collect();
        let spans: Vec<String> = (0..b.stages())
            .filter(|&s| on(s))
            .map(|s| format!("l{s}={}", info.lifespan[s as usize]))
            .collect();
        out.push_str(&format!(
            "device {d:>2}: {:<40} {}  bound {:.3}\n",
            items.join(" "),
            spans.join(" "),
            info.memory_bound[d as usize]
        ));
    }
    out.push_str(&format!(
        "memory bound (units, max over devices): {:.3}\n",
        info.max_bound()
    ));
    Ok(out)
}

/// The schedule of `generate --block FILE -m M`: the block expanded, squeezed and reordered
/// under the given costs, then validated.
pub fn schedule_from_block(
    path: &Path,
    spec: &ScheduleSpec,
    costs: &StageCosts,
) -> Result<Schedule> {
    let b = read_block(path)?;
    if let Some(p) = spec.devices {
        if p != b.devices {
            bail!(
                "{}: the block is for {} devices but -p is {p}; drop -p or use -p {}",
                path.display(),
                b.devices,
                b.devices
            );
        }
    }
    let m = spec
        .microbatches
        .ok_or_else(|| anyhow::anyhow!("missing -m M (number of microbatches)"))?;
    let prm = Params::new(b.devices, m)?.with_costs(costs.clone());
    let s = from_block(&b, &prm).with_context(|| format!("{}", path.display()))?;
    validate(&s)?;
    Ok(s)
}

/// `pipeblocks frontier`.
pub fn frontier(a: FrontierArgs) -> Result<()> {
    let prm = Params::new(a.devices, a.microbatches)?.with_costs(a.cost.costs()?);
    // One search per budget, a second or more each: show how far it is.
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} budgets searched")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let points = frontier_points(&prm, |done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let points = points?;
    let text = if a.json {
        serde_json::to_string_pretty(&points)? + "\n"
    } else {
        let mut t = format!(
            "p={} m={} {}: best bubble rate within each memory budget (step: its simulated time)\n{:>12} {:>10} {:>9} {:>12} {:>11}  {}\n",
            a.devices, a.microbatches, a.cost.describe(), "budget", "vs 1F1B", "bubble", "step", "peak", "family"
        );
        for pt in &points {
            t.push_str(&format!(
                "{:>12.3} {:>9.3}x {:>9.4} {:>12.4} {:>11.3}  {}\n",
                pt.budget, pt.budget_vs_1f1b, pt.bubble_rate, pt.makespan, pt.peak, pt.family
            ));
        }
        // The frontier starts at the lowest budget it searches; say why nothing fits below its
        // first point.
        if let Some(first) = points.first() {
            let lowest = pipeblocks_core::search::FRONTIER_LOWEST;
            if first.budget_vs_1f1b > lowest + 1e-9 {
                let units = first.budget / first.budget_vs_1f1b * lowest;
                t.push_str(&format!(
                    "below {:.3}x nothing fits: at {lowest}x ({units:.3} units per device) no schedule holds its activations even recomputing every stage and offloading (where the costs give the host link: --cost offload=, a --device's host=)\n",
                    first.budget_vs_1f1b
                ));
            }
        }
        t
    };
    write_stdout(&text)
}
