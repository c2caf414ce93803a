"""Type stubs of the native module (Rust, PyO3) behind :mod:`pipeblocks`."""


import os
from typing import Any, Literal, Optional, TypedDict, Union

class GeneratorInfo(TypedDict):
    """One entry of the engine's registry."""

    name: str
    summary: str
    constraints: str
    uses: list[Literal["chunks", "memory", "group", "costs"]]
    """The options of :func:`generate` the generator reads; ``costs`` stands for ``f``, ``b``,
    ``w``, ``bw``, ``comm``, ``stage_costs``, ``b_release``, ``overlap``, ``offload``,
    ``selective`` and ``selective_keep``."""

class Schedule:
    """A complete pipeline schedule: a placement and one ordered list of passes per rank.

    Always valid: complete, in dependency order and free of deadlock.
    """

    @property
    def name(self) -> str:
        """Name of the generator or file the schedule came from."""
    @property
    def devices(self) -> int:
        """Number of ranks ``p``."""
    @property
    def stages(self) -> int:
        """Number of stages ``S`` over all ranks."""
    @property
    def microbatches(self) -> int:
        """Number of microbatches ``m``."""
    @property
    def placement(self) -> Literal["sequential", "looped", "v-shape", "bidirectional", "explicit"]:
        """How stages are placed on ranks (``bidirectional``: DualPipe's two pipelines in opposite
        directions)."""
    @property
    def stage_ranks(self) -> list[int]:
        """The rank of each stage, in stage order."""
    @property
    def splits_backward(self) -> bool:
        """Whether the backward is split into input (``I``) and weight (``W``) passes."""
    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The overlapped pairs (DualPipe's ``F&B``), each ``(forward, backward)`` in pipeblocks'
        spelling, e.g. ``("F0.3", "BW3.1")``: a forward and a backward (``B`` or ``BW``) of
        another microbatch, adjacent in one rank's :meth:`passes`, that the rank runs as one
        unit. Empty for schedules without pairs."""
    @property
    def recompute(self) -> list[int]:
        """The stages that recompute, ascending: those with an R pass (``"R3.2"`` in
        :meth:`passes`), which keep only their input after each forward and rerun the forward
        right before the backward. Empty for most schedules; ``generate("auto", ...)`` with a
        ``memory`` below V-Min's and :meth:`with_recompute` make them. PyTorch has no recompute
        action: :meth:`actions` leaves the R passes out and :func:`pipeblocks.torch.schedule`
        runs these stages' modules under activation checkpointing instead. Includes the
        :attr:`selective` stages."""
    @property
    def selective(self) -> list[int]:
        """The stages whose R passes recompute the attention only (selective recomputation):
        their microbatches keep all of the activation but the attention's inner part, a
        ``selective_keep`` fraction of it. Ascending, a subset of :attr:`recompute`; empty for
        most schedules. ``generate("auto", ..., selective=..., selective_keep=...)`` and
        ``with_recompute(stages, selective=True)`` make them; simulating such a schedule under
        uniform costs needs ``selective`` and ``selective_keep``. :mod:`pipeblocks.torch` needs
        an explicit ``recompute=`` for such a schedule (it checkpoints whole modules)."""
    @property
    def offloaded(self) -> list[tuple[int, int]]:
        """The ``(stage, microbatch)`` pairs whose activation waits in host memory, sorted: each
        has an O pass (``"O3.2"`` in :meth:`passes`, after its forward, on the device's host
        link beside the computation) and an L pass (``"L3.2"``, loading it back before its R or
        backward). Empty for most schedules; ``generate("auto", ..., memory=..., offload=...)``
        makes them. Simulating such a schedule under uniform costs needs ``offload``; PyTorch
        cannot run it (:meth:`without_offload`)."""
    def without_offload(self) -> Schedule:
        """This schedule without its O and L passes: the same order of the other passes, every
        activation kept on the device (more device memory than this schedule). A valid
        schedule, and what :mod:`pipeblocks.torch` and the CSV export can take."""
    def with_recompute(self, stages: list[int], *, selective: bool = False) -> Schedule:
        """This schedule with every microbatch of ``stages`` recomputed: an R pass right before
        each of their backwards (stages that already recompute keep their R passes). With
        ``selective`` these stages recompute the attention only (:attr:`selective`), else in
        full (a selective stage among them becomes full). ``ValueError`` for a stage out of
        range."""
    def without_recompute(self) -> Schedule:
        """This schedule without its R passes: the same order of the other passes, every
        activation kept until its backward. What PyTorch's CSV can carry; on PyTorch the
        stages of :attr:`recompute` then recompute by activation checkpointing."""
    def stage_ids(self, rank: int) -> list[int]:
        """The stages held by ``rank``, ascending. ``ValueError`` for a rank out of range."""
    def actions(self, rank: int) -> list[str]:
        """The ordered compute actions of ``rank`` in PyTorch's spelling, e.g. ``"3I7"``; each
        overlapped pair (:attr:`pairs`) is one action in PyTorch's ``OVERLAP_F_B`` form,
        ``"(0F3;3B1)OVERLAP_F_B"`` (forward first), as in the rank's CSV row. ``_Action.from_str``
        reads every one of them. Recompute passes (R, :attr:`recompute`) are left out: PyTorch
        has no such action, and on PyTorch the recomputation is activation checkpointing of the
        stage's module. ``ValueError`` for a bidirectional schedule (two pipelines), which
        PyTorch's actions cannot express, and for one that offloads (:attr:`offloaded`): PyTorch
        has no offload action, the message names :meth:`without_offload`."""
    def passes(self, rank: int) -> list[str]:
        """The ordered passes of ``rank`` in pipeblocks' spelling, e.g. ``"B3.7"`` (kinds F, B,
        W, BW, R a recompute, O an offload to host memory and L its load back); a pair's two
        halves are two adjacent entries."""
    def torch_csv(self) -> str:
        """The schedule as PyTorch's compute-only CSV text (one row of :meth:`actions` per
        rank); ``ValueError`` for a bidirectional schedule, one that offloads
        (:attr:`offloaded`) or one with recompute passes (:attr:`recompute`), which the CSV
        cannot express (write :meth:`to_json` instead, or the CSV of :meth:`without_offload`,
        or of :meth:`without_recompute` with activation checkpointing of those stages)."""
    def to_torch_csv(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes PyTorch's compute-only CSV (``_PipelineScheduleRuntime._load_csv``, torchtitan's
        ``pipeline_parallel_schedule_csv``); ``ValueError`` as for :meth:`torch_csv`."""
    def to_json(self) -> str:
        """The schedule as pipeblocks' versioned JSON."""
    def simulate(
        self,
        *,
        f: float = 1.0,
        b: float = 1.0,
        w: float = 1.0,
        bw: Optional[float] = None,
        comm: float = 0.0,
        b_release: Optional[float] = None,
        stage_costs: Optional[str] = None,
        overlap: Optional[float] = None,
        offload: Optional[float] = None,
        selective: Optional[float] = None,
        selective_keep: Optional[float] = None,
    ) -> dict[str, Any]:
        """Simulates the schedule (per-pass costs, or ``stage_costs``: the JSON text of a
        ``pipeblocks-stage-costs`` file). ``overlap`` is what an overlapped pair costs beyond its
        longer half, as a fraction of the shorter: a pair takes ``max(F, B) + overlap * min(F,
        B)``; from 0 to 1, default 1 (the halves' sum); ``ValueError`` outside.

        ``offload``: the host link of the uniform costs, the time to move one stage's activation
        of one microbatch to host memory (or back), in the units of ``f``, ``b``, ``w``; a
        schedule with O and L passes (:attr:`offloaded`) needs it. ``selective`` and
        ``selective_keep`` (both or neither): a selective recompute pass's time and the fraction
        of the activation a selectively recomputed microbatch keeps (0 to 1); a schedule with
        :attr:`selective` stages needs them. All three must be finite and not negative, and
        with ``stage_costs`` are refused (the file gives them per stage). The dict has the
        keys of ``pipeblocks simulate --json``: ``schedule``, ``placement``, ``devices``,
        ``stages``, ``microbatches``, ``passes``, ``makespan``, ``bubble_rate``, ``stage_bubble_rate`` (idle within each rank's own span),
        ``period`` (the makespan: no optimizer is modelled here), ``busy``, ``peak_activation``,
        ``max_peak_activation``, ``peak_vs_1f1b``, ``p2p_transfers``, ``p2p_vs_1f1b``,
        ``bottleneck``, and the engine's recompute and offload figures (``offloaded``,
        ``transfer_time``: the longest a rank's host link is busy, ...)."""
    def timeline(
        self,
        *,
        f: float = 1.0,
        b: float = 1.0,
        w: float = 1.0,
        bw: Optional[float] = None,
        comm: float = 0.0,
        b_release: Optional[float] = None,
        stage_costs: Optional[str] = None,
        overlap: Optional[float] = None,
        offload: Optional[float] = None,
        selective: Optional[float] = None,
        selective_keep: Optional[float] = None,
    ) -> dict[str, Any]:
        """The simulated timeline under the same costs as :meth:`simulate`: ``passes`` (each
        rank's passes in pipeblocks' spelling, e.g. ``"F3.7"``, in order), ``start`` and ``end``
        (their times, per rank; both halves of an overlapped pair carry the pair's)."""
    def __eq__(self, other: object) -> bool:
        """Equal when sizes, placement, every rank's order, the overlapped pairs and the
        selective stages agree (the name is not compared)."""

def generate(
    name: str,
    devices: int,
    microbatches: int,
    *,
    chunks: Optional[int] = None,
    memory: Union[str, float, None] = None,
    f: float = 1.0,
    b: float = 1.0,
    w: float = 1.0,
    bw: Optional[float] = None,
    comm: float = 0.0,
    stage_costs: Optional[str] = None,
    b_release: Optional[float] = None,
    group: Optional[int] = None,
    overlap: Optional[float] = None,
    offload: Optional[float] = None,
    selective: Optional[float] = None,
    selective_keep: Optional[float] = None,
) -> Schedule:
    """Generates the named schedule; ``ValueError`` with the engine's message on failure.

    ``chunks``: stages per rank of the looped schedules (interleaved-1f1b, bfs, zeropp).
    ``memory``: the per-rank activation budget of auto and zeropp, either a number of activation
    units (``4``, ``"4"``; one unit is one microbatch's activation on a rank, so without
    ``stage_costs`` a number below 1 is refused) or a string ending in ``x``, a multiple of
    1F1B's peak (``"0.5x"``: half of 1F1B's memory). ``group``: microbatches per ZeroPP group.
    ``chunks``, ``memory`` or ``group`` given to a schedule that does not read it raises
    ``ValueError`` (:func:`schedules` lists what each schedule reads under ``uses``).
    The costs ``f``, ``b``, ``w``, ``bw``, ``comm`` (or ``stage_costs``), ``b_release`` and
    ``overlap`` (a fraction from 0 to 1, as for :meth:`Schedule.simulate`) steer the
    cost-aware generators. ``offload`` (the host link's time, as for :meth:`Schedule.simulate`;
    default ``None``: not known) lets ``auto`` below 1F1B's memory offload activations to host
    memory (:attr:`Schedule.offloaded`), and ``selective`` with ``selective_keep`` let it
    recompute the attention only (:attr:`Schedule.selective`); without them it never does.
    """

def parse_torch_csv(text: str, name: str = "torch-csv") -> Schedule:
    """Reads PyTorch compute-only CSV text into a validated schedule; ``OVERLAP_F_B`` cells
    become overlapped pairs (:attr:`Schedule.pairs`)."""

def load(path: Union[str, os.PathLike[str]]) -> Schedule:
    """Reads a schedule file (pipeblocks JSON or PyTorch CSV) and validates it: ``ValueError``
    for a malformed or invalid file (a file that is not UTF-8 text included), ``OSError`` for one
    that cannot be read."""

def schedules() -> list[GeneratorInfo]:
    """The engine's registry of schedule generators (name, summary, constraints, uses)."""


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
    schedules: Optional[list[str]] = None,
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
    ``memory``, ``binding``, ...), ``faster_but_too_big``, ``enumerated``, ``simulated``,
    ``refined``. Raises ``ValueError`` with one line naming the change when nothing fits.
    """
