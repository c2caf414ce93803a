"""pipeblocks schedules run by torch.distributed on 2 and 4 CPU processes (gloo): one training
step gives the gradients and losses of the unpipelined model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import pipeblocks as pb  # noqa: E402
import pipeblocks.torch as pbt  # noqa: E402
from _dist import PipelineStage, make_pieces, pipelined_grads, reference_grads, run_ranks  # noqa: E402
from conftest import LOCAL, make_plan, torch_schedule_names  # noqa: E402

TOLERANCE = 1e-5


def _plan(name, world):
    # 2 microbatches per rank, then more if a generator asks for it.
    errors = []
    for m in (2 * world, 3 * world, 4 * world):
        try:
            return make_plan(name, world, m)
        except ValueError as e:
            errors.append(f"m={m}: {e}")
    pytest.fail(f"{name} has no schedule for {world} ranks: " + "; ".join(errors))


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", torch_schedule_names() + list(LOCAL))
def test_gradients_match_the_unpipelined_model(name, world):
    plan = _plan(name, world)
    results = run_ranks(world, pipelined_grads, plan)
    ref, ref_losses = reference_grads(plan.stages, plan.microbatches)

    got = {}
    for rank, res in enumerate(results):
        assert sorted(res["grads"]) == plan.stage_ids(rank)
        got.update(res["grads"])
        # every rank ran pipeblocks' order, as the CSV export writes it
        for r in range(world):
            assert res["order"][r] == plan.actions(r)
    assert sorted(got) == list(range(plan.stages))
    for stage, grads in got.items():
        for g, want in zip(grads, ref[stage]):
            assert (g - want).abs().max().item() <= TOLERANCE, f"stage {stage}"
    last_rank = plan.stage_ranks[-1]
    assert results[last_rank]["losses"] == pytest.approx(ref_losses, abs=TOLERANCE)


def _refuse_wrong_placement(rank, world):
    plan = pb.generate("interleaved-1f1b", world, 2 * world, chunks=2)
    pieces = make_pieces(plan.stages)
    v_ids = [rank, 2 * world - 1 - rank]  # V-shape stages, not the looped ones
    stages = [PipelineStage(pieces[s], s, plan.stages, torch.device("cpu")) for s in v_ids]
    try:
        pbt.schedule(stages, plan.microbatches, None, name="interleaved-1f1b")
    except pbt.StageMismatchError as e:
        return str(e)
    return None


def test_mismatch_is_raised_on_every_rank_without_hanging():
    messages = run_ranks(2, _refuse_wrong_placement)
    assert messages[0] and "puts stages [0, 2] on rank 0" in messages[0]
    assert messages[1] and "puts stages [1, 3] on rank 1" in messages[1]
