"""Helpers for the torch tests: CPU process groups on gloo, a toy model, reference gradients."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as tmp
from torch import nn
from torch.distributed.pipelining import PipelineStage

# Imported here, in the parent, so forked ranks inherit them instead of importing each (seconds).
import pipeblocks.torch as pbt

WIDTH = 6
ROWS_PER_MICROBATCH = 2


def _rank_main(
    rank: int, world: int, init_file: str, out_dir: str, fn: Callable[..., Any], args: tuple
) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        result = fn(rank, world, *args)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """Runs ``fn(rank, world, *args)`` in ``world`` forked processes joined in a gloo group on the
    loopback interface; returns each rank's result. A failing rank fails the call with its
    traceback; a rank stuck in communication fails after the group's 60 s timeout."""
    with tempfile.TemporaryDirectory(prefix="pipeblocks-dist-") as d:
        init_file = os.path.join(d, "rendezvous")
        # fork: the children inherit the imported torch and the closures, no pickling, fast start.
        tmp.start_processes(
            _rank_main,
            args=(world, init_file, d, fn, args),
            nprocs=world,
            join=True,
            start_method="fork",
        )
        return [torch.load(Path(d) / f"rank{r}.pt") for r in range(world)]


def make_pieces(n_stages: int, seed: int = 0) -> list[nn.Module]:
    """The toy model, ``n_stages`` pieces (Linear + Tanh, float64), the same on every rank."""
    gen = torch.Generator().manual_seed(seed)
    pieces = []
    for _ in range(n_stages):
        lin = nn.Linear(WIDTH, WIDTH).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(WIDTH, WIDTH, generator=gen, dtype=torch.float64) * 0.5)
            lin.bias.copy_(torch.randn(WIDTH, generator=gen, dtype=torch.float64) * 0.1)
        pieces.append(nn.Sequential(lin, nn.Tanh()))
    return pieces


def make_batch(n_microbatches: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rows = n_microbatches * ROWS_PER_MICROBATCH
    x = torch.randn(rows, WIDTH, generator=gen, dtype=torch.float64)
    y = torch.randn(rows, WIDTH, generator=gen, dtype=torch.float64)
    return x, y


def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(out, target)


def reference_grads(n_stages: int, n_microbatches: int) -> tuple[dict[int, list[torch.Tensor]], list[float]]:
    """Gradients of the unpipelined model on the whole batch (the mean of the microbatch losses,
    as PyTorch's schedules scale them) and the loss of each microbatch."""
    pieces = make_pieces(n_stages)
    model = nn.Sequential(*pieces)
    x, y = make_batch(n_microbatches)
    loss_fn(model(x), y).backward()
    with torch.no_grad():
        mb_losses = [
            float(loss_fn(model(xm), ym))
            for xm, ym in zip(x.tensor_split(n_microbatches), y.tensor_split(n_microbatches))
        ]
    grads = {s: [p.grad.clone() for p in piece.parameters()] for s, piece in enumerate(pieces)}
    return grads, mb_losses


def pipelined_grads(
    rank: int,
    world: int,
    plan: Any,
    runtime_options: dict[str, Any] | None = None,
    recompute: Any = None,
) -> dict[str, Any]:
    """One training step of the toy model under ``plan`` on this rank: its stages' gradients and,
    on the rank of the last stage, the microbatch losses; ``runtime_options`` and ``recompute``
    go to ``pbt.schedule``."""
    pieces = make_pieces(plan.stages)
    mine = plan.stage_ids(rank)
    stages = [PipelineStage(pieces[s], s, plan.stages, torch.device("cpu")) for s in mine]
    sched = pbt.schedule(
        stages,
        plan.microbatches,
        loss_fn,
        name=plan,
        runtime_options=runtime_options,
        recompute=recompute,
    )
    x, y = make_batch(plan.microbatches)
    args = (x,) if 0 in mine else ()
    kwargs: dict[str, Any] = {"target": y} if plan.stages - 1 in mine else {}
    losses: list[torch.Tensor] = []
    sched.step(*args, losses=losses, **kwargs)
    return {
        "grads": {s: [p.grad.clone() for p in pieces[s].parameters()] for s in mine},
        "losses": [float(v.detach()) for v in losses],
        "order": {r: [str(a) for a in sched.pipeline_order[r]] for r in range(world)},
        "checkpointed": sched.checkpointed_stages,
    }


def check_grads(
    plan: Any, results: list[Any], order: list[list[str]], tolerance: float = 1e-5
) -> None:
    """Each rank's gradients and the last stage's losses (results of :func:`pipelined_grads`)
    equal the unpipelined model's within ``tolerance``, and every rank ran ``order`` (PyTorch's
    action strings per rank)."""
    world = plan.devices
    ref, ref_losses = reference_grads(plan.stages, plan.microbatches)
    got = {}
    for rank, res in enumerate(results):
        assert sorted(res["grads"]) == plan.stage_ids(rank)
        got.update(res["grads"])
        for r in range(world):
            assert res["order"][r] == order[r]
    assert sorted(got) == list(range(plan.stages))
    for stage, grads in got.items():
        for g, want in zip(grads, ref[stage]):
            assert (g - want).abs().max().item() <= tolerance, f"stage {stage}"
    last_rank = plan.stage_ranks[-1]
    assert results[last_rank]["losses"] == pytest.approx(ref_losses, abs=tolerance)
