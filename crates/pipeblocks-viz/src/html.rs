//! One self-contained HTML page comparing schedules: the comparison table, then each
//! schedule's timeline and memory picture (inline SVG from [`crate::svg`]).
//!
//! The page loads nothing from the network: styles and a small script are inline. Hovering a
//! pass shows its details (kind, stage, chunk, microbatch, start, end, device) and highlights
//! the same microbatch everywhere in that picture; without scripts the SVG `<title>` tooltips
//! still work. When the script has run, `<body>` carries `data-boxes` with the number of pass
//! boxes it found, which the end-to-end test reads back from the browser's DOM.
//!
//! Overlapped pairs are drawn as in [`crate::svg`] (one outlined box, forward above, backward
//! below); each half stays a pass box of its own, so hovering either names both passes and
//! lights up its own microbatch. A schedule with pairs says how many under its heading.
//!
//! Offload and load-back transfers (O, L) are drawn as in [`crate::svg`], in a host-link lane
//! under their device's row; they are pass boxes too (hover, highlight and the box count include
//! them), and a schedule with offloads says how many under its heading. An entry's
//! [`Entry::baseline_memory`] adds the dashed "without offload/recompute" memory curve.

use std::fmt::Write as _;

use pipeblocks_core::compare::{Row, Summary};
use pipeblocks_core::{PassKind, Schedule, SimResult};

use crate::common::{escape, num};
use crate::svg::{render, SvgOptions};
use crate::VizError;

/// One schedule of the report.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// The schedule.
    pub schedule: &'a Schedule,
    /// Its simulation.
    pub result: &'a SimResult,
    /// Its summary (as in the comparison table).
    pub summary: &'a Summary,
    /// Activation memory of the same schedule with every O, L and R pass removed, simulated
    /// under the same costs (one curve per device, as in [`SimResult::memory`]): drawn dashed
    /// in its memory strips as "without offload/recompute" when the schedule has such passes
    /// ([`SvgOptions::baseline_memory`]). `None` draws no such curve.
    pub baseline_memory: Option<&'a [Vec<(f64, f64)>]>,
}

/// What the report shows.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// Page heading, e.g. `Pipeline schedules for p=4, m=8`.
    pub title: String,
    /// One line under it, e.g. the costs used.
    pub subtitle: String,
    /// The comparison rows, including schedules that do not apply.
    pub rows: &'a [Row],
    /// The schedules to draw, in order.
    pub entries: Vec<Entry<'a>>,
    /// 1F1B's largest peak, for the memory pictures.
    pub baseline_peak: Option<f64>,
    /// Width of each picture's time axis, in pixels.
    pub width: f64,
}

const STYLE: &str = r#"
body{font-family:"DejaVu Sans","Liberation Sans",Arial,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 6px}
p.sub{margin:0 0 16px;color:#555}
table.cmp{border-collapse:collapse;font-size:13px}
table.cmp th,table.cmp td{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}
table.cmp th:first-child,table.cmp td:first-child,table.cmp td.pl,table.cmp th.pl{text-align:left}
table.cmp tr.best td{font-weight:bold}
table.cmp tr.na td{color:#888;font-style:italic}
table.cmp thead th{background:#f0f0f0}
.fig{overflow-x:auto;border:1px solid #e4e4e4;padding:4px;margin-bottom:8px}
.fig svg{display:block;max-width:100%;height:auto}
.focus rect.pass:not(.hl){opacity:.3}
rect.pass.hl{stroke:#000;stroke-width:1}
#pb-tip{position:fixed;pointer-events:none;background:#222;color:#fff;font-size:12px;padding:5px 8px;border-radius:4px;white-space:pre;display:none;z-index:10}
p.note{color:#666;font-size:12px}
"#;

const SCRIPT: &str = r#"
(function(){
  var tip=document.getElementById('pb-tip');
  var boxes=document.querySelectorAll('rect.pass');
  for(var i=0;i<boxes.length;i++){
    var b=boxes[i], t=b.querySelector('title');
    if(t){b.setAttribute('data-tip',t.textContent);t.parentNode.removeChild(t);}
  }
  var current=null;
  function clear(){
    if(!current)return;
    var svg=current.ownerSVGElement;
    svg.classList.remove('focus');
    var hl=svg.querySelectorAll('rect.pass.hl');
    for(var i=0;i<hl.length;i++)hl[i].classList.remove('hl');
    current=null;tip.style.display='none';
  }
  document.addEventListener('mouseover',function(e){
    var b=e.target;
    if(!(b instanceof Element)||!b.classList.contains('pass')){clear();return;}
    if(b===current)return;
    clear();current=b;
    var svg=b.ownerSVGElement;svg.classList.add('focus');
    var same=svg.querySelectorAll('rect.pass[data-mb="'+b.getAttribute('data-mb')+'"]');
    for(var i=0;i<same.length;i++)same[i].classList.add('hl');
    var d=b.dataset;
    tip.textContent=(b.getAttribute('data-tip')||'')+'\nduration '+(+(d.end-d.start).toFixed(3));
    tip.style.display='block';
  });
  document.addEventListener('mousemove',function(e){
    if(current){tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+14)+'px';}
  });
  document.body.setAttribute('data-boxes',String(boxes.length));
  var st=document.getElementById('pb-status');
  if(st)st.textContent=boxes.length+' passes drawn; hover one for details, the same microbatch lights up.';
})();
"#;

/// Turns a schedule name into a safe HTML id.
fn anchor(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("s-{s}")
}

/// ` (N overlapped pairs)` for a schedule with pairs, nothing otherwise.
fn pairs_note(s: &Schedule) -> String {
    match s.pairs.len() {
        0 => String::new(),
        1 => " (1 overlapped pair)".into(),
        n => format!(" ({n} overlapped pairs)"),
    }
}

/// ` · N offloaded (O/L on the host link)` for a schedule with offloads, nothing otherwise.
fn offload_note(s: &Schedule) -> String {
    match s
        .lists
        .iter()
        .flatten()
        .filter(|q| q.kind == PassKind::O)
        .count()
    {
        0 => String::new(),
        n => format!(" · {n} offloaded (O/L on the host link)"),
    }
}

/// Renders the report as one HTML page.
pub fn report(rep: &Report) -> Result<String, VizError> {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n<p class=\"sub\">{}</p>\n",
        escape(&rep.title),
        escape(&rep.title),
        escape(&rep.subtitle)
    );
    let best = rep
        .rows
        .iter()
        .filter_map(|r| match r {
            Row::Ok(s) => Some(s.makespan),
            Row::NotApplicable { .. } => None,
        })
        .fold(f64::INFINITY, f64::min);
    o.push_str("<table class=\"cmp\">\n<thead><tr><th>schedule</th><th class=\"pl\">placement</th><th>makespan</th><th>bubble</th><th>peak (units)</th><th>peak / 1F1B</th><th>p2p / 1F1B</th></tr></thead>\n<tbody>\n");
    let drawn: Vec<&str> = rep
        .entries
        .iter()
        .map(|e| e.schedule.name.as_str())
        .collect();
    for r in rep.rows {
        match r {
            Row::Ok(s) => {
                let name = if drawn.contains(&s.schedule.as_str()) {
                    format!(
                        "<a href=\"#{}\">{}</a>",
                        anchor(&s.schedule),
                        escape(&s.schedule)
                    )
                } else {
                    escape(&s.schedule)
                };
                let class = if (s.makespan - best).abs() <= 1e-9 * best.max(1.0) {
                    " class=\"best\""
                } else {
                    ""
                };
                let _ = writeln!(
                    o,
                    "<tr{class}><td>{name}</td><td class=\"pl\">{}</td><td>{:.3}</td><td>{:.1}%</td><td>{}</td><td>{:.2}×</td><td>{:.2}×</td></tr>",
                    escape(&s.placement),
                    s.makespan,
                    100.0 * s.bubble_rate,
                    num(s.max_peak_activation),
                    s.peak_vs_1f1b,
                    s.p2p_vs_1f1b
                );
            }
            Row::NotApplicable { schedule, reason } => {
                let _ = writeln!(
                    o,
                    "<tr class=\"na\"><td>{}</td><td class=\"pl\" colspan=\"6\">not applicable: {}</td></tr>",
                    escape(schedule),
                    escape(reason)
                );
            }
        }
    }
    o.push_str("</tbody>\n</table>\n<p class=\"note\">Bold: shortest makespan. Bubble: idle share of all devices. Peak: the largest per-device activation, in units of one microbatch's activation on one 1F1B stage.</p>\n<p class=\"note\" id=\"pb-status\"></p>\n");
    for (i, e) in rep.entries.iter().enumerate() {
        let opts = SvgOptions {
            width: rep.width,
            id_prefix: format!("pb{i}"),
            baseline_peak: rep.baseline_peak,
            memory: true,
            baseline_memory: e.baseline_memory.map(<[_]>::to_vec),
        };
        let svg = render(e.schedule, e.result, &opts)?;
        let _ = write!(
            o,
            "<section id=\"{}\">\n<h2>{}</h2>\n<p class=\"sub\">{} placement · {} stages · {} passes{}{} · makespan {:.3} · bubble {:.1}% · peak {} units ({:.2}× 1F1B) · {} p2p transfers</p>\n<div class=\"fig\">\n{svg}</div>\n</section>\n",
            anchor(&e.schedule.name),
            escape(&e.schedule.name),
            escape(&e.summary.placement),
            e.summary.stages,
            e.summary.passes,
            pairs_note(e.schedule),
            offload_note(e.schedule),
            e.summary.makespan,
            100.0 * e.summary.bubble_rate,
            num(e.summary.max_peak_activation),
            e.summary.peak_vs_1f1b,
            e.summary.p2p_transfers
        );
    }
    let _ = write!(
        o,
        "<div id=\"pb-tip\"></div>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    );
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeblocks_core::compare::{baseline, compare, summarize};
    use pipeblocks_core::{generate, Params};
    use pipeblocks_core::{simulate, StageCosts};

    #[test]
    fn one_section_per_schedule_with_its_boxes_and_the_whole_table() {
        let prm = Params::new(3, 4).unwrap();
        let cfg = StageCosts::default();
        let rows = compare(&prm).unwrap();
        let base = baseline(3, 4, &cfg).unwrap();
        let mut owned = Vec::new();
        for r in &rows {
            if let Row::Ok(s) = r {
                let sch = generate(&s.schedule, &prm).unwrap();
                let res = simulate(&sch, &cfg).unwrap();
                let sum = summarize(&sch, &res, &cfg, base).unwrap();
                owned.push((sch, res, sum));
            }
        }
        let entries = owned
            .iter()
            .map(|(schedule, result, summary)| Entry {
                schedule,
                result,
                summary,
                baseline_memory: None,
            })
            .collect();
        let rep = Report {
            title: "Pipeline schedules for p=3, m=4".into(),
            subtitle: "costs f=1".into(),
            rows: &rows,
            entries,
            baseline_peak: Some(base.0),
            width: 600.0,
        };
        let html = report(&rep).unwrap();
        let passes: usize = owned.iter().map(|(s, _, _)| s.num_passes()).sum();
        assert_eq!(html.matches("<rect class=\"pass ").count(), passes);
        assert_eq!(html.matches("<section id=").count(), owned.len());
        assert_eq!(html.matches("<tr").count(), rows.len() + 1);
        // Self-contained: nothing fetched from elsewhere.
        for bad in ["<link", "src=", "@import", "url(http", "href=\"http"] {
            assert!(!html.contains(bad), "{bad}");
        }
        // The pictures' pattern ids do not collide.
        assert_eq!(html.matches("id=\"pb0-idle\"").count(), 1);
        assert_eq!(html.matches("id=\"pb1-idle\"").count(), 1);
    }
}
