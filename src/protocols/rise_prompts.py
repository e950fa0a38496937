"""RISEBench's checkout, read: its prompt constants, its request settings, its records, and the plan of
requests (prompt variant and images) its script makes for each record.

Reproduced from PhoenixZ810/RISEBench at commit 5f226519b25c005bb32fb83864bbd1845ab85c23 (``gpt_eval.py``
last changed by ce8cba3, 2026-04-13; ``utils.py`` by 674f864, 2025-05-19). Nothing is imported or run
from the checkout and nothing of it is copied here: ``utils.py`` and ``gpt_eval.py`` are parsed with
``ast`` (string constants, ``subtask_dic``, ``gpt_generate``'s defaults, the weights of
``calculate_score``), ``data/data_total.json`` is read as JSON.

What ``gpt_eval.py``'s ``eval_vanilla`` sends, per category (``plan``): three judgements, "consistency"
(its ``judge1``), "reasoning" (``judge2``) and "quality" (``judge3``, not for logical items), each one
user turn holding the prompt's text, then the images. The "first image" is the source image, except for
a spatial or logical item with ``reference_img``, where the script replaces it by the reference image
for both the consistency and the reasoning requests. A field counts as set as pandas' ``isna`` sees it
(absent or null: not set; an empty string is set), except ``reasoning_wo_ins``, which the script tests
as a COLUMN (``'reasoning_wo_ins' in item`` on a row): one record having it switches every logical item
with a reference image to the prompt without the question. Answers stored in a record's ``judge``
mapping (``judge1``..``judge3``) are used instead of asking, as the script does.

Images (``upstream_image``): ``utils.encode_image_to_base64`` converts RGBA and P images with
``convert('RGB')`` (alpha dropped, not composited), shrinks them with ``thumbnail((768, 768))`` (aspect
kept, never enlarged, Pillow's default filter and reducing gap) and saves Pillow's default JPEG (quality
75), sent with ``detail: high``. The judge's own resize options cannot express ``thumbnail``, so the
pixels are prepared here and the judge only encodes them (``image_format: jpeg``).
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..images import ImageLoadError, open_image
from .base import ProtocolError, file_digest

UTILS, SCRIPT, DATA = "utils.py", "gpt_eval.py", "data/data_total.json"
THREE = ("temporal_reasoning", "causal_reasoning", "spatial_reasoning")  # judged on three dimensions
LOGICAL = "logical_reasoning"
CATEGORIES = THREE + (LOGICAL,)
# The prompt constants of utils.py, and the placeholders each is formatted with (None: sent as it is).
PROMPTS = {
    "prompt_consist": ("instruct",), "prompt_reasoning": ("instruct", "reference"),
    "prompt_reasoning_w_input": ("instruct", "reference"), "prompt_generation": None,
    "prompt_spatial_ref": ("instruct", "reference"), "prompt_spatial_ref_img": ("instruct",),
    "prompt_spatial_ref_w_input": ("instruct", "reference"), "prompt_spatial_qual": None,
    "prompt_spatial_cons": ("instruct",), "prompt_logical_cons_ans": ("instruct", "reference"),
    "prompt_logical_cons": ("instruct",), "prompt_logical_txt": ("instruct", "reference"),
    "prompt_logical_img": ("instruct",), "prompt_logical_img_wo_q": None,
}
# calculate_score's weights in the rule reproduced (674f864 onwards); 3421af4 had 0.4/0.4/0.2 and 0.4/0.6.
WEIGHTS = sorted([0.2, 0.8, 0.3, 0.5, 0.2, 0.3, 0.7, 0.5])
SOURCE, REFERENCE, EDIT = "source", "reference", "edit"


@dataclass(frozen=True)
class Request:
    """One judgement of the plan: its name, the prompt constant, the images in order (EDIT last)."""

    name: str            # "consistency", "reasoning" or "quality"
    prompt: str          # the utils.py constant
    images: tuple        # (EDIT,), or (SOURCE or REFERENCE, EDIT)


def is_set(record: dict, key: str) -> bool:
    """pandas' ``not isna(row[key])`` for a field of a JSON record (absent, None or NaN: not set)."""
    value = record.get(key)
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise ProtocolError(f"{path} is not valid Python: {exc}") from None


def read_prompts(path: Path) -> dict[str, str]:
    """The module-level string constants of ``utils.py`` that ``PROMPTS`` names, checked to format."""
    found = {}
    for node in _parse(path).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    missing = [name for name in PROMPTS if name not in found]
    if missing:
        raise ProtocolError(f"{path} lacks the prompt constants {missing} (expected RISEBench's utils.py)")
    for name, fields in PROMPTS.items():
        if fields is not None:
            try:
                found[name].format(**dict.fromkeys(fields, ""))
            except (KeyError, IndexError, ValueError) as exc:
                raise ProtocolError(f"{path}: {name} cannot be formatted with instruct and reference: {exc!r}") from None
    return {name: found[name] for name in PROMPTS}


def _function(tree: ast.Module, name: str, path: Path) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ProtocolError(f"{path} has no function {name} (expected RISEBench's gpt_eval.py)")


def read_script(path: Path) -> dict:
    """From ``gpt_eval.py``: ``subtask_dic``, ``gpt_generate``'s request defaults, and a check that its
    ``calculate_score`` and ``calculate_completion`` are the rule reproduced (the April 2026 one)."""
    tree = _parse(path)
    subtasks = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "subtask_dic" for t in node.targets):
            try:
                subtasks = ast.literal_eval(node.value)
            except ValueError:
                pass
    if not isinstance(subtasks, dict) or not all(isinstance(v, list) for v in subtasks.values()):
        raise ProtocolError(f"{path}: no literal subtask_dic mapping (expected RISEBench's gpt_eval.py)")
    generate = _function(tree, "gpt_generate", path)
    args = generate.args
    defaults = dict(zip([a.arg for a in args.args][len(args.args) - len(args.defaults):], args.defaults))
    request = {k: v.value for k, v in defaults.items() if isinstance(v, ast.Constant)}
    if not {"model", "temperature", "max_tokens", "image_size"} <= set(request):
        raise ProtocolError(f"{path}: gpt_generate has no constant defaults for model, temperature, max_tokens "
                            "and image_size")
    weights = sorted(n.value for n in ast.walk(_function(tree, "calculate_score", path))
                     if isinstance(n, ast.Constant) and isinstance(n.value, float))
    completion = [n.value for n in ast.walk(_function(tree, "calculate_completion", path)) if isinstance(n, ast.Constant)]
    if weights != WEIGHTS or "consistency_free" not in completion:
        raise ProtocolError(
            f"{path} is not the scoring rule reproduced here (RISEBench's gpt_eval.py as of ce8cba3, 2026-04-13: "
            f"weights {WEIGHTS}, calculate_completion reading consistency_free); found weights {weights}"
            f"{'' if 'consistency_free' in completion else ' and a completion without consistency_free'}: "
            "update the checkout (git pull)")
    return {"subtasks": subtasks, "request": request}


def read_records(path: Path) -> tuple[dict[str, dict], list[str], list[str]]:
    """``data_total.json``: records by index (as a string), their order, and the columns (every key of any
    record, in order of first appearance, as ``pd.DataFrame(records)`` makes them)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ProtocolError(f"{path}: expected a JSON list of records")
    records, order, columns = {}, [], {}
    for record in data:
        key = str(record.get("index"))
        if key in records:
            raise ProtocolError(f"{path}: index {key!r} appears twice")
        records[key] = record
        order.append(key)
        columns.update(dict.fromkeys(record))
    return records, order, list(columns)


def plan(record: dict, columns: list[str]) -> list[Request]:
    """The requests ``eval_vanilla`` makes for ``record`` (see the module's docstring); stored answers
    and consistency-free items included (the caller leaves those out)."""
    category = record["category"]
    first = SOURCE
    if category in ("temporal_reasoning", "causal_reasoning"):
        with_input = is_set(record, "reasoning_img")
        reasoning = "prompt_reasoning_w_input" if with_input else "prompt_reasoning"
        consistency, quality = "prompt_consist", "prompt_generation"
    elif category == "spatial_reasoning":
        with_input = is_set(record, "reference_img") or is_set(record, "reasoning_img")
        if is_set(record, "reference_img"):
            first, reasoning = REFERENCE, "prompt_spatial_ref_img"
        else:
            reasoning = "prompt_spatial_ref_w_input" if with_input else "prompt_spatial_ref"
        consistency, quality = "prompt_spatial_cons", "prompt_spatial_qual"
    else:  # logical: a text answer wins over a reference image
        quality = None
        if is_set(record, "reference_txt"):
            with_input, consistency, reasoning = False, "prompt_logical_cons_ans", "prompt_logical_txt"
        else:
            with_input, first, consistency = True, REFERENCE, "prompt_logical_cons"
            reasoning = "prompt_logical_img_wo_q" if "reasoning_wo_ins" in columns else "prompt_logical_img"
    requests = [Request("consistency", consistency, (first, EDIT)),
                Request("reasoning", reasoning, (first, EDIT) if with_input else (EDIT,))]
    return requests + ([Request("quality", quality, (EDIT,))] if quality else [])


def record_problems(record: dict) -> list[str]:
    """Why ``gpt_eval.py`` could not judge ``record`` (it would stop with an exception), or []."""
    category = record.get("category")
    if category not in CATEGORIES:
        return [f"category {category!r} is none of {list(CATEGORIES)}"]
    problems = [f"field {f!r} is not a string" for f in ("instruction", "image") if not isinstance(record.get(f), str)]
    if category == LOGICAL:
        if not (is_set(record, "reference_txt") or is_set(record, "reference_img")):
            problems.append("a logical item needs reference_txt or reference_img")
        if is_set(record, "consistency_free"):
            problems.append("a logical item cannot be consistency_free (the script reads a judge3 it never made)")
    needs_text = category in ("temporal_reasoning", "causal_reasoning") or (
        category == "spatial_reasoning" and not is_set(record, "reference_img"))
    if needs_text and not is_set(record, "reference"):
        problems.append("field 'reference' (the expected result's description) is missing")
    if record.get("judge") is not None and not isinstance(record["judge"], dict):
        problems.append("field 'judge' must be a mapping of stored answers (judge1, judge2, judge3)")
    return problems


def prompt_text(prompts: dict[str, str], name: str, record: dict) -> str:
    """The constant ``name`` formatted as the script formats it: ``str.format`` with the fields ``PROMPTS``
    names (the instruction; the record's ``reference``, or ``reference_txt`` for a logical item), or as it is."""
    if PROMPTS[name] is None:
        return prompts[name]
    values = {"instruct": record["instruction"],
              "reference": record.get("reference_txt" if record["category"] == LOGICAL else "reference")}
    return prompts[name].format(**{field: values[field] for field in PROMPTS[name]})


def upstream_image(path, size: int) -> Image.Image:
    """The pixels ``encode_image_to_base64`` encodes: RGBA/P through ``convert('RGB')``, then
    ``thumbnail((size, size))`` when ``size > 0``. A fresh image, without the file's metadata: the
    judge then applies no EXIF rotation and no transparency the upstream script does not apply.
    ``path`` may be a PIL image already open (it is copied, never changed)."""
    if isinstance(path, Image.Image):
        return _prepared(path.copy(), size)
    with open_image(Path(path)) as image:  # ImageLoadError naming the file when it cannot be opened
        try:
            return _prepared(image, size)
        except ImageLoadError as exc:
            raise ImageLoadError(f"{path}: {exc}") from None


def _prepared(image: Image.Image, size: int) -> Image.Image:
    try:
        if image.mode in ("RGBA", "P"):
            image = image.convert("RGB")
        if size > 0:
            image.thumbnail((size, size))
        image.load()
        return Image.frombytes(image.mode, image.size, image.tobytes())
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"unreadable image: {exc}") from exc


def digests(folder: Path, paths: list[Path]) -> dict[str, str]:
    """``{path relative to folder (or absolute when outside): sha256}``."""
    out = {}
    for path in paths:
        try:
            key = path.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            key = str(path)
        out[key] = file_digest(path)
    return out
