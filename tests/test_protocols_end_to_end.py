"""RISEBench and KRIS-Bench protocols end to end through ``main.py``: the figures editjudge reports equal
what the benchmarks' own scripts compute from the same answers.

The judge is our own OpenAI-compatible server on 127.0.0.1 (tests/protocol_fixtures.py ``FakeChat``)
whose answers are fixed by the request alone; the checkouts are the stand-ins of
tests/test_protocol_rise.py and tests/test_protocol_kris.py (our own words in the upstream layout). One
test runs RISEBench's real 64 items (from the local mirror) with the tiny transformers judge.

RISEBench's computation is restated below in our own code from ``gpt_eval.py`` (PhoenixZ810/RISEBench
at 5f226519b25c005bb32fb83864bbd1845ab85c23, the scoring rule of ce8cba3, 2026-04-13): ``eval_vanilla``'s
requests, ``extract``, ``main``'s reading of the numbers, ``calculate_score``, ``calculate_completion``
and ``main``'s means. KRIS-Bench's per-item records are tests/test_protocol_kris.py's ``EXPECTED`` (what
the real scripts wrote for those answer texts); its summary is restated as plain means here.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import re
import shutil
import subprocess
import time

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.protocol_fixtures import FakeChat, first_text
from tests.test_protocol_rise import MIRROR, RECORDS, WORDS, write_checkout
from tests.test_protocols import main_py

# ---------------------------------------------------------------------------------- RISEBench, restated

RISE_FILES = ("utils.py", "gpt_eval.py", "data/data_total.json")


def upstream_requests(record: dict, columns: set) -> list[tuple[str, str, str | None]]:
    """eval_vanilla: (judge key, prompt text, the field naming the first image or None) in the order it
    asks; answers stored in the record's ``judge`` are not asked. Our stand-in prompts are ``WORDS``."""
    cat, ins = record["category"], record["instruction"]
    has = lambda key: record.get(key) is not None  # noqa: E731  (pandas' not isna on a JSON field)
    first, two = "image", False
    if cat in ("temporal_reasoning", "causal_reasoning"):
        two = has("reasoning_img")
        reason = WORDS["prompt_reasoning_w_input" if two else "prompt_reasoning"].format(instruct=ins, reference=record["reference"])
        cons, qual = WORDS["prompt_consist"].format(instruct=ins), WORDS["prompt_generation"]
    elif cat == "spatial_reasoning":
        if has("reference_img"):
            two, first = True, "reference_img"
            reason = WORDS["prompt_spatial_ref_img"].format(instruct=ins)
        else:
            two = has("reasoning_img")
            reason = WORDS["prompt_spatial_ref_w_input" if two else "prompt_spatial_ref"].format(
                instruct=ins, reference=record["reference"])
        cons, qual = WORDS["prompt_spatial_cons"].format(instruct=ins), WORDS["prompt_spatial_qual"]
    else:
        qual = None
        if has("reference_txt"):
            cons = WORDS["prompt_logical_cons_ans"].format(instruct=ins, reference=record["reference_txt"])
            reason = WORDS["prompt_logical_txt"].format(instruct=ins, reference=record["reference_txt"])
        else:
            two, first = True, "reference_img"
            cons = WORDS["prompt_logical_cons"].format(instruct=ins)
            reason = (WORDS["prompt_logical_img_wo_q"] if "reasoning_wo_ins" in columns
                      else WORDS["prompt_logical_img"].format(instruct=ins))
    stored = record.get("judge") or {}
    wanted = [("judge1", cons, first), ("judge2", reason, first if two else None)]
    if qual is not None:
        wanted.append(("judge3", qual, None))
    return [w for w in wanted if w[0] not in stored]


def upstream_extract(answer: str) -> list[int] | None:
    """extract: the singular label's first captured run holding digits; failing that the plural label's
    (its result even when empty); None when the plural label is absent too."""
    for label in ("final score", "final scores"):
        runs = re.findall(r"\*?\*?" + label + r"\*?\*?:?\s*([\d*\s,\n]*)", answer, flags=re.IGNORECASE)
        numbers = next(([int(n) for n in re.findall(r"\d+", run)] for run in runs if re.search(r"\d", run)), [])
        if numbers:
            return numbers
        if label == "final scores":
            return numbers if runs else None


def upstream_row(record: dict, judges: dict) -> dict:
    """main's numbers for one item, then calculate_score and calculate_completion (NaN for empty)."""
    keys = ["judge1", "judge2"] + (["judge3"] if "judge3" in judges else [])
    read = [upstream_extract(judges[k]) for k in keys]
    nan = float("nan")
    c = r = vp = nan
    if all(read):
        numbers = sum(read, [])
        if len(numbers) == 3:
            c, r, vp = numbers
        else:
            assert len(numbers) == 2, numbers  # upstream would stop otherwise; our answers never do that
            c, r = 4 * min(numbers[0], 1) + 1, 4 * min(numbers[1], 1) + 1
    logical = record["category"] == "logical_reasoning"
    score = 0.3 * c + 0.7 * r if logical else 0.3 * c + 0.5 * r + 0.2 * vp
    if r == 1:
        score = max(score * 0.5, 1)
    complete = int(c == 5 and r == 5 and (logical or vp == 5))
    return {"C": c, "R": r, "VP": vp, "score": score, "complete": complete, "matched": all(read)}


def nanmean(values) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def upstream_figures(rows: dict[str, dict], records: list[dict], subtasks: dict) -> dict[str, tuple]:
    """main's means: name -> (Score-Origin, Score-Percentage, Accuracy or None)."""
    def triple(group, with_accuracy=True):
        s = nanmean([g["score"] for g in group])
        return (s, 25 * (s - 1), nanmean([g["complete"] for g in group]) if with_accuracy else None)

    def dim(group, name):
        s = nanmean([g[name] for g in group])
        return (s, 25 * (s - 1), None)

    every = [rows[r["index"]] for r in records]
    by = {label: [rows[r["index"]] for r in records if r["category"] == f"{label.lower()}_reasoning"]
          for label in ("Temporal", "Causal", "Spatial", "Logical")}
    figures = {"Overall": triple(every), **{label: triple(group) for label, group in by.items()},
               "Overall_Reasoning": dim(every, "R"), "Overall_ApprConsistency": dim(every, "C"),
               "Overall_VisualPlausibility_total": dim(every, "VP")}
    for label, group in by.items():
        for name, key in (("Reasoning", "R"), ("Consistency", "C"), ("Quality", "VP"))[:2 if label == "Logical" else 3]:
            figures[f"{label}_{name}"] = dim(group, key)
    for prefix, names in subtasks.items():
        for name in names:
            group = [rows[r["index"]] for r in records if r.get("subtask") == name]
            if group:
                figures[f"{prefix}-{name}"] = triple(group)
    return figures


def same(a, b) -> bool:
    """Equal figures (NaN / empty equal too; the sums' last bits may differ)."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or b == "" or (isinstance(b, float) and math.isnan(b))
    return b not in (None, "") and float(b) == pytest.approx(a, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------------------------- RISEBench: fake judge


SHAPES = ("**Final Score:** **{}**", "Looks right.\nFinal Score: {}", "final score:\n{}", "Final Scores: {}",
          "FINAL SCORE: **{}**")


def rise_answer(prompt: str) -> str:
    """Fixed by the prompt alone, in RISEBench's answer shapes: a logical prompt gets 0/1, the others 1-5;
    an item instruction "do c2" or "do s1" gets an unreadable reasoning answer, "do c1" a reasoning of 1."""
    h = hashlib.sha256(prompt.encode()).digest()
    if prompt.startswith(("THINK", "PLACE")) and ("do c2" in prompt or "do s1" in prompt):
        return f"Score: {1 + h[0] % 5} (no final line)"
    if prompt.startswith(("LOOK", "KEEP-A", "KEEP-B")) or any(f"do {k}" in prompt for k in ("t2", "s2", "l2")):
        value = 1 if prompt.startswith(("KEEP-C", "KEEP-D", "SOLVE")) else 5  # these items complete
    elif prompt.startswith("THINK") and "do c1" in prompt:
        value = 1  # Reasoning 1: the weighted score is halved
    elif prompt.startswith(("KEEP-C", "KEEP-D", "SOLVE")):
        value = h[0] % 2
    else:
        value = (1, 2, 3, 4, 5, 5)[h[0] % 6]
    return SHAPES[h[1] % len(SHAPES)].format(value)


def jpeg_size(part: dict) -> tuple[int, int]:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size


def test_risebench_end_to_end_equals_gpt_eval(tmp_path):
    root = write_checkout(tmp_path / "RISEBench", RECORDS)
    images = tmp_path / "outputs" / "my-editor" / "images"
    sizes = {}  # each item's edit has its own size: the requests' edit image tells the item
    for n, r in enumerate(RECORDS):
        folder = images / r["category"]
        folder.mkdir(parents=True, exist_ok=True)
        size = (1000, 500 + n) if n == 0 else (120 + 8 * n, 90)
        Image.new("RGB", size, (10, 10, 200)).save(folder / f"{r['index']}.png")
        sizes[(768, 384) if n == 0 else size] = r["index"]
    out = tmp_path / "out"
    with FakeChat(lambda body: rise_answer(first_text(body)), model="gpt-4.1-2025-04-14") as chat:
        main_py("--config", str(ROOT / "configs" / "rise_gpt41.yaml"), "--set", f"benchmark.path={root / RISE_FILES[2]}",
                "--set", f"editing.editors.0.image_dir={images}", "--set", f"output_dir={out}",
                "--set", f"reward_model.params.base_url={chat.url}", "--set", "reward_model.params.api_key_env=OPENAI_API_KEY",
                "--set", "reward_model.params.max_retries=0", "--set", "reward_model.params.max_concurrent=1",
                "--set", f"reward_model.params.protocol.dir={root}", "--export", "rise")
    columns = {k for r in RECORDS for k in r}
    expected = {r["index"]: upstream_requests(r, columns) for r in RECORDS}
    assert len(chat.bodies) == sum(map(len, expected.values())) == 29

    # The requests: one user turn, the prompt's text, then one or two JPEG images (the edit last), in
    # eval_vanilla's order within each item (judge1, judge2, judge3; upstream runs the items in parallel).
    seen: dict[str, list] = {}
    for body in chat.bodies:
        assert body["model"] == "gpt-4.1-2025-04-14" and body["temperature"] == 0 and body["max_tokens"] == 4096
        (message,) = body["messages"]
        text, *pictures = message["content"]
        assert message["role"] == "user" and text["type"] == "text"
        seen.setdefault(sizes[jpeg_size(pictures[-1])], []).append((text["text"], len(pictures)))
    answers = {}
    for r in RECORDS:
        wanted = expected[r["index"]]
        assert seen[r["index"]] == [(prompt, 1 if first is None else 2) for _, prompt, first in wanted], r["index"]
        answers[r["index"]] = {**(r.get("judge") or {}), **{key: rise_answer(prompt) for key, prompt, _ in wanted}}

    # Per item, as main, calculate_score and calculate_completion compute them from the same answers.
    rows = {k: upstream_row(r, answers[k]) for k, r in zip(expected, RECORDS)}
    assert {k for k, v in rows.items() if not v["matched"]} == {"c2", "s1"}  # the unreadable answers
    complete = {k for k, v in rows.items() if v["complete"]}
    assert {"t2", "s2", "l2"} <= complete and len(complete) < 9  # some complete, some not, among the read ones
    assert any(v["R"] == 1 and v["matched"] for v in rows.values())  # a halved score is among them
    records = {r["item_id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert set(records) == set(rows)  # none lost
    for key, row in rows.items():
        got = records[key]
        assert same(row["score"], got["score"]), (key, row, got)
        subs = got["sub_scores"]
        assert [same(row[a], subs[b]) for a, b in (("C", "ApprConsistency"), ("R", "Reasoning"),
                                                    ("VP", "VisualPlausibility"))] == [True] * 3, (key, row, subs)
        assert subs["complete"] == row["complete"] and (got["error"] is None) == row["matched"], key

    # Per category and overall: summary.json's protocol section and the export's csv files.
    script = (root / "gpt_eval.py").read_text()
    subtasks = json.loads(script.split("subtask_dic = ", 1)[1].split("\n", 1)[0])
    figures = upstream_figures(rows, RECORDS, subtasks)
    section = json.loads((out / "summary.json").read_text())["protocol"]
    mine = section["editors"]["my-editor"]
    assert same(100 * figures["Overall"][2], mine["overall"]) and same(figures["Overall"][0], mine["score_origin"])
    assert same(figures["Overall"][1], mine["score_percent"]) and mine["n"] == 11 and mine["n_failed"] == 2
    for label in ("Temporal", "Causal", "Spatial", "Logical"):
        part = mine["types"][f"{label.lower()}_reasoning"]
        assert [same(a, b) for a, b in zip(figures[label], (part["score_origin"], part["score_percent"], part["accuracy"]))] \
            == [True] * 3, label
    assert list(mine["figures"]) == list(figures)
    for name, values in figures.items():
        assert [same(a, b) for a, b in zip(values, mine["figures"][name])] == [True] * 3, name
    export = out / "export" / "rise" / "my-editor"
    lines = list(csv.reader((export / "my-editor_judge.csv").open()))
    assert lines[0] == ["-", "Score-Origin", "Score-Percentage", "Accuracy"]
    assert [row[0] for row in lines[1:]] == list(figures)
    for row in lines[1:]:
        assert [same(a, b) for a, b in zip(figures[row[0]], row[1:])] == [True] * 3, row
    table = {t["index"]: t for t in csv.DictReader((export / "my-editor_judge_table.csv").open())}
    for key, row in rows.items():
        assert table[key]["match_log"] == ("succeed" if row["matched"] else "failed")
        assert same(row["score"], table[key]["score"]) and int(table[key]["complete"]) == row["complete"]
        assert table[key]["judge_reas"] == answers[key]["judge2"]

    # The protocol and its files' SHA-256, in the summary and the report.
    digests = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in RISE_FILES}
    assert section["name"] == "rise" and section["files"] == digests
    report = (out / "report.md").read_text()
    assert "rise protocol" in report and all(d[:12] in report for d in digests.values())


# ---------------------------------------------------------------------------------- KRIS-Bench

# A request's kind, from the stand-in prompts' opening words (tests/test_protocol_kris.py's PROMPTS).
KRIS_KINDS = {"Judge what stayed": "consistency", "Judge how clean": "quality", "Judge whether": "instruction",
              "Request:": "dual", "Three views": "instruction"}
KRIS_METRICS = {"metrics_common.py": ("consistency", "instruction", "quality"),
                "metrics_knowledge.py": ("consistency", "instruction", "knowledge", "quality"),
                "metrics_view_change.py": ("consistency", "instruction", "quality")}


def kris_kind(prompt: str) -> str:
    return next(kind for start, kind in KRIS_KINDS.items() if prompt.startswith(start))


def kris_summary(expected: dict[str, dict], scripts: dict[str, str]) -> dict:
    """Per category: the mean of each 1-5 score over the records that have one (KRIS-Bench's scripts
    compute none: these are the means of its metrics.json values), how many have one, how many are null;
    the headline: the mean over the items whose every reproduced score is there of their scores' mean."""
    out = {}
    for category, records in expected.items():
        names = KRIS_METRICS[scripts[category]]
        part = {"items": len(records), "recorded": len(records)}
        for name in names:
            values = [r[f"{name}_score"] for r in records.values() if r[f"{name}_score"] is not None]
            part[name] = {"mean": sum(values) / len(values) if values else None, "n": len(values),
                          "unreadable": len(records) - len(values)}
        heads = [sum(r[f"{n}_score"] for n in names) / len(names) for r in records.values()
                 if all(r[f"{n}_score"] is not None for n in names)]
        part["score"] = {"mean": sum(heads) / len(heads) if heads else None, "n": len(heads)}
        out[category] = part
    return out


def test_kris_bench_end_to_end_equals_the_scripts(tmp_path):
    from tests.test_protocol_kris import ANNOTATIONS, ANSWERS, EXPECTED
    from tests.test_protocol_kris import write_checkout as write_kris

    root = write_kris(tmp_path / "Kris_Bench")
    shutil.rmtree(root / "KRIS_Bench" / "odd_abnormality_correction")  # no answers for it in ANSWERS
    view = root / "KRIS_Bench" / "viewpoint_change" / "annotation.json"  # item 12 (no true view): not in ANSWERS
    view.write_text(json.dumps({k: v for k, v in json.loads(view.read_text()).items() if k != "12"}))
    edits, sizes = tmp_path / "edits", {}
    for n, item in enumerate(ANSWERS):  # every source a real image; each edit its own size: it tells the item
        category, key = item.split("/")
        folder = root / "KRIS_Bench" / category
        Image.new("RGB", (64, 48), (30 * n, 90, 40)).save(folder / ANNOTATIONS[category][key]["ori_img"])
        Image.new("RGB", (50 + 6 * n, 40), (200, 20 * n, 60)).save((edits / category).mkdir(parents=True, exist_ok=True)
                                                                   or edits / category / f"{key}.png")
        sizes[(50 + 6 * n, 40)] = item
    Image.new("RGB", (64, 48), "white").save(root / "KRIS_Bench" / "viewpoint_change" / "8_gt.png")

    def edit_of(pictures: list):  # viewpoint_change's instruction request: source, edit, then the true view
        return pictures[1] if len(pictures) == 3 else pictures[-1]

    def answer(body):
        text, *pictures = body["messages"][0]["content"]
        return ANSWERS[sizes[jpeg_size(edit_of(pictures))]][kris_kind(text["text"])]

    out = tmp_path / "out"
    with FakeChat(answer, model="gpt-4o-2024-08-06") as chat:
        main_py("--config", str(ROOT / "configs" / "kris_gpt4o.yaml"), "--set", f"benchmark.path={root}",
                "--set", f"editing.editors.0.image_dir={edits}", "--set", f"output_dir={out}",
                "--set", f"reward_model.params.base_url={chat.url}", "--set", "reward_model.params.api_key_env=OPENAI_API_KEY",
                "--set", "reward_model.params.max_retries=0", "--set", "reward_model.params.max_concurrent=1",
                "--set", f"reward_model.params.protocol.dir={root}", "--export", "kris")

    # The requests: as the scripts send them, per item consistency (source, edit), instruction or the
    # knowledge scripts' dual request (source, edit), quality (the edit): model and max_tokens only.
    seen: dict[str, list] = {}
    for body in chat.bodies:
        assert set(body) == {"model", "messages", "max_tokens"} and body["max_tokens"] == 1000
        (message,) = body["messages"]
        text, *pictures = message["content"]
        assert message["role"] == "user" and text["type"] == "text"
        seen.setdefault(sizes[jpeg_size(edit_of(pictures))], []).append((kris_kind(text["text"]), len(pictures)))

    def shown(item: str, kind: str) -> int:  # the quality request the edit alone; viewpoint's instruction three
        return 1 if kind == "quality" else 3 if (item.startswith("viewpoint_change/") and kind == "instruction") else 2

    assert seen == {item: [(kind, shown(item, kind)) for kind in asked] for item, asked in ANSWERS.items()}

    # metrics.json per category: what the real scripts wrote for these answers.
    export = out / "export" / "kris" / "my-editor"
    assert sorted(p.parent.name for p in export.glob("*/metrics.json")) == sorted(EXPECTED)
    for category, records in EXPECTED.items():
        assert json.loads((export / category / "metrics.json").read_text(encoding="utf-8")) == records, category

    # The summary: per category and overall, the restated means of those records.
    section = json.loads((out / "summary.json").read_text())["protocol"]
    mine = section["editors"]["my-editor"]
    scripts = {c: s for s, cats in (("metrics_common.py", ["color_change", "anomaly_correction"]),
                                     ("metrics_knowledge.py", ["chemistry"]),
                                     ("metrics_view_change.py", ["viewpoint_change"])) for c in cats}
    wanted = kris_summary(EXPECTED, scripts)
    assert set(mine["categories"]) == set(wanted)
    for category, part in wanted.items():
        got = mine["categories"][category]
        assert got["script"] == scripts[category]
        for name, figure in part.items():
            if isinstance(figure, dict) and figure["mean"] is not None:
                assert got[name]["mean"] == pytest.approx(figure["mean"], rel=1e-12), (category, name)
                figure = dict(figure, mean=got[name]["mean"])
            assert got[name] == figure, (category, name)
    every = [r for records in EXPECTED.values() for r in records.values()]
    for name in ("consistency", "instruction", "knowledge", "quality"):
        values = [r[f"{name}_score"] for r in every if r.get(f"{name}_score") is not None]
        assert mine["overall"][name]["n"] == len(values)
        assert mine["overall"][name]["mean"] == (pytest.approx(sum(values) / len(values)) if values else None), name
    records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert sorted(r["item_id"] for r in records) == sorted(ANSWERS)  # none lost

    # The protocol and its files' SHA-256, in the summary and the report.
    files = section["files"]
    assert section["name"] == "kris" and {"utils/prompts.py", "metrics_common.py"} <= set(files)
    for name, digest in files.items():
        assert digest == hashlib.sha256((root / name).read_bytes()).hexdigest(), name
    report = (out / "report.md").read_text()
    assert "kris protocol" in report and all(d[:12] in report for d in files.values())
    cells = ["-" if wanted[c]["score"]["mean"] is None else f"{wanted[c]['score']['mean']:.2f}" for c in sorted(wanted)]
    assert "| my-editor | " + " | ".join(cells) + " | - | - |" in report  # per category; no single overall


# ---------------------------------------------------------------------------------- RISEBench-64, tiny judge


@pytest.mark.skipif(not MIRROR.is_dir() or shutil.which("git") is None,
                    reason=f"no local mirror of PhoenixZ810/RISEBench at {MIRROR}")
def test_the_real_risebench_64_items_with_the_tiny_judge(tmp_path, judge_path):
    """RISEBench's released data (64 items, their images) with the stand-in prompts, each edit a small copy
    of its source, judged by the tiny transformers judge through rise_qwen3vl.yaml: no item lost, every
    request eval_vanilla makes is made, and the figures are gpt_eval.py's from the answers recorded."""
    from editjudge.config import load_config
    from editjudge.pipeline import run

    archive = subprocess.run(["git", f"--git-dir={MIRROR}", "archive", "HEAD", "data"], capture_output=True, check=True)
    root = tmp_path / "RISEBench"
    root.mkdir()
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    records = json.loads((root / RISE_FILES[2]).read_text())
    write_checkout(root, records)  # our utils.py and gpt_eval.py beside the real data
    images = tmp_path / "outputs" / "my-editor" / "images"
    for r in records:  # the editor's outputs, in RISEBench's layout: the source, shrunk
        (images / r["category"]).mkdir(parents=True, exist_ok=True)
        with Image.open(root / "data" / r["image"]) as source:
            source.convert("RGB").resize((96, 96)).save(images / r["category"] / f"{r['index']}.png")
    config = load_config(ROOT / "configs" / "rise_qwen3vl.yaml", [
        f"benchmark.path={root / RISE_FILES[2]}", f"editing.editors.0.image_dir={images}", f"output_dir={tmp_path / 'out'}",
        f"reward_model.params.protocol.dir={root}", f"reward_model.params.model_path={judge_path}",
        "reward_model.devices=cpu", "reward_model.params.dtype=float32", "reward_model.params.max_new_tokens=8",
        "reward_model.params.batch_size=16", "reward_model.params.show_progress=false"])
    started = time.perf_counter()
    run(config, "all", export=["rise"])
    print(f"RISEBench-64 with the tiny judge: {time.perf_counter() - started:.1f} s")

    out = tmp_path / "out"
    got = {r["item_id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert len(got) == 64 and set(got) == {r["index"] for r in records}  # none lost
    names = {"judge1": "consistency", "judge2": "reasoning", "judge3": "quality"}
    columns = {k for r in records for k in r}
    variants: dict[str, int] = {}
    rows = {}
    for r in records:
        wanted = upstream_requests(r, columns)
        answers = got[r["index"]]["raw_outputs"]
        assert list(answers) == [names[key] for key, _, _ in wanted], r["index"]  # each request made, in order
        assert all(isinstance(text, str) for text in answers.values()), r["index"]
        for key, prompt, _ in wanted:
            variants[f"{names[key]} {prompt.split(':')[0]}"] = variants.get(f"{names[key]} {prompt.split(':')[0]}", 0) + 1
        rows[r["index"]] = upstream_row(r, {key: answers[names[key]] for key, _, _ in wanted})
        assert same(rows[r["index"]]["score"], got[r["index"]]["score"]), r["index"]
        assert got[r["index"]]["sub_scores"]["complete"] == rows[r["index"]]["complete"], r["index"]
    # the requests per prompt variant (our stand-in prompts' labels): 48 * 3 + 16 * 2 in all
    assert variants == {"consistency KEEP-A": 32, "reasoning THINK-A": 32, "quality LOOK-A": 32,
                        "consistency KEEP-B": 16, "reasoning PLACE-A": 16, "quality LOOK-B": 16,
                        "consistency KEEP-D": 12, "reasoning SOLVE-B": 12, "consistency KEEP-C": 4, "reasoning SOLVE-A": 4}
    mine = json.loads((out / "summary.json").read_text())["protocol"]["editors"]["my-editor"]
    figures = upstream_figures(rows, records, {})
    assert list(mine["figures"]) == list(figures) and mine["n"] == 64
    # the tiny judge answers in its own shape, not RISEBench's: gpt_eval.py would mark these 'failed' too
    assert mine["n_failed"] == sum(not row["matched"] for row in rows.values())
    assert all(got[k]["error"].startswith("unreadable") for k, row in rows.items() if not row["matched"])
    for name, values in figures.items():
        assert [same(a, b) for a, b in zip(values, mine["figures"][name])] == [True] * 3, name
    assert same(100 * figures["Overall"][2], mine["overall"])
    assert any("no subtask field" in note for note in mine["notes"])  # the real data has none
    lines = list(csv.reader((out / "export" / "rise" / "my-editor" / "my-editor_judge.csv").open()))
    assert [row[0] for row in lines[1:]] == list(figures)
    for row in lines[1:]:
        assert [same(a, b) for a, b in zip(figures[row[0]], row[1:])] == [True] * 3, row
