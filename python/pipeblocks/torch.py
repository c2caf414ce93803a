"""Run pipeblocks schedules on PyTorch's ``torch.distributed.pipelining``.

:func:`schedule` turns a pipeblocks schedule into a ``_PipelineScheduleRuntime``: PyTorch's
runtime for arbitrary compute orders, which adds the sends and receives itself. Every rank passes
the ``PipelineStage`` objects it holds (several for looped and V-shape placements, as with
``ScheduleInterleaved1F1B`` or ``ScheduleZBVZeroBubble``); the runtime then follows pipeblocks'
order of forwards, input backwards (``I``), weight backwards (``W``) and fused backwards (``B``).

Overlapped pairs (:attr:`pipeblocks.Schedule.pairs`, DualPipe's ``F&B``: a forward and a backward of
another microbatch that a rank runs as one unit) reach PyTorch as its own ``OVERLAP_F_B`` actions,
``(0F3;1B1)OVERLAP_F_B``, and the runtime runs them natively: it lowers a pair as one step, placed
after the receives of both halves and followed by the sends of both, runs its forward then its
backward, and keeps the stages of both halves unsharded for it under FSDP. The one exception is
``runtime_options={"max_active_stages": 1}``: PyTorch refuses a pair, which needs two stages
resident at once, so there each pair runs as its two halves in turn (see
:class:`PipeblocksSchedule`).

Recomputation (a schedule's R passes, :attr:`pipeblocks.Schedule.recompute`) has no PyTorch
action: the R passes are left out of the order, and the modules of the stages the schedule
recomputes run under ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``, which keeps
only their inputs after the forward and reruns the forward in the backward. ``recompute=`` of
:func:`schedule` picks other stages (``"all"``, a list of stage ids, or ``"none"``).

Two plans of the engine have no PyTorch counterpart and are refused with ``ValueError`` before
anything runs. Offload (O and L passes, :attr:`pipeblocks.Schedule.offloaded`: activations moved
to host memory and back on each device's host link): PyTorch's pipelining has no offload action;
:meth:`pipeblocks.Schedule.without_offload` is the same order with the activations kept on the
device. Selective recomputation (:attr:`pipeblocks.Schedule.selective`: the attention only):
checkpointing a whole stage module recomputes all of it, so a plan with selective stages needs an
explicit ``recompute=`` (``plan.recompute`` to checkpoint those stages whole, at the cost of full
recomputation; or only the fully recomputed stages when the modules checkpoint their attention
themselves).

Which stages a rank must build comes from :meth:`pipeblocks.Schedule.stage_ids`::

    plan = pipeblocks.generate("zb-v", devices=world, microbatches=8)
    stages = [PipelineStage(make_piece(s), s, plan.stages, device) for s in plan.stage_ids(rank)]
    sched = pipeblocks.torch.schedule(stages, 8, loss_fn, name=plan)
    sched.step(x, target=y)

A schedule the given stages cannot run (wrong rank count, stage count, microbatch count or
placement) raises :class:`StageMismatchError` while the schedule is built, before the pipeline
sends any tensor. In a process group the ranks then compare what they hold (one
``all_gather_object`` of a few numbers and a digest of the plan): ranks holding different
schedules raise :class:`ScheduleMismatchError` together, and when one rank refuses its stages or
its schedule the others raise too, instead of waiting for it until the group's timeout.

Needs PyTorch 2.15 or newer (the version the package is tested with).
"""

from __future__ import annotations

import hashlib
import operator
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional, Union

_TORCH_HINT = "pip install 'torch>=2.15'"
try:
    import torch  # the top-level PyTorch package, not this module
except ImportError as _e:
    _missing = isinstance(_e, ModuleNotFoundError) and _e.name == "torch"
    raise ImportError(
        "pipeblocks.torch needs PyTorch (torch>=2.15), which "
        + ("is not installed" if _missing else f"does not import ({_e})")
        + f": install it with {_TORCH_HINT} (import pipeblocks works without it)",
        name="torch",
    ) from _e

_found = re.match(r"(\d+)\.(\d+)", torch.__version__)
if _found is not None and (int(_found.group(1)), int(_found.group(2))) < (2, 15):
    raise ImportError(
        f"pipeblocks.torch needs torch>=2.15, found torch {torch.__version__}: older versions fail "
        f"or hang on some schedules; upgrade it with {_TORCH_HINT}"
    )

import torch.distributed as dist  # noqa: E402
import torch.utils.checkpoint  # noqa: E402
from torch.distributed.pipelining import schedules as _torch_schedules  # noqa: E402
from torch.distributed.pipelining.schedules import _Action, _PipelineScheduleRuntime  # noqa: E402

import pipeblocks  # noqa: E402
from pipeblocks import Schedule  # noqa: E402
from pipeblocks._profile import Profile, StageProfile, profile  # noqa: E402

__all__ = [
    "PipeblocksSchedule",
    "Profile",
    "StageProfile",
    "ScheduleMismatchError",
    "StageMismatchError",
    "check_stages",
    "plan_for",
    "profile",
    "schedule",
]


class StageMismatchError(ValueError):
    """The pipeline stages given to a rank do not fit the schedule (count or placement)."""


class ScheduleMismatchError(ValueError):
    """The ranks of a pipeline group hold different schedules (sizes, placement or order)."""


def _describe(plan: Schedule) -> str:
    per_rank = plan.stages // plan.devices if plan.stages % plan.devices == 0 else None
    detail = f"{plan.placement} placement"
    if per_rank is not None and per_rank > 1:
        detail += f", {per_rank} stages per rank"
    return f"schedule `{plan.name}` ({plan.stages} stages over {plan.devices} ranks, {detail})"


def _require_stages(stages: Sequence[Any]) -> None:
    if not stages:
        raise StageMismatchError(
            "no pipeline stages given: pass the PipelineStage objects of this rank, one for each "
            "stage in Schedule.stage_ids(rank)"
        )


def check_stages(plan: Schedule, stages: Sequence[Any], n_microbatches: Optional[int] = None) -> None:
    """Checks that this rank's ``stages`` can run ``plan``; raises :class:`StageMismatchError`.

    Only the stages' ``stage_index``, ``num_stages``, ``group_rank`` and ``group_size`` are read,
    so the check does no communication.
    """
    _require_stages(stages)
    first = stages[0]
    rank, world, total = first.group_rank, first.group_size, first.num_stages
    for st in stages[1:]:
        if (st.group_rank, st.group_size, st.num_stages) != (rank, world, total):
            raise StageMismatchError(
                f"the stages of one rank disagree: stage {st.stage_index} was built with "
                f"num_stages={st.num_stages} in a group of {st.group_size} (rank {st.group_rank}), "
                f"stage {first.stage_index} with num_stages={total} in a group of {world} "
                f"(rank {rank}); build them all with the same num_stages and process group"
            )
    if plan.devices != world:
        raise StageMismatchError(
            f"the {_describe(plan)} is for {plan.devices} ranks, but the pipeline group has {world}; "
            f"generate it with devices={world}"
        )
    if n_microbatches is not None and plan.microbatches != n_microbatches:
        raise StageMismatchError(
            f"the {_describe(plan)} has {plan.microbatches} microbatches, but n_microbatches="
            f"{n_microbatches}; generate it with microbatches={n_microbatches}"
        )
    if plan.stages != total:
        raise StageMismatchError(
            f"the {_describe(plan)} needs the model in {plan.stages} stages, but the stages were "
            f"built with num_stages={total}; split the model into {plan.stages} pieces "
            f"(Schedule.stage_ids(rank) lists the ones each rank holds) or pick a schedule with "
            f"{total} stages"
        )
    want = plan.stage_ids(rank)
    have = sorted(st.stage_index for st in stages)
    if have != want:
        raise StageMismatchError(
            f"rank {rank} holds stages {have}, but the {_describe(plan)} puts stages {want} on "
            f"rank {rank}; build this rank's PipelineStage objects for stages {want} "
            f"(looped placements put stage s on rank s % p, V-shape puts stages r and 2p-1-r on rank r)"
        )


def plan_for(
    name: Union[str, Schedule],
    stages: Sequence[Any],
    n_microbatches: int,
    **options: Any,
) -> Schedule:
    """The pipeblocks schedule for ``name`` sized to these stages, checked against them.

    A name is generated for the stages' group size and ``n_microbatches``; ``chunks`` defaults to
    the number of local stages for the schedules that read it (interleaved-1f1b, bfs, zeropp). A
    :class:`pipeblocks.Schedule` is only checked. ``options`` are those of
    :func:`pipeblocks.generate`.
    """
    stages = list(stages)
    sched = _generate(name, stages, n_microbatches, options)
    check_stages(sched, stages, n_microbatches)
    return sched


def _generate(
    name: Union[str, Schedule], stages: list[Any], n_microbatches: int, options: dict[str, Any]
) -> Schedule:
    """The schedule ``name`` for these stages, unchecked (a ready schedule as it is)."""
    if isinstance(name, Schedule):
        if options:
            raise TypeError(
                f"generator options {sorted(options)} only apply to a schedule name, not to a "
                "ready pipeblocks.Schedule"
            )
        return name
    _require_stages(stages)
    if len(stages) > 1 and "chunks" in _uses(name):
        options = {"chunks": len(stages), **options}
    return pipeblocks.generate(name, stages[0].group_size, n_microbatches, **options)


def _uses(name: str) -> list[str]:
    """The options of :func:`pipeblocks.generate` the generator ``name`` reads (none when the name
    is unknown: generating it raises the engine's error)."""
    key = name.strip().lower()
    for entry in pipeblocks.schedules():
        if entry["name"] == key:
            return list(entry["uses"])
    return []


# The fields of a schedule's fingerprint that must agree across ranks, and how a message words them.
_FIELDS = {
    "devices": lambda v: f"a schedule for {v} ranks",
    "stages": lambda v: f"{v} stages",
    "microbatches": lambda v: f"{v} microbatches",
    "placement": lambda v: f"a {v} placement",
    "stage_ranks": lambda v: f"stage ranks {v}",
    "recompute": lambda v: f"recompute passes on stages {v}",
    "order": lambda v: f"action order sha256:{v[:12]}",
}


def _fingerprint(plan: Schedule) -> dict[str, Any]:
    """What two ranks must agree on to run ``plan`` together: its sizes, placement, the rank of
    each stage, the stages it recomputes, and a digest (sha256 of the PyTorch CSV, of the order
    without its R passes) of every rank's action order; plus the name, which is only reported."""
    recompute = list(plan.recompute)
    csv = (plan.without_recompute() if recompute else plan).torch_csv()
    return {
        "name": plan.name,
        "devices": plan.devices,
        "stages": plan.stages,
        "microbatches": plan.microbatches,
        "placement": plan.placement,
        "stage_ranks": list(plan.stage_ranks),
        "recompute": recompute,
        "order": hashlib.sha256(csv.encode()).hexdigest(),
    }


def _ranks(ranks: list[int]) -> str:
    if len(ranks) == 1:
        return f"rank {ranks[0]} holds"
    return "ranks " + ", ".join(map(str, ranks[:-1])) + f" and {ranks[-1]} hold"


def _disagreement(prints: Sequence[Optional[Mapping[str, Any]]]) -> Optional[str]:
    """The message naming how the ranks' fingerprints differ from the first rank's, or None when
    they agree (ranks without a schedule, ``None``, are left out)."""
    held = [(r, fp) for r, fp in enumerate(prints) if fp is not None]
    if not held:
        return None
    ref_rank, ref = held[0]
    key = lambda fp: repr([fp[k] for k in _FIELDS])  # noqa: E731
    groups: dict[str, list[int]] = {}
    for r, fp in held:
        if key(fp) != key(ref):
            groups.setdefault(key(fp), []).append(r)
    if not groups:
        return None
    parts = []
    for ranks in groups.values():
        other = prints[ranks[0]]
        fields = [k for k in _FIELDS if other[k] != ref[k]]
        if fields != ["order"]:
            fields = [k for k in fields if k != "order"]  # sizes differ: the order does too

        def side(fp: Mapping[str, Any]) -> str:
            what = ", ".join(_FIELDS[k](fp[k]) for k in fields)
            return f"schedule `{fp['name']}` ({what})" if other["name"] != ref["name"] else what

        parts.append(f"{_ranks(ranks)} {side(other)}, rank {ref_rank} holds {side(ref)}")
    return (
        "the ranks of the pipeline group hold different schedules: "
        + "; ".join(parts)
        + "; build the same schedule on every rank (the same name, devices, microbatches and "
        "options, or the same file)"
    )


def _group_of(stages: Sequence[Any]) -> tuple[bool, Any]:
    """Whether this rank can talk to the other ranks of its stages' pipeline group, and that
    group (``None``: the default group)."""
    if not stages or not (dist.is_available() and dist.is_initialized()):
        return False, None
    return True, getattr(stages[0], "group", None)


def _agree(stages: Sequence[Any], plan: Optional[Schedule], error: Optional[Exception]) -> None:
    """Makes every rank of the pipeline group stop together when the ranks hold different
    schedules or one of them could not build its schedule (``error``), instead of the others
    waiting for it in the pipeline's first transfer until the group's timeout.

    Without a process group (or without stages to find it) this rank only raises its own error.
    """
    talk, group = _group_of(stages)
    if not talk:
        if error is not None:
            raise error
        return
    mine = {
        "plan": None if plan is None else _fingerprint(plan),
        "error": None if error is None else (_kind(error), str(error)),
    }
    everyone: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(everyone, mine, group=group)
    differ = _disagreement([e["plan"] for e in everyone])
    if differ is not None:
        raise ScheduleMismatchError(differ)
    if error is not None:
        raise error
    for rank, e in enumerate(everyone):
        if e["error"] is not None:
            kind, message = e["error"]
            raise _KINDS[kind](
                f"rank {rank} of the pipeline group cannot run the schedule: {message}"
            )


# The errors one rank reports to the others, by the class they raise in turn.
_KINDS: dict[str, type[Exception]] = {
    "stages": StageMismatchError,
    "value": ValueError,
    "other": RuntimeError,
}


def _kind(error: Exception) -> str:
    if isinstance(error, StageMismatchError):
        return "stages"
    return "value" if isinstance(error, ValueError) else "other"


class PipeblocksSchedule(_PipelineScheduleRuntime):
    """A ``_PipelineScheduleRuntime`` that runs a pipeblocks schedule.

    Build it with :func:`schedule`. ``pipeline_order`` holds pipeblocks' compute order (the same
    rows as :meth:`pipeblocks.Schedule.to_torch_csv`, each overlapped pair one ``OVERLAP_F_B``
    action that PyTorch runs as one unit); ``pipeblocks_schedule`` the schedule itself.

    A bidirectional schedule (``dualpipe``: two pipelines over two parameter copies) raises
    ``ValueError``: PyTorch's runtime sends every microbatch through every stage.

    A schedule that offloads (O and L passes, :attr:`pipeblocks.Schedule.offloaded`) raises
    ``ValueError`` naming :meth:`pipeblocks.Schedule.without_offload`: PyTorch's pipelining has
    no offload action.

    Recompute passes (R) are not in ``pipeline_order``, PyTorch having no such action: the
    modules of this rank's stages in ``recompute`` (by default the stages the schedule
    recomputes, :attr:`pipeblocks.Schedule.recompute`) run under
    ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``: each forward keeps only the
    stage's inputs and the backward reruns it (with a split backward, the ``I`` and the ``W``
    each rerun it). ``checkpointed_stages`` lists them. The module's ``forward`` is replaced on
    the instance while checkpointed, and restored when a later schedule over the same stage does
    not checkpoint it. A schedule with selective stages (:attr:`pipeblocks.Schedule.selective`,
    whose R passes recompute the attention only) needs ``recompute`` given explicitly: whole
    modules under checkpointing recompute in full, which only the user can accept.

    With ``max_active_stages=1`` (FSDP keeping one stage's parameters unsharded at a time)
    PyTorch's lowering refuses an ``OVERLAP_F_B`` action, whose two halves need two stages at
    once, so there every pair is expanded into its forward then its backward: the same order,
    each half its own step. A pair's halves never depend on each other, so running them in turn
    is always possible.
    """

    pipeblocks_schedule: Schedule
    checkpointed_stages: list[int]

    def __init__(
        self,
        stages: Sequence[Any],
        n_microbatches: int,
        loss_fn: Optional[Callable[..., Any]],
        plan: Schedule,
        *,
        recompute: Union[None, str, Iterable[int]] = None,
        **kwargs: Any,
    ) -> None:
        stages = list(stages)
        error: Optional[Exception] = None
        offloads = bool(plan.offloaded)
        # A plan PyTorch cannot express has no action order to compare across ranks.
        runnable = plan.placement != "bidirectional" and not offloads
        checkpointed: set[int] = set()
        try:
            if offloads:
                raise ValueError(_offload_refusal(plan))
            checkpointed = _recompute_stages(plan, recompute)
            if plan.placement == "bidirectional":
                raise ValueError(
                    f"schedule `{plan.name}` runs two pipelines in opposite directions over two "
                    "copies of the parameters (bidirectional placement, DualPipe), which "
                    "PyTorch's pipelining runtime cannot express (every one of its stages runs "
                    "every microbatch); use `dualpipev`, DualPipe's V-shape form on one copy"
                )
            check_stages(plan, stages, n_microbatches)
            if plan.splits_backward:
                # PyTorch refuses the I/W split for torch.compile'd stage modules; say so up front.
                compat = getattr(_torch_schedules, "_check_torch_compile_compatibility", None)
                if compat is not None:
                    compat(stages, f"pipeblocks `{plan.name}`")
        except Exception as e:  # noqa: BLE001  (raised below, on every rank of the group)
            error = e
        # In a process group every rank compares its plan and outcome with the others' (one
        # collective) and all raise together; alone, this rank raises its own error. (A plan
        # PyTorch cannot express has no action order to compare.)
        _agree(stages, plan if runnable else None, error)
        super().__init__(stages, n_microbatches, loss_fn, **kwargs)
        self.pipeblocks_schedule = plan
        self.checkpointed_stages = sorted(
            st.stage_index for st in stages if st.stage_index in checkpointed
        )
        for st in stages:
            _set_checkpointing(getattr(st, "submod", None), st.stage_index in checkpointed)
        # PyTorch's FSDP lowering needs every stage of an atomic action resident at once.
        split_pairs = getattr(self, "_max_active_stages", 3) < 2
        self.pipeline_order = {r: _compute_order(plan, r, split_pairs) for r in range(plan.devices)}
        # Checks the order, infers the stage → rank map (V-shape included) and inserts the
        # sends and receives.
        self._prepare_schedule_with_comms(self.pipeline_order)


def _offload_refusal(plan: Schedule) -> str:
    """Why ``plan``, which offloads activations (O and L passes), cannot run on PyTorch, and the
    way out."""
    pairs = plan.offloaded
    stages = sorted({s for s, _ in pairs})
    return (
        f"schedule `{plan.name}` offloads {len(pairs)} activations to host memory (O and L passes "
        f"on stages {stages}, Schedule.offloaded), and PyTorch's pipelining has no offload "
        "action: run plan.without_offload(), the same order with every activation kept on the "
        "device (it needs more device memory than the plan), or generate the schedule without "
        "offload=, which fits the memory by recomputation alone where that can reach it"
    )


def _recompute_stages(plan: Schedule, recompute: Union[None, str, Iterable[int]]) -> set[int]:
    """The stages whose modules run under activation checkpointing: the ones ``plan``
    recomputes (``None``), every stage (``"all"``), none (``"none"``) or the given stage ids.
    ``None`` is refused for a plan with selective stages, which checkpointing a whole module
    cannot reproduce."""
    if recompute is None:
        selective = list(plan.selective)
        if selective:
            full = [s for s in plan.recompute if s not in selective]
            raise ValueError(
                f"schedule `{plan.name}` recomputes stages {selective} selectively (the "
                "attention only, Schedule.selective), but pipeblocks.torch checkpoints whole "
                "stage modules (full recomputation); pass recompute= explicitly: "
                f"recompute={list(plan.recompute)} (Schedule.recompute) checkpoints all of them "
                "whole, with no more memory than planned but more recomputation time, or "
                f"recompute={full} only the fully recomputed stages, when the selective stages' "
                "modules checkpoint their attention themselves"
            )
        return set(plan.recompute)
    if isinstance(recompute, str):
        if recompute == "all":
            return set(range(plan.stages))
        if recompute == "none":
            return set()
        raise ValueError(
            f"recompute={recompute!r} is not a choice: give None (the stages the schedule "
            'recomputes), "all", "none" or a list of stage ids'
        )
    hint = (
        f'give stage ids from 0 to {plan.stages - 1}, "all", "none" or None (the stages the '
        "schedule recomputes)"
    )
    try:
        ids = list(recompute)
    except TypeError:
        raise ValueError(f"recompute={recompute!r} is not a list of stages: {hint}") from None
    out = set()
    for s in ids:
        try:
            i = operator.index(s)  # ints and integer-likes (numpy), not floats
        except TypeError:
            i = None
        if isinstance(s, bool) or i is None or not 0 <= i < plan.stages:
            raise ValueError(
                f"recompute={ids!r}: {s!r} is not a stage of the {_describe(plan)}; {hint}"
            )
        out.add(i)
    return out


# Where a module's own instance-level ``forward`` waits while the module is checkpointed.
_OWN_FORWARD = "_pipeblocks_own_forward"


def _checkpointed_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """A module's forward under non-reentrant activation checkpointing (bound to the module in
    place of its own forward): only the inputs are kept, and the backward reruns the forward."""
    inner = self.__dict__.get(_OWN_FORWARD) or types.MethodType(type(self).forward, self)
    if not torch.is_grad_enabled():
        return inner(*args, **kwargs)
    return torch.utils.checkpoint.checkpoint(inner, *args, use_reentrant=False, **kwargs)


def _is_checkpointed(module: Any) -> bool:
    f = module.__dict__.get("forward")
    return isinstance(f, types.MethodType) and f.__func__ is _checkpointed_forward


def _set_checkpointing(module: Any, on: bool) -> None:
    """Runs ``module``'s forward under activation checkpointing (``on``) or as it was. The
    wrapper is a method bound to the module in its instance dict, so copies of the module
    (``copy.deepcopy``) are checkpointed copies of themselves, and the module's hooks (FSDP,
    DDP) run once per forward, outside the recomputation."""
    if not isinstance(module, torch.nn.Module) or on == _is_checkpointed(module):
        return
    d = module.__dict__
    if on:
        if "forward" in d:
            d[_OWN_FORWARD] = d["forward"]
        d["forward"] = types.MethodType(_checkpointed_forward, module)
    else:
        del d["forward"]
        if _OWN_FORWARD in d:
            d["forward"] = d.pop(_OWN_FORWARD)


def _compute_order(plan: Schedule, rank: int, split_pairs: bool) -> list[Any]:
    """``rank``'s actions as PyTorch ``_Action`` objects; with ``split_pairs`` each
    ``OVERLAP_F_B`` action becomes its two halves, in order."""
    order: list[Any] = []
    for text in plan.actions(rank):
        action = _Action.from_str(text)
        if split_pairs and action.sub_actions is not None:
            order.extend(action.sub_actions)
        else:
            order.append(action)
    return order


def schedule(
    stages: Union[Any, Sequence[Any]],
    n_microbatches: int,
    loss_fn: Optional[Callable[..., Any]] = None,
    *,
    name: Union[str, Schedule] = "1f1b",
    args_chunk_spec: Any = None,
    kwargs_chunk_spec: Any = None,
    output_merge_spec: Any = None,
    scale_grads: bool = True,
    runtime_options: Optional[Mapping[str, Any]] = None,
    recompute: Union[None, str, Iterable[int]] = None,
    **options: Any,
) -> PipeblocksSchedule:
    """A ``torch.distributed.pipelining`` schedule that runs a pipeblocks schedule.

    Args:
        stages: this rank's ``PipelineStage`` (or a list of them, one per stage the schedule puts
            on the rank: see :meth:`pipeblocks.Schedule.stage_ids`).
        n_microbatches: microbatches per step.
        loss_fn: the loss, called on the last stage's output and target of each microbatch.
        name: a schedule name (``"1f1b"``, ``"zb-h1"``, ``"interleaved-1f1b"``, ``"zb-v"``, ...:
            :func:`pipeblocks.names`) generated for the stages' group size, or a ready
            :class:`pipeblocks.Schedule`.
        args_chunk_spec, kwargs_chunk_spec, output_merge_spec, scale_grads: as for PyTorch's
            schedules (gradients are divided by ``n_microbatches`` when ``scale_grads``).
        runtime_options: further keywords for ``_PipelineScheduleRuntime`` (``defer_pp_recv``,
            ``max_active_stages``, ...; with ``max_active_stages=1`` overlapped pairs run as their
            two halves in turn, see :class:`PipeblocksSchedule`).
        recompute: the stages whose modules run under
            ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`` (activations
            recomputed in the backward instead of kept): ``None`` (the default) for the stages
            the schedule recomputes (those with R passes, :attr:`pipeblocks.Schedule.recompute`,
            e.g. from ``name="auto", memory="0.2x"``), ``"all"`` for every stage, ``"none"`` (or
            ``[]``) for none, or a list of stage ids (stages of other ranks are ignored, so every
            rank can pass the same list). R passes themselves never reach PyTorch. A schedule
            with selective stages (:attr:`pipeblocks.Schedule.selective`) refuses ``None``:
            checkpointing their whole modules is full recomputation, so pass
            ``recompute=plan.recompute`` to accept that, or the fully recomputed stages only
            when the modules checkpoint their attention themselves.
        **options: generator options of :func:`pipeblocks.generate` (``chunks``, ``memory``,
            ``group``, ``f``, ``b``, ``w``, ``bw``, ``comm``, ``stage_costs``, ``b_release``,
            ``overlap``, ``offload``, ``selective``, ``selective_keep``; a plan that then offloads
            is refused, see below).

    Raises:
        StageMismatchError: the stages do not fit the schedule (a ``ValueError``), on this rank
            or, in a process group, on another rank of the pipeline group.
        ScheduleMismatchError: the ranks of the pipeline group hold different schedules (a
            ``ValueError``, the same message on every rank).
        ValueError: the engine refused the name or sizes (its message), the schedule is
            bidirectional (two pipelines, which PyTorch cannot run) or offloads activations
            (O and L passes: run ``plan.without_offload()``), ``recompute`` is neither a choice
            nor a list of its stages, or is ``None`` for a schedule with selective stages, on
            this rank or another.
    """
    stage_list = list(stages) if isinstance(stages, (list, tuple)) else [stages]
    try:
        sched = _generate(name, stage_list, n_microbatches, dict(options))
    except ValueError as e:
        # Tells the other ranks, which are building theirs, so that they raise too.
        _agree(stage_list, None, e)
        raise
    # Checks the stages against the schedule and, in a process group, the ranks' schedules
    # against each other.
    return PipeblocksSchedule(
        stage_list,
        n_microbatches,
        loss_fn,
        sched,
        args_chunk_spec=args_chunk_spec,
        kwargs_chunk_spec=kwargs_chunk_spec,
        output_merge_spec=output_merge_spec,
        scale_grads=scale_grads,
        recompute=recompute,
        **dict(runtime_options or {}),
    )
