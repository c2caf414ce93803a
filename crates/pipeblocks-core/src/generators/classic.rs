//! The classic schedules, all built by one mechanism: a per-device forward order, a per-device
//! backward order and a warm-up count, interleaved one-forward-one-backward after the warm-up.
//!
//! GPipe and breadth-first are the limit where the warm-up holds every forward; 1F1B and
//! Megatron's interleaved 1F1B differ only in orders and warm-up counts.

use crate::error::{Error, Param};
use crate::ir::{Pass, PassKind, Placement, Schedule};
use crate::params::Params;

/// Interleaves per-device forward and backward orders after `warmup[d]` forwards.
pub fn one_forward_one_backward(
    s: &mut Schedule,
    fwd: &[Vec<Pass>],
    bwd: &[Vec<Pass>],
    warmup: &[usize],
) {
    for d in 0..s.devices as usize {
        let (f, b) = (&fwd[d], &bwd[d]);
        let w = warmup[d].min(f.len());
        let list = &mut s.lists[d];
        list.extend_from_slice(&f[..w]);
        let mut fi = w;
        let mut bi = 0;
        while fi < f.len() || bi < b.len() {
            if fi < f.len() {
                list.push(f[fi]);
                fi += 1;
            }
            if bi < b.len() {
                list.push(b[bi]);
                bi += 1;
            }
        }
    }
}

fn sequential_orders(p: u32, m: u32) -> (Vec<Vec<Pass>>, Vec<Vec<Pass>>) {
    let fwd = (0..p)
        .map(|d| (0..m).map(|mb| Pass::f(d, mb)).collect())
        .collect();
    let bwd = (0..p)
        .map(|d| (0..m).map(|mb| Pass::bw(d, mb)).collect())
        .collect();
    (fwd, bwd)
}

/// GPipe: every forward, then every fused backward.
pub fn gpipe(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let mut s = Schedule::empty("gpipe", p, m, Placement::Sequential)?;
    let (f, b) = sequential_orders(p, m);
    one_forward_one_backward(&mut s, &f, &b, &vec![m as usize; p as usize]);
    Ok(s)
}

/// 1F1B: device `i` warms up with `p-1-i` forwards, then alternates F and BW.
pub fn one_f_one_b(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let mut s = Schedule::empty("1f1b", p, m, Placement::Sequential)?;
    let (f, b) = sequential_orders(p, m);
    let warm: Vec<usize> = (0..p).map(|i| (p - 1 - i) as usize).collect();
    one_forward_one_backward(&mut s, &f, &b, &warm);
    Ok(s)
}

/// Megatron's depth-first order of device `d`'s passes of `kind` (F, or BW for the backward):
/// microbatches in groups of `p`, each group through chunk 0, then chunk 1, ... (the backward
/// takes the chunks in reverse).
fn depth_first_order(d: u32, p: u32, v: u32, m: u32, kind: PassKind) -> Vec<Pass> {
    let backward = kind != PassKind::F;
    let mut out = Vec::with_capacity((v * m) as usize);
    let mut g0 = 0;
    while g0 < m {
        let g1 = (g0 + p).min(m);
        for c in 0..v {
            let chunk = if backward { v - 1 - c } else { c };
            for mb in g0..g1 {
                out.push(Pass::new(kind, chunk * p + d, mb));
            }
        }
        g0 = g1;
    }
    out
}

/// Interleaved 1F1B (Megatron) with `v` chunks per device on a looped placement.
pub fn interleaved(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let v = prm.chunks_or(2);
    if m % p != 0 {
        let fit = (m / p + 1) * p;
        return Err(Error::fix(
            format!("interleaved-1f1b needs the microbatches to be a multiple of the devices (m={m}, p={p}); use {fit} microbatches"),
            Param::Microbatches,
            fit.to_string(),
        ));
    }
    let mut s = Schedule::empty("interleaved-1f1b", p, m, Placement::Looped { chunks: v })?;
    let fwd: Vec<_> = (0..p)
        .map(|d| depth_first_order(d, p, v, m, PassKind::F))
        .collect();
    let bwd: Vec<_> = (0..p)
        .map(|d| depth_first_order(d, p, v, m, PassKind::BW))
        .collect();
    let warm: Vec<usize> = (0..p)
        .map(|d| ((p - 1 - d) * 2 + (v - 1) * p) as usize)
        .collect();
    one_forward_one_backward(&mut s, &fwd, &bwd, &warm);
    Ok(s)
}

/// Breadth-first (looped) pipeline: each device runs every microbatch through one local chunk
/// before the next; then the backward in reverse chunk order.
pub fn breadth_first(prm: &Params) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let v = prm.chunks_or(2);
    let mut s = Schedule::empty("bfs", p, m, Placement::Looped { chunks: v })?;
    for d in 0..p {
        for c in 0..v {
            for mb in 0..m {
                s.lists[d as usize].push(Pass::f(c * p + d, mb));
            }
        }
        for c in (0..v).rev() {
            for mb in 0..m {
                s.lists[d as usize].push(Pass::bw(c * p + d, mb));
            }
        }
    }
    Ok(s)
}

/// Zero-bubble family on a sequential placement, with B and W split: device `i` warms up with
/// `warmup(i)` forwards, then runs F, B and the W lagging `lag(i)` microbatches behind its B; the
/// lagging Ws fill the cool-down.
pub fn zero_bubble_lagged(
    name: &str,
    prm: &Params,
    warmup: impl Fn(u32) -> u32,
    lag: impl Fn(u32) -> u32,
) -> Result<Schedule, Error> {
    let (p, m) = (prm.devices(), prm.microbatches());
    let mut s = Schedule::empty(name, p, m, Placement::Sequential)?;
    for i in 0..p {
        let (w, l) = (warmup(i).min(m), lag(i));
        let list = &mut s.lists[i as usize];
        list.extend((0..w).map(|mb| Pass::f(i, mb)));
        for k in 0..m {
            if w + k < m {
                list.push(Pass::f(i, w + k));
            }
            list.push(Pass::b(i, k));
            if k >= l {
                list.push(Pass::w(i, k - l));
            }
        }
        list.extend((m.saturating_sub(l)..m).map(|mb| Pass::w(i, mb)));
    }
    Ok(s)
}
