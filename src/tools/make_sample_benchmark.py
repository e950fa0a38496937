"""Regenerate benchmark_data/sample/ from photographs that scikit-image and matplotlib ship.

    python -m editjudge.tools.make_sample_benchmark --out benchmark_data/sample

Maintainers run this once; the result is committed, so users never need it. Every photograph
is public domain or CC0 (see the README it writes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

# name -> (package, path inside the package's data folder, source and license)
PHOTOS = {
    "astronaut": ("skimage", "astronaut.png", "Eileen Collins, NASA Great Images database; public domain"),
    "chelsea": ("skimage", "chelsea.png", "Chelsea the cat, Stefan van der Walt; CC0"),
    "coffee": ("skimage", "coffee.png", "Coffee cup, Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0"),
    "rocket": ("skimage", "rocket.jpg", "DSCOVR launch on Falcon 9, SpaceX; public domain"),
    "camera": ("skimage", "camera.png", "Photographer with a camera, Lav Varshney; CC0"),
    "hubble": ("skimage", "hubble_deep_field.jpg", "Hubble eXtreme Deep Field, NASA; public domain"),
    "coins": ("skimage", "coins.png", "Greek coins from Pompeii, Brooklyn Museum; no known copyright restrictions"),
    "hopper": ("matplotlib", "grace_hopper.jpg", "Grace Hopper, U.S. Navy official photograph; public domain"),
}

ITEMS = [
    ("astronaut", "color_material", "Change the astronaut's orange flight suit to a deep navy blue."),
    ("astronaut", "add_object", "Add a small embroidered flag patch on her left shoulder."),
    ("astronaut", "style", "Render the portrait as a loose watercolor painting."),
    ("chelsea", "color_material", "Make the cat's fur jet black while keeping its green eyes."),
    ("chelsea", "add_object", "Put a red bow tie around the cat's neck."),
    ("chelsea", "physics_causality", "Show the cat soaking wet, as if it had just been caught in heavy rain."),
    ("coffee", "color_material", "Make the cup and saucer look like they are made of clear glass."),
    ("coffee", "remove_object", "Remove the spoon from the saucer."),
    ("coffee", "physics_causality", "Show the scene a moment after the cup was knocked over, with coffee spilled across the table."),
    ("rocket", "text", "Write 'EDITJUDGE' in large white capital letters along the side of the rocket."),
    ("rocket", "physics_causality", "Show the moment of lift-off, with bright exhaust flames and billowing smoke at the base."),
    ("rocket", "style", "Turn the photo into a 1950s retro travel poster."),
    ("camera", "color_material", "Colorize this black-and-white photo with natural, realistic colors."),
    ("camera", "remove_object", "Remove the camera and tripod, leaving the man standing on the grass."),
    ("camera", "text", "Add the caption 'FIELD DAY' in white letters at the bottom of the image."),
    ("hubble", "add_object", "Add a large ringed planet in the lower right corner."),
    ("hubble", "style", "Repaint the image in the swirling brushwork style of Van Gogh's Starry Night."),
    ("hubble", "remove_object", "Remove the brightest galaxy near the centre of the image."),
    ("coins", "color_material", "Make every coin look like polished gold."),
    ("coins", "remove_object", "Remove the coin in the top-left corner and fill the space with the background."),
    ("coins", "text", "Engrave the number '2026' on the largest coin."),
    ("hopper", "add_object", "Add a pair of round tortoiseshell glasses."),
    ("hopper", "text", "Add a name tag reading 'G. HOPPER' to her uniform."),
    ("hopper", "style", "Turn the portrait into a pencil sketch."),
    ("chelsea", "remove_object", "把猫的胡须去掉。"),
    ("rocket", "add_object", "在火箭旁边加一架直升机。"),
    ("astronaut", "physics_causality", "Show her helmet visor fogged up from the cold."),
    ("hopper", "color_material", "Change her dark uniform to a light grey wool jacket."),
]

MAX_SIDE = 384


def _source(package: str, name: str) -> Path:
    if package == "skimage":
        import skimage

        return Path(skimage.__file__).parent / "data" / name
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / name


def build(out: Path) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    for key, (package, name, _) in PHOTOS.items():
        with Image.open(_source(package, name)) as image:
            image = image.convert("RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            image.save(out / "images" / f"{key}.jpg", quality=88, optimize=True)
    with open(out / "annotations.jsonl", "w", encoding="utf-8") as f:
        counters: dict[str, int] = {}
        for photo, category, instruction in ITEMS:
            counters[category] = counters.get(category, 0) + 1
            record = {
                "id": f"{category}_{counters[category]:03d}",
                "category": category,
                "instruction": instruction,
                "image": f"images/{photo}.jpg",
                "language": "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in instruction) else "en",
            }
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    lines = [
        "# The bundled sample benchmark",
        "",
        f"{len(ITEMS)} editing requests over {len({c for _, c, _ in ITEMS})} categories on {len(PHOTOS)} photographs,",
        "in editjudge's native layout (`annotations.jsonl`, one JSON object per line: `id`, `category`,",
        "`instruction`, `image` relative to this folder, `language`). Written by",
        "`python -m editjudge.tools.make_sample_benchmark --out benchmark_data/sample`.",
        "",
        f"The photographs are copies, shrunk to at most {MAX_SIDE} pixels a side, of sample data that",
        "scikit-image and matplotlib ship:",
        "",
        "| file | source and license |",
        "|---|---|",
    ]
    lines += [f"| images/{key}.jpg | {credit} (`{package}` data: `{name}`) |" for key, (package, name, credit) in PHOTOS.items()]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmark_data/sample")
    build(Path(parser.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
