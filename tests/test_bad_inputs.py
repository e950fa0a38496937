"""Hostile and malformed input through the whole pipeline, and the exact outcome of every item.

The corpus (tests/bad_inputs.py) runs through ``main.py`` with two editors: ``pre`` (precomputed
outputs, resized to their source) and ``ip2p`` (the tiny InstructPix2Pix pipeline, batched), and
the tiny judge comparing each edit with its source. Nothing in the corpus may stop the run, lose
another item's result, or become a score.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from editjudge.benchmark import MAX_INSTRUCTION_CHARS, BenchmarkError, load_benchmark
from editjudge.images import MAX_PIXELS, ImageLoadError, image_size, load_image
from editjudge.paths import safe_name
from tests.bad_inputs import (CASES, LONG_INSTRUCTION_CHARS, LONG_NAME, RTL_INSTRUCTION, EchoingJudge, build_corpus,
                               huge_header_png)
from tests.test_pipeline import lines, main_py

OK = None
# kind -> (outcome for "pre", outcome for "ip2p"): OK, or (failed_stage, text the error contains).
EXPECTED = {
    "plain": (OK, OK),
    "zero_byte": (("edit", "cannot identify image file"), ("edit", "cannot identify image file")),
    # The header is intact, so the precomputed output is matched to its size; the judge then fails
    # to decode the source it compares against.
    "truncated_png": (("score", "image file is truncated"), ("edit", "image file is truncated")),
    "truncated_jpeg": (("edit", "Truncated File Read"), ("edit", "Truncated File Read")),
    "text_as_png": (("edit", "cannot identify image file"), ("edit", "cannot identify image file")),
    "one_pixel": (OK, OK),
    "gray16": (OK, OK),
    "cmyk_jpeg": (OK, OK),
    "rgba": (OK, OK),
    "palette": (OK, OK),
    "animated_gif": (OK, OK),
    "exif_rotated": (OK, OK),
    "huge_header": (("edit", "image too large"), ("edit", "image too large")),
    "missing_file": (("edit", "missing image"), ("edit", "missing image")),
    "webp": (OK, OK),
    "dotdot_id": (OK, OK),
    "slash_id": (OK, OK),
    "illegal_chars_id": (OK, OK),
    "dotdot_category": (OK, OK),
    "empty_instruction": (("input", "InvalidItem: empty instruction"), ("input", "InvalidItem: empty instruction")),
    "blank_instruction": (("input", "InvalidItem: empty instruction"), ("input", "InvalidItem: empty instruction")),
    "long_instruction": (OK, OK),
    "rtl_unicode": (OK, OK),
    "html_in_text": (OK, OK),
    "formula_category": (OK, OK),
    "wrong_size_output": (OK, OK),
    "corrupt_output": (("edit", "image file is truncated"), OK),
    "no_output": (("edit", "no output for item"), OK),
    # issue #26: never opened for reading (no hang), each its item's failure
    "fifo_image": (("edit", "fifo_image.png is a FIFO (named pipe), not a regular file; only regular files are read"),
                   ("edit", "fifo_image.png is a FIFO (named pipe), not a regular file; only regular files are read")),
    "dev_zero_image": (("edit", "unusable image: /dev/zero is a character device, not a regular file"),
                       ("edit", "unusable image: /dev/zero is a character device, not a regular file")),
    "oversized_image": (("edit", "oversized_image.png is 536,870,913 bytes, over the limit of 536,870,912 for an "
                                 "input file"),
                        ("edit", "oversized_image.png is 536,870,913 bytes, over the limit of 536,870,912 for an "
                                 "input file")),
    "long_path_component": (("edit", f"{LONG_NAME}.png: File name too long"),
                            ("edit", f"{LONG_NAME}.png: File name too long")),
    "long_id": (OK, OK),  # the raw id is no file name; its safe name is
    "long_category": (OK, OK),
    "symlink_loop_output": (("edit", "symlink_loop_output.png: Too many levels of symbolic links"), OK),
    "nul_in_id": (("edit", "no output for item 'nul\\x00in\\x1bid'"), OK),
    # issue #26: by design (README: Security), read wherever they point, and shown in report.html
    "absolute_image": (OK, OK),
    "dotdot_image": (OK, OK),
    "symlink_image": (OK, OK),
}
EDITORS = ("pre", "ip2p")
TOP_LEVEL = {"config.resolved.yaml", "edits", "scores.jsonl", "summary.json", "summary.csv", "ranking.csv",
             "report.md", "scores_by_category.png", "report.html", ".parts", ".thumbnails"}


def corpus_config(folder: Path, judge_path: str, ip2p: str) -> str:
    data = {
        "benchmark": {"path": str(folder / "annotations.jsonl")},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "pre", "type": "precomputed", "image_dir": str(folder / "precomputed")},
            {"name": "ip2p", "type": "diffusers", "model_path": ip2p, "dtype": "float32", "batch_size": 4,
             "max_area": 4096, "params": {"num_inference_steps": 2}},
        ]},
        "reward_model": {"type": "qwen3_vl", "devices": ["cpu"], "params": {
            "model_path": judge_path, "dtype": "float32", "batch_size": 4, "max_new_tokens": 12,
            "compare_with_original": True, "show_progress": False}},
        "output_dir": str(folder / "out"),
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return str(path)


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory, judge_path, tiny_editors):
    folder = tmp_path_factory.mktemp("corpus") / "bench"  # one level down: "../" ids would land beside it
    build_corpus(folder)
    config = corpus_config(folder, judge_path, str(tiny_editors["instruct-pix2pix"]))
    result = main_py(config)
    return folder, config, result


def test_every_kind_is_covered():
    assert set(EXPECTED) == {case.kind for case in CASES}
    assert len(CASES) - 1 >= 20  # kinds of bad input, besides the plain control item


def test_the_run_finishes_with_the_exact_outcome_of_every_item(corpus_run):
    folder, _, result = corpus_run
    assert result.returncode == 0, result.stderr[-3000:]
    out = folder / "out"
    manifest, scores = lines(out / "edits" / "manifest.jsonl"), lines(out / "scores.jsonl")
    keys = [(editor, case.id) for editor in EDITORS for case in CASES]
    assert [(r["editor"], r["item_id"]) for r in manifest] == keys  # one line each: none lost, none doubled
    assert [(r["editor"], r["item_id"]) for r in scores] == keys
    by_key = {(r["editor"], r["item_id"]): r for r in scores}
    edits = {(r["editor"], r["item_id"]): r for r in manifest}
    for case in CASES:
        for editor, expected in zip(EDITORS, EXPECTED[case.kind]):
            record, edit = by_key[(editor, case.id)], edits[(editor, case.id)]
            where = (case.kind, editor, record["error"])
            if expected is OK:
                assert record["failed_stage"] is None and record["error"] is None, where
                assert 0 <= record["score"] <= 10 and record["raw_output"], where
                assert edit["image"] == f"edits/{editor}/{safe_name(case.id)}.png", where
                assert record["image_sha1"] == edit["sha1"], where
            else:
                stage, text = expected
                assert record["score"] is None and record["failed_stage"] == stage, where
                assert text in record["error"], where
                if stage in ("edit", "input"):
                    assert edit["image"] is None and text in edit["error"], where
    summary = json.loads((out / "summary.json").read_text())["editors"]
    for position, editor in enumerate(EDITORS):
        failed = sum(1 for outcomes in EXPECTED.values() if outcomes[position] is not OK)
        assert summary[editor]["overall"]["n_failed"] == failed
        assert summary[editor]["overall"]["n"] == len(CASES)


def test_images_are_normalised_as_documented(corpus_run):
    folder, _, _ = corpus_run
    out = folder / "out"
    edits = {(r["editor"], r["item_id"]): r for r in lines(out / "edits" / "manifest.jsonl")}

    def size(editor, item_id):
        with Image.open(out / edits[(editor, item_id)]["image"]) as image:
            return image.size

    # EXIF orientation is applied: stored 48x32, shown (and edited) 32x48; the precomputed 48x32
    # output is resized to the shown size, and the manifest says from what.
    assert size("ip2p", "exif_rotated") == size("pre", "exif_rotated") == (32, 48)
    assert edits[("pre", "exif_rotated")]["resized_from"] == [48, 32]
    assert edits[("pre", "wrong_size_output")]["resized_from"] == [24, 16]
    assert size("pre", "wrong_size_output") == (48, 32)
    assert "resized_from" not in edits[("pre", "plain")]
    assert size("ip2p", "one_pixel") == (1, 1) and size("ip2p", "animated_gif") == (40, 30)
    # Transparency is composited on white, not on black.
    rgba = load_image(folder / "images" / "rgba.png")
    assert rgba.getpixel((0, 0))[0] > 200 and rgba.mode == "RGB"


def test_long_instructions_are_cut_and_recorded(corpus_run):
    folder, _, _ = corpus_run
    items = {item.id: item for item in load_benchmark(folder / "annotations.jsonl")}
    long = items["long_instruction"]
    assert len(long.instruction) == MAX_INSTRUCTION_CHARS and long.instruction_truncated_from == LONG_INSTRUCTION_CHARS
    assert items["rtl_unicode_\u05d0\u0628"].instruction == RTL_INSTRUCTION  # passed on unchanged
    assert items["empty_instruction"].problem == "empty instruction" and items["plain"].problem is None
    for name in ("edits/manifest.jsonl", "scores.jsonl"):
        marked = {(r["editor"], r["item_id"]) for r in lines(folder / "out" / name) if "instruction_truncated_from" in r}
        assert marked == {(editor, "long_instruction") for editor in EDITORS}
    shorter = load_benchmark(folder / "annotations.jsonl", max_instruction_chars=10)
    assert [i.id for i in shorter if i.instruction_truncated_from] == [
        c.id for c in CASES if len(c.instruction) > 10 and c.instruction.strip()]


def test_nothing_lands_outside_the_output_folder(corpus_run):
    folder, _, _ = corpus_run
    out = folder / "out"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["bench"]
    assert sorted(p.name for p in folder.iterdir()) == ["annotations.jsonl", "config.yaml", "images", "out",
                                                       "precomputed"]
    assert {p.name for p in out.iterdir()} <= TOP_LEVEL
    assert not any(p.is_symlink() for p in out.rglob("*"))
    for editor, position in zip(EDITORS, range(2)):
        expected = {f"{safe_name(c.id)}.png" for c in CASES if EXPECTED[c.kind][position] in (OK,)
                    or EXPECTED[c.kind][position][0] == "score"}
        assert {p.name for p in (out / "edits" / editor).iterdir()} == expected
    assert all(re.fullmatch(r"[A-Za-z0-9._=-]+\.png", p.name) for p in (out / "edits").rglob("*.png"))


def test_the_report_shows_hostile_text_escaped_and_every_failure(corpus_run):
    folder, _, _ = corpus_run
    html = (folder / "out" / "report.html").read_text(encoding="utf-8")
    md = (folder / "out" / "report.md").read_text(encoding="utf-8")
    failed = sum(1 for outcomes in EXPECTED.values() for o in outcomes if o is not OK)
    assert f"## Failures ({failed})" in md
    assert '<script>document.title="pwned"</script>' not in html and "&lt;script&gt;document.title=" in html
    assert "<b>c</b>" not in html and "&lt;b&gt;c&lt;/b&gt;" in html
    assert f'<div class="instr" dir="auto">{RTL_INSTRUCTION}</div>' in html
    assert "invalid item: empty instruction" in html
    # Control characters in ids (NUL, ESC) are shown as visible escapes, never written raw.
    for report in (html, md):
        assert not set(report) & {"\x00", "\x1b", "\x7f"}
    assert "nul\\x00in\\x1bid" in html and "con:&lt;&gt;|?*&quot;\\\\x00" in html
    assert "| nul\\\\x00in\\\\x1bid |" in md  # the failures table: the backslash markdown-escaped
    assert f"(cut from {LONG_INSTRUCTION_CHARS:,} characters)" in html
    # Sources outside the benchmark folder (absolute, ../, a symlink) are read and shown, as documented.
    for item_id in ("absolute_image", "dotdot_image", "symlink_image"):
        card = html[html.index(f'<div class="id" dir="auto">{item_id}</div>'):]
        card = card[:card.index('<div class="card"')] if '<div class="card"' in card else card
        source = card[card.index('<div class="src">'):card.index("</div>", card.index('<div class="src">'))]
        assert '<img src="data:image/jpeg;base64,' in source and 'class="ph"' not in source, (item_id, source[:300])
    # A spreadsheet opening summary.csv sees the formula as text; summary.json keeps the name as it is.
    rows = list(csv.reader((folder / "out" / "summary.csv").open(encoding="utf-8")))
    assert ["pre", "'=HYPERLINK(\"http://evil.example\",\"x\")"] == rows[[r[1] for r in rows].index(
        "'=HYPERLINK(\"http://evil.example\",\"x\")")][:2]
    assert not any(cell.startswith("=") for row in rows for cell in row)
    summary = json.loads((folder / "out" / "summary.json").read_text())
    assert '=HYPERLINK("http://evil.example","x")' in summary["editors"]["pre"]["categories"]


def test_a_rerun_retries_failures_only_and_changes_nothing(corpus_run):
    """A rerun retries failed edits and scores (a fixed file is picked up), never invalid items, and a
    permanent failure comes out the same: every line and image is as before."""
    folder, config, _ = corpus_run
    out = folder / "out"
    before = {name: lines(out / name) for name in ("edits/manifest.jsonl", "scores.jsonl")}
    images = {p: p.read_bytes() for p in (out / "edits").rglob("*.png")}
    result = main_py(config)
    assert result.returncode == 0, result.stderr[-2000:]
    retried_edits = [c for c in CASES if EXPECTED[c.kind][0] is not OK and EXPECTED[c.kind][0][0] == "edit"]
    assert f"editor pre on cpu: {len(retried_edits)} of {len(CASES)} items to edit" in result.stderr
    assert f"scoring on cpu: 1 of {len(CASES) * len(EDITORS)} pairs to score" in result.stderr  # pre's truncated_png
    assert {name: lines(out / name) for name in before} == before
    assert {p: p.read_bytes() for p in (out / "edits").rglob("*.png")} == images


def test_whole_file_errors_name_the_file_and_line(tmp_path, judge_path, tiny_editors):
    folder = tmp_path / "bench"
    build_corpus(folder, [c for c in CASES if c.kind == "plain"])
    annotations = folder / "annotations.jsonl"
    good = annotations.read_text()
    config = corpus_config(folder, judge_path, str(tiny_editors["instruct-pix2pix"]))
    for text, message in [
        (good + good, f"{annotations}:2: duplicate id 'plain'"),
        (good + "{not json\n", f"{annotations}:2: not valid JSON"),
        (good + '{"id": "x", "category": "c", "image": "images/plain.png"}\n',
         f"{annotations}:2: missing or non-string field(s) ['instruction']"),
    ]:
        annotations.write_text(text)
        result = main_py(config)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert not (folder / "out").exists() and "loaded" not in result.stderr  # before any model or file


def test_image_limits_are_checked_before_decoding(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(huge_header_png(9000, 9000))  # 81M pixels: under Pillow's own error limit, over ours
    assert 9000 * 9000 > MAX_PIXELS
    for call in (load_image, image_size):
        with pytest.raises(ImageLoadError, match="header claims 9000x9000 .* refused before decoding"):
            call(huge)
    small = tmp_path / "small.png"
    small.write_bytes(huge_header_png(64, 8))
    assert image_size(small) == (64, 8)


def test_benchmark_errors_are_benchmark_errors(tmp_path):
    bad = tmp_path / "annotations.jsonl"
    bad.write_text('{"id": "a", "category": "c", "instruction": "x", "image": "a.png"}\n[1, 2]\n')
    with pytest.raises(BenchmarkError, match=r"annotations.jsonl:2: expected a JSON object"):
        load_benchmark(bad)


# ---------------------------------------------------------------- configuration files (issue #26)

ALIAS_BOMB = """\
benchmark: {path: BENCH}
output_dir: OUT
editing: {editors: [{name: p, type: precomputed, image_dir: IMAGES}]}
reward_model:
  type: qwen3_vl
  params:
    model_path: JUDGE
    extra: &a0 [x, x, x, x, x, x, x, x, x, x]
    more:
      b: &b [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
"""


def test_a_yaml_alias_bomb_is_refused_at_load_time_with_status_2(tmp_path, judge_path):
    import time

    from editjudge.config import MAX_YAML_NODES, ConfigError, load_config, safe_load_yaml

    build_corpus(tmp_path / "bench", [c for c in CASES if c.kind == "plain"])
    text = (ALIAS_BOMB.replace("BENCH", str(tmp_path / "bench" / "annotations.jsonl"))
            .replace("OUT", str(tmp_path / "out")).replace("IMAGES", str(tmp_path / "bench" / "precomputed"))
            .replace("JUDGE", judge_path))
    assert len(text.encode()) < 1000 and 10 ** 6 > MAX_YAML_NODES  # 10^6 values from under a kilobyte
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"YAML aliases expand too far: line 13: .* over 100,000 values"):
        load_config(config)
    assert time.monotonic() - started < 5
    result = main_py(str(config), timeout=60)
    assert result.returncode == 2 and "YAML aliases expand too far" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
    # Aliases that stay small load as yaml.safe_load loads them.
    small = "a: &x {k: [1, 2]}\nb: *x\nc: [*x, *x]\n"
    assert safe_load_yaml(small) == yaml.safe_load(small)
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        assert safe_load_yaml(path.read_text()) == yaml.safe_load(path.read_text()), path


def _plain_config(folder: Path, judge_path: str, **params) -> str:
    """The plain corpus item, the precomputed editor and the tiny judge with ``params`` added."""
    build_corpus(folder, [c for c in CASES if c.kind in ("plain", "one_pixel")])
    data = {"benchmark": {"path": str(folder / "annotations.jsonl")},
            "editing": {"devices": ["cpu"], "editors": [
                {"name": "pre", "type": "precomputed", "image_dir": str(folder / "precomputed")}]},
            "reward_model": {"type": "qwen3_vl", "devices": ["cpu"], "params": {
                "model_path": judge_path, "dtype": "float32", "batch_size": 4, "max_new_tokens": 12,
                "show_progress": False, **params}},
            "output_dir": str(folder / "out")}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return str(path)


def _rubric(combine: str) -> dict:
    from editjudge.models.reward.prompts import DEFAULT_USER_PROMPT

    return {"name": "r", "prompts": [{"name": "q", "user_prompt": DEFAULT_USER_PROMPT, "fields": ["score"]}],
            "combine": {"ratio": combine}, "score": "ratio"}


def test_a_combine_failing_at_run_time_fails_its_items_and_the_run_goes_on(tmp_path, judge_path):
    """As the server does: the item's error, the other fields kept, exit 0, scores.jsonl and reports written.
    The tiny judge answers an image's brightness: under 5 for the black output, over 5 for the white one,
    so ``sqrt(5 - score)`` fails on the white one alone."""
    config = _plain_config(tmp_path / "bench", judge_path, rubric=_rubric("sqrt(5 - score)"))
    Image.new("RGB", (48, 32), (0, 0, 0)).save(tmp_path / "bench" / "precomputed" / "plain.png")
    Image.new("RGB", (48, 32), (255, 255, 255)).save(tmp_path / "bench" / "precomputed" / "one_pixel.png")
    result = main_py(config)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "bench" / "out"
    dark, bright = lines(out / "scores.jsonl")
    assert (dark["item_id"], bright["item_id"]) == ("plain", "one_pixel")
    assert bright["score"] is None and bright["failed_stage"] == "score" and bright["sub_scores"]["ratio"] is None
    assert bright["sub_scores"]["score"] > 5
    assert bright["error"] == ("combine ratio: 'sqrt(5 - score)' failed for this item's values "
                               "(ValueError: math domain error)")
    assert dark["error"] is None and dark["score"] == dark["sub_scores"]["ratio"] > 0
    assert "## Failures (1)" in (out / "report.md").read_text() and (out / "report.html").exists()


def test_a_very_deep_combine_is_a_configuration_error_with_status_2(tmp_path, judge_path):
    config = _plain_config(tmp_path / "bench", judge_path, rubric=_rubric("1" + "+1" * 100_000))
    result = main_py(config, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "reward_model.params.rubric.combine.ratio: '1+1+1" in result.stderr
    assert "(200,001 characters) is over 1,000 characters" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bench" / "out").exists()


# ---------------------------------------------------------------- the judge API's key (issue #26)

KEY_ENV = "EDITJUDGE_ECHO_TEST_KEY"
KEY = "sk-echo/test+4f1c9a7e"  # "/" and "+" so that its URL-quoted form differs: sk-echo%2Ftest%2B4f1c9a7e


def _api_config(folder: Path, base_url: str) -> str:
    build_corpus(folder, [c for c in CASES if c.kind in ("plain", "one_pixel")])
    data = {"benchmark": {"path": str(folder / "annotations.jsonl")},
            "editing": {"devices": ["cpu"], "editors": [
                {"name": "pre", "type": "precomputed", "image_dir": str(folder / "precomputed")}]},
            "reward_model": {"type": "openai", "params": {
                "model": "m", "base_url": base_url, "api_key_env": KEY_ENV, "max_concurrent": 1,
                "max_retries": 1, "retry_backoff": 0.01, "batch_size": 2}},
            "output_dir": str(folder / "out")}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _no_key_anywhere(result, out: Path | None) -> None:
    quoted = "sk-echo%2Ftest%2B4f1c9a7e"
    for text in (result.stdout, result.stderr):
        assert KEY not in text and quoted not in text
    for path in (out.rglob("*") if out is not None and out.exists() else []):
        if path.is_file():
            data = path.read_bytes()
            assert KEY.encode() not in data and quoted.encode() not in data, path


def test_a_server_echoing_the_key_in_errors_never_gets_it_into_records_reports_or_the_log(tmp_path):
    with EchoingJudge() as judge:
        config = _api_config(tmp_path / "bench", judge.url + "/v1")
        result = main_py(config, "--log-level", "DEBUG", env={KEY_ENV: KEY}, timeout=120)
    assert judge.authorizations[0] == f"Bearer {KEY}"  # the key was sent, to the configured server only
    assert result.returncode == 1, result.stderr[-3000:]  # every pair failed: the job's usual status
    out = tmp_path / "bench" / "out"
    errors = sorted(r["error"] for r in lines(out / "scores.jsonl"))
    api = judge.url + "/v1/chat/completions"
    assert errors == [f"judge request failed: HTTP 400 from {api}: bad request from Bearer [REDACTED]",
                      f"judge request failed: HTTP 500 from {api}: upstream failed: Bearer%20[REDACTED] / Bearer "
                      "[REDACTED] (gave up after 2 tries)"]
    assert r"Bearer \[REDACTED\]" in (out / "report.md").read_text()  # markdown-escaped
    assert "Bearer [REDACTED]" in (out / "report.html").read_text()
    assert "retrying (1/1): HTTP 500" in result.stderr and "[REDACTED]" in result.stderr  # the run log, DEBUG
    _no_key_anywhere(result, out)


def test_a_401_echoing_the_key_at_the_preflight_is_redacted_on_stderr(tmp_path):
    with EchoingJudge(models="401") as judge:
        config = _api_config(tmp_path / "bench", judge.url + "/v1")
        result = main_py(config, env={KEY_ENV: KEY}, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"refused the API key from ${KEY_ENV} ({judge.url}/v1/models: HTTP 401 invalid key in "
            "'Bearer [REDACTED]')") in result.stderr
    assert len(judge.authorizations) == 1  # the preflight alone: no scoring request
    _no_key_anywhere(result, tmp_path / "bench" / "out")


def test_a_redirect_to_another_origin_is_refused_and_the_key_never_goes_there(tmp_path):
    from editjudge.models.reward.openai_judge import OpenAIRewardModel
    from editjudge.models.reward.remote import JudgeRedirectError

    with (EchoingJudge() as elsewhere,
          EchoingJudge(models="redirect", redirect_to=elsewhere.url + "/v1/models") as judge):
        config = _api_config(tmp_path / "bench", judge.url + "/v1")
        result = main_py(config, env={KEY_ENV: KEY}, timeout=120)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENV, KEY)
            with pytest.raises(JudgeRedirectError, match="another origin"):
                OpenAIRewardModel.from_config({"model": "m", "base_url": judge.url + "/v1", "api_key_env": KEY_ENV})
    assert result.returncode == 2, result.stderr[-3000:]
    assert (f"error: {judge.url}/v1/models answered HTTP 302 redirecting to {elsewhere.url}/v1/models, another "
            "origin (scheme, host or port); editjudge never sends credentials (an API key, a bearer token) to another "
            "origin") in result.stderr
    assert elsewhere.authorizations == []  # nothing reached the other origin, with or without the key
    assert judge.authorizations == [f"Bearer {KEY}"] * 2
    _no_key_anywhere(result, tmp_path / "bench" / "out")


def test_the_reward_client_never_sends_its_token_to_another_origin_nor_shows_it():
    from editjudge.client import RewardClient, RewardServerError
    from editjudge.models.reward.remote import JudgeRedirectError

    token = "client-token/4c2e+91"
    with EchoingJudge() as elsewhere, EchoingJudge(models="redirect", redirect_to=elsewhere.url + "/health") as judge:
        with pytest.raises(JudgeRedirectError, match="another origin"):
            RewardClient(judge.url, token=token, retries=0).health()
    assert judge.authorizations == [f"Bearer {token}"] and elsewhere.authorizations == []
    with EchoingJudge() as echo:
        with pytest.raises(RewardServerError) as caught:
            RewardClient(echo.url, token=token, retries=0).score([Image.new("RGB", (8, 8))], None, "x")
    assert str(caught.value) == "reward server answered 400: bad request from Bearer [REDACTED]"
