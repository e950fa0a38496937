"""The tiny models' pinned bytes: the same model files on every machine, whatever its CPU.

    python -m editjudge.tools.pinned --out .cache/tiny-models      # make models: install and verify
    python -m editjudge.tools.pinned --rebuild                      # make models-rebuild: train anew, re-pin

A trained model's weights depend on the CPU that trains it (the float rounding of every training
step), and so would every score the tests and the demo pin. So the tiny models are not trained where
they are used: their files are checked in under ``src/tools/pinned/`` (about 5 MB in all), each with its
SHA-256 in ``pinned/manifest.json`` beside the version of the builder that made it. Installing copies
a model's folder into the cache (``OUT/<its versioned path>``, where the configs and tests look) and
verifies every file's SHA-256; a cached folder with other bytes is replaced, never used.

``--rebuild`` runs the builders (``make_tiny_models``, ``make_tiny_qwen25``, ``make_tiny_editors``) with
seed 0 and rewrites the pinned files and the manifest: do it on purpose, after bumping a builder's
version, and commit the result. ``tests/test_pinned_models.py`` fails when a builder's version and the
pinned files drift apart.

``EDITJUDGE_TINY_SEED=N``: build the models here with seed N instead of installing the pinned ones
(into whatever cache the caller names). That is how to see which tests rely on one build's answers:
``EDITJUDGE_CACHE=/tmp/seed1 EDITJUDGE_TINY_SEED=1 make test``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..files import sha256

logger = logging.getLogger(__name__)

PINNED = Path(__file__).resolve().parent / "pinned"
MANIFEST = PINNED / "manifest.json"
SEED_ENV = "EDITJUDGE_TINY_SEED"
JUDGE = "qwen3-vl-judge"
LORA = "qwen3-vl-judge-lora-inverted"
BUILD_INFO = "editjudge_tiny.json"


class PinnedModelError(RuntimeError):
    """The pinned files are missing or are not the bytes the manifest names."""


def build_seed() -> int | None:
    """The seed to build the tiny models with here (``EDITJUDGE_TINY_SEED``), or None: use the pinned files."""
    value = os.environ.get(SEED_ENV, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise PinnedModelError(f"{SEED_ENV} must be an integer seed, got {value!r}") from None



def folder_digests(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (relative POSIX path -> SHA-256), in sorted order."""
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def load_manifest() -> dict:
    try:
        return json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        raise PinnedModelError(f"{MANIFEST} is missing: the pinned tiny models are not installed with this copy "
                               "of editjudge (run from a checkout, or `make models-rebuild`)") from None


def entry(name: str) -> dict:
    models = load_manifest()["models"]
    if name not in models:
        raise PinnedModelError(f"no pinned tiny model {name!r} in {MANIFEST}; pinned: {', '.join(models)}")
    return models[name]


def _verified(folder: Path, files: dict[str, str]) -> bool:
    try:
        return folder_digests(folder) == files
    except OSError:
        return False


def install(name: str, root: str | os.PathLike) -> Path:
    """The pinned model ``name`` under ``root/<its path>``: copied there unless the files already have the
    pinned bytes, and verified (SHA-256 of every file, no file more or less) before it is returned."""
    spec = entry(name)
    target = Path(root) / spec["path"]
    if _verified(target, spec["files"]):
        return target
    source = PINNED / spec["path"]
    if not _verified(source, spec["files"]):
        raise PinnedModelError(f"the pinned files of {name} in {source} do not match {MANIFEST} "
                               "(edited by hand? run `make models-rebuild` to pin a new build)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copy into a temporary sibling, verify, then swap it in: a killed copy never leaves half a model,
    # and a concurrent installer that wins first is simply kept.
    tmp = Path(tempfile.mkdtemp(prefix=".installing-", dir=target.parent))
    try:
        staged = tmp / target.name
        shutil.copytree(source, staged)
        if not _verified(staged, spec["files"]):
            raise PinnedModelError(f"copying {source} to {target.parent} did not give the pinned bytes")
        if target.exists():
            if _verified(target, spec["files"]):
                return target
            os.replace(target, tmp / "replaced")
            logger.warning("%s had other bytes than the pinned %s: replaced", target, name)
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("installed the pinned %s in %s (%d files, SHA-256 verified)", name, target, len(spec["files"]))
    return target


def build_once(folder: Path, build: Callable[[Path], Path]) -> Path:
    """``build(out)`` into a temporary sibling of ``folder`` and rename, unless ``folder`` is built already
    (it has its build info): a killed build never leaves half a model."""
    if not (folder / BUILD_INFO).is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
        try:
            build(tmp / folder.name)
            if not (folder / BUILD_INFO).is_file():  # another process may have won
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp / folder.name, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_model(name: str, root: str | os.PathLike) -> Path:
    """The tiny model ``name`` under ``root``: the pinned files, or with ``EDITJUDGE_TINY_SEED`` set, built
    here with that seed (the models it depends on first, in the same ``root``)."""
    seed = build_seed()
    if seed is None:
        return install(name, root)
    root = Path(root)
    module, version, path, build = pinned_models()[name]
    if name == LORA:  # trained on the judge: on this seed's judge
        tiny_model(JUDGE, root)
    folder = root / path
    if (folder / BUILD_INFO).is_file() and _seed_of(folder) != seed:
        raise PinnedModelError(f"{folder} holds another build than seed {seed}: give {SEED_ENV} an empty cache "
                               "folder of its own (EDITJUDGE_CACHE)")
    return build_once(folder, lambda out: build(out, seed, root))


def _seed_of(folder: Path) -> int | None:
    try:
        return json.loads((folder / BUILD_INFO).read_text()).get("seed")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# The pinned set: what `make models` installs and `make models-rebuild` re-pins.

Build = Callable[[Path, int, Path], Path]  # build(out, seed, root): root holds the set's other models


def pinned_models() -> dict[str, tuple[str, str, str, Build]]:
    """name -> (its builder's module, the builder's version, its path below a cache, build), in build order."""
    from . import make_tiny_editors as editors
    from . import make_tiny_models as judge
    from . import make_tiny_qwen25 as qwen25

    judge_path = judge.judge_path()
    models: dict[str, tuple[str, str, str, Build]] = {
        judge.JUDGE_DIRNAME: (judge.__name__, judge.BUILDER_VERSION, judge_path,
                              lambda out, seed, root: judge.build_judge(out, seed=seed)),
        qwen25.JUDGE_DIRNAME: (qwen25.__name__, qwen25.BUILDER_VERSION, qwen25.judge_path(),
                               lambda out, seed, root: qwen25.build_judge(out, seed=seed)),
        qwen25.LORA_DIRNAME: (qwen25.__name__, qwen25.BUILDER_VERSION, qwen25.lora_path(judge_path),
                              lambda out, seed, root: qwen25.build_lora_adapter(root / judge_path, out, seed=seed)),
    }
    for name in editors.BUILDERS:
        models[name] = (editors.__name__, editors.EDITOR_BUILDERS_VERSION, editors.editor_path(name),
                        lambda out, seed, root, name=name: editors.build_editor(name, out, seed=seed))
    return models


def rebuild(seed: int = 0, only: list[str] | None = None) -> dict:
    """Train and build the tiny models, replace ``pinned/`` with the results and write the manifest.

    ``only``: rebuild these and keep the other pinned files as they are (with the manifest's seed); a kept
    model whose builder's version moved must be rebuilt too."""
    models = pinned_models()
    kept: dict = {}
    if only:
        unknown = sorted(set(only) - set(models))
        if unknown:
            raise PinnedModelError(f"no tiny model {unknown}; known: {', '.join(models)}")
        current = load_manifest()
        if current.get("seed") != seed:
            raise PinnedModelError(f"the pinned models were built with seed {current.get('seed')}, not {seed}: "
                                   "rebuild them all to change the seed")
        kept = {name: spec for name, spec in current["models"].items() if name not in only}
    manifest: dict = {"format": 1, "seed": seed, "models": {},
                      "about": "tiny models checked in so that every machine uses the same bytes; written by "
                               "`python -m editjudge.tools.pinned --rebuild` (make models-rebuild)"}
    staging = Path(tempfile.mkdtemp(prefix=".pinned-", dir=PINNED.parent))
    try:
        for name, (module, version, path, build) in models.items():  # in build order: the judge before its LoRA
            if name in kept:
                if (kept[name]["path"], kept[name]["builder_version"]) != (path, version):
                    raise PinnedModelError(f"{name}'s builder is at version {version}, its pinned files at "
                                           f"{kept[name]['builder_version']}: rebuild it too")
                shutil.copytree(PINNED / path, staging / path)
                manifest["models"][name] = kept[name]
                continue
            logger.info("building %s (%s, builder version %s) ...", name, module, version)
            build(staging / path, seed, staging)
            manifest["models"][name] = {"path": path, "builder": module, "builder_version": version,
                                        "files": folder_digests(staging / path)}
        (staging / MANIFEST.name).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if PINNED.exists():
            os.replace(PINNED, staging.with_name(staging.name + "-old"))
        os.replace(staging, PINNED)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(staging.with_name(staging.name + "-old"), ignore_errors=True)
    return manifest


def install_all(root: str | os.PathLike) -> dict[str, Path]:
    return {name: install(name, root) for name in load_manifest()["models"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", help="cache folder: install the pinned models there and verify them")
    what.add_argument("--rebuild", action="store_true",
                      help=f"train and build every tiny model anew and re-pin them in {PINNED}")
    parser.add_argument("--seed", type=int, default=0, help="with --rebuild: the seed (default 0)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="with --rebuild: rebuild only these models, keep the other pinned files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.rebuild:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # peft looks up the adapter's base by name when saving
        manifest = rebuild(args.seed, args.only)
        print(f"re-pinned {', '.join(args.only or manifest['models'])} in {PINNED}; commit it with the builder change")
        return 0
    try:
        paths = install_all(args.out)
    except PinnedModelError as exc:
        print(f"error: {exc}")
        return 2
    files = sum(len(spec["files"]) for spec in load_manifest()["models"].values())
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(f"verified: {len(paths)} tiny models, {files} files, each SHA-256 as pinned in {MANIFEST.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
