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
//!
//! Offload and load-back transfers (O, L) run on the device's host link beside its
//! computation, so they are not on the device's line: a device with transfers gets a `d2h` line
//! (its offloads, device to host) and an `h2d` line (its loads back) right under it, each token
//! written under the point of the device line where the transfer starts. Idle dots count the
//! shortest computation, never a transfer; the legend names O and L only when the schedule has
//! them.

use pipeblocks_core::{Pass, PassKind, Schedule, SimResult};

use crate::common::pair_starts;

fn letter(kind: PassKind) -> char {
    match kind {
        PassKind::F => 'F',
        PassKind::B => 'B',
        PassKind::W => 'W',
        PassKind::BW => 'X',
        PassKind::R => 'R',
        PassKind::O => 'O',
        PassKind::L => 'L',
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

/// A stretch of a device line: from time `t0` to `t1`, `slots` token columns from column
/// `col` (a pass, a pair, or the idle dots between passes).
struct Stretch {
    t0: f64,
    t1: f64,
    col: usize,
    slots: usize,
}

/// The column of the device line, counted after its `|`, where time `t` falls, on the grid of
/// token slots (`slot` characters each); beyond the line's end, one slot per `unit` of time.
fn column(line: &[Stretch], t: f64, slot: usize, unit: f64) -> usize {
    for st in line {
        if t < st.t1 - 1e-9 {
            if st.slots == 0 || t <= st.t0 {
                return st.col;
            }
            let frac = ((t - st.t0) / (st.t1 - st.t0)).clamp(0.0, 1.0);
            return st.col + (frac * st.slots as f64).round() as usize * slot;
        }
    }
    let (t_end, col_end) = line
        .last()
        .map_or((0.0, 0), |st| (st.t1, st.col + st.slots * slot));
    let k = ((t - t_end).max(0.0) / unit).round().min(10_000.0) as usize;
    col_end + k * slot
}

/// Renders the timeline of `s` as simulated in `r`.
pub fn render(s: &Schedule, r: &SimResult) -> String {
    // The idle unit is the shortest computation: transfers run beside it and do not count.
    let shortest = |transfers: bool| {
        s.lists
            .iter()
            .enumerate()
            .flat_map(|(d, l)| {
                l.iter()
                    .enumerate()
                    .filter(move |(_, q)| transfers || !q.kind.is_transfer())
                    .map(move |(i, _)| r.end[d][i] - r.start[d][i])
            })
            .filter(|d| *d > 1e-12)
            .fold(f64::INFINITY, f64::min)
    };
    let unit = match shortest(false) {
        u if u.is_finite() => u,
        _ => shortest(true),
    };
    let unit = if unit.is_finite() { unit } else { 1.0 };
    let local: Vec<Vec<u32>> = (0..s.devices).map(|d| s.stages_of(d)).collect();
    let width = format!("{}", s.microbatches.saturating_sub(1)).len() + 1;
    let slot = width + 1;
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
    let present = |k: PassKind| s.lists.iter().flatten().any(|q| q.kind == k);
    if present(PassKind::R) {
        out.push_str("; R recompute");
    }
    if present(PassKind::O) {
        out.push_str("; O offload to host (d2h line)");
    }
    if present(PassKind::L) {
        out.push_str("; L load back from host (h2d line)");
    }
    out.push('\n');
    let starts = pair_starts(s);
    for (d, stages) in local.iter().enumerate() {
        let mut line = format!("dev {d:>3} |");
        let mut stretches: Vec<Stretch> = Vec::new();
        let mut col = 0usize;
        let mut t = 0.0;
        let list = &s.lists[d];
        let mut i = 0;
        while i < list.len() {
            if list[i].kind.is_transfer() {
                i += 1;
                continue;
            }
            let gap = ((r.start[d][i] - t) / unit).round() as usize;
            let gap = gap.min(10_000);
            for _ in 0..gap {
                line.push_str(&format!(" {:<width$}", "."));
            }
            stretches.push(Stretch {
                t0: t,
                t1: r.start[d][i].max(t),
                col,
                slots: gap,
            });
            col += gap * slot;
            let slots = if starts[d][i] {
                let pair = format!("{}+{}", token(list[i], stages), token(list[i + 1], stages));
                line.push_str(&format!(" {pair:<w2$}", w2 = 2 * width + 1));
                t = r.end[d][i + 1];
                i += 2;
                2
            } else {
                line.push_str(&format!(" {:<width$}", token(list[i], stages)));
                t = r.end[d][i];
                i += 1;
                1
            };
            let t0 = stretches.last().map_or(0.0, |st| st.t1);
            stretches.push(Stretch {
                t0,
                t1: t.max(t0),
                col,
                slots,
            });
            col += slots * slot;
        }
        out.push_str(line.trim_end());
        out.push('\n');
        // The host link, one line per direction: each transfer under the point of the device
        // line where it starts (moved right only where the previous one is still written).
        for (kind, name) in [(PassKind::O, "d2h"), (PassKind::L, "h2d")] {
            let mut moves: Vec<usize> = (0..list.len()).filter(|&i| list[i].kind == kind).collect();
            if moves.is_empty() {
                continue;
            }
            moves.sort_by(|&a, &b| r.start[d][a].total_cmp(&r.start[d][b]));
            let mut link = String::new();
            for i in moves {
                let at = column(&stretches, r.start[d][i], slot, unit);
                while link.chars().count() < at {
                    link.push(' ');
                }
                link.push_str(&format!(" {:<width$}", token(list[i], stages)));
            }
            out.push_str(format!("{name} {d:>3} |{link}").trim_end());
            out.push('\n');
        }
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
