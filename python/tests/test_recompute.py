"""Schedules with recompute passes (R) through Python: which stages recompute, actions without R,
the CSV refused with the way out, JSON round trip (no torch)."""

from __future__ import annotations

import re

import pytest

import pipeblocks as pb

ACTION = re.compile(r"^(\d+)([FIWB])(\d+)$")
PAIR = re.compile(r"^\((\d+[FIWB]\d+);(\d+[FIWB]\d+)\)OVERLAP_F_B$")

# (name, devices, microbatches, keywords): sequential, looped, V-shape and, when the engine has
# it, a schedule with overlapped pairs.
PLANS = [
    ("1f1b", 4, 8, {}),
    ("zb-h1", 4, 8, {}),
    ("interleaved-1f1b", 2, 4, {"chunks": 2}),
    ("zb-v", 2, 4, {}),
    ("dualpipev", 2, 8, {}),
]


def _plan(name, p, m, kw):
    if name not in pb.names():
        pytest.skip(f"the engine has no schedule `{name}` yet")
    return pb.generate(name, p, m, **kw)


@pytest.mark.parametrize("name,p,m,kw", PLANS, ids=[x[0] for x in PLANS])
def test_with_recompute_adds_r_passes_that_actions_leave_out(name, p, m, kw):
    plain = _plan(name, p, m, kw)
    assert plain.recompute == []
    stages = list(range(0, plain.stages, 2))
    rec = plain.with_recompute(stages)
    assert rec.recompute == stages
    for r in range(p):
        passes = rec.passes(r)
        # one R per microbatch of every recomputed stage on this rank, right before its backward
        # (before the pair when the backward is the second half of an overlapped pair)
        for s in set(stages) & set(rec.stage_ids(r)):
            rs = [q for q in passes if q.startswith(f"R{s}.")]
            assert len(rs) == m
            for q in rs:
                i = passes.index(q)
                nxt = passes[i + 1]
                if i + 2 < len(passes) and (nxt, passes[i + 2]) in rec.pairs:
                    nxt = passes[i + 2]
                assert nxt[0] == "B" and nxt.lstrip("BW") == q[1:], (q, nxt)
        # PyTorch's actions: the same as without the R passes, none of them an R
        assert rec.actions(r) == plain.actions(r)
        for a in rec.actions(r):
            assert ACTION.match(a) or PAIR.match(a), a
    assert rec.without_recompute() == plain
    assert rec != plain
    assert rec.with_recompute(stages) == rec  # stages that already recompute stay as they are
    assert plain.with_recompute([]) == plain


def test_the_csv_is_refused_for_a_schedule_with_recompute_with_the_way_out(tmp_path):
    rec = pb.generate("zb-h1", 2, 4).with_recompute([1])
    for write in (rec.torch_csv, lambda: rec.to_torch_csv(tmp_path / "x.csv")):
        with pytest.raises(ValueError) as e:
            write()
        msg = str(e.value)
        assert "PyTorch's schedule CSV has no recompute action" in msg
        assert "Schedule.without_recompute()" in msg and "stages [1]" in msg
    assert not (tmp_path / "x.csv").exists()
    # the way out: the order without R as CSV, read back as the plain schedule
    csv = rec.without_recompute().torch_csv()
    assert pb.parse_torch_csv(csv) == pb.generate("zb-h1", 2, 4)


def test_json_keeps_the_recompute_passes(tmp_path):
    rec = pb.generate("1f1b", 2, 4).with_recompute([0])
    path = tmp_path / "rec.json"
    path.write_text(rec.to_json())
    back = pb.load(path)
    assert back == rec and back.recompute == [0]
    assert any(q.startswith("R0.") for q in back.passes(0))


def test_recompute_costs_time_and_saves_memory_in_the_simulation():
    plain = pb.generate("1f1b", 4, 8)
    rec = plain.with_recompute([0, 1, 2, 3])
    a, b = plain.simulate(), rec.simulate()
    assert b["max_peak_activation"] < a["max_peak_activation"]
    assert b["makespan"] > a["makespan"]


def test_auto_below_v_min_memory_recomputes():
    s = pb.generate("auto", 4, 8, memory="0.3x")
    assert s.recompute, "auto below V-Min's memory should recompute some stages"
    assert any(q.startswith("R") for r in range(4) for q in s.passes(r))
    for r in range(4):
        assert all(ACTION.match(a) or PAIR.match(a) for a in s.actions(r))


@pytest.mark.parametrize("stages", [[2], [-1], [0, 5]])
def test_with_recompute_refuses_stages_out_of_range(stages):
    with pytest.raises(ValueError, match=r"is out of range: the schedule has 2 stages \(0\.\.2\)"):
        pb.generate("1f1b", 2, 4).with_recompute(stages)
