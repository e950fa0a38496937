"""The ``rise`` protocol: RISEBench's own scorer (PhoenixZ810/RISEBench, gpt_eval.py and utils.py at
5f226519b25c005bb32fb83864bbd1845ab85c23; the scoring rule of ce8cba3, 2026-04-13), reproduced.

A stand-in checkout is written by each test: utils.py and gpt_eval.py in the upstream layout (the same
constant and function names) holding our own words, and a data_total.json whose records take every prompt
variant. The expected figures are worked out by hand below from gpt_eval.py's rules (its ``extract``,
``main``'s reading of the numbers, ``calculate_score``, ``calculate_completion`` and the means of
``main``). One test reads the real data_total.json from the local mirror when it is there.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from editjudge.benchmark.items import BenchmarkItem
from editjudge.protocols import rise_prompts as rp
from editjudge.protocols.base import ProtocolError
from editjudge.protocols.rise import RiseProtocol, final_score_numbers

MIRROR = Path("/work/.mirror/PhoenixZ810+RISEBench/repo")

# Our own words for each constant of utils.py, with the placeholders the upstream script fills.
WORDS = {
    "prompt_consist": "KEEP-A: is the rest unchanged after: {instruct}",
    "prompt_reasoning": "THINK-A: does it show {reference} after: {instruct}",
    "prompt_reasoning_w_input": "THINK-B: from the first picture, {reference} after: {instruct}",
    "prompt_generation": "LOOK-A: is the picture sharp and plausible",
    "prompt_spatial_ref": "PLACE-A: {reference} for: {instruct}",
    "prompt_spatial_ref_img": "PLACE-B: like the reference picture, for: {instruct}",
    "prompt_spatial_ref_w_input": "PLACE-C: from the first picture, {reference} for: {instruct}",
    "prompt_spatial_qual": "LOOK-B: blur and distortion",
    "prompt_spatial_cons": "KEEP-B: unchanged apart from: {instruct}",
    "prompt_logical_cons_ans": "KEEP-C: same style for {instruct}, answer {reference}",
    "prompt_logical_cons": "KEEP-D: same style for {instruct}",
    "prompt_logical_txt": "SOLVE-A: the answer is {reference}",
    "prompt_logical_img": "SOLVE-B: same solution as the first picture for {instruct}",
    "prompt_logical_img_wo_q": "SOLVE-C: are the two pictures the same {not formatted}",
}
COLOURS = {"src": (200, 10, 10), "ref": (10, 200, 10), "edit": (10, 10, 200)}


def write_checkout(root: Path, records: list[dict], weights=(0.3, 0.5, 0.2, 0.2, 0.8, 0.3, 0.7, 0.5),
                   completion_reads_free: bool = True) -> Path:
    """A stand-in RISEBench checkout: utils.py, gpt_eval.py (parsed, never run) and data/ with images."""
    (root / "data" / "imgs").mkdir(parents=True, exist_ok=True)
    lines = ["import os", "os.environ['RISE_STANDIN_RAN'] = '1'  # never run: parsed only"]
    lines += [f"{name} = {text!r}" for name, text in WORDS.items()]
    (root / "utils.py").write_text("\n".join(lines) + "\n")
    w = weights
    free = "row.get('consistency_free')" if completion_reads_free else "None"
    (root / "gpt_eval.py").write_text(f'''
import os
os.environ['RISE_STANDIN_RAN'] = '1'
subtask_dic = {{"Temp": ["Life Progression"], "Causal": ["State Transition"], "Logic": ["Puzzle Solving"]}}
def gpt_generate(inputs, model='gpt-4.1-2025-04-14', temperature=0, max_tokens=4096, image_size=768, **kw):
    raise RuntimeError
def calculate_score(row):
    return [{w[0]}, {w[1]}, {w[2]}, {w[3]}, {w[4]}, {w[5]}, {w[6]}, {w[7]}]
def calculate_completion(row):
    return {free}
''')
    src = Image.new("RGBA", (300, 200), COLOURS["src"] + (255,))
    src.putpixel((0, 0), (10, 20, 30, 0))  # transparent: the script drops alpha, it does not composite
    src.save(root / "data" / "imgs" / "src.png")
    Image.new("RGB", (40, 900), COLOURS["ref"]).save(root / "data" / "imgs" / "ref.png")
    (root / "data" / "data_total.json").write_text(json.dumps(records))
    return root


def rec(index, category, **fields):
    return {"index": index, "category": category, "instruction": f"do {index}", "image": "imgs/src.png", **fields}


# One record per prompt variant (and the special cases), with the answers given and the figures expected.
RECORDS = [
    rec("t1", "temporal_reasoning", reference="ripe", subtask="Life Progression"),
    rec("t2", "temporal_reasoning", reference="older", reasoning_img="x", subtask="Life Progression"),
    rec("t3", "temporal_reasoning", reference="wet", judge={"judge2": "stored: Final Score: 2"}),
    rec("c1", "causal_reasoning", reference="broken", subtask="State Transition"),
    rec("c2", "causal_reasoning", reference="melted"),
    rec("s1", "spatial_reasoning", reference="stacked", subtask="Unlisted"),
    rec("s2", "spatial_reasoning", reference_img="imgs/ref.png"),
    rec("s3", "spatial_reasoning", reference="turned", reasoning_img="x"),
    rec("l1", "logical_reasoning", reference_txt="seven"),
    rec("l2", "logical_reasoning", reference_img="imgs/ref.png", subtask="Puzzle Solving"),
    rec("l3", "logical_reasoning", reference_txt="nine"),
]
# item: (answers per ask, sub_scores C/R/VP, weighted score, complete), worked out from gpt_eval.py
CASES = {
    # 0.3*4 + 0.5*5 + 0.2*3
    "t1": ({"consistency": "**Final Score:** **4**", "reasoning": "Final score: 5", "quality": "FINAL SCORE: 3"},
           (4, 5, 3), 4.3, 0),
    "t2": ({"consistency": "Final Score: 5", "reasoning": "Final Score: 5", "quality": "Final Score: 5"}, (5, 5, 5), 5.0, 1),
    # judge2 comes from the record: 0.3*5 + 0.5*2 + 0.2*4
    "t3": ({"consistency": "Final Score: 5", "quality": "Final Score: 4"}, (5, 2, 4), 3.3, 0),
    # 0.3*5 + 0.5*1 + 0.2*5 = 3.0, halved since Reasoning is 1
    "c1": ({"consistency": "Final Score: 5", "reasoning": "Final Score: 1", "quality": "Final Score: 5"}, (5, 1, 5), 1.5, 0),
    # no "Final Score" number: the whole item is 'failed', counted 0 in the accuracy
    "c2": ({"consistency": "Final Score: 5", "reasoning": "Score: 4", "quality": "Final Score: 5"}, (None,) * 3, None, 0),
    # "Final Scores" (plural) is read by extract's second pattern: 0.3*3 + 0.5*4 + 0.2*2
    "s1": ({"consistency": "Final Score: 3", "reasoning": "final score:\n**4**", "quality": "Final Scores: 2"},
           (3, 4, 2), 3.3, 0),
    "s2": ({"consistency": "Final Score: 5", "reasoning": "Final Score: 5", "quality": "Final Score: 5"}, (5, 5, 5), 5.0, 1),
    # a failed request (None): the script stores a failure text, unreadable
    "s3": ({"consistency": None, "reasoning": "Final Score: 5", "quality": "Final Score: 5"}, (None,) * 3, None, 0),
    # 0/1 answers become 4*min(n,1)+1: C 5, R 1; 0.3*5 + 0.7*1 = 2.2, halved
    "l1": ({"consistency": "Final Score: 1", "reasoning": "Final Score: 0"}, (5, 1, None), 1.1, 0),
    "l2": ({"consistency": "**Final Score**: **1**", "reasoning": "Final Score: 1"}, (5, 5, None), 5.0, 1),
    # three numbers in all: read raw as C, R, VP (1, 0, 1): 0.3*1 + 0.7*0
    "l3": ({"consistency": "Final Score: 1", "reasoning": "Final Score: 0, 1"}, (1, 0, 1), 0.3, 0),
}


def item_of(record: dict, root: Path) -> BenchmarkItem:
    return BenchmarkItem(id=record["index"], category=record["category"], instruction=record["instruction"],
                         image=root / "data" / record["image"])


@pytest.fixture
def checkout(tmp_path):
    root = write_checkout(tmp_path / "RISEBench", RECORDS)
    Image.new("RGB", (1000, 500), COLOURS["edit"]).save(tmp_path / "edit.png")
    return root, tmp_path / "edit.png"


def colour(image) -> tuple:
    return image.convert("RGB").getpixel((image.width // 2, image.height // 2))


def test_each_prompt_variant_is_asked_with_the_scripts_text_and_images(checkout):
    root, edit = checkout
    protocol = RiseProtocol(root)
    assert "RISE_STANDIN_RAN" not in os.environ  # parsed, never imported
    asks = {r["index"]: protocol.asks(item_of(r, root), edit) for r in RECORDS}
    # (name, our words formatted, the first image's role or None), in the order the script asks
    expected = {
        "t1": [("consistency", "KEEP-A: is the rest unchanged after: do t1", "src"),
               ("reasoning", "THINK-A: does it show ripe after: do t1", None),
               ("quality", "LOOK-A: is the picture sharp and plausible", None)],
        "t2": [("consistency", "KEEP-A: is the rest unchanged after: do t2", "src"),
               ("reasoning", "THINK-B: from the first picture, older after: do t2", "src"),
               ("quality", "LOOK-A: is the picture sharp and plausible", None)],
        "t3": [("consistency", "KEEP-A: is the rest unchanged after: do t3", "src"),  # judge2 is stored
               ("quality", "LOOK-A: is the picture sharp and plausible", None)],
        "s1": [("consistency", "KEEP-B: unchanged apart from: do s1", "src"),
               ("reasoning", "PLACE-A: stacked for: do s1", None), ("quality", "LOOK-B: blur and distortion", None)],
        # the reference image replaces the source for consistency too
        "s2": [("consistency", "KEEP-B: unchanged apart from: do s2", "ref"),
               ("reasoning", "PLACE-B: like the reference picture, for: do s2", "ref"),
               ("quality", "LOOK-B: blur and distortion", None)],
        "s3": [("consistency", "KEEP-B: unchanged apart from: do s3", "src"),
               ("reasoning", "PLACE-C: from the first picture, turned for: do s3", "src"),
               ("quality", "LOOK-B: blur and distortion", None)],
        "l1": [("consistency", "KEEP-C: same style for do l1, answer seven", "src"),
               ("reasoning", "SOLVE-A: the answer is seven", None)],
        "l2": [("consistency", "KEEP-D: same style for do l2", "ref"),
               ("reasoning", "SOLVE-B: same solution as the first picture for do l2", "ref")],
    }
    for index, wanted in expected.items():
        got = [(a.name, a.user_prompt, None if a.first_image is None else
                next(k for k, c in COLOURS.items() if c == colour(a.first_image))) for a in asks[index]]
        assert got == wanted, index
        assert all(a.system_prompt == "" and colour(a.image) == COLOURS["edit"] for a in asks[index])
    # images as utils.encode_image_to_base64 prepares them: thumbnail((768, 768)), alpha dropped
    t1 = asks["t1"][0]
    assert t1.image.size == (768, 384) and t1.first_image.size == (300, 200)  # shrunk, never enlarged
    assert t1.first_image.mode == "RGB" and t1.first_image.getpixel((0, 0)) == (10, 20, 30)  # not white
    assert asks["s2"][0].first_image.size == (34, 768)  # 40x900 -> thumbnail's rounding


def test_the_openai_judge_sends_the_text_then_the_images_as_pillow_default_jpeg(checkout):
    """Through the real request builder (no network): what the configs' judge would send for an Ask."""
    import base64
    import io

    from editjudge.models.reward.openai_judge import OpenAIRewardModel

    root, edit = checkout
    ask = RiseProtocol(root).asks(item_of(RECORDS[7], root), edit)[1]  # s3 reasoning: source, then edit
    judge = OpenAIRewardModel(model="gpt-4.1-2025-04-14", image_format="jpeg", text_before_images=True,
                              temperature=0, max_new_tokens=4096, cache_dir=False)
    messages, _ = judge._messages(ask.image, ask.first_image, ask.system_prompt, ask.user_prompt)
    assert [m["role"] for m in messages] == ["user"]
    content = messages[0]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "image_url"] and content[0]["text"] == ask.user_prompt
    sent = []
    for part, image in zip(content[1:], (ask.first_image, ask.image)):
        data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG")  # utils.encode_image_to_base64: img.save(buf, format='JPEG')
        assert data == buffer.getvalue()
        sent.append(Image.open(io.BytesIO(data)).size)
    assert sent == [(300, 200), (768, 384)]


def test_answers_are_read_and_scored_as_gpt_eval_does(checkout):
    root, _ = checkout
    protocol = RiseProtocol(root)
    for r in RECORDS:
        answers, dims, score, complete = CASES[r["index"]]
        result = protocol.item_result(item_of(r, root), answers)
        got = tuple(result.sub_scores[d] for d in ("ApprConsistency", "Reasoning", "VisualPlausibility"))
        assert got == pytest.approx(dims) if None not in dims else got == dims, r["index"]
        assert result.score == (pytest.approx(score) if score is not None else None), r["index"]
        assert result.sub_scores["complete"] == complete, r["index"]
        assert (result.error is None) == (score is not None), (r["index"], result.error)
    # four numbers for a three-judgement item: the script's lists fall out of step (it stops there)
    odd = protocol.item_result(item_of(RECORDS[0], root), dict(CASES["t1"][0], quality="Final Score: 3, 4"))
    assert odd.score is None and "stops" in odd.error


def test_extract_reads_final_score_lines_as_the_script_does():
    assert final_score_numbers("**Final Score:** **4**") == [4]
    assert final_score_numbers("Final Score: 1-5 ... Final Score: 3") == [1]  # the first line with a number
    assert final_score_numbers("Final Score: **\nsee below. Final Score: 2") == [2]
    assert final_score_numbers("final score:\n\n3, 4") == [3, 4]
    assert final_score_numbers("Final Scores: 2") == [2]  # only through the plural pattern
    assert final_score_numbers("The score is 5") is None
    assert final_score_numbers("Final Scores: none") == []  # falsy: unreadable too


def summary_rows(protocol, root):
    rows = []
    for r in RECORDS:
        result = protocol.item_result(item_of(r, root), CASES[r["index"]][0])
        rows.append({"item_id": r["index"], "category": r["category"], "editor": "ed", "score": result.score,
                     "sub_scores": result.sub_scores, "answers": CASES[r["index"]][0]})
    return rows


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def test_summary_and_export_follow_gpt_eval_main(checkout, tmp_path):
    root, _ = checkout
    protocol = RiseProtocol(root)
    summary = protocol.summary(summary_rows(protocol, root)[::-1])  # any order: data_total.json's is used
    # main(): means over items with a score; accuracy over every item (failed ones count 0); 25 * (s - 1)
    # the headline (the leaderboard's "Overall (%)") is the accuracy in percent
    assert summary["overall"] == pytest.approx(100 * 3 / 11) and summary["accuracy"] == pytest.approx(3 / 11)
    assert summary["score_origin"] == pytest.approx(28.8 / 9)
    assert summary["score_percent"] == pytest.approx(25 * (28.8 / 9 - 1))
    assert summary["figures"]["Overall"] == pytest.approx([28.8 / 9, 25 * (28.8 / 9 - 1), 3 / 11])
    for label, prefix in (("Temporal", "t"), ("Causal", "c"), ("Spatial", "s"), ("Logical", "l")):
        cases = [c for k, c in CASES.items() if k.startswith(prefix)]
        part = summary["types"][f"{label.lower()}_reasoning"]
        assert part["score_origin"] == pytest.approx(mean([c[2] for c in cases]))
        assert part["accuracy"] == pytest.approx(mean([c[3] for c in cases]))
        assert part["score"] == pytest.approx(100 * part["accuracy"]) and part["n"] == len(cases)
        for i, dim in enumerate(("Consistency", "Reasoning", "Quality")[:2 if prefix == "l" else 3]):
            assert summary["figures"][f"{label}_{dim}"][0] == pytest.approx(mean([c[1][i] for c in cases]))
    assert summary["figures"]["Causal"] == pytest.approx([1.5, 12.5, 0.0])
    assert (summary["types"]["causal_reasoning"]["n_failed"], summary["types"]["spatial_reasoning"]["n_failed"]) == (1, 1)
    # subtasks: subtask_dic's order and prefixes; 'Unlisted' and items without one are left out
    subtasks = {k: v for k, v in summary["figures"].items() if "-" in k}
    assert list(subtasks) == ["Temp-Life Progression", "Causal-State Transition", "Logic-Puzzle Solving"]
    assert subtasks["Temp-Life Progression"] == pytest.approx([4.65, 91.25, 0.5])
    assert subtasks["Causal-State Transition"] == pytest.approx([1.5, 12.5, 0.0])
    assert subtasks["Logic-Puzzle Solving"] == pytest.approx([5.0, 100.0, 1.0])
    assert summary["n"] == 11 and summary["n_failed"] == 2 and summary["missing"] == []
    # rows without recorded figures (no edit, or asks that could not be made) are read from their answers
    bare = [dict(r, sub_scores={}, score=None) for r in summary_rows(protocol, root)]
    assert protocol.summary(bare) == summary
    no_edit = [dict(r, sub_scores={}, score=None, answers={}) if r["item_id"] == "t2" else r
               for r in summary_rows(protocol, root)]
    assert protocol.summary(no_edit)["accuracy"] == pytest.approx(2 / 11)  # counted, as failed

    score_csv, table_csv = protocol.export(summary_rows(protocol, root), tmp_path / "export")
    assert score_csv.name == "ed_judge.csv" and table_csv.name == "ed_judge_table.csv"
    lines = list(csv.reader(score_csv.open()))
    assert lines[0] == ["-", "Score-Origin", "Score-Percentage", "Accuracy"]
    assert [row[0] for row in lines[1:9]] == ["Overall", "Temporal", "Causal", "Spatial", "Logical", "Overall_Reasoning",
                                             "Overall_ApprConsistency", "Overall_VisualPlausibility_total"]
    assert lines[3] == ["Causal", "1.5", "12.5", "0.0"] and lines[6][3] == ""  # no accuracy for a dimension
    table = list(csv.DictReader(table_csv.open()))
    assert [t["index"] for t in table] == [r["index"] for r in RECORDS]
    c2 = table[4]
    assert (c2["match_log"], c2["score"], c2["complete"], c2["Reasoning"]) == ("failed", "", "0", "")
    assert table[2]["judge_reas"] == "stored: Final Score: 2" and table[8]["judge_qua"] == ""


def test_column_wide_fields_switch_prompts_and_weights_as_in_the_script(tmp_path):
    records = [rec("f1", "temporal_reasoning", reference="a", consistency_free=True),
               rec("n1", "temporal_reasoning", reference="b"),
               rec("w1", "logical_reasoning", reference_img="imgs/ref.png"),
               rec("w2", "logical_reasoning", reference_txt="c", reasoning_wo_ins=True)]
    root = write_checkout(tmp_path / "co", records)
    Image.new("RGB", (8, 8), COLOURS["edit"]).save(tmp_path / "e.png")
    protocol = RiseProtocol(root)
    f1, n1, w1 = (item_of(r, root) for r in records[:3])
    assert [a.name for a in protocol.asks(f1, tmp_path / "e.png")] == ["reasoning", "quality"]  # no consistency
    # reasoning_wo_ins on ANY record: the prompt without the question, sent as it is (not formatted)
    assert protocol.asks(w1, tmp_path / "e.png")[1].user_prompt == WORDS["prompt_logical_img_wo_q"]
    five = "Final Score: 5"
    free = protocol.item_result(f1, {"reasoning": five, "quality": five})
    assert (free.score, free.sub_scores["ApprConsistency"], free.sub_scores["complete"]) == (5.0, None, 1)  # April 2026
    # n1 has no consistency_free, but the column exists: calculate_score's test sees NaN, which is true,
    # so 0.2*VP + 0.8*R (5.0), not 0.3*1 + 0.5*5 + 0.2*5 (3.8); its completion still needs C == 5
    plain = protocol.item_result(n1, {"consistency": "Final Score: 1", "reasoning": five, "quality": five})
    assert (plain.score, plain.sub_scores["complete"]) == (5.0, 0)


def test_checkouts_the_rule_does_not_fit_are_configuration_errors(tmp_path):
    with pytest.raises(ProtocolError, match="not a RISEBench checkout"):
        RiseProtocol(tmp_path)
    old = write_checkout(tmp_path / "old", RECORDS, weights=(0.4, 0.4, 0.2, 0.4, 0.6, 0.1, 0.1, 0.1))
    with pytest.raises(ProtocolError, match="ce8cba3"):
        RiseProtocol(old)
    before_april = write_checkout(tmp_path / "feb", RECORDS, completion_reads_free=False)
    with pytest.raises(ProtocolError, match="completion without consistency_free"):
        RiseProtocol(before_april)
    broken = write_checkout(tmp_path / "bad", [rec("l9", "logical_reasoning"), rec("t9", "temporal_reasoning")])
    with pytest.raises(ProtocolError, match="2 records .*l9: a logical item needs reference_txt.*t9: field 'reference'"):
        RiseProtocol(broken)
    (tmp_path / "bad" / "data" / "data_total.json").write_text(json.dumps(RECORDS))
    (tmp_path / "bad" / "utils.py").write_text("prompt_consist = 'only one'\n")
    with pytest.raises(ProtocolError, match="lacks the prompt constants"):
        RiseProtocol(tmp_path / "bad")
    good = write_checkout(tmp_path / "good", RECORDS)
    protocol = RiseProtocol(good)
    with pytest.raises(ProtocolError, match="not in"):
        protocol.asks(BenchmarkItem(id="zz", category="temporal_reasoning", instruction="x", image=Path("x")), Path("y"))
    identity = protocol.identity()
    assert identity["version"].startswith("gpt_eval.py@ce8cba3") and set(identity["files"]) == {
        "utils.py", "gpt_eval.py", "data/data_total.json"}
    (good / "data" / "other.json").write_text(json.dumps(RECORDS[:2]))  # RISEBench-360's file, say
    other = RiseProtocol(good, data="data/other.json")
    assert other.order == ["t1", "t2"] and "data/other.json" in other.identity()["files"]
    assert protocol.judge_settings() == {"model": "gpt-4.1-2025-04-14", "temperature": 0, "max_tokens": 4096,
                                         "image_size": 768}


@pytest.mark.skipif(not MIRROR.is_dir() or shutil.which("git") is None,
                    reason=f"no local mirror of PhoenixZ810/RISEBench at {MIRROR}")
def test_the_real_risebench_64_data(tmp_path):
    """The released data/data_total.json (RISEBench-64) with the stand-in prompts: every item gets asks."""
    archive = subprocess.run(["git", f"--git-dir={MIRROR}", "archive", "HEAD", "data"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    records = json.loads((tmp_path / "data" / "data_total.json").read_text())
    write_checkout(tmp_path, records)  # our utils.py and gpt_eval.py beside the real data
    protocol = RiseProtocol(tmp_path)
    from editjudge.benchmark.rise import load_rise

    items = load_rise(tmp_path)
    assert len(items) == 64 and {i.category for i in items} == set(rp.CATEGORIES)
    variants, n_asks, two_images = {}, 0, 0
    for item in items:
        reasoning = [r.prompt for r in rp.plan(protocol.record(item.id), protocol.columns) if r.name == "reasoning"][0]
        variants[reasoning] = variants.get(reasoning, 0) + 1
        asks = protocol.asks(item, item.image)
        assert asks and all(max(a.image.size) <= 768 for a in asks)
        n_asks += len(asks)
        two_images += sum(a.first_image is not None for a in asks)
    assert variants == {"prompt_reasoning": 32, "prompt_spatial_ref": 16, "prompt_logical_img": 12,
                        "prompt_logical_txt": 4}
    assert (n_asks, two_images) == (48 * 3 + 16 * 2, 64 + 12)


def test_an_unreadable_edit_fails_that_item_only(checkout, tmp_path):
    from editjudge.protocols.rise import ItemProblem

    root, edit = checkout
    protocol = RiseProtocol(root)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ItemProblem, match="broken.png"):
        protocol.asks(item_of(RECORDS[0], root), broken)
    # an edit given as an open PIL image is prepared the same way, and left unchanged
    opened = Image.open(edit)
    asks = protocol.asks(item_of(RECORDS[0], root), opened)
    assert asks[0].image.size == (768, 384) and opened.size == (1000, 500)
