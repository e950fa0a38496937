"""What the reports show of ``OUT/probes.json`` (``editjudge probe``) and ``OUT/canary.json`` (``--canary``):
a "Probes" section in report.html, a short table in report.md, the canary's line in report.md and its
record in summary.json. A missing file shows nothing; an unreadable one is logged and shows nothing
(a report never fails for them). Everything read from the files is escaped by the caller's escaper.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

PROBES_FILE = "probes.json"
CANARY_FILE = "canary.json"


def read_record(out: Path, name: str) -> dict | None:
    """``out/name`` as a JSON object, or None (absent, or unreadable: logged)."""
    path = Path(out) / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("%s is not readable JSON (%s): left out of the reports", path, exc)
        return None
    if not isinstance(data, dict):
        logger.warning("%s does not hold a JSON object: left out of the reports", path)
        return None
    return data


def _num(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _state(entry: dict) -> str:
    if entry.get("skipped"):
        return "skipped"
    return "pass" if entry.get("passed") else "FAIL"


def _rows(probes: dict) -> list[dict]:
    return [p for p in probes.get("probes", []) if isinstance(p, dict)]


def _made(probes: dict, escape: Callable[[object], str]) -> str:
    """Which judge settings the probes ran under (``editjudge probe`` writes probes.json; a later run
    under other settings shows the same file until the probes are run again)."""
    judge = probes.get("judge")
    if not isinstance(judge, dict) or not judge.get("settings_hash"):
        return ""
    return escape(f" (editjudge probe, judge settings {str(judge['settings_hash'])[:12]})")


def probes_markdown(probes: dict | None, md: Callable[[object], str]) -> list[str]:
    """report.md's lines for the probes: the verdict and one row per probe (``md`` escapes text)."""
    if not probes:
        return []
    lines = ["## Probes", "", md(probes.get("verdict", {}).get("text", "")) + _made(probes, md), "",
             "| probe | result | mean | rule or why skipped |", "|---|---|---|---|"]
    for p in _rows(probes):
        lines.append(f"| {md(p.get('name'))} | {_state(p)} | {_num(p.get('mean'))} | "
                     f"{md(p.get('skipped') or p.get('rule') or '')} |")
    return lines + [""]


def probes_html(probes: dict | None, e: Callable[[object], str]) -> str:
    """report.html's "Probes" section (``e`` HTML-escapes text); "" without probes."""
    if not probes:
        return ""
    verdict = probes.get("verdict", {})
    cls = ' class="fail"' if verdict.get("fit") is False else ""
    rows = []
    for p in _rows(probes):
        state = _state(p)
        mark = ' class="fail"' if state == "FAIL" else ""
        rows.append(f'<tr><td class="t">{e(p.get("name"))}</td><td class="t">{e(p.get("shows"))}</td>'
                    f'<td class="t">{e(p.get("expect"))}</td><td{mark}>{e(state)}</td><td>{e(_num(p.get("mean")))}</td>'
                    f'<td class="t">{e(p.get("skipped") or p.get("rule") or "")}</td></tr>')
    ref = probes.get("reference")
    ref_line = (f"<p>The first editor's edits with their own instructions: mean {e(_num(ref.get('score')))} "
                f"(n={e(ref.get('n'))}).</p>" if isinstance(ref, dict) else "")
    return (f'<h2 id="probes">Probes</h2><p{cls} id="probe-verdict">{e(verdict.get("text", ""))}'
            f'{_made(probes, e)}</p>{ref_line}'
            '<table id="probe-table"><tr><th>probe</th><th>the judge is shown</th><th>a judge that sees gives</th>'
            f'<th>result</th><th>mean</th><th>rule</th></tr>{"".join(rows)}</table>')


def canary_line(canary: dict | None) -> str | None:
    """One sentence on the run's canary check, or None without one."""
    if not canary:
        return None
    changed = canary.get("changed") or []
    text = (f"Canary ({canary.get('file')}): {canary.get('n')} items rescored, mean absolute drift "
            f"{_num(canary.get('mean_abs_diff'))}, {len(changed)} changed verdict(s)")
    if changed:
        text += ": " + "; ".join(f"{c.get('editor')}/{c.get('item_id')} {_num(c.get('was'))} -> {_num(c.get('now'))} "
                                 f"({c.get('why')})" for c in changed[:10] if isinstance(c, dict))
    if canary.get("over"):
        text += f" (over --canary-max-drift {canary.get('max_drift')})"
    return text + "."
