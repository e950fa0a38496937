"""Reports over ``OUT/scores.jsonl``: summary files, a bar chart, one self-contained HTML page, a GEdit export.

    from src.report import write_reports, format_table, export_gedit
    paths = write_reports(out, records, items)   # summary.json/.csv, report.md, scores_by_category.png, report.html
    print(format_table(records))                  # the editors x categories table printed at the end of a run
    export_gedit(out, records, items)             # CSVs for GEdit-Bench's calculate_statistics.py (viescore rubric)

Every number comes from :mod:`src.aggregate`: failed items (edit or judge failure) are counted and
shown, never averaged; ``macro`` is the mean of category means, ``micro`` the mean over items.
All benchmark and model text in the HTML is escaped, and the page carries a Content-Security-Policy
that lets only its own script (by hash) run, so an escaping slip still cannot execute anything.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from src.aggregate import category_stats, editor_overall
from src.benchmark import BenchmarkItem
from src.images import ImageLoadError, open_image, to_rgb
from src.paths import is_inside, safe_name

logger = logging.getLogger(__name__)

__all__ = ["write_reports", "format_table", "export_gedit", "summary_dict", "GEDIT_GROUPS", "GEDIT_COLUMNS"]

WEIGHTS = ("macro = mean of the category means (every category weighs the same, GEdit-Bench's convention); "
           "micro = mean over all scored items.")
WEIGHTING_NOTE = (WEIGHTS + " Failed items (edit or judge failure) are excluded from every "
                  "mean and counted in n_failed and the failure rate.")
STATS_FIELDS = ("n", "n_failed", "n_scored", "mean", "std", "ci95", "min", "max")
WORST_N = 20


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a report file is either the old one or the new one, never half written
    return path


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _categories(stats: Mapping[str, Mapping]) -> list[str]:
    return list(dict.fromkeys(c for by_category in stats.values() for c in by_category))


def _cell(stats) -> str:
    """``6.20``, ``6.20 (1 failed)``, ``- (2 failed)``; empty where the editor has no item in the category."""
    if stats is None:
        return ""
    text = _fmt(stats.mean)
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


def summary_dict(records: list[dict], title: str = "editjudge report") -> dict:
    """What summary.json holds: per editor ``overall`` (aggregate.editor_overall), ``categories`` (Stats
    dicts), ``micro_stats`` (Stats over all the editor's items) and, for rubric runs, ``sub_scores``."""
    stats = category_stats(records)
    overall = editor_overall(records)
    micro = category_stats([dict(r, category="all") for r in records])
    sub = _sub_score_stats(records)
    editors = {}
    for editor, by_category in stats.items():
        entry = {"overall": overall[editor],
                 "categories": {c: st.to_dict() for c, st in by_category.items()},
                 "micro_stats": micro[editor]["all"].to_dict()}
        if editor in sub:
            entry["sub_scores"] = sub[editor]
        editors[editor] = entry
    return {"title": title, "weighting": WEIGHTING_NOTE, "categories": _categories(stats), "editors": editors}


def format_table(records: list[dict]) -> str:
    """Plain-text table: one row per editor, a column per category, then macro, micro and failed."""
    if not records:
        return "no scores recorded"
    stats = category_stats(records)
    overall = editor_overall(records)
    categories = _categories(stats)
    header = ["editor", *categories, "macro", "micro", "failed"]
    rows = [[editor, *(_cell(stats[editor].get(c)) for c in categories), _fmt(o["macro"]), _fmt(o["micro"]),
             f"{o['n_failed']}/{o['n']}"] for editor, o in overall.items()]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n" + WEIGHTS


# ---------------------------------------------------------------------------------------- csv, markdown


def _spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet will not run: one starting with = + - @ or a tab/CR gets a leading '."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write_csv(path: Path, summary: dict) -> Path:
    """The summary table for spreadsheets; category names from benchmark data are defused (``_spreadsheet_safe``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["editor", "category", *STATS_FIELDS])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for editor, entry in summary["editors"].items():
        for category, st in entry["categories"].items():
            writer.writerow([editor, _spreadsheet_safe(category), *(blank(st[f]) for f in STATS_FIELDS)])
        o, m = entry["overall"], entry["micro_stats"]
        writer.writerow([editor, "overall (macro)", o["n"], o["n_failed"], o["n_scored"], blank(o["macro"]),
                         "", "", "", ""])
        writer.writerow([editor, "overall (micro)", *(blank(m[f]) for f in STATS_FIELDS)])
    return _write_text(path, buffer.getvalue())


def _md(text: object, limit: int | None = None) -> str:
    """Markdown table-safe text: HTML-escaped, one line, markup characters backslash-escaped."""
    text = " ".join(str(text).split())
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return escape(text, quote=True)  # after the backslashes: the entities it writes contain '#'


def _worst(records: list[dict], n: int = WORST_N) -> list[dict]:
    scored = [r for r in records if r.get("score") is not None]
    return sorted(scored, key=lambda r: r["score"])[:n]


def _failures(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("score") is None]


def _markdown(summary: dict, records: list[dict], items: Mapping[str, BenchmarkItem]) -> str:
    categories = summary["categories"]
    lines = [f"# {_md(summary['title'])}", "", f"{len(records)} editor-item pairs, {len(summary['editors'])} editors, "
             f"{len(categories)} categories. Cells: mean score (failed items in brackets).", ""]
    lines.append("| editor | " + " | ".join(_md(c) for c in categories) + " | overall (macro) | overall (micro) "
                 "| failure rate |")
    lines.append("|---" * (len(categories) + 4) + "|")
    stats = category_stats(records)
    for editor, entry in summary["editors"].items():
        o = entry["overall"]
        cells = [_cell(stats[editor].get(c)) for c in categories]
        lines.append(f"| {_md(editor)} | " + " | ".join(cells) + f" | {_fmt(o['macro'])} | {_fmt(o['micro'])} | "
                     f"{o['failure_rate']:.1%} ({o['n_failed']}/{o['n']}) |")
    lines += ["", f"Weighting: {_md(WEIGHTING_NOTE)}", ""]
    worst = _worst(records)
    if worst:
        lines += [f"## Lowest scores ({len(worst)})", "", "| score | editor | category | item | instruction |",
                  "|---|---|---|---|---|"]
        for r in worst:
            item = items.get(r["item_id"])
            lines.append(f"| {r['score']:.2f} | {_md(r['editor'])} | {_md(r['category'])} | {_md(r['item_id'])} | "
                         f"{_md(item.instruction if item else '', 100)} |")
        lines.append("")
    failures = _failures(records)
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


def _chart(path: Path, summary: dict) -> Path:
    """Grouped bars per category (and the macro average), one colour per editor, ci95 error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread

    editors = list(summary["editors"])
    groups = summary["categories"] + ["overall (macro)"]
    k = max(len(editors), 1)
    bar = 0.8 / k
    fig = Figure(figsize=(min(24.0, max(6.0, 1.5 + len(groups) * (0.3 + 0.12 * k))), 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(k)]
    for i, editor in enumerate(editors):
        entry = summary["editors"][editor]
        xs, means, errs = [], [], []
        for j, group in enumerate(groups):
            if group == "overall (macro)":
                mean, err = entry["overall"]["macro"], None
            else:
                st = entry["categories"].get(group)
                mean, err = (st["mean"], st["ci95"]) if st else (None, None)
            if mean is None:
                continue  # no bar where nothing was scored
            xs.append(j - 0.4 + bar * (i + 0.5))
            means.append(mean)
            errs.append(err if err is not None else math.nan)  # nan: no error bar drawn
        ax.bar(xs, means, width=bar, color=colours[i], label=editor, yerr=errs, capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "0.2"})
    ax.set_xticks(range(len(groups)), [g if len(g) <= 28 else g[:27] + "…" for g in groups],
                  rotation=35 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center", fontsize=8)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    for label in ax.get_xticklabels():
        label.set_rotation_mode("anchor")  # the end of a rotated label sits under its group
    if len(groups) > 1:
        ax.axvline(len(groups) - 1.5, color="0.6", linewidth=0.8, linestyle="--")
    # The y range follows the scores, not the error bars: with 2 or 3 items a 95% CI can be far wider than the
    # scale, and it would flatten every bar. Such bars run off the chart, which is the honest picture.
    lows = [st["min"] for e in summary["editors"].values() for st in e["categories"].values() if st["min"] is not None]
    highs = [st["max"] for e in summary["editors"].values() for st in e["categories"].values() if st["max"] is not None]
    if highs:
        low, high = min(0.0, *lows), max(highs)
        pad = 0.05 * ((high - low) or 1.0)
        ax.set_ylim(low - (pad if low < 0 else 0), high + pad)
    ax.set_ylabel("mean score (error bar: 95% CI)")
    fig.suptitle(summary["title"], fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    if editors:
        fig.legend(loc="outside lower center", ncols=min(k, 6), fontsize=8, frameon=False)
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------------------------- html

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
.scroll{overflow-x:auto}#summary td{white-space:nowrap}summary{cursor:pointer}
th,td.t{text-align:left}[hidden]{display:none!important}.fail{color:#b00020}
.controls{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;z-index:1}
.card{border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:8px}
.cells{display:flex;flex-wrap:wrap;gap:10px}.cell,.src{width:var(--w);font-size:12px}
.cell img,.src img{max-width:var(--w);max-height:var(--w);display:block}
.ph{width:var(--w);height:calc(var(--w)*0.6);background:#eee;color:#777;display:flex;align-items:center;
justify-content:center;text-align:center;font-size:11px;overflow:hidden;word-break:break-all}
.cell.failed{background:#fff0f0}.score{font-weight:bold;font-size:15px}
pre{white-space:pre-wrap;word-break:break-word;max-height:16em;overflow:auto;background:#f6f6f6;margin:2px 0}
.instr{font-size:15px;margin:4px 0 8px}.id{color:#666;font-size:12px}
"""

# Static: no benchmark or model text ever goes in here. Filters read data-* attributes from the DOM.
_JS = """
(function(){
var fe=document.getElementById('f-editor'),fc=document.getElementById('f-category'),
fs=document.getElementById('f-sort');
function all(s,root){return Array.prototype.slice.call((root||document).querySelectorAll(s));}
function key(card){var m=Infinity;all('.cell',card).forEach(function(c){if(c.hidden)return;
var s=c.getAttribute('data-score');var v=s===''?-Infinity:parseFloat(s);if(v<m)m=v;});return m;}
function cmp(x,y){return x<y?-1:(x>y?1:0);}
function apply(){var e=fe.value,c=fc.value;
all('.f').forEach(function(el){var de=el.getAttribute('data-editor'),dc=el.getAttribute('data-category');
el.hidden=(e!==''&&de!==null&&de!==e)||(c!==''&&dc!==null&&dc!==c);});
all('.card').forEach(function(card){card.hidden=all('.cell',card).every(function(x){return x.hidden;});});
var low=fs.value==='low';
all('.gallery').forEach(function(g){var cards=all('.card',g);
cards.sort(function(a,b){var p=cmp(+a.getAttribute('data-pos'),+b.getAttribute('data-pos'));
return low?(cmp(key(a),key(b))||p):p;});cards.forEach(function(x){g.appendChild(x);});});}
[fe,fc,fs].forEach(function(el){el.addEventListener('change',apply);});
apply();document.documentElement.setAttribute('data-ready','1');
})();
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _thumbnail(path: Path | None, size: int) -> tuple[str | None, str]:
    """``(data URI, "")`` or ``(None, reason)``: a missing or broken image is a placeholder, never an error."""
    if path is None:
        return None, "no image"
    try:
        with open_image(path) as image:
            if image.mode in ("RGB", "RGBA", "L", "LA"):
                # shrink first (for JPEG, thumbnail() decodes at a reduced DCT scale), then convert the small image
                image.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
                thumb = to_rgb(image)
            else:  # palette, 16-bit, CMYK...: convert to RGB first so the resampling is not nearest-neighbour
                thumb = to_rgb(image)
                thumb.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=80)
    except FileNotFoundError:
        return None, f"missing: {path.name}"
    except ImageLoadError as exc:
        if str(exc).startswith("missing image"):
            return None, f"missing: {path.name}"
        return None, f"{'too large' if str(exc).startswith('image too large') else 'unreadable'}: {path.name}"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f"unreadable: {path.name} ({type(exc).__name__})"
    except Exception as exc:  # a decoder bug on one odd file must not cost the whole report: placeholder, logged
        logger.warning("thumbnail of %s failed: %s: %s", path, type(exc).__name__, exc)
        return None, f"unreadable: {path.name} ({type(exc).__name__})"
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), ""


def _thumbnails(paths: list[Path | None], size: int, cache: Path | None) -> dict[Path | None, tuple[str | None, str]]:
    """Thumbnails of ``paths`` in parallel; with ``cache``, kept there as JPEG files keyed by each file's
    path, size and mtime, so that re-running the report decodes only new or changed images."""
    unique = list(dict.fromkeys(paths))

    def one(path: Path | None) -> tuple[str | None, str]:
        if cache is None or path is None:
            return _thumbnail(path, size)
        try:
            st = path.stat()
        except OSError:
            return _thumbnail(path, size)  # the placeholder, with its reason
        key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{size}".encode()).hexdigest()
        stored = cache / f"{key}.jpg"
        if stored.is_file():
            return "data:image/jpeg;base64," + base64.b64encode(stored.read_bytes()).decode("ascii"), ""
        uri, reason = _thumbnail(path, size)
        if uri is not None:
            tmp = cache / f".{key}.{os.getpid()}.tmp"
            tmp.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
            os.replace(tmp, stored)
        return uri, reason

    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # Pillow releases the GIL while decoding, resizing and encoding, so threads scale with cores here.
    with ThreadPoolExecutor(max_workers=max(1, min(16, cpus))) as pool:
        return dict(zip(unique, pool.map(one, unique)))


def _img(thumb: tuple[str | None, str], alt: str) -> str:
    uri, reason = thumb
    if uri is None:
        return f'<div class="ph">{_e(reason)}</div>'
    return f'<img src="{uri}" alt="{_e(alt)}" loading="lazy">'


def _edited_path(out: Path, record: dict) -> Path | None:
    image = record.get("image")
    if not isinstance(image, str) or not image:
        return None
    path = out / image
    return path if is_inside(out, path) else None


def _summary_table(summary: dict) -> str:
    categories = summary["categories"]
    head = "".join(f"<th>{_e(c)}</th>" for c in categories)
    rows = []
    for editor, entry in summary["editors"].items():
        cells = []
        for c in categories:
            st = entry["categories"].get(c)
            if st is None:
                cells.append("<td></td>")
                continue
            tip = f"n={st['n']}, scored={st['n_scored']}" + (f", 95% CI ±{st['ci95']:.2f}" if st["ci95"] else "")
            failed = f' <span class="fail">({st["n_failed"]} failed)</span>' if st["n_failed"] else ""
            cells.append(f'<td title="{_e(tip)}">{_fmt(st["mean"])}{failed}</td>')
        o = entry["overall"]
        rows.append(f'<tr class="editor-row"><td>{_e(editor)}</td>{"".join(cells)}<td>{_fmt(o["macro"])}</td>'
                    f'<td>{_fmt(o["micro"])}</td><td>{o["failure_rate"]:.1%} ({o["n_failed"]}/{o["n"]})</td></tr>')
    return (f'<table id="summary"><thead><tr><th>editor</th>{head}<th>overall (macro)</th><th>overall (micro)</th>'
            f'<th>failure rate</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _record_cell(record: dict, anchor: str, thumb: tuple[str | None, str]) -> str:
    failed = record.get("score") is None
    score = "" if failed else repr(float(record["score"]))
    parts = [f'<div class="cell f{" failed" if failed else ""}" id="{anchor}" data-editor="{_e(record["editor"])}" '
             f'data-score="{score}"><b>{_e(record["editor"])}</b>', _img(thumb, f"{record['editor']} edit")]
    if failed:
        parts.append(f'<div class="score fail">FAILED ({_e(record.get("failed_stage") or "?")} stage)</div>')
    else:
        parts.append(f'<div class="score">{float(record["score"]):.2f}'
                     f'{" <small>(fallback)</small>" if record.get("fallback") else ""}</div>')
    subs = record.get("sub_scores")
    if isinstance(subs, Mapping) and subs:
        parts.append('<div class="subs">' + " · ".join(
            f"{_e(k)} {_e(_fmt(v) if isinstance(v, (int, float)) else '-')}" for k, v in subs.items()) + "</div>")
    if record.get("error"):
        parts.append(f'<pre class="fail">{_e(record["error"])}</pre>')
    answers = record.get("raw_outputs") if isinstance(record.get("raw_outputs"), Mapping) else {}
    if record.get("raw_output") is not None:
        answers = {"judge": record["raw_output"], **answers}
    for name, text in answers.items():
        if text is None:  # a prompt that was never asked (an earlier one failed)
            continue
        parts.append(f"<details><summary>{_e(name)} answer</summary><pre>{_e(text)}</pre></details>")
    return "".join(parts) + "</div>"


def _instruction(item: BenchmarkItem | None) -> str:
    if item is None:
        return "(instruction unknown)"
    if item.problem:
        return f'<i>invalid item: {_e(item.problem)}</i>'
    text = _e(item.instruction)
    if item.instruction_truncated_from is not None:
        text += f' <i>(cut from {item.instruction_truncated_from:,} characters)</i>'
    return text


def _index_rows(rows: list[tuple[str, dict]], items: Mapping[str, BenchmarkItem], extra: str) -> str:
    out = []
    for anchor, r in rows:
        item = items.get(r["item_id"])
        instruction = item.instruction if item else ""
        value = _fmt(r["score"]) if r.get("score") is not None else _e(r.get("failed_stage") or "?")
        detail = _e((instruction if extra == "instruction" else (r.get("error") or ""))[:400])
        out.append(f'<tr class="f" data-editor="{_e(r["editor"])}" data-category="{_e(r["category"])}">'
                   f'<td>{value}</td><td class="t">{_e(r["editor"])}</td><td class="t">{_e(r["category"])}</td>'
                   f'<td class="t"><a href="#{anchor}">{_e(r["item_id"])}</a></td><td class="t" dir="auto">{detail}</td></tr>')
    return "".join(out)


def _html(out: Path, summary: dict, records: list[dict], items: Mapping[str, BenchmarkItem], chart: Path,
          size: int, cache: Path | None) -> str:
    # cards: one per item (source once), one cell per editor; benchmark order, then items unknown to it
    order = {item_id: i for i, item_id in enumerate(items)}
    by_item: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: order.get(r["item_id"], len(order))):
        by_item.setdefault(r["item_id"], []).append(r)
    sources = {i: items[i].image if i in items else None for i in by_item}
    thumbs = _thumbnails([*sources.values(), *(_edited_path(out, r) for r in records)], size, cache)
    anchors = {(r["editor"], r["item_id"]): f"r{n}" for n, r in enumerate(records)}

    sections = []
    for category in summary["categories"]:
        cards = []
        for pos, (item_id, recs) in enumerate(by_item.items()):
            mine = [r for r in recs if r["category"] == category]
            if not mine:
                continue
            item = items.get(item_id)
            source = (_img(thumbs[sources[item_id]], "source") if item
                      else '<div class="ph">item not in the benchmark</div>')
            cells = "".join(_record_cell(r, anchors[(r["editor"], r["item_id"])], thumbs[_edited_path(out, r)])
                            for r in mine)
            cards.append(f'<div class="card" data-pos="{pos}"><div class="id" dir="auto">{_e(item_id)}</div>'
                         f'<div class="instr" dir="auto">{_instruction(item)}</div>'
                         f'<div class="cells"><div class="src"><b>source</b>{source}</div>{cells}</div></div>')
        sections.append(f'<section class="f" data-category="{_e(category)}"><h3>{_e(category)} '
                        f'<small>({len(cards)} items)</small></h3>'
                        f'<div class="gallery">{"".join(cards)}</div></section>')

    options = lambda values: "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)  # noqa: E731
    worst = [(anchors[(r["editor"], r["item_id"])], r) for r in _worst(records)]
    failures = [(anchors[(r["editor"], r["item_id"])], r) for r in _failures(records)]
    chart_uri = "data:image/png;base64," + base64.b64encode(chart.read_bytes()).decode("ascii")
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
           "base-uri 'none'; form-action 'none'")
    head_row = "<tr><th>score</th><th>editor</th><th>category</th><th>item</th><th>{}</th></tr>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(summary['title'])}</title><style>{_CSS}.cells{{--w:{size}px}}</style></head>
<body>
<h1>{_e(summary['title'])}</h1>
<p>{len(records)} editor-item pairs · {len(summary['editors'])} editors · {len(summary['categories'])} categories ·
{len(failures)} failed. Cells are mean scores; hover for n and the 95% CI.</p>
<div class="scroll">{_summary_table(summary)}</div>
<p><small>{_e(WEIGHTING_NOTE)}</small></p>
<img src="{chart_uri}" alt="mean score per category and editor" style="max-width:100%">
<div class="controls">editor <select id="f-editor"><option value="">all</option>{options(summary['editors'])}</select>
category <select id="f-category"><option value="">all</option>{options(summary['categories'])}</select>
order <select id="f-sort"><option value="bench">benchmark order</option><option value="low">lowest score first</option>
</select> · <a href="#lowest">lowest scores</a> · <a href="#failures">failures ({len(failures)})</a></div>
<h2 id="lowest">Lowest scores</h2>
<table>{head_row.format("instruction")}{_index_rows(worst, items, "instruction")}</table>
<h2 id="failures">Failures ({len(failures)})</h2>
<details{" open" if len(failures) <= 20 else ""}><summary>{len(failures)} failed items, with their errors</summary>
<table>{head_row.format("error").replace("score", "stage", 1)}{_index_rows(failures, items, "error")}</table></details>
<h2>Gallery</h2>
{"".join(sections)}
<script>{_JS}</script>
</body></html>
"""


def write_reports(out: Path, records: list[dict], items: list[BenchmarkItem], *, title: str = "editjudge report",
                  thumbnail_size: int = 256, thumbnail_cache: bool = True) -> dict[str, Path]:
    """Writes summary.json, summary.csv, report.md, scores_by_category.png, report.html into `out`; returns name->path.

    Records are validated as :mod:`src.aggregate` does (a malformed one is a ValueError). With
    ``thumbnail_cache``, thumbnails are kept in ``out/.thumbnails/`` so a re-run only decodes new images.
    """
    if not isinstance(thumbnail_size, int) or not 16 <= thumbnail_size <= 2048:
        raise ValueError(f"thumbnail_size must be an int in 16-2048 px, got {thumbnail_size!r}")
    out = Path(out)
    by_id = {item.id: item for item in items}
    summary = summary_dict(records, title)  # validates the records (aggregate raises ValueError on bad ones)
    paths = {
        "summary.json": _write_text(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n"),
        "summary.csv": _write_csv(out / "summary.csv", summary),
        "report.md": _write_text(out / "report.md", _markdown(summary, records, by_id)),
        "scores_by_category.png": _chart(out / "scores_by_category.png", summary),
    }
    paths["report.html"] = _write_text(out / "report.html", _html(out, summary, records, by_id,
                                                                  paths["scores_by_category.png"], thumbnail_size,
                                                                  out / ".thumbnails" if thumbnail_cache else None))
    logger.info("reports written to %s: %s", out, ", ".join(paths))
    return paths


# ---------------------------------------------------------------------------------------- GEdit-Bench export

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
    So this writes, per editor (``model_name`` = ``src.paths.safe_name(editor)``)::

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
            edited = _edited_path(out, r)
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
            written.append(_write_text(folder / f"{model}_{safe_name(category)}_gpt_score.csv", buffer.getvalue()))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["item_id", "category", "instruction_language", "failed_stage", "reason"])
        writer.writerows(omitted)
        written.append(_write_text(folder.parent / "omitted_items.csv", buffer.getvalue()))
        if omitted:
            logger.warning("GEdit export for %s: %d item(s) without SC/PQ left out (listed in %s)", editor,
                           len(omitted), folder.parent / "omitted_items.csv")
    return written
