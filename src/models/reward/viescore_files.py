"""The official VIEScore prompts, read from a local checkout of GEdit-Bench's ``viescore`` folder.

    reward_model:
      params:
        rubric: viescore
        viescore_prompts_dir: /data/Step1X-Edit/GEdit-Bench/viescore   # or the GEdit-Bench folder

GEdit-Bench (stepfun-ai/Step1X-Edit, ``GEdit-Bench/viescore/vie_prompts.py``, from TIGER-AI-Lab's
VIEScore) defines the prompts as module-level strings. Its image-editing ("tie") scorer sends

- SC: ``"\\n".join([_context_no_delimit, _prompts_0shot_two_image_edit_rule, _prompts_0shot_tie_rule_SC])``
  with ``<instruction>`` replaced, the source image then the edited one, answer ``{"score": [success,
  overediting], "reasoning": ...}``;
- PQ: ``"\\n".join([_context_no_delimit, _prompts_0shot_rule_PQ])`` with the edited image, answer
  ``{"score": [naturalness, artifacts], ...}``;

and combines SC = min of the first list, PQ = min of the second, overall = sqrt(SC * PQ). This module
builds that rubric from the files as they are: it parses ``vie_prompts.py`` with ``ast`` and takes the
string constants only (the file is never imported or run), and nothing is copied into this repository.
There is no system message, as in the official requests. Scores are comparable with published GEdit
numbers only for the same judge (they were made with GPT-4.1 or Qwen2.5-VL-72B-Instruct).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path
from typing import Any

PROMPTS_FILE = "vie_prompts.py"
NEEDED = ("_context_no_delimit", "_prompts_0shot_two_image_edit_rule", "_prompts_0shot_tie_rule_SC",
          "_prompts_0shot_rule_PQ")
RUBRIC_NAME = "viescore_official"


class ViescoreFilesError(ValueError):
    """The folder does not hold the official prompts in the expected layout."""


def prompts_file(folder: str | Path) -> Path:
    """``folder/vie_prompts.py``, or ``folder/viescore/vie_prompts.py`` for the GEdit-Bench folder itself."""
    folder = Path(folder).expanduser()
    for candidate in (folder / PROMPTS_FILE, folder / "viescore" / PROMPTS_FILE):
        if candidate.is_file():
            return candidate
    raise ViescoreFilesError(f"{folder} has no {PROMPTS_FILE} (expected GEdit-Bench's viescore folder, "
                             f"e.g. Step1X-Edit/GEdit-Bench/viescore)")


def read_prompts(folder: str | Path) -> tuple[dict[str, str], Path, str]:
    """The needed string constants of ``vie_prompts.py``, its path and its sha256 (not executed)."""
    path = prompts_file(folder)
    data = path.read_bytes()
    try:
        tree = ast.parse(data, filename=str(path))
    except SyntaxError as exc:
        raise ViescoreFilesError(f"{path} is not valid Python: {exc}") from None
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    missing = [name for name in NEEDED if name not in found]
    if missing:
        raise ViescoreFilesError(f"{path} lacks the string constants {missing}")
    if "<instruction>" not in found["_prompts_0shot_tie_rule_SC"]:
        raise ViescoreFilesError(f"{path}: _prompts_0shot_tie_rule_SC has no <instruction> placeholder")
    return {name: found[name] for name in NEEDED}, path, hashlib.sha256(data).hexdigest()


def official_rubric(folder: str | Path) -> dict[str, Any]:
    """The rubric mapping (``rubrics.py`` shape) of GEdit-Bench's image-editing VIEScore."""
    prompts, path, digest = read_prompts(folder)
    semantics = "\n".join([prompts["_context_no_delimit"], prompts["_prompts_0shot_two_image_edit_rule"],
                           prompts["_prompts_0shot_tie_rule_SC"]]).replace("<instruction>", "{instruction}")
    quality = "\n".join([prompts["_context_no_delimit"], prompts["_prompts_0shot_rule_PQ"]])
    return {
        "name": RUBRIC_NAME,
        "prompts": [
            {"name": "semantics", "system_prompt": "", "user_prompt": semantics,
             "fields": ["editing_success", "over_editing"], "with_source": True},
            {"name": "quality", "system_prompt": "", "user_prompt": quality, "fields": ["naturalness", "artifacts"]},
        ],
        "combine": {"SC": "min(editing_success, over_editing)", "PQ": "min(naturalness, artifacts)",
                    "overall": "sqrt(SC * PQ)"},
        "score": "overall",
    }


def rubric_spec(params: dict) -> Any:
    """The rubric a ``reward_model.params`` block asks for: the official one when ``viescore_prompts_dir``
    is set (with ``rubric: viescore``), else ``params["rubric"]`` (default ``simple``)."""
    if params.get("viescore_prompts_dir"):
        return official_rubric(params["viescore_prompts_dir"])
    return params.get("rubric", "simple")


def prompts_note(params: dict) -> str:
    """Which prompts a run used, for summary.json and the reports."""
    rubric = params.get("rubric", "simple")
    if params.get("viescore_prompts_dir"):
        _, path, digest = read_prompts(params["viescore_prompts_dir"])
        return (f"official VIEScore prompts read from {path} (sha256 {digest[:12]}); scores are comparable with "
                "published GEdit-Bench numbers only for the same judge (GPT-4.1 or Qwen2.5-VL-72B-Instruct there)")
    if rubric == "viescore":
        return ("editjudge's own wording of the VIEScore prompts (not the official text: set "
                "reward_model.params.viescore_prompts_dir to a GEdit-Bench viescore folder for that)")
    return f"rubric {rubric if isinstance(rubric, str) else rubric.get('name', 'custom')!r}"
