"""The tiny models are pinned bytes (src/tools/pinned/): the same files on every machine, verified on use.

A trained model's weights depend on the CPU that trained it, so tests and the demo never train: they
install the checked-in files. These tests fail when the pinned files, their manifest and the builders
drift apart, or when a copy with other bytes could be used.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from editjudge.tools import pinned

ROOT = Path(__file__).resolve().parents[1]


def _manifest() -> dict:
    return json.loads(pinned.MANIFEST.read_text())


def test_the_pinned_files_are_the_manifests_bytes_and_nothing_else():
    manifest = _manifest()
    listed = {pinned.MANIFEST.name}
    for name, spec in manifest["models"].items():
        assert pinned.folder_digests(pinned.PINNED / spec["path"]) == spec["files"], name
        listed |= {f"{spec['path']}/{rel}" for rel in spec["files"]}
    present = {p.relative_to(pinned.PINNED).as_posix() for p in pinned.PINNED.rglob("*") if p.is_file()}
    assert present == listed


def test_each_pinned_model_comes_from_the_builder_version_in_the_code():
    """Bumping a builder's version without re-pinning (or re-pinning without the bump) fails here."""
    manifest = _manifest()["models"]
    builders = pinned.pinned_models()
    assert list(manifest) and set(manifest) == set(builders)
    for name, (module, version, path, _build) in builders.items():
        assert manifest[name]["builder"] == module, name
        assert manifest[name]["builder_version"] == version, name
        assert manifest[name]["path"] == path, name
        info = json.loads((pinned.PINNED / path / pinned.BUILD_INFO).read_text())
        assert info["builder_version"] == version and info["seed"] == _manifest()["seed"], name


def test_no_pinned_file_names_the_machine_it_was_built_on():
    for path in pinned.PINNED.rglob("*"):
        if path.suffix not in {".json", ".jinja", ".md", ".txt"}:
            continue
        text = path.read_text()
        assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text, path


def test_install_copies_verifies_and_replaces_a_copy_with_other_bytes(tmp_path):
    spec = _manifest()["models"]["qwen3-vl-judge"]
    judge = pinned.install("qwen3-vl-judge", tmp_path)
    assert judge == tmp_path / spec["path"]
    assert pinned.folder_digests(judge) == spec["files"]
    stamp = (judge / "model.safetensors").stat().st_mtime_ns
    assert pinned.install("qwen3-vl-judge", tmp_path) == judge  # verified, kept
    assert (judge / "model.safetensors").stat().st_mtime_ns == stamp

    weights = bytearray((judge / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (judge / "model.safetensors").write_bytes(bytes(weights))  # a local build, or a bit flipped on disk
    (judge / "extra.txt").write_text("left over")
    assert pinned.install("qwen3-vl-judge", tmp_path) == judge
    assert pinned.folder_digests(judge) == spec["files"]
    assert not [p for p in judge.parent.iterdir() if p.name.startswith(".installing-")]


def test_pinned_files_that_are_not_the_manifests_bytes_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "pinned"
    shutil.copytree(pinned.PINNED, copy)
    monkeypatch.setattr(pinned, "PINNED", copy)
    monkeypatch.setattr(pinned, "MANIFEST", copy / pinned.MANIFEST.name)
    path = _manifest()["models"]["qwen3-vl-judge"]["path"]
    (copy / path / "config.json").write_text("{}")
    with pytest.raises(pinned.PinnedModelError, match="do not match.*make models-rebuild"):
        pinned.install("qwen3-vl-judge", tmp_path / "cache")
    assert not (tmp_path / "cache" / path).exists()


def test_make_models_installs_every_pinned_model_and_says_it_verified_them(tmp_path):
    result = subprocess.run([sys.executable, "-m", "editjudge.tools.pinned", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    models = _manifest()["models"]
    files = sum(len(spec["files"]) for spec in models.values())
    assert f"verified: {len(models)} tiny models, {files} files, each SHA-256 as pinned" in result.stdout
    for spec in models.values():
        assert pinned.folder_digests(tmp_path / spec["path"]) == spec["files"]


def test_a_seed_build_never_mixes_with_another_build(tmp_path, monkeypatch):
    from editjudge.tools.make_tiny_models import ensure_tiny_models

    monkeypatch.delenv(pinned.SEED_ENV, raising=False)
    judge = ensure_tiny_models(tmp_path)["judge"]  # the pinned build: seed 0
    monkeypatch.setenv(pinned.SEED_ENV, "1")
    with pytest.raises(pinned.PinnedModelError, match="another build than seed 1"):
        ensure_tiny_models(tmp_path)
    monkeypatch.setenv(pinned.SEED_ENV, "0")
    assert ensure_tiny_models(tmp_path)["judge"] == judge
    monkeypatch.setenv(pinned.SEED_ENV, "one")
    with pytest.raises(pinned.PinnedModelError, match="integer seed"):
        ensure_tiny_models(tmp_path)


def test_the_lora_adapter_is_only_handed_out_for_its_own_judge(tmp_path):
    from editjudge.tools.make_tiny_qwen25 import ensure_tiny_lora

    with pytest.raises(pinned.PinnedModelError, match="trained for the tiny judge"):
        ensure_tiny_lora(tmp_path, tmp_path / "some-other-judge")


def test_a_partial_rebuild_refuses_what_would_mix_builds(monkeypatch):
    """``--rebuild --only``: unknown names and another seed than the pinned set's are refused before any
    training, and nothing in pinned/ changes."""
    before = pinned.folder_digests(pinned.PINNED)
    with pytest.raises(pinned.PinnedModelError, match="no tiny model"):
        pinned.rebuild(0, ["no-such-model"])
    with pytest.raises(pinned.PinnedModelError, match="built with seed 0, not 7"):
        pinned.rebuild(7, ["qwen2.5-vl-judge"])
    assert pinned.folder_digests(pinned.PINNED) == before
