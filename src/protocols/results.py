"""A protocol's figures for the reports (``summary.json``'s ``protocol``) and its ``--export <name>`` files.

Both read the score records (``OUT/scores.jsonl`` lines, as ``editjudge.merge.read_scores`` gives them)
one editor at a time, as rows of ``{"item_id", "category", "editor", "score", "sub_scores", "answers",
"error"}``: ``answers`` is the answer text per ask name that the score stage recorded (``raw_outputs``).
"""

from __future__ import annotations

from pathlib import Path

from ..paths import safe_name
from .base import BenchmarkProtocol


def protocol_rows(records: list[dict], editor: str) -> list[dict]:
    """``editor``'s records as the rows ``BenchmarkProtocol.summary`` and ``export`` read."""
    return [{"item_id": r["item_id"], "category": r["category"], "editor": editor, "score": r.get("score"),
             "sub_scores": r.get("sub_scores") or {}, "answers": r.get("raw_outputs") or {}, "error": r.get("error")}
            for r in records if r["editor"] == editor]


def protocol_section(protocol: BenchmarkProtocol, records: list[dict]) -> dict:
    """``summary.json``'s ``protocol``: name, version, upstream files (their SHA-256) and, per editor, the
    protocol's own ``summary`` (per category and overall, as the upstream script computes them)."""
    identity = protocol.identity()
    editors = dict.fromkeys(r["editor"] for r in records)
    return {"name": identity["protocol"], "version": identity["version"], "files": identity["files"],
            "editors": {editor: protocol.summary(protocol_rows(records, editor)) for editor in editors}}


def export_protocol(protocol: BenchmarkProtocol, out: Path, records: list[dict]) -> list[Path]:
    """``--export <name>``: per editor, what the upstream scripts read, under
    ``OUT/export/<name>/<editor>/`` (``editjudge.paths.safe_name`` of the editor)."""
    written: list[Path] = []
    for editor in dict.fromkeys(r["editor"] for r in records):
        folder = Path(out) / "export" / protocol.name / safe_name(editor)
        written.extend(protocol.export(protocol_rows(records, editor), folder))
    return written
