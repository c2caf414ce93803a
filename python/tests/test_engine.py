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
        assert set(entry["uses"]) <= {"chunks", "memory", "group", "costs"}


def test_registry_says_which_options_each_schedule_reads():
    uses = {e["name"]: e["uses"] for e in pb.schedules()}
    assert uses["1f1b"] == [] and uses["gpipe"] == []
    assert uses["interleaved-1f1b"] == ["chunks"] and uses["bfs"] == ["chunks"]
    assert uses["zb-h1"] == ["costs"]
    assert uses["auto"] == ["memory", "costs"]
    assert uses["zeropp"] == ["chunks", "memory", "group", "costs"]


OPTIONS = {"chunks": 2, "memory": "2x", "group": 4}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name", pb.names())
def test_an_option_a_schedule_does_not_read_is_refused(name, option):
    uses = next(e["uses"] for e in pb.schedules() if e["name"] == name)
    users = [e["name"] for e in pb.schedules() if option in e["uses"]]
    kw = {option: OPTIONS[option]}
    if option in uses:
        s = pb.generate(name, 4, 8, **kw)  # read, so accepted
        assert s.devices == 4 and s.microbatches == 8
    else:
        with pytest.raises(ValueError) as info:
            pb.generate(name, 4, 8, **kw)
        msg = str(info.value)
        assert f"{option}={OPTIONS[option]!r} does not apply to schedule `{name}`" in msg
        assert all(u in msg for u in users)


def test_option_refusals_name_the_schedules_that_read_them():
    cases = [
        (dict(chunks=2), "chunks=2 does not apply to schedule `1f1b`, which would ignore it: "
         "only interleaved-1f1b, bfs and zeropp use it"),
        (dict(memory="0.5x"), "memory='0.5x' does not apply to schedule `1f1b`, which would "
         "ignore it: only auto and zeropp use it"),
        (dict(group=4), "group=4 does not apply to schedule `1f1b`, which would ignore it: "
         "only zeropp uses it"),
    ]  # fmt: skip
    for kw, message in cases:
        with pytest.raises(ValueError) as info:
            pb.generate("1f1b", 4, 8, **kw)
        assert str(info.value) == message


def test_chunks_reach_the_schedules_that_read_them():
    assert pb.generate("bfs", 4, 8, chunks=3).stages == 12
    assert pb.generate("zeropp", 4, 8, chunks=3).stages == 12


@pytest.mark.parametrize("memory", [0.5, 0.999, "0.5", 0])
def test_memory_below_one_unit_is_refused_with_the_string_form(memory):
    with pytest.raises(ValueError) as info:
        pb.generate("auto", 4, 8, memory=memory)
    msg = str(info.value)
    if memory == 0:  # not a budget at all
        assert "malformed memory budget" in msg
        return
    assert msg == (
        f"memory={memory!r} is {float(memory)} activation units, below the 1 unit any device "
        f"needs; for {float(memory)} times 1F1B's peak memory write memory='{float(memory)}x'"
    )


def test_memory_as_units_and_as_a_multiple_of_1f1b():
    full = pb.generate("1f1b", 4, 8).simulate()["max_peak_activation"]
    assert full == pytest.approx(4.0)
    half = pb.generate("auto", 4, 8, memory="0.5x").simulate()["max_peak_activation"]
    assert half <= 0.5 * full + 1e-9
    assert pb.generate("auto", 4, 8, memory=1).simulate()["max_peak_activation"] <= 1.0 + 1e-9
    assert pb.generate("auto", 4, 8, memory=2.0) == pb.generate("auto", 4, 8, memory="0.5x")
    with pytest.raises(ValueError, match="memory must be a number of units"):
        pb.generate("auto", 4, 8, memory=True)
    with pytest.raises(ValueError, match="memory must be a number of units"):
        pb.generate("auto", 4, 8, memory=[1])


def test_memory_below_one_unit_is_left_to_the_engine_under_small_stage_activations():
    # with per-stage activations of 0.3 units a device may hold less than 1 unit
    light = json.dumps(
        {
            "format": "pipeblocks-stage-costs",
            "version": 1,
            "stages": [{"f": 1, "b": 1, "w": 1, "activation": 0.3}] * 4,
        }
    )
    s = pb.generate("auto", 4, 8, memory=0.5, stage_costs=light)
    assert s.simulate(stage_costs=light)["max_peak_activation"] <= 0.5 + 1e-9
    # the engine, not the Python layer, refuses what nothing reaches (recomputing every stage
    # of a looped base gets far below one stage's activation, not down to 0.01 units)
    with pytest.raises(ValueError, match=r"a memory budget of 0\.010 units per device"):
        pb.generate("auto", 4, 8, memory=0.01, stage_costs=light)


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
        if s.placement == "bidirectional":  # two pipelines: PyTorch's CSV cannot say so
            for call in (s.torch_csv, lambda: s.to_torch_csv(path), lambda: s.actions(0)):
                with pytest.raises(ValueError, match="write pipeblocks JSON"):
                    call()
            assert not path.exists()
        else:
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
        (lambda: pb.generate("zb-x", 4, 8), "unknown schedule `zb-x` (did you mean `zb-v`?); "
         "pipeblocks.names() lists every name"),
        (lambda: pb.generate("1f1b", 0, 8), "devices must be a positive integer"),
        (lambda: pb.generate("1f1b", 4, -1), "microbatches must be a positive integer"),
        (lambda: pb.generate("1f1b", 4, 8, f=-1.0), "not negative"),
        (lambda: pb.generate("auto", 4, 8, memory="lots"), "malformed memory budget"),
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
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        call()
    # Python's terms: keywords, never the command line's flags or commands
    assert not re.search(r"(^|[\s`(])--?[a-z]", str(info.value)), str(info.value)
    assert "pipeblocks list" not in str(info.value)


def test_load_missing_file_is_os_error(tmp_path):
    with pytest.raises(OSError, match="cannot read"):
        pb.load(tmp_path / "nope.csv")
    with pytest.raises(OSError, match="cannot read"):
        pb.load(tmp_path)  # a directory
    assert not issubclass(OSError, ValueError)


@pytest.mark.parametrize("content", [b"0F0,0B0\n\xff\xfe\n", b"\x80", "0F0,0B0\n".encode("utf-16")])
def test_load_file_that_is_not_utf8_is_value_error(tmp_path, content):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        pb.load(path)
    assert not isinstance(info.value, OSError)
    assert str(info.value).startswith(f"malformed schedule file {path}: not UTF-8 text")
    assert "pipeblocks JSON or PyTorch CSV" in str(info.value)


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


PAIR = re.compile(r"^\((\d+[FIWB]\d+);(\d+[FIWB]\d+)\)OVERLAP_F_B$")


def test_pairs_are_one_overlap_action_each():
    s = pb.generate("dualpipev", 4, 8)
    assert s.pairs and all(f.startswith("F") and b.startswith(("B", "BW")) for f, b in s.pairs)
    to_torch = {"F": "F", "B": "I", "W": "W", "BW": "B"}

    def torch_spelling(p):
        kind, stage, mb = re.match(r"^(BW|F|B|W)(\d+)\.(\d+)$", p).groups()
        return f"{stage}{to_torch[kind]}{mb}"

    pairs = {(torch_spelling(f), torch_spelling(b)) for f, b in s.pairs}
    seen = set()
    for rank in range(4):
        halves = []
        for a in s.actions(rank):
            if (m := PAIR.match(a)) is not None:
                seen.add(m.groups())
                halves += m.groups()
            else:
                assert ACTION.match(a), a
                halves.append(a)
        # the pairs' halves, in order, are the rank's passes
        assert halves == [torch_spelling(p) for p in s.passes(rank)]
        assert s.torch_csv().splitlines()[rank].rstrip(",").split(",") == s.actions(rank)
    assert seen == pairs and len(seen) == len(s.pairs)
    assert pb.generate("1f1b", 4, 8).pairs == []


def test_equality_sees_pairs():
    s = pb.generate("dualpipev", 2, 4)
    # the same order with every pair's halves in cells of their own: no pairs
    split = re.sub(r"\((\w+);(\w+)\)OVERLAP_F_B", r"\1,\2", s.torch_csv())
    halves = pb.parse_torch_csv(split)
    assert halves.pairs == [] and [halves.passes(r) for r in range(2)] == [s.passes(r) for r in range(2)]
    assert halves != s
    back = pb.parse_torch_csv(s.torch_csv())
    assert back == s and sorted(back.pairs) == sorted(s.pairs)


def test_overlap_fraction_prices_the_pairs():
    s = pb.generate("dualpipev", 4, 8)
    full, half, hidden = (s.simulate(overlap=o)["makespan"] for o in (1.0, 0.5, 0.0))
    assert s.simulate()["makespan"] == full
    assert hidden < half < full
    # a schedule without pairs does not care
    one = pb.generate("1f1b", 4, 8)
    assert one.simulate(overlap=0.0)["makespan"] == one.simulate()["makespan"]
    # per-stage costs take it too, and so does the timeline: a pair's halves share its span
    table = v_costs(8)
    assert s.simulate(stage_costs=table, overlap=0.0)["makespan"] < s.simulate(stage_costs=table)["makespan"]
    t = s.timeline(overlap=0.5)
    for rank in range(4):
        passes = t["passes"][rank]
        for f, b in s.pairs:
            if f in passes:
                i, j = passes.index(f), passes.index(b)
                assert j == i + 1 and t["start"][rank][i] == t["start"][rank][j]
    assert pb.generate("dualpipev", 4, 8, overlap=0.5) == s


def v_costs(stages):
    """A stage-cost table of ``stages`` equal stages with a slower backward."""
    return json.dumps(
        {
            "format": "pipeblocks-stage-costs",
            "version": 1,
            "stages": [{"f": 1, "b": 1.2, "w": 0.8}] * stages,
        }
    )


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_overlap_outside_zero_to_one_is_refused(bad):
    s = pb.generate("dualpipev", 2, 4)
    for call in (
        lambda: s.simulate(overlap=bad),
        lambda: s.timeline(overlap=bad),
        lambda: s.simulate(overlap=bad, stage_costs=v_costs(4)),
        lambda: pb.generate("zb-h1", 2, 4, overlap=bad),
    ):
        with pytest.raises(ValueError, match=r"overlap=\S+ is not a fraction.*from 0 .* to 1"):
            call()
