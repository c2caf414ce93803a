"""Offload (O and L passes: activations moved to host memory and back) and selective
recomputation through Python: the cost keywords reach the engine, the schedules' new views
(offloaded, selective, without_offload), the refusals of PyTorch's CSV, bad keyword values (no
torch)."""

from __future__ import annotations

import json
import math
import re

import pytest

import pipeblocks as pb

PASS = re.compile(r"^(F|B|W|BW|R|O|L)(\d+)\.(\d+)$")
EPS = 1e-9


def _all_passes(s):
    return [q for r in range(s.devices) for q in s.passes(r)]


@pytest.fixture(scope="module")
def offloading():
    """auto below one microbatch's activation per device: only offload reaches it."""
    s = pb.generate("auto", 8, 32, memory="0.1x", offload=1.0)
    assert s.offloaded, "auto at 0.1x of 1F1B's memory with a known host link should offload"
    return s


def test_auto_offloads_within_the_budget_when_the_link_is_known(offloading):
    s = offloading
    r = s.simulate(offload=1.0)
    assert r["peak_vs_1f1b"] <= 0.1 + EPS
    # the same call without the link cannot go below one activation per device
    with pytest.raises(ValueError):
        pb.generate("auto", 8, 32, memory="0.1x")


def test_offloaded_lists_the_o_passes_each_with_one_load_back(offloading):
    s = offloading
    assert s.offloaded == sorted(s.offloaded)
    assert all(isinstance(x, tuple) and len(x) == 2 for x in s.offloaded)
    for r in range(s.devices):
        passes = s.passes(r)
        assert all(PASS.match(q) for q in passes), passes
        outs = [q for q in passes if q[0] == "O"]
        ins = [q for q in passes if q[0] == "L"]
        assert sorted(q[1:] for q in outs) == sorted(q[1:] for q in ins)
        for q in outs:
            f, o, ld = passes.index("F" + q[1:]), passes.index(q), passes.index("L" + q[1:])
            assert f < o < ld  # offloaded after its forward, loaded back later
            back = [i for i, x in enumerate(passes) if x[0] in "BR" and x.lstrip("BWR") == q[1:]]
            assert ld < min(back)  # and before its R or backward needs it
    got = sorted(
        (int(m.group(2)), int(m.group(3)))
        for m in map(PASS.match, _all_passes(s))
        if m.group(1) == "O"
    )
    assert got == s.offloaded


def test_without_the_offload_keyword_auto_never_offloads():
    # 0.3x: reachable by recomputation alone, and by offload when the link is known
    plain = pb.generate("auto", 4, 8, memory="0.3x")
    assert plain.offloaded == [] and plain.recompute
    assert not any(q[0] in "OL" for q in _all_passes(plain))
    assert plain.simulate()["peak_vs_1f1b"] <= 0.3 + EPS
    off = pb.generate("auto", 4, 8, memory="0.3x", offload=0.5)
    assert off.offloaded
    assert off.simulate(offload=0.5)["peak_vs_1f1b"] <= 0.3 + EPS
    # cheap transfers: offloading beats recomputing
    assert off.simulate(offload=0.5)["makespan"] < plain.simulate()["makespan"]


def test_simulating_an_offloading_schedule_needs_the_link(offloading):
    for run in (offloading.simulate, offloading.timeline):
        with pytest.raises(ValueError, match=r"host link.*give offload="):
            run()


def test_the_link_time_reaches_the_simulation():
    s = pb.generate("auto", 2, 4, memory="0.5x", offload=0.5)
    assert s.offloaded
    fast, slow = s.simulate(offload=0.5), s.simulate(offload=5.0)
    assert slow["makespan"] > fast["makespan"]
    t = s.timeline(offload=0.5)
    for r in range(2):
        for q, a, b in zip(t["passes"][r], t["start"][r], t["end"][r]):
            if q[0] in "OL":
                assert b - a == pytest.approx(0.5)


def test_without_offload_is_the_same_order_without_transfers(offloading):
    s = offloading
    w = s.without_offload()
    assert w.offloaded == [] and w.name == s.name
    for r in range(s.devices):
        assert w.passes(r) == [q for q in s.passes(r) if q[0] not in "OL"]
    # valid: it simulates (no link needed), and needs more memory than the budget
    assert w.simulate()["peak_vs_1f1b"] > 0.1
    assert w.without_offload() == w
    plain = pb.generate("zb-h1", 4, 8)
    assert plain.without_offload() == plain and plain.offloaded == []
    # the order without transfers is what the CSV can take
    assert pb.parse_torch_csv(w.torch_csv()) == w


def test_pytorch_csv_and_actions_refuse_offload_with_the_way_out(offloading, tmp_path):
    s = offloading
    calls = (s.torch_csv, lambda: s.to_torch_csv(tmp_path / "x.csv"), lambda: s.actions(0))
    for call in calls:
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert "no offload action" in msg and "Schedule.without_offload()" in msg
    assert not (tmp_path / "x.csv").exists()


def test_the_csv_refusal_of_offload_and_recompute_names_both_ways_out():
    s = pb.generate("auto", 2, 4, memory="0.5x", offload=0.5).with_recompute([0])
    assert s.offloaded and s.recompute == [0]
    with pytest.raises(ValueError, match=r"without_offload\(\).*once without_recompute\(\) drops"):
        s.torch_csv()
    # each way out in turn: the CSV of the order without transfers and without R passes
    assert pb.parse_torch_csv(s.without_offload().without_recompute().torch_csv()) == (
        s.without_offload().without_recompute()
    )


def test_json_keeps_the_transfers(offloading, tmp_path):
    path = tmp_path / "off.json"
    path.write_text(offloading.to_json())
    back = pb.load(path)
    assert back == offloading and back.offloaded == offloading.offloaded


# --- selective recomputation ---

SEL = {"selective": 0.2, "selective_keep": 0.3}


def test_auto_recomputes_selectively_only_with_the_selective_costs():
    s = pb.generate("auto", 4, 8, memory="0.3x", **SEL)
    assert s.selective and set(s.selective) < set(s.recompute)
    assert s.selective == sorted(s.selective)
    assert s.simulate(**SEL)["peak_vs_1f1b"] <= 0.3 + EPS
    full = pb.generate("auto", 4, 8, memory="0.3x")
    assert full.selective == [] and full.recompute
    with pytest.raises(ValueError, match=r"selectively.*give selective=.*selective_keep="):
        s.simulate()
    with pytest.raises(ValueError, match=r"selective_keep="):
        s.timeline()


def test_with_recompute_selective_and_what_it_keeps():
    plain = pb.generate("1f1b", 2, 4)
    sel = plain.with_recompute([0, 1], selective=True)
    full = plain.with_recompute([0, 1])
    assert sel.selective == [0, 1] and sel.recompute == [0, 1]
    assert full.selective == [] and sel != full  # the same passes, another recomputation
    assert sel.with_recompute([1]).selective == [0]  # made full
    assert sel.without_recompute() == plain and sel.without_recompute().selective == []
    # the kept fraction reaches the simulation: selective keeps more than full recomputation
    keeps = [
        sel.simulate(selective=0.2, selective_keep=k)["max_peak_activation"] for k in (0.1, 0.9)
    ]
    assert keeps[0] < keeps[1]
    assert full.simulate()["max_peak_activation"] <= keeps[0] + EPS
    assert json.loads(sel.to_json())["selective"] == [0, 1]


def test_json_keeps_the_selective_stages(tmp_path):
    sel = pb.generate("zb-h1", 2, 4).with_recompute([1], selective=True)
    path = tmp_path / "sel.json"
    path.write_text(sel.to_json())
    back = pb.load(path)
    assert back == sel and back.selective == [1]


# --- keyword checks ---


def _every_call():
    s = pb.generate("1f1b", 2, 4)
    return [
        ("generate", lambda **kw: pb.generate("auto", 2, 4, memory="0.5x", **kw)),
        ("simulate", s.simulate),
        ("timeline", s.timeline),
    ]


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_bad_offload_time_is_refused(value):
    for _, call in _every_call():
        with pytest.raises(ValueError, match=r"^offload=\S+ is not a time"):
            call(offload=value)


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"selective": 0.5}, r"^selective without selective_keep:.*together, or neither"),
        ({"selective_keep": 0.5}, r"^selective_keep without selective:.*together, or neither"),
        ({"selective": 0.5, "selective_keep": 1.5}, r"selective_keep=1.5 is not a fraction"),
        ({"selective": -0.5, "selective_keep": 0.5}, r"selective=-0.5 is not a time"),
        ({"selective": math.nan, "selective_keep": 0.5}, r"selective=NaN is not a time"),
    ],
)
def test_bad_selective_keywords_are_refused(kw, message):
    for _, call in _every_call():
        with pytest.raises(ValueError, match=message):
            call(**kw)


def test_the_uniform_keywords_are_refused_with_a_stage_cost_file():
    table = json.dumps(
        {
            "format": "pipeblocks-stage-costs",
            "version": 1,
            "stages": [{"f": 1, "b": 1, "w": 1}, {"f": 1, "b": 1, "w": 1}],
        }
    )
    s = pb.generate("1f1b", 2, 4)
    s.simulate(stage_costs=table)  # the table itself is fine
    with pytest.raises(
        ValueError,
        match=r"^offload= applies to the uniform costs f, b, w, not to stage_costs: a stage-cost "
        r"file gives these figures for each stage",
    ):
        s.simulate(stage_costs=table, offload=1.0)
    with pytest.raises(ValueError, match=r"^offload=, selective= and selective_keep= apply"):
        s.simulate(stage_costs=table, offload=1.0, **SEL)


def test_zero_and_valid_values_are_accepted():
    s = pb.generate("1f1b", 2, 4)
    base = s.simulate()
    # a plain schedule does not use the figures: the same result
    assert s.simulate(offload=0.0, selective=0.0, selective_keep=0.0) == base
    assert s.simulate(offload=2.5, selective=0.3, selective_keep=1.0) == base
