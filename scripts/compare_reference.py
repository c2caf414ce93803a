#!/usr/bin/env python3
"""Compare pipeblocks' schedules with the zero-bubble authors' public generators.

The reference is sail-sg/zero-bubble-pipeline-parallelism, checked out by the user; its scheduler
modules are imported from that checkout (nothing of it is copied here). Megatron and torch are not
needed: the package path is shimmed and the two third-party names the scheduler files import at
module level (torch, pulp) get tiny stand-ins when they are not installed.

Every schedule, the reference's and ours, is judged by one evaluator: `pipeblocks simulate`.
Each reference schedule is exported as a pipeblocks JSON schedule (its per-device order, nothing
else), simulated under the same costs, and compared with pipeblocks' same-named schedule and with
`pipeblocks auto --memory U`, U being the reference schedule's own simulated peak. As a cross-check,
the time each reference generator reports for its own schedule is compared with the simulated one.

Usage: scripts/compare_reference.py --reference ZB_CHECKOUT [--quick] [--json OUT] [--markdown]
See docs/reference-comparison.md.
"""

import argparse
import contextlib
import importlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import types

SCHED_REL = os.path.join("megatron", "core", "pipeline_parallel", "zerobubble", "scheduler")
SCHED_PKG = "megatron.core.pipeline_parallel.zerobubble.scheduler"
NEEDED = ["graph.py", "zbv_greedy.py", "zbv.py", "zb.py", "v_auto_schedule.py"]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIE_REL = 1e-9
MEM_EPS = 1e-9

# Reference schedules: label -> (pipeblocks' same-named schedule or None, placement)
SCHEDULES = [
    ("V-Min", "v-min", "v-shape"),
    ("V-Half", "v-half", "v-shape"),
    ("ZB-V", "zb-v", "v-shape"),
    ("ZB-H1", "zb-h1", "sequential"),
    ("ZB-H2", "zb-h2", "sequential"),
    ("V-auto 0.5x", None, "v-shape"),
    ("V-auto 1x", None, "v-shape"),
]


class UsageError(Exception):
    pass


class RunFailure(Exception):
    pass


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Loading the reference without megatron or torch


def load_reference(root):
    if not root:
        raise UsageError("no reference checkout given: pass --reference DIR (or set ZB_REFERENCE) "
                         "pointing at a clone of https://github.com/sail-sg/zero-bubble-pipeline-parallelism")
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise UsageError(f"reference path {root} is not a directory; clone "
                         "https://github.com/sail-sg/zero-bubble-pipeline-parallelism and pass its path")
    sched_dir = os.path.join(root, SCHED_REL)
    missing = [f for f in NEEDED if not os.path.isfile(os.path.join(sched_dir, f))]
    if missing:
        raise UsageError(f"reference path {root} lacks {', '.join(os.path.join(SCHED_REL, f) for f in missing)}; "
                         "is it a checkout of sail-sg/zero-bubble-pipeline-parallelism?")
    # Namespace stand-ins for the megatron packages: only the scheduler directory is on a __path__,
    # so `import megatron.core....scheduler.graph` loads graph.py from the checkout and nothing else
    # of megatron (its __init__ files pull in torch, apex and the whole training stack) is executed.
    parts = SCHED_PKG.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        mod = types.ModuleType(name)
        mod.__path__ = [sched_dir] if i == len(parts) else []
        sys.modules[name] = mod
    # zb.py and v_auto_schedule.py import torch and pulp at module level. zb.py uses torch only
    # as a dataclass annotation and pulp.value() on plain numbers in create_scheduled_nodes; the
    # stand-ins below cover exactly that and are used only when the real packages are absent.
    try:
        import torch  # noqa: F401
    except ImportError:
        fake = types.ModuleType("torch")
        fake.Tensor = object
        sys.modules["torch"] = fake
    try:
        import pulp  # noqa: F401
    except ImportError:
        fake = types.ModuleType("pulp")
        fake.value = lambda x: x
        sys.modules["pulp"] = fake
    mods = {}
    for name in ["graph", "zbv_greedy", "zbv", "zb", "v_auto_schedule"]:
        try:
            mods[name] = importlib.import_module(f"{SCHED_PKG}.{name}")
        except Exception as e:  # a checkout whose files no longer import this way
            raise UsageError(f"cannot import {SCHED_REL}/{name}.py from {root}: {e!r}")
    for name, attr in [("zbv_greedy", "PipelineGraph"), ("zbv", "PipelineGraph"), ("zb", "initial_solution"),
                       ("zb", "create_scheduled_nodes"), ("v_auto_schedule", "schedule")]:
        if not hasattr(mods[name], attr):
            raise UsageError(f"{SCHED_REL}/{name}.py in {root} has no {attr}; unsupported reference version")
    return mods, root


def reference_commit(root):
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


# ---------------------------------------------------------------------------------------------
# Driving the reference generators. Each returns (lists, reported_span): lists[d] is device d's
# pass order as pipeblocks pass names; reported_span is the step time the generator itself
# computes, max over devices of (end of its last pass - start of its first F).


def v_stage(p, d, chunk):
    """Global stage of chunk `chunk` on device d in the V-shape placement."""
    return d if chunk == 0 else 2 * p - 1 - d


def ref_zbv_greedy(mods, mem_config, p, m, f, b, w, c):
    g = mods["zbv_greedy"].PipelineGraph(p, m, mem_config, f, b, w, c)
    pattern = {"min": g.stable_pattern_v_min, "half": g.stable_pattern_v_half}[mem_config](p)
    # what PipelineGraph.create_schedule does, minus the megatron node objects
    max_time, _start, order = g.schedule_from_pattern(pattern, m, [f, f, b, b, w, w], do_reorder=True)
    # type index t: 0 F chunk0, 1 F chunk1, 2 B chunk1, 3 B chunk0, 4 W of chunk1, 5 W of chunk0
    kinds = "FFBBWW"
    chunk_of = [0, 1, 1, 0, 1, 0]
    lists = [[f"{kinds[t]}{v_stage(p, d, chunk_of[t])}.{mb}" for t, mb in order[d]] for d in range(p)]
    return lists, float(max_time)


def ref_zbv(mods, p, m, f, b, w, c):
    # memory in chunk activations: F +1, W -1 (B frees nothing, as pipeblocks' default model);
    # the default limit is 2p chunk activations = 1F1B's peak
    g = mods["zbv"].PipelineGraph(p, m, f, b, w, c, f_mem=1, b_mem=0, w_mem=-1, max_mem=None)
    best = None
    for fill_b in (True, False):  # the four variants PipelineGraph.create_schedule tries
        for fill_f in (True, False):
            s, _e, bubble = g.try_v_schedule(fill_b=fill_b, fill_f=fill_f)
            if best is None or bubble < best[1]:
                best = (s, bubble)
    sched, bubble = best
    kinds = "FBW"
    lists = []
    for d in range(p):
        row = []
        for cat, ch, mb in sched[d]:
            chunk = ch if cat == 0 else 1 - ch  # zbv.py numbers B/W chunks from the V's far end
            row.append(f"{kinds[cat]}{v_stage(p, d, chunk)}.{mb}")
        lists.append(row)
    return lists, float(2 * m * (f + b + w) + bubble)


def ref_zb(mods, p, m, f, b, w, c, max_mem):
    zb = mods["zb"]
    cfg = zb.GraphConfig(cost_f=[float(f)] * p, cost_b=[float(b)] * p, cost_w=[float(w)] * p,
                         cost_comm=float(c), mem_f=[1.0] * p, mem_b=[0.0] * p, mem_w=[-1.0] * p,
                         max_mem=[float(max_mem)] * p, print_scaling=1, n_stages=p, n_micro=m)
    graph = zb.Graph.build_graph(p, m, cfg)
    best_time, _order, complete_time = zb.initial_solution(graph, print_result=False)
    nodes = zb.create_scheduled_nodes(graph, complete_time)
    lists = [[f"{n.type.value}{d}.{n.microbatch}" for n in nodes[d]] for d in range(p)]
    return lists, float(best_time)


def ref_v_auto(mods, p, m, f, b, w, c, max_mem):
    with contextlib.redirect_stdout(io.StringIO()):  # the search prints its memory/bubble table
        try:
            res = mods["v_auto_schedule"].schedule(p, m, (f, b, w, c), max_mem)
        except TypeError as e:  # best_schedule stayed None: no block fits
            raise NoReferenceSchedule(f"v_auto_schedule found no schedule ({e})")
    lists, span = [], 0.0
    for d, row in enumerate(res):
        lists.append([f"{n.type}{v_stage(p, d, 1 if n.chunk else 0)}.{n.minibatch}" for n in row])
        span = max(span, max(n.completion_time for n in row) - min(n.start_time for n in row))
    return lists, float(span)


class NoReferenceSchedule(Exception):
    pass


def run_reference(mods, label, p, m, f, b, w, c):
    if label == "V-Min":
        return ref_zbv_greedy(mods, "min", p, m, f, b, w, c)
    if label == "V-Half":
        return ref_zbv_greedy(mods, "half", p, m, f, b, w, c)
    if label == "ZB-V":
        return ref_zbv(mods, p, m, f, b, w, c)
    if label == "ZB-H1":
        return ref_zb(mods, p, m, f, b, w, c, p)
    if label == "ZB-H2":
        return ref_zb(mods, p, m, f, b, w, c, 2 * p)
    if label == "V-auto 0.5x":
        return ref_v_auto(mods, p, m, f, b, w, c, p)
    if label == "V-auto 1x":
        return ref_v_auto(mods, p, m, f, b, w, c, 2 * p)
    raise ValueError(label)


# ---------------------------------------------------------------------------------------------
# pipeblocks


class Pipeblocks:
    def __init__(self, binary, tmpdir):
        self.binary = binary
        self.tmpdir = tmpdir
        self.count = 0

    def _run(self, args, timeout=900):
        proc = subprocess.run([self.binary] + args, capture_output=True, text=True, timeout=timeout)
        return proc.returncode, proc.stdout, proc.stderr

    def simulate(self, args, cost):
        rc, out, err = self._run(["simulate"] + args + ["--cost", cost, "--json"])
        if rc != 0:
            raise RunFailure(f"pipeblocks simulate {' '.join(args)} --cost {cost} exited {rc}: {err.strip()}")
        return json.loads(out)

    def trace_spans(self, path, cost, p):
        """Per-device (first start, last end) of a schedule file, from the Chrome trace."""
        rc, out, err = self._run(["simulate", "--from", path, "--cost", cost, "--format", "chrome-trace"])
        if rc != 0:
            raise RunFailure(f"pipeblocks simulate --from {path} --format chrome-trace exited {rc}: {err.strip()}")
        first = [None] * p
        last = [None] * p
        for ev in json.loads(out)["traceEvents"]:
            a = ev.get("args") or {}
            if ev.get("ph") != "X" or ev.get("tid") != 1 or "start" not in a:
                continue
            d = ev["pid"] - 1
            first[d] = a["start"] if first[d] is None else min(first[d], a["start"])
            last[d] = a["end"] if last[d] is None else max(last[d], a["end"])
        return first, last

    def write_schedule(self, name, p, m, placement, lists):
        self.count += 1
        path = os.path.join(self.tmpdir, f"ref{self.count}.json")
        doc = {
            "format": "pipeblocks-schedule",
            "version": 1,
            "name": name,
            "devices": p,
            "stages": 2 * p if placement == "v-shape" else p,
            "microbatches": m,
            "placement": {"kind": placement},
            "lists": lists,
        }
        with open(path, "w") as fh:
            json.dump(doc, fh)
        return path


# ---------------------------------------------------------------------------------------------
# The grid


P_POOL = [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 16, 24, 32]
P_WEIGHT = [3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 1, 1]
QUICK_P = [2, 3, 4, 5, 6, 9, 10, 12]


def make_grid(n, seed, quick):
    rng = random.Random(seed)
    if quick:
        ps = list(QUICK_P)
    else:
        ps = list(P_POOL)  # every p at least once
        while len(ps) < n:
            ps.append(rng.choices(P_POOL, weights=P_WEIGHT)[0])
        ps = ps[:n]
        rng.shuffle(ps)
    points = []
    for p in ps:
        r = rng.random()
        hi = 3 * p if quick else 8 * p
        m = p if r < 0.15 else hi if r < 0.3 else rng.randint(p, hi)
        while True:
            f, b, w = (10 * rng.randint(5, 20) for _ in range(3))
            if max(f, b, w) <= 2 * min(f, b, w):
                break
        c = 0 if rng.random() < 0.25 else rng.randint(1, f // 5)
        points.append(dict(p=p, m=m, f=f, b=b, w=w, c=c))
    return points


# ---------------------------------------------------------------------------------------------


def norm_time(sim):
    """Makespan over the average busy time per device: 1 / (1 - bubble rate). Equal to the
    makespan up to a constant when placements (and so the work) are the same."""
    return sim["devices"] * sim["makespan"] / sum(sim["busy"])


def verdict(ref_sim, our_sim):
    ratio = norm_time(our_sim) / norm_time(ref_sim)
    if abs(ratio - 1.0) <= TIE_REL:
        t = "TIE"
    elif ratio < 1.0:
        t = "WIN"
    else:
        t = "LOSS"
    if our_sim["max_peak_activation"] > ref_sim["max_peak_activation"] + MEM_EPS:
        return ratio, "MEM-LOSS", t
    return ratio, t, t


def fmt_table(rows, markdown):
    head = ["p", "m", "F", "B", "W", "c", "reference", "ref bubble", "pipeblocks", "our bubble", "ratio",
            "ref peak", "our peak", "verdict"]
    body = []
    for r in rows:
        if r.get("ours") is None:
            body.append([str(r["p"]), str(r["m"]), str(r["f"]), str(r["b"]), str(r["w"]), str(r["c"]), r["schedule"],
                         "-", "-", "-", "-", "-", "-", "no reference schedule"])
            continue
        v = r["verdict"] if r["verdict"] != "MEM-LOSS" else f"MEM-LOSS ({r['time_verdict'].lower()})"
        body.append([str(r["p"]), str(r["m"]), str(r["f"]), str(r["b"]), str(r["w"]), str(r["c"]), r["schedule"],
                     f"{r['ref_bubble']:.4f}", r["ours"], f"{r['our_bubble']:.4f}", f"{r['ratio']:.4f}",
                     f"{r['ref_peak']:g}", f"{r['our_peak']:g}", v])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    out = ["  ".join(h.rjust(wd) for h, wd in zip(head, widths))]
    out += ["  ".join(x.rjust(wd) for x, wd in zip(b, widths)) for b in body]
    return "\n".join(out)


def summarise(rows, markdown):
    groups = {}
    for r in rows:
        if r.get("ours") is None:
            continue
        kind = "auto" if r["ours"].startswith("auto") else "named"
        groups.setdefault((r["schedule"], kind), []).append(r)
    head = ["reference", "pipeblocks", "rows", "win", "tie", "loss", "mem-loss", "worst ratio (ours/ref)"]
    body = []
    for label, _n, _pl in SCHEDULES:
        for kind in ("named", "auto"):
            rs = groups.get((label, kind))
            if not rs:
                continue
            cnt = {k: sum(1 for r in rs if r["verdict"] == k) for k in ("WIN", "TIE", "LOSS", "MEM-LOSS")}
            worst = max(rs, key=lambda r: r["ratio"])
            ours = rs[0]["ours"] if kind == "named" else "auto --memory <ref peak>"
            wdesc = (f"{worst['ratio']:.4f} at p={worst['p']} m={worst['m']} F={worst['f']} B={worst['b']} "
                     f"W={worst['w']} c={worst['c']} ({worst['ref_bubble']:.4f} vs {worst['our_bubble']:.4f})")
            mem = [r for r in rs if r["verdict"] == "MEM-LOSS"]
            if mem:
                wm = max(mem, key=lambda r: r["our_peak"] - r["ref_peak"])
                wdesc += (f"; largest peak excess {wm['our_peak']:g} vs {wm['ref_peak']:g} at p={wm['p']} "
                          f"m={wm['m']}")
            body.append([label, ours, str(len(rs)), str(cnt["WIN"]), str(cnt["TIE"]), str(cnt["LOSS"]),
                         str(cnt["MEM-LOSS"]), wdesc])
    skipped = {}
    for r in rows:
        if r.get("ours") is None:
            skipped[r["schedule"]] = skipped.get(r["schedule"], 0) + 1
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(b) + " |" for b in body]
    else:
        widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head) - 1)]
        lines = ["  ".join(h.ljust(wd) for h, wd in zip(head, widths)) + "  " + head[-1]]
        lines += ["  ".join(x.ljust(wd) for x, wd in zip(b, widths)) + "  " + b[-1] for b in body]
    if skipped and markdown:
        lines.append("")
    for label, n in skipped.items():
        lines.append(f"{'' if not markdown else '- '}{label}: {n} point(s) skipped (reference produced no schedule)")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=os.environ.get("ZB_REFERENCE"),
                    help="checkout of sail-sg/zero-bubble-pipeline-parallelism (default: $ZB_REFERENCE)")
    ap.add_argument("--pipeblocks", default=os.path.join(REPO_ROOT, "target", "release", "pipeblocks"),
                    help="pipeblocks binary (default: target/release/pipeblocks)")
    ap.add_argument("--quick", action="store_true", help="8 small points instead of the full grid")
    ap.add_argument("--points", type=int, default=40, help="grid size without --quick (at least 30; default 40)")
    ap.add_argument("--seed", type=int, default=20240521, help="grid seed (default 20240521)")
    ap.add_argument("--vauto-max-p", type=int, default=8,
                    help="run v_auto_schedule.py's search only for p up to this (it is slow; default 8)")
    ap.add_argument("--json", metavar="OUT", help="write the raw rows as JSON to OUT")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = ap.parse_args()

    try:
        if not args.quick and args.points < 30:
            raise UsageError(f"--points {args.points} is below 30; use --quick for a short run")
        if args.vauto_max_p < 0:
            raise UsageError("--vauto-max-p must be ≥ 0")
        if not (os.path.isfile(args.pipeblocks) and os.access(args.pipeblocks, os.X_OK)):
            raise UsageError(f"pipeblocks binary {args.pipeblocks} not found or not executable; build it with "
                             "`cargo build --release -p pipeblocks-cli` or pass --pipeblocks BIN")
        mods, ref_root = load_reference(args.reference)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    points = make_grid(args.points, args.seed, args.quick)
    rows, crosscheck, failures = [], [], []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="pb-compare-") as tmp:
        pb = Pipeblocks(args.pipeblocks, tmp)
        for i, pt in enumerate(points):
            p, m, f, b, w, c = pt["p"], pt["m"], pt["f"], pt["b"], pt["w"], pt["c"]
            cost = f"f={f},b={b},w={w},c={c}"
            named_cache, auto_cache = {}, {}
            for label, named, placement in SCHEDULES:
                base = dict(pt, schedule=label)
                if label.startswith("V-auto") and p > args.vauto_max_p:
                    continue
                progress(f"[{i + 1}/{len(points)} {time.time() - t0:6.0f}s] p={p} m={m} {cost}: {label}")
                try:
                    try:
                        t1 = time.time()
                        lists, ref_span = run_reference(mods, label, p, m, f, b, w, c)
                        ref_secs = time.time() - t1
                    except NoReferenceSchedule as e:
                        rows.append(dict(base, ours=None, note=str(e)))
                        continue
                    except Exception as e:
                        rows.append(dict(base, ours=None, note=f"reference raised {e!r}"))
                        continue
                    path = pb.write_schedule(f"reference {label}", p, m, placement, lists)
                    ref_sim = pb.simulate(["--from", path], cost)
                    first, last = pb.trace_spans(path, cost, p)
                    sim_span = max(e - s for s, e in zip(first, last))
                    crosscheck.append(dict(pt, schedule=label, reported=ref_span, simulated_span=sim_span,
                                           simulated_makespan=ref_sim["makespan"],
                                           match=abs(ref_span - sim_span) <= 1e-9 * max(1.0, ref_span)))
                    ref_peak = ref_sim["max_peak_activation"]
                    ours = []
                    if named:
                        if named not in named_cache:
                            named_cache[named] = pb.simulate(["-s", named, "-p", str(p), "-m", str(m)], cost)
                        ours.append((named, named_cache[named]))
                    key = f"{ref_peak:.6g}"
                    if key not in auto_cache:
                        auto_cache[key] = pb.simulate(["-s", "auto", "-p", str(p), "-m", str(m), "--memory", key],
                                                      cost)
                    ours.append((f"auto --memory {key}", auto_cache[key]))
                    for name, sim in ours:
                        ratio, v, tv = verdict(ref_sim, sim)
                        rows.append(dict(base, ours=name, ref_seconds=round(ref_secs, 3),
                                         ref_makespan=ref_sim["makespan"], ref_bubble=ref_sim["bubble_rate"],
                                         ref_peak=ref_peak, our_makespan=sim["makespan"],
                                         our_bubble=sim["bubble_rate"], our_peak=sim["max_peak_activation"],
                                         our_placement=sim["placement"], ratio=ratio, verdict=v, time_verdict=tv))
                except (RunFailure, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
                    failures.append(f"p={p} m={m} {cost} {label}: {e}")
                    progress(f"  failed: {e}")

    commit = "unknown"
    try:
        out = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or commit
    except (OSError, subprocess.SubprocessError):
        pass
    header = (f"pipeblocks {commit} vs reference {reference_commit(ref_root)[:12]}; {len(points)} points, "
              f"seed {args.seed}{', quick' if args.quick else ''}; {time.time() - t0:.0f} s")
    print(header)
    print()
    print(fmt_table(rows, args.markdown))
    print()
    print(summarise(rows, args.markdown))
    print()
    bad = [x for x in crosscheck if not x["match"]]
    print(f"cross-check: reference's own step time vs pipeblocks' simulation of the same order "
          f"(max over devices of last end - first start): {len(crosscheck) - len(bad)}/{len(crosscheck)} agree")
    for x in bad:
        print(f"  MISMATCH p={x['p']} m={x['m']} F={x['f']} B={x['b']} W={x['w']} c={x['c']} {x['schedule']}: "
              f"reference {x['reported']:g}, simulated {x['simulated_span']:g}")
    longer = [x for x in crosscheck if x["simulated_makespan"] > x["simulated_span"] + 1e-9]
    gap = max(((x["simulated_makespan"] - x["simulated_span"]) / x["simulated_span"] for x in crosscheck),
              default=0.0)
    print(f"  pipeblocks' makespan (time 0 to the last pass) is longer than that span in {len(longer)} of them, "
          f"by at most {100 * gap:.2f}%: the device that finishes last started late")
    if failures:
        print()
        print(f"{len(failures)} failure(s):")
        for fl in failures:
            print("  " + fl)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(pipeblocks_commit=commit, reference_commit=reference_commit(ref_root), seed=args.seed,
                           quick=args.quick, points=points, rows=rows, crosscheck=crosscheck, failures=failures),
                      fh, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
