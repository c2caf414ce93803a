"""``import pipeblocks.torch`` without a usable PyTorch: a clear ImportError naming the fix, while
``import pipeblocks`` keeps working. Each case runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PYTHON_DIR
    )


def test_without_torch_the_bridge_names_the_fix_and_the_engine_works():
    # sys.modules["torch"] = None makes `import torch` fail as if torch were not installed
    run = _python(
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import pipeblocks\n"
        "assert pipeblocks.generate('1f1b', 2, 4).actions(0)[0] == '0F0'\n"
        "try:\n"
        "    import pipeblocks.torch\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, e.name, '|', e, '|', type(e.__cause__).__name__)\n"
        "else:\n"
        "    print('imported')\n"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "ImportError torch | pipeblocks.torch needs PyTorch (torch>=2.15), which is not installed: "
        "install it with pip install 'torch>=2.15' (import pipeblocks works without it) "
        "| ModuleNotFoundError"
    )


def test_a_torch_that_does_not_import_is_named_with_its_error():
    # a finder that fails like a torch whose native libraries are missing
    run = _python(
        "import sys\n"
        "class Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise ImportError('libcublasLt.so.13: cannot open shared object file')\n"
        "sys.meta_path.insert(0, Broken())\n"
        "try:\n"
        "    import pipeblocks.torch\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "pipeblocks.torch needs PyTorch (torch>=2.15), which does not import (libcublasLt.so.13: "
        "cannot open shared object file): install it with pip install 'torch>=2.15' "
        "(import pipeblocks works without it)"
    )


def test_an_older_torch_is_refused_with_the_version_found():
    pytest.importorskip("torch")
    run = _python(
        "import torch\n"
        "torch.__version__ = '2.10.0+cpu'\n"
        "try:\n"
        "    import pipeblocks.torch\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    print('imported')\n"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "pipeblocks.torch needs torch>=2.15, found torch 2.10.0+cpu: older versions fail or hang "
        "on some schedules; upgrade it with pip install 'torch>=2.15'"
    )

