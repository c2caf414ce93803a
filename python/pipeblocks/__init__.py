"""pipeblocks: pipeline-parallel training schedules, generated, simulated and exported.

The schedule engine is written in Rust (crate ``pipeblocks-core``); this package is its Python face.

>>> import pipeblocks
>>> s = pipeblocks.generate("1f1b", devices=4, microbatches=8)
>>> s.actions(3)[:3]
['3F0', '3B0', '3F1']
>>> round(s.simulate()["bubble_rate"], 4)
0.2727

Vocabulary: pipeblocks names its passes F (forward), B (input gradient), W (weight gradient) and
BW (fused backward). :meth:`Schedule.actions` and the CSV export use PyTorch's spelling instead,
where the input gradient is ``I`` and the fused backward is ``B``.

Running a schedule on ``torch.distributed`` lives in :mod:`pipeblocks.torch`, imported on demand so
that the engine works without PyTorch installed.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from ._native import Schedule, generate, load, parse_torch_csv, plan_json, schedules

__all__ = ["Schedule", "generate", "load", "names", "parse_torch_csv", "plan", "schedules"]


def plan(
    model: str,
    gpus: int,
    global_batch: int,
    *,
    gpus_per_node: int = 8,
    device: str = "h100",
    seq: Optional[int] = None,
    tp: Optional[int] = None,
    pp: Optional[int] = None,
    dp: Optional[int] = None,
    sharding: Optional[str] = None,
    microbatch_size: Optional[int] = None,
    schedules: Optional[Sequence[str]] = None,
    chunks: Optional[int] = None,
    recompute: Optional[str] = None,
    sequence_parallel: Optional[bool] = None,
    p2p_blocking: bool = True,
    top: int = 5,
) -> dict[str, Any]:
    """The planner of ``pipeblocks plan`` (docs/plan.md): the fastest configurations of ``model``
    (a preset such as ``"llama3-70b"`` or ``"layers=..,hidden=..,heads=..,seq=.."``) on ``gpus``
    accelerators (``device``: a preset such as ``"h100"``, optionally with overrides) for
    ``global_batch`` sequences. Any dimension given is fixed; the others are searched.

    Returns a dict: ``best`` (the configurations, fastest first, each with ``config``,
    ``iteration_seconds``, ``tokens_per_second_per_gpu``, ``mfu``, ``peak_memory_bytes``,
    ``memory``, ``binding``, ...), ``faster_but_too_big``, ``enumerated``, ``simulated``.
    Raises ``ValueError`` with one line naming the change when nothing fits.
    """
    return json.loads(plan_json(
        model, gpus, global_batch, gpus_per_node=gpus_per_node, device=device, seq=seq, tp=tp, pp=pp,
        dp=dp, sharding=sharding, microbatch_size=microbatch_size,
        schedules=list(schedules) if schedules is not None else None, chunks=chunks,
        recompute=recompute, sequence_parallel=sequence_parallel, p2p_blocking=p2p_blocking, top=top))


def names() -> list[str]:
    """The names of every schedule the engine knows, in the order of :func:`schedules`."""
    return [entry["name"] for entry in schedules()]
