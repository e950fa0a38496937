"""Reports over ``OUT/scores.jsonl``: summary files, a bar chart and one self-contained HTML page.

    from editjudge.report import write_reports, format_table
    paths = write_reports(out, records, items)   # summary.json/.csv, report.md, scores_by_category.png, report.html
    print(format_table(records))                  # the editors x categories table printed at the end of a run

The HTML page is built in :mod:`editjudge.report_html`; the GEdit-Bench export is :mod:`editjudge.export_gedit`.

Every number comes from :mod:`editjudge.aggregate`: failed items (edit or judge failure) are counted and
shown; the headline ``macro`` (mean of category means, GEdit-Bench's convention) and ``micro`` (mean
over items) leave them out, and beside them every report shows the macro mean with failures counted
as the scale's minimum and the macro mean over the items every editor scored, and flags an editor
whose failure rate exceeds 5% (``report_common.MEAN_LABELS``, ``mean_descriptions``). Every report also
ranks the editors with bootstrap intervals (:mod:`editjudge.trust.rankings`), shows Bradley-Terry strengths
when ``OUT/pairwise.jsonl`` is there (:mod:`editjudge.trust.bradley_terry`), and the macro means per
language when the items span several (:mod:`editjudge.by_language`); :mod:`editjudge.report_rankings`
renders those tables.
All benchmark and model text in the HTML is escaped, and the page carries a Content-Security-Policy
that lets only its own script (by hash) run, so an escaping slip still cannot execute anything.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

from .aggregate import FAILURE_RATE_FLAG, category_stats, common_items, editor_overall
from .benchmark import BenchmarkItem
from .by_language import by_language
from .files import write_atomic
from .report_common import (FAILURES_NOTE, FLAG, MEAN_LABELS, WEIGHTS, failed_records, failure_cell, fmt,
                            lowest_scored, mean_descriptions, scope_text, shown_sub_scores,
                            sub_score_macros, visible_controls)
from .report_html import render_html
from .report_rankings import markdown_sections, text_blocks
from .trust.bradley_terry import pairwise_ranking, read_pairwise
from .trust.rankings import macro_ranking

logger = logging.getLogger(__name__)

__all__ = ["write_reports", "format_table", "summary_dict"]

STATS_FIELDS = ("n", "n_failed", "n_scored", "mean", "std", "ci95", "min", "max")


def _categories(stats: Mapping[str, Mapping]) -> list[str]:
    return list(dict.fromkeys(c for by_category in stats.values() for c in by_category))


def _cell(stats) -> str:
    """``6.20``, ``6.20 (1 failed)``, ``- (2 failed)``; empty where the editor has no item in the category."""
    if stats is None:
        return ""
    text = fmt(stats.mean)
    return f"{text} ({stats.n_failed} failed)" if stats.n_failed else text


def _sub_score_stats(records: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{editor: {category: {sub_score: Stats dict}}}`` for editors with sub-scores; a missing one counts as failed."""
    names: dict[str, dict[str, None]] = {}
    for r in records:
        if isinstance(r.get("sub_scores"), Mapping):
            names.setdefault(r["editor"], {}).update(dict.fromkeys(r["sub_scores"]))
    result: dict[str, dict[str, dict[str, dict]]] = {}
    for editor, keys in names.items():
        mine = [r for r in records if r["editor"] == editor]
        for name in keys:
            fake = []
            for r in mine:
                value = (r.get("sub_scores") or {}).get(name)
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                fake.append({"item_id": r["item_id"], "category": r["category"], "editor": editor,
                             "score": value if ok else None})
            for category, st in category_stats(fake)[editor].items():
                result.setdefault(editor, {}).setdefault(category, {})[name] = st.to_dict()
    return result


def _pairwise_in_scope(pairs: list[dict], records: list[dict]) -> tuple[list[dict], int]:
    """The verdicts between two of the records' editors on one of their items, and how many others there were."""
    editors, ids = {r["editor"] for r in records}, {r["item_id"] for r in records}
    kept = [p for p in pairs if p["a"] in editors and p["b"] in editors and p["item_id"] in ids]
    return kept, len(pairs) - len(kept)


def summary_dict(records: list[dict], title: str = "editjudge report", *, floor: float = 0.0,
                 scope: dict | None = None, languages: Mapping[str, str | None] | None = None,
                 pairwise: list[dict] | None = None) -> dict:
    """What summary.json holds: per editor ``overall`` (aggregate.editor_overall with ``floor``, the
    scale's minimum), ``categories`` (Stats dicts), ``micro_stats`` (Stats over all the editor's items)
    and, for rubric runs, ``sub_scores``; ``means`` says what each kind of mean is, ``scope`` which
    (editor, item) pairs the report covers (``editjudge.merge.read_scores``); ``ranking`` the editors'
    bootstrap ranking (``trust.rankings.macro_ranking``). With ``languages`` (item id -> language) where
    items have one, ``languages``: the numbers per language (``by_language``); with ``pairwise`` (the
    records of pairwise.jsonl, ``trust.bradley_terry.read_pairwise``), ``pairwise_ranking``: the
    Bradley-Terry strengths from the verdicts between these editors on these items."""
    stats = category_stats(records)
    overall = editor_overall(records, floor)
    micro = category_stats([dict(r, category="all") for r in records])
    sub = _sub_score_stats(records)
    editors = {}
    for editor, by_category in stats.items():
        entry = {"overall": overall[editor],
                 "categories": {c: st.to_dict() for c, st in by_category.items()},
                 "micro_stats": micro[editor]["all"].to_dict()}
        if editor in sub:
            entry["sub_scores"] = sub[editor]
            if sub_score_macros(sub[editor]):
                entry["sub_score_overall"] = sub_score_macros(sub[editor])  # macro SC and PQ
        editors[editor] = entry
    n_common = len(common_items(records))
    summary = {"title": title, "weighting": WEIGHTS, "means": mean_descriptions(floor, n_common),
               "score_floor": floor, "n_common_items": n_common, "failure_rate_flag": FAILURE_RATE_FLAG,
               "categories": _categories(stats), "editors": editors}
    if scope is not None:
        summary["scope"] = scope
    summary["ranking"] = macro_ranking(records)
    split = by_language(records, languages, floor) if languages else {}
    if split:
        summary["languages"] = split
    if pairwise is not None:
        kept, left_out = _pairwise_in_scope(pairwise, records)
        summary["pairwise_ranking"] = {**pairwise_ranking(kept), "n_out_of_scope": left_out}
    return summary


def format_table(records: list[dict], floor: float = 0.0, languages: Mapping[str, str | None] | None = None) -> str:
    """Plain-text table: one row per editor, a column per category, then the means and failed; below it the
    ranking with its uncertainty and, with ``languages`` (item id -> language) spanning several, the macro
    mean per language (``report_rankings.text_blocks``)."""
    if not records:
        return "no scores recorded"
    stats = category_stats(records)
    overall = editor_overall(records, floor)
    categories = _categories(stats)
    summary = summary_dict(records, floor=floor, languages=languages)
    subs = shown_sub_scores(summary)  # SC and PQ (macro) beside the overall scores, for a viescore run
    header = ["editor", *categories, "macro", "fail=min", "common", "micro", *subs, "failed"]
    rows = [[editor, *(_cell(stats[editor].get(c)) for c in categories), fmt(o["macro"]),
             fmt(o["macro_failed_as_min"]), fmt(o["macro_common"]), fmt(o["micro"]),
             *(fmt(summary["editors"][editor].get("sub_score_overall", {}).get(n)) for n in subs),
             f"{o['n_failed']}/{o['n']}" + (" !" if o["high_failure_rate"] else "")] for editor, o in overall.items()]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    legend = (f"fail=min: macro with failed items at the scale's minimum ({floor:g}); common: macro over the "
              f"{len(common_items(records))} items every editor scored; ! = over {FAILURE_RATE_FLAG:.0%} failed")
    return "\n".join([*lines, WEIGHTS, legend, *text_blocks(summary)])


# ---------------------------------------------------------------------------------------- csv, markdown


def _spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet will not run: one starting with = + - @ or a tab/CR gets a leading '."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write_csv(path: Path, summary: dict) -> Path:
    """The summary table for spreadsheets; category names from benchmark data are defused (``_spreadsheet_safe``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["editor", "category", *STATS_FIELDS, "flag"])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for editor, entry in summary["editors"].items():
        for category, st in entry["categories"].items():
            writer.writerow([editor, _spreadsheet_safe(category), *(blank(st[f]) for f in STATS_FIELDS), ""])
        o, m = entry["overall"], entry["micro_stats"]
        writer.writerow([editor, MEAN_LABELS["macro"], o["n"], o["n_failed"], o["n_scored"], blank(o["macro"]),
                         "", blank(o["macro_ci95"]), "", "", FLAG if o["high_failure_rate"] else ""])
        # Failed items counted at the floor: all n items count as scored.
        writer.writerow([editor, MEAN_LABELS["macro_failed_as_min"], o["n"], o["n_failed"], o["n"],
                         blank(o["macro_failed_as_min"]), "", "", "", "", ""])
        writer.writerow([editor, MEAN_LABELS["macro_common"], o["n_common"], 0, o["n_common"],
                         blank(o["macro_common"]), "", "", "", "", ""])
        writer.writerow([editor, MEAN_LABELS["micro"], *(blank(m[f]) for f in STATS_FIELDS), ""])
    return write_atomic(path, buffer.getvalue())


RANKING_FIELDS = ["rank", "editor", "macro", "macro_low", "macro_high", "rank_low", "rank_high", "p_first"]


def _write_ranking_csv(path: Path, summary: dict) -> Path:
    """The ranking with its uncertainty (summary.json's ``ranking``), one row per editor, best first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RANKING_FIELDS)
    blank = lambda v: "" if v is None else v  # noqa: E731
    editors = (summary.get("ranking") or {}).get("editors") or {}
    for editor, r in sorted(editors.items(), key=lambda e: (e[1]["rank"] is None, e[1]["rank"] or 0)):
        (low, high), (rank_low, rank_high) = r["macro_interval"], r["rank_interval"]
        writer.writerow([blank(r["rank"]), _spreadsheet_safe(editor), blank(r["macro"]), blank(low), blank(high),
                         blank(rank_low), blank(rank_high), blank(r["p_first"])])
    return write_atomic(path, buffer.getvalue())


# Backslash-escaped in Markdown (CommonMark escapes any ASCII punctuation): markup, table pipes, and
# < > & so that no text becomes raw HTML or an entity, while it still reads as written (no &#x27;).
MARKDOWN_SPECIAL = "\\`*_[]|#<>&~!"


def _md(text: object, limit: int | None = None) -> str:
    """Markdown table-safe text: one line, markup characters (``MARKDOWN_SPECIAL``) backslash-escaped."""
    text = visible_controls(" ".join(str(text).split()))
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    return "".join("\\" + ch if ch in MARKDOWN_SPECIAL else ch for ch in text)


def protocol_lines(protocol: Mapping | None) -> list[str]:
    """report.md's table of a benchmark protocol's own figures (summary.json's ``protocol``): per editor,
    each category's score and the overall, as the benchmark's scripts compute them."""
    if not protocol:
        return []
    editors = protocol.get("editors") or {}
    categories = list(dict.fromkeys(c for s in editors.values() for c in _protocol_parts(s)))
    lines = [f"## {_md(protocol['name'])}'s own figures (protocol version {_md(protocol['version'])})", "",
             "Computed as the benchmark's own scripts compute them, from the same answers; failed items are left "
             "out as those scripts leave them out.", "",
             "| editor | " + "".join(f"{_md(c)} | " for c in categories) + "overall | failed |",
             "|---" * (len(categories) + 3) + "|"]
    for editor, s in editors.items():
        types = _protocol_parts(s)
        cells = [fmt(_figure((types.get(c) or {}).get("score"))) for c in categories]
        failed = f"{s['n_failed']}/{s['n']}" if "n_failed" in s and "n" in s else "-"
        lines.append(f"| {_md(editor)} | " + "".join(f"{c} | " for c in cells) + f"{fmt(_figure(s.get('overall')))} | "
                     f"{_md(failed)} |")
    notes = dict.fromkeys(s["note"] for s in editors.values() if s.get("note"))
    return lines + [""] + [line for note in notes for line in (_md(note), "")]


def _protocol_parts(summary: Mapping) -> Mapping:
    """A protocol summary's per-category figures: ``types`` (ImgEdit, RISEBench) or ``categories`` (KRIS-Bench)."""
    return summary.get("types") or summary.get("categories") or {}


def _figure(value) -> float | None:
    """A number shown as it is; a ``{"mean": ...}`` figure (KRIS-Bench's) by its mean; anything else (KRIS-Bench's
    overall, one mean per metric and no single figure) as none."""
    if isinstance(value, Mapping):
        value = value.get("mean")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _markdown(summary: dict, records: list[dict], items: Mapping[str, BenchmarkItem],
              extra: list[str] | None = None) -> str:
    categories = summary["categories"]
    lines = [f"# {_md(summary['title'])}", "", f"{len(records)} editor-item pairs, {len(summary['editors'])} editors, "
             f"{len(categories)} categories. Cells: mean score (failed items in brackets).", ""]
    scope = scope_text(summary.get("scope"))
    if scope:
        lines += [_md(scope), ""]
    subs = shown_sub_scores(summary)  # SC and PQ (macro) beside the overall scores, for a viescore run
    lines.append("| editor | " + " | ".join(_md(c) for c in categories) + " | "
                 + " | ".join(_md(label) for label in MEAN_LABELS.values()) + " | "
                 + "".join(f"{n} (macro) | " for n in subs) + "failure rate |")
    lines.append("|---" * (len(categories) + len(MEAN_LABELS) + len(subs) + 2) + "|")
    stats = category_stats(records)
    for editor, entry in summary["editors"].items():
        o = entry["overall"]
        cells = [_cell(stats[editor].get(c)) for c in categories] + [fmt(o[key]) for key in MEAN_LABELS]
        cells += [fmt(entry.get("sub_score_overall", {}).get(n)) for n in subs]
        lines.append(f"| {_md(editor)} | " + " | ".join(cells) + f" | {_md(failure_cell(o))} |")
    lines += ["", "Means:", ""]
    lines += [f"- {_md(MEAN_LABELS[key])}: {_md(text)}" for key, text in summary["means"].items()]
    lines += ["", _md(FAILURES_NOTE), ""]
    lines += markdown_sections(summary, _md)
    if summary.get("prompts"):
        lines += [f"Prompts: {_md(summary['prompts'])}", ""]
    lines += protocol_lines(summary.get("protocol"))
    lines += extra or []  # the probes' table and the canary's line
    worst = lowest_scored(records)
    if worst:
        lines += [f"## Lowest scores ({len(worst)})", "", "| score | editor | category | item | instruction |",
                  "|---|---|---|---|---|"]
        for r in worst:
            item = items.get(r["item_id"])
            lines.append(f"| {r['score']:.2f} | {_md(r['editor'])} | {_md(r['category'])} | {_md(r['item_id'])} | "
                         f"{_md(item.instruction if item else '', 100)} |")
        lines.append("")
    failures = failed_records(records)
    if failures:
        lines += [f"## Failures ({len(failures)})", "", "| editor | category | item | stage | error |",
                  "|---|---|---|---|---|"]
        for r in failures[:50]:
            lines.append(f"| {_md(r['editor'])} | {_md(r['category'])} | {_md(r['item_id'])} | "
                         f"{_md(r.get('failed_stage') or '?')} | {_md(r.get('error') or '', 160)} |")
        if len(failures) > 50:
            lines.append(f"\n… and {len(failures) - 50} more (see report.html or scores.jsonl).")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- chart


def _span(summary: dict, score_range: tuple[float, float] | None) -> tuple[float, float] | None:
    """What the chart spans: the judge's whole scale (so that a 6 reads as 6 of 10) and every score."""
    lows = [st["min"] for e in summary["editors"].values() for st in e["categories"].values() if st["min"] is not None]
    highs = [st["max"] for e in summary["editors"].values() for st in e["categories"].values() if st["max"] is not None]
    if not highs:
        return None
    low, high = min(0.0, *lows), max(highs)
    if score_range is not None:
        low, high = min(low, float(score_range[0])), max(high, float(score_range[1]))
    return low, high


def _y_limits(summary: dict, score_range: tuple[float, float] | None) -> tuple[float, float] | None:
    """The chart's y range: ``_span`` and a margin."""
    span = _span(summary, score_range)
    if span is None:
        return None
    low, high = span
    pad = 0.05 * ((high - low) or 1.0)
    return low - (pad if low < 0 else 0), high + pad


def _whiskers(means: list[float], errs: list[float | None], span: tuple[float, float] | None) -> list[list[float]]:
    """Error bars as matplotlib's [below, above], each CI half-width clipped to ``span``: no mean lies
    outside the judge's scale, so neither does an interval for it (with 2 or 3 items a 95% CI is often
    wider than the whole scale). nan: no error bar."""
    low, high = span if span is not None else (-math.inf, math.inf)
    below = [math.nan if e is None else min(e, max(m - low, 0.0)) for m, e in zip(means, errs)]
    above = [math.nan if e is None else min(e, max(high - m, 0.0)) for m, e in zip(means, errs)]
    return [below, above]


def _chart(path: Path, summary: dict, score_range: tuple[float, float] | None = None) -> Path | None:
    """Grouped bars per category (and the macro average), one colour per editor, ci95 error bars
    clipped to the judge's scale (``score_range``, else the span of the scores).

    None, with a warning, where matplotlib (the ``report`` extra) is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread
    except ImportError:
        logger.warning("matplotlib is not installed (pip install 'editjudge[report]'): no chart is drawn")
        return None

    editors = list(summary["editors"])
    groups = summary["categories"] + ["overall (macro)"]
    k = max(len(editors), 1)
    bar = 0.8 / k
    span = _span(summary, score_range)
    fig = Figure(figsize=(min(24.0, max(6.0, 1.5 + len(groups) * (0.3 + 0.12 * k))), 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(k)]
    for i, editor in enumerate(editors):
        entry = summary["editors"][editor]
        xs, means, errs = [], [], []
        for j, group in enumerate(groups):
            if group == "overall (macro)":
                mean, err = entry["overall"]["macro"], entry["overall"]["macro_ci95"]
            else:
                st = entry["categories"].get(group)
                mean, err = (st["mean"], st["ci95"]) if st else (None, None)
            if mean is None:
                continue  # no bar where nothing was scored
            xs.append(j - 0.4 + bar * (i + 0.5))
            means.append(mean)
            errs.append(err)
        ax.bar(xs, means, width=bar, color=colours[i], label=editor, yerr=_whiskers(means, errs, span), capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "0.2"})
    ax.set_xticks(range(len(groups)), [g if len(g) <= 28 else g[:27] + "…" for g in groups],
                  rotation=35 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center", fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    for label in ax.get_xticklabels():
        label.set_rotation_mode("anchor")  # the end of a rotated label sits under its group
    if len(groups) > 1:
        ax.axvline(len(groups) - 1.5, color="0.6", linewidth=0.8, linestyle="--")
    if span:
        ax.set_ylim(*_y_limits(summary, score_range))
    ax.set_ylabel("mean score (error bar: 95% CI, within the scale)")
    fig.suptitle(summary["title"], fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    if editors:
        fig.legend(loc="outside lower center", ncols=min(k, 6), fontsize=8, frameon=False)
    fig.savefig(path, dpi=110)
    return path


def write_reports(out: Path, records: list[dict], items: list[BenchmarkItem], *, title: str = "editjudge report",
                  thumbnail_size: int = 256, thumbnail_cache: bool = True, floor: float = 0.0,
                  scope: dict | None = None, score_range: tuple[float, float] | None = None,
                  prompts: str | None = None, protocol: dict | None = None) -> dict[str, Path]:
    """Writes summary.json, summary.csv, report.md, scores_by_category.png, report.html into `out`; returns name->path.

    ``score_range`` (the judge's scale): the chart's axis spans it; ``prompts``: which prompts scored (summary.json, both reports); ``protocol``: a benchmark protocol's own figures (summary.json's ``protocol``, a table in report.md). Records are validated as :mod:`editjudge.aggregate` does (a malformed one is a ValueError). With
    ``thumbnail_cache``, thumbnails are kept in ``out/.thumbnails/`` so a re-run only decodes new images.
    ``floor``: the scale's minimum, at which the "failed = min" mean counts failed items; ``scope``: what
    the records cover, named in every report (``editjudge.merge.read_scores`` returns it). The items'
    languages give the per-language tables; ``out/pairwise.jsonl``, when there, the Bradley-Terry ranking
    (a malformed one is named in the reports and left out).
    """
    if not isinstance(thumbnail_size, int) or not 16 <= thumbnail_size <= 2048:
        raise ValueError(f"thumbnail_size must be an int in 16-2048 px, got {thumbnail_size!r}")
    out = Path(out)
    by_id = {item.id: item for item in items}
    pairwise, pairwise_error = None, None
    if (out / "pairwise.jsonl").is_file():
        try:
            pairwise = read_pairwise(out / "pairwise.jsonl")
        except ValueError as exc:  # one bad verdict file costs its section, not the report
            logger.warning("pairwise ranking left out: %s", exc)
            pairwise_error = str(exc)
    languages = {item_id: item.language for item_id, item in by_id.items()}
    # summary_dict validates the records (aggregate raises ValueError on bad ones)
    summary = summary_dict(records, title, floor=floor, scope=scope, languages=languages, pairwise=pairwise)
    if pairwise_error:
        summary["pairwise_ranking"] = {"error": pairwise_error}
    if prompts:
        summary["prompts"] = prompts  # which judge prompts made these scores
    if protocol:
        summary["protocol"] = protocol  # a benchmark's own figures (editjudge.protocols.results.protocol_section)
    from .trust.probe_report import CANARY_FILE, PROBES_FILE, canary_line, probes_markdown, read_record

    probes, canary = read_record(out, PROBES_FILE), read_record(out, CANARY_FILE)
    if canary:
        summary["canary"] = canary  # the drift check of the run's judge (--canary)
    extra = probes_markdown(probes, _md) + ([_md(canary_line(canary)), ""] if canary else [])
    paths = {
        "summary.json": write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n"),
        "summary.csv": _write_csv(out / "summary.csv", summary),
        "ranking.csv": _write_ranking_csv(out / "ranking.csv", summary),
        "report.md": write_atomic(out / "report.md", _markdown(summary, records, by_id, extra)),
    }
    chart = _chart(out / "scores_by_category.png", summary, score_range)
    if chart is not None:
        paths["scores_by_category.png"] = chart
    paths["report.html"] = write_atomic(out / "report.html", render_html(out, summary, records, by_id,
                                                                  chart, thumbnail_size,
                                                                  out / ".thumbnails" if thumbnail_cache else None))
    logger.info("reports written to %s: %s", out, ", ".join(paths))
    return paths
