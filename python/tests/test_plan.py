"""``pipeblocks.plan`` (the planner of ``pipeblocks plan``) from Python: configurations that add up
and fit, fixed dimensions kept, and one ``ValueError`` line naming the change."""

from __future__ import annotations

import pytest

import pipeblocks as pb


def test_plan_returns_fitting_configurations_fastest_first():
    r = pb.plan("llama2-7b", 16, 64, pp=2, sharding="zero1", recompute="selective", top=3)
    best = r["best"]
    assert 1 <= len(best) <= 3
    times = [e["iteration_seconds"] for e in best]
    assert times == sorted(times)
    for e in best:
        c = e["config"]
        assert c["tp"] * c["pp"] * c["dp"] == 16 and c["pp"] == 2
        assert c["dp"] * c["microbatch_size"] * c["microbatches"] == 64
        assert e["fits"] and all(p > 0 for p in e["peak_memory_bytes"])
        assert 0 < e["mfu"] < 0.6
    assert r["enumerated"] >= r["simulated"] >= len(best)


def test_impossible_requests_raise_one_line():
    with pytest.raises(ValueError, match="does not divide"):
        pb.plan("llama3-70b", 48, 64, tp=3)
    with pytest.raises(ValueError, match="none, selective or full"):
        pb.plan("llama2-7b", 16, 64, recompute="half")
    with pytest.raises(ValueError, match="positive integer"):
        pb.plan("llama2-7b", 0, 64)
