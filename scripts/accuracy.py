#!/usr/bin/env python3
"""Predicted against measured: a real transformer pipelined on torch.distributed, each schedule's
iteration time and per-rank peak activation as pipeblocks predicts them from a profile, and as
they are.

1. A GPT-style model (token and position embedding on the first stage, the final norm and the LM
   head on the last) is cut into 8 pieces; `pipeblocks.torch.profile` measures each piece (F, I,
   W, the fused backward, the optimizer step, saved-tensor bytes) and gives the stage-cost file.
   On a machine with fewer cores than ranks the pieces are profiled while every rank profiles at
   once (the load the run will see; `--quiet-profile` profiles alone instead), and the hand-over
   between ranks is measured with a gloo ping-pong of one activation.
2. For each schedule pipeblocks generates the order (`auto` from the profile) and predicts the
   iteration: the simulated makespan plus the slowest rank's optimizer (a synchronous step), and
   each rank's peak activation in bytes.
3. The same order runs on `world` ranks (gloo; NCCL on GPUs with --cuda) through
   `pipeblocks.torch.schedule` for `--iterations` steps after one warm-up, each step the pipeline
   then the optimizer between two barriers; saved-tensor bytes alive are tracked per rank.
4. The table: predicted and measured time and peak per schedule, their errors, and whether the
   measured ranking follows the predicted one where the predictions differ by more than the error.

Usage: scripts/accuracy.py [--quick] [--json OUT] [--markdown]   (see docs/accuracy.md)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import weakref
from datetime import timedelta
from pathlib import Path

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as tmp
    from torch import nn
    from torch.distributed.pipelining import PipelineStage
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"error: scripts/accuracy.py needs PyTorch (pip install 'torch>=2.15'): {e}")
try:
    import pipeblocks as pb
    import pipeblocks.torch as pbt
except ImportError as e:  # pragma: no cover
    sys.exit(f"error: scripts/accuracy.py needs the pipeblocks package (scripts/python-ci.sh builds it): {e}")

PIECES = 8


# ---------------------------------------------------------------------------------------------
# The model


class Block(nn.Module):
    def __init__(self, h: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(h)
        self.qkv = nn.Linear(h, 3 * h)
        self.proj = nn.Linear(h, h)
        self.ln2 = nn.LayerNorm(h)
        self.up = nn.Linear(h, 4 * h)
        self.down = nn.Linear(4 * h, h)

    def forward(self, x):
        b, t, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(h, dim=-1)
        shape = (b, t, self.heads, h // self.heads)
        q, k, v = (z.reshape(shape).transpose(1, 2) for z in (q, k, v))
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, h))
        return x + self.down(nn.functional.gelu(self.up(self.ln2(x))))


class Embed(nn.Module):
    def __init__(self, vocab: int, h: int, seq: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, h)
        self.pos = nn.Embedding(seq, h)

    def forward(self, ids):
        return self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))


class Head(nn.Module):
    def __init__(self, vocab: int, h: int):
        super().__init__()
        self.ln = nn.LayerNorm(h)
        self.out = nn.Linear(h, vocab)

    def forward(self, x):
        return self.out(self.ln(x))


def make_pieces(cfg: dict, device: torch.device) -> list[nn.Module]:
    """The model in PIECES pieces, the same on every rank (seeded)."""
    torch.manual_seed(cfg["seed"])
    h, heads, vocab, seq = cfg["hidden"], cfg["heads"], cfg["vocab"], cfg["seq"]
    layers = [Block(h, heads) for _ in range(PIECES)]
    pieces: list[nn.Module] = [nn.Sequential(Embed(vocab, h, seq), layers[0])]
    pieces += layers[1:-1]
    pieces.append(nn.Sequential(layers[-1], Head(vocab, h)))
    return [p.to(device) for p in pieces]


def stage_modules(cfg: dict, stages: int, device: torch.device) -> list[nn.Module]:
    pieces = make_pieces(cfg, device)
    k = PIECES // stages
    return [nn.Sequential(*pieces[i * k:(i + 1) * k]) for i in range(stages)]


def batch(cfg: dict, microbatches: int, device: torch.device):
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    rows = microbatches * cfg["rows"]
    x = torch.randint(0, cfg["vocab"], (rows, cfg["seq"]), generator=g)
    y = torch.randint(0, cfg["vocab"], (rows, cfg["seq"]), generator=g)
    return x.to(device), y.to(device)


def loss_fn(cfg: dict):
    vocab = cfg["vocab"]

    def f(out, target):
        return nn.functional.cross_entropy(out.reshape(-1, vocab), target.reshape(-1))

    return f


def make_optimizer(params):
    return torch.optim.AdamW(params, lr=1e-4)


# ---------------------------------------------------------------------------------------------
# Activation bytes alive on a rank: the tensors autograd saves, counted once per storage


class Tracker:
    def __init__(self):
        self.alive: dict[tuple[int, int], int] = {}
        self.bytes = 0
        self.peak = 0
        self.params: set[tuple[int, int]] = set()
        self.forward_s: list[float] = []

    def _drop(self, key):
        n = self.alive.get(key, 0) - 1
        if n <= 0:
            self.alive.pop(key, None)
            self.bytes -= key[1]
        else:
            self.alive[key] = n

    def pack(self, t):
        s = t.untyped_storage()
        key = (s.data_ptr(), s.nbytes())
        # Detached: a saved output holding its own grad_fn through the box would make a cycle
        # through autograd's C++ graph that is never freed.
        box = _Box(t.detach())
        if key in self.params:
            return box
        n = self.alive.get(key, 0)
        if n == 0:
            self.bytes += key[1]
            self.peak = max(self.peak, self.bytes)
        self.alive[key] = n + 1
        weakref.finalize(box, self._drop, key)
        return box


class _Box:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t):
        self.t = t


class Tracked(nn.Module):
    """Runs `inner` with its saved tensors counted by `tracker`."""

    def __init__(self, inner: nn.Module, tracker: Tracker):
        super().__init__()
        self.inner = inner
        self._tracker = tracker
        for p in inner.parameters():
            s = p.untyped_storage()
            tracker.params.add((s.data_ptr(), s.nbytes()))

    def forward(self, *args):
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(self._tracker.pack, lambda box: box.t):
            out = self.inner(*args)
        self._tracker.forward_s.append(time.perf_counter() - t0)
        return out


# ---------------------------------------------------------------------------------------------
# Ranks


def _rank_main(rank, world, init_file, out_dir, backend, fn, args):
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=300))
    try:
        result = fn(rank, world, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(world, backend, fn, *args):
    with tempfile.TemporaryDirectory(prefix="pipeblocks-accuracy-") as d:
        init = os.path.join(d, "rendezvous")
        tmp.start_processes(_rank_main, args=(world, init, d, backend, fn, args), nprocs=world, join=True,
                            start_method="fork")
        return [torch.load(Path(d) / f"rank{r}.pt") for r in range(world)]


def device_of(rank, backend):
    return torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")


def profile_job(rank, world, cfg, backend, repeats, loaded):
    """With `loaded`, every rank profiles the whole model at once (the load of the run); then
    rank 0 and 1 time the hand-over of one activation (half a gloo round trip)."""
    dev = device_of(rank, backend)
    prof = None
    if loaded:
        x, y = batch(cfg, 1, dev)
        dist.barrier()
        prof = pbt.profile(make_pieces(cfg, dev), x, loss_fn(cfg), target=y, warmup=1, repeats=repeats,
                           optimizer=make_optimizer).to_dict()
    dist.barrier()
    act = torch.zeros(cfg["rows"], cfg["seq"], cfg["hidden"], device=dev)
    trips = []
    for _ in range(10):
        t0 = time.perf_counter()
        if rank == 0:
            dist.send(act, 1)
            dist.recv(act, 1)
        elif rank == 1:
            dist.recv(act, 0)
            dist.send(act, 0)
        trips.append(time.perf_counter() - t0)
    comm = statistics.median(trips[2:]) / 2 if rank == 0 else 0.0
    return {"profile": prof, "comm": comm}


def run_job(rank, world, cfg, backend, name, options, costs_text, iterations):
    dev = device_of(rank, backend)
    plan = pb.generate(name, world, cfg["microbatches"], stage_costs=costs_text, **options)
    mods = stage_modules(cfg, plan.stages, dev)
    mine = plan.stage_ids(rank)
    tracker = Tracker()
    wrapped = {s: Tracked(mods[s], tracker) for s in mine}
    stages = [PipelineStage(wrapped[s], s, plan.stages, dev) for s in mine]
    sched = pbt.schedule(stages, plan.microbatches, loss_fn(cfg), name=plan)
    params = [p for s in mine for p in mods[s].parameters()]
    opt = make_optimizer(params)
    x, y = batch(cfg, plan.microbatches, dev)
    args = (x,) if 0 in mine else ()
    kwargs = {"target": y} if plan.stages - 1 in mine else {}
    times = []
    for it in range(1 + iterations):
        if it == 1:
            tracker.peak = tracker.bytes
        dist.barrier()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        sched.step(*args, **kwargs)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        dist.barrier()
        times.append(time.perf_counter() - t0)
    return {"times": times[1:], "peak": tracker.peak, "stages": mine,
            "forward_s": tracker.forward_s[len(tracker.forward_s) // (1 + iterations):]}


# ---------------------------------------------------------------------------------------------
# Prediction


def _parse_pass(p):
    kind = p.rstrip("0123456789.").rstrip()
    i = len(kind)
    stage, mb = p[i:].split(".")
    return kind, int(stage)


def slowdowns(passes, starts, ends, cores):
    """Per (kind, stage), the slowdowns its passes see on a timeline when the ranks share
    `cores` cores: each pass's mean of `max(1, busy ranks / cores)` over its interval."""
    spans = [(st, en) for d in range(len(starts)) for st, en in zip(starts[d], ends[d])]
    edges = sorted({t for se in spans for t in se})
    sorted_starts = sorted(st for st, _ in spans)
    sorted_ends = sorted(en for _, en in spans)
    busy, i, j = [], 0, 0
    for a, b in zip(edges, edges[1:]):
        while i < len(sorted_starts) and sorted_starts[i] <= a:
            i += 1
        while j < len(sorted_ends) and sorted_ends[j] <= a:
            j += 1
        busy.append((a, b, i - j))
    out: dict[tuple[str, int], list[float]] = {}
    for d in range(len(starts)):
        for p, st, en in zip(passes[d], starts[d], ends[d]):
            if en <= st:
                continue
            lo, hi = 0, len(busy)
            while lo < hi:  # the first segment ending after the pass starts
                mid = (lo + hi) // 2
                if busy[mid][1] <= st:
                    lo = mid + 1
                else:
                    hi = mid
            acc, seg = 0.0, lo
            while seg < len(busy) and busy[seg][0] < en:
                a, b, n = busy[seg]
                acc += (min(b, en) - max(a, st)) * max(1.0, n / cores)
                seg += 1
            out.setdefault(_parse_pass(p), []).append(acc / (en - st))
    return out


def shared_host(plan, costs_text, cores, rounds=8):
    """The flush's makespan when the ranks share `cores` cores (a CPU run with more ranks than
    cores): each pass runs at the speed its share of the cores allows, `min(1, cores / busy
    ranks)`. The stage-kind durations are scaled by the mean slowdown their passes see on the
    timeline and the flush simulated again, until the makespan settles (damped fixed point).
    Returns the makespan and the mean slowdown."""
    base = json.loads(costs_text)
    k = PIECES // plan.stages
    keys = {"F": ["f"], "B": ["b"], "W": ["w"], "BW": ["bw"]}
    factor: dict[tuple[str, int], float] = {}
    text, makespan, mean_slow = costs_text, None, 1.0
    for _ in range(rounds):
        tl = plan.timeline(stage_costs=text)
        slow_of = slowdowns(tl["passes"], tl["start"], tl["end"], cores)
        # each slowdown applies to the quiet duration: the timeline above ran inflated ones
        new = {key: sum(v) / len(v) for key, v in slow_of.items()}
        factor = {key: 0.5 * (factor.get(key, 1.0) + f) for key, f in new.items()}
        doc = json.loads(costs_text)
        for (kind, stage), f in factor.items():
            for piece in range(stage * k, stage * k + k):
                for field in keys.get(kind, []):
                    doc["stages"][piece][field] = base["stages"][piece][field] * f
        text = json.dumps(doc)
        r = plan.simulate(stage_costs=text)
        if makespan is not None and abs(r["makespan"] - makespan) <= 1e-4 * makespan:
            makespan = r["makespan"]
            break
        makespan = r["makespan"]
        mean_slow = sum(factor.values()) / max(len(factor), 1)
    return makespan, mean_slow


def with_overhead(costs_text, per_action, stages):
    """The stage costs with `per_action` seconds added to every pass a schedule of `stages`
    stages runs (split evenly over the table's pieces that one of its stages merges)."""
    doc = json.loads(costs_text)
    k = PIECES // stages
    for st in doc["stages"]:
        for key in ("f", "b", "w", "bw"):
            if key in st:
                st[key] += per_action / k
    return json.dumps(doc)


def calibrate(world, backend, cores, iterations, say):
    """The runtime's own cost per pass (Python, the schedule runtime, posting the sends and
    receives), as CPU work: 1F1B on a model too small to compute anything, whose measured
    iteration the overhead must explain. Solved by bisection with the same prediction as the
    real runs, so the shared-host model treats it like any work."""
    cfg = dict(TINY)
    x, y = batch(cfg, 1, torch.device("cpu"))
    prof = pbt.profile(make_pieces(cfg, torch.device("cpu")), x, loss_fn(cfg), target=y, warmup=1, repeats=3,
                       optimizer=make_optimizer)
    text = prof.stage_costs()
    out = run_ranks(world, backend, run_job, cfg, backend, "1f1b", {}, text, iterations)
    measured = statistics.median(out[0]["times"])
    plan = pb.generate("1f1b", world, cfg["microbatches"], stage_costs=text)
    d = prof.to_dict()
    lo, hi = 0.0, measured
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if predict(plan, with_overhead(text, mid, plan.stages), d, world, cores)["time"] < measured:
            lo = mid
        else:
            hi = mid
    say(f"calibration: an empty model's 1f1b iteration takes {measured * 1e3:.1f} ms: "
        f"{lo * 1e3:.2f} ms of runtime work per pass")
    return lo, measured


def predict(plan, costs_text, prof, world, cores):
    r = plan.simulate(stage_costs=costs_text)
    opt = [s["optimizer"] or 0.0 for s in prof["stages"]]
    k = PIECES // plan.stages
    per_rank = [sum(opt[s * k + j] for s in plan.stage_ids(d) for j in range(k)) for d in range(world)]
    acts = [s["activation_bytes"] for s in prof["stages"]]
    mean = sum(acts) / len(acts)
    unit_bytes = mean * PIECES / world
    makespan, slow = r["makespan"], 1.0
    optimizer = max(per_rank)
    if cores < world:
        makespan, slow = shared_host(plan, costs_text, cores)
        # every rank steps its optimizer at once after the barrier: the longest one, or all of
        # them spread over the cores, whichever is longer
        optimizer = max(optimizer, sum(per_rank) / cores)
    return {
        "time": makespan + optimizer,
        "makespan": makespan,
        "quiet_makespan": r["makespan"],
        "host_slowdown": slow,
        "optimizer": optimizer,
        "peak": [u * unit_bytes for u in r["peak_activation"]],
        "bubble": r["bubble_rate"],
    }


# ---------------------------------------------------------------------------------------------


SCHEDULES = [
    ("1f1b", "1f1b", {}),
    ("interleaved-1f1b", "interleaved-1f1b", {"chunks": 2}),
    ("zb-h1", "zb-h1", {}),
    ("zb-v", "zb-v", {}),
    ("v-half", "v-half", {}),
    ("v-min", "v-min", {}),
    ("auto 1x", "auto", {"memory": "1x"}),
    ("auto 0.5x", "auto", {"memory": "0.5x"}),
]
QUICK = ["1f1b", "zb-v"]

TINY = dict(hidden=8, heads=1, vocab=16, seq=4, rows=1, microbatches=8, seed=0)
FULL = dict(hidden=256, heads=4, vocab=8192, seq=128, rows=2, microbatches=8, seed=0)
SMALL = dict(hidden=64, heads=2, vocab=512, seq=32, rows=2, microbatches=8, seed=0)


def pct(a, b):
    return 100.0 * (a - b) / b if b else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 schedules, 2 iterations, a small model (CI)")
    ap.add_argument("--world", type=int, default=4, help="ranks (default 4)")
    ap.add_argument("--iterations", type=int, default=None, help="measured iterations per schedule (default 6)")
    ap.add_argument("--cuda", action="store_true", help="one GPU per rank, NCCL")
    ap.add_argument("--loaded-profile", action="store_true",
                    help="profile on every rank at once (the load of a CPU run with more ranks than cores) instead "
                         "of alone, and predict without the shared-host model")
    ap.add_argument("--no-overhead", action="store_true",
                    help="predict without the runtime's per-pass cost (measured on an empty model by default)")
    ap.add_argument("--runtime", choices=["torch", "rust"], default="torch",
                    help="what runs the schedules: PyTorch's pipelining (default) or `pipeblocks train`")
    ap.add_argument("--pipeblocks", metavar="BIN", help="pipeblocks binary for --runtime rust (default target/release/pipeblocks)")
    ap.add_argument("--json", metavar="OUT", help="write every figure as JSON to OUT")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    a = ap.parse_args(argv)
    if a.world < 2:
        ap.error("--world must be at least 2")
    if a.iterations is not None and a.iterations < 1:
        ap.error("--iterations must be at least 1")
    if a.runtime == "rust":
        t0 = time.time()
        rows = rust_runtime(a, lambda msg: print(f"[{time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True))
        errs = [abs(r["time_error_pct"]) for r in rows]
        peak_errs = [abs(e) for r in rows for e in r["peak_error_pct"]]
        summary = {
            "median_time_error_pct": statistics.median(errs), "worst_time_error_pct": max(errs),
            "median_peak_error_pct": statistics.median(peak_errs), "worst_peak_error_pct": max(peak_errs),
            "ranking_disagreements": [], "ranking_bound_pct": max(10.0, statistics.median(errs)),
            "seconds": time.time() - t0, "profile_under_load": True, "comm_s": 0.0,
            "shared_host_cores": (os.cpu_count() or 1) if a.world > (os.cpu_count() or 1) else None,
            "overhead_per_pass_s": 0.0, "world": a.world, "backend": "threads (pipeblocks train)",
            "cores": os.cpu_count() or 1, "auto_pick": None,
        }
        print_table(rows, summary, a.markdown)
        if a.json:
            with open(a.json, "w") as fh:
                json.dump({"rows": rows, "summary": summary}, fh, indent=2)
        return 0
    backend = "nccl" if a.cuda else "gloo"
    if a.cuda and (not torch.cuda.is_available() or torch.cuda.device_count() < a.world):
        sys.exit(f"error: --cuda needs {a.world} GPUs; found {torch.cuda.device_count() if torch.cuda.is_available() else 0}")
    if not a.cuda and not dist.is_gloo_available():
        sys.exit("error: torch.distributed with gloo is not available in this PyTorch")
    cfg = dict(SMALL if a.quick else FULL)
    iterations = a.iterations or (2 if a.quick else 6)
    names = [s for s in SCHEDULES if not a.quick or s[0] in QUICK]
    cores = os.cpu_count() or 1
    loaded = a.loaded_profile
    # More ranks than cores: the ranks share the cores, and the prediction says so.
    host_cores = cores if (not a.cuda and a.world > cores and not loaded) else a.world
    t_start = time.time()

    def say(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    say(f"profiling {PIECES} pieces ({'all ranks at once' if loaded else 'one process'}; {cores} cores, {a.world} ranks)")
    res = run_ranks(a.world, backend, profile_job, cfg, backend, 2 if a.quick else 9, loaded)
    prof = res[0]["profile"]
    if not loaded:
        # One process alone on the machine: the figures the quiet profile gives.
        dev = torch.device("cuda", 0) if a.cuda else torch.device("cpu")
        torch.set_num_threads(1)
        x, y = batch(cfg, 1, dev)
        prof = pbt.profile(make_pieces(cfg, dev), x, loss_fn(cfg), target=y, warmup=1,
                           repeats=2 if a.quick else 9, optimizer=make_optimizer).to_dict()
    comm = res[0]["comm"]
    profile = pbt.Profile(stages=[pbt.StageProfile(**s) for s in prof["stages"]], device=prof["device"],
                          warmup=prof["warmup"], repeats=prof["repeats"], comm=comm)
    costs_text = profile.stage_costs()
    overhead, empty = (0.0, None) if a.no_overhead else calibrate(a.world, backend, host_cores, iterations, say)
    rows = []
    skipped = []
    for label, name, options in names:
        try:
            plan = pb.generate(name, a.world, cfg["microbatches"], stage_costs=costs_text, **options)
        except ValueError as e:  # a budget below what the sizes allow, say
            say(f"{label}: not applicable: {e}")
            skipped.append((label, str(e)))
            continue
        pred = predict(plan, with_overhead(costs_text, overhead, plan.stages), prof, a.world, host_cores)
        say(f"{label}: predicted {pred['time'] * 1e3:.1f} ms; running {iterations} iterations")
        out = run_ranks(a.world, backend, run_job, cfg, backend, name, options, costs_text, iterations)
        measured = statistics.median(out[0]["times"])
        peaks = [o["peak"] for o in out]
        # The forwards as the run timed them against the profile's (per rank, all its stages):
        # how much slower a pass is inside the pipeline than alone.
        k = PIECES // plan.stages
        f_prof = [sum(prof["stages"][st * k + j]["f"] for st in o["stages"] for j in range(k)) / len(o["stages"])
                  for o in out]
        f_run = [statistics.median(o["forward_s"]) if o["forward_s"] else float("nan") for o in out]
        rows.append({
            "schedule": label, "placement": plan.placement, "stages": plan.stages,
            "predicted_s": pred["time"], "measured_s": measured, "time_error_pct": pct(pred["time"], measured),
            "predicted_makespan_s": pred["makespan"], "optimizer_s": pred["optimizer"],
            "quiet_makespan_s": pred["quiet_makespan"], "host_slowdown": pred["host_slowdown"],
            "iterations_s": out[0]["times"],
            "predicted_peak_bytes": pred["peak"], "measured_peak_bytes": peaks,
            "peak_error_pct": [pct(p, m) for p, m in zip(pred["peak"], peaks)],
            "forward_in_run_vs_profile": [r_ / p_ if p_ > 0 else float("nan") for r_, p_ in zip(f_run, f_prof)],
        })
    # The pick that the profile changes: auto on uniform costs against auto on the profile.
    pick = None
    if not a.quick:
        # auto picks for devices of their own; on a CPU with fewer cores than ranks its objective
        # is not the host's time, so the pick is checked on as many ranks as there are cores
        # (at least 2), the two orders run alternately twice each against the machine's drift.
        pw = a.world if a.cuda else max(2, min(a.world, cores))
        uniform = pb.generate("auto", pw, cfg["microbatches"], memory="1x")
        profiled = pb.generate("auto", pw, cfg["microbatches"], stage_costs=costs_text, memory="1x")
        same = all(uniform.passes(r) == profiled.passes(r) for r in range(pw)) and uniform.stages == profiled.stages
        pick = {"same_order": same, "world": pw}
        if not same:
            say(f"auto on uniform costs picks another order: both run alternately on {pw} ranks")
            times = {"uniform": [], "profiled": []}
            for _ in range(2):
                for which, text in (("uniform", None), ("profiled", costs_text)):
                    out = run_ranks(pw, backend, run_job, cfg, backend, "auto", {"memory": "1x"}, text,
                                    iterations)
                    times[which] += out[0]["times"]
            pick.update(uniform_measured_s=statistics.median(times["uniform"]),
                        profiled_measured_s=statistics.median(times["profiled"]))
    if not rows:
        sys.exit("error: no schedule applies at these sizes")
    errs = [abs(r["time_error_pct"]) for r in rows]
    peak_errs = [abs(e) for r in rows for e in r["peak_error_pct"] if not math.isnan(e)]
    bound = max(10.0, statistics.median(errs))
    disagree = []
    for i, r in enumerate(rows):
        for s in rows[i + 1:]:
            gap = abs(pct(r["predicted_s"], s["predicted_s"]))
            if gap > bound and (r["predicted_s"] < s["predicted_s"]) != (r["measured_s"] < s["measured_s"]):
                disagree.append((r["schedule"], s["schedule"], gap))
    summary = {
        "median_time_error_pct": statistics.median(errs), "worst_time_error_pct": max(errs),
        "median_peak_error_pct": statistics.median(peak_errs) if peak_errs else None,
        "worst_peak_error_pct": max(peak_errs) if peak_errs else None,
        "ranking_disagreements": disagree, "ranking_bound_pct": bound,
        "seconds": time.time() - t_start, "profile_under_load": loaded, "comm_s": comm,
        "shared_host_cores": host_cores if host_cores < a.world else None,
        "overhead_per_pass_s": overhead, "empty_model_iteration_s": empty,
        "model": cfg, "world": a.world, "iterations": iterations, "backend": backend, "cores": cores,
        "torch": torch.__version__, "auto_pick": pick, "skipped": skipped,
    }
    print_table(rows, summary, a.markdown)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "summary": summary, "stage_costs": json.loads(costs_text)}, fh, indent=2)
    return 0


RUST_MODEL = ["--layers", "8", "--hidden", "128", "--heads", "4", "--seq", "64", "--batch", "16"]
RUST_QUICK = ["--layers", "8", "--hidden", "16", "--heads", "2", "--seq", "8", "--batch", "8"]


def rust_runtime(a, say):
    """The same comparison for pipeblocks' own runtime (`pipeblocks train`, one thread per
    device): a run of zb-v (8 stages) gives the measured F, B and W (`--profile`) and one of
    interleaved 1F1B over the same stages the fused BW, from which every schedule is predicted;
    each then trains for a few steps. With more threads than cores, the profile's durations are divided by the share of the
    cores each pass had in the profiling run, and the predictions use the shared-host model."""
    import subprocess
    binary = a.pipeblocks or str(Path(__file__).resolve().parents[1] / "target" / "release" / "pipeblocks")
    if not os.access(binary, os.X_OK):
        sys.exit(f"error: no pipeblocks binary at {binary}: build it with `cargo build --release` or pass --pipeblocks BIN")
    m = 8
    steps = str(a.iterations or (2 if a.quick else 5))

    def train(name, extra, prof=None):
        model = RUST_QUICK if a.quick else RUST_MODEL
        cmd = [binary, "train", "-s", name, "-p", str(a.world), "-m", str(m), *model, "--steps", steps, "--json", *extra]
        if prof:
            cmd += ["--profile", prof]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    cores = os.cpu_count() or 1
    shared = a.world > cores

    def profile(name, options):
        """One training run of `name` with --profile and --timeline: its stage-cost document,
        each pass deflated by the share of the cores it had when the threads shared them."""
        extra = [x for k, v in options.items() for x in (f"--{k}", str(v))]
        with tempfile.TemporaryDirectory(prefix="pipeblocks-accuracy-") as d:
            prof_path = os.path.join(d, "profile.json")
            tl_path = os.path.join(d, "timeline.json")
            train(name, extra + ["--timeline", tl_path], prof_path)
            doc = json.loads(Path(prof_path).read_text())
            measured = json.loads(Path(tl_path).read_text())["measured"]
        if shared:
            ref = pb.generate(name, a.world, m, **options)
            passes = [ref.passes(r) for r in range(a.world)]
            if [len(x) for x in passes] != [len(x) for x in measured["start"]]:
                sys.exit(f"error: the profiling run's timeline does not match {name}'s order")
            slow = slowdowns(passes, measured["start"], measured["end"], cores)
            keys = {"F": "f", "B": "b", "W": "w", "BW": "bw"}
            for (kind, stage), v in slow.items():
                doc["stages"][stage][keys[kind]] /= sum(v) / len(v)
        return doc

    # The split passes (F, B, W) from a zb-v run and the fused backward (BW, what 1F1B and
    # interleaved 1F1B run) from an interleaved-1f1b run over the same 8 stages: a fused
    # backward is not the sum of its halves in this runtime.
    say("rust runtime: profiling with a zb-v run (8 stages: F, B, W)")
    doc = profile("zb-v", {})
    say("rust runtime: profiling with an interleaved-1f1b run (8 stages: the fused BW)")
    fused = profile("interleaved-1f1b", {"chunks": 2})
    for st, other in zip(doc["stages"], fused["stages"]):
        st["bw"] = other["bw"] if other.get("bw") else st["b"] + st["w"]
    text = json.dumps(doc)
    unit_bytes = doc.get("activation_bytes", 0.0) * len(doc["stages"]) / a.world
    rows = []
    for label, name, options in [s for s in SCHEDULES if not a.quick or s[0] in QUICK]:
        try:
            plan = pb.generate(name, a.world, m, stage_costs=text, **options)
        except ValueError as e:
            say(f"rust runtime: {label}: not applicable: {e}")
            continue
        r = dict(plan.simulate(stage_costs=text))
        if shared:
            r["makespan"], _ = shared_host(plan, text, cores)
        extra = []
        if "chunks" in options:
            extra += ["--chunks", str(options["chunks"])]
        if "memory" in options:
            extra += ["--memory", options["memory"]]
        say(f"rust runtime: {label}: predicted {r['makespan'] * 1e3:.1f} ms; training")
        got = train(name, extra)
        pred_peak = [u * unit_bytes for u in r["peak_activation"]]
        # The pipeline's own time: first pass to last (the optimizer and the step's set-up, which
        # the profile does not time, are reported beside it).
        rows.append({
            "schedule": label, "stages": plan.stages, "predicted_s": r["makespan"],
            "measured_s": got["pipeline_makespan_s"], "step_time_s": got["step_time_s"],
            "time_error_pct": pct(r["makespan"], got["pipeline_makespan_s"]),
            "predicted_peak_bytes": pred_peak, "measured_peak_bytes": got["peak_activation_bytes"],
            "peak_error_pct": [pct(p_, m_) for p_, m_ in zip(pred_peak, got["peak_activation_bytes"])],
        })
    return rows


def print_table(rows, summary, markdown):
    head = ["schedule", "stages", "predicted ms", "measured ms", "error", "peak pred MiB (per rank)",
            "peak meas MiB", "worst peak error"]
    lines = []
    for r in rows:
        lines.append([
            r["schedule"], str(r["stages"]), f"{r['predicted_s'] * 1e3:.1f}", f"{r['measured_s'] * 1e3:.1f}",
            f"{r['time_error_pct']:+.1f}%",
            " ".join(f"{b / 2**20:.1f}" for b in r["predicted_peak_bytes"]),
            " ".join(f"{b / 2**20:.1f}" for b in r["measured_peak_bytes"]),
            f"{max((abs(e) for e in r['peak_error_pct']), default=float('nan')):.1f}%",
        ])
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for l in lines:
            print("| " + " | ".join(l) + " |")
    else:
        widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for l in lines:
            print("  ".join(c.ljust(w) for c, w in zip(l, widths)))
    s = summary
    print()
    print(f"iteration time: median error {s['median_time_error_pct']:.1f}%, worst {s['worst_time_error_pct']:.1f}%")
    if s["median_peak_error_pct"] is not None:
        print(f"peak activation: median error {s['median_peak_error_pct']:.1f}%, worst {s['worst_peak_error_pct']:.1f}%")
    if s["ranking_disagreements"]:
        for x, y, gap in s["ranking_disagreements"]:
            print(f"ranking: {x} and {y} predicted {gap:.0f}% apart but measured the other way round")
    else:
        print(f"ranking: the measured order follows the predicted one wherever they differ by more than {s['ranking_bound_pct']:.0f}%")
    if s["auto_pick"] is not None:
        p = s["auto_pick"]
        if p["same_order"]:
            print(f"auto 1x on {p['world']} ranks: the profile does not change the pick here")
        else:
            print(f"auto 1x on {p['world']} ranks: the profile changes the pick; measured "
                  f"{p['profiled_measured_s'] * 1e3:.1f} ms against {p['uniform_measured_s'] * 1e3:.1f} ms for "
                  f"the uniform-cost pick")
    host = f", {s['shared_host_cores']} cores shared" if s["shared_host_cores"] else ""
    print(f"({s['world']} ranks, {s['backend']}, {s['cores']} cores{host}, profile {'under load' if s['profile_under_load'] else 'alone'}, "
          f"hand-over {s['comm_s'] * 1e3:.2f} ms, runtime work {s['overhead_per_pass_s'] * 1e3:.2f} ms per pass; "
          f"{s['seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
