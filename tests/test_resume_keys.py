"""Resume keys: an edit is reused only while everything that can change its image is unchanged, and a
score only while its edited image, the item's instruction and its source image are unchanged.

Each case copies one finished run (a real tiny InstructPix2Pix and a precomputed editor over three
items, scored by the tiny judge), marks every manifest and score line as "from before" (a sentinel in
``seconds`` and ``raw_output``), changes one input and runs both stages again: a line still carrying
its sentinel was reused, any other was redone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from editjudge.config import load_config
from editjudge.pipeline import Layout, run
from tests.conftest import tiny_editor

ITEMS = ("it0", "it1", "it2")
REUSED_EDIT = -1.0  # the sentinel `seconds` of a manifest line written before the change
REUSED_SCORE = "(scored before the change)"


def _source(path: Path, colour: tuple[int, int, int]) -> None:
    image = Image.new("RGB", (32, 32), colour)
    image.paste((255 - colour[0], 40, 255 - colour[2]), (0, 0, 12, 32))
    image.save(path)


def _write_benchmark(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "annotations.jsonl", "w") as f:
        for i, item_id in enumerate(ITEMS):
            _source(folder / f"{item_id}.png", (60 * i + 30, 90, 200 - 50 * i))
            f.write(json.dumps({"id": item_id, "category": f"c{i % 2}", "instruction": f"make it look like {i}",
                                "image": f"{item_id}.png"}) + "\n")


def _write_outputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, item_id in enumerate(ITEMS):
        Image.new("RGB", (32, 32), (40 + 70 * i,) * 3).save(folder / f"{item_id}.png")


def _config(root: Path, judge_path: str) -> dict:
    return {
        "benchmark": {"path": str(root / "bench" / "annotations.jsonl")},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "ip2p", "type": "diffusers", "model_path": tiny_editor("instruct-pix2pix"), "dtype": "float32",
             "params": {"num_inference_steps": 1}},
            {"name": "pre", "type": "precomputed", "image_dir": str(root / "outputs")},
        ]},
        "reward_model": {"type": "qwen3_vl", "params": {"model_path": judge_path, "device": "cpu", "batch_size": 4,
                                                         "max_new_tokens": 12, "show_progress": False}},
        "output_dir": str(root / "out"),
        "seed": 0,
    }


def _run(root: Path, data: dict, stage: str = "all") -> None:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    run(load_config(path), stage)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, judge_path) -> Path:
    root = tmp_path_factory.mktemp("finished")
    _write_benchmark(root / "bench")
    _write_outputs(root / "outputs")
    _run(root, _config(root, judge_path))
    return root


def _copy_marked(finished: Path, root: Path) -> Layout:
    """A copy of the finished run whose every line carries the 'written before' sentinel."""
    for name in ("bench", "outputs", "out"):
        shutil.copytree(finished / name, root / name)
    layout = Layout(root / "out")
    layout.manifest.write_text("".join(json.dumps(dict(r, seconds=REUSED_EDIT)) + "\n"
                                       for r in _lines(layout.manifest)))
    layout.scores.write_text("".join(json.dumps(dict(r, raw_output=REUSED_SCORE)) + "\n"
                                     for r in _lines(layout.scores)))
    return layout


def _redone(layout: Layout) -> tuple[set, set]:
    """(editor, item) pairs whose edit, and whose score, were redone by the last run."""
    edits = {(r["editor"], r["item_id"]) for r in _lines(layout.manifest) if r["seconds"] != REUSED_EDIT}
    scores = {(r["editor"], r["item_id"]) for r in _lines(layout.scores) if r["raw_output"] != REUSED_SCORE}
    return edits, scores


def _all(editor: str) -> set:
    return {(editor, item_id) for item_id in ITEMS}


def _change_params(root, data):
    data["editing"]["editors"][0]["params"]["num_inference_steps"] = 2


def _change_model_path(root, data):
    copy = root / "ip2p-copy"  # the same weights in another folder: another model as far as the key knows
    shutil.copytree(tiny_editor("instruct-pix2pix"), copy)
    data["editing"]["editors"][0]["model_path"] = str(copy)


def _change_dtype(root, data):
    data["editing"]["editors"][0]["dtype"] = "bfloat16"


def _change_max_area(root, data):
    data["editing"]["editors"][0]["max_area"] = 512  # the 32x32 sources are fed at about 22x22


def _change_batch_size(root, data):
    data["editing"]["editors"][0]["batch_size"] = 3  # batched diffusion kernels round differently


def _change_vae_tiling(root, data):
    data["editing"]["editors"][0]["vae_tiling"] = True  # tiles blend at their seams: other pixels


def _change_seed(root, data):
    data["seed"] = 1


def _change_instruction(root, data):
    path = root / "bench" / "annotations.jsonl"
    records = _lines(path)
    records[1]["instruction"] = "make it look like a watercolour"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _change_source(root, data):
    _source(root / "bench" / "it2.png", (10, 220, 10))


def _change_precomputed_file(root, data):
    Image.new("RGB", (32, 32), (250, 250, 250)).save(root / "outputs" / "it0.png")


# change -> (edits redone, scores redone)
CHANGES = {
    "params": (_change_params, _all("ip2p"), _all("ip2p")),
    "model_path": (_change_model_path, _all("ip2p"), None),  # same weights: the redone edits may score the same
    "dtype": (_change_dtype, _all("ip2p"), None),
    "max_area": (_change_max_area, _all("ip2p"), _all("ip2p")),
    "batch_size": (_change_batch_size, _all("ip2p"), None),
    "vae_tiling": (_change_vae_tiling, _all("ip2p"), None),
    # The seed changes every diffusers edit; a precomputed output is read again and is the same file,
    # so its score is reused.
    "seed": (_change_seed, _all("ip2p") | _all("pre"), _all("ip2p")),
    "instruction": (_change_instruction, {("ip2p", "it1"), ("pre", "it1")}, {("ip2p", "it1"), ("pre", "it1")}),
    "source": (_change_source, {("ip2p", "it2"), ("pre", "it2")}, {("ip2p", "it2"), ("pre", "it2")}),
    "precomputed_file": (_change_precomputed_file, {("pre", "it0")}, {("pre", "it0")}),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_changed_input_redoes_exactly_the_edits_and_scores_it_affects(name, finished, tmp_path, judge_path):
    change, edits, scores = CHANGES[name]
    layout = _copy_marked(finished, tmp_path)
    data = _config(tmp_path, judge_path)
    change(tmp_path, data)
    _run(tmp_path, data)
    redone_edits, redone_scores = _redone(layout)
    assert redone_edits == edits
    before = {(r["editor"], r["item_id"]): r["sha1"] for r in _lines(finished / "out" / "edits" / "manifest.jsonl")}
    manifest = {(r["editor"], r["item_id"]): r for r in _lines(layout.manifest)}
    if scores is None:  # a redone edit is rescored exactly where its image came out different
        scores = {pair for pair in edits if manifest[pair]["sha1"] != before[pair]}
    assert redone_scores == scores
    assert all(r["error"] is None and r["edit_key"] for r in manifest.values())
    if name in ("params", "seed", "max_area"):  # these change the pixels: the rows point at new images
        assert all(manifest[pair]["sha1"] != before[pair] for pair in _all("ip2p"))


def test_speed_settings_and_an_equal_dtype_keep_every_edit_and_score(finished, tmp_path, judge_path):
    layout = _copy_marked(finished, tmp_path)
    data = _config(tmp_path, judge_path)
    data["editing"]["editors"][1]["batch_size"] = 2  # the precomputed editor: it reads files whatever the size
    data["editing"]["editors"][0]["offload"] = "model"  # where weights wait between calls, not what they compute
    data["editing"]["editors"][0]["dtype"] = "auto"  # float32 on a CPU, as before
    data["editing"]["editors"][0]["params"] = {"num_inference_steps": 1}  # the same params, rebuilt
    data["reward_model"]["params"]["batch_size"] = 2
    _run(tmp_path, data)
    assert _redone(layout) == (set(), set())


def test_the_score_stage_alone_rescores_an_item_whose_instruction_or_source_changed(finished, tmp_path, judge_path):
    """Without the edit stage the edited images stay as they are; their scores still follow the item."""
    layout = _copy_marked(finished, tmp_path)
    data = _config(tmp_path, judge_path)
    _change_instruction(tmp_path, data)
    _change_source(tmp_path, data)
    _run(tmp_path, data, stage="score")
    edits, scores = _redone(layout)
    assert edits == set()
    assert scores == {("ip2p", "it1"), ("pre", "it1"), ("ip2p", "it2"), ("pre", "it2")}
    rows = {(r["editor"], r["item_id"]): r for r in _lines(layout.scores)}
    assert rows["pre", "it1"]["item_key"] != {(r["editor"], r["item_id"]): r for r in
                                              _lines(finished / "out" / "scores.jsonl")}["pre", "it1"]["item_key"]


def test_a_score_made_under_another_resolved_dtype_is_redone(finished, tmp_path, judge_path):
    """dtype auto is float32 here and bfloat16 on a GPU: a score a GPU worker made is redone on the CPU,
    though the settings hash (the same wherever the report is read) is the same."""
    layout = _copy_marked(finished, tmp_path)
    rows = _lines(layout.scores)
    assert all(r["resolved"] == {"dtype": "float32"} for r in rows)  # the judge's dtype: auto, on the CPU
    rows[0]["resolved"] = {"dtype": "bfloat16"}  # as a GPU worker would have recorded it
    layout.scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _run(tmp_path, _config(tmp_path, judge_path))
    assert _redone(layout) == (set(), {(rows[0]["editor"], rows[0]["item_id"])})
