"""Shared lists and helpers of the Python tests."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

if os.environ.get("PIPEBLOCKS_REQUIRE_TORCH") == "1":
    # CI sets this: a missing or broken torch must fail the run, not skip the torch tests.
    import torch  # noqa: F401
    import torch.distributed.pipelining  # noqa: F401

import pipeblocks as pb

# Every schedule the torch tests run: the list first, then whatever else the engine's
# registry holds. Names the engine does not know (yet) are skipped, so schedules added to the
# registry later are covered as soon as they are merged.
WANTED = ["1f1b", "zb-h1", "zb-v", "v-min", "v-half", "v-zb", "zeropp"]


def torch_schedule_names() -> list[str]:
    names = list(WANTED)
    names += [n for n in pb.names() if n not in names]
    return names


def v_gpipe_csv(p: int, m: int, split: bool) -> str:
    """A GPipe-style order on the V-shape placement (rank r holds stages r and 2p-1-r), written
    here so that the V placement is covered even before the engine has V generators. With
    ``split`` the backward runs as I then W passes."""
    rows = []
    for r in range(p):
        down, up = r, 2 * p - 1 - r
        row = [f"{down}F{k}" for k in range(m)] + [f"{up}F{k}" for k in range(m)]
        if split:
            row += [f"{up}I{k}" for k in range(m)] + [f"{down}I{k}" for k in range(m)]
            row += [f"{up}W{k}" for k in range(m)] + [f"{down}W{k}" for k in range(m)]
        else:
            row += [f"{up}B{k}" for k in range(m)] + [f"{down}B{k}" for k in range(m)]
        rows.append(",".join(row))
    return "\n".join(rows) + "\n"


# Test-local schedules (not in the engine's registry), built from CSV text.
LOCAL = {
    "v-gpipe(csv)": lambda p, m: pb.parse_torch_csv(v_gpipe_csv(p, m, False), "v-gpipe"),
    "v-gpipe-split(csv)": lambda p, m: pb.parse_torch_csv(v_gpipe_csv(p, m, True), "v-gpipe-split"),
}


def make_plan(name: str, p: int, m: int) -> pb.Schedule:
    """The schedule ``name`` for p ranks and m microbatches, to run on PyTorch; skips names the
    engine lacks and bidirectional schedules (two pipelines, which PyTorch cannot express:
    ``test_torch_plan`` checks that they are refused)."""
    if name in LOCAL:
        return LOCAL[name](p, m)
    if name not in pb.names():
        pytest.skip(f"the engine has no schedule `{name}` yet")
    plan = pb.generate(name, p, m)
    if plan.placement == "bidirectional":
        pytest.skip(f"`{name}` runs two pipelines (bidirectional placement), which PyTorch cannot run")
    return plan


def fake_stages(plan: pb.Schedule, rank: int, stage_ids=None, num_stages=None, world=None):
    """Stand-ins for ``PipelineStage`` with only the attributes the schedule reads at build time;
    they need no process group, so anything that works with them does no communication."""
    ids = plan.stage_ids(rank) if stage_ids is None else stage_ids
    return [
        SimpleNamespace(
            stage_index=s,
            num_stages=plan.stages if num_stages is None else num_stages,
            group_rank=rank,
            group_size=plan.devices if world is None else world,
            submod=None,
            stage_index_to_group_rank={},
        )
        for s in ids
    ]
