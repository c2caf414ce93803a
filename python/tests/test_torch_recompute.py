"""Recomputation on torch.distributed (2 and 4 CPU processes, gloo): the stages a pipeblocks
schedule recomputes (its R passes), or those ``recompute=`` names, run under activation
checkpointing, which reruns their forward in the backward, and the gradients stay those of the
unpipelined model."""

from __future__ import annotations

import copy
import re

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributed.pipelining.schedules import _Action  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import pipeblocks as pb  # noqa: E402
import pipeblocks.torch as pbt  # noqa: E402
from _dist import (  # noqa: E402
    PipelineStage,
    check_grads,
    loss_fn,
    make_batch,
    make_pieces,
    pipelined_grads,
    run_ranks,
)
from conftest import fake_stages  # noqa: E402

# (schedule, the stages to recompute: "even", "all"); every placement kind, fused (1f1b,
# interleaved-1f1b) and split (zb-h1, zb-v) backwards, and overlapped pairs (dualpipev).
RECOMPUTED = [
    ("1f1b", "all"),
    ("zb-h1", "even"),
    ("interleaved-1f1b", "even"),
    ("zb-v", "all"),
    ("dualpipev", "even"),  # overlapped pairs (OVERLAP_F_B) next to checkpointed stages
]


def _generate(name, world):
    kw = {"chunks": 2} if name == "interleaved-1f1b" else {}
    return pb.generate(name, world, 2 * world, **kw)


def _with_r(name, world, which):
    plain = _generate(name, world)
    stages = list(range(plain.stages)) if which == "all" else list(range(0, plain.stages, 2))
    return plain.with_recompute(stages)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name,which", RECOMPUTED)
def test_a_schedule_with_recompute_passes_gives_the_unpipelined_gradients(name, which, world):
    plan = _with_r(name, world, which)
    assert plan.recompute
    results = run_ranks(world, pipelined_grads, plan)
    # the runtime ran pipeblocks' order without the R passes, and checkpointed the stages the
    # schedule recomputes
    check_grads(plan, results, [plan.actions(r) for r in range(world)])
    for rank, res in enumerate(results):
        assert res["checkpointed"] == [s for s in plan.stage_ids(rank) if s in plan.recompute]
        for r in range(world):
            assert not any(re.search(r"\dR\d", a) for a in res["order"][r])


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", ["1f1b", "zb-v"])
def test_recompute_all_on_a_plain_schedule_gives_the_unpipelined_gradients(name, world):
    plan = _generate(name, world)
    assert plan.recompute == []
    results = run_ranks(world, pipelined_grads, plan, None, "all")
    check_grads(plan, results, [plan.actions(r) for r in range(world)])
    for rank, res in enumerate(results):
        assert res["checkpointed"] == plan.stage_ids(rank)


def test_auto_below_v_min_memory_runs_with_checkpointing():
    # p=2: every named schedule holds 1F1B's memory there; auto reaches 0.7x by recomputing
    # some stages (of a looped base), so that both checkpointed and plain stages run
    plan = pb.generate("auto", 2, 4, memory="0.7x")
    assert plan.recompute and len(plan.recompute) < plan.stages
    results = run_ranks(2, pipelined_grads, plan)
    check_grads(plan, results, [plan.actions(r) for r in range(2)])
    assert sorted(s for res in results for s in res["checkpointed"]) == plan.recompute


def test_actions_parse_as_pytorch_actions_and_hold_no_recompute():
    plan = _with_r("zb-h1", 4, "all")
    for r in range(4):
        acts = plan.actions(r)
        assert len(acts) == len(plan.passes(r)) - plan.microbatches  # the R passes left out
        for a in acts:
            assert _Action.from_str(a).computation_type.name != "R"
            assert str(_Action.from_str(a)) == a


class Counting(nn.Module):
    """A stage module that counts how often its forward runs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def _forward_calls(rank, world, plan, recompute):
    """The forward calls of each of this rank's stage modules in a training step (the second:
    the first also infers shapes) and the gradients of that step."""
    pieces = [Counting(p) for p in make_pieces(plan.stages)]
    mine = plan.stage_ids(rank)
    stages = [PipelineStage(pieces[s], s, plan.stages, torch.device("cpu")) for s in mine]
    sched = pbt.schedule(stages, plan.microbatches, loss_fn, name=plan, recompute=recompute)
    x, y = make_batch(plan.microbatches)
    args = (x,) if 0 in mine else ()
    kwargs = {"target": y} if plan.stages - 1 in mine else {}
    losses = []
    for _ in range(2):
        losses = []
        for s in mine:
            pieces[s].calls = 0
            pieces[s].zero_grad(set_to_none=True)
        sched.step(*args, losses=losses, **kwargs)
    return {
        "calls": {s: pieces[s].calls for s in mine},
        "grads": {s: [p.grad.clone() for p in pieces[s].parameters()] for s in mine},
        "losses": [float(v.detach()) for v in losses],
        "order": {r: [str(a) for a in sched.pipeline_order[r]] for r in range(world)},
    }


@pytest.mark.parametrize(
    "name,which,recompute",
    [
        ("1f1b", "even", None),  # the schedule's R passes: stage 0 of 2
        ("1f1b", None, [1]),  # an explicit list on a plain schedule
        ("1f1b", "all", "none"),  # R passes in the schedule, checkpointing turned off
        ("zb-h1", "all", None),  # split backward
    ],
)
def test_checkpointed_stages_rerun_their_forward_in_the_backward(name, which, recompute):
    plan = _with_r(name, 2, which) if which else _generate(name, 2)
    results = run_ranks(2, _forward_calls, plan, recompute)
    check_grads(plan, results, [plan.actions(r) for r in range(2)])
    checkpointed = plan.recompute if recompute is None else [] if recompute == "none" else recompute
    m = plan.microbatches
    calls = {s: n for res in results for s, n in res["calls"].items()}
    for s, n in calls.items():
        if s not in checkpointed:
            assert n == m, f"stage {s}"  # once per microbatch
        elif not plan.splits_backward:
            assert n == 2 * m, f"stage {s}"  # and again in its backward
        else:
            # again in the input backward (I) and again in the weight backward (W), each a
            # backward of its own; the first stage has no input gradient, only its W reruns it
            assert n == (2 if s == 0 else 3) * m, f"stage {s}"


def test_checkpointing_follows_the_latest_schedule_and_survives_copies():
    module = Counting(make_pieces(1)[0])
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    pbt._set_checkpointing(module, True)
    pbt._set_checkpointing(module, True)  # idempotent
    module(x).sum().backward()
    assert module.calls == 2
    twin = copy.deepcopy(module)  # a checkpointed copy of itself, not a view of the original
    twin.calls = module.calls = 0
    twin(x).sum().backward()
    assert (twin.calls, module.calls) == (2, 0)
    pbt._set_checkpointing(module, False)
    assert "forward" not in module.__dict__
    module.calls = 0
    module(x).sum().backward()
    assert module.calls == 1
    with torch.no_grad():  # no backward to recompute for: the plain forward
        pbt._set_checkpointing(module, True)
        module.calls = 0
        module(x)
        assert module.calls == 1


@pytest.mark.parametrize(
    "recompute,message",
    [
        ([4], r"recompute=\[4\]: 4 is not a stage of the schedule `1f1b` \(4 stages"),
        ([True], r"True is not a stage"),
        ("some", r"recompute='some' is not a choice"),
        (3, r"recompute=3 is not a list of stages: give stage ids from 0 to 3"),
        ([1.0], r"1.0 is not a stage"),
    ],
)
def test_a_bad_recompute_option_is_refused(recompute, message):
    plan = pb.generate("1f1b", 4, 8)
    with pytest.raises(ValueError, match=message):
        pbt.schedule(fake_stages(plan, 0), 8, None, name=plan, recompute=recompute)


def _build_either(rank, world, plans):
    pieces = make_pieces(plans[rank].stages)
    mine = plans[rank].stage_ids(rank)
    stages = [PipelineStage(pieces[s], s, plans[rank].stages, torch.device("cpu")) for s in mine]
    try:
        pbt.schedule(stages, plans[rank].microbatches, None, name=plans[rank])
    except ValueError as e:
        return type(e).__name__, str(e)
    return None, None


def test_ranks_disagreeing_on_recompute_all_raise():
    plain = pb.generate("1f1b", 2, 4)
    results = run_ranks(2, _build_either, [plain, plain.with_recompute([1])])
    assert [cls for cls, _ in results] == ["ScheduleMismatchError"] * 2
    assert results[0][1] == results[1][1]
    assert (
        "rank 1 holds recompute passes on stages [1], rank 0 holds recompute passes on stages []"
        in results[0][1]
    )
