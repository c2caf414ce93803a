"""Run pipeblocks schedules on PyTorch's ``torch.distributed.pipelining``.

:func:`schedule` turns a pipeblocks schedule into a ``_PipelineScheduleRuntime``: PyTorch's
runtime for arbitrary compute orders, which adds the sends and receives itself. Every rank passes
the ``PipelineStage`` objects it holds (several for looped and V-shape placements, as with
``ScheduleInterleaved1F1B`` or ``ScheduleZBVZeroBubble``); the runtime then follows pipeblocks'
order of forwards, input backwards (``I``), weight backwards (``W``) and fused backwards (``B``).

Which stages a rank must build comes from :meth:`pipeblocks.Schedule.stage_ids`::

    plan = pipeblocks.generate("zb-v", devices=world, microbatches=8)
    stages = [PipelineStage(make_piece(s), s, plan.stages, device) for s in plan.stage_ids(rank)]
    sched = pipeblocks.torch.schedule(stages, 8, loss_fn, name=plan)
    sched.step(x, target=y)

A schedule the given stages cannot run (wrong rank count, stage count, microbatch count or
placement) raises :class:`StageMismatchError` while the schedule is built, before any
communication.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import torch  # noqa: F401  (the top-level PyTorch package, not this module)
from torch.distributed.pipelining import schedules as _torch_schedules
from torch.distributed.pipelining.schedules import _Action, _PipelineScheduleRuntime

import pipeblocks
from pipeblocks import Schedule

__all__ = ["PipeblocksSchedule", "StageMismatchError", "check_stages", "plan_for", "schedule"]


class StageMismatchError(ValueError):
    """The pipeline stages given to a rank do not fit the schedule (count or placement)."""


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
    the number of local stages. A :class:`pipeblocks.Schedule` is only checked. ``options`` are
    those of :func:`pipeblocks.generate`.
    """
    stages = list(stages)
    if isinstance(name, Schedule):
        if options:
            raise TypeError(
                f"generator options {sorted(options)} only apply to a schedule name, not to a "
                "ready pipeblocks.Schedule"
            )
        sched = name
    else:
        _require_stages(stages)
        if len(stages) > 1:
            options.setdefault("chunks", len(stages))
        sched = pipeblocks.generate(name, stages[0].group_size, n_microbatches, **options)
    check_stages(sched, stages, n_microbatches)
    return sched


class PipeblocksSchedule(_PipelineScheduleRuntime):
    """A ``_PipelineScheduleRuntime`` that runs a pipeblocks schedule.

    Build it with :func:`schedule`. ``pipeline_order`` holds pipeblocks' compute order (the same
    rows as :meth:`pipeblocks.Schedule.to_torch_csv`); ``pipeblocks_schedule`` the schedule itself.
    """

    pipeblocks_schedule: Schedule

    def __init__(
        self,
        stages: Sequence[Any],
        n_microbatches: int,
        loss_fn: Optional[Callable[..., Any]],
        plan: Schedule,
        **kwargs: Any,
    ) -> None:
        stages = list(stages)
        check_stages(plan, stages, n_microbatches)
        if plan.splits_backward:
            # PyTorch refuses the I/W split for torch.compile'd stage modules; say so up front.
            compat = getattr(_torch_schedules, "_check_torch_compile_compatibility", None)
            if compat is not None:
                compat(stages, f"pipeblocks `{plan.name}`")
        super().__init__(stages, n_microbatches, loss_fn, **kwargs)
        self.pipeblocks_schedule = plan
        self.pipeline_order = {
            r: [_Action.from_str(a) for a in plan.actions(r)] for r in range(plan.devices)
        }
        # Checks the order, infers the stage → rank map (V-shape included) and inserts the
        # sends and receives.
        self._prepare_schedule_with_comms(self.pipeline_order)


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
        runtime_options: further keywords for ``_PipelineScheduleRuntime`` (``defer_pp_recv``, ...).
        **options: generator options of :func:`pipeblocks.generate` (``chunks``, ``memory``,
            ``f``, ``b``, ``w``, ``bw``, ``comm``).

    Raises:
        StageMismatchError: the stages do not fit the schedule (a ``ValueError``), raised before
            any communication.
        ValueError: the engine refused the name or sizes (its message).
    """
    stage_list = list(stages) if isinstance(stages, (list, tuple)) else [stages]
    sched = plan_for(name, stage_list, n_microbatches, **options)
    return PipeblocksSchedule(
        stage_list,
        n_microbatches,
        loss_fn,
        sched,
        args_chunk_spec=args_chunk_spec,
        kwargs_chunk_spec=kwargs_chunk_spec,
        output_merge_spec=output_merge_spec,
        scale_grads=scale_grads,
        **dict(runtime_options or {}),
    )
