"""Test helpers for the real vLLM server: skip where vLLM is not installed, unless it must run.

``EDITJUDGE_REQUIRE_VLLM=1`` (set by .ci/run once it has built .venv-vllm) turns the skip into a
failure, so CI never passes by skipping. The vLLM environment is found the way the backend finds
it: ``$EDITJUDGE_VLLM_PYTHON``, else ``.venv-vllm`` (``make vllm``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from editjudge.models.reward.vllm_judge import default_python

# The server processes of these tests: one core each is what this machine can give.
SERVER_ENV = {"OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def vllm_python() -> str:
    """The vLLM environment's python, or a skip (a failure under EDITJUDGE_REQUIRE_VLLM=1)."""
    python = default_python()
    problem = None
    if not Path(python).exists():
        problem = f"vLLM is not installed ({python} does not exist; run `make vllm`)"
    else:
        check = subprocess.run([python, "-c", "import vllm"], capture_output=True, text=True, timeout=300)
        if check.returncode != 0:
            problem = f"vLLM does not import in {python}: {check.stderr.strip()[-500:]}"
    if problem:
        if os.environ.get("EDITJUDGE_REQUIRE_VLLM") == "1":
            pytest.fail(f"EDITJUDGE_REQUIRE_VLLM=1 but {problem}")
        pytest.skip(problem)
    return python


def records(path: Path) -> list[dict]:
    """scores.jsonl without the fields that differ between runs or backends by design."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for key in ("settings", "seconds"):
            record.pop(key, None)
        out.append(record)
    return out
