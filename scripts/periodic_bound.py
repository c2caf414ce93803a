#!/usr/bin/env python3
"""Is there a periodic V-shape steady state with period T within a memory budget?

Analysis aid, not part of the build or of CI: it answers, with a constraint solver, whether any
steady state that repeats every k microbatches can run at an average period T per microbatch on a
V-shape placement, when every device may hold at most K half-chunk activations *on average*
(a relaxation: the real peak is at least the average, so "infeasible" here is infeasible for the
real budget too).

The model, on a time grid of `--grid` steps per time unit:
- k microbatches per period P = k*T; each has F, B, W on every one of the 2p stages, at free start
  times; F runs down the V and back up, B the other way, W after its B; passes that hop between
  devices add the latency c;
- no two passes of one device overlap modulo P (each pass appears at its phase and at phase + P
  on a doubled circle, under one no-overlap constraint);
- memory: the lifespans (F start to W end) of the activations one device holds, summed over the
  k microbatches, are at most K*P, i.e. the average number alive is at most K.

Needs OR-Tools (`pip install ortools`). Example, the issue's half-memory case (p=8, 1F1B's memory
16 half-chunks, so 0.5x is K=8):

    python3 scripts/periodic_bound.py -p 8 -K 8 -k 1 -T 7.0 --cost 1,1.3,0.7,0.05

prints INFEASIBLE (proved) or FEASIBLE with the chain length of each microbatch, or UNKNOWN when
the time limit ran out first.
"""

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-p", type=int, default=8, help="devices")
    ap.add_argument("-K", type=int, default=8, help="half-chunk activations per device (average)")
    ap.add_argument("-k", type=int, default=1, help="microbatches per period")
    ap.add_argument("-T", type=float, required=True, help="average period per microbatch")
    ap.add_argument("--cost", default="1,1.3,0.7,0.05", help="F,B,W,c per pass")
    ap.add_argument("--grid", type=int, default=20, help="grid steps per time unit")
    ap.add_argument("--seconds", type=float, default=120.0, help="solver time limit")
    a = ap.parse_args()
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        print("error: needs OR-Tools: pip install ortools", file=sys.stderr)
        return 2
    try:
        f, b, w, c = (float(x) for x in a.cost.split(","))
    except ValueError:
        print("error: --cost takes four numbers F,B,W,c, e.g. 1,1.3,0.7,0.05", file=sys.stderr)
        return 2
    if a.p < 1 or a.k < 1 or a.T <= 0 or a.grid < 1:
        print("error: -p, -k, -T and --grid must be positive", file=sys.stderr)
        return 2

    g = a.grid
    dur = {"F": round(f * g), "B": round(b * g), "W": round(w * g)}
    lat = round(c * g)
    stages = 2 * a.p
    period = round(a.T * g * a.k)

    def device(s: int) -> int:
        return s if s < a.p else stages - 1 - s

    # Generous horizon: a chain with every pass waiting a whole period still fits.
    horizon = period + 3 * stages * (dur["F"] + dur["B"] + lat + period // a.k)
    m = cp_model.CpModel()
    start = {}
    circle = [[] for _ in range(a.p)]
    lifespans = [[] for _ in range(a.p)]
    for j in range(a.k):
        for s in range(stages):
            for kind in "FBW":
                start[kind, s, j] = m.new_int_var(0, horizon, f"{kind}{s}.{j}")
        # Symmetry: the first microbatch starts at 0, the others later within the period.
        if j == 0:
            m.add(start["F", 0, 0] == 0)
        else:
            m.add(start["F", 0, j] > start["F", 0, j - 1])
            m.add(start["F", 0, j] < period)
        for s in range(stages - 1):
            hop = lat if device(s) != device(s + 1) else 0
            m.add(start["F", s + 1, j] >= start["F", s, j] + dur["F"] + hop)
            m.add(start["B", s, j] >= start["B", s + 1, j] + dur["B"] + hop)
        m.add(start["B", stages - 1, j] >= start["F", stages - 1, j] + dur["F"])
        for s in range(stages):
            m.add(start["W", s, j] >= start["B", s, j] + dur["B"])
            lifespans[device(s)].append(start["W", s, j] + dur["W"] - start["F", s, j])
            for kind in "FBW":
                laps = m.new_int_var(0, horizon // period + 1, "")
                phase = m.new_int_var(0, period - 1, "")
                m.add(start[kind, s, j] == laps * period + phase)
                for shift in (0, period):
                    circle[device(s)].append(
                        m.new_fixed_size_interval_var(phase + shift, dur[kind], "")
                    )
    for d in range(a.p):
        m.add_no_overlap(circle[d])
        m.add(sum(lifespans[d]) <= a.K * period)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = a.seconds
    status = solver.solve(m)
    name = solver.status_name(status)
    line = f"p={a.p} K={a.K} k={a.k} T={a.T} cost={a.cost}: {name}"
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        chains = [
            (solver.value(start["B", 0, j]) + dur["B"] - solver.value(start["F", 0, j])) / g
            for j in range(a.k)
        ]
        line += f" (chain lengths {chains})"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
