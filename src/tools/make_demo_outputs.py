"""Build the demo's precomputed editors: the sample's sources made brighter or darker by known amounts.

    python -m editjudge.tools.make_demo_outputs --out .cache/tiny-models

The tiny judge (``make_tiny_models``) rates one thing, the brightness of the edited image (mean
luminance mapped to 0-10). Random-weight editors all produce coloured noise of middling brightness
and would all score about 5-6, so the demo adds three ``precomputed`` editors whose outputs differ in
exactly what this judge rates, in a known way. A working judge must rank them as built:

- ``good-edits``: every output bright (mean luminance about 85%, +-8% per item): scores about 8-9;
- ``uneven-edits``: bright in color_material, add_object and style, dark in text, remove_object
  and physics_causality: the per-category columns tell the two halves apart;
- ``bad-edits``: every output dark (about 15%, +-8% per item): scores about 1-2.

Each output is its source blended towards white or black until its mean luminance is the target,
so the gallery shows recognisable pictures, lighter or darker. The per-item offset comes from a hash
of the item id, so the lowest-scores list is not a tie. Writes ``OUT/demo-outputs/v<DEMO_VERSION>/
<editor>/<item_id>.png`` (reused when the folder exists; bump DEMO_VERSION when this file changes).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

DEMO_VERSION = "1"
SAMPLE = Path(__file__).resolve().parents[2] / "benchmark_data" / "sample" / "annotations.jsonl"
SPREAD = 0.08
BRIGHT, DARK = 0.85, 0.15
# editor -> category -> target mean luminance (0-1); "*" for the other categories.
EDITORS: dict[str, dict[str, float]] = {
    "good-edits": {"*": BRIGHT},
    "uneven-edits": {"color_material": 0.8, "add_object": 0.8, "style": 0.8, "*": 0.25},
    "bad-edits": {"*": DARK},
}


def _offset(editor: str, item_id: str) -> float:
    digest = hashlib.sha256(f"{editor}\0{item_id}".encode()).digest()
    return (int.from_bytes(digest[:4], "big") / 2**32 * 2 - 1) * SPREAD


def with_brightness(image: Image.Image, target: float) -> Image.Image:
    """``image`` blended towards white (or black) until its mean luminance is ``target`` (0-1)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    current = float(np.asarray(image.convert("L"), dtype=np.float64).mean())
    want = min(max(target, 0.0), 1.0) * 255
    if want >= current:
        share = (want - current) / max(255 - current, 1e-6)
        out = rgb * (1 - share) + 255 * share
    else:
        share = (current - want) / max(current, 1e-6)
        out = rgb * (1 - share)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def target_for(editor: str, category: str, item_id: str) -> float:
    table = EDITORS[editor]
    return table.get(category, table["*"]) + _offset(editor, item_id)


def build_demo_outputs(folder: Path, annotations: Path = SAMPLE) -> Path:
    from ..benchmark import load_benchmark

    items = load_benchmark(annotations)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-outputs-", dir=folder.parent))
    try:
        for editor in EDITORS:
            (tmp / editor).mkdir()
            for item in items:
                with Image.open(item.image) as source:
                    source.thumbnail((256, 256))  # demo pictures: small, quick to score and to show
                    image = with_brightness(source, target_for(editor, item.category, item.id))
                image.save(tmp / editor / f"{item.id}.png")
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def ensure_demo_outputs(root: str | os.PathLike) -> dict[str, Path]:
    """The demo editors' folders under ``root``, built on first use."""
    folder = Path(root) / "demo-outputs" / f"v{DEMO_VERSION}"
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build_demo_outputs(folder)
        logger.info("built the demo outputs in %s", folder)
    return {editor: folder / editor for editor in EDITORS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".cache/tiny-models", help="cache folder (default: .cache/tiny-models)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for editor, path in ensure_demo_outputs(args.out).items():
        print(f"{editor}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
