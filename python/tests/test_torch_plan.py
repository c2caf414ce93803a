"""pipeblocks schedules as PyTorch sees them, without running them: CSV loading, lowering to
communication, and the checks that refuse stages a schedule cannot run (no process group)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from torch.distributed.pipelining.schedules import _PipelineScheduleRuntime  # noqa: E402

import pipeblocks as pb  # noqa: E402
import pipeblocks.torch as pbt  # noqa: E402
from conftest import LOCAL, fake_stages, make_plan, torch_schedule_names  # noqa: E402

NAMES = torch_schedule_names() + list(LOCAL)
SIZES = [(2, 4), (4, 8), (3, 6), (4, 5)]


def _plan_or_skip(name, p, m):
    try:
        return make_plan(name, p, m)
    except ValueError as e:  # a size the generator does not support (e.g. m < p)
        pytest.skip(f"{name} at p={p}, m={m}: {e}")


@pytest.mark.parametrize("p,m", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_exported_csv_loads_in_torch_and_round_trips(name, p, m, tmp_path):
    plan = _plan_or_skip(name, p, m)
    path = tmp_path / "schedule.csv"
    plan.to_torch_csv(path)
    # PyTorch's own loader: validates the order, infers the placement, inserts the comms.
    runtime = _PipelineScheduleRuntime(fake_stages(plan, 0), m)
    runtime._load_csv(str(path))
    for rank in range(p):
        loaded = [str(a) for a in runtime.pipeline_order[rank] if a is not None]
        assert loaded == plan.actions(rank)
    assert [runtime.stage_index_to_group_rank[s] for s in range(plan.stages)] == plan.stage_ranks
    assert len(runtime.pipeline_order_with_comms) == p
    # and our reader gives back the same schedule
    assert pb.load(path) == plan


@pytest.mark.parametrize("p,m", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_every_rank_builds_its_runtime_without_communication(name, p, m):
    plan = _plan_or_skip(name, p, m)
    for rank in range(p):
        sched = pbt.PipeblocksSchedule(fake_stages(plan, rank), m, None, plan)
        assert [str(a) for a in sched.pipeline_order[rank]] == plan.actions(rank)
        comms = {a.computation_type.value for a in sched.pipeline_order_with_comms[rank]}
        if p > 1:
            assert {"SEND_F", "RECV_F"} & comms
    assert not dist.is_initialized()


def _mismatch(plan, stages, m=None):
    with pytest.raises(pbt.StageMismatchError) as info:
        pbt.PipeblocksSchedule(stages, plan.microbatches if m is None else m, None, plan)
    assert isinstance(info.value, ValueError)
    assert not dist.is_initialized()
    return str(info.value)


def test_wrong_world_size_is_refused():
    plan = pb.generate("1f1b", 4, 8)
    msg = _mismatch(plan, fake_stages(plan, 0, world=2))
    assert "is for 4 ranks, but the pipeline group has 2" in msg and "devices=2" in msg


def test_wrong_stage_count_is_refused():
    plan = pb.generate("interleaved-1f1b", 2, 4, chunks=2)
    msg = _mismatch(plan, fake_stages(plan, 0, stage_ids=[0], num_stages=2))
    assert "needs the model in 4 stages" in msg and "num_stages=2" in msg


def test_v_stages_for_a_looped_schedule_are_refused():
    plan = pb.generate("interleaved-1f1b", 4, 8, chunks=2)  # rank 0 holds 0 and 4
    msg = _mismatch(plan, fake_stages(plan, 0, stage_ids=[0, 7]))
    assert "rank 0 holds stages [0, 7]" in msg and "puts stages [0, 4] on rank 0" in msg
    assert "looped placement" in msg


def test_looped_stages_for_a_v_schedule_are_refused():
    plan = LOCAL["v-gpipe(csv)"](4, 4)  # rank 1 holds 1 and 6
    assert plan.placement == "v-shape"
    msg = _mismatch(plan, fake_stages(plan, 1, stage_ids=[1, 5]))
    assert "rank 1 holds stages [1, 5]" in msg and "puts stages [1, 6] on rank 1" in msg


def test_wrong_microbatch_count_is_refused():
    plan = pb.generate("1f1b", 2, 4)
    msg = _mismatch(plan, fake_stages(plan, 0), m=6)
    assert "has 4 microbatches, but n_microbatches=6" in msg


def test_no_stages_is_refused():
    plan = pb.generate("1f1b", 2, 4)
    assert "no pipeline stages given" in _mismatch(plan, [])
    with pytest.raises(pbt.StageMismatchError, match="no pipeline stages given"):
        pbt.schedule([], 4, None, name="1f1b")


def test_schedule_by_name_sizes_itself_to_the_stages():
    ref = pb.generate("interleaved-1f1b", 2, 4, chunks=3)
    stages = fake_stages(ref, 1)
    sched = pbt.schedule(stages, 4, None, name="interleaved-1f1b")
    assert sched.pipeblocks_schedule == ref  # chunks taken from the 3 local stages
    with pytest.raises(ValueError, match="unknown schedule"):
        pbt.schedule(stages, 4, None, name="interleaved")
    with pytest.raises(TypeError, match="only apply to a schedule name"):
        pbt.schedule(stages, 4, None, name=ref, chunks=3)


@pytest.mark.parametrize("name", ["zb-v", "auto"])
def test_schedule_by_name_gives_chunks_only_to_schedules_that_read_them(name):
    # two local stages of a V-shape schedule: no chunks=2 for generators without chunks
    ref = pb.generate(name, 2, 4)
    assert len(ref.stage_ids(0)) == 2
    sched = pbt.schedule(fake_stages(ref, 0), 4, None, name=name)
    assert sched.pipeblocks_schedule == ref
    with pytest.raises(ValueError, match=f"chunks=2 does not apply to schedule `{name}`"):
        pbt.schedule(fake_stages(ref, 0), 4, None, name=name, chunks=2)


def test_pairs_reach_pytorch_as_overlap_actions():
    plan = pb.generate("dualpipev", 4, 8)
    for rank in range(4):
        sched = pbt.PipeblocksSchedule(fake_stages(plan, rank), 8, None, plan)
        pairs = [a for a in sched.pipeline_order[rank] if a.sub_actions is not None]
        assert pairs and all(a.computation_type.value == "OVERLAP_F_B" for a in pairs)
        # lowered with its sends and receives around it, still one action
        lowered = sched.pipeline_order_with_comms[rank]
        assert sum(a.sub_actions is not None for a in lowered) == len(pairs)
        # with one FSDP stage resident at a time PyTorch refuses a pair; its halves run in turn
        one = pbt.PipeblocksSchedule(fake_stages(plan, rank), 8, None, plan, max_active_stages=1)
        halves = [str(x) for a in sched.pipeline_order[rank] for x in (a.sub_actions or (a,))]
        assert [str(a) for a in one.pipeline_order[rank]] == halves
        assert not any(a.sub_actions for a in one.pipeline_order_with_comms[rank])
    assert not dist.is_initialized()


def test_bidirectional_schedules_are_refused_before_any_transfer():
    names = [n for n in pb.names() if _bidirectional(n)]
    if not names:
        pytest.skip("the engine has no bidirectional schedule")
    for name in names:
        plan = pb.generate(name, 2, 4)
        for rank in range(2):
            with pytest.raises(ValueError, match="two pipelines.*use `dualpipev`"):
                pbt.PipeblocksSchedule(fake_stages(plan, rank), 4, None, plan)
            with pytest.raises(ValueError, match="two pipelines"):
                pbt.schedule(fake_stages(plan, rank), 4, None, name=name)
    assert not dist.is_initialized()


def _bidirectional(name):
    try:
        return pb.generate(name, 2, 4).placement == "bidirectional"
    except ValueError:
        return False
