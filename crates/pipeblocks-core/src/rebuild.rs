//! The Controllable Memory paper's own repair of a V-shape block: its warm-up and cool-down
//! rebuilt to fixed shapes on the unit grid, then compacted, before any cost is known.
//!
//! [`crate::grid`] moves passes of the block's repeats one by one into earlier free slots (the
//! paper's V-Min and V-Half builders). The paper's block search repairs each block another
//! way, and this module does the same, on a grid of unit slots per device holding `F`/`f`
//! (chunk-0 / chunk-1 forward), `B`/`b` (chunk-1 / chunk-0 input backward) and `W`/`w`
//! (their weight passes):
//!
//! 1. **repeat** the block for `M = max(m, 2p)` microbatches (the shapes below need at least
//!    `2p`) and **squeeze** it: every pass, in slot order, to the first slot after its input
//!    and the device's previous pass;
//! 2. **warm-up**: everything before a device's first chunk-0 B is laid out anew, device `i`
//!    taking `min(i+1, peak/2)` chunk-1 forwards and the rest chunk-0, in the shape
//!    `F…F (Ff)… (BWf|BWF)…`, and squeezed again;
//! 3. when `m < M`, the extra microbatches are dropped; with `m ≤ p` and room to spare, the
//!    warm-up's Ws move to the end so the devices fill their memory;
//! 4. **cool-down**: after the last chunk-1 forward each device's last chunk-0 Bs and up to
//!    `i+1` chunk-1 Bs are laid out in a fixed staircase, the tail's Ws are dropped and put
//!    back in the first free slots, and the grid is squeezed;
//! 5. **fill**: every idle slot takes the first later pass of the device that may move there
//!    (its input is already done, and a forward only where it keeps the peak);
//! 6. the Ws are relabelled first-in first-out.
//!
//! Any step that would break the block (a slot taken twice, a dependency out of order) drops
//! it: [`rebuild`] returns `None`. The caller times the result under the real costs and keeps
//! it only where it is shorter within the budget.

use crate::block::Block;
use crate::ir::{Pass, PassKind, Placement, Schedule};

const EMPTY: u8 = b' ';

/// Index of a pass letter in `FfBbWw`.
fn idx(c: u8) -> usize {
    match c {
        b'F' => 0,
        b'f' => 1,
        b'B' => 2,
        b'b' => 3,
        b'W' => 4,
        _ => 5,
    }
}

type Grid = Vec<Vec<u8>>;

/// Per device, the most chunk activations alive at once: F/f add one, W/w free one.
fn peaks(g: &Grid) -> Vec<i64> {
    g.iter()
        .map(|row| {
            let (mut level, mut peak) = (0i64, 0i64);
            for &c in row {
                match c {
                    b'F' | b'f' => level += 1,
                    b'W' | b'w' => level -= 1,
                    _ => {}
                }
                peak = peak.max(level);
            }
            peak
        })
        .collect()
}

fn peak(g: &Grid) -> i64 {
    peaks(g).into_iter().max().unwrap_or(0)
}

/// Positions of each pass once placed: `[mb * p + device][letter]`, `-1` when not yet.
struct Seen {
    p: usize,
    at: Vec<[i64; 6]>,
    count: Vec<[usize; 6]>,
}

impl Seen {
    fn new(p: usize, m: usize) -> Self {
        Seen {
            p,
            at: vec![[-1; 6]; p * m],
            count: vec![[0; 6]; p],
        }
    }

    fn get(&self, mb: usize, d: usize, c: u8) -> i64 {
        self.at.get(mb * self.p + d).map_or(-1, |a| a[idx(c)])
    }

    /// Records the next `c` of device `d` at `pos`; `None` past `m` microbatches.
    fn put(&mut self, d: usize, c: u8, pos: i64) -> Option<()> {
        let k = idx(c);
        let mb = self.count[d][k];
        *self.at.get_mut(mb * self.p + d)?.get_mut(k)? = pos;
        self.count[d][k] += 1;
        Some(())
    }
}

/// The slot of the input a pass of letter `c` of microbatch `mb` on device `d` waits for on
/// another device (`None`: it has none there); `Some(-1)` while that input is not placed.
fn cross_input(s: &Seen, d: usize, c: u8, mb: usize) -> Option<i64> {
    let p = s.p;
    match c {
        b'F' | b'B' if d > 0 => Some(s.get(mb, d - 1, c)),
        b'f' | b'b' if d + 1 < p => Some(s.get(mb, d + 1, c)),
        _ => None,
    }
}

/// Every pass, in slot order (chunk-0 forwards and chunk-1 backwards first, from the first
/// device; then the others from the last), to the first slot after its input and its device's
/// previous pass.
fn squeeze(g: &Grid, m: usize) -> Option<Grid> {
    let p = g.len();
    let len = g.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = vec![vec![EMPTY; len]; p];
    let mut seen = Seen::new(p, m);
    let mut next = vec![0i64; p];
    for j in 0..len {
        for down in [true, false] {
            for k in 0..p {
                let i = if down { k } else { p - 1 - k };
                let c = *g[i].get(j)?;
                if c == EMPTY || down != matches!(c, b'F' | b'B' | b'W') {
                    continue;
                }
                let mb = seen.count[i][idx(c)];
                if mb >= m {
                    return None;
                }
                let pos = match cross_input(&seen, i, c, mb) {
                    Some(-1) => return None,
                    Some(t) if !matches!(c, b'W' | b'w') => (t + 1).max(next[i]),
                    _ => next[i],
                };
                *out[i].get_mut(usize::try_from(pos).ok()?)? = c;
                seen.put(i, c, pos)?;
                next[i] = pos + 1;
            }
        }
    }
    let new_len = next.iter().copied().max().unwrap_or(0) as usize;
    for row in &mut out {
        row.truncate(new_len);
    }
    Some(out)
}

/// Step 2: the warm-up (every pass before a device's first chunk-0 B) laid out anew.
fn warm_up(g: &mut Grid, m: usize) -> Option<()> {
    let p = g.len();
    let peak = peak(g).min(2 * p as i64) as usize;
    for (i, row) in g.iter_mut().enumerate() {
        let want_ff = (i + 1).min(peak / 2).min(m);
        let want_f = (peak - want_ff).min(m);
        let (mut cf, mut cff, mut cb, mut cw) = (0, 0, 0, 0);
        for cell in row.iter_mut() {
            match *cell {
                b'b' => break,
                b'F' => cf += 1,
                b'f' => cff += 1,
                b'B' => cb += 1,
                b'W' => cw += 1,
                EMPTY => {}
                _ => return None,
            }
            *cell = EMPTY;
        }
        let mut j = i;
        let mut set = |j: usize, c: u8| -> Option<()> {
            *row.get_mut(j)? = c;
            Some(())
        };
        let (mut uf, mut uff, mut ub, mut uw) = (0, 0, 0, 0);
        for _ in 0..2 * (p - 1 - i) {
            if uf < want_f && uf < cf {
                set(j, b'F')?;
                uf += 1;
            }
            j += 1;
        }
        for _ in 0..=i {
            if uf < want_f && uf < cf {
                set(j, b'F')?;
                uf += 1;
            }
            j += 1;
            if uff < want_ff && uff < cff {
                set(j, b'f')?;
                uff += 1;
            }
            j += 1;
        }
        while uf < cf || uff < cff || ub < cb || uw < cw {
            if ub < cb {
                set(j, b'B')?;
                ub += 1;
            }
            j += 1;
            if uw < cw {
                set(j, b'W')?;
                uw += 1;
            }
            j += 1;
            if uff < cff {
                if uff >= uf {
                    return None;
                }
                set(j, b'f')?;
                uff += 1;
            } else if uf < cf {
                set(j, b'F')?;
                uf += 1;
            }
            j += 1;
        }
    }
    Some(())
}

/// Step 3: every pass past the `m`-th of its letter on a device is dropped.
fn drop_extra(g: &mut Grid, m: usize) {
    for row in g.iter_mut() {
        let mut count = [0usize; 6];
        for cell in row.iter_mut() {
            if *cell == EMPTY {
                continue;
            }
            let k = idx(*cell);
            if count[k] >= m {
                *cell = EMPTY;
            } else {
                count[k] += 1;
            }
        }
    }
}

/// Step 3, few microbatches: the first Ws of each device move to the end until its peak reaches
/// `peak` (the rows stay of equal length).
fn release_ws(g: &mut Grid, peak: i64) {
    let all = peaks(g);
    let least = all.iter().copied().min().unwrap_or(0);
    let pad = (peak - least).max(0) as usize;
    for (row, &own) in g.iter_mut().zip(&all) {
        let mut tail = vec![EMPTY; pad];
        let mut n = 0usize;
        for cell in row.iter_mut() {
            if own + n as i64 >= peak {
                break;
            }
            if matches!(*cell, b'W' | b'w') {
                tail[n] = *cell;
                *cell = EMPTY;
                n += 1;
            }
        }
        row.extend(tail);
    }
}

/// Step 4: the cool-down's input backwards in a fixed staircase, its Ws put back after them.
fn cool_down(g: &mut Grid, m: usize) -> Option<Grid> {
    let p = g.len();
    let peak = peak(g);
    if peak > 2 * p as i64 {
        return None;
    }
    let max_bb = (((peak + 1) / 2) as usize).min(m);
    let max_b = (peak as usize - max_bb.min(peak as usize)).min(m);
    let mut start = 0i64;
    for (i, row) in g.iter_mut().enumerate() {
        let (mut cb, mut cbb, mut cw, mut cww) = (0usize, 0usize, 0usize, 0usize);
        let mut last_ff: i64 = -1;
        for j in (0..row.len()).rev() {
            let c = row[j];
            if c == b'f' && last_ff == -1 {
                last_ff = j as i64;
            }
            if c == b'B' && cb < i + 1 && cb < max_b {
                row[j] = EMPTY;
                cb += 1;
            }
            if c == b'b' && cbb < max_bb {
                row[j] = EMPTY;
                cbb += 1;
            }
        }
        for j in (0..row.len()).rev() {
            if cw >= cb && cww >= cbb && (cw + cww) as i64 >= peak {
                break;
            }
            match row[j] {
                b'W' => {
                    row[j] = EMPTY;
                    cw += 1;
                }
                b'w' => {
                    row[j] = EMPTY;
                    cww += 1;
                }
                _ => {}
            }
        }
        if i == 0 {
            start = last_ff;
        }
        let (pi, ii) = (p as i64, i as i64);
        for k in 0..cbb as i64 {
            let at = usize::try_from(start - ii + 2 * pi - 2 * k).ok()?;
            let cell = row.get_mut(at)?;
            if *cell != EMPTY {
                return None;
            }
            *cell = b'b';
        }
        for k in 0..cb as i64 {
            let at = usize::try_from(start + 1 + ii - 2 * k).ok()?;
            *row.get_mut(at)? = b'B';
        }
    }
    // The Ws back: after the last W still there, each idle slot takes a pending W (chunk 1's
    // first); the rest go at the end.
    let mut len = 0;
    for row in g.iter_mut() {
        let last_w = row.iter().rposition(|&c| c == b'W' || c == b'w');
        let (mut cw, mut cww) = (0i64, 0i64);
        for (j, cell) in row.iter_mut().enumerate() {
            match *cell {
                b'B' => cw += 1,
                b'b' => cww += 1,
                b'W' => cw -= 1,
                b'w' => cww -= 1,
                EMPTY if last_w.is_none_or(|l| j > l) => {
                    if cw > 0 {
                        *cell = b'W';
                        cw -= 1;
                    } else if cww > 0 {
                        *cell = b'w';
                        cww -= 1;
                    }
                }
                _ => {}
            }
        }
        row.extend(std::iter::repeat_n(b'W', cw.max(0) as usize));
        row.extend(std::iter::repeat_n(b'w', cww.max(0) as usize));
        len = len.max(row.len());
    }
    for row in g.iter_mut() {
        row.resize(len, EMPTY);
    }
    squeeze(g, m)
}

/// Step 5: each idle slot takes the first later pass of its device that may move into it.
fn fill(g: &mut Grid, m: usize) {
    let p = g.len();
    let peak = peak(g);
    let len = g.iter().map(Vec::len).max().unwrap_or(0);
    let mut last = vec![[-1i64; 6]; p];
    for (i, row) in g.iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            if c != EMPTY {
                last[i][idx(c)] = j as i64;
            }
        }
    }
    let mut level = vec![0i64; p];
    let mut seen = Seen::new(p, m);
    let change = |c: u8| match c {
        b'F' | b'f' => 1,
        b'W' | b'w' => -1,
        _ => 0,
    };
    for j in 0..len {
        for i in 0..p {
            let c = g[i][j];
            if c != EMPTY {
                if seen.put(i, c, j as i64).is_none() {
                    return;
                }
                level[i] += change(c);
                continue;
            }
            // Letters with a pass later on the row, as a bit set over `FfBbWw`.
            let mut open: u8 = 0;
            for (k, &l) in last[i].iter().enumerate() {
                if l > j as i64 {
                    open |= 1 << k;
                }
            }
            let (mut delta, mut peak_delta) = (0i64, 0i64);
            for k in j + 1..len {
                if open == 0 {
                    break;
                }
                let c = g[i][k];
                delta += change(c);
                let before = peak_delta;
                peak_delta = peak_delta.max(delta);
                if c == EMPTY || open & (1 << idx(c)) == 0 {
                    continue;
                }
                open &= !(1 << idx(c));
                if matches!(c, b'F' | b'f') && level[i] + before >= peak {
                    continue;
                }
                let mb = seen.count[i][idx(c)];
                let movable = match c {
                    b'F' | b'B' | b'f' | b'b' => match cross_input(&seen, i, c, mb) {
                        Some(t) => t > -1 && t < j as i64,
                        // No input on another device: the device's own pass it follows.
                        None => match c {
                            b'B' => seen.count[i][idx(b'f')] > mb,
                            b'f' => seen.count[i][idx(b'F')] > mb,
                            b'b' => seen.count[i][idx(b'B')] > mb,
                            // The first device's chunk-0 forward waits for nothing.
                            _ => true,
                        },
                    },
                    b'W' => seen.count[i][idx(b'B')] > mb,
                    _ => seen.count[i][idx(b'b')] > mb,
                };
                if !movable {
                    continue;
                }
                g[i][j] = c;
                g[i][k] = EMPTY;
                if seen.put(i, c, j as i64).is_none() {
                    return;
                }
                level[i] += change(c);
                break;
            }
        }
    }
}

/// Step 6: each W slot takes the W of the device's oldest input backward without one.
fn relabel_ws(g: &mut Grid) -> Option<()> {
    for row in g.iter_mut() {
        let mut pending = std::collections::VecDeque::new();
        for cell in row.iter_mut() {
            match *cell {
                b'B' => pending.push_back(b'W'),
                b'b' => pending.push_back(b'w'),
                b'W' | b'w' => *cell = pending.pop_front()?,
                _ => {}
            }
        }
        if !pending.is_empty() {
            return None;
        }
    }
    Some(())
}

/// Whether every pass is there `m` times and in dependency order (the paper's own check; the
/// caller validates the schedule besides).
fn complete(g: &Grid, m: usize) -> bool {
    let p = g.len();
    let mut seen = Seen::new(p, m);
    for (i, row) in g.iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            if c != EMPTY && seen.put(i, c, j as i64).is_none() {
                return false;
            }
        }
    }
    if seen.count.iter().any(|c| c.iter().any(|&n| n != m)) {
        return false;
    }
    let at = |mb: usize, d: usize, c: u8| seen.get(mb, d, c);
    (0..p).all(|i| {
        (0..m).all(|j| {
            at(j, i, b'B') < at(j, i, b'W')
                && at(j, i, b'b') < at(j, i, b'w')
                && (i != 0 || at(j, i, b'f') < at(j, i, b'B'))
                && (i != p - 1
                    || (at(j, i, b'F') < at(j, i, b'f') && at(j, i, b'B') < at(j, i, b'b')))
                && (i == 0
                    || (at(j, i - 1, b'F') < at(j, i, b'F') && at(j, i - 1, b'B') < at(j, i, b'B')))
                && (i == p - 1
                    || (at(j, i + 1, b'f') < at(j, i, b'f') && at(j, i + 1, b'b') < at(j, i, b'b')))
        })
    })
}

/// The block's passes repeated for `m` microbatches on the grid; `None` unless it is a V-shape
/// block of period 6 with one-slot passes, six per device.
fn repeat(block: &Block, m: usize) -> Option<Grid> {
    let p = block.devices as usize;
    if block.placement != Placement::VShape
        || block.period != 6
        || (block.slots.f, block.slots.b, block.slots.w) != (1, 1, 1)
        || block.passes.len() != 6 * p
    {
        return None;
    }
    let last = block.passes.iter().map(|q| q.offset as usize).max()?;
    let len = last.checked_add(6usize.checked_mul(m)?)?.checked_add(1)?;
    let mut g = vec![vec![EMPTY; len]; p];
    for q in &block.passes {
        let d = Placement::VShape.device_of(q.stage, block.devices) as usize;
        let chunk0 = (q.stage as usize) < p;
        let c = match (q.kind, chunk0) {
            (PassKind::F, true) => b'F',
            (PassKind::F, false) => b'f',
            (PassKind::B, false) => b'B',
            (PassKind::B, true) => b'b',
            (PassKind::W, false) => b'W',
            (PassKind::W, true) => b'w',
            _ => return None,
        };
        for mb in 0..m {
            let cell = &mut g[d][q.offset as usize + 6 * mb];
            if *cell != EMPTY {
                return None;
            }
            *cell = c;
        }
    }
    Some(g)
}

/// The grid as a schedule: each device's passes in slot order, microbatches counted per letter.
fn to_schedule(g: &Grid, name: &str, p: u32, m: u32) -> Option<Schedule> {
    let mut s = Schedule::empty(name, p, m, Placement::VShape).ok()?;
    let last = 2 * p - 1;
    for (d, row) in g.iter().enumerate() {
        let d32 = d as u32;
        let mut count = [0u32; 6];
        let list = &mut s.lists[d];
        for &c in row.iter().filter(|&&c| c != EMPTY) {
            let (kind, stage) = match c {
                b'F' => (PassKind::F, d32),
                b'f' => (PassKind::F, last - d32),
                b'B' => (PassKind::B, last - d32),
                b'b' => (PassKind::B, d32),
                b'W' => (PassKind::W, last - d32),
                _ => (PassKind::W, d32),
            };
            let k = &mut count[idx(c)];
            list.push(Pass::new(kind, stage, *k));
            *k += 1;
        }
    }
    Some(s)
}

/// The paper's repair of `block` for `m` microbatches within `max_chunks` chunk activations
/// per device (1F1B's memory is `2p`); `None` when the block does not take it.
pub fn rebuild(block: &Block, m: u32, max_chunks: i64) -> Option<Schedule> {
    let p = block.devices as usize;
    let mu = m as usize;
    if p < 2 || mu == 0 {
        return None;
    }
    let two_p = 2 * p as i64;
    let big = mu.max(2 * p);
    // 1. Repeat and squeeze.
    let g = repeat(block, big)?;
    let first_peak = peak(&g);
    if (mu == big && first_peak > max_chunks) || first_peak > two_p {
        return None;
    }
    let mut g = squeeze(&g, big)?;
    // 2. Warm-up.
    warm_up(&mut g, big)?;
    let mut g = squeeze(&g, big)?;
    let mut top = peak(&g);
    if top > first_peak {
        return None;
    }
    let mut limit = first_peak;
    // 3. The real microbatches.
    if mu < big {
        drop_extra(&mut g, mu);
        if mu <= p && 2 * mu as i64 <= max_chunks {
            release_ws(&mut g, two_p.min(top));
        }
        g = squeeze(&g, mu)?;
        top = peak(&g);
        limit = top;
        if top > max_chunks {
            return None;
        }
    }
    // 4.–6. Cool-down, fill, Ws.
    let mut g = cool_down(&mut g, mu)?;
    fill(&mut g, mu);
    relabel_ws(&mut g)?;
    if peak(&g) > limit || !complete(&g, mu) {
        return None;
    }
    to_schedule(&g, &block.name, block.devices, m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Costs, Params, StageCosts};
    use crate::validate::validate;

    #[test]
    fn rebuilt_paper_blocks_are_valid_and_within_their_peak() {
        for (p, m) in [(2u32, 2u32), (3, 7), (4, 4), (4, 16), (6, 9), (8, 24)] {
            let act = vec![0.5; 2 * p as usize];
            let mut built = 0;
            for (label, block, _) in crate::block::paper_family(p, &act, p as f64) {
                for max_chunks in [p as i64, 2 * p as i64] {
                    let Some(s) = rebuild(&block, m, max_chunks) else {
                        continue;
                    };
                    built += 1;
                    validate(&s).unwrap_or_else(|e| panic!("p={p} m={m} {label}: {e}"));
                    let prm = Params::new(p, m).unwrap().with_costs(StageCosts::uniform(
                        Costs::parse("f=1,b=1.5,w=0.7,c=0.1").unwrap(),
                    ));
                    let r = crate::engine::simulate(&s, &prm.costs).unwrap();
                    // Chunk activations of half a unit each: the grid's peak bound in units.
                    assert!(
                        r.max_peak() <= max_chunks as f64 / 2.0 + 1e-9,
                        "p={p} m={m} {label}: {} > {max_chunks} chunks",
                        r.max_peak()
                    );
                }
            }
            assert!(built > 0, "p={p} m={m}: no paper block rebuilt");
        }
    }

    #[test]
    fn squeeze_closes_gaps_and_keeps_order() {
        // Two devices, one microbatch: F F . f f . B B . b b, spread out.
        let g: Grid = vec![b"F   f   B    bw W".to_vec(), b"  F f   B b w W  ".to_vec()];
        let s = squeeze(&g, 1).unwrap();
        assert_eq!(String::from_utf8_lossy(&s[0]).trim_end(), "F  fB  bwW");
        assert_eq!(String::from_utf8_lossy(&s[1]).trim_end(), " Ff  BbwW");
    }
}
