//! A compact per-device timeline for a terminal.
//!
//! One line per device; each pass is a token `{kind}{microbatch}`, upper case for the device's
//! first chunk, lower case for its second, with `:c` for chunk `c ≥ 2`. Fused backward is `X`.
//! Idle time shows as `.` tokens, one per unit of the shortest pass.
//!
//! An overlapped pair ([`Schedule::pairs`]), which the device runs as one unit, is its two
//! tokens joined by `+` instead of a space (`F7+x3`: forward of microbatch 7 with the fused
//! backward of microbatch 3 on the second chunk). It takes the columns of two tokens, so rows
//! stay aligned; the legend line mentions pairs only when the schedule has any.

use pipeblocks_core::{Pass, PassKind, Schedule, SimResult};

use crate::common::pair_starts;

fn letter(kind: PassKind) -> char {
    match kind {
        PassKind::F => 'F',
        PassKind::B => 'B',
        PassKind::W => 'W',
        PassKind::BW => 'X',
        PassKind::R => 'R',
    }
}

/// The token of one pass on a device holding `stages`.
fn token(pass: Pass, stages: &[u32]) -> String {
    let chunk = stages.iter().position(|&st| st == pass.stage).unwrap_or(0);
    let l = letter(pass.kind);
    match chunk {
        0 => format!("{l}{}", pass.mb),
        1 => format!("{}{}", l.to_ascii_lowercase(), pass.mb),
        c => format!("{l}{}:{c}", pass.mb),
    }
}

/// Renders the timeline of `s` as simulated in `r`.
pub fn render(s: &Schedule, r: &SimResult) -> String {
    let unit = r
        .start
        .iter()
        .zip(&r.end)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| y - x))
        .filter(|d| *d > 1e-12)
        .fold(f64::INFINITY, f64::min);
    let unit = if unit.is_finite() { unit } else { 1.0 };
    let local: Vec<Vec<u32>> = (0..s.devices).map(|d| s.stages_of(d)).collect();
    let width = format!("{}", s.microbatches.saturating_sub(1)).len() + 1;
    let mut out = format!(
        "{}: p={} S={} m={} placement={} makespan={:.3} bubble={:.4}\n",
        s.name,
        s.devices,
        s.stages,
        s.microbatches,
        s.placement.describe(),
        r.makespan,
        r.bubble_rate
    );
    out.push_str("legend: F forward, B input grad, W weight grad, X fused backward; lower case = 2nd chunk, :c = chunk c; . idle");
    if !s.pairs.is_empty() {
        out.push_str("; a+b overlapped pair (one unit)");
    }
    if s.lists.iter().flatten().any(|q| q.kind == PassKind::R) {
        out.push_str("; R recompute");
    }
    out.push('\n');
    let starts = pair_starts(s);
    for (d, stages) in local.iter().enumerate() {
        let mut line = format!("dev {d:>3} |");
        let mut t = 0.0;
        let list = &s.lists[d];
        let mut i = 0;
        while i < list.len() {
            let gap = ((r.start[d][i] - t) / unit).round() as usize;
            for _ in 0..gap.min(10_000) {
                line.push_str(&format!(" {:<width$}", "."));
            }
            if starts[d][i] {
                let pair = format!("{}+{}", token(list[i], stages), token(list[i + 1], stages));
                line.push_str(&format!(" {pair:<w2$}", w2 = 2 * width + 1));
                t = r.end[d][i + 1];
                i += 2;
            } else {
                line.push_str(&format!(" {:<width$}", token(list[i], stages)));
                t = r.end[d][i];
                i += 1;
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeblocks_core::{generate, Params};
    use pipeblocks_core::{simulate, StageCosts};

    #[test]
    fn one_line_per_device_with_every_pass() {
        let s = generate("1f1b", &Params::new(3, 4).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        let text = render(&s, &r);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("dev")).collect();
        assert_eq!(rows.len(), 3);
        for row in &rows {
            let toks = row.split('|').nth(1).unwrap().split_whitespace();
            assert_eq!(toks.filter(|t| *t != ".").count(), 8);
        }
        // Device 2 starts after two idle slots (F chain).
        assert!(rows[2].contains("| .  .  F0"), "{}", rows[2]);
    }
}
