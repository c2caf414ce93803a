"""Train a small transformer with any pipeblocks schedule on torch.distributed (CPU, gloo).

    torchrun --standalone --nproc-per-node 4 examples/torch_train.py --schedule zb-h1
    torchrun --standalone --nproc-per-node 4 examples/torch_train.py --schedule interleaved-1f1b --chunks 2

The model is a causal transformer (embedding, pre-norm blocks, head) that learns to continue
arithmetic sequences modulo the vocabulary. pipeblocks decides how many stages there are and which
rank holds which (sequential: one per rank; looped and V-shape: several); every rank builds only
its own stages, with weights seeded by stage index so they do not depend on the placement.
The loss printed by the rank holding the last stage should fall from about ln(vocab) towards 0.

Needs the `pipeblocks` package (scripts/python-ci.sh builds it) and torch.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.pipelining import PipelineStage

import pipeblocks
import pipeblocks.torch as pbt


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP."""

    def __init__(self, dim: int, heads: int, seq: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        mask = torch.triu(torch.full((seq, seq), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        n = x.shape[1]
        x = x + self.attn(h, h, h, attn_mask=self.mask[:n, :n], need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class Piece(nn.Module):
    """One pipeline stage: the embedding on the first, blocks, and the head on the last."""

    def __init__(self, stage: int, stages: int, args: argparse.Namespace) -> None:
        super().__init__()
        torch.manual_seed(args.seed * 1000 + stage)
        self.first, self.last = stage == 0, stage == stages - 1
        if self.first:
            self.tok = nn.Embedding(args.vocab, args.dim)
            self.pos = nn.Parameter(torch.randn(args.seq, args.dim) * 0.02)
        self.blocks = nn.Sequential(
            *[Block(args.dim, args.heads, args.seq) for _ in range(args.layers_per_stage)]
        )
        if self.last:
            self.norm = nn.LayerNorm(args.dim)
            self.head = nn.Linear(args.dim, args.vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            x = self.tok(x) + self.pos[: x.shape[1]]
        x = self.blocks(x)
        if self.last:
            x = self.head(self.norm(x))
        return x


def batch(step: int, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences start + k*stride (mod vocab); the target is the sequence shifted by one."""
    g = torch.Generator().manual_seed(args.seed * 7919 + step)
    start = torch.randint(0, args.vocab, (args.batch, 1), generator=g)
    stride = torch.randint(1, 4, (args.batch, 1), generator=g)
    seq = (start + stride * torch.arange(args.seq + 1)) % args.vocab
    return seq[:, :-1], seq[:, 1:]


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedule", default="1f1b", help="a name from pipeblocks.names(), or a CSV/JSON file")
    ap.add_argument("--microbatches", type=int, default=8)
    ap.add_argument("--chunks", type=int, default=None, help="stages per rank for looped schedules")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32, help="sequences per step (a multiple of --microbatches)")
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers-per-stage", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv-out", default=None, help="also write the schedule as PyTorch CSV (rank 0)")
    args = ap.parse_args()
    if args.batch % args.microbatches:
        ap.error(f"--batch {args.batch} is not a multiple of --microbatches {args.microbatches}")

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()

    if os.path.exists(args.schedule):
        plan = pipeblocks.load(args.schedule)
    else:
        options = {} if args.chunks is None else {"chunks": args.chunks}
        plan = pipeblocks.generate(args.schedule, world, args.microbatches, **options)
    if rank == 0:
        sim = plan.simulate()
        print(
            f"{plan.name}: {plan.stages} stages ({plan.placement}) on {world} ranks, "
            f"{plan.microbatches} microbatches; simulated bubble {sim['bubble_rate']:.3f}, "
            f"peak activation {sim['peak_vs_1f1b']:.2f}x 1F1B's",
            flush=True,
        )
        if args.csv_out:
            plan.to_torch_csv(args.csv_out)

    mine = plan.stage_ids(rank)
    pieces = {s: Piece(s, plan.stages, args) for s in mine}
    stages = [PipelineStage(pieces[s], s, plan.stages, torch.device("cpu")) for s in mine]
    sched = pbt.schedule(stages, plan.microbatches, loss_fn, name=plan)
    params = [p for piece in pieces.values() for p in piece.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr)

    has_first, has_last = 0 in mine, plan.stages - 1 in mine
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = batch(step, args)
        losses: list[torch.Tensor] = []
        inputs = (x,) if has_first else ()
        extra = {"target": y, "losses": losses} if has_last else {}
        sched.step(*inputs, **extra)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if has_last and (step % 10 == 0 or step == args.steps - 1):
            loss = torch.stack([v.detach() for v in losses]).mean().item()
            print(f"step {step:4d}  loss {loss:.4f}  (ln vocab = {math.log(args.vocab):.2f})", flush=True)
    dist.barrier()
    if rank == 0:
        per_step = (time.perf_counter() - t0) / args.steps
        print(f"done: {args.steps} steps, {per_step * 1e3:.1f} ms per step", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
