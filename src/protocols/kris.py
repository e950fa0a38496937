"""KRIS-Bench's own scoring (mercurystraw/Kris_Bench), reproduced from a local checkout of its repository.

    reward_model:
      params:
        protocol: {name: kris, dir: ../third_party/Kris_Bench}   # a clone of mercurystraw/Kris_Bench

KRIS-Bench scores each edit with GPT-4o on 1-5 scales, one request per metric, three scripts by category
(each script's ``CATEGORIES`` list, read from the file, decides which script a category belongs to):

- ``metrics_common.py`` (count, color, anomaly, position, size, part, multi-instruction): visual
  consistency (``prompt_consist``: source then edit), instruction following (``prompt_instruction_following``;
  ``prompt_abnormal_instruction_following`` with the annotation's explanation only where the category
  name contains ``abnormality_correction``, which no category does: the anomaly_correction folder gets
  the plain prompt, as upstream), visual quality (``prompt_quality``: the edit alone; the constant is
  sent without ``str.format``, so its doubled braces stay doubled, as upstream);
- ``metrics_knowledge.py`` (the ten knowledge categories): consistency, one "dual" request
  (``prompt_dual_evaluation`` with the instruction and the annotation's ``explain_en``) answering both
  instruction following and knowledge plausibility, and quality, read by that script's own readers
  (``kris_answers``);
- ``metrics_view_change.py`` (viewpoint_change): consistency and quality as metrics_common; instruction
  following is one request (``prompt_view_instruction_following`` with the instruction) showing three
  images in this order: the source, the edit, then the annotation's ground-truth view (``gt_img``, the
  item's ``reference_image``), so the ``Ask`` shows ``(source, edit)`` before the ground truth; its answer
  is read by metrics_common's instruction reader, as that script imports it. An item without its
  ground-truth file gets no record upstream (the script returns before asking): a failure record here;
- ``metrics_multi_element.py`` and ``metrics_temporal_prediction.py``: several input images per item
  (the KRIS loader skips those items): NOT reproduced.

The prompts are the string constants of ``utils/prompts.py``, parsed with ``ast`` (never imported or
run; nothing is copied here), the instruction and explanation are the annotation's ``ins_en`` and
``explain_en``, as the scripts read them. Upstream writes per-item scores to
``results/<model>/<category>/metrics.json`` and computes no average nor any 0-100 mapping: ``export``
writes those files (``kris_export``), ``summary`` gives per-category means of the 1-5 scores over the
items that have one (editjudge's, named as such), and an item's headline ``score`` is the mean of its
category's upstream scores (editjudge's; None when one is unreadable). Reproduced from the versions of
the scripts that import ``utils.prompts`` and read ``ins_en`` (mercurystraw/Kris_Bench; the prompts file
as copied in nameoffly/Kris_Bench_output@75e89ed5), in our own words.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from . import kris_answers as read
from .base import Ask, ItemProblem, ItemResult, ProtocolError, file_digest
from .kris_export import summarize, write_metrics

PROMPTS = "utils/prompts.py"
SCRIPTS = {"common": "metrics_common.py", "knowledge": "metrics_knowledge.py", "view": "metrics_view_change.py"}
SKIPPED_SCRIPTS = {"metrics_multi_element.py": "several reference images per item in one request",
                   "metrics_temporal_prediction.py": "three reference frames and the edit, ordered by frame, in one request"}
NEEDED = {"prompt_consist": ("instruct",), "prompt_quality": (), "prompt_instruction_following": ("instruct",),
          "prompt_abnormal_instruction_following": ("instruct", "explanation"),
          "prompt_dual_evaluation": ("instruct", "explanation"),
          "prompt_view_instruction_following": ("instruct",)}


def _module(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise ProtocolError(f"{path} is not valid Python: {exc}") from None


def _string_constants(tree: ast.Module) -> dict[str, str]:
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _categories(tree: ast.Module, path: Path) -> list[str]:
    """The script's module-level ``CATEGORIES = [...]`` of string literals."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CATEGORIES" for t in node.targets)
                and isinstance(node.value, ast.List)
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.value.elts)):
            return [e.value for e in node.value.elts]
    raise ProtocolError(f"{path} has no CATEGORIES list of names")


def _check_version(tree: ast.Module, path: Path) -> None:
    """The reproduced version imports its prompts from ``utils.prompts`` and reads ``ins_en``."""
    imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    if "utils.prompts" not in imports or "ins_en" not in strings:
        raise ProtocolError(f"{path} is an older version of KRIS-Bench's scorer (its prompts come from "
                            f"{sorted(m for m in imports if m and 'prompt' in m) or 'elsewhere'}, or it does not read "
                            "'ins_en'); editjudge reproduces the version that imports utils.prompts and reads ins_en: "
                            "update the checkout (git pull)")


class KrisProtocol:
    """KRIS-Bench's metrics_*.py scoring, read from the checkout ``folder`` (see the module docstring)."""

    name = "kris"
    version = "utils.prompts+ins_en"
    score_range = (1.0, 5.0)

    def __init__(self, folder, **options) -> None:
        if options:
            raise ProtocolError(f"protocol kris takes no options besides dir, got {sorted(options)}")
        if not folder:
            raise ProtocolError("protocol kris needs dir: a checkout of https://github.com/mercurystraw/Kris_Bench")
        self.folder = Path(folder).expanduser()
        needed = [PROMPTS, *SCRIPTS.values()]
        missing = [rel for rel in needed if not (self.folder / rel).is_file()]
        if missing:
            raise ProtocolError(f"{self.folder} lacks {missing}: expected a checkout of "
                                "https://github.com/mercurystraw/Kris_Bench (utils/prompts.py and the metrics_*.py scripts)")
        found = _string_constants(_module(self.folder / PROMPTS))
        absent = [name for name in NEEDED if name not in found]
        if absent:
            raise ProtocolError(f"{self.folder / PROMPTS} lacks the string constants {absent}")
        for name, fields in NEEDED.items():
            if fields:
                try:
                    found[name].format(**{f: "" for f in fields})
                except (KeyError, IndexError, ValueError) as exc:
                    raise ProtocolError(f"{self.folder / PROMPTS}: {name} does not format with {list(fields)}: {exc!r}") from None
        self.prompts = {name: found[name] for name in NEEDED}
        self.kind: dict[str, str] = {}  # category -> "common" / "knowledge" / "view"
        for kind, rel in SCRIPTS.items():
            tree = _module(self.folder / rel)
            _check_version(tree, self.folder / rel)
            for category in _categories(tree, self.folder / rel):
                self.kind.setdefault(category, kind)
        self.not_reproduced: dict[str, str] = {}
        for rel, why in SKIPPED_SCRIPTS.items():
            if (self.folder / rel).is_file():
                for category in _categories(_module(self.folder / rel), self.folder / rel):
                    self.not_reproduced[category] = f"{rel}: {why}"
        self.annotations, self._files = self._read_annotations()

    def _read_annotations(self) -> tuple[dict[str, dict], dict[str, Path]]:
        bench = self.folder / "KRIS_Bench"
        files = {rel: self.folder / rel for rel in [PROMPTS, *SCRIPTS.values()]}
        annotations = {}
        for category in sorted(self.kind):
            path = bench / category / "annotation.json"
            if not path.is_file():
                continue  # a category absent from this copy has no items to score
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ProtocolError(f"{path} is not readable JSON: {exc}") from None
            if not isinstance(data, dict):
                raise ProtocolError(f"{path}: expected a JSON object of key -> record")
            annotations[category] = data
            files[f"KRIS_Bench/{category}/annotation.json"] = path
        if not annotations:
            raise ProtocolError(f"{bench} holds no <category>/annotation.json of the scripts' categories")
        return annotations, files

    # ------------------------------------------------------------------ the contract

    def identity(self) -> dict:
        return {"protocol": self.name, "version": self.version,
                "files": {rel: file_digest(path) for rel, path in sorted(self._files.items())}}

    def _record(self, item) -> tuple[str, str, dict]:
        category, _, key = item.id.partition("/")
        if category != item.category or not key:
            raise ItemProblem(f"{item.id}: not a KRIS-Bench item id (<category>/<key>)")
        if category in self.not_reproduced:
            raise ItemProblem(f"{item.id}: not reproduced ({self.not_reproduced[category]})")
        if category not in self.kind:
            raise ItemProblem(f"{item.id}: category {category!r} is in none of KRIS-Bench's scripts' CATEGORIES")
        record = self.annotations.get(category, {}).get(key)
        if not isinstance(record, dict):
            raise ItemProblem(f"{item.id}: no record {key!r} in {self.folder}/KRIS_Bench/{category}/annotation.json")
        return self.kind[category], key, record

    def asks(self, item, edited: Path) -> list[Ask]:
        """Consistency, instruction (or the knowledge scripts' dual request), quality: the scripts' order."""
        kind, _, record = self._record(item)
        instruct, explanation = record.get("ins_en", ""), record.get("explain_en", "")
        p = self.prompts
        asks = [Ask("consistency", p["prompt_consist"].format(instruct=instruct), edited, first_image=item.image)]
        if kind == "view":
            # metrics_view_change.py, evaluate_images / evaluate_with_gpt (mercurystraw/Kris_Bench@2114fec9, and
            # the utils.prompts/ins_en version as copied in nameoffly/Kris_Bench_output@75e89ed5: the same
            # request): the text, then the source, the edit and the ground-truth view, in that order.
            truth = item.reference_image
            if truth is None or (isinstance(truth, (str, Path)) and not Path(truth).is_file()):
                raise ItemProblem(f"{item.id}: no ground-truth view (gt_img) {truth or ''}: "
                                  "metrics_view_change.py makes no record without it")
            asks.append(Ask("instruction", p["prompt_view_instruction_following"].format(instruct=instruct),
                            truth, first_image=(item.image, edited)))
        elif kind == "knowledge":
            asks.append(Ask("dual", p["prompt_dual_evaluation"].format(instruct=instruct, explanation=explanation),
                            edited, first_image=item.image))
        elif kind == "common":
            if "abnormality_correction" in item.category:  # upstream's test; no KRIS folder has this name
                text = p["prompt_abnormal_instruction_following"].format(instruct=instruct, explanation=explanation)
            else:
                text = p["prompt_instruction_following"].format(instruct=instruct)
            asks.append(Ask("instruction", text, edited, first_image=item.image))
        asks.append(Ask("quality", p["prompt_quality"], edited))  # not formatted, as upstream
        return asks

    def fields(self, category: str, answers: dict[str, str | None]) -> dict:
        """The metrics.json fields of one item (scores and reasonings) as its category's script writes them."""
        kind = self.kind[category]
        if kind == "knowledge":
            dual = read.knowledge_dual(answers.get("dual"))
            return {"consistency_score": read.knowledge_single(answers.get("consistency"), "consistency"),
                    "consistency_reasoning": read.knowledge_reasoning(answers.get("consistency")),
                    "instruction_score": dual["instruction_score"],
                    "instruction_reasoning": dual["instruction_reasoning"],
                    "knowledge_score": dual["knowledge_score"],
                    "knowledge_reasoning": dual["knowledge_reasoning"],
                    "quality_score": read.knowledge_single(answers.get("quality"), "quality"),
                    "quality_reasoning": read.knowledge_reasoning(answers.get("quality"))}
        out = {}
        out["consistency_score"], out["consistency_reasoning"] = read.common_consistency(answers.get("consistency"))
        # metrics_view_change.py imports metrics_common's instruction reader
        out["instruction_score"], out["instruction_reasoning"] = read.common_instruction(answers.get("instruction"))
        out["quality_score"], out["quality_reasoning"] = read.common_quality(answers.get("quality"))
        return out

    def item_result(self, item, answers: dict[str, str | None]) -> ItemResult:
        fields = self.fields(item.category, answers)
        subs = {name[:-len("_score")]: (None if value is None else float(value))
                for name, value in fields.items() if name.endswith("_score")}
        unread = [name for name, value in subs.items() if value is None]
        if unread:
            return ItemResult(None, subs, f"no 1-5 score read for {', '.join(unread)}")
        return ItemResult(sum(subs.values()) / len(subs), subs)

    def summary(self, rows: list[dict]) -> dict:
        return summarize(self, rows)

    def export(self, rows: list[dict], folder: Path) -> list[Path]:
        return write_metrics(self, rows, Path(folder))
