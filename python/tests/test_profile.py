"""pipeblocks.torch.profile: measured stage costs of real modules, written as the stage-cost file
every pipeblocks command reads."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import pipeblocks as pb  # noqa: E402
import pipeblocks.torch as pbt  # noqa: E402

V, H, T, B = 32, 16, 8, 2


class Embed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, H)

    def forward(self, x):
        return self.emb(x)


class Block(torch.nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.up = torch.nn.Linear(H, width * H)
        self.down = torch.nn.Linear(width * H, H)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.out = torch.nn.Linear(H, V)

    def forward(self, x):
        return self.out(x)


def loss(out, target):
    return torch.nn.functional.cross_entropy(out.reshape(-1, V), target.reshape(-1))


def model(widths=(4, 4)):
    torch.manual_seed(0)
    return [Embed(), *(Block(w) for w in widths), Head()]


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def test_profile_measures_every_stage_and_writes_a_readable_file(tmp_path):
    x, y = inputs()
    stages = model()
    path = tmp_path / "costs.json"
    seen = []
    prof = pbt.profile(stages, x, loss, target=y, warmup=1, repeats=3, path=str(path),
                       optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                       progress=lambda done, all_: seen.append((done, all_)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [s.stage for s in prof.stages] == [0, 1, 2, 3]
    for s in prof.stages:
        # The first stage's input (token ids) needs no gradient: PyTorch's runtime skips its
        # input backward and runs the whole backward as its W, freeing nothing before.
        first = s.stage == 0
        assert s.f > 0 and s.w > 0 and s.bw > 0
        assert (s.b == 0 and s.b_freed_bytes == 0) if first else s.b > 0
        assert len(s.samples["f"]) == 3
        assert s.optimizer is not None and s.optimizer > 0
        assert s.param_bytes == sum(p.numel() * 4 for p in stages[s.stage].parameters())
    # A Block saves its input (B*T*H floats), the up projection's output and its relu (B*T*4H
    # each, shared storage counted once): at least input + one hidden, never the parameters.
    block = prof.stages[1]
    assert block.activation_bytes >= (B * T * H + B * T * 4 * H) * 4
    assert block.activation_bytes < (B * T * H + 3 * B * T * 4 * H) * 4 + 1
    text = path.read_text()
    doc = json.loads(text)
    assert doc["format"] == "pipeblocks-stage-costs" and len(doc["stages"]) == 4
    assert doc["stages"][1]["optimizer"] == pytest.approx(block.optimizer)
    # The engine reads it: a 1F1B over 4 devices, and over 2 (stages merged in pairs).
    for devices in (4, 2):
        s = pb.generate("1f1b", devices=devices, microbatches=8, stage_costs=text)
        r = s.simulate(stage_costs=text)
        assert r["makespan"] > 0


def test_a_wider_stage_costs_more_and_holds_more():
    # Big enough that the arithmetic, not the per-call overhead, sets the times.
    h, rows = 64, 256
    torch.manual_seed(0)

    def mlp(width):
        return torch.nn.Sequential(torch.nn.Linear(h, width * h), torch.nn.ReLU(), torch.nn.Linear(width * h, h))

    narrow, wide = mlp(1), mlp(32)
    x = torch.randn(rows, h)
    prof = pbt.profile([narrow, wide], x, lambda out: out.pow(2).mean(), warmup=1, repeats=5)
    a, b = prof.stages
    assert b.activation_bytes > 8 * a.activation_bytes
    assert b.param_bytes > 8 * a.param_bytes
    # 32 times the hidden width: far more work in every pass (medians, a wide margin).
    assert b.f > 4 * a.f and b.b + b.w > 4 * (a.b + a.w)


def test_bad_arguments_are_refused():
    x, y = inputs()
    with pytest.raises(ValueError, match="at least one stage"):
        pbt.profile([], x)
    with pytest.raises(ValueError, match="repeats"):
        pbt.profile(model(), x, loss, target=y, repeats=0)
    with pytest.raises(ValueError, match="comm"):
        pbt.profile(model(), x, loss, target=y, comm=float("nan"))
    with pytest.raises(TypeError, match="PipelineStage"):
        pbt.profile([object()], x)


def test_a_file_for_other_stage_counts_is_refused():
    x, y = inputs()
    text = pbt.profile(model(), x, loss, target=y, warmup=0, repeats=1).stage_costs()
    plan = pb.generate("1f1b", devices=3, microbatches=6)
    with pytest.raises(ValueError, match="4 stages"):
        plan.simulate(stage_costs=text)
