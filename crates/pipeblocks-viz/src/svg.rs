//! A schedule as an SVG picture: the timeline on top, activation memory under it.
//!
//! **Timeline.** One row per device; the x axis is simulated time, so a box's width is the cost
//! of its pass. Boxes are coloured by kind (F blue, B orange, W green, fused BW purple, R
//! recompute grey; on the host link O red, L teal) and lighter for a device's later chunks; the microbatch number is written inside where it fits.
//! A row's background is hatched, so idle time shows as hatching between boxes. On the right of
//! each row: the device's busy fraction.
//!
//! **Memory.** One strip per device on a shared scale: activation units held over time (F
//! allocates at its start, W/BW release at their end), the device's peak marked with a red dot
//! and written on the right; with a baseline, 1F1B's peak as a dashed line.
//!
//! **Host link.** Offloads (O: an activation to host memory) and loads back (L) run on the
//! device's host link beside its computation, so they are not in its row: a device with
//! transfers gets a thin lane under its row, labelled `d{n} host`, with its O boxes in the upper
//! half (device to host) and its L boxes in the lower half (host to device), each at its
//! simulated times (the two directions may overlap; each runs one transfer at a time). On the
//! right: the share of the makespan each direction is busy. Rows below move down by the lane;
//! a schedule without transfers is drawn exactly as before. A transfer box is a pass box like
//! any other (below), with the extra class `link`; the lane is a `<rect class="link-lane">`.
//! With [`SvgOptions::baseline_memory`], a schedule with O, L or R passes also shows in each
//! memory strip, dashed orange, the curve of the same schedule without them.
//!
//! **Overlapped pairs** ([`Schedule::pairs`]: a forward and a backward of another microbatch
//! that the device runs as one unit, both with the pair's start and end) are one box over the
//! pair's span, outlined in dark grey and split across: the forward's colour and microbatch in
//! the upper half, the backward's in the lower. Each half's tooltip names both passes and says
//! "overlapped pair"; the legend explains the split box when the schedule has pairs.
//!
//! Every pass box is a `<rect class="pass">` carrying `data-device`, `data-stage`, `data-chunk`,
//! `data-mb`, `data-kind`, `data-start` and `data-end`, and a `<title>` for a tooltip. The root
//! carries `data-x0` and `data-scale`: a pass starting at time `t` has `x = x0 + t·scale`.
//! The halves of a pair are such boxes, half a row high; with them sits one outline
//! `<rect class="pair">` per pair (`data-device`, `data-first`, `data-second`, `data-start`,
//! `data-end`), all three in a `<g class="pair-unit" data-pair="F0.7+BW7.3">`.

use std::fmt::Write as _;

use pipeblocks_core::{PassKind, Schedule, SimResult, StageCosts};

use crate::common::{
    check, check_picture, chunks, escape, has_memory_passes, link_devices, num, pair_name,
    pair_starts, pass_colours, tick_step,
};
use crate::VizError;

/// Width of the device-label column on the left, in pixels.
const LABEL_W: f64 = 64.0;
/// Width of the column on the right (busy fraction, peak).
const RIGHT_W: f64 = 104.0;
/// Height of a device row in the timeline.
const ROW_H: f64 = 20.0;
/// Gap between timeline rows.
const ROW_GAP: f64 = 3.0;
/// Height of a device's host-link lane (O above, L below), drawn under its row when the device
/// has transfers.
const LINK_H: f64 = 18.0;
/// Gap between a device row and its host-link lane.
const LINK_GAP: f64 = 2.0;
/// Height of a memory strip.
const MEM_H: f64 = 30.0;
/// Gap between memory strips.
const MEM_GAP: f64 = 6.0;

/// Activation memory over time, one curve per device: `(time, units from then on)` at every
/// change, as in [`SimResult::memory`].
pub type MemoryCurves = Vec<Vec<(f64, f64)>>;

/// How to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct SvgOptions {
    /// Width of the time axis in pixels (the whole picture adds the label columns).
    pub width: f64,
    /// Prefix for the ids inside the SVG (patterns), so several pictures can share one page.
    pub id_prefix: String,
    /// 1F1B's largest peak for the same p, m and costs: shown in the title as a ratio and as
    /// a dashed line in the memory strips.
    pub baseline_peak: Option<f64>,
    /// Draw the memory strips under the timeline.
    pub memory: bool,
    /// Activation memory of the same schedule without its offload, load-back and recompute
    /// passes (O, L and R removed from every list, simulated under the same costs): one curve
    /// per device, as in [`SimResult::memory`]. When the schedule has O, L or R passes, each
    /// memory strip also draws it, dashed orange, labelled "without offload/recompute"; otherwise,
    /// or when it does not hold one curve per device, it is ignored.
    pub baseline_memory: Option<MemoryCurves>,
}

impl Default for SvgOptions {
    fn default() -> Self {
        SvgOptions {
            width: 1100.0,
            id_prefix: "pb".into(),
            baseline_peak: None,
            memory: true,
            baseline_memory: None,
        }
    }
}

/// The horizontal mapping of a picture: `x = x0 + t · scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// x of time 0, in pixels.
    pub x0: f64,
    /// Pixels per time unit.
    pub scale: f64,
}

impl Scale {
    /// The mapping for a picture of `r` drawn with `opts`.
    pub fn of(r: &SimResult, opts: &SvgOptions) -> Scale {
        let span = if r.makespan > 0.0 { r.makespan } else { 1.0 };
        let width = if opts.width.is_finite() && opts.width >= 50.0 {
            opts.width
        } else {
            50.0
        };
        Scale {
            x0: LABEL_W,
            scale: width / span,
        }
    }

    /// x of time `t`.
    pub fn x(&self, t: f64) -> f64 {
        self.x0 + t * self.scale
    }
}

/// The title lines of a picture: what, and its figures.
pub fn title_lines(s: &Schedule, r: &SimResult, baseline_peak: Option<f64>) -> (String, String) {
    let head = format!(
        "{} · p={} m={} S={}, {}",
        s.name,
        s.devices,
        s.microbatches,
        s.stages,
        s.placement.describe()
    );
    let peak = r.max_peak();
    let vs = match baseline_peak {
        Some(b) if b > 0.0 => format!(" = {:.2}× 1F1B", peak / b),
        _ => String::new(),
    };
    let figures = format!(
        "makespan {} · bubble {:.1}% · peak activation {} units{vs}",
        num(r.makespan),
        100.0 * r.bubble_rate,
        num(peak)
    );
    (head, figures)
}

/// A time-axis width, in pixels, at which the shortest pass is wide enough for its microbatch
/// number: at least 1100, at most 6000.
pub fn auto_width(s: &Schedule, r: &SimResult) -> f64 {
    let shortest = r
        .start
        .iter()
        .zip(&r.end)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| y - x))
        .filter(|d| *d > 1e-9)
        .fold(f64::INFINITY, f64::min);
    if !shortest.is_finite() || r.makespan <= 0.0 {
        return 1100.0;
    }
    let digits = s.microbatches.saturating_sub(1).to_string().len();
    let px = 6.3 * digits as f64 + 5.0;
    (r.makespan / shortest * px).clamp(1100.0, 6000.0)
}

/// Renders the timeline and memory picture of `s` as simulated in `r`.
pub fn render(s: &Schedule, r: &SimResult, opts: &SvgOptions) -> Result<String, VizError> {
    check(s, r)?;
    check_picture(s)?;
    let sc = Scale::of(r, opts);
    let plot_w = sc.scale * if r.makespan > 0.0 { r.makespan } else { 1.0 };
    let total_w = LABEL_W + plot_w + RIGHT_W;
    let p = s.devices as usize;
    let id = escape(&opts.id_prefix);
    let (chunk_of, chunks_on) = chunks(s);
    // Devices with host-link transfers get a lane under their row; the rows below move down.
    let links = link_devices(s);
    let lanes_before: Vec<usize> = links
        .iter()
        .scan(0usize, |n, &l| {
            let before = *n;
            *n += usize::from(l);
            Some(before)
        })
        .collect();
    let n_links = links.iter().filter(|l| **l).count();

    let title_y = 20.0;
    let legend_y = 58.0;
    let tl_top = 74.0;
    let tl_h = p as f64 * (ROW_H + ROW_GAP) - ROW_GAP + n_links as f64 * (LINK_GAP + LINK_H);
    let axis_y = tl_top + tl_h + 4.0;
    let mem_top = axis_y + 52.0;
    let (strip_h, strip_gap) = strip_size(p);
    let mem_h = if opts.memory {
        p as f64 * (strip_h + strip_gap)
    } else {
        0.0
    };
    let total_h = if opts.memory {
        mem_top + mem_h + 6.0
    } else {
        axis_y + 34.0
    };

    let mut o = String::with_capacity(512 + s.num_passes() * 330);
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="pb-timeline" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" data-schedule="{name}" data-x0="{x0}" data-scale="{scale}" data-makespan="{ms}" data-passes="{n}">"##,
        w = num(total_w),
        h = num(total_h),
        name = escape(&s.name),
        x0 = sc.x0,
        scale = sc.scale,
        ms = r.makespan,
        n = s.num_passes(),
    );
    let _ = write!(
        o,
        r##"<defs><pattern id="{id}-idle" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4f4f4"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c8c8c8" stroke-width="2"/></pattern></defs>"##
    );
    let _ = write!(
        o,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        num(total_w),
        num(total_h)
    );

    // Title.
    let (head, figures) = title_lines(s, r, opts.baseline_peak);
    let _ = write!(
        o,
        r##"<text x="8" y="{title_y}" font-size="15" font-weight="bold" fill="#222">{}</text><text x="8" y="{}" font-size="12.5" fill="#333">{}</text>"##,
        escape(&head),
        title_y + 19.0,
        escape(&figures)
    );

    // Legend.
    let mut lx = 8.0;
    let kinds: Vec<PassKind> = PassKind::ALL
        .into_iter()
        .chain([PassKind::R, PassKind::O, PassKind::L])
        .filter(|k| s.lists.iter().flatten().any(|ps| ps.kind == *k))
        .collect();
    let max_chunks = chunks_on.iter().copied().max().unwrap_or(1);
    for k in &kinds {
        let (fill, _) = pass_colours(*k, 0, 1);
        let label = match k {
            PassKind::F => "F forward",
            PassKind::B => "B input grad",
            PassKind::W => "W weight grad",
            PassKind::BW => "BW fused backward",
            PassKind::R => "R recompute",
            PassKind::O => "O offload to host",
            PassKind::L => "L load from host",
        };
        let _ = write!(
            o,
            r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{fill}"/><text x="{}" y="{}" font-size="11.5" fill="#333">{label}</text>"##,
            legend_y - 10.0,
            lx + 16.0,
            legend_y
        );
        lx += 22.0 + 6.8 * label.len() as f64;
    }
    if n_links > 0 {
        let text = "host lane: O above, L below";
        let _ = write!(
            o,
            r##"<g class="legend-link"><rect x="{lx}" y="{}" width="12" height="12" fill="#f6f6f0" stroke="#c8c8bc" stroke-width="0.75"/><line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="#c8c8bc" stroke-width="0.75"/><text x="{}" y="{}" font-size="11.5" fill="#333">{text}</text></g>"##,
            legend_y - 10.0,
            legend_y - 4.0,
            lx + 12.0,
            legend_y - 4.0,
            lx + 16.0,
            legend_y
        );
        lx += 22.0 + 6.4 * text.len() as f64;
    }
    if max_chunks > 1 {
        let text = "lighter = later chunk on the device";
        let (a, _) = pass_colours(PassKind::F, 0, max_chunks);
        let (b, _) = pass_colours(PassKind::F, max_chunks - 1, max_chunks);
        let _ = write!(
            o,
            r##"<rect x="{lx}" y="{}" width="6" height="12" fill="{a}"/><rect x="{}" y="{}" width="6" height="12" fill="{b}"/><text x="{}" y="{}" font-size="11.5" fill="#333">{text}</text>"##,
            legend_y - 10.0,
            lx + 6.0,
            legend_y - 10.0,
            lx + 16.0,
            legend_y
        );
        lx += 22.0 + 6.4 * text.len() as f64;
    }
    if let Some([a, b]) = s.pairs.first() {
        let text = "overlapped pair: forward above, backward below";
        let (fa, _) = pass_colours(a.kind, 0, 1);
        let (fb, _) = pass_colours(b.kind, 0, 1);
        let _ = write!(
            o,
            r##"<g class="legend-pair"><rect x="{lx}" y="{}" width="12" height="6" fill="{fa}"/><rect x="{lx}" y="{}" width="12" height="6" fill="{fb}"/><rect x="{lx}" y="{}" width="12" height="12" fill="none" stroke="#222222" stroke-width="1"/><text x="{}" y="{}" font-size="11.5" fill="#333">{text}</text></g>"##,
            legend_y - 10.0,
            legend_y - 4.0,
            legend_y - 10.0,
            lx + 16.0,
            legend_y
        );
        lx += 22.0 + 6.4 * text.len() as f64;
    }
    let _ = write!(
        o,
        r##"<rect x="{lx}" y="{}" width="12" height="12" fill="url(#{id}-idle)" stroke="#bbb" stroke-width="0.5"/><text x="{}" y="{}" font-size="11.5" fill="#333">idle</text><text x="{}" y="{}" font-size="11.5" fill="#333">number in box = microbatch</text>"##,
        legend_y - 10.0,
        lx + 16.0,
        legend_y,
        lx + 60.0,
        legend_y
    );

    // Row backgrounds (hatched: idle shows through) and labels.
    let row_y = |d: usize| {
        tl_top + d as f64 * (ROW_H + ROW_GAP) + lanes_before[d] as f64 * (LINK_GAP + LINK_H)
    };
    let link_y = |d: usize| row_y(d) + ROW_H + LINK_GAP;
    for (d, &has_link) in links.iter().enumerate() {
        let y = row_y(d);
        let busy = r.busy.get(d).copied().unwrap_or(0.0);
        let frac = if r.makespan > 0.0 {
            busy / r.makespan
        } else {
            0.0
        };
        let _ = write!(
            o,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="end" fill="#222">dev {d}</text><rect class="row" data-device="{d}" x="{}" y="{y}" width="{}" height="{ROW_H}" fill="url(#{id}-idle)"/><text x="{}" y="{}" font-size="11" fill="#555">busy {:.0}%</text>"##,
            LABEL_W - 8.0,
            y + ROW_H * 0.5 + 4.0,
            num(sc.x0),
            num(plot_w),
            num(sc.x0 + plot_w + 8.0),
            y + ROW_H * 0.5 + 4.0,
            100.0 * frac
        );
        if has_link {
            link_lane(&mut o, s, r, d, link_y(d), sc, plot_w);
        }
    }

    // Time grid and axis.
    let step = tick_step(r.makespan, (plot_w / 90.0).clamp(2.0, 16.0));
    let grid_bottom = if opts.memory {
        mem_top + mem_h - strip_gap
    } else {
        axis_y
    };
    let _ = write!(
        o,
        r##"<line x1="{}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#444" stroke-width="1"/>"##,
        num(sc.x0),
        num(sc.x0 + plot_w)
    );
    let mut k = 0u32;
    loop {
        let t = k as f64 * step;
        if t > r.makespan + step * 1e-6 || k > 1000 {
            break;
        }
        let x = num(sc.x(t));
        let _ = write!(
            o,
            r##"<line x1="{x}" y1="{tl_top}" x2="{x}" y2="{}" stroke="#000" stroke-opacity="0.1" stroke-width="1"/><line x1="{x}" y1="{axis_y}" x2="{x}" y2="{}" stroke="#444"/><text x="{x}" y="{}" font-size="11" text-anchor="middle" fill="#333">{}</text>"##,
            num(grid_bottom),
            axis_y + 4.0,
            axis_y + 16.0,
            num(t)
        );
        k += 1;
    }
    let _ = write!(
        o,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">time (cost units)</text>"##,
        num(sc.x0 + plot_w),
        axis_y + 30.0
    );

    // Pass boxes. A box gets its microbatch number when the widest number of the schedule
    // fits, so either all boxes of a width are numbered or none (no misleading half-labels).
    let digits = s.microbatches.saturating_sub(1).to_string().len();
    let label_room = 6.3 * digits as f64 + 3.0;
    let starts = pair_starts(s);
    for (d, list) in s.lists.iter().enumerate() {
        let y = row_y(d);
        let nchunks = chunks_on.get(d).copied().unwrap_or(1).max(1);
        let mut i = 0;
        while i < list.len() {
            if list[i].kind.is_transfer() {
                // On the host link, beside the computation: drawn in the lane below.
                let ps = list[i];
                let (t0, t1) = (r.start[d][i], r.end[d][i]);
                let x = sc.x(t0);
                let w = (t1 - t0).max(0.0) * sc.scale;
                let h = LINK_H / 2.0;
                let (yy, way) = if ps.kind == PassKind::O {
                    (link_y(d), "offload, device to host")
                } else {
                    (link_y(d) + h, "load back, host to device")
                };
                let chunk = chunk_of[ps.stage as usize];
                let (fill, ink) = pass_colours(ps.kind, chunk, nchunks);
                let stroke = if w >= 4.0 {
                    r##" stroke="#ffffff" stroke-width="0.5""##
                } else {
                    ""
                };
                let _ = write!(
                    o,
                    r##"<rect class="pass k-{kind} link" x="{x:.3}" y="{yy}" width="{w:.3}" height="{h}" fill="{fill}"{stroke} data-device="{d}" data-stage="{st}" data-chunk="{chunk}" data-mb="{mb}" data-kind="{kind}" data-start="{t0}" data-end="{t1}"><title>{ps} · {way} on device {d}'s host link, stage {st} (chunk {chunk}), microbatch {mb} · {a} → {b}</title></rect>"##,
                    kind = ps.kind,
                    st = ps.stage,
                    mb = ps.mb,
                    a = num(t0),
                    b = num(t1),
                );
                if w >= label_room {
                    let _ = write!(
                        o,
                        r##"<text x="{:.3}" y="{}" font-size="7.5" text-anchor="middle" fill="{ink}" pointer-events="none">{}</text>"##,
                        x + w / 2.0,
                        yy + h * 0.5 + 2.7,
                        ps.mb
                    );
                }
                i += 1;
                continue;
            }
            let (t0, t1) = (r.start[d][i], r.end[d][i]);
            let x = sc.x(t0);
            let w = (t1 - t0).max(0.0) * sc.scale;
            let stroke = if w >= 4.0 {
                r##" stroke="#ffffff" stroke-width="0.75""##
            } else {
                ""
            };
            // One pass fills the row; the halves of a pair share the pair's span, the forward
            // in the upper half and the backward in the lower.
            let (halves, font, lift, note) = if starts[d][i] {
                let (a, b) = (list[i], list[i + 1]);
                let name = pair_name(a, b);
                let _ = write!(
                    o,
                    r##"<g class="pair-unit" data-device="{d}" data-pair="{name}">"##
                );
                let note = format!(" · overlapped pair {a} + {b}, run as one unit");
                (vec![(a, 0.0), (b, 0.5)], 8.0, 2.9, note)
            } else {
                (vec![(list[i], 0.0)], 10.5, 3.8, String::new())
            };
            let h = ROW_H / halves.len() as f64;
            for &(ps, top) in &halves {
                let yy = y + top * ROW_H;
                let chunk = chunk_of[ps.stage as usize];
                let (fill, ink) = pass_colours(ps.kind, chunk, nchunks);
                let _ = write!(
                    o,
                    r##"<rect class="pass k-{kind}" x="{x:.3}" y="{yy}" width="{w:.3}" height="{h}" fill="{fill}"{stroke} data-device="{d}" data-stage="{st}" data-chunk="{chunk}" data-mb="{mb}" data-kind="{kind}" data-start="{t0}" data-end="{t1}"><title>{ps}{note} · device {d}, stage {st} (chunk {chunk}), microbatch {mb} · {a} → {b}</title></rect>"##,
                    kind = ps.kind,
                    st = ps.stage,
                    mb = ps.mb,
                    a = num(t0),
                    b = num(t1),
                );
                if w >= label_room {
                    let _ = write!(
                        o,
                        r##"<text x="{:.3}" y="{}" font-size="{font}" text-anchor="middle" fill="{ink}" pointer-events="none">{}</text>"##,
                        x + w / 2.0,
                        yy + h * 0.5 + lift,
                        ps.mb
                    );
                }
            }
            if halves.len() == 2 {
                let (a, b) = (halves[0].0, halves[1].0);
                let _ = write!(
                    o,
                    r##"<rect class="pair" x="{x:.3}" y="{y}" width="{w:.3}" height="{ROW_H}" fill="none" stroke="#222222" stroke-width="1" pointer-events="none" data-device="{d}" data-first="{a}" data-second="{b}" data-start="{t0}" data-end="{t1}"><title>{a} + {b} · overlapped pair, run as one unit · device {d} · {t0s} → {t1s}</title></rect></g>"##,
                    t0s = num(t0),
                    t1s = num(t1),
                );
            }
            i += halves.len();
        }
    }

    if opts.memory {
        memory_strips(&mut o, s, r, opts, sc, mem_top);
    }
    o.push_str("</svg>\n");
    Ok(o)
}

/// Writes the background, label and right-hand figures of device `d`'s host-link lane at `y`:
/// the upper half holds offloads (device to host), the lower half loads back (host to device).
fn link_lane(
    o: &mut String,
    s: &Schedule,
    r: &SimResult,
    d: usize,
    y: f64,
    sc: Scale,
    plot_w: f64,
) {
    let busy = |kind: PassKind| -> f64 {
        s.lists[d]
            .iter()
            .enumerate()
            .filter(|(_, q)| q.kind == kind)
            .map(|(i, _)| (r.end[d][i] - r.start[d][i]).max(0.0))
            .sum()
    };
    let pct = |t: f64| {
        if r.makespan > 0.0 {
            100.0 * t / r.makespan
        } else {
            0.0
        }
    };
    let (out, back) = (busy(PassKind::O), busy(PassKind::L));
    let _ = write!(
        o,
        r##"<g class="host-link" data-device="{d}"><text x="{}" y="{}" font-size="10" text-anchor="end" fill="#555">d{d} host</text><rect class="link-lane" data-device="{d}" x="{}" y="{y}" width="{}" height="{LINK_H}" fill="#f6f6f0" stroke="#d8d8cc" stroke-width="0.5"/><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#e2e2d8" stroke-width="0.5"/><text x="{}" y="{}" font-size="10" fill="#555"><title>share of the makespan each direction of the host link is busy: offload (device to host), load back (host to device)</title>O {:.0}% · L {:.0}%</text></g>"##,
        LABEL_W - 8.0,
        y + LINK_H * 0.5 + 3.5,
        num(sc.x0),
        num(plot_w),
        num(sc.x0),
        y + LINK_H * 0.5,
        num(sc.x0 + plot_w),
        y + LINK_H * 0.5,
        num(sc.x0 + plot_w + 8.0),
        y + LINK_H * 0.5 + 3.5,
        pct(out),
        pct(back)
    );
}

/// `s` without its memory-saving passes: every offload (O), load back (L) and recompute (R)
/// removed from its lists, so each microbatch's activation stays on its device from its F to its
/// backward. The schedule whose memory [`SvgOptions::baseline_memory`] draws.
pub fn strip_memory_passes(s: &Schedule) -> Schedule {
    let mut out = s.clone();
    for list in &mut out.lists {
        list.retain(|q| !q.kind.is_transfer() && q.kind != PassKind::R);
    }
    out
}

/// The activation memory of `s` without its offload, load-back and recompute passes
/// ([`strip_memory_passes`]) simulated under `costs`, ready for
/// [`SvgOptions::baseline_memory`] (and [`crate::html::Entry::baseline_memory`]); `None` when
/// `s` has no such passes, so there is nothing to compare.
pub fn memory_without(
    s: &Schedule,
    costs: &StageCosts,
) -> Result<Option<MemoryCurves>, pipeblocks_core::Error> {
    if !has_memory_passes(s) {
        return Ok(None);
    }
    let plain = strip_memory_passes(s);
    Ok(Some(pipeblocks_core::simulate(&plain, costs)?.memory))
}

/// Height of a memory strip and the gap under it: compact beyond 8 devices.
fn strip_size(p: usize) -> (f64, f64) {
    if p > 8 {
        (MEM_H * 0.75, MEM_GAP * 0.5)
    } else {
        (MEM_H, MEM_GAP)
    }
}

/// The memory curve as drawn: one point per distinct time, holding the level after every
/// change at that time (a release and an allocation at the same instant are no dip), and only
/// where the level changes.
pub fn settle(curve: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut timed: Vec<(f64, f64)> = Vec::with_capacity(curve.len());
    for &(t, v) in curve {
        match timed.last_mut() {
            Some(last) if (last.0 - t).abs() <= 1e-12 => last.1 = v,
            _ => timed.push((t, v)),
        }
    }
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(timed.len());
    for (t, v) in timed {
        if out.last().is_none_or(|last| last.1 != v) {
            out.push((t, v));
        }
    }
    out
}

/// Writes the per-device activation-memory strips starting at `top`.
fn memory_strips(
    o: &mut String,
    s: &Schedule,
    r: &SimResult,
    opts: &SvgOptions,
    sc: Scale,
    top: f64,
) {
    let p = s.devices as usize;
    let (strip_h, strip_gap) = strip_size(p);
    let plot_w = sc.scale * if r.makespan > 0.0 { r.makespan } else { 1.0 };
    let end_t = if r.makespan > 0.0 { r.makespan } else { 1.0 };
    let max_peak = r.max_peak();
    let base = opts.baseline_peak.filter(|b| b.is_finite() && *b > 0.0);
    // The same schedule without O, L and R, when given and the schedule has any of them.
    let without: Option<MemoryCurves> = opts
        .baseline_memory
        .as_ref()
        .filter(|m| m.len() == p && has_memory_passes(s))
        .map(|m| m.iter().map(|c| settle(c)).collect());
    let without_peak = |d: usize| -> f64 {
        without.as_ref().map_or(0.0, |w| {
            w[d].iter()
                .map(|x| x.1)
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max)
        })
    };
    let ymax = (0..p)
        .map(without_peak)
        .fold(max_peak.max(base.unwrap_or(0.0)), f64::max)
        .max(1e-9);
    let without_note = if without.is_some() {
        "; dashed orange curve: without offload/recompute"
    } else {
        ""
    };
    let header = match base {
        Some(b) => format!(
            "activation memory per device (units, shared scale 0–{}; dashed line: 1F1B's peak {}{without_note}; red dot: the device's peak)",
            num(ymax),
            num(b)
        ),
        None => format!(
            "activation memory per device (units, shared scale 0–{}{without_note}; red dot: the device's peak)",
            num(ymax)
        ),
    };
    let _ = write!(
        o,
        r##"<text x="8" y="{}" font-size="12.5" font-weight="bold" fill="#222">{}</text>"##,
        top - 10.0,
        escape(&header)
    );
    for d in 0..p {
        let y0 = top + d as f64 * (strip_h + strip_gap);
        let ybase = y0 + strip_h;
        let yof = |v: f64| ybase - (v.max(0.0) / ymax) * (strip_h - 3.0);
        let _ = write!(
            o,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="end" fill="#222">dev {d}</text><rect x="{}" y="{y0}" width="{}" height="{strip_h}" fill="#fafafa" stroke="#d0d0d0" stroke-width="0.75"/>"##,
            LABEL_W - 8.0,
            y0 + strip_h * 0.5 + 4.0,
            num(sc.x0),
            num(plot_w)
        );
        let curve = settle(&r.memory[d]);
        let mut path = format!("M{:.2} {:.2}", sc.x(0.0), ybase);
        for &(t, v) in &curve {
            let _ = write!(path, " H{:.2} V{:.2}", sc.x(t.min(end_t)), yof(v));
        }
        let _ = write!(path, " H{:.2}", sc.x(end_t));
        let _ = write!(path, " V{ybase:.2} Z");
        let peak = r.peak_activation.get(d).copied().unwrap_or(0.0);
        let _ = write!(
            o,
            r##"<path class="mem" data-device="{d}" data-peak="{peak}" d="{path}" fill="#9ecae1" fill-opacity="0.75" stroke="#2b6c9e" stroke-width="1"/>"##
        );
        if let Some(w) = &without {
            let mut line = format!("M{:.2} {:.2}", sc.x(0.0), ybase);
            for &(t, v) in &w[d] {
                if !(t.is_finite() && v.is_finite()) {
                    continue;
                }
                let _ = write!(line, " H{:.2} V{:.2}", sc.x(t.clamp(0.0, end_t)), yof(v));
            }
            let _ = write!(line, " H{:.2}", sc.x(end_t));
            let wp = without_peak(d);
            let _ = write!(
                o,
                r##"<path class="mem-without" data-device="{d}" data-peak="{wp}" d="{line}" fill="none" stroke="#f28e2b" stroke-opacity="0.85" stroke-dasharray="4 2" stroke-width="1.3"><title>device {d} without offload/recompute: peak {} units</title></path>"##,
                num(wp)
            );
        }
        if let Some(b) = base {
            let yb = yof(b);
            let _ = write!(
                o,
                r##"<line x1="{}" y1="{yb:.2}" x2="{}" y2="{yb:.2}" stroke="#555" stroke-dasharray="4 3" stroke-width="1"/>"##,
                num(sc.x0),
                num(sc.x0 + plot_w)
            );
        }
        let t_peak = curve
            .iter()
            .find(|(_, v)| *v >= peak - 1e-9)
            .map(|(t, _)| *t)
            .unwrap_or(0.0);
        if peak > 0.0 {
            let _ = write!(
                o,
                r##"<circle class="peak" data-device="{d}" cx="{:.2}" cy="{:.2}" r="3.2" fill="#d62728"><title>device {d}: peak {} units at t = {}</title></circle>"##,
                sc.x(t_peak),
                yof(peak),
                num(peak),
                num(t_peak)
            );
        }
        if without.is_some() {
            let _ = write!(
                o,
                r##"<text x="{}" y="{}" font-size="11" fill="#555">peak {}</text><text x="{}" y="{}" font-size="10" fill="#c4701f">without {}</text>"##,
                num(sc.x0 + plot_w + 8.0),
                y0 + strip_h * 0.5 - 1.0,
                num(peak),
                num(sc.x0 + plot_w + 8.0),
                y0 + strip_h * 0.5 + 10.0,
                num(without_peak(d))
            );
        } else {
            let _ = write!(
                o,
                r##"<text x="{}" y="{}" font-size="11" fill="#555">peak {}</text>"##,
                num(sc.x0 + plot_w + 8.0),
                y0 + strip_h * 0.5 + 4.0,
                num(peak)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeblocks_core::registry::{generate, registry};
    use pipeblocks_core::Params;
    use pipeblocks_core::{simulate, Costs, StageCosts};
    use proptest::prelude::*;

    #[test]
    fn pictures_beyond_the_limit_are_refused() {
        let m = (crate::MAX_PICTURE_PASSES / 4 + 1) as u32;
        let s = generate("1f1b", &Params::new(2, m).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        match render(&s, &r, &SvgOptions::default()) {
            Err(VizError::TooLarge { passes, limit, .. }) => {
                assert_eq!((passes, limit), (s.num_passes(), crate::MAX_PICTURE_PASSES))
            }
            other => panic!("expected TooLarge, got {:?}", other.map(|t| t.len())),
        }
        let s = generate("1f1b", &Params::new(2, m - 1).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        assert!(render(&s, &r, &SvgOptions::default()).is_ok());
    }

    fn attr_f64(n: roxmltree::Node, name: &str) -> f64 {
        n.attribute(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .parse()
            .unwrap()
    }

    /// Parses the SVG and checks one box per pass at the simulated times.
    fn check_picture(s: &Schedule, r: &SimResult, svg: &str) {
        let doc = roxmltree::Document::parse(svg).expect("the SVG parses as XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let x0 = attr_f64(root, "data-x0");
        let scale = attr_f64(root, "data-scale");
        let boxes: Vec<_> = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("rect")
                    && n.attribute("class").is_some_and(|c| c.starts_with("pass"))
            })
            .collect();
        assert_eq!(boxes.len(), s.num_passes());
        let mut seen = vec![vec![false; 0]; s.devices as usize];
        for (d, l) in s.lists.iter().enumerate() {
            seen[d] = vec![false; l.len()];
        }
        for b in boxes {
            let d: usize = b.attribute("data-device").unwrap().parse().unwrap();
            let stage: u32 = b.attribute("data-stage").unwrap().parse().unwrap();
            let mb: u32 = b.attribute("data-mb").unwrap().parse().unwrap();
            let kind = b.attribute("data-kind").unwrap();
            let i = s.lists[d]
                .iter()
                .position(|ps| ps.stage == stage && ps.mb == mb && ps.kind.as_str() == kind)
                .expect("the box names a pass of its device");
            assert!(!seen[d][i], "two boxes for one pass");
            seen[d][i] = true;
            let x = attr_f64(b, "x");
            let w = attr_f64(b, "width");
            let want0 = x0 + r.start[d][i] * scale;
            let want1 = x0 + r.end[d][i] * scale;
            assert!(
                (x - want0).abs() < 0.01,
                "{kind}{stage}.{mb}: x {x} vs {want0}"
            );
            assert!(
                (x + w - want1).abs() < 0.02,
                "{kind}{stage}.{mb}: end {} vs {want1}",
                x + w
            );
            assert!((attr_f64(b, "data-start") - r.start[d][i]).abs() < 1e-9);
        }
        let mems = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("mem"))
            .count();
        assert_eq!(mems, s.devices as usize);
    }

    #[test]
    fn every_registered_schedule_draws_one_box_per_pass_at_its_time() {
        let costs = Costs::parse("f=1,b=1.5,w=0.7,c=0.1").unwrap();
        let prm = Params::new(4, 8)
            .unwrap()
            .with_costs(StageCosts::uniform(costs));
        for g in registry() {
            let s = generate(g.name, &prm).unwrap();
            let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
            let svg = render(&s, &r, &SvgOptions::default()).unwrap();
            check_picture(&s, &r, &svg);
        }
    }

    #[test]
    fn widths_follow_costs() {
        let costs = Costs::parse("f=1,b=2,w=0.5").unwrap();
        let s = generate(
            "zb-h1",
            &Params::new(2, 3)
                .unwrap()
                .with_costs(StageCosts::uniform(costs)),
        )
        .unwrap();
        let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
        let svg = render(&s, &r, &SvgOptions::default()).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let scale = attr_f64(doc.root_element(), "data-scale");
        for b in doc
            .descendants()
            .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("pass")))
        {
            let want = match b.attribute("data-kind").unwrap() {
                "F" => 1.0,
                "B" => 2.0,
                "W" => 0.5,
                k => panic!("unexpected kind {k}"),
            };
            assert!((attr_f64(b, "width") - want * scale).abs() < 0.01);
        }
    }

    #[test]
    fn title_names_the_schedule_and_its_figures() {
        let s = generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        let opts = SvgOptions {
            baseline_peak: Some(2.0),
            ..Default::default()
        };
        let svg = render(&s, &r, &opts).unwrap();
        assert!(svg.contains("1f1b · p=4 m=8 S=4"));
        assert!(svg.contains("bubble 27.3%"), "3/11 as a percentage");
        assert!(svg.contains("peak activation 4 units = 2.00× 1F1B"));
    }

    #[test]
    fn escapes_names_and_rejects_foreign_results() {
        let mut s = generate("gpipe", &Params::new(2, 2).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        s.name = "a<b&c".into();
        let svg = render(&s, &r, &SvgOptions::default()).unwrap();
        roxmltree::Document::parse(&svg).unwrap();
        assert!(svg.contains("a&lt;b&amp;c"));
        let other = generate("gpipe", &Params::new(3, 2).unwrap()).unwrap();
        assert!(matches!(
            render(&other, &r, &SvgOptions::default()),
            Err(VizError::Mismatch { .. })
        ));
    }

    #[test]
    fn memory_drawn_without_instant_dips_and_with_the_true_peak() {
        let s = generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        for (d, curve) in r.memory.iter().enumerate() {
            let drawn = settle(curve);
            assert!(drawn.windows(2).all(|w| w[1].0 > w[0].0));
            let top = drawn.iter().map(|x| x.1).fold(0.0, f64::max);
            assert_eq!(top, r.peak_activation[d]);
        }
        // Device 0 of 1F1B holds 4 units from its 4th forward until its first backward ends,
        // although a release and an allocation meet at the same instant in between.
        let d0 = settle(&r.memory[0]);
        let at4: Vec<_> = d0.iter().filter(|x| x.1 == 4.0).collect();
        assert_eq!(at4.len(), 1, "{d0:?}");
    }

    #[test]
    fn auto_width_leaves_room_for_numbers() {
        let s = generate("zb-h2", &Params::new(16, 32).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        let w = auto_width(&s, &r);
        let svg = render(
            &s,
            &r,
            &SvgOptions {
                width: w,
                ..Default::default()
            },
        )
        .unwrap();
        let labels = svg.matches("pointer-events=\"none\"").count();
        assert_eq!(labels, s.num_passes());
        let small = generate("1f1b", &Params::new(2, 2).unwrap()).unwrap();
        let rs = simulate(&small, &StageCosts::default()).unwrap();
        assert_eq!(auto_width(&small, &rs), 1100.0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn boxes_match_the_simulation(
            p in 1u32..6, m in 1u32..9, which in 0usize..6,
            f in 0.2f64..3.0, b in 0.2f64..3.0, w in 0.0f64..2.0, c in 0.0f64..0.5,
            width in 200.0f64..2000.0,
        ) {
            let g = &registry()[which % registry().len()];
            let costs = Costs {
                f,
                b,
                w,
                comm: c,
                ..Costs::default()
            };
            let prm = Params::new(p, m).unwrap().with_costs(StageCosts::uniform(costs));
            if let Ok(s) = generate(g.name, &prm) {
                let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
                let svg = render(&s, &r, &SvgOptions { width, ..Default::default() }).unwrap();
                check_picture(&s, &r, &svg);
            }
        }
    }
}
