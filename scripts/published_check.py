#!/usr/bin/env python3
"""Check pipeblocks' simulator against published measurements of pipeline schedules.

Source: Qi, Wan, Huang and Lin, "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv:2401.10241v1.
Its experiments give everything a simulator needs: the model and pipeline sizes (Table 3), the
profiled F, B, W and p2p times of every setting (Table 9), the bubble rates the authors computed
from them (Table 5) and the measured throughput of each schedule on A100s (Tables 4 and 12).
The figures are typed in below from the paper; nothing of the authors' code is used unless
`--reference` points at a checkout of sail-sg/zero-bubble-pipeline-parallelism, whose heuristic
then generates the ZB-1p and ZB-2p schedules that the paper ran (pipeblocks simulates them);
without it those two columns are skipped.

Two checks:

1. **Bubble rates** (Table 5): every schedule simulated by `pipeblocks simulate` with the paper's
   profiled costs, its bubble taken in the paper's definition, `1 - m(F+B+W) / (longest device
   span)`, against the paper's figure.
2. **Throughput ratios** (Tables 4 and 12): the predicted speed-up of each schedule over 1F1B in
   the same setting, `period(1F1B) / period(X)`, against the measured samples-per-GPU ratio. The
   period is the training step's steady-state time per iteration (docs/step.md): with a
   synchronous optimizer for 1F1B and interleaved 1F1B (Megatron's), with the per-device optimizer
   (`--optimizer overlap`, the paper's post-validation) for the zero-bubble schedules. The
   optimizer's own time is not published, so it is taken as zero for every schedule; the error
   column shows what that and everything else the profile leaves out cost.

Usage: scripts/published_check.py [--reference ZB_CHECKOUT] [--markdown] [--json OUT]
See docs/published.md.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Table 3: layers, attention heads, hidden size (sequence 1024 throughout).
MODELS = {
    "1.5B": dict(layers=22, heads=24, hidden=2304),
    "6.2B": dict(layers=30, heads=32, hidden=4096),
    "14.6B": dict(layers=46, heads=40, hidden=5120),
    "28.3B": dict(layers=62, heads=48, hidden=6144),
}
SEQ = 1024

# Table 9: profiled T_F, T_B, T_W, T_comm (ms) per setting (model, p, m).
PROFILES = [
    ("1.5B", 8, 24, 18.522, 18.086, 9.337, 0.601),
    ("1.5B", 8, 32, 18.513, 18.086, 9.331, 0.626),
    ("1.5B", 8, 64, 18.546, 18.097, 9.321, 0.762),
    ("6.2B", 8, 24, 29.718, 29.444, 19.927, 0.527),
    ("6.2B", 8, 32, 29.802, 29.428, 19.530, 0.577),
    ("6.2B", 8, 64, 29.935, 29.621, 19.388, 0.535),
    ("14.6B", 16, 48, 11.347, 11.248, 8.132, 0.377),
    ("14.6B", 16, 64, 11.307, 11.254, 8.101, 0.379),
    ("14.6B", 16, 128, 11.325, 11.308, 8.109, 0.378),
    ("28.3B", 32, 96, 10.419, 10.207, 7.715, 0.408),
    ("28.3B", 32, 128, 10.408, 10.204, 7.703, 0.408),
    ("28.3B", 32, 256, 10.402, 10.248, 7.698, 0.460),
]

SCHEDULE_ORDER = ["1F1B", "1F1B-I", "ZB-H1", "ZB-H2", "ZB-1p", "ZB-2p"]
THROUGHPUT_ORDER = ["ZB-2p", "ZB-1p", "1F1B", "1F1B-I"]


# Table 5: bubble rates computed by the authors from Table 9 (in SCHEDULE_ORDER).
PAPER_BUBBLE = {
    ("1.5B", 24): [0.2431, 0.1055, 0.1585, 0.1083, 0.1585, 0.0433],
    ("1.5B", 32): [0.1985, 0.0818, 0.1242, 0.0837, 0.1242, 0.0039],
    ("1.5B", 64): [0.1240, 0.0443, 0.0674, 0.0444, 0.0674, 0.0026],
    ("6.2B", 24): [0.2347, 0.0808, 0.1323, 0.0698, 0.1323, 0.0029],
    ("6.2B", 32): [0.1898, 0.0628, 0.1045, 0.0559, 0.1045, 0.0022],
    ("6.2B", 64): [0.1091, 0.0320, 0.0554, 0.0294, 0.0554, 0.0010],
    ("14.6B", 48): [0.2552, 0.1104, 0.1397, 0.0672, 0.1397, 0.0066],
    ("14.6B", 64): [0.2082, 0.0852, 0.1088, 0.0516, 0.1088, 0.0054],
    ("14.6B", 128): [0.1251, 0.0445, 0.0576, 0.0266, 0.0576, 0.0028],
    ("28.3B", 96): [0.2646, 0.1493, 0.1421, 0.0641, 0.1421, 0.0038],
    ("28.3B", 128): [0.2168, 0.1164, 0.1106, 0.0490, 0.1106, 0.0029],
    ("28.3B", 256): [0.1352, 0.0624, 0.0594, 0.0257, 0.0594, 0.0018],
}
PAPER_BUBBLE = {k: dict(zip(SCHEDULE_ORDER, v)) for k, v in PAPER_BUBBLE.items()}

# Table 4: measured samples per GPU per second (A100 SXM 80G, RoCE between 4 nodes), in
# THROUGHPUT_ORDER.
MEASURED = {
    ("1.5B", 24): [14.5, 12.9, 11.8, 13.1],
    ("1.5B", 32): [14.8, 13.4, 12.5, 13.4],
    ("1.5B", 64): [14.9, 14.2, 13.6, 13.9],
    ("6.2B", 24): [4.32, 3.88, 3.50, 4.01],
    ("6.2B", 32): [4.35, 4.00, 3.70, 4.08],
    ("6.2B", 64): [4.39, 4.20, 4.03, 4.19],
    ("14.6B", 48): [1.81, 1.61, 1.40, 1.54],
    ("14.6B", 64): [1.83, 1.67, 1.49, 1.59],
    ("14.6B", 128): [1.85, 1.76, 1.64, 1.66],
    ("28.3B", 96): [0.99, 0.87, 0.76, 0.82],
    ("28.3B", 128): [1.00, 0.90, 0.80, 0.85],
    ("28.3B", 256): [1.00, 0.96, 0.88, 0.90],
}
MEASURED = {k: dict(zip(THROUGHPUT_ORDER, v)) for k, v in MEASURED.items()}

# Table 12: m <= p, measured samples per GPU per second of 1F1B and ZB-2p. The profiled costs of
# the same model, pipeline and microbatch size are Table 9's first row of that model.
SMALL_M = [
    ("1.5B", 8, 2, 3.56, 4.25), ("1.5B", 8, 4, 5.74, 6.92), ("1.5B", 8, 8, 8.26, 9.90),
    ("6.2B", 8, 2, 1.04, 1.33), ("6.2B", 8, 4, 1.69, 2.16), ("6.2B", 8, 8, 2.45, 3.07),
    ("14.6B", 16, 4, 0.39, 0.52), ("14.6B", 16, 8, 0.65, 0.85), ("14.6B", 16, 16, 0.95, 1.25),
]

# Table 10: ZB-2p measured with the optimizer post-validation and with a synchronous optimizer
# (all-reduce before the step), samples per GPU per second.
SYNC_ABLATION = {("1.5B", 24): (14.5, 13.11), ("6.2B", 24): (4.32, 4.00), ("14.6B", 48): (1.81, 1.68),
                 ("28.3B", 96): (0.99, 0.91)}



from compare_reference import RunFailure, UsageError, progress  # noqa: E402  (the same script family)


def memory_split(model):
    """Activation bytes per layer and microbatch before B, and what W still needs after it, in the
    paper's Table 1 (Korthikanti et al.): M_B ~ 34h + 5as, M_W ~ 32h (per s*b). The fraction B
    releases is 1 - M_W / M_B."""
    d = MODELS[model]
    m_b = 34 * d["hidden"] + 5 * d["heads"] * SEQ
    m_w = 32 * d["hidden"]
    return m_b, m_w


def chunks_per_device(model, p):
    """Interleaved 1F1B with one layer per chunk: the paper's models have k*p - 2 layers (one fewer
    on the first and the last stage for the embedding and the loss), so k = (layers + 2) / p."""
    return (MODELS[model]["layers"] + 2) // p


class Sim:
    """`pipeblocks simulate`, returning the JSON summary and the longest device span."""

    def __init__(self, binary, tmpdir):
        self.binary = binary
        self.tmpdir = tmpdir
        self.count = 0

    def run(self, args):
        proc = subprocess.run([self.binary, "simulate"] + args, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RunFailure(f"pipeblocks simulate {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def generate(self, args):
        self.count += 1
        path = os.path.join(self.tmpdir, f"gen{self.count}.json")
        proc = subprocess.run([self.binary, "generate"] + args + ["--format", "json", "-o", path],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RunFailure(f"pipeblocks generate {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return path

    def evaluate(self, args, optimizer):
        summary = json.loads(self.run(args + ["--optimizer", optimizer, "--json"]))
        trace = json.loads(self.run(args + ["--format", "chrome-trace"]))
        first, last = {}, {}
        for ev in trace["traceEvents"]:
            a = ev.get("args") or {}
            if ev.get("ph") != "X" or ev.get("tid") != 1 or "start" not in a:
                continue
            d = ev["pid"]
            first[d] = min(first.get(d, a["start"]), a["start"])
            last[d] = max(last.get(d, a["end"]), a["end"])
        span = max(last[d] - first[d] for d in first)
        busy = max(summary["busy"])
        return dict(span=span, period=summary["period"], makespan=summary["makespan"],
                    span_bubble=1.0 - busy / span, peak=summary["max_peak_activation"],
                    placement=summary["placement"])

    def write(self, p, m, lists):
        self.count += 1
        path = os.path.join(self.tmpdir, f"ref{self.count}.json")
        doc = {"format": "pipeblocks-schedule", "version": 1, "name": "reference", "devices": p, "stages": p,
               "microbatches": m, "placement": {"kind": "sequential"}, "lists": lists}
        with open(path, "w") as fh:
            json.dump(doc, fh)
        return path


def reference_zb(mods, p, m, f, b, w, c, model, mult):
    """The authors' heuristic (ZB-1p at mult=1, ZB-2p at mult=2) with the paper's memory model."""
    zb = mods["zb"]
    m_b, m_w = memory_split(model)
    cfg = zb.GraphConfig(cost_f=[float(f)] * p, cost_b=[float(b)] * p, cost_w=[float(w)] * p,
                         cost_comm=float(c), mem_f=[float(m_b)] * p, mem_b=[float(m_w - m_b)] * p,
                         mem_w=[float(-m_w)] * p, max_mem=[float(mult * p * m_b)] * p,
                         print_scaling=1, n_stages=p, n_micro=m)
    graph = zb.Graph.build_graph(p, m, cfg)
    _best, _order, complete_time = zb.initial_solution(graph, print_result=False)
    nodes = zb.create_scheduled_nodes(graph, complete_time)
    return [[f"{n.type.value}{d}.{n.microbatch}" for n in nodes[d]] for d in range(p)]


def costs_arg(costs, v=1, blocking=False):
    """`--cost` for one pass of a stage of 1/v of a device's layers. With `blocking`, every F and B
    also holds its device for one p2p time (a send or receive the runtime waits for, as Megatron's
    synchronous p2p calls do); the latency between devices stays as well."""
    f, b, w, c = costs
    hold = c if blocking else 0.0
    return f"f={f / v + hold},b={b / v + hold},w={w / v},c={c}"


def generate(sim, label, model, p, m, costs, mods):
    """The schedule file of one of the paper's schedules, generated from the profiled costs, with
    what it is, the chunks per device it splits a stage into, and the optimizer mode it ran with."""
    f, b, w, c = costs
    m_b, m_w = memory_split(model)
    release = f"{1.0 - m_w / m_b:.6f}"
    size = ["-p", str(p), "-m", str(m)]
    if label == "1F1B":
        return sim.generate(["-s", "1f1b", "--cost", costs_arg(costs)] + size), "1f1b", 1, "sync", None
    if label == "1F1B-I":
        v = chunks_per_device(model, p)
        if m % p:
            return None, f"interleaved-1f1b needs m a multiple of p (m={m}, p={p})", v, "sync", None
        args = ["-s", "interleaved-1f1b", "--chunks", str(v), "--cost", costs_arg(costs, v)] + size
        return sim.generate(args), "interleaved-1f1b, one layer per chunk", v, "sync", None
    if label in ("ZB-H1", "ZB-H2"):
        args = ["-s", label.lower(), "--cost", costs_arg(costs), "--b-release", release] + size
        return sim.generate(args), f"pipeblocks' {label.lower()}", 1, "overlap", release
    mult = 1 if label == "ZB-1p" else 2
    if mods is None:
        return None, "needs --reference", 1, "overlap", release
    path = sim.write(p, m, reference_zb(mods, p, m, f, b, w, c, model, mult))
    return path, f"the authors' heuristic at {mult}p M_B", 1, "overlap", release


def evaluate(sim, label, model, p, m, costs, mods):
    """Span bubble and period of one schedule, plain and with blocking p2p; None when the
    schedule does not apply."""
    path, what, v, opt, release = generate(sim, label, model, p, m, costs, mods)
    if path is None:
        return None
    extra = ["--b-release", release] if release else []
    plain = sim.evaluate(["--from", path, "--cost", costs_arg(costs, v)] + extra, opt)
    blocking = sim.evaluate(["--from", path, "--cost", costs_arg(costs, v, True)] + extra, opt)
    return dict(plain, what=what, blocking_period=blocking["period"])


def load_reference(root):
    import compare_reference as cr  # the loader that shims megatron and torch out of the way
    return cr.load_reference(root)[0]


def ratio_row(table, model, p, m, label, base, other, measured):
    pred = base["period"] / other["period"]
    blocking = base["blocking_period"] / other["blocking_period"]
    return dict(table=table, model=model, p=p, m=m, schedule=label, measured=measured, predicted=pred,
                error=pred / measured - 1.0, predicted_blocking=blocking, error_blocking=blocking / measured - 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default=os.environ.get("ZB_REFERENCE"),
                    help="checkout of sail-sg/zero-bubble-pipeline-parallelism: simulate the authors' own "
                         "ZB-1p/ZB-2p schedules (without it, pipeblocks' auto at the same memory stands in)")
    ap.add_argument("--pipeblocks", default=os.path.join(REPO_ROOT, "target", "release", "pipeblocks"),
                    help="pipeblocks binary (default: target/release/pipeblocks)")
    ap.add_argument("--quick", action="store_true", help="the first setting of each table only")
    ap.add_argument("--json", metavar="OUT", help="write every row as JSON to OUT")
    ap.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = ap.parse_args()
    try:
        if not (os.path.isfile(args.pipeblocks) and os.access(args.pipeblocks, os.X_OK)):
            raise UsageError(f"pipeblocks binary {args.pipeblocks} not found or not executable; build it with "
                             "`cargo build --release -p pipeblocks-cli` or pass --pipeblocks BIN")
        mods = load_reference(args.reference) if args.reference else None
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    profiles = PROFILES[:1] if args.quick else PROFILES
    small = SMALL_M[:1] if args.quick else SMALL_M
    bubbles, ratios, sync_rows, autos = [], [], [], []
    t0 = time.time()
    try:
        with tempfile.TemporaryDirectory(prefix="pb-published-") as tmp:
            sim = Sim(args.pipeblocks, tmp)
            for i, (model, p, m, f, b, w, c) in enumerate(profiles):
                progress(f"[{i + 1}/{len(profiles)} {time.time() - t0:5.0f}s] {model} p={p} m={m}")
                got = {}
                for label in SCHEDULE_ORDER:
                    r = evaluate(sim, label, model, p, m, (f, b, w, c), mods)
                    if r is None:
                        continue
                    got[label] = r
                    paper = PAPER_BUBBLE[(model, m)][label]
                    bubbles.append(dict(model=model, p=p, m=m, schedule=label, simulated=r["what"],
                                        paper=paper, ours=r["span_bubble"], diff=r["span_bubble"] - paper))
                # pipeblocks' own auto at ZB-1p's and ZB-2p's memory, ranked as the step under
                # post-validation runs (the longest device span): its idle share of the period.
                m_b, m_w = memory_split(model)
                for mult in ("1x", "2x"):
                    d = json.loads(sim.run(["-s", "auto", "--memory", mult, "-p", str(p), "-m", str(m),
                                            "--cost", costs_arg((f, b, w, c)),
                                            "--b-release", f"{1.0 - m_w / m_b:.6f}",
                                            "--optimizer", "overlap", "--json"]))
                    idle = max(0.0, 1.0 - sum(d["busy"]) / (len(d["busy"]) * d["period"]))
                    paper = PAPER_BUBBLE[(model, m)]["ZB-1p" if mult == "1x" else "ZB-2p"]
                    autos.append(dict(model=model, p=p, m=m, memory=mult, placement=d["placement"],
                                      ours=idle, paper=paper))
                measured = MEASURED[(model, m)]
                if (model, m) in SYNC_ABLATION and "ZB-2p" in got:
                    # The synchronous step's period with a zero-time optimizer is the makespan
                    # (docs/step.md): a lower bound on what the synchronisation costs.
                    post, synced = SYNC_ABLATION[(model, m)]
                    pred = got["ZB-2p"]["period"] / got["ZB-2p"]["makespan"]
                    sync_rows.append(dict(model=model, p=p, m=m, measured=synced / post, predicted=pred,
                                          error=pred / (synced / post) - 1.0))
                for label in [x for x in ["1F1B-I", "ZB-1p", "ZB-2p"] if x in got]:
                    ratios.append(ratio_row(4, model, p, m, label, got["1F1B"], got[label],
                                            measured[label] / measured["1F1B"]))
            for j, (model, p, m, t_1f1b, t_zb2p) in enumerate(small if mods is not None else []):
                progress(f"[m<=p {j + 1}/{len(small)} {time.time() - t0:5.0f}s] {model} p={p} m={m}")
                f, b, w, c = next(r[3:] for r in PROFILES if r[0] == model)
                got = {label: evaluate(sim, label, model, p, m, (f, b, w, c), mods) for label in ["1F1B", "ZB-2p"]}
                ratios.append(ratio_row(12, model, p, m, "ZB-2p", got["1F1B"], got["ZB-2p"], t_zb2p / t_1f1b))
    except RunFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    report(bubbles, ratios, sync_rows, autos, args.markdown, mods is not None)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(bubbles=bubbles, ratios=ratios, sync=sync_rows, auto=autos, reference=mods is not None),
                      fh, indent=1)
    return 0


RANK_MARGIN = 0.05  # about the worst throughput-ratio error of the zero-bubble schedules


def ranking(ratios, key):
    """Pairs of schedules of one Table-4 setting (1F1B at ratio 1): how many are predicted apart by
    more than RANK_MARGIN, how many of those were measured in the predicted order, and how many
    pairs predicted closer than that were measured in the other order."""
    pairs = right = close_wrong = 0
    settings = {(x["model"], x["m"]) for x in ratios if x["table"] == 4}
    for setting in settings:
        rows = [dict(schedule="1F1B", pred=1.0, meas=1.0)] + [
            dict(schedule=x["schedule"], pred=x[key], meas=x["measured"])
            for x in ratios if x["table"] == 4 and (x["model"], x["m"]) == setting]
        for i, a in enumerate(rows):
            for b in rows[i + 1:]:
                if abs(a["pred"] / b["pred"] - 1.0) > RANK_MARGIN:
                    pairs += 1
                    right += (a["pred"] > b["pred"]) == (a["meas"] > b["meas"])
                elif (a["pred"] - b["pred"]) * (a["meas"] - b["meas"]) < 0:
                    close_wrong += 1
    return pairs, right, close_wrong


def report(bubbles, ratios, sync_rows, autos, markdown, with_reference):
    sep = " | " if markdown else "  "

    def line(cells):
        return ("| " + " | ".join(cells) + " |") if markdown else sep.join(cells)

    print("Bubble rates, the paper's definition (Table 5) against pipeblocks' simulation of the same schedule")
    header = ["model", "p", "m"] + [f"{s} paper / ours" for s in SCHEDULE_ORDER]
    print(line(header))
    if markdown:
        print("|" + "---|" * len(header))
    keys = sorted({(r["model"], r["p"], r["m"]) for r in bubbles}, key=lambda k: (k[1], k[0], k[2]))
    for key in keys:
        cells = [key[0], str(key[1]), str(key[2])]
        for s in SCHEDULE_ORDER:
            r = next((x for x in bubbles if (x["model"], x["p"], x["m"]) == key and x["schedule"] == s), None)
            cells.append("—" if r is None else f"{r['paper']:.4f} / {r['ours']:.4f}")
        print(line(cells))
    print()
    for s in SCHEDULE_ORDER:
        rows = [x for x in bubbles if x["schedule"] == s]
        if rows:
            worst = max(rows, key=lambda x: abs(x["diff"]))
            print(f"{s:7s} ({rows[0]['simulated']}): largest difference {worst['diff']:+.4f} "
                  f"({worst['model']} m={worst['m']}), median |difference| "
                  f"{statistics.median(abs(x['diff']) for x in rows):.4f}")
    print()
    print("Throughput over 1F1B, predicted (period ratio) against measured (samples per GPU ratio)")
    header = ["table", "model", "p", "m", "schedule", "measured", "predicted", "error",
              "predicted, blocking p2p", "error"]
    print(line(header))
    if markdown:
        print("|" + "---|" * len(header))
    for r in ratios:
        print(line([str(r["table"]), r["model"], str(r["p"]), str(r["m"]), r["schedule"], f"{r['measured']:.3f}",
                    f"{r['predicted']:.3f}", f"{100 * r['error']:+.1f}%", f"{r['predicted_blocking']:.3f}",
                    f"{100 * r['error_blocking']:+.1f}%"]))
    print()
    for s in ["1F1B-I", "ZB-1p", "ZB-2p"]:
        rows = [x for x in ratios if x["schedule"] == s]
        for key, name in [("error", "p2p overlapped"), ("error_blocking", "p2p blocking")]:
            if rows:
                errs = [abs(x[key]) for x in rows]
                print(f"{s:7s} {name}: {len(rows)} settings, median |error| {100 * statistics.median(errs):.1f}%, "
                      f"worst {100 * max(errs):.1f}%, mean signed {100 * statistics.mean(x[key] for x in rows):+.1f}%")
    agree = sum(1 for x in ratios if (x["predicted"] > 1.0) == (x["measured"] > 1.0))
    print(f"direction (faster or slower than 1F1B) predicted right in {agree} of {len(ratios)}")
    for key, name in [("predicted", "p2p overlapped"), ("predicted_blocking", "p2p blocking")]:
        pairs, right, close_wrong = ranking(ratios, key)
        print(f"ranking, {name}: of {pairs} pairs of schedules in one setting whose predictions differ by more "
              f"than {100 * RANK_MARGIN:.0f}%, {right} measured in the predicted order; pairs predicted within "
              f"{100 * RANK_MARGIN:.0f}% and measured in the other order: {close_wrong}")
    if autos:
        print()
        print("pipeblocks' auto at the same memory, under post-validation (idle share of the period), "
              "against the paper's ZB-1p and ZB-2p")
        header = ["model", "p", "m", "memory", "paper", "auto", "auto's placement"]
        print(line(header))
        if markdown:
            print("|" + "---|" * len(header))
        for r in autos:
            print(line([r["model"], str(r["p"]), str(r["m"]), r["memory"], f"{r['paper']:.4f}", f"{r['ours']:.4f}",
                        r["placement"]]))
        better = sum(1 for r in autos if r["ours"] <= r["paper"] + 1e-4)
        print(f"auto at or below the paper's figure in {better} of {len(autos)}")
    if sync_rows:
        print()
        print("ZB-2p with a synchronous optimizer over ZB-2p with post-validation (Table 10), "
              "predicted with a zero-time optimizer")
        header = ["model", "p", "m", "measured", "predicted", "error"]
        print(line(header))
        if markdown:
            print("|" + "---|" * len(header))
        for r in sync_rows:
            print(line([r["model"], str(r["p"]), str(r["m"]), f"{r['measured']:.3f}", f"{r['predicted']:.3f}",
                        f"{100 * r['error']:+.1f}%"]))
    if not with_reference:
        print("(ZB-1p, ZB-2p and Table 12 need the authors' schedules: pass --reference to generate them)")


if __name__ == "__main__":
    sys.exit(main())
