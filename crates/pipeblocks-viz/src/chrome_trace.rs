//! Export to the Trace Event JSON format read by `chrome://tracing` and Perfetto.
//!
//! One process per device (`device 0`, `device 1`, ...). In each process a `compute` thread
//! holds the passes as complete (`"X"`) events, and a `communication` thread holds the
//! point-to-point transfers the schedule implies: an F output whose next stage sits on another
//! device, and a B (or BW) input gradient whose previous stage sits on another device. A
//! transfer spans from the end of the producing pass to the earliest time its consumer may start
//! (`end + c`, the p2p latency); it appears as `send` on the producer's device and as `recv` on
//! the consumer's. When transfers on one device overlap (latency longer than the passes), extra
//! `communication (2)`, ... threads keep them properly nested. A counter per device plots its
//! activation memory.
//!
//! Offload and load-back transfers (O, L: a microbatch's activation to host memory and back)
//! run on the device's host link beside its computation, so they are not on the `compute`
//! thread: a device with transfers gets a `host link (offload, D2H)` thread for its O passes
//! and a `host link (load, H2D)` thread for its L passes (each direction runs one transfer at a
//! time, while the two directions may overlap), listed after its communication threads. They
//! are not point-to-point transfers between devices: [`transfers`] leaves them out.
//!
//! An overlapped pair ([`Schedule::pairs`]) is **one** compute slice, named after both passes
//! (`F0.7+BW7.3`), in both kinds' categories (`cat` `F,BW`, so a category filter for either
//! kind keeps it), with `args` `overlapped: true`, `passes` (both names) and `forward` and
//! `backward` (each pass's kind, stage, chunk and microbatch). Why one slice rather than one
//! per half: the device runs the pair as one unit, so both halves have the same start and end,
//! and two identical complete events on one thread are drawn by Perfetto and chrome://tracing
//! as a parent with a child of the same width, which reads as one pass calling the other. Two
//! sub-threads would instead suggest two independent streams and double the busy time a viewer
//! sums per track. One slice keeps the compute track flat (no nesting), its slices' total equal
//! to the device's busy time, and both passes one click away. The transfers stay per pass.
//!
//! Times are the simulator's cost units; the trace format counts microseconds, so one cost unit
//! becomes [`TraceOptions::us_per_unit`] microseconds (1000 by default: read the viewer's
//! milliseconds as cost units).

use std::collections::HashMap;

use pipeblocks_core::{Pass, PassKind, Schedule, SimResult};
use serde_json::{json, Value};

use crate::common::{check, chunks, pair_name, pair_starts};
use crate::VizError;

/// Export settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceOptions {
    /// Microseconds per cost unit in the trace.
    pub us_per_unit: f64,
    /// Add the activation-memory counter of each device.
    pub memory: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            us_per_unit: 1000.0,
            memory: true,
        }
    }
}

/// One point-to-point transfer implied by the schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transfer {
    /// The pass whose output is sent (an F, or the B/BW producing an input gradient).
    pub producer: Pass,
    /// The pass that needs it, on the other device.
    pub consumer: Pass,
    /// Sending device.
    pub from: u32,
    /// Receiving device.
    pub to: u32,
    /// End of the producer: the transfer starts.
    pub start: f64,
    /// `start + latency`: the earliest the consumer may start.
    pub end: f64,
    /// When the consumer actually started in the simulation.
    pub consumer_start: f64,
}

/// The cross-device transfers of `s` as simulated in `r`, with `comm[s]` the latency of the link
/// between stages `s` and `s + 1` (as in [`pipeblocks_core::params::StageTable::comm`]; missing
/// entries count as 0), ordered by start time. Only F outputs and B/BW input gradients cross
/// devices: host-link offloads and loads (O, L) and recomputes (R) produce nothing for another
/// device and are not listed.
pub fn transfers(s: &Schedule, r: &SimResult, comm: &[f64]) -> Result<Vec<Transfer>, VizError> {
    check(s, r)?;
    let mut at: HashMap<Pass, (usize, usize)> = HashMap::with_capacity(s.num_passes());
    for (d, list) in s.lists.iter().enumerate() {
        for (i, ps) in list.iter().enumerate() {
            at.insert(*ps, (d, i));
        }
    }
    let latency = |a: u32, b: u32| {
        let c = comm.get(a.min(b) as usize).copied().unwrap_or(0.0);
        if c.is_finite() && c > 0.0 {
            c
        } else {
            0.0
        }
    };
    let mut out = Vec::new();
    for (d, list) in s.lists.iter().enumerate() {
        for (i, ps) in list.iter().enumerate() {
            let next = match ps.kind {
                PassKind::F if ps.stage + 1 < s.stages => Some(ps.stage + 1),
                PassKind::B | PassKind::BW if ps.stage > 0 => Some(ps.stage - 1),
                _ => None,
            };
            let Some(ns) = next else { continue };
            let to = s.device_of(ns);
            if to as usize == d {
                continue;
            }
            let consumer = if ps.kind == PassKind::F {
                Some(Pass::f(ns, ps.mb))
            } else {
                [PassKind::B, PassKind::BW]
                    .into_iter()
                    .map(|k| Pass::new(k, ns, ps.mb))
                    .find(|c| at.contains_key(c))
            };
            let Some(consumer) = consumer else { continue };
            let Some(&(cd, ci)) = at.get(&consumer) else {
                continue;
            };
            let start = r.end[d][i];
            out.push(Transfer {
                producer: *ps,
                consumer,
                from: d as u32,
                to,
                start,
                end: start + latency(ps.stage, ns),
                consumer_start: r.start[cd][ci],
            });
        }
    }
    out.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.from.cmp(&b.from)));
    Ok(out)
}

/// Thread id of the compute track.
const COMPUTE_TID: u32 = 1;
/// Thread id of the first communication track.
const COMM_TID: u32 = 2;

/// Name of the host-link thread of a transfer kind (O: offload, L: load back).
fn link_thread(kind: PassKind) -> &'static str {
    if kind == PassKind::O {
        "host link (offload, D2H)"
    } else {
        "host link (load, H2D)"
    }
}

/// Exports `s` as simulated in `r` (`comm`: latency of each link, as in [`transfers`]) as Trace
/// Event JSON: one compute slice per computing pass, or per overlapped pair, and one host-link
/// slice per offload or load back (see the module doc). Events are written one at a time, so
/// memory stays near the output's size.
pub fn export(
    s: &Schedule,
    r: &SimResult,
    comm: &[f64],
    opts: &TraceOptions,
) -> Result<String, VizError> {
    check(s, r)?;
    if s.num_passes() > crate::MAX_TRACE_PASSES {
        return Err(VizError::TooLarge {
            what: "a Chrome trace",
            schedule: s.name.clone(),
            passes: s.num_passes(),
            limit: crate::MAX_TRACE_PASSES,
            hint: "trace fewer microbatches (the steady state repeats)",
        });
    }
    let moves = transfers(s, r, comm)?;
    let k = if opts.us_per_unit.is_finite() && opts.us_per_unit > 0.0 {
        opts.us_per_unit
    } else {
        1000.0
    };
    let us = |t: f64| t * k;
    let pid = |d: u32| d + 1;
    let (chunk_of, _) = chunks(s);
    let mut out = Events::with_capacity(600 * s.num_passes() + 4096);

    // Communication lanes: per device, the end time of each lane so far. The events are
    // written to their own buffer now (the lanes they need are named before them).
    let mut lanes: Vec<Vec<f64>> = vec![Vec::new(); s.devices as usize];
    let mut comm_events = Events::with_capacity(2 * 300 * moves.len());
    for t in &moves {
        for (dev, dir, other) in [(t.from, "send", t.to), (t.to, "recv", t.from)] {
            let dl = &mut lanes[dev as usize];
            let lane = match dl.iter().position(|&e| e <= t.start + 1e-12) {
                Some(l) => l,
                None => {
                    dl.push(f64::NEG_INFINITY);
                    dl.len() - 1
                }
            };
            dl[lane] = t.end;
            let arrow = if dir == "send" { "→" } else { "←" };
            comm_events.push(&json!({
                "ph": "X",
                "name": format!("{dir} {} {arrow} dev {other}", t.producer),
                "cat": "p2p",
                "pid": pid(dev),
                "tid": COMM_TID + lane as u32,
                "ts": us(t.start),
                "dur": us(t.end - t.start),
                "args": {
                    "producer": t.producer.to_string(),
                    "consumer": t.consumer.to_string(),
                    "from_device": t.from,
                    "to_device": t.to,
                    "consumer_start": t.consumer_start,
                },
            }));
        }
    }

    for d in 0..s.devices {
        out.push(&json!({"ph": "M", "name": "process_name", "pid": pid(d), "args": {"name": format!("device {d}")}}));
        out.push(&json!({"ph": "M", "name": "process_sort_index", "pid": pid(d), "args": {"sort_index": d}}));
        out.push(&json!({"ph": "M", "name": "thread_name", "pid": pid(d), "tid": COMPUTE_TID, "args": {"name": "compute"}}));
        out.push(&json!({"ph": "M", "name": "thread_sort_index", "pid": pid(d), "tid": COMPUTE_TID, "args": {"sort_index": 0}}));
        let n = lanes[d as usize].len().max(1);
        for lane in 0..n {
            let name = if lane == 0 {
                "communication".to_string()
            } else {
                format!("communication ({})", lane + 1)
            };
            out.push(&json!({"ph": "M", "name": "thread_name", "pid": pid(d), "tid": COMM_TID + lane as u32, "args": {"name": name}}));
            out.push(&json!({"ph": "M", "name": "thread_sort_index", "pid": pid(d), "tid": COMM_TID + lane as u32, "args": {"sort_index": 1 + lane}}));
        }
        for (k, kind) in [PassKind::O, PassKind::L].into_iter().enumerate() {
            if s.lists[d as usize].iter().any(|q| q.kind == kind) {
                let tid = COMM_TID + (n + k) as u32;
                out.push(&json!({"ph": "M", "name": "thread_name", "pid": pid(d), "tid": tid, "args": {"name": link_thread(kind)}}));
                out.push(&json!({"ph": "M", "name": "thread_sort_index", "pid": pid(d), "tid": tid, "args": {"sort_index": 1 + n + k}}));
            }
        }
    }
    let starts = pair_starts(s);
    let pass_args = |ps: &Pass| {
        json!({
            "pass": ps.to_string(),
            "kind": ps.kind.as_str(),
            "stage": ps.stage,
            "chunk": chunk_of[ps.stage as usize],
            "microbatch": ps.mb,
        })
    };
    // One pass as a slice on thread `tid`; a transfer's arguments add its direction.
    let one_pass =
        |d: usize, i: usize, ps: &Pass, cat: String, tid: u32, direction: Option<&str>| {
            let mut args = json!({
                "kind": ps.kind.as_str(),
                "stage": ps.stage,
                "chunk": chunk_of[ps.stage as usize],
                "microbatch": ps.mb,
                "start": r.start[d][i],
                "end": r.end[d][i],
            });
            if let (Some(dir), Some(map)) = (direction, args.as_object_mut()) {
                map.insert("direction".into(), json!(dir));
            }
            json!({
                "ph": "X",
                "name": ps.to_string(),
                "cat": cat,
                "pid": pid(d as u32),
                "tid": tid,
                "ts": us(r.start[d][i]),
                "dur": us(r.end[d][i] - r.start[d][i]),
                "args": args,
            })
        };
    for (d, list) in s.lists.iter().enumerate() {
        // Host-link threads follow the device's communication threads.
        let link_tid = |kind: PassKind| {
            let n = lanes[d].len().max(1);
            COMM_TID + (n + usize::from(kind == PassKind::L)) as u32
        };
        let mut i = 0;
        while i < list.len() {
            let ps = &list[i];
            if ps.kind.is_transfer() {
                let direction = if ps.kind == PassKind::O {
                    "device to host"
                } else {
                    "host to device"
                };
                let cat = format!("{},host", ps.kind.as_str());
                out.push(&one_pass(d, i, ps, cat, link_tid(ps.kind), Some(direction)));
                i += 1;
                continue;
            }
            if starts[d][i] {
                let second = &list[i + 1];
                out.push(&json!({
                    "ph": "X",
                    "name": pair_name(*ps, *second),
                    "cat": format!("{},{}", ps.kind.as_str(), second.kind.as_str()),
                    "pid": pid(d as u32),
                    "tid": COMPUTE_TID,
                    "ts": us(r.start[d][i]),
                    "dur": us(r.end[d][i] - r.start[d][i]),
                    "args": {
                        "overlapped": true,
                        "passes": [ps.to_string(), second.to_string()],
                        "forward": pass_args(ps),
                        "backward": pass_args(second),
                        "start": r.start[d][i],
                        "end": r.end[d][i],
                    },
                }));
                i += 2;
                continue;
            }
            out.push(&one_pass(
                d,
                i,
                ps,
                ps.kind.as_str().to_string(),
                COMPUTE_TID,
                None,
            ));
            i += 1;
        }
    }
    out.append(comm_events);
    if opts.memory {
        for (d, curve) in r.memory.iter().enumerate() {
            for &(t, v) in curve {
                out.push(&json!({
                    "ph": "C",
                    "name": "activation memory (units)",
                    "pid": pid(d as u32),
                    "ts": us(t),
                    "args": {"units": v},
                }));
            }
        }
    }
    let other = json!({
        "generator": "pipeblocks",
        "schedule": s.name,
        "placement": s.placement.describe(),
        "devices": s.devices,
        "stages": s.stages,
        "microbatches": s.microbatches,
        "makespan": r.makespan,
        "bubble_rate": r.bubble_rate,
        "p2p_latency": comm.iter().cloned().fold(0.0, f64::max),
        "microseconds_per_cost_unit": k,
    });
    let mut text = String::with_capacity(out.text.len() + 512);
    text.push_str("{\"traceEvents\":[");
    text.push_str(&out.text);
    text.push_str("],\"displayTimeUnit\":\"ms\",\"otherData\":");
    text.push_str(&other.to_string());
    text.push_str("}\n");
    Ok(text)
}

/// Like [`export`], as a JSON value (parsed back from the text: for tests and small traces).
pub fn export_value(
    s: &Schedule,
    r: &SimResult,
    comm: &[f64],
    opts: &TraceOptions,
) -> Result<Value, VizError> {
    let text = export(s, r, comm, opts)?;
    // The text is serde_json's own output around literal brackets, so it always parses.
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Trace events written as they are made: a comma-separated list of JSON objects.
struct Events {
    text: String,
}

impl Events {
    fn with_capacity(n: usize) -> Self {
        Events {
            text: String::with_capacity(n),
        }
    }

    fn push(&mut self, v: &Value) {
        if !self.text.is_empty() {
            self.text.push(',');
        }
        // A `Value` always serialises (its map keys are strings, its numbers finite or null).
        self.text.push_str(&v.to_string());
    }

    fn append(&mut self, other: Events) {
        if other.text.is_empty() {
            return;
        }
        if !self.text.is_empty() {
            self.text.push(',');
        }
        self.text.push_str(&other.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeblocks_core::registry::{generate, registry};
    use pipeblocks_core::Params;
    use pipeblocks_core::{simulate, Costs, StageCosts};

    fn events<'a>(v: &'a Value, ph: &str) -> Vec<&'a Value> {
        v["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == ph)
            .collect()
    }

    #[test]
    fn one_process_per_device_and_one_slice_per_pass() {
        let costs = Costs::parse("f=1,b=1,w=1,c=0.25").unwrap();
        // p=4: every registered schedule applies (dualpipe needs an even p).
        for g in registry() {
            let s = generate(
                g.name,
                &Params::new(4, 8)
                    .unwrap()
                    .with_costs(StageCosts::uniform(costs)),
            )
            .unwrap();
            let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
            let text = export(
                &s,
                &r,
                &vec![costs.comm; s.stages as usize],
                &TraceOptions::default(),
            )
            .unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            let procs: Vec<_> = events(&v, "M")
                .into_iter()
                .filter(|e| e["name"] == "process_name")
                .collect();
            assert_eq!(procs.len(), 4);
            let compute: Vec<_> = events(&v, "X")
                .into_iter()
                .filter(|e| e["tid"] == COMPUTE_TID)
                .collect();
            // One slice per pass, a pair's two passes sharing one.
            assert_eq!(compute.len(), s.num_passes() - s.pairs.len(), "{}", g.name);
            for e in &compute {
                let d = e["pid"].as_u64().unwrap() as usize - 1;
                let name = e["name"].as_str().unwrap();
                let name = name.split('+').next().unwrap();
                let i = s.lists[d]
                    .iter()
                    .position(|p| p.to_string() == name)
                    .unwrap();
                assert!((e["ts"].as_f64().unwrap() - 1000.0 * r.start[d][i]).abs() < 1e-6);
                let end = e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap();
                assert!((end - 1000.0 * r.end[d][i]).abs() < 1e-6);
            }
            // Every transfer shows twice: a send and a receive.
            let comm = events(&v, "X").len() - compute.len();
            assert_eq!(comm as u64, 2 * r.p2p_transfers, "{}", g.name);
        }
    }

    #[test]
    fn transfers_run_from_producer_end_and_never_after_the_consumer_starts() {
        let costs = Costs::parse("f=1,b=2,w=1,c=0.5").unwrap();
        for g in registry() {
            let s = generate(
                g.name,
                &Params::new(4, 8)
                    .unwrap()
                    .with_costs(StageCosts::uniform(costs)),
            )
            .unwrap();
            let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
            let ts = transfers(&s, &r, &vec![costs.comm; s.stages as usize]).unwrap();
            assert_eq!(ts.len() as u64, r.p2p_transfers);
            for t in &ts {
                assert_ne!(t.from, t.to);
                assert!((t.end - t.start - 0.5).abs() < 1e-12);
                assert!(t.consumer_start >= t.end - 1e-9, "{t:?}");
                assert_eq!(s.device_of(t.consumer.stage), t.to);
            }
        }
    }

    #[test]
    fn traces_beyond_the_limit_are_refused_and_large_ones_parse() {
        let m = (crate::MAX_TRACE_PASSES / 4 + 1) as u32;
        let s = generate("1f1b", &Params::new(2, m).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        let e = export(&s, &r, &[0.0, 0.0], &TraceOptions::default()).unwrap_err();
        assert!(matches!(e, VizError::TooLarge { .. }), "{e}");
        // Just below: every pass, transfer and counter is there and the text is valid JSON.
        let s = generate("1f1b", &Params::new(2, 20_000).unwrap()).unwrap();
        let r = simulate(&s, &StageCosts::default()).unwrap();
        let v = export_value(&s, &r, &[0.0, 0.0], &TraceOptions::default()).unwrap();
        assert_eq!(
            events(&v, "X").len(),
            s.num_passes() + 2 * r.p2p_transfers as usize
        );
        assert_eq!(v["otherData"]["microbatches"], 20_000);
    }

    #[test]
    fn overlapping_transfers_get_their_own_lane() {
        // Latency 3 is longer than a forward, so consecutive sends overlap.
        let costs = Costs::parse("f=1,b=1,w=1,c=3").unwrap();
        let s = generate(
            "gpipe",
            &Params::new(2, 4)
                .unwrap()
                .with_costs(StageCosts::uniform(costs)),
        )
        .unwrap();
        let r = simulate(&s, &StageCosts::uniform(costs)).unwrap();
        let v = export_value(
            &s,
            &r,
            &vec![costs.comm; s.stages as usize],
            &TraceOptions::default(),
        )
        .unwrap();
        let mut by_track: HashMap<(u64, u64), Vec<(f64, f64)>> = HashMap::new();
        for e in events(&v, "X") {
            let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
            let ts = e["ts"].as_f64().unwrap();
            by_track
                .entry(key)
                .or_default()
                .push((ts, ts + e["dur"].as_f64().unwrap()));
        }
        assert!(by_track.keys().any(|(_, tid)| *tid > COMM_TID as u64));
        for spans in by_track.values_mut() {
            spans.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w in spans.windows(2) {
                assert!(w[1].0 >= w[0].1 - 1e-9, "overlap on one track: {w:?}");
            }
        }
    }
}
