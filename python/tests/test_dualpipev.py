"""pipeblocks' dualpipev against PyTorch's own ScheduleDualPipeV (issue 21): the same per-rank
actions at every size, overlapped pairs included. Each of our pairs is one
``(F;B)OVERLAP_F_B`` action that must equal PyTorch's, halves and their order, and an action
PyTorch runs on its own must be on its own in ours too.

At these sizes (and at every p <= 10, 2p <= m < 2p + 15, checked once by hand) there is no
difference. The one place the two could plausibly differ agrees: DeepSeek's dualpipev.py runs
the last rank's first steady-state forward and backward in turn instead of overlapping them
("We don't overlap these two chunks to further reduce bubble size"), and PyTorch 2.15 does the
same with the same comment (``_calculate_single_rank_operations``, step 4, ``i == 0 and rank ==
num_ranks - 1``): on rank ``p-1`` both emit ``{p-1}F{p}`` then ``{p}B0`` and only then the first
pair ``({p}F{p};{p-1}B0)OVERLAP_F_B``, as pipeblocks does. Every pair overlaps a forward with a
fused backward (PyTorch's ``B``, our ``BW``), in both.
"""

from __future__ import annotations

import re

import pytest

import pipeblocks as pb

torch = pytest.importorskip("torch")
schedules = pytest.importorskip("torch.distributed.pipelining.schedules")

SIZES = [(1, 2), (2, 4), (2, 7), (3, 6), (3, 9), (4, 8), (4, 11), (5, 13), (8, 16), (8, 20)]


def torch_order(n: int, m: int) -> list[list[str]]:
    """PyTorch's actions per rank, each OVERLAP_F_B as its one action string."""
    cls = getattr(schedules, "ScheduleDualPipeV", None)
    if cls is None or not hasattr(cls, "_calculate_single_rank_operations"):
        pytest.skip("this torch has no ScheduleDualPipeV with per-rank operations")
    # The per-rank order needs only the sizes; the stages and process group are not built.
    o = object.__new__(cls)
    o.pp_group_size = n
    o._n_microbatches = m
    out = []
    for r in range(n):
        row = o._calculate_single_rank_operations(r)
        assert None not in row, f"PyTorch left an idle step on rank {r}"
        out.append([str(a) for a in row])
    return out


@pytest.mark.parametrize("n,m", SIZES)
def test_dualpipev_matches_pytorch_schedule_pairs_included(n, m):
    ours = pb.generate("dualpipev", n, m)
    theirs = torch_order(n, m)
    for r in range(n):
        assert ours.actions(r) == theirs[r], f"rank {r}"
    # the same pairs, as PyTorch parses its actions, as ours lists them
    theirs_pairs = sorted(
        tuple(str(x) for x in a.sub_actions)
        for row in theirs
        for a in map(schedules._Action.from_str, row)
        if a.sub_actions is not None
    )
    assert theirs_pairs == sorted((torch_spelling(f), torch_spelling(b)) for f, b in ours.pairs)
    assert theirs_pairs  # every size has pairs
    # the last rank's first steady-state forward and backward run in turn, then the pairs start
    assert ours.actions(n - 1)[2 * n : 2 * n + 3] == [
        f"{n - 1}F{n}",
        f"{n}B0",
        f"({n}F{n};{n - 1}B0)OVERLAP_F_B",
    ]


def torch_spelling(p: str) -> str:
    """A pass in pipeblocks' spelling (``BW3.1``) in PyTorch's (``3B1``)."""
    kind, stage, mb = re.fullmatch(r"(BW|F|B|W)(\d+)\.(\d+)", p).groups()
    return f"{stage}{dict(F='F', B='I', W='W', BW='B')[kind]}{mb}"
