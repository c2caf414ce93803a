"""The accuracy harness (scripts/accuracy.py) in its short form, so that it cannot rot: a real
transformer on 4 gloo ranks, 2 schedules, 2 iterations, predicted against measured."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "accuracy.py"


def test_quick_harness_predicts_and_measures(tmp_path):
    out = tmp_path / "acc.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "iteration time: median error" in proc.stdout
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert [r["schedule"] for r in rows] == ["1f1b", "zb-v"]
    for r in rows:
        assert r["predicted_s"] > 0 and r["measured_s"] > 0
        assert len(r["iterations_s"]) == 2
        assert len(r["measured_peak_bytes"]) == 4 and all(b > 0 for b in r["measured_peak_bytes"])
        # Activation memory does not depend on the machine's speed: the prediction from the
        # profile's saved-tensor bytes must hold (the 10%).
        assert all(math.isfinite(e) and abs(e) <= 10.0 for e in r["peak_error_pct"]), r["peak_error_pct"]
    assert doc["stage_costs"]["format"] == "pipeblocks-stage-costs"
    assert len(doc["stage_costs"]["stages"]) == 8


def test_quick_harness_on_the_rust_runtime(tmp_path):
    root = Path(__file__).resolve().parents[2]
    binary = next((b for b in (root / "target" / "release" / "pipeblocks", root / "target" / "debug" / "pipeblocks")
                   if b.exists()), None)
    if binary is None:
        pytest.skip("no pipeblocks binary built (cargo build) for --runtime rust")
    out = tmp_path / "rust.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--runtime", "rust", "--quick", "--pipeblocks", str(binary),
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["schedule"] for r in rows] == ["1f1b", "zb-v"]
    for r in rows:
        assert r["predicted_s"] > 0 and r["measured_s"] > 0 and r["step_time_s"] >= r["measured_s"]
        assert len(r["measured_peak_bytes"]) == 4


def test_bad_arguments_get_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--world", "1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "--world must be at least 2" in proc.stderr
