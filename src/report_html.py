"""report.html: one self-contained page with the table, the chart, filters, the lowest scores, the
failures and a gallery of thumbnails (written by :func:`editjudge.report.write_reports`).

Everything from benchmark data and model output is escaped, and the page carries a
Content-Security-Policy that lets only its own script (by hash) run, so an escaping slip still
cannot execute anything. Thumbnails are cached under ``OUT/.thumbnails/`` when asked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .benchmark import BenchmarkItem
from .images import ImageLoadError, open_image, to_rgb
from .files import write_atomic
from .report_common import (FAILURES_NOTE, MEAN_LABELS, edited_path, failed_records, failure_cell, fmt,
                            lowest_scored, scope_text, shown_sub_scores, visible_controls)
from .report_rankings import html_sections

logger = logging.getLogger(__name__)

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
    return escape(visible_controls(str(value)), quote=True)


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
            write_atomic(stored, base64.b64decode(uri.split(",", 1)[1]))
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


def _summary_table(summary: dict) -> str:
    categories = summary["categories"]
    subs = shown_sub_scores(summary)  # SC and PQ beside the overall score, for a viescore run
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
            cells.append(f'<td title="{_e(tip)}">{fmt(st["mean"])}{failed}</td>')
        o = entry["overall"]
        means = "".join(f'<td data-mean="{key}">{fmt(o[key])}</td>' for key in MEAN_LABELS)
        means += "".join(f'<td>{fmt(entry.get("sub_score_overall", {}).get(n))}</td>' for n in subs)
        flagged = ' class="fail high-failure-rate"' if o["high_failure_rate"] else ""
        rows.append(f'<tr class="editor-row"><td>{_e(editor)}</td>{"".join(cells)}{means}'
                    f'<td{flagged}>{_e(failure_cell(o))}</td></tr>')
    means_head = "".join(f'<th title="{_e(summary["means"][key])}">{_e(label)}</th>' for key, label in MEAN_LABELS.items())
    means_head += "".join(f"<th>{_e(n)} (macro)</th>" for n in subs)
    legend = "".join(f"<li><b>{_e(MEAN_LABELS[key])}</b>: {_e(text)}</li>" for key, text in summary["means"].items())
    return (f'<table id="summary"><thead><tr><th>editor</th>{head}{means_head}'
            f'<th>failure rate</th></tr></thead><tbody>{"".join(rows)}</tbody></table><ul id="means">{legend}</ul>')


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
            f"{_e(k)} {_e(fmt(v) if isinstance(v, (int, float)) else '-')}" for k, v in subs.items()) + "</div>")
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
        value = fmt(r["score"]) if r.get("score") is not None else _e(r.get("failed_stage") or "?")
        detail = _e((instruction if extra == "instruction" else (r.get("error") or ""))[:400])
        out.append(f'<tr class="f" data-editor="{_e(r["editor"])}" data-category="{_e(r["category"])}">'
                   f'<td>{value}</td><td class="t">{_e(r["editor"])}</td><td class="t">{_e(r["category"])}</td>'
                   f'<td class="t"><a href="#{anchor}">{_e(r["item_id"])}</a></td><td class="t" dir="auto">{detail}</td></tr>')
    return "".join(out)


def render_html(out: Path, summary: dict, records: list[dict], items: Mapping[str, BenchmarkItem], chart: Path | None,
          size: int, cache: Path | None) -> str:
    # cards: one per item (source once), one cell per editor; benchmark order, then items unknown to it
    order = {item_id: i for i, item_id in enumerate(items)}
    by_item: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: order.get(r["item_id"], len(order))):
        by_item.setdefault(r["item_id"], []).append(r)
    sources = {i: items[i].image if i in items else None for i in by_item}
    thumbs = _thumbnails([*sources.values(), *(edited_path(out, r) for r in records)], size, cache)
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
            cells = "".join(_record_cell(r, anchors[(r["editor"], r["item_id"])], thumbs[edited_path(out, r)])
                            for r in mine)
            cards.append(f'<div class="card" data-pos="{pos}"><div class="id" dir="auto">{_e(item_id)}</div>'
                         f'<div class="instr" dir="auto">{_instruction(item)}</div>'
                         f'<div class="cells"><div class="src"><b>source</b>{source}</div>{cells}</div></div>')
        sections.append(f'<section class="f" data-category="{_e(category)}"><h3>{_e(category)} '
                        f'<small>({len(cards)} items)</small></h3>'
                        f'<div class="gallery">{"".join(cards)}</div></section>')

    options = lambda values: "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)  # noqa: E731
    worst = [(anchors[(r["editor"], r["item_id"])], r) for r in lowest_scored(records)]
    failures = [(anchors[(r["editor"], r["item_id"])], r) for r in failed_records(records)]
    chart_uri = None if chart is None else "data:image/png;base64," + base64.b64encode(chart.read_bytes()).decode("ascii")
    chart_img = ('<p>(no chart: matplotlib is not installed)</p>' if chart_uri is None else
                 f'<img src="{chart_uri}" alt="mean score per category and editor" style="max-width:100%">')
    script_hash = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
           "base-uri 'none'; form-action 'none'")
    scope = scope_text(summary.get("scope"))
    head_row = "<tr><th>score</th><th>editor</th><th>category</th><th>item</th><th>{}</th></tr>"
    lowest_block = (f'<table>{head_row.format("instruction")}{_index_rows(worst, items, "instruction")}</table>'
                    if worst else '<p class="none">no scored items</p>')
    failures_block = (f'<details{" open" if len(failures) <= 20 else ""}><summary>{len(failures)} failed items, '
                      f'with their errors</summary><table>{head_row.format("error").replace("score", "stage", 1)}'
                      f'{_index_rows(failures, items, "error")}</table></details>'
                      if failures else '<p class="none">no failures</p>')
    from .trust.probe_report import PROBES_FILE, probes_html, read_record

    probes_block = probes_html(read_record(out, PROBES_FILE), _e)
    prompts_line = f"<p><small>Prompts: {_e(summary['prompts'])}</small></p>" if summary.get("prompts") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(summary['title'])}</title><style>{_CSS}.cells{{--w:{size}px}}</style></head>
<body>
<h1>{_e(summary['title'])}</h1>
<p>{len(records)} editor-item pairs · {len(summary['editors'])} editors · {len(summary['categories'])} categories ·
{len(failures)} failed. Cells are mean scores; hover for n and the 95% CI.</p>
{f'<p id="scope">{_e(scope)}</p>' if scope else ""}
<div class="scroll">{_summary_table(summary)}</div>
<p><small>{_e(FAILURES_NOTE)}</small></p>{prompts_line}
{html_sections(summary, _e)}
{chart_img}
{probes_block}
<div class="controls">editor <select id="f-editor"><option value="">all</option>{options(summary['editors'])}</select>
category <select id="f-category"><option value="">all</option>{options(summary['categories'])}</select>
order <select id="f-sort"><option value="bench">benchmark order</option><option value="low">lowest score first</option>
</select> · <a href="#lowest">lowest scores</a> · <a href="#failures">failures ({len(failures)})</a></div>
<h2 id="lowest">Lowest scores</h2>
{lowest_block}
<h2 id="failures">Failures ({len(failures)})</h2>
{failures_block}
<h2>Gallery</h2>
{"".join(sections)}
<script>{_JS}</script>
</body></html>
"""
