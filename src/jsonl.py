"""JSON-lines files that survive being killed mid-write.

Writers append whole lines and flush + fsync after each batch; readers skip a torn last line
(the one a killed writer may leave) and report it, so the work behind it is redone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from .files import write_atomic

logger = logging.getLogger(__name__)


def read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON object line of ``path`` ([] when it does not exist)."""
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            where = "torn last line" if number >= len(lines) - 1 else "unreadable line"
            logger.warning("%s:%d: %s skipped; its work will be redone", path, number, where)
            continue
        records.append(record)
    return records


def _durable(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append ``records`` as lines, then flush and fsync."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if not text:
        return
    with open(path, "a", encoding="utf-8") as f:
        # A killed writer can leave a line without its newline; start ours on a fresh line.
        if f.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    text = "\n" + text
        f.write(text)
        _durable(f)


def write_jsonl_atomic(path: Path, records: Iterable[dict]) -> None:
    """Replace ``path`` with ``records`` in one step (write a temporary file, fsync, rename)."""
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), durable=True)
