"""The drift canary: a few items and edits with the scores a judge gave them, rescored at the start of a
run's score stage, so that a judge that changed under the same name (new weights behind an API model,
another library version, a changed server) is caught before the whole benchmark is paid for.

    editjudge canary make --config config.yaml --from outputs/run1 --n 8 canary.json
    editjudge --config config.yaml --canary canary.json [--canary-max-drift 0.5]

The file (``FORMAT``, JSON) and its images beside it, in ``<file stem>-images/``::

    {"editjudge_canary": 1, "made_from": "run1", "created": "2026-12-06T22:00:00Z",
     "judge": {"type": "qwen3_vl", "model": "...", "rubric": "simple", "settings_hash": "..."},
     "scale": [0, 10], "pass_mark": 5.0, "tolerance": 0.5,
     "items": [{"item_id": "...", "editor": "...", "category": "...", "instruction": "...",
                "source": "canary-images/00-source.png", "source_sha256": "...",
                "edit": "canary-images/00-edit.png", "edit_sha256": "...", "score": 7.0}, ...]}

Image paths are relative to the file; each image's sha256 is checked before any work (a changed image
is a configuration error, exit 2, as a missing or corrupt file is). The rule: each item is rescored
through ``build_judge`` / ``judge_items``; the drift is the mean absolute difference of the scores; an
item's verdict changed when its score moved by more than ``tolerance`` (5% of the scale by default),
when it crossed ``pass_mark`` (the scale's middle by default: a pass/fail verdict flipped), or when it
failed to score. Both can be edited in the file. The drift is printed and recorded (``OUT/canary.json``,
summary.json ``canary``, a line in report.md); with ``max_drift`` (``--canary-max-drift``) a drift
above it, or no canary item scored, stops the run before the score stage with exit status 1 (the
edits are kept); without it the run only warns.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path

from ..files import sha256

FORMAT = 1
TOLERANCE_SHARE = 0.05
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class CanaryError(ValueError):
    """The canary file cannot be used (missing, corrupt, an image changed): a configuration error."""


class CanaryDrift(RuntimeError):
    """The judge drifted beyond ``--canary-max-drift``: the run stops before the score stage."""



def image_folder(file: Path) -> Path:
    return file.parent / f"{file.stem}-images"


def judge_identity(config) -> dict:
    """What the canary records of the judge that made its scores."""
    from ..models.reward.judge import judge_rubric
    from ..score_settings import scoring_settings_hash

    params = config.reward_model.params
    return {"type": config.reward_model.type, "model": params.get("model_path") or params.get("model"),
            "rubric": judge_rubric(params).name, "settings_hash": scoring_settings_hash(config)}


def pick(records: list[dict], n: int) -> list[dict]:
    """``n`` records spread over the score range: sorted by score, evenly spaced (the lowest and the
    highest included), so that the canary has items on both sides of the pass mark."""
    ordered = sorted(records, key=lambda r: (r["score"], r["editor"], r["item_id"]))
    if len(ordered) <= n:
        return ordered
    if n == 1:
        return [ordered[len(ordered) // 2]]
    return [ordered[round(k * (len(ordered) - 1) / (n - 1))] for k in range(n)]


def make_canary(config, run_dir: Path, n: int, file: Path) -> dict:
    """Write the canary ``file`` (and its images) from ``n`` items of ``run_dir`` scored with ``config``'s
    judge settings; returns what the file holds. Raises CanaryError when the run has none to give."""
    from ..jsonl import read_jsonl
    from ..score_settings import scoring_settings_hash
    from ..stage_common import load_items

    if n < 1:
        raise CanaryError("--n must be at least 1")
    settings = scoring_settings_hash(config)
    items = {item.id: item for item in load_items(config, quiet=True) if not item.problem}
    all_scored = [r for r in read_jsonl(run_dir / "scores.jsonl")
                  if r.get("score") is not None and r.get("failed_stage") is None and r.get("image")]
    usable = []
    for r in all_scored:
        if r.get("settings") != settings or r.get("item_id") not in items:
            continue
        edit = run_dir / r["image"]
        if edit.is_file() and (not r.get("image_sha1") or hashlib.sha1(edit.read_bytes()).hexdigest() == r["image_sha1"]):
            usable.append(r)  # the edit on disk is the one that was scored
    if not usable:
        raise CanaryError(f"{run_dir} has no scores made with this configuration's judge settings ({settings[:12]}) "
                          f"whose edit and item are still there ({len(all_scored)} scored lines in all): score the run "
                          "with this configuration first")
    score_range = config.reward_model.params.get("score_range") or (0, 10)
    low, high = float(score_range[0]), float(score_range[1])
    folder = image_folder(file)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, r in enumerate(pick(usable, n)):
        item = items[r["item_id"]]
        source_suffix = Path(item.image).suffix.lower()
        source = folder / f"{k:02d}-source{source_suffix if source_suffix in IMAGE_SUFFIXES else '.img'}"
        edit = folder / f"{k:02d}-edit{Path(r['image']).suffix.lower() or '.png'}"
        shutil.copyfile(item.image, source)
        shutil.copyfile(run_dir / r["image"], edit)
        entry = {"item_id": item.id, "editor": r["editor"], "category": item.category,
                 "instruction": item.instruction, "source": source.relative_to(file.parent).as_posix(),
                 "source_sha256": sha256(source), "edit": edit.relative_to(file.parent).as_posix(),
                 "edit_sha256": sha256(edit), "score": float(r["score"])}
        if isinstance(r.get("sub_scores"), dict):
            entry["sub_scores"] = r["sub_scores"]
        entries.append(entry)
    data = {"editjudge_canary": FORMAT, "made_from": str(run_dir),
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "judge": judge_identity(config), "scale": [low, high], "pass_mark": low + (high - low) / 2,
            "tolerance": round(TOLERANCE_SHARE * (high - low), 6), "items": entries}
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_canary(file: str | Path) -> dict:
    """The canary ``file``, checked: its shape, every image there, inside the file's folder and with its
    recorded sha256. Adds ``_paths``: item index -> (source path, edit path). Raises CanaryError."""
    file = Path(file)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CanaryError(f"canary file {file} does not exist (make one: editjudge canary make --config ... "
                          "--from OUT FILE)") from None
    except (OSError, ValueError) as exc:
        raise CanaryError(f"canary file {file} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("editjudge_canary") != FORMAT:
        raise CanaryError(f"canary file {file} is not an editjudge canary (format {FORMAT}): "
                          f"'editjudge_canary' is {data.get('editjudge_canary') if isinstance(data, dict) else None!r}")
    problems = [f"{key}: expected a number" for key in ("pass_mark", "tolerance") if not _number(data.get(key))]
    items = data.get("items")
    if not isinstance(items, list) or not items:
        problems.append("items: expected a non-empty list")
        items = []
    root = file.parent.resolve()
    paths = []
    for k, entry in enumerate(items):
        where = f"items[{k}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object")
            continue
        for key in ("item_id", "editor", "instruction", "source", "edit", "source_sha256", "edit_sha256"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                problems.append(f"{where}.{key}: expected a non-empty string")
        if not _number(entry.get("score")):
            problems.append(f"{where}.score: expected a number")
        found = []
        for key in ("source", "edit"):
            if not isinstance(entry.get(key), str):
                continue
            path = (file.parent / entry[key]).resolve()
            if not path.is_relative_to(root):
                problems.append(f"{where}.{key}: {entry[key]!r} is outside the canary's folder")
            elif not path.is_file():
                problems.append(f"{where}.{key}: {entry[key]} is missing")
            elif isinstance(entry.get(f"{key}_sha256"), str) and sha256(path) != entry[f"{key}_sha256"]:
                problems.append(f"{where}.{key}: {entry[key]} changed since the canary was made (sha256 "
                                f"{sha256(path)[:16]}…, recorded {entry[f'{key}_sha256'][:16]}…): sha256 mismatch")
            found.append(path)
        paths.append(tuple(found))
    if problems:
        raise CanaryError(f"canary file {file}: " + "; ".join(problems))
    data["_paths"] = paths
    data["_file"] = str(file)
    return data


def compare(canary: dict, now: list[float | None], max_drift: float | None = None) -> dict:
    """The drift of rescored ``now`` (one score or None per canary item) against the recorded scores."""
    tolerance, mark = float(canary["tolerance"]), float(canary["pass_mark"])
    diffs, changed = [], []
    for entry, score in zip(canary["items"], now):
        was = float(entry["score"])
        why = None
        if score is None:
            why = "no score now"
        else:
            diffs.append(abs(score - was))
            if (was >= mark) != (score >= mark):
                why = f"crossed the pass mark {mark:g}"
            elif abs(score - was) > tolerance:
                why = f"moved by {score - was:+.2f}, more than the tolerance {tolerance:g}"
        if why:
            changed.append({"item_id": entry["item_id"], "editor": entry["editor"], "was": was, "now": score,
                            "why": why})
    mean = sum(diffs) / len(diffs) if diffs else None
    return {"file": canary.get("_file"), "n": len(now), "n_scored": len(diffs), "mean_abs_diff": mean,
            "max_abs_diff": max(diffs) if diffs else None, "tolerance": tolerance, "pass_mark": mark,
            "changed": changed, "max_drift": max_drift,
            "over": max_drift is not None and (mean is None or mean > max_drift)}


def rescore(config, canary: dict, device=None) -> list[float | None]:
    """The canary's items scored now by ``config``'s judge, through ``build_judge`` / ``judge_items``, on
    ``device`` (the judge's first device by default); the judge is closed afterwards."""
    from ..models.reward.judge import build_judge, judge_devices, judge_items

    if device is None:
        device = judge_devices(config.reward_model)[0]
    model, rubric = build_judge(config.reward_model, device, output_dir=config.output_dir, quiet=True)
    try:
        fields = judge_items(model, rubric, [edit for _, edit in canary["_paths"]],
                             [entry["instruction"] for entry in canary["items"]],
                             [source for source, _ in canary["_paths"]],
                             item_ids=[f"canary/{entry['editor']}/{entry['item_id']}" for entry in canary["items"]])
    finally:
        model.close()
    return [f.get("score") for f in fields]


def check(config, canary: dict, max_drift: float | None = None, device=None) -> dict:
    """Rescore and compare: the record written to ``OUT/canary.json`` and summary.json."""
    result = compare(canary, rescore(config, canary, device), max_drift)
    identity = judge_identity(config)
    result["settings_hash_was"] = (canary.get("judge") or {}).get("settings_hash")
    result["settings_hash_now"] = identity["settings_hash"]
    result["checked"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return result


def summary_lines(result: dict) -> list[str]:
    """What the terminal shows of a canary check."""
    mean = "-" if result["mean_abs_diff"] is None else f"{result['mean_abs_diff']:.3f}"
    lines = [f"canary {result['file']}: {result['n_scored']} of {result['n']} items rescored, mean absolute drift "
             f"{mean}, {len(result['changed'])} changed verdict(s)"]
    if result.get("settings_hash_was") and result["settings_hash_was"] != result.get("settings_hash_now"):
        lines.append("  note: the canary was made under other scoring settings "
                     f"({str(result['settings_hash_was'])[:12]}, now {str(result['settings_hash_now'])[:12]}): "
                     "the drift includes that change")
    lines += [f"  {c['editor']}/{c['item_id']}: {c['was']:.2f} -> "
              f"{'-' if c['now'] is None else format(c['now'], '.2f')} ({c['why']})" for c in result["changed"]]
    if result["over"]:
        lines.append(f"  the drift is over --canary-max-drift {result['max_drift']:g}: the run stops before scoring")
    return lines


def gate(config, canary: dict, max_drift: float | None, *, leader: bool = True, barrier=None) -> dict:
    """The hook at the start of the score stage: the leader rescores the canary, prints the drift and
    records it in ``OUT/canary.json``; then (after ``barrier``, under torchrun) every rank reads the record
    and raises CanaryDrift when it is over ``max_drift``. Returns the record."""
    import sys

    from ..files import write_atomic

    record = Path(config.output_dir) / "canary.json"
    if leader:
        result = check(config, canary, max_drift)
        write_atomic(record, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print("\n".join(summary_lines(result)), file=sys.stderr, flush=True)
    if barrier is not None:
        barrier()
    result = json.loads(record.read_text(encoding="utf-8"))
    if result["over"]:
        mean = "none scored" if result["mean_abs_diff"] is None else f"{result['mean_abs_diff']:.3f}"
        raise CanaryDrift(f"the judge drifted: canary drift {mean} is over --canary-max-drift {max_drift:g} "
                          f"({len(result['changed'])} changed verdicts, see {record}); nothing was scored")
    return result
