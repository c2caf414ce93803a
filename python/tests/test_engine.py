"""The engine through Python: generation, actions, simulation, formats and errors (no torch)."""

from __future__ import annotations

import json
import re

import pytest

import pipeblocks as pb

ACTION = re.compile(r"^(\d+)([FIWB])(\d+)$")


def test_registry_lists_the_classic_schedules():
    names = pb.names()
    for name in ("gpipe", "1f1b", "interleaved-1f1b", "bfs", "zb-h1", "zb-h2"):
        assert name in names
    for entry in pb.schedules():
        assert entry["summary"] and entry["constraints"]


@pytest.mark.parametrize("name", ["1f1b", "zb-h1", "interleaved-1f1b"])
@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (3, 5)])
def test_actions_cover_every_stage_and_microbatch(name, p, m):
    if name == "interleaved-1f1b" and m % p:
        with pytest.raises(ValueError, match="multiple of the devices"):
            pb.generate(name, p, m)
        return
    s = pb.generate(name, p, m)
    seen = {}
    for rank in range(p):
        for a in s.actions(rank):
            stage, letter, mb = ACTION.match(a).groups()
            stage, mb = int(stage), int(mb)
            assert s.stage_ranks[stage] == rank
            assert stage in s.stage_ids(rank)
            seen.setdefault((stage, mb), []).append(letter)
    assert len(seen) == s.stages * m
    for letters in seen.values():
        assert letters[0] == "F"
        assert sorted(letters[1:]) in (["B"], ["I", "W"])
    assert s.splits_backward == (name == "zb-h1")


def test_actions_and_passes_spell_the_same_order():
    s = pb.generate("zb-h1", 4, 8)
    to_torch = {"F": "F", "B": "I", "W": "W", "BW": "B"}
    for rank in range(4):
        converted = []
        for p in s.passes(rank):
            kind, stage, mb = re.match(r"^(BW|F|B|W)(\d+)\.(\d+)$", p).groups()
            converted.append(f"{stage}{to_torch[kind]}{mb}")
        assert converted == s.actions(rank)


def test_stage_ids_follow_the_placement():
    s = pb.generate("interleaved-1f1b", 4, 8, chunks=3)
    assert s.placement == "looped"
    assert s.stages == 12
    assert s.stage_ids(1) == [1, 5, 9]
    assert pb.generate("1f1b", 4, 8).stage_ids(2) == [2]


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (8, 32)])
def test_simulate_gives_1f1b_bubble_formula(p, m):
    r = pb.generate("1f1b", p, m).simulate()
    assert r["bubble_rate"] == pytest.approx((p - 1) / (m + p - 1))
    assert r["max_peak_activation"] == pytest.approx(min(p, m))
    assert r["peak_vs_1f1b"] == pytest.approx(1.0)
    for key in ("makespan", "busy", "peak_activation", "p2p_transfers", "p2p_vs_1f1b", "passes"):
        assert key in r


def test_simulate_costs_change_the_makespan():
    s = pb.generate("zb-h1", 4, 8)
    unit = s.simulate()["makespan"]
    slow_backward = s.simulate(b=2.0)["makespan"]
    assert slow_backward > unit
    assert s.simulate(comm=0.5)["makespan"] > unit


def test_csv_and_json_round_trip(tmp_path):
    for name in pb.names():
        try:
            s = pb.generate(name, 4, 8)
        except ValueError:
            continue
        path = tmp_path / f"{name}.csv"
        s.to_torch_csv(path)
        assert pb.load(path) == s
        assert pb.parse_torch_csv(s.torch_csv()) == s
        jpath = tmp_path / f"{name}.json"
        jpath.write_text(s.to_json())
        back = pb.load(jpath)
        assert back == s and back.name == s.name


def test_equality_sees_order_changes():
    a = pb.generate("1f1b", 4, 8)
    b = pb.generate("gpipe", 4, 8)
    assert a != b
    assert a == pb.generate("1f1b", 4, 8)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: pb.generate("zb-x", 4, 8), "unknown schedule `zb-x`"),
        (lambda: pb.generate("1f1b", 0, 8), "devices must be a positive integer"),
        (lambda: pb.generate("1f1b", 4, -1), "microbatches must be a positive integer"),
        (lambda: pb.generate("1f1b", 4, 8, f=-1.0), "not negative"),
        (lambda: pb.generate("1f1b", 4, 8, memory="lots"), "memory budget"),
        (lambda: pb.generate("1f1b", 4, 8).actions(4), "rank 4 is out of range"),
        (lambda: pb.generate("1f1b", 4, 8).stage_ids(-1), "rank -1 is out of range"),
        (lambda: pb.parse_torch_csv("0F0,0X1\n"), "not a compute action"),
        (lambda: pb.parse_torch_csv("0B0,0F0\n1F0,1B0\n"), "invalid schedule"),
        (lambda: pb.generate("interleaved-1f1b", 4, 6), "(microbatches=8)"),
        (lambda: pb.generate("zeropp", 2, 4, group=5), "(group=4)"),
        (lambda: pb.generate("1f1b", 4, 8, stage_costs="{}"), "malformed stage costs"),
        (lambda: pb.generate("1f1b", 4, 8, b_release=2.0), "(b_release=0)"),
    ],
)
def test_engine_errors_are_value_errors_with_its_message(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_load_missing_file_is_os_error(tmp_path):
    with pytest.raises(OSError, match="cannot read"):
        pb.load(tmp_path / "nope.csv")


def test_package_docstring_examples_hold():
    import doctest

    failures, tried = doctest.testmod(pb, verbose=False)
    assert tried > 0 and failures == 0


HEAVY_LAST = json.dumps(
    {
        "format": "pipeblocks-stage-costs",
        "version": 1,
        "comm": 0.05,
        "stages": [{"f": 1, "b": 1.1, "w": 0.9}] * 3 + [{"f": 1.5, "b": 1.65, "w": 1.35, "activation": 1.3}],
    }
)


def test_stage_costs_reach_generation_and_simulation():
    s = pb.generate("1f1b", 4, 16)
    r = s.simulate(stage_costs=HEAVY_LAST)
    assert r["bottleneck"]["stage"] == 3
    assert r["busy"][3] > 1.4 * r["busy"][0]
    assert r["peak_activation"][3] == pytest.approx(1.3)
    auto = pb.generate("auto", 4, 16, stage_costs=HEAVY_LAST, memory="1x")
    assert auto.simulate(stage_costs=HEAVY_LAST)["max_peak_activation"] <= 4.0 + 1e-9
