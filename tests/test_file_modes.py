"""Every file editjudge writes gets the mode the user's umask gives new files (issue 21), not mkstemp's 0o600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SAMPLE

WRITE = """
import sys
sys.path.insert(0, {root!r})
import main  # this checkout as the editjudge package
from editjudge.files import current_umask, write_atomic
from editjudge.jsonl import append_jsonl, write_jsonl_atomic
folder = sys.argv[1]
print(oct(current_umask()))
write_atomic(folder + "/atomic.txt", "x")
write_jsonl_atomic(__import__("pathlib").Path(folder + "/atomic.jsonl"), [{{"a": 1}}])
append_jsonl(__import__("pathlib").Path(folder + "/appended.jsonl"), [{{"a": 1}}])
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_write_atomic_and_jsonl_writers_follow_the_umask(tmp_path, umask, expected):
    result = subprocess.run([sys.executable, "-c", WRITE.format(root=str(ROOT)), str(tmp_path)], capture_output=True,
                            text=True, timeout=60, umask=umask)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == oct(umask)  # current_umask reads it, and leaves it as it was
    modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    assert modes == {"atomic.txt": expected, "atomic.jsonl": expected, "appended.jsonl": expected}


def test_current_umask_without_procfs_sets_it_back(monkeypatch):
    import builtins

    from editjudge import files

    real_open = builtins.open

    def no_procfs(path, *args, **kwargs):
        if str(path) == "/proc/self/status":
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    old = os.umask(0o027)
    try:
        monkeypatch.setattr(builtins, "open", no_procfs)
        assert files.current_umask() == 0o027
        monkeypatch.undo()
        assert files.current_umask() == 0o027  # the fallback put it back
    finally:
        os.umask(old)


def test_every_file_of_a_run_is_group_readable_with_umask_002(tmp_path, judge_path, precomputed_dir):
    out = tmp_path / "out"
    data = {
        "benchmark": {"path": str(SAMPLE), "limit": 3},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "bright", "type": "precomputed", "image_dir": str(precomputed_dir)}]},
        "reward_model": {"type": "qwen3_vl", "devices": ["cpu"], "params": {
            "model_path": judge_path, "batch_size": 3, "max_new_tokens": 12, "show_progress": False}},
        "output_dir": str(out),
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    result = subprocess.run([sys.executable, "main.py", "--config", str(config)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, umask=0o002, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr
    written = [p for p in out.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"report.html", "summary.json", "summary.csv", "scores.jsonl", "manifest.jsonl",
            "config.resolved.yaml"} <= names, names
    assert any(p.suffix == ".png" and p.parent.name == "bright" for p in written), names
    wrong = {str(p.relative_to(out)): oct(_mode(p)) for p in written if _mode(p) != 0o664}
    assert wrong == {}
