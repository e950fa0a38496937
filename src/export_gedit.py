"""``--export gedit``: viescore results in the layout GEdit-Bench's ``calculate_statistics.py`` reads."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from .aggregate import category_stats
from .benchmark import BenchmarkItem
from .paths import safe_name
from .files import write_atomic
from .report_common import edited_path

logger = logging.getLogger(__name__)

GEDIT_GROUPS = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
                "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")
GEDIT_COLUMNS = ("source_image", "edited_image", "instruction", "sementics_score", "quality_score",
                 "intersection_exist", "instruction_language")


def export_gedit(out: Path, records: list[dict], items: list[BenchmarkItem], *, backbone: str = "qwen25vl",
                 default_language: str | None = None) -> list[Path]:
    """Write viescore results in the layout GEdit-Bench's statistics script reads; returns the files written.

    Source read: ``GEdit-Bench/calculate_statistics.py`` and ``GEdit-Bench/test_gedit_score.py`` of
    Step1X-Edit (as stored for the fork svjack/Step1X-Edit, commit eda7f42e; the script is upstream's,
    stepfun-ai/Step1X-Edit). The script is run as::

        python calculate_statistics.py --model_name <editor> --save_path OUT/export/gedit \\
            --backbone qwen25vl --language en

    and reads, for each of its 11 ``GROUPS`` (``GEDIT_GROUPS``), the CSV
    ``<save_path>/<model_name>/<backbone>/eval_results_new/<model_name>_<group>_gpt_score.csv`` with the
    columns ``GEDIT_COLUMNS`` (as test_gedit_score.py writes them, typo ``sementics_score`` included).
    So this writes, per editor (``model_name`` = ``editjudge.paths.safe_name(editor)``)::

        OUT/export/gedit/<editor>/<backbone>/eval_results_new/<editor>_<group>_gpt_score.csv

    one row per item with both ``sub_scores["SC"]`` (-> sementics_score) and ``sub_scores["PQ"]``
    (-> quality_score); the script recomputes overall = sqrt(SC * PQ), as our viescore score is.
    ``backbone`` must be one of the script's ``--backbone`` choices (gpt4o, qwen25vl) for it to find the
    folder; our judge is Qwen3-VL whatever the folder is called. ``instruction_language`` is the item's
    language as the dataset spells it ("en"/"cn", which is what test_gedit_score.py writes; note that the
    upstream script's ``--language`` choices are en/zh, so only ``en`` matches rows there).

    Differences from the official pipeline, all logged: items without SC/PQ (edit or judge failures)
    are not written, as the official scorer drops them, but are listed in
    ``OUT/export/gedit/<editor>/<backbone>/omitted_items.csv``; GEdit groups absent from the run get a
    header-only CSV (the script then prints nan for them instead of crashing); categories that are not
    GEdit groups are written too but the script ignores them. ``intersection_exist`` is the item's
    (the dataset's ``Intersection_exist``, read by the gedit loader); items without one (another format,
    or data without the column) say False, and the script's "Intersection" averages are then nan.
    """
    if not any(isinstance(r.get("sub_scores"), Mapping) and r["sub_scores"] for r in records):
        raise ValueError("export_gedit needs sub-scores SC and PQ, which only the viescore rubric records; "
                         "these records have no sub_scores (simple rubric?). Score with the viescore rubric first.")
    names = {k for r in records if isinstance(r.get("sub_scores"), Mapping) for k in r["sub_scores"]}
    if not {"SC", "PQ"} <= names:
        raise ValueError(f"export_gedit needs sub-scores 'SC' and 'PQ' (viescore rubric); found {sorted(names)}")
    if backbone not in ("gpt4o", "qwen25vl"):
        raise ValueError(f"backbone must be one of calculate_statistics.py's choices ['gpt4o', 'qwen25vl'], "
                         f"got {backbone!r}")
    category_stats(records)  # the same validation as the reports: malformed records are a ValueError here too
    out = Path(out)
    by_id = {item.id: item for item in items}
    unknown = sorted({r["item_id"] for r in records} - set(by_id))
    if unknown:
        raise ValueError(f"export_gedit: {len(unknown)} scored item(s) not in the benchmark items, e.g. {unknown[:5]}")
    no_language = sorted({r["item_id"] for r in records if not by_id[r["item_id"]].language})
    if no_language and default_language is None:
        raise ValueError(f"export_gedit: {len(no_language)} item(s) have no language (e.g. {no_language[:5]}); "
                         "GEdit rows need instruction_language: pass default_language='en' or 'cn'")
    categories = list(dict.fromkeys(r["category"] for r in records))
    if not set(categories) & set(GEDIT_GROUPS):
        raise ValueError(f"export_gedit: none of the categories {categories} is a GEdit-Bench task type "
                         f"{list(GEDIT_GROUPS)}")
    extra = [c for c in categories if c not in GEDIT_GROUPS]
    if extra:
        logger.warning("GEdit export: categories %s are not GEdit groups; written, but the official script "
                       "ignores them", extra)
    if all(by_id[r["item_id"]].intersection_exist is None for r in records):
        logger.warning("GEdit export: the items have no Intersection_exist; intersection_exist is False everywhere "
                       "and the script's Intersection averages will be nan")

    written: list[Path] = []
    for editor in dict.fromkeys(r["editor"] for r in records):
        model = safe_name(editor)
        folder = out / "export" / "gedit" / model / backbone / "eval_results_new"
        folder.mkdir(parents=True, exist_ok=True)
        rows: dict[str, list[list]] = {c: [] for c in (*GEDIT_GROUPS, *extra)}
        omitted = []
        for r in (r for r in records if r["editor"] == editor):
            item = by_id[r["item_id"]]
            subs = r.get("sub_scores") if isinstance(r.get("sub_scores"), Mapping) else {}
            sc, pq = subs.get("SC"), subs.get("PQ")
            language = item.language or default_language
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (sc, pq)):
                omitted.append([r["item_id"], r["category"], language, r.get("failed_stage") or "",
                                r.get("error") or "SC or PQ missing"])
                continue
            edited = edited_path(out, r)
            rows[r["category"]].append([str(item.image), str(edited.resolve()) if edited else "", item.instruction,
                                        sc, pq, bool(item.intersection_exist), language])
        missing = [g for g in GEDIT_GROUPS if not rows[g]]
        if missing:
            logger.warning("GEdit export for %s: no scored items in %s; their CSVs have a header only", editor, missing)
        for category, category_rows in rows.items():
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(GEDIT_COLUMNS)
            writer.writerows(category_rows)
            written.append(write_atomic(folder / f"{model}_{safe_name(category)}_gpt_score.csv", buffer.getvalue()))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["item_id", "category", "instruction_language", "failed_stage", "reason"])
        writer.writerows(omitted)
        written.append(write_atomic(folder.parent / "omitted_items.csv", buffer.getvalue()))
        if omitted:
            logger.warning("GEdit export for %s: %d item(s) without SC/PQ left out (listed in %s)", editor,
                           len(omitted), folder.parent / "omitted_items.csv")
    return written
