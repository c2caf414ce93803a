"""examples/torch_train.py under torchrun: a few training steps on 2 CPU processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "torch_train.py"


@pytest.mark.parametrize("schedule", ["interleaved-1f1b"])
def test_example_trains_under_torchrun(schedule, tmp_path):
    csv = tmp_path / "schedule.csv"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(EXAMPLE), "--schedule", schedule, "--microbatches", "4", "--batch", "8",
        "--steps", "12", "--csv-out", str(csv),
    ]  # fmt: skip
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert f"{schedule}: " in out and "done: 12 steps" in out
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out)]
    assert len(losses) >= 2 and losses[-1] < losses[0], out
    assert csv.read_text().count("\n") == 2  # one row per rank
