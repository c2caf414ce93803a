"""Offload and selective recomputation on torch.distributed: a schedule that offloads (O and L
passes) is refused before anything runs, naming ``without_offload()``, which then runs and gives
the unpipelined gradients; a schedule with selective stages needs ``recompute=`` given
explicitly (2 CPU processes, gloo)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import pipeblocks as pb  # noqa: E402
import pipeblocks.torch as pbt  # noqa: E402
from _dist import check_grads, pipelined_grads, run_ranks  # noqa: E402
from conftest import fake_stages  # noqa: E402


def _offloading():
    plan = pb.generate("auto", 2, 4, memory="0.5x", offload=0.5)
    assert plan.offloaded
    return plan


def test_an_offloading_schedule_is_refused_with_the_way_out():
    plan = _offloading()
    for rank in range(2):
        for build in (
            lambda: pbt.schedule(fake_stages(plan, rank), 4, None, name=plan),
            lambda: pbt.PipeblocksSchedule(fake_stages(plan, rank), 4, None, plan),
        ):
            with pytest.raises(ValueError) as e:
                build()
            msg = str(e.value)
            assert "offloads" in msg and "no offload action" in msg
            assert "plan.without_offload()" in msg
            # the refusal is the offload one, not a stage mismatch or the engine's CSV message
            assert not isinstance(e.value, pbt.StageMismatchError)
            assert "schedule CSV" not in msg


def test_generator_options_that_make_an_offloading_plan_are_refused_too():
    ref = _offloading()
    with pytest.raises(ValueError, match=r"plan\.without_offload\(\)"):
        pbt.schedule(fake_stages(ref, 0), 4, None, name="auto", memory="0.5x", offload=0.5)
    # without the link the same options fit by recomputation, which runs
    plain = pb.generate("auto", 2, 4, memory="0.5x")
    assert not plain.offloaded
    pbt.schedule(fake_stages(plain, 0), 4, None, name="auto", memory="0.5x")


def test_without_offload_gives_the_unpipelined_gradients():
    plan = _offloading().without_offload()
    results = run_ranks(2, pipelined_grads, plan)
    check_grads(plan, results, [plan.actions(r) for r in range(2)])


def _selective():
    # stage 1 recomputes selectively, stage 0 in full
    plan = pb.generate("1f1b", 2, 4).with_recompute([1], selective=True).with_recompute([0])
    assert plan.selective == [1] and plan.recompute == [0, 1]
    return plan


def test_selective_stages_need_an_explicit_recompute():
    plan = _selective()
    with pytest.raises(ValueError) as e:
        pbt.schedule(fake_stages(plan, 0), 4, None, name=plan)
    msg = str(e.value)
    assert "recomputes stages [1] selectively" in msg
    assert "checkpoints whole stage modules (full recomputation)" in msg
    assert "recompute=[0, 1]" in msg and "recompute=[0]" in msg
    for rank in range(2):
        sched = pbt.PipeblocksSchedule(fake_stages(plan, rank), 4, None, plan, recompute=[0])
        assert sched.checkpointed_stages == [s for s in [0] if s in plan.stage_ids(rank)]


def test_selective_stages_checkpointed_whole_give_the_unpipelined_gradients():
    plan = _selective()
    results = run_ranks(2, pipelined_grads, plan, None, plan.recompute)
    check_grads(plan, results, [plan.actions(r) for r in range(2)])
    assert sorted(s for res in results for s in res["checkpointed"]) == [0, 1]
