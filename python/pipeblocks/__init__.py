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

from ._native import Schedule, generate, load, parse_torch_csv, plan, schedules

__all__ = ["Schedule", "generate", "load", "names", "parse_torch_csv", "plan", "schedules"]


def names() -> list[str]:
    """The names of every schedule the engine knows, in the order of :func:`schedules`."""
    return [entry["name"] for entry in schedules()]
