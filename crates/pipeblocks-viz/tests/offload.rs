//! Offload (O), load back (L) and recompute (R) in every renderer: transfers drawn on their
//! device's host link beside its computation, never in its compute row; the memory curve
//! without them; schedules without them unchanged.

use std::collections::{HashMap, HashSet};

use pipeblocks_core::compare::{baseline, summarize};
use pipeblocks_core::recompute::with_recompute;
use pipeblocks_core::registry::registry;
use pipeblocks_core::{
    generate, simulate, Costs, Params, Pass, PassKind, Schedule, SimResult, StageCosts,
};
use pipeblocks_viz::chrome_trace::{export_value, transfers, TraceOptions};
use pipeblocks_viz::html::{report, Entry, Report};
use pipeblocks_viz::svg::{memory_without, render, settle, strip_memory_passes, SvgOptions};
use pipeblocks_viz::text;
use serde_json::Value;

/// `s` with the activation of every microbatch on the devices marked in `on` offloaded: an O
/// right after each F and an L right before each B or BW of the same stage and microbatch (an
/// overlapped pair stays together: the O after it, the L before it).
fn offload(s: &Schedule, on: &[bool]) -> Schedule {
    let mut out = s.clone();
    let firsts: HashSet<Pass> = s.pairs.iter().map(|[a, _]| *a).collect();
    for (d, list) in out.lists.iter_mut().enumerate() {
        if !on[d] {
            continue;
        }
        let mut new = Vec::with_capacity(list.len() * 2);
        let mut i = 0;
        while i < list.len() {
            let n = if firsts.contains(&list[i]) && i + 1 < list.len() {
                2
            } else {
                1
            };
            let unit = &list[i..i + n];
            for q in unit.iter().filter(|q| q.kind.is_input_backward()) {
                new.push(Pass::l(q.stage, q.mb));
            }
            new.extend_from_slice(unit);
            for q in unit.iter().filter(|q| q.kind == PassKind::F) {
                new.push(Pass::o(q.stage, q.mb));
            }
            i += n;
        }
        *list = new;
    }
    out
}

/// Unit costs with a host link as fast as a forward (without one, nothing can be offloaded).
fn costs() -> StageCosts {
    StageCosts::uniform(Costs {
        offload: Some(1.0),
        ..Costs::default()
    })
}

fn plain_1f1b(p: u32, m: u32) -> (Schedule, SimResult) {
    let s = generate("1f1b", &Params::new(p, m).unwrap()).unwrap();
    let r = simulate(&s, &costs()).unwrap();
    (s, r)
}

/// 1F1B on `p` devices with `m` microbatches, every activation of the devices in `on`
/// offloaded, and its simulation under the default costs.
fn offloaded(p: u32, m: u32, on: &[bool]) -> (Schedule, SimResult) {
    let (plain, _) = plain_1f1b(p, m);
    let s = offload(&plain, on);
    assert!(s.lists.iter().flatten().any(|q| q.kind.is_transfer()));
    let r = simulate(&s, &costs()).unwrap();
    (s, r)
}

fn f(n: roxmltree::Node, name: &str) -> f64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap()
}

fn classes<'a>(n: &roxmltree::Node<'a, 'a>) -> Vec<&'a str> {
    n.attribute("class")
        .map(|c| c.split_whitespace().collect())
        .unwrap_or_default()
}

fn device(n: roxmltree::Node) -> usize {
    n.attribute("data-device").unwrap().parse().unwrap()
}

/// Where each pass sits: device and position in its list.
fn positions(s: &Schedule) -> HashMap<Pass, (usize, usize)> {
    let mut at = HashMap::new();
    for (d, list) in s.lists.iter().enumerate() {
        for (i, ps) in list.iter().enumerate() {
            at.insert(*ps, (d, i));
        }
    }
    at
}

fn pass_of(n: roxmltree::Node) -> Pass {
    Pass::parse(&format!(
        "{}{}.{}",
        n.attribute("data-kind").unwrap(),
        n.attribute("data-stage").unwrap(),
        n.attribute("data-mb").unwrap()
    ))
    .unwrap()
}

/// Checks the picture of `s`: compute boxes in their device's row, transfer boxes in the host
/// lane under it (O the upper half, L the lower), every box at its simulated times.
fn check_lanes(s: &Schedule, r: &SimResult, svg: &str) {
    let doc = roxmltree::Document::parse(svg).expect("the SVG parses");
    let root = doc.root_element();
    let (x0, scale) = (f(root, "data-x0"), f(root, "data-scale"));
    let at = positions(s);
    let with_link: Vec<bool> = s
        .lists
        .iter()
        .map(|l| l.iter().any(|q| q.kind.is_transfer()))
        .collect();

    let rows: HashMap<usize, (f64, f64)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("row"))
        .map(|n| (device(n), (f(n, "y"), f(n, "y") + f(n, "height"))))
        .collect();
    let lanes: HashMap<usize, (f64, f64)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("link-lane"))
        .map(|n| (device(n), (f(n, "y"), f(n, "y") + f(n, "height"))))
        .collect();
    assert_eq!(rows.len(), s.devices as usize);
    // One lane per device with transfers, right under its row and above the next row.
    for (d, has) in with_link.iter().enumerate() {
        assert_eq!(lanes.contains_key(&d), *has, "device {d}");
        assert_eq!(svg.contains(&format!(">d{d} host<")), *has, "device {d}");
        if let Some(&(top, bottom)) = lanes.get(&d) {
            assert!(top >= rows[&d].1, "lane of {d} under its row");
            if let Some(next) = rows.get(&(d + 1)) {
                assert!(bottom <= next.0, "lane of {d} above the next row");
            }
        }
    }
    // No two rows or lanes overlap.
    let mut bands: Vec<(f64, f64)> = rows.values().chain(lanes.values()).copied().collect();
    bands.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in bands.windows(2) {
        assert!(w[1].0 >= w[0].1, "{w:?}");
    }

    let boxes: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && classes(n).first() == Some(&"pass"))
        .collect();
    assert_eq!(
        boxes.len(),
        s.num_passes(),
        "one box per pass, transfers included"
    );
    let mut seen = HashSet::new();
    for b in boxes {
        let ps = pass_of(b);
        assert!(seen.insert(ps), "two boxes for {ps}");
        let (d, i) = at[&ps];
        assert_eq!(device(b), d);
        let (x, w, y, h) = (f(b, "x"), f(b, "width"), f(b, "y"), f(b, "height"));
        assert!((x - (x0 + r.start[d][i] * scale)).abs() < 0.01, "{ps}: x");
        assert!(
            (x + w - (x0 + r.end[d][i] * scale)).abs() < 0.02,
            "{ps}: end"
        );
        let is_link = classes(&b).contains(&"link");
        assert_eq!(is_link, ps.kind.is_transfer(), "{ps}: class");
        let (top, bottom) = if ps.kind.is_transfer() {
            let (t, bt) = lanes[&d];
            let mid = (t + bt) / 2.0;
            if ps.kind == PassKind::O {
                (t, mid)
            } else {
                (mid, bt)
            }
        } else {
            rows[&d]
        };
        assert!(
            y >= top - 1e-9 && y + h <= bottom + 1e-9,
            "{ps} at y {y}..{} outside {top}..{bottom}",
            y + h
        );
    }
}

#[test]
fn svg_draws_transfers_in_a_host_lane_under_their_device() {
    let (s, r) = offloaded(2, 4, &[true, true]);
    let svg = render(&s, &r, &SvgOptions::default()).unwrap();
    check_lanes(&s, &r, &svg);
    // On device 0 an offload and a load run at the same time (the two directions of the link),
    // beside a computation: the picture keeps all three apart.
    let at = positions(&s);
    let (_, o) = at[&Pass::o(0, 1)];
    let (_, l) = at[&Pass::l(0, 0)];
    assert_eq!(r.start[0][o], r.start[0][l]);
    assert!(svg.contains("O offload to host") && svg.contains("L load from host"));
    assert!(svg.contains("host lane: O above, L below"));
}

#[test]
fn only_devices_with_transfers_get_a_lane_and_rows_below_move_down() {
    let (s, r) = offloaded(3, 6, &[false, true, false]);
    let svg = render(&s, &r, &SvgOptions::default()).unwrap();
    check_lanes(&s, &r, &svg);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let row_y: Vec<f64> = {
        let mut v: Vec<(usize, f64)> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("row"))
            .map(|n| (device(n), f(n, "y")))
            .collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    };
    let (plain, pr) = plain_1f1b(3, 6);
    let plain_svg = render(&plain, &pr, &SvgOptions::default()).unwrap();
    let pdoc = roxmltree::Document::parse(&plain_svg).unwrap();
    let plain_y: Vec<f64> = pdoc
        .descendants()
        .filter(|n| n.attribute("class") == Some("row"))
        .map(|n| f(n, "y"))
        .collect();
    // Rows 0 and 1 where they were; row 2 moved down by the lane under row 1.
    assert_eq!(&row_y[..2], &plain_y[..2]);
    assert!(row_y[2] > plain_y[2]);
    assert!(f(root_of(&doc), "height") > f(root_of(&pdoc), "height"));
}

fn root_of<'a>(doc: &'a roxmltree::Document<'a>) -> roxmltree::Node<'a, 'a> {
    doc.root_element()
}

#[test]
fn transfers_land_in_lanes_for_every_schedule() {
    let prm = Params::new(4, 8).unwrap();
    let costs = costs();
    let mut drawn = Vec::new();
    for g in registry() {
        let Ok(plain) = generate(g.name, &prm) else {
            continue;
        };
        let s = offload(&plain, &[true, false, true, true]);
        let Ok(r) = simulate(&s, &costs) else {
            continue;
        };
        let svg = render(&s, &r, &SvgOptions::default()).unwrap();
        check_lanes(&s, &r, &svg);
        drawn.push(g.name);
    }
    assert!(drawn.len() >= 5, "{drawn:?}");
}

#[test]
fn schedules_without_transfers_draw_no_lane_and_ignore_the_without_curve() {
    let (s, r) = plain_1f1b(4, 8);
    let plain = render(&s, &r, &SvgOptions::default()).unwrap();
    for absent in ["link-lane", " host<", "class=\"pass k-O", "mem-without"] {
        assert!(!plain.contains(absent), "{absent}");
    }
    // Rows where they always were: 23 px apart from y = 74.
    let doc = roxmltree::Document::parse(&plain).unwrap();
    let ys: Vec<f64> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("row"))
        .map(|n| f(n, "y"))
        .collect();
    assert_eq!(ys, vec![74.0, 97.0, 120.0, 143.0]);
    // Nothing to compare with: a without-curve is ignored, byte for byte.
    let with = render(
        &s,
        &r,
        &SvgOptions {
            baseline_memory: Some(r.memory.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(with, plain);
    assert_eq!(memory_without(&s, &costs()).unwrap(), None);
    // The offloaded schedule stripped of its transfers is the plain one again.
    let (o, _) = offloaded(4, 8, &[true; 4]);
    assert_eq!(strip_memory_passes(&o).lists, s.lists);
}

/// The without-curves drawn for `s`: device and `data-peak`, and the path's levels.
fn without_paths(svg: &str) -> Vec<(usize, f64, String)> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.attribute("class") == Some("mem-without"))
        .map(|n| {
            assert_eq!(n.attribute("fill"), Some("none"));
            assert!(n.attribute("stroke-dasharray").is_some(), "dashed");
            (
                device(n),
                f(n, "data-peak"),
                n.attribute("d").unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn memory_strips_add_the_dashed_curve_without_recompute() {
    let costs = costs();
    let (plain, pr) = plain_1f1b(4, 8);
    let s = with_recompute(&plain, &[true; 4]);
    let r = simulate(&s, &costs).unwrap();
    let without = memory_without(&s, &costs).unwrap().expect("R passes");
    assert_eq!(without, pr.memory);
    // Recomputing keeps less on the device than holding everything.
    assert!(r.max_peak() < pr.max_peak());
    let svg = render(
        &s,
        &r,
        &SvgOptions {
            baseline_memory: Some(without.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(svg.contains("without offload/recompute"));
    let paths = without_paths(&svg);
    assert_eq!(paths.len(), 4);
    for (d, peak, _) in &paths {
        assert_eq!(*peak, pr.peak_activation[*d]);
        assert!(svg.contains(&format!("without {}<", pr.peak_activation[*d])));
    }
    // One shared scale that holds the higher, unsaved curve.
    assert!(svg.contains(&format!("shared scale 0–{}", pr.max_peak())));
    // Each path steps through the without-curve's levels at its times: as many vertical moves
    // as the settled curve has points.
    for (d, _, path) in &paths {
        let steps = path.matches(" V").count();
        assert_eq!(steps, settle(&pr.memory[*d]).len(), "device {d}");
    }
}

#[test]
fn memory_strips_add_the_dashed_curve_without_offload() {
    let costs = costs();
    let (s, r) = offloaded(2, 4, &[true, true]);
    let without = memory_without(&s, &costs).unwrap().expect("O and L passes");
    let (_, pr) = plain_1f1b(2, 4);
    assert_eq!(without, pr.memory);
    let svg = render(
        &s,
        &r,
        &SvgOptions {
            baseline_memory: Some(without),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(without_paths(&svg).len(), 2);
    // A wrong number of curves is ignored rather than misdrawn.
    let svg = render(
        &s,
        &r,
        &SvgOptions {
            baseline_memory: Some(vec![Vec::new()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(without_paths(&svg).is_empty());
    assert!(!svg.contains("without offload/recompute"));
}

/// The token columns of one text line after its `|`: (column, token).
fn tokens(line: &str) -> Vec<(usize, String)> {
    let body = line.split_once('|').unwrap().1;
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, c) in body.chars().enumerate() {
        if c == ' ' {
            out.extend(cur.take());
        } else {
            cur.get_or_insert((i, String::new())).1.push(c);
        }
    }
    out.extend(cur);
    out
}

#[test]
fn text_puts_transfers_on_link_lines_under_their_device() {
    let (s, r) = offloaded(3, 4, &[true, false, true]);
    let t = text::render(&s, &r);
    let lines: Vec<&str> = t.lines().collect();
    let legend = lines[1];
    assert!(legend.contains("O offload") && legend.contains("L load back"));
    for d in 0..3usize {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("dev {d:>3} |")))
            .unwrap();
        let dev = tokens(lines[at]);
        // Compute tokens only: one per computing pass, none an O or an L.
        let compute: Vec<_> = dev.iter().filter(|(_, t)| t != ".").collect();
        let want = s.lists[d].iter().filter(|q| !q.kind.is_transfer()).count();
        assert_eq!(compute.len(), want, "device {d}: {}", lines[at]);
        assert!(compute
            .iter()
            .all(|(_, t)| !t.starts_with(['O', 'o', 'L', 'l'])));
        let has = d != 1;
        for (k, name, kind) in [(1, "d2h", PassKind::O), (2, "h2d", PassKind::L)] {
            let line = lines[at + k];
            assert_eq!(line.starts_with(&format!("{name} {d:>3} |")), has, "{line}");
            if !has {
                continue;
            }
            let toks = tokens(line);
            let n = s.lists[d].iter().filter(|q| q.kind == kind).count();
            assert_eq!(toks.len(), n, "{line}");
            assert!(toks.iter().all(|(_, t)| t.starts_with(kind.as_str())));
            // A transfer starting with a computation sits under it.
            for (col, tok) in &toks {
                let mb: u32 = tok[1..].parse().unwrap();
                let i = s.lists[d]
                    .iter()
                    .position(|q| q.kind == kind && q.mb == mb)
                    .unwrap();
                let same = s.lists[d].iter().enumerate().find(|(j, q)| {
                    !q.kind.is_transfer() && (r.start[d][*j] - r.start[d][i]).abs() < 1e-9
                });
                if let Some((_, q)) = same {
                    let above = compute.iter().find(|(c, _)| c == col);
                    let want =
                        format!("{}{}", if q.kind == PassKind::BW { 'X' } else { 'F' }, q.mb);
                    assert_eq!(above.map(|x| x.1.as_str()), Some(want.as_str()), "{tok}");
                }
            }
        }
    }
    // Exactly the link lines of devices 0 and 2.
    assert_eq!(lines.iter().filter(|l| l.starts_with("d2h")).count(), 2);
    assert_eq!(lines.iter().filter(|l| l.starts_with("h2d")).count(), 2);
    // Without transfers: no link lines and no O/L in the legend.
    let (plain, pr) = plain_1f1b(3, 4);
    let pt = text::render(&plain, &pr);
    assert!(!pt.contains("d2h") && !pt.contains("h2d") && !pt.contains("offload"));
}

fn events(v: &Value) -> Vec<&Value> {
    v["traceEvents"].as_array().unwrap().iter().collect()
}

#[test]
fn chrome_trace_puts_transfers_on_host_link_threads() {
    let (s, r) = offloaded(3, 6, &[true, true, false]);
    let comm = vec![0.25; 3];
    let v = export_value(&s, &r, &comm, &TraceOptions::default()).unwrap();
    let ev = events(&v);
    let names: HashMap<(u64, u64), String> = ev
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap()),
                e["args"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let slices: Vec<&&Value> = ev.iter().filter(|e| e["ph"] == "X").collect();
    let at = positions(&s);
    let mut per_track: HashMap<(u64, u64), Vec<(f64, f64)>> = HashMap::new();
    let mut link = 0;
    for e in &slices {
        let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        let thread = &names[&key];
        let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
        per_track.entry(key).or_default().push((ts, ts + dur));
        let name = e["name"].as_str().unwrap();
        let Ok(ps) = Pass::parse(name) else {
            assert!(thread.starts_with("communication"), "{name} on {thread}");
            continue;
        };
        let (d, i) = at[&ps];
        assert_eq!(key.0, d as u64 + 1);
        match ps.kind {
            PassKind::O => assert_eq!(thread, "host link (offload, D2H)"),
            PassKind::L => assert_eq!(thread, "host link (load, H2D)"),
            _ => assert_eq!(thread, "compute", "{ps}"),
        }
        if ps.kind.is_transfer() {
            link += 1;
            assert!((ts - 1000.0 * r.start[d][i]).abs() < 1e-6);
            assert!((ts + dur - 1000.0 * r.end[d][i]).abs() < 1e-6);
        }
    }
    let n_transfers = s
        .lists
        .iter()
        .flatten()
        .filter(|q| q.kind.is_transfer())
        .count();
    assert_eq!(link, n_transfers);
    // Host-link threads exist exactly on devices 0 and 1, distinct from compute and p2p.
    for d in 0..3u64 {
        let host: Vec<_> = names
            .iter()
            .filter(|((p, _), n)| *p == d + 1 && n.starts_with("host link"))
            .collect();
        assert_eq!(host.len(), if d < 2 { 2 } else { 0 }, "device {d}");
    }
    // Every track properly nested: one transfer at a time per direction, no overlap anywhere.
    for (key, spans) in per_track.iter_mut() {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1 - 1e-6, "{key:?}: {w:?}");
        }
    }
    // The p2p transfers are the simulator's count and never an offload or a load.
    let ts = transfers(&s, &r, &comm).unwrap();
    assert_eq!(ts.len() as u64, r.p2p_transfers);
    assert!(ts
        .iter()
        .all(|t| !t.producer.kind.is_transfer() && !t.consumer.kind.is_transfer()));
    let comm_slices = slices.iter().filter(|e| e["cat"] == "p2p").count();
    assert_eq!(comm_slices as u64, 2 * r.p2p_transfers);
}

#[test]
fn html_report_draws_lanes_and_the_without_curve_per_entry() {
    let costs = costs();
    let (o, or) = offloaded(2, 4, &[true, true]);
    let (p, pr) = plain_1f1b(2, 4);
    let base = baseline(2, 4, &costs).unwrap();
    let os = summarize(&o, &or, &costs, base).unwrap();
    let ps = summarize(&p, &pr, &costs, base).unwrap();
    let without = memory_without(&o, &costs).unwrap();
    let rows = Vec::new();
    let rep = Report {
        title: "offload".into(),
        subtitle: "default costs".into(),
        rows: &rows,
        entries: vec![
            Entry {
                schedule: &o,
                result: &or,
                summary: &os,
                baseline_memory: without.as_deref(),
            },
            Entry {
                schedule: &p,
                result: &pr,
                summary: &ps,
                baseline_memory: None,
            },
        ],
        baseline_peak: Some(base.0),
        width: 700.0,
    };
    let html = report(&rep).unwrap();
    assert_eq!(
        html.matches("<rect class=\"pass ").count(),
        o.num_passes() + p.num_passes()
    );
    let n_links = o
        .lists
        .iter()
        .flatten()
        .filter(|q| q.kind.is_transfer())
        .count();
    assert_eq!(html.matches(" link\" x=").count(), n_links);
    assert_eq!(html.matches("<rect class=\"link-lane\"").count(), 2);
    assert_eq!(html.matches("class=\"mem-without\"").count(), 2);
    assert_eq!(html.matches("offloaded (O/L on the host link)").count(), 1);
    assert!(html.contains("8 offloaded (O/L on the host link)"));
}
