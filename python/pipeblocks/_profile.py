"""Measured stage costs: :func:`profile` times a model's pipeline stages and writes the
stage-cost file that every pipeblocks command reads (``--stage-costs``).

Imported through :mod:`pipeblocks.torch` (it needs PyTorch).
"""

from __future__ import annotations

import json
import math
import statistics
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
from torch.distributed.pipelining._backward import stage_backward_input, stage_backward_weight

FORMAT = "pipeblocks-stage-costs"
VERSION = 1


@dataclass
class StageProfile:
    """What :func:`profile` measured on one stage, for one microbatch (times in seconds, medians
    over the repeats; bytes)."""

    stage: int
    f: float
    b: float
    w: float
    bw: float
    activation_bytes: int
    """Bytes of the tensors the forward saves for the backward (the stage's input included when
    saved, parameters not): what one microbatch leaves alive on the stage until its backward."""
    b_freed_bytes: int
    """Of those, the bytes no longer held once the input backward (``I``) has run."""
    param_bytes: int
    grad_bytes: int
    optimizer: Optional[float] = None
    """Time of one optimizer step on the stage's parameters, when an optimizer was given."""
    samples: dict = field(default_factory=dict)
    """Every timing repeat, per pass kind."""


@dataclass
class Profile:
    """A model's measured stages: :meth:`stage_costs` is the pipeblocks stage-cost file."""

    stages: list[StageProfile]
    device: str
    warmup: int
    repeats: int
    comm: float = 0.0

    def stage_costs(self) -> str:
        """The stage-cost file (JSON text, ``pipeblocks-stage-costs`` version 1): times in
        seconds, activations relative to the average stage with its bytes at the top."""
        acts = [s.activation_bytes for s in self.stages]
        mean = sum(acts) / len(acts) if acts else 0.0
        rows = []
        for s in self.stages:
            row = {"f": s.f, "b": s.b, "w": s.w, "bw": s.bw,
                   "activation": (s.activation_bytes / mean) if mean > 0 else 1.0,
                   "b_release": (s.b_freed_bytes / s.activation_bytes) if s.activation_bytes > 0 else 0.0}
            if s.optimizer is not None:
                row["optimizer"] = s.optimizer
            rows.append(row)
        doc = {"format": FORMAT, "version": VERSION, "comm": self.comm, "b_release": 0.0, "stages": rows}
        if mean > 0:
            doc["activation_bytes"] = mean
        return json.dumps(doc, indent=2) + "\n"

    def write(self, path: str) -> None:
        """Writes :meth:`stage_costs` to ``path``."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.stage_costs())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _module_of(stage: Any) -> torch.nn.Module:
    mod = getattr(stage, "submod", stage)
    if not isinstance(mod, torch.nn.Module):
        raise TypeError(
            f"profile() takes PipelineStage objects or torch.nn.Module stages; got {type(stage).__name__}"
        )
    return mod


def _as_tuple(x: Any) -> tuple:
    return x if isinstance(x, tuple) else (x,)


class _Timer:
    """Wall time of a region: CUDA events on a CUDA device, else the monotonic clock."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t0
        return False


class _Saved:
    """A tensor saved for backward, held through this box so that its lifetime can be watched."""

    __slots__ = ("t", "__weakref__")

    def __init__(self, t: torch.Tensor):
        self.t = t


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return (s.data_ptr(), s.nbytes())


def _backward_roots(out, loss_fn, target):
    """Where a stage's backward starts: its loss (the last stage, given ``loss_fn``), else its
    outputs with a gradient of ones (created here, outside any timed region)."""
    if loss_fn is not None:
        return [loss_fn(out, target) if target is not None else loss_fn(out)], None
    roots = [o for o in _as_tuple(out) if isinstance(o, torch.Tensor) and o.requires_grad]
    return roots, [torch.ones_like(o) for o in roots]


def _run_once(mod, inputs, loss_fn, target, timer_device, watch: bool):
    """One forward, input backward and weight backward; their times, and with ``watch`` the
    saved bytes and the bytes still held after the input backward."""
    params = [p for p in mod.parameters() if p.requires_grad]
    param_keys = {_storage_key(p) for p in params}
    boxes: list[tuple[weakref.ref, tuple[int, int]]] = []

    def pack(t):
        # Detached: a saved output holding its own grad_fn through the box would make a cycle
        # through autograd's C++ graph, which Python's collector cannot free.
        box = _Saved(t.detach())
        if watch:
            boxes.append((weakref.ref(box), _storage_key(t)))
        return box

    def unpack(box):
        return box.t

    for p in params:
        p.grad = None
    with _Timer(timer_device) as tf:
        if watch:
            with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
                out = mod(*inputs)
        else:
            out = mod(*inputs)
    roots, grads = _backward_roots(out, loss_fn, target)
    inputs_with_grad = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    saved = {}
    if watch:
        for ref, key in boxes:
            if key not in param_keys and ref() is not None:
                saved[key] = key[1]
    if not inputs_with_grad:
        # A first stage (its input needs no gradient): PyTorch's runtime skips its input
        # backward and runs the whole backward as the weight pass, holding everything until then.
        with _Timer(timer_device) as tw:
            torch.autograd.backward(roots, grads)
        return tf.seconds, 0.0, tw.seconds, sum(saved.values()), sum(saved.values())
    with _Timer(timer_device) as tb:
        _, param_groups = stage_backward_input(roots, grads, inputs_with_grad, iter(params))
    held = {}
    if watch:
        del out, roots, grads
        for ref, key in boxes:
            if key in saved and ref() is not None:
                held[key] = key[1]
    with _Timer(timer_device) as tw:
        stage_backward_weight(iter(params), param_groups)
    return tf.seconds, tb.seconds, tw.seconds, sum(saved.values()), sum(held.values())


def _run_fused(mod, inputs, loss_fn, target, timer_device):
    """One forward and a fused backward (input and weight gradients together); its time."""
    for p in mod.parameters():
        p.grad = None
    roots, grads = _backward_roots(mod(*inputs), loss_fn, target)
    with _Timer(timer_device) as t:
        torch.autograd.backward(roots, grads)
    return t.seconds


def profile(
    stages: Sequence[Any],
    example_inputs: Any,
    loss_fn: Optional[Callable[..., torch.Tensor]] = None,
    *,
    target: Any = None,
    warmup: int = 2,
    repeats: int = 5,
    optimizer: Optional[Callable[[list], torch.optim.Optimizer]] = None,
    comm: float = 0.0,
    path: Optional[str] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Profile:
    """Measures a model's pipeline stages for one microbatch and returns their :class:`Profile`.

    ``stages`` are consecutive stages of the model in order (``PipelineStage`` objects or the
    ``torch.nn.Module`` of each stage), all on one device; ``example_inputs`` is one
    microbatch's input of the first (a tensor or a tuple of them), and each stage's output is the
    next one's input. The last stage's backward starts from ``loss_fn(output, target)`` (or
    ``loss_fn(output)`` without a target), else from a gradient of ones.

    For each stage: F (forward), B (input gradient, PyTorch's ``I``: ``stage_backward_input``),
    W (weight gradient, ``stage_backward_weight``) and the fused backward, each ``warmup``
    times unmeasured and ``repeats`` times measured, the median kept (CUDA events on a CUDA
    device, the monotonic clock otherwise); the bytes of the tensors the forward saves for the
    backward (parameters excluded, shared storage counted once) and how many of them the input
    backward frees; parameter and gradient bytes; with ``optimizer`` (a factory taking the
    stage's parameters), the time of one optimizer step. ``comm`` is written as the file's
    latency between devices. ``path`` writes the stage-cost file there.
    """
    if not stages:
        raise ValueError("profile() needs at least one stage: pass the model's stages in order")
    if not (isinstance(warmup, int) and warmup >= 0 and isinstance(repeats, int) and repeats >= 1):
        raise ValueError(f"warmup must be a whole number >= 0 and repeats >= 1; got warmup={warmup}, repeats={repeats}")
    if not (isinstance(comm, (int, float)) and math.isfinite(comm) and comm >= 0):
        raise ValueError(f"comm must be a finite time >= 0; got {comm!r}")
    mods = [_module_of(s) for s in stages]
    first = next((p for m in mods for p in m.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    results: list[StageProfile] = []
    x = tuple(_as_tuple(example_inputs))
    for i, mod in enumerate(mods):
        last = i == len(mods) - 1
        lf = loss_fn if last else None
        tg = target if last else None
        inputs = tuple(
            t.detach().requires_grad_(t.is_floating_point()) if isinstance(t, torch.Tensor) else t for t in x
        )
        samples: dict[str, list[float]] = {"f": [], "b": [], "w": [], "bw": []}
        act = freed = 0
        for r in range(warmup + repeats):
            fi, bi, wi, saved, held = _run_once(mod, inputs, lf, tg, device, watch=(r == 0))
            if r == 0:
                act, freed = saved, saved - held
            bw = _run_fused(mod, inputs, lf, tg, device)
            if r >= warmup:
                for k, v in zip(("f", "b", "w", "bw"), (fi, bi, wi, bw)):
                    samples[k].append(v)
        params = [p for p in mod.parameters() if p.requires_grad]
        param_bytes = sum(p.numel() * p.element_size() for p in mod.parameters())
        grad_bytes = sum(p.numel() * p.element_size() for p in params)
        opt_time = None
        if optimizer is not None and params:
            opt = optimizer(params)
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            times = []
            for r in range(warmup + repeats):
                with _Timer(device) as t:
                    opt.step()
                if r >= warmup:
                    times.append(t.seconds)
            opt_time = statistics.median(times)
            opt.zero_grad(set_to_none=True)
        for p in params:
            p.grad = None
        results.append(StageProfile(
            stage=i,
            f=statistics.median(samples["f"]),
            b=statistics.median(samples["b"]),
            w=statistics.median(samples["w"]),
            bw=statistics.median(samples["bw"]),
            activation_bytes=int(act),
            b_freed_bytes=int(max(freed, 0)),
            param_bytes=int(param_bytes),
            grad_bytes=int(grad_bytes),
            optimizer=opt_time,
            samples=samples,
        ))
        if not last:
            with torch.no_grad():
                x = tuple(_as_tuple(mod(*inputs)))
        if progress is not None:
            progress(i + 1, len(mods))
    prof = Profile(stages=results, device=str(device), warmup=warmup, repeats=repeats, comm=float(comm))
    if path is not None:
        prof.write(path)
    return prof
