"""The rankings with their uncertainty, the Bradley-Terry strengths and the per-language numbers, as the
terminal table, report.md and report.html show them (from summary.json's ``ranking``,
``pairwise_ranking`` and ``languages``; the maths is in :mod:`editjudge.trust.rankings`,
:mod:`editjudge.trust.bradley_terry` and :mod:`editjudge.by_language`).

One set of rows feeds all three renderings, so that they cannot disagree. A rank interval is shown
widened to whole ranks (``rank_span``: a percentile of 1.5 shows as 1, of 2.4 as 3).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable

from .report_common import fmt

RANKING_NOTE = ("Ranking on the macro mean over the {n} common items (macro, common items); 95% intervals from "
                "{reps} bootstrap resamples of those items, the same drawn items for every editor, stratified by "
                "category (seed {seed}). P(first): share of resamples in which the editor ranks first (ties "
                "share it); rank 95%: the interval of its rank, widened to whole ranks.")
PAIRWISE_NOTE = ("Bradley-Terry strengths from {verdicts} pairwise verdicts on {items} items ({null} without a "
                 "verdict, left out); ties count half a win each way; {normalisation}; a strength twice "
                 "another's wins two times in three. 95% intervals: {used} of {reps} bootstrap resamples of items.")


def rank_span(interval: list) -> str:
    """``1–2``, ``3``: the rank interval widened to whole ranks; ``-`` when unknown."""
    low, high = interval
    if low is None:
        return "-"
    low, high = math.floor(low + 1e-9), math.ceil(high - 1e-9)
    return f"{low}" if low == high else f"{low}\u2013{high}"


def _interval(interval: list, digits: int = 2) -> str:
    low, high = interval
    return "-" if low is None else f"{low:.{digits}f}\u2013{high:.{digits}f}"  # 6.40–7.56 (an en dash)


def _rank(rank: float | None) -> str:
    return "-" if rank is None else f"{rank:g}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ordered(editors: dict) -> list[tuple[str, dict]]:
    """Best rank first; editors without one last, in their order."""
    return sorted(editors.items(), key=lambda kv: math.inf if kv[1]["rank"] is None else kv[1]["rank"])


def ranking_table(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the macro ranking, best first; None without one."""
    ranking = summary.get("ranking")
    if not ranking or not ranking["editors"]:
        return None
    header = ["rank", "editor", "macro, common items", "95% interval", "P(first)", "rank 95%"]
    rows = [[_rank(e["rank"]), name, fmt(e["macro"]), _interval(e["macro_interval"]), _p(e["p_first"]),
             rank_span(e["rank_interval"])] for name, e in _ordered(ranking["editors"])]
    return header, rows


def ranking_note(summary: dict) -> str:
    ranking = summary["ranking"]
    if not ranking["editors"]:
        return "No ranking: no item has a score from every editor."
    return RANKING_NOTE.format(n=ranking["n_items"], reps=ranking["reps"], seed=ranking["seed"])


def pairwise_table(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the Bradley-Terry strengths, best first; None without pairwise verdicts."""
    pairwise = summary.get("pairwise_ranking")
    if not pairwise or not pairwise.get("editors"):
        return None
    header = ["rank", "editor", "strength", "95% interval", "P(first)", "rank 95%", "wins / verdicts"]
    rows = [[_rank(e["rank"]), name, fmt(e["strength"]), _interval(e["strength_interval"]), _p(e["p_first"]),
             rank_span(e["rank_interval"]), f"{e['wins']:g} / {e['verdicts']}"]
            for name, e in _ordered(pairwise["editors"])]
    return header, rows


def pairwise_note(summary: dict) -> str:
    p = summary["pairwise_ranking"]
    if p.get("error"):
        return f"pairwise.jsonl not used: {p['error']}"
    text = PAIRWISE_NOTE.format(verdicts=p["n_verdicts"], items=p["n_items"], null=p["n_null"],
                                normalisation=p["normalisation"], used=p["n_resamples_used"], reps=p["reps"])
    if p.get("n_out_of_scope"):
        text += f" {p['n_out_of_scope']} verdict(s) on other editors or items than this report's are left out."
    return text + (f" {p['reason']}." if p.get("reason") else "")


def language_table(summary: dict) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows): per editor the macro mean in each language and combined; None for one language or none."""
    languages = summary.get("languages") or {}
    if len(languages) < 2:
        return None
    header = ["editor", *(f"{lang} ({data['n_items']} items)" for lang, data in languages.items()), "all"]
    rows = [[editor, *(fmt(data["editors"].get(editor, {}).get("overall", {}).get("macro")) for data in languages.values()),
             fmt(entry["overall"]["macro"])] for editor, entry in summary["editors"].items()]
    return header, rows


def language_category_tables(summary: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per language (when there are several): (language, header, rows) of editor x category means."""
    languages = summary.get("languages") or {}
    if len(languages) < 2:
        return []
    tables = []
    for lang, data in languages.items():
        categories = list(dict.fromkeys(c for e in data["editors"].values() for c in e["categories"]))
        rows = [[editor, *(fmt(e["categories"][c]["mean"]) if c in e["categories"] else "" for c in categories),
                 fmt(e["overall"]["macro"])] for editor, e in data["editors"].items()]
        tables.append((lang, ["editor", *categories, "macro"], rows))
    return tables


# ---------------------------------------------------------------------------------------- renderings


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Aligned plain-text lines: the editor column (second in rankings, first otherwise) left, numbers right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = header.index("editor")
    lines = ["  ".join(v.ljust(w) if i == left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return [line.rstrip() for line in lines]


def text_blocks(summary: dict) -> list[str]:
    """The terminal's ranking (and per-language) blocks, printed after the main table."""
    lines = []
    table = ranking_table(summary)
    if table:
        lines += ["", *text_table(*table), *textwrap.wrap(ranking_note(summary), 120)]
    table = pairwise_table(summary)
    if table:
        lines += ["", *text_table(*table), *textwrap.wrap(pairwise_note(summary), 120)]
    table = language_table(summary)
    if table:
        lines += ["", "macro mean per language:", *text_table(*table)]
    return lines


def markdown_sections(summary: dict, md: Callable[[object], str]) -> list[str]:
    """report.md's "Ranking", "Pairwise ranking" and "By language" sections; ``md`` escapes a cell."""
    def table(header, rows):
        return ["| " + " | ".join(md(h) for h in header) + " |", "|---" * len(header) + "|",
                *("| " + " | ".join(md(v) for v in row) + " |" for row in rows), ""]

    lines = []
    if summary.get("ranking"):
        lines += ["## Ranking", ""]
        found = ranking_table(summary)
        lines += (table(*found) if found else []) + [md(ranking_note(summary)), ""]
    if summary.get("pairwise_ranking"):
        lines += ["## Pairwise ranking (Bradley-Terry)", ""]
        found = pairwise_table(summary)
        lines += (table(*found) if found else []) + [md(pairwise_note(summary)), ""]
    found = language_table(summary)
    if found:
        lines += ["## By language", "", "Macro mean per language and over all items:", "", *table(*found)]
        for lang, header, rows in language_category_tables(summary):
            lines += [f"### {md(lang)}", "", *table(header, rows)]
    return lines


def html_sections(summary: dict, e: Callable[[object], str]) -> str:
    """report.html's ranking, pairwise and per-language tables; ``e`` escapes text."""
    def table(header, rows, ident=""):
        head = "".join(f"<th>{e(h)}</th>" for h in header)
        left = header.index("editor")
        cell = lambda i, v: f'<td class="t">{e(v)}</td>' if i == left else f"<td>{e(v)}</td>"  # noqa: E731
        body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
        return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'

    parts = []
    if summary.get("ranking"):
        found = ranking_table(summary)
        parts.append("<h2 id=\"ranking\">Ranking</h2>" + (table(*found, ' id="ranking-table"') if found else "")
                     + f"<p><small>{e(ranking_note(summary))}</small></p>")
    if summary.get("pairwise_ranking"):
        found = pairwise_table(summary)
        parts.append("<h2 id=\"pairwise\">Pairwise ranking (Bradley-Terry)</h2>"
                     + (table(*found, ' id="pairwise-table"') if found else "")
                     + f"<p><small>{e(pairwise_note(summary))}</small></p>")
    found = language_table(summary)
    if found:
        parts.append("<h2 id=\"languages\">By language</h2>" + table(*found, ' id="language-table"'))
        parts += [f"<h3>{e(lang)}</h3>" + table(header, rows) for lang, header, rows in language_category_tables(summary)]
    return "\n".join(parts)
