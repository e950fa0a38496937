"""Readers for ``editjudge agree``: people's labels and judges' verdicts and scores, as keyed dicts.

Pairwise files map a pair's key to a verdict; score files map an (item, editor) key to a score.

    read_pair_labels("genai-bench/gemini-1.5-pro/pairwise.jsonl")  # PairLabels(people, judge, ...)
    read_pair_verdicts("out/")                  # OUT/pairwise.jsonl: {(item, a, b): verdict or None}
    read_mos("mos.csv"), read_scores("out/")    # {(item, editor): float}, {(item, editor): Scored}

A verdict is one of ``VERDICTS`` ("A>B": the first edit is better, "B>A", "A=B=Good": both good,
"A=B=Bad": both bad) or None for a judge's unparseable answer. A pair's key is ``(item, a, b)``, a and
b the editors' names, or ``(item, None, None)`` where the labels do not name the editors (GenAI-Bench:
the item is the line's ``idx``). Files are JSON lines (one object a line) or CSV (by a ``.csv``
suffix). A people's label that cannot be read is an ``AgreeInputError`` naming the file and line:
people's labels are data, not a judge's answers, so nothing is guessed.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..jsonl import read_jsonl

VERDICTS = ("A>B", "B>A", "A=B=Good", "A=B=Bad")
TIES = ("A=B=Good", "A=B=Bad")
FLIPPED = {"A>B": "B>A", "B>A": "A>B", "A=B=Good": "A=B=Good", "A=B=Bad": "A=B=Bad", None: None}

# Accepted column names (lower case) of a generic labels file, in the order they are looked for.
ITEM_COLUMNS = ("item", "item_id", "idx", "id")
A_COLUMNS = ("a", "editor_a", "model_a")
B_COLUMNS = ("b", "editor_b", "model_b")
PREFERENCE_COLUMNS = ("preference", "human_vote", "vote", "label", "winner")
MOS_COLUMNS = ("mos", "mean_opinion_score")
EDITOR_COLUMNS = ("editor", "model")

# Accepted preference values (lower case, an enclosing [[ ]] removed): GenAI-Bench's vote types,
# its judge's verdict strings and plain words.
PREFERENCES = {
    **dict.fromkeys(("a", "a>b", "a>>b", "left", "leftvote"), "A>B"),
    **dict.fromkeys(("b", "b>a", "b>>a", "right", "rightvote"), "B>A"),
    **dict.fromkeys(("tie", "a=b=good", "tievote", "both_good"), "A=B=Good"),
    **dict.fromkeys(("both_bad", "a=b=bad", "bothbad_vote", "bothbad"), "A=B=Bad"),
}

# GenAI-Bench's judge verdicts, read as its inference.py ``parse_response`` reads them
# (TIGER-AI-Lab/GenAI-Bench, inference.py, commit 720a0dabe486e6bfbafd76648e40d0b69d2cf4bb): exact
# strings, ">>" counting as ">". Anything else is unparseable (wrong against every vote). Upstream also
# counts "[[A=B]]" right against either tie vote; that fits none of the four classes, so it is
# unparseable here (it occurs in none of the released image-editing files).
GENAI_JUDGE = {"[[A>B]]": "A>B", "[[A>>B]]": "A>B", "[[B>A]]": "B>A", "[[B>>A]]": "B>A",
               "[[A=B=Good]]": "A=B=Good", "[[A=B=Bad]]": "A=B=Bad"}


class AgreeInputError(ValueError):
    """An input of ``editjudge agree`` that cannot be read or does not fit the other (exit status 2)."""


PairKey = tuple[str, str | None, str | None]


@dataclass
class PairLabels:
    """People's pairwise labels; ``judge`` holds the verdicts the same file carries (GenAI-Bench), else None."""

    people: dict[PairKey, str]
    judge: dict[PairKey, str | None] | None = None
    source: str = "generic"          # "genai-bench" or "generic"
    named_editors: bool = False      # whether keys carry the editors (else (item, None, None))


@dataclass(frozen=True)
class Scored:
    category: str
    score: float | None               # None: the judge failed on this edit


@dataclass
class Rows:
    """The lines of a file as dicts with lower-case keys, each with its line number."""

    path: Path
    rows: list[tuple[int, dict]] = field(default_factory=list)

    def column(self, names: tuple[str, ...]) -> str | None:
        """The first of ``names`` that the first row has."""
        first = self.rows[0][1] if self.rows else {}
        return next((name for name in names if name in first), None)


def read_rows(path: str | Path, first_only: bool = False) -> Rows:
    """Every line of a JSON-lines or CSV file (``.csv``) as a dict with lower-case keys (``first_only``:
    the first line only, to tell what a file holds without reading a run's torn last line)."""
    path = Path(path)
    if not path.is_file():
        raise AgreeInputError(f"{path}: no such file")
    rows = Rows(path)
    try:
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    rows.rows.append((reader.line_num, {str(k).strip().lower(): v for k, v in row.items()}))
                    if first_only:
                        break
        else:
            for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if not line.strip():
                    continue
                if first_only and rows.rows:
                    break
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AgreeInputError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise AgreeInputError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
                rows.rows.append((number, {str(k).lower(): v for k, v in record.items()}))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AgreeInputError(f"{path}: cannot read it ({exc})") from None
    if not rows.rows:
        raise AgreeInputError(f"{path}: no lines")
    return rows


def _text(value, where: str, what: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, (dict, list)):
        raise AgreeInputError(f"{where}: no {what}")
    return str(value).strip()


def preference(value, where: str) -> str:
    """A person's vote as one of ``VERDICTS``; anything not in ``PREFERENCES`` is an error naming the line."""
    text = str(value).strip().lower() if value is not None else ""
    if text.startswith("[[") and text.endswith("]]"):
        text = text[2:-2]
    if text not in PREFERENCES:
        raise AgreeInputError(f"{where}: unknown vote {value!r} (accepted: A, B, tie, both_bad, A>B, B>A, "
                              f"A=B=Good, A=B=Bad, leftvote, rightvote, tievote, bothbad_vote)")
    return PREFERENCES[text]


def _put(table: dict, key, value, where: str) -> None:
    if key in table:
        raise AgreeInputError(f"{where}: {key_text(key)} appears twice (one label per pair or item)")
    table[key] = value


def key_text(key: tuple) -> str:
    item, *editors = key
    named = [e for e in editors if e is not None]
    return f"item {item!r}" + (f" ({' vs '.join(named)})" if named else "")


def read_pair_labels(path: str | Path) -> PairLabels:
    """People's pairwise labels: GenAI-Bench's ``pairwise.jsonl`` (``idx``, ``human_vote``, and its judge's
    ``model_vote``) or a generic file of item, [a, b,] preference (``ITEM_COLUMNS`` ... ``PREFERENCE_COLUMNS``)."""
    rows = read_rows(path)
    item_column, preference_column = rows.column(ITEM_COLUMNS), rows.column(PREFERENCE_COLUMNS)
    a_column, b_column = rows.column(A_COLUMNS), rows.column(B_COLUMNS)
    if item_column is None or preference_column is None:
        raise AgreeInputError(f"{rows.path}: a pairwise labels file needs an item column ({', '.join(ITEM_COLUMNS)}) "
                              f"and a preference column ({', '.join(PREFERENCE_COLUMNS)})")
    genai = "model_vote" in rows.rows[0][1] and preference_column == "human_vote"
    named = a_column is not None and b_column is not None
    labels = PairLabels({}, {} if genai else None, "genai-bench" if genai else "generic", named)
    for number, row in rows.rows:
        where = f"{rows.path}:{number}"
        item = _text(row.get(item_column), where, item_column)
        key = (item, _text(row.get(a_column), where, a_column), _text(row.get(b_column), where, b_column)) \
            if named else (item, None, None)
        _put(labels.people, key, preference(row.get(preference_column), where), where)
        if genai:
            vote = row.get("model_vote")
            labels.judge[key] = GENAI_JUDGE.get(vote.strip()) if isinstance(vote, str) else None
    return labels


def _run_file(path: str | Path, name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        if not (path / name).is_file():
            raise AgreeInputError(f"{path}: an output folder without {name}")
        return path / name
    if not path.is_file():
        raise AgreeInputError(f"{path}: no such file or folder")
    return path


def read_pair_verdicts(path: str | Path) -> dict[PairKey, str | None]:
    """An editjudge run's pairwise verdicts (OUT/pairwise.jsonl, or the folder): ``{(item, a, b): verdict}``,
    None for an unparseable answer; a verdict string outside ``VERDICTS`` is an error naming the line."""
    rows = read_rows(_run_file(path, "pairwise.jsonl"))
    verdicts: dict[PairKey, str | None] = {}
    for number, row in rows.rows:
        where = f"{rows.path}:{number}"
        missing = [k for k in ("item_id", "a", "b", "verdict") if k not in row]
        if missing:
            raise AgreeInputError(f"{where}: not a pairwise verdict (no {', '.join(missing)})")
        verdict = row["verdict"]
        if verdict is not None and verdict not in VERDICTS:
            raise AgreeInputError(f"{where}: unknown verdict {verdict!r} (expected one of {', '.join(VERDICTS)} or null)")
        key = (_text(row["item_id"], where, "item_id"), _text(row["a"], where, "a"), _text(row["b"], where, "b"))
        _put(verdicts, key, verdict, where)
    return verdicts


def _number(value, where: str, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AgreeInputError(f"{where}: {what} {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise AgreeInputError(f"{where}: {what} {value!r} is not a finite number")
    return number


def read_mos(path: str | Path) -> dict[tuple[str, str | None], float]:
    """Mean opinion scores: ``{(item, editor or None): mos}`` from item[, editor], mos columns."""
    rows = read_rows(path)
    item_column, mos_column, editor_column = rows.column(ITEM_COLUMNS), rows.column(MOS_COLUMNS), rows.column(EDITOR_COLUMNS)
    if item_column is None or mos_column is None:
        raise AgreeInputError(f"{rows.path}: a mean-opinion-score file needs an item column "
                              f"({', '.join(ITEM_COLUMNS)}) and a score column ({', '.join(MOS_COLUMNS)})")
    mos: dict[tuple[str, str | None], float] = {}
    for number, row in rows.rows:
        where = f"{rows.path}:{number}"
        editor = _text(row.get(editor_column), where, editor_column) if editor_column else None
        key = (_text(row.get(item_column), where, item_column), editor)
        _put(mos, key, _number(row.get(mos_column), where, mos_column), where)
    return mos


def read_scores(path: str | Path) -> dict[tuple[str, str], Scored]:
    """An editjudge run's scores (OUT/scores.jsonl, or the folder): ``{(item_id, editor): Scored}``."""
    file = _run_file(path, "scores.jsonl")
    scores: dict[tuple[str, str], Scored] = {}
    for number, record in enumerate(read_jsonl(file), start=1):
        where = f"{file}: record {number}"
        bad = [k for k in ("item_id", "category", "editor") if not isinstance(record.get(k), str)]
        if bad or "score" not in record:
            raise AgreeInputError(f"{where}: not a score record (missing {', '.join(bad or ['score'])})")
        score = record["score"]
        value = None if score is None else _number(score, where, "score")
        _put(scores, (record["item_id"], record["editor"]), Scored(record["category"], value), where)
    if not scores:
        raise AgreeInputError(f"{file}: no score records")
    return scores


def kind_of(path: str | Path) -> str:
    """What a first argument holds, by its content: "run" (a folder with scores.jsonl, or a scores file),
    "pairs" (people's pairwise labels), or "mos" (mean opinion scores)."""
    path = Path(path)
    if path.is_dir():
        _run_file(path, "scores.jsonl")
        return "run"
    first = read_rows(path, first_only=True).rows[0][1]
    if any(k in first for k in PREFERENCE_COLUMNS):
        return "pairs"
    if any(k in first for k in MOS_COLUMNS):
        return "mos"
    if {"item_id", "editor", "category", "score"} <= set(first):
        return "run"
    raise AgreeInputError(f"{path}: neither pairwise labels (a {'/'.join(PREFERENCE_COLUMNS)} column), mean opinion "
                          f"scores (a {'/'.join(MOS_COLUMNS)} column) nor an editjudge scores file "
                          f"(item_id, editor, category, score); its first line has {', '.join(sorted(first)) or 'nothing'}")
