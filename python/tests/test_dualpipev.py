"""pipeblocks' dualpipev against PyTorch's own ScheduleDualPipeV (issue 21): the same per-rank
order at every size, PyTorch's overlapped forward-backward pairs read as their forward then
their backward (pipeblocks runs the halves of a pair in turn until its IR has the pair)."""

from __future__ import annotations

import pytest

import pipeblocks as pb

torch = pytest.importorskip("torch")
schedules = pytest.importorskip("torch.distributed.pipelining.schedules")


def torch_order(n: int, m: int) -> list[list[str]]:
    cls = getattr(schedules, "ScheduleDualPipeV", None)
    if cls is None or not hasattr(cls, "_calculate_single_rank_operations"):
        pytest.skip("this torch has no ScheduleDualPipeV with per-rank operations")
    # The per-rank order needs only the sizes; the stages and process group are not built.
    o = object.__new__(cls)
    o.pp_group_size = n
    o._n_microbatches = m
    out = []
    for r in range(n):
        row = []
        for a in o._calculate_single_rank_operations(r):
            if a is None:
                continue
            subs = getattr(a, "sub_actions", None) or (a,)
            row += [str(x) for x in subs]
        out.append(row)
    return out


@pytest.mark.parametrize("n,m", [(1, 2), (2, 4), (2, 7), (3, 6), (3, 9), (4, 8), (4, 11), (5, 13), (8, 16), (8, 20)])
def test_dualpipev_matches_pytorch_schedule(n, m):
    ours = pb.generate("dualpipev", n, m)
    assert [ours.actions(r) for r in range(n)] == torch_order(n, m)
