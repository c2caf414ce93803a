//! Overlapped pairs (DualPipe's `F&B`) in every renderer: one unit per pair, both passes named,
//! and schedules without pairs unchanged.

use std::collections::{HashMap, HashSet};

use pipeblocks_core::compare::{baseline, summarize};
use pipeblocks_core::registry::registry;
use pipeblocks_core::{generate, simulate, Costs, Params, Schedule, SimResult, StageCosts};
use pipeblocks_viz::chrome_trace::{export, TraceOptions};
use pipeblocks_viz::html::{report, Entry, Report};
use pipeblocks_viz::svg::{render, SvgOptions};
use pipeblocks_viz::text;
use serde_json::Value;

fn costs() -> Costs {
    Costs::parse("f=1,b=1,w=1,overlap=0.5").unwrap()
}

fn sim(name: &str, p: u32, m: u32) -> (Schedule, SimResult) {
    let c = StageCosts::uniform(costs());
    let s = generate(name, &Params::new(p, m).unwrap().with_costs(c.clone())).unwrap();
    let r = simulate(&s, &c).unwrap();
    (s, r)
}

fn dualpipev() -> (Schedule, SimResult) {
    let (s, r) = sim("dualpipev", 4, 10);
    assert!(
        !s.pairs.is_empty(),
        "dualpipev p=4 m=10 has overlapped pairs"
    );
    (s, r)
}

/// Where each pass sits: device and position in its list.
fn positions(s: &Schedule) -> HashMap<String, (usize, usize)> {
    let mut at = HashMap::new();
    for (d, list) in s.lists.iter().enumerate() {
        for (i, ps) in list.iter().enumerate() {
            at.insert(ps.to_string(), (d, i));
        }
    }
    at
}

fn f(n: roxmltree::Node, name: &str) -> f64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap()
}

fn class_is(n: &roxmltree::Node, prefix: &str) -> bool {
    n.attribute("class").is_some_and(|c| c.starts_with(prefix))
}

#[test]
fn svg_draws_one_split_box_per_pair() {
    let (s, r) = dualpipev();
    let svg = render(&s, &r, &SvgOptions::default()).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let root = doc.root_element();
    let (x0, scale) = (f(root, "data-x0"), f(root, "data-scale"));
    let at = positions(&s);
    let pairs: HashSet<String> = s.pairs.iter().map(|[a, b]| format!("{a}+{b}")).collect();

    // One pass box per pass still (hover and the report's counts rely on it) ...
    let passes: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && class_is(n, "pass"))
        .collect();
    assert_eq!(passes.len(), s.num_passes());
    // ... and exactly one outlined box per pair, over the pair's simulated span.
    let outlines: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("pair"))
        .collect();
    assert_eq!(outlines.len(), s.pairs.len());
    let mut drawn = HashSet::new();
    for o in &outlines {
        let (a, b) = (
            o.attribute("data-first").unwrap(),
            o.attribute("data-second").unwrap(),
        );
        let name = format!("{a}+{b}");
        assert!(
            pairs.contains(&name),
            "{name} is not a pair of the schedule"
        );
        assert!(drawn.insert(name.clone()), "{name} drawn twice");
        let (d, i) = at[a];
        assert_eq!(at[b], (d, i + 1), "{name}: halves adjacent");
        assert_eq!(o.attribute("data-device").unwrap(), d.to_string());
        assert!((f(*o, "x") - (x0 + r.start[d][i] * scale)).abs() < 0.01);
        assert!((f(*o, "x") + f(*o, "width") - (x0 + r.end[d][i] * scale)).abs() < 0.02);
        let title = o.children().find(|c| c.has_tag_name("title")).unwrap();
        assert!(title.text().unwrap().contains("overlapped pair"));

        // Its group: the forward in the upper half, the backward in the lower, same span.
        let g = o.parent().unwrap();
        assert_eq!(g.attribute("class"), Some("pair-unit"));
        assert_eq!(g.attribute("data-pair"), Some(name.as_str()));
        let halves: Vec<_> = g.children().filter(|n| class_is(n, "pass")).collect();
        assert_eq!(halves.len(), 2, "{name}");
        let (top, bottom) = (halves[0], halves[1]);
        assert_eq!(top.attribute("data-kind"), Some("F"));
        assert!(matches!(bottom.attribute("data-kind"), Some("B" | "BW")));
        let h = f(*o, "height");
        assert!((f(top, "height") - h / 2.0).abs() < 1e-9);
        assert!((f(bottom, "height") - h / 2.0).abs() < 1e-9);
        assert!((f(top, "y") - f(*o, "y")).abs() < 1e-9);
        assert!((f(bottom, "y") - (f(*o, "y") + h / 2.0)).abs() < 1e-9);
        for half in [top, bottom] {
            assert_eq!(half.attribute("x"), o.attribute("x"));
            assert_eq!(half.attribute("width"), o.attribute("width"));
            let t = half.children().find(|c| c.has_tag_name("title")).unwrap();
            let t = t.text().unwrap();
            assert!(
                t.contains("overlapped pair") && t.contains(a) && t.contains(b),
                "{t}"
            );
        }
    }
    // No two pass boxes on top of each other.
    let mut spots = HashSet::new();
    for b in &passes {
        let key = (
            b.attribute("data-device").unwrap(),
            b.attribute("x").unwrap(),
            b.attribute("y").unwrap(),
        );
        assert!(spots.insert(key), "two boxes at {key:?}");
    }
    assert!(svg.contains("overlapped pair: forward above, backward below"));
}

#[test]
fn chrome_trace_has_one_slice_per_pair_naming_both_passes() {
    let (s, r) = dualpipev();
    let text = export(&s, &r, &[0.1; 8], &TraceOptions::default()).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let compute: Vec<&Value> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["tid"] == 1)
        .collect();
    assert_eq!(compute.len(), s.num_passes() - s.pairs.len());
    let at = positions(&s);
    let mut seen = 0;
    for e in &compute {
        let name = e["name"].as_str().unwrap();
        let d = e["pid"].as_u64().unwrap() as usize - 1;
        let (first, i) = match name.split_once('+') {
            Some((a, b)) => {
                seen += 1;
                assert!(s
                    .pairs
                    .iter()
                    .any(|[x, y]| x.to_string() == a && y.to_string() == b));
                assert_eq!(e["args"]["overlapped"], true);
                assert_eq!(e["args"]["passes"], serde_json::json!([a, b]));
                assert_eq!(e["args"]["forward"]["pass"], a);
                assert_eq!(e["args"]["backward"]["pass"], b);
                assert_eq!(e["cat"].as_str().unwrap().split(',').count(), 2);
                (a, at[a].1)
            }
            None => {
                assert!(e["args"].get("overlapped").is_none());
                (name, at[name].1)
            }
        };
        assert_eq!(at[first].0, d, "{name} on its device");
        assert!((e["ts"].as_f64().unwrap() - 1000.0 * r.start[d][i]).abs() < 1e-6);
        let end = e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap();
        assert!((end - 1000.0 * r.end[d][i]).abs() < 1e-6);
    }
    assert_eq!(seen, s.pairs.len());
    // The compute tracks stay flat: no slice starts inside another.
    let mut by_dev: HashMap<u64, Vec<(f64, f64)>> = HashMap::new();
    for e in &compute {
        let ts = e["ts"].as_f64().unwrap();
        by_dev
            .entry(e["pid"].as_u64().unwrap())
            .or_default()
            .push((ts, ts + e["dur"].as_f64().unwrap()));
    }
    for spans in by_dev.values_mut() {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1 - 1e-6, "stacked slices {w:?}");
        }
    }
}

#[test]
fn text_joins_the_halves_of_a_pair_with_a_plus() {
    let (s, r) = dualpipev();
    let out = text::render(&s, &r);
    assert!(out.lines().nth(1).unwrap().contains("a+b overlapped pair"));
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("dev")).collect();
    assert_eq!(rows.len(), 4);
    let mut joined = 0;
    for (d, row) in rows.iter().enumerate() {
        let toks: Vec<&str> = row.split('|').nth(1).unwrap().split_whitespace().collect();
        let pairs = toks.iter().filter(|t| t.contains('+')).count();
        let singles = toks
            .iter()
            .filter(|t| **t != "." && !t.contains('+'))
            .count();
        assert_eq!(singles + 2 * pairs, s.lists[d].len(), "{row}");
        for t in toks.iter().filter(|t| t.contains('+')) {
            let (a, b) = t.split_once('+').unwrap();
            assert!(a.starts_with(['F', 'f']), "{t}: forward first");
            assert!(b.starts_with(['B', 'b', 'X', 'x']), "{t}: backward second");
        }
        joined += pairs;
    }
    assert_eq!(joined, s.pairs.len());
    // Row 3 (p=4, device 3): `f4+X0` is the pair (4F4;3B0): chunk 1's forward, chunk 0's backward.
    assert!(rows[3].contains(" f4+X0 "), "{}", rows[3]);
}

#[test]
fn report_counts_pairs_and_draws_them_split() {
    let (s, r) = dualpipev();
    let cfg = StageCosts::uniform(costs());
    let base = baseline(4, 10, &cfg).unwrap();
    let sum = summarize(&s, &r, &cfg, base).unwrap();
    let html = report(&Report {
        title: "pairs".into(),
        subtitle: String::new(),
        rows: &[],
        entries: vec![Entry {
            schedule: &s,
            result: &r,
            summary: &sum,
            baseline_memory: None,
        }],
        baseline_peak: Some(base.0),
        width: 900.0,
    })
    .unwrap();
    assert_eq!(html.matches("<rect class=\"pass ").count(), s.num_passes());
    assert_eq!(html.matches("<rect class=\"pair\"").count(), s.pairs.len());
    assert!(html.contains(&format!("({} overlapped pairs)", s.pairs.len())));
}

#[test]
fn schedules_without_pairs_show_no_pair_markup() {
    let c = StageCosts::uniform(costs());
    let prm = Params::new(4, 8).unwrap().with_costs(c.clone());
    for g in registry() {
        let Ok(s) = generate(g.name, &prm) else {
            continue;
        };
        if !s.pairs.is_empty() {
            continue;
        }
        let r = simulate(&s, &c).unwrap();
        let svg = render(&s, &r, &SvgOptions::default()).unwrap();
        assert!(!svg.contains("pair"), "{}", g.name);
        let trace = export(&s, &r, &[], &TraceOptions::default()).unwrap();
        assert!(
            !trace.contains("overlapped") && !trace.contains('+'),
            "{}",
            g.name
        );
        let t = text::render(&s, &r);
        assert!(!t.contains('+') && !t.contains("pair"), "{}", g.name);
    }
}

#[test]
fn text_of_1f1b_is_unchanged() {
    let s = generate("1f1b", &Params::new(4, 8).unwrap()).unwrap();
    let r = simulate(&s, &StageCosts::default()).unwrap();
    // Captured before pairs were drawn.
    let want = "\
1f1b: p=4 S=4 m=8 placement=sequential makespan=33.000 bubble=0.2727
legend: F forward, B input grad, W weight grad, X fused backward; lower case = 2nd chunk, :c = chunk c; . idle
dev   0 | F0 F1 F2 F3 .  .  .  .  .  .  X0 F4 X1 F5 X2 F6 X3 F7 X4 .  X5 .  X6 .  X7
dev   1 | .  F0 F1 F2 .  .  .  .  X0 F3 X1 F4 X2 F5 X3 F6 X4 F7 X5 .  X6 .  X7
dev   2 | .  .  F0 F1 .  .  X0 F2 X1 F3 X2 F4 X3 F5 X4 F6 X5 F7 X6 .  X7
dev   3 | .  .  .  F0 X0 F1 X1 F2 X2 F3 X3 F4 X4 F5 X5 F6 X6 F7 X7
";
    assert_eq!(text::render(&s, &r), want);
}
