"""A newcomer's first hour (issue 16): fail early, overrides, did-you-mean, readable reports and progress, the demo.

Most tests run ``python main.py`` with precomputed editors: no torch import is needed for the checks,
so they take about a second each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SAMPLE


def make_config(tmp_path: Path, judge: str, image_dir: Path, **extra) -> dict:
    data = {
        "benchmark": {"path": str(SAMPLE), "limit": 4},
        "editing": {"devices": ["cpu"], "editors": [
            {"name": "bright", "type": "precomputed", "image_dir": str(image_dir)}]},
        "reward_model": {"type": "qwen3_vl", "devices": ["cpu"], "params": {
            "model_path": judge, "batch_size": 2, "max_new_tokens": 12, "show_progress": False}},
        "output_dir": str(tmp_path / "out"),
    }
    for key, value in extra.items():
        data[key] = value
    return data


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def main_py(config: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", "--config", config, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


@pytest.fixture
def empty_dir(tmp_path) -> Path:
    folder = tmp_path / "no-outputs"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------------------- 1-4: fail early


def test_an_uncached_hub_judge_offline_stops_before_any_stage(tmp_path, judge_path, precomputed_dir):
    config = write(tmp_path, make_config(tmp_path, "nobody-here/no-such-judge", precomputed_dir))
    result = main_py(config, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2, result.stderr
    assert "reward_model.params.model_path" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "edits").exists()  # the edit stage never ran


def test_a_judge_folder_without_processor_files_is_a_config_error(tmp_path, judge_path, precomputed_dir):
    judge = tmp_path / "judge"
    shutil.copytree(judge_path, judge)
    (judge / "processor_config.json").unlink()
    (judge / "tokenizer.json").unlink()
    result = main_py(write(tmp_path, make_config(tmp_path, str(judge), precomputed_dir)))
    assert result.returncode == 2, result.stderr
    assert "preprocessor_config.json or processor_config.json" in result.stderr
    assert "tokenizer.json or vocab.json" in result.stderr
    assert not (tmp_path / "out" / "edits").exists()


@pytest.mark.parametrize("section", ["editing", "reward_model"])
def test_a_device_that_does_not_exist_is_a_config_error_in_both_sections(tmp_path, judge_path, precomputed_dir,
                                                                       section):
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last device this machine has
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data[section]["devices"] = [missing]
    result = main_py(write(tmp_path, data))
    assert result.returncode == 2, result.stderr
    assert f"{section}.devices: {missing} does not exist" in result.stderr
    assert not (tmp_path / "out" / "edits").exists()


def test_missing_device_problems_name_only_absent_devices():
    import torch

    from editjudge.parallel import device_problems

    count = torch.cuda.device_count()
    assert device_problems(["cpu", "cpu"], "x") == []
    assert device_problems([f"cuda:{i}" for i in range(count)] or ["cpu"], "x") == []
    assert device_problems(["cpu", f"cuda:{count + 1}"], "x") == [
        f"x: cuda:{count + 1} does not exist (this machine has " +
        (f"{count} CUDA device(s)" if count else "no CUDA device") + "; use cpu or auto)"]


def test_export_gedit_requirements_are_checked_before_the_run(tmp_path, judge_path, precomputed_dir):
    result = main_py(write(tmp_path, make_config(tmp_path, judge_path, precomputed_dir)), "--export", "gedit")
    assert result.returncode == 2, result.stderr
    assert "--export gedit needs sub-scores SC and PQ" in result.stderr and "rubric: viescore" in result.stderr
    assert "is a GEdit-Bench task type" in result.stderr  # the sample's categories are not GEdit's
    assert not (tmp_path / "out" / "edits").exists()


def test_stage_score_on_an_empty_output_folder_says_to_run_the_edit_stage(tmp_path, judge_path, precomputed_dir):
    result = main_py(write(tmp_path, make_config(tmp_path, judge_path, precomputed_dir)), "--stage", "score")
    assert result.returncode != 0
    assert "nothing to score" in result.stderr and "run the edit stage first" in result.stderr
    assert not (tmp_path / "out" / "scores.jsonl").exists()


def test_a_run_where_every_pair_failed_exits_non_zero_and_says_why(tmp_path, judge_path, empty_dir):
    result = main_py(write(tmp_path, make_config(tmp_path, judge_path, empty_dir)))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-3:]
    assert "every one of the 4 pairs failed" in "\n".join(last)
    assert any("4 x edit failed: FileNotFoundError: no output for item <item>" in line for line in last), last


# ------------------------------------------------------------------------------- 12-13: overrides, did you mean


def test_set_indexes_lists_by_position_or_by_editor_name(tmp_path, judge_path, precomputed_dir, empty_dir):
    from editjudge.config import ConfigError, load_config

    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["editing"]["editors"].append({"name": "other", "type": "precomputed", "image_dir": str(precomputed_dir)})
    path = write(tmp_path, data)
    config = load_config(path, [f"editing.editors.0.image_dir={empty_dir}", "editing.editors.other.batch_size=3"])
    assert [e.image_dir for e in config.editing.editors] == [str(empty_dir), str(precomputed_dir)]
    assert [e.batch_size for e in config.editing.editors] == [1, 3]
    with pytest.raises(ConfigError, match="has 2 entries, no entry 5"):
        load_config(path, ["editing.editors.5.batch_size=3"])
    with pytest.raises(ConfigError, match=r"no entry named 'nope' \(an index 0-1 or a name: bright, other\)"):
        load_config(path, ["editing.editors.nope.batch_size=3"])
    # Through the command line too.
    result = main_py(path, "--set", "editing.editors.bright.batch_size=0")
    assert result.returncode == 2 and "editing.editors[0].batch_size: must be at least 1" in result.stderr


def test_unknown_keys_suggest_the_closest_and_list_every_accepted_param(tmp_path, judge_path, precomputed_dir):
    import inspect

    from editjudge.models.reward.qwen3_vl import Qwen3VLRewardModel
    from editjudge.models.reward.settings import ACCEPTED_PARAMS, MODEL_PARAMS

    # The accepted list is the model's constructor arguments plus the keys the pipeline reads (rubric, ...).
    assert set(MODEL_PARAMS) == set(inspect.signature(Qwen3VLRewardModel.__init__).parameters) - {"self"}
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["reward_model"]["params"]["rubrik"] = "viescore"
    data["benchmark"]["limt"] = 3
    data["editing"]["editors"][0]["imagedir"] = "x"
    result = main_py(write(tmp_path, data))
    assert result.returncode == 2
    assert "reward_model.params.rubrik: unknown key; did you mean 'rubric'?" in result.stderr
    assert "benchmark.limt: unknown key; did you mean 'limit'?" in result.stderr
    assert "editing.editors[0].imagedir: unknown key; did you mean 'image_dir'?" in result.stderr
    line = next(line for line in result.stderr.splitlines() if "rubrik" in line)
    assert all(key in line for key in ACCEPTED_PARAMS) and "rubric" in ACCEPTED_PARAMS


# ------------------------------------------------------------------------------- 11: Markdown escaping


def test_report_md_escapes_for_markdown_not_html():
    from editjudge.report import _md

    assert _md("GEdit-Bench's \"quoted\" a|b <i>x</i> & *y*") == \
        "GEdit-Bench's \"quoted\" a\\|b \\<i\\>x\\</i\\> \\& \\*y\\*"


# ------------------------------------------------------------------------------- 10: SC and PQ beside the score


def _viescore_record(editor, category, item_id, sc, pq):
    score = None if sc is None else (sc * pq) ** 0.5
    return {"item_id": item_id, "category": category, "editor": editor, "score": score, "raw_output": "x",
            "error": None if sc is not None else "semantics: no score", "fallback": False,
            "failed_stage": None if sc is not None else "score", "image": None, "image_sha1": None,
            "settings": "s", "sub_scores": {"SC": sc, "PQ": pq}}


def test_sc_and_pq_show_beside_the_overall_score_in_table_md_and_html(tmp_path):
    from editjudge.benchmark import BenchmarkItem
    from editjudge.report import format_table, write_reports

    items = [BenchmarkItem(f"i{n}", cat, "make it red", tmp_path / f"i{n}.png", language="en")
             for n, cat in enumerate(["color_alter", "color_alter", "style_change"])]
    records = [_viescore_record("alpha", "color_alter", "i0", 4.0, 9.0), _viescore_record("alpha", "color_alter", "i1",
                                                                                         8.0, 7.0),
               _viescore_record("alpha", "style_change", "i2", 2.0, 5.0),
               _viescore_record("beta", "color_alter", "i0", 9.0, 9.0),
               _viescore_record("beta", "color_alter", "i1", None, None),
               _viescore_record("beta", "style_change", "i2", 1.0, 4.0)]
    # alpha: SC macro = mean(6.0, 2.0) = 4.00, PQ = mean(8.0, 5.0) = 6.50; beta: SC 5.00, PQ 6.50.
    table = format_table(records).splitlines()
    assert table[0].split()[-4:] == ["micro", "SC", "PQ", "failed"] and "macro" in table[0].split()
    assert "4.00  6.50" in table[2] and table[2].startswith("alpha")
    assert "5.00  6.50" in table[3] and table[3].startswith("beta")
    (tmp_path / "out").mkdir()
    paths = write_reports(tmp_path / "out", records, items)
    md = paths["report.md"].read_text()
    assert "| overall (micro) | SC (macro) | PQ (macro) | failure rate |" in md
    alpha_row = next(line for line in md.splitlines() if line.startswith("| alpha |"))
    assert " | 4.00 | 6.50 | " in alpha_row
    html = paths["report.html"].read_text()
    assert "<th>SC (macro)</th><th>PQ (macro)</th>" in html and "<td>4.00</td><td>6.50</td>" in html
    summary = json.loads(paths["summary.json"].read_text())
    assert summary["editors"]["beta"]["sub_score_overall"] == {"SC": 5.0, "PQ": 6.5}
    # A simple-rubric run has no such columns.
    simple = [dict(r, sub_scores=None) for r in records]
    assert "SC" not in format_table(simple).splitlines()[0]


# ------------------------------------------------------------------------------- terminal output through a pty


def run_in_pty(args: list[str], env: dict | None = None, timeout: float = 300) -> tuple[int, str]:
    """Run ``args`` with stdout and stderr on a pseudo-terminal (as a person sees it); (exit status, text)."""
    import pty
    import select
    import time

    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    process = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                               env=dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120", **(env or {})))
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        rc = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return rc, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


SPY = """
import builtins, sys
import main
from editjudge import cli
real_print = builtins.print
def spy(*args, **kw):
    if args and str(args[0]).startswith("editjudge plan"):
        loaded = [m for m in ("torch", "transformers", "diffusers") if m in sys.modules]
        real_print("[heavy modules loaded before the plan: %s]" % (loaded or "none"), file=sys.stderr)
    real_print(*args, **kw)
builtins.print = spy
sys.exit(cli.main(sys.argv[1:]))
"""


def test_the_plan_prints_first_before_torch_or_diffusers_load(tmp_path, judge_path, precomputed_dir, tiny_editors):
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["editing"]["editors"].append({"name": "ip2p", "type": "diffusers", "model_path": str(tiny_editors["instruct-pix2pix"]),
                                       "dtype": "float32", "batch_size": 2})
    rc, text = run_in_pty([sys.executable, "-c", SPY, "--config", write(tmp_path, data), "--stage", "report"])
    assert rc == 0, text
    lines = text.splitlines()
    assert lines[0] == "[heavy modules loaded before the plan: none]", text
    assert lines[1].startswith("editjudge plan (") and lines[2].startswith("  benchmark  ")
    assert "editor     bright: precomputed" in lines[3] and "editor     ip2p: diffusers" in lines[4]
    assert lines[5].startswith("  judge      qwen3_vl") and "rubric simple" in lines[5]
    assert lines[6] == "  devices    edit: cpu; score: cpu" and lines[7] == "  stages     report"
    assert "nothing yet" in lines[8]


# ------------------------------------------------------------------------------- 7: a demo whose scores mean something


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, judge_path, tiny_editors) -> tuple[subprocess.CompletedProcess, Path]:
    """``make demo``'s run: configs/demo.yaml as it is, its paths pointed at the tests' cache of the pinned
    tiny models and the demo outputs (make_demo_outputs)."""
    from editjudge.tools.make_demo_outputs import EDITORS, ensure_demo_outputs
    from tests.conftest import CACHE

    folders = ensure_demo_outputs(CACHE)
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    assert set(EDITORS) | {"tiny-instruct-pix2pix"} == {e["name"] for e in data["editing"]["editors"]}
    for editor in data["editing"]["editors"]:
        if editor["name"] in EDITORS:
            editor["image_dir"] = str(folders[editor["name"]])
        else:
            editor["model_path"] = str(tiny_editors["instruct-pix2pix"])
    data["benchmark"]["path"] = str(SAMPLE)
    data["reward_model"]["params"]["model_path"] = judge_path
    out = tmp_path_factory.mktemp("demo")
    data["output_dir"] = str(out / "out")
    result = main_py(write(out, data))
    assert result.returncode == 0, result.stderr[-3000:]
    return result, out / "out"


def _table(text: str, rows: int) -> list[str]:
    """The editors x categories table in ``text``: its header, its rule and ``rows`` rows."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("editor "))
    return [line.rstrip() for line in lines[start:start + 2 + rows]]


@pytest.mark.skipif(bool(os.environ.get("EDITJUDGE_TINY_SEED")),
                    reason="the README's numbers are the pinned models' (EDITJUDGE_TINY_SEED builds others)")
def test_the_demo_prints_the_readme_table(demo_run):
    """The README's "numbers you get" are what `make demo` prints: the pinned judge on the pinned editors."""
    result, out = demo_run
    editors = len(json.loads((out / "summary.json").read_text())["editors"])
    readme = (ROOT / "README.md").read_text().split("`make demo` prints", 1)[1].split("```", 2)[1]
    assert readme.strip("\n").count("\n") == 2 + editors - 1  # the README's block is the table alone
    assert _table(result.stdout, editors) == _table(readme, editors)
    # The pinned judge tells the dark outputs apart (make_demo_outputs spreads their brightness), so the
    # report's lowest scores are not one tie.
    md = (out / "report.md").read_text()
    lowest = [line for line in md.split("## Lowest scores")[1].splitlines() if line.startswith("| ") and "score" not in line]
    assert len({line.split("|")[1] for line in lowest}) > 1


def test_the_demo_ranks_its_editors_as_built(demo_run):
    """The demo config's precomputed editors (built by make_demo_outputs), scored by the real tiny judge."""
    from editjudge.report import _y_limits

    result, out = demo_run
    summary = json.loads((out / "summary.json").read_text())["editors"]
    macro = {name: entry["overall"]["macro"] for name, entry in summary.items()}
    # The order the editors were built in, for any judge that reads brightness (not one build's numbers).
    assert macro["good-edits"] > macro["uneven-edits"] > macro["bad-edits"], macro
    assert macro["bad-edits"] < macro["tiny-instruct-pix2pix"] <= macro["good-edits"], macro  # middling noise
    uneven = {c: st["mean"] for c, st in summary["uneven-edits"]["categories"].items()}
    assert min(uneven[c] for c in ("color_material", "add_object", "style")) > \
           max(uneven[c] for c in ("text", "remove_object", "physics_causality")) + 2, uneven
    md = (out / "report.md").read_text()
    lowest = [line for line in md.split("## Lowest scores")[1].splitlines() if line.startswith("| ") and "score" not in line]
    assert all("bad-edits" in line or "uneven-edits" in line for line in lowest[:10])
    assert "good-edits" in result.stdout.split("\n")[2]  # the table's first row
    # The chart's axis spans the judge's scale even when every score is 6.
    flat = {"editors": {"e": {"categories": {"c": {"min": 6.0, "max": 6.0}}}}}
    low, high = _y_limits(flat, (0, 10))
    assert low <= 0 and high >= 10


def test_the_demo_ranks_with_its_uncertainty_and_splits_its_languages(demo_run):
    """The real judge's scores on the demo: the bootstrap ranking and the per-language tables (issue 24)."""
    result, out = demo_run
    summary = json.loads((out / "summary.json").read_text())
    ranking = summary["ranking"]["editors"]
    assert ranking["good-edits"]["p_first"] == 1.0 and ranking["good-edits"]["rank_interval"] == [1.0, 1.0]
    assert ranking["bad-edits"]["rank_interval"] == [4.0, 4.0]  # the dark outputs are last in every resample
    for editor, entry in ranking.items():
        assert entry["macro"] == pytest.approx(summary["editors"][editor]["overall"]["macro_common"])
        assert entry["macro_interval"][0] <= entry["macro"] <= entry["macro_interval"][1]
    # The sample benchmark's items carry their language: 26 English, 2 Chinese instructions.
    assert {lang: data["n_items"] for lang, data in summary["languages"].items()} == {"en": 26, "zh": 2}
    assert "P(first)" in result.stdout and "macro mean per language:" in result.stdout
    assert "## Ranking" in (out / "report.md").read_text() and 'id="language-table"' in (out / "report.html").read_text()


# ------------------------------------------------------------------------------- 9: the official VIEScore prompts


def fake_viescore(folder: Path, marker: str = "ALPHA") -> Path:
    """A stand-in for GEdit-Bench's viescore folder: vie_prompts.py in the official layout, our own words."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "vie_prompts.py").write_text(f'''
import os  # never run: the file is parsed, not imported
os.environ["PWNED"] = "1"
_context_no_delimit = """Context {marker}: answer with JSON {{"score": [...], "reasoning": "..."}}."""
_prompts_0shot_two_image_edit_rule = """Rule: two pictures, the source then its edit."""
_prompts_0shot_tie_rule_SC = """Rate success and overediting as score = [a, b].
Editing instruction: <instruction>
"""
_prompts_0shot_rule_PQ = """Rate naturalness and artifacts as score = [a, b]."""
_unused = 3
''')
    return folder


def test_official_viescore_prompts_are_read_from_a_local_folder_and_reported(tmp_path, judge_path, precomputed_dir):
    from editjudge.models.reward.viescore_files import official_rubric

    folder = fake_viescore(tmp_path / "GEdit-Bench" / "viescore")
    rubric = official_rubric(tmp_path / "GEdit-Bench")  # the GEdit-Bench folder works too
    semantics, quality = rubric["prompts"]
    assert semantics["user_prompt"].startswith("Context ALPHA") and "Editing instruction: {instruction}" in \
        semantics["user_prompt"] and semantics["with_source"] and semantics["system_prompt"] == ""
    assert quality["user_prompt"].endswith("Rate naturalness and artifacts as score = [a, b].")
    assert "PWNED" not in os.environ

    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["benchmark"]["limit"] = 2
    data["reward_model"]["params"].update(rubric="viescore", viescore_prompts_dir=str(folder), max_new_tokens=24)
    config = write(tmp_path, data)
    result = main_py(config)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # the tiny judge may not answer these prompts
    assert "rubric viescore with the official prompts of" in result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["prompts"].startswith(f"official VIEScore prompts read from {folder / 'vie_prompts.py'}")
    assert "GPT-4.1 or Qwen2.5-VL-72B" in summary["prompts"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Prompts: official VIEScore prompts read from" in md
    assert "Prompts: official VIEScore prompts read from" in (tmp_path / "out" / "report.html").read_text()
    lines = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(set(r["raw_outputs"]) == {"semantics", "quality"} for r in lines)

    # The prompts' text is part of the resume key: other words in the files, every pair is scored again.
    fake_viescore(folder, marker="BETA")
    again = main_py(config, "--stage", "score")
    assert again.returncode in (0, 1), again.stderr[-3000:]
    assert "2 of 2 pairs to score" in again.stderr
    # The built-in wording says it is not the official text.
    del data["reward_model"]["params"]["viescore_prompts_dir"]
    data["output_dir"] = str(tmp_path / "out2")
    from editjudge.models.reward.viescore_files import prompts_note

    assert "not the official text" in prompts_note(data["reward_model"]["params"])


def test_viescore_prompts_dir_mistakes_are_config_errors(tmp_path, judge_path, precomputed_dir):
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["reward_model"]["params"]["viescore_prompts_dir"] = str(tmp_path)  # no vie_prompts.py; simple rubric
    result = main_py(write(tmp_path, data))
    assert result.returncode == 2
    assert "has no vie_prompts.py" in result.stderr and "need rubric: viescore" in result.stderr


def test_a_prompt_without_system_text_sends_no_system_message(judge):
    from PIL import Image

    messages = judge._build_messages(Image.new("RGB", (8, 8)), "", "hello")
    assert [m["role"] for m in messages] == ["user"]
    assert [m["role"] for m in judge._build_messages(Image.new("RGB", (8, 8)), "sys", "hello")] == ["system", "user"]


# ------------------------------------------------------------------------------- 14: offline, no network


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def _hub_config(tmp_path, precomputed_dir) -> str:
    data = make_config(tmp_path, "nobody-here/no-such-judge", precomputed_dir)
    data["editing"]["editors"].append({"name": "hub-editor", "type": "diffusers", "model_path": "nobody-here/no-such-editor"})
    return write(tmp_path, data)


def test_no_network_is_detected_once_and_said_for_every_hub_model(tmp_path, precomputed_dir):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = main_py(_hub_config(tmp_path, precomputed_dir), env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("WARNING editjudge.hub: no network: cannot reach http://127.0.0.1:") == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 2 and all("is not in the Hugging Face cache and there is no network" in p
                                      for p in problems), problems
    assert {p.split(":")[0] for p in problems} == {"  - editing.editors[1].model_path", "  - reward_model.params.model_path"}


def test_offline_problems_print_once_per_model(tmp_path, precomputed_dir):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = main_py(_hub_config(tmp_path, precomputed_dir), env=env, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    offline = [line for line in lines if "HF_HUB_OFFLINE" in line]
    assert len(offline) == 2 and len(set(offline)) == 2, result.stderr
    assert "no network" not in result.stderr  # offline is known: no probe


# ------------------------------------------------------------------------------- 8: the GEdit-Bench config


def test_the_gedit_config_is_valid_but_for_the_dataset_and_the_hub_models(monkeypatch):
    from huggingface_hub import constants

    from editjudge.config import ConfigError, load_config

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as info:
        load_config(ROOT / "configs" / "gedit.yaml")
    problems = info.value.problems
    assert any(p.startswith("benchmark.path:") and "GEdit-Bench does not exist" in p for p in problems), problems
    rest = [p for p in problems if not p.startswith("benchmark.path:")]
    assert len(rest) == 3 and all("HF_HUB_OFFLINE is set" in p for p in rest), rest  # 2 editors and the judge
    data = yaml.safe_load((ROOT / "configs" / "gedit.yaml").read_text())
    assert data["benchmark"]["format"] == "gedit" and data["reward_model"]["params"]["rubric"] == "viescore"


# ------------------------------------------------------------------------------- 5: progress a person can read


def test_one_bar_per_stage_fed_by_every_worker_with_logs_that_do_not_break_it(tmp_path, judge_path,
                                                                             precomputed_dir):
    import re

    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["benchmark"]["limit"] = 6
    data["editing"]["editors"].append({"name": "again", "type": "precomputed", "image_dir": str(precomputed_dir),
                                       "batch_size": 2})
    data["reward_model"]["params"].pop("show_progress")
    # Two spawned workers in each stage: their progress and their log lines reach the parent's bar.
    rc, text = run_in_pty([sys.executable, "main.py", "--config", write(tmp_path, data), "--devices", "cpu,cpu"])
    assert rc == 0, text[-3000:]
    segments = [s for s in re.split(r"[\r\n]", text) if s.strip()]
    bars = {stage: [s for s in segments if s.startswith(f"{stage}: ") and "|" in s] for stage in ("edit", "score")}
    # One bar per stage, in one unit, over both workers' items (2 editors x 6 items), ending complete.
    assert bars["edit"] and all(" edits " in s for s in bars["edit"]), segments
    assert "12/12 edits" in bars["edit"][-1] and "bright 6/6" in bars["edit"][-1] and "again 6/6" in bars["edit"][-1]
    assert bars["score"] and "12/12 pairs" in bars["score"][-1]
    # Per-editor totals once a stage ends.
    assert any("editjudge.progress: edit: 12 edits in" in s and "bright 6/6, again 6/6" in s for s in segments)
    assert any("editjudge.progress: score: 12 pairs in" in s for s in segments)
    # Every log line starts a line of its own (never glued onto a bar), workers' lines included.
    logs = [s for s in segments if re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING|ERROR)", s)]
    assert logs and all(re.match(r"\d{4}-\d\d-\d\d ", s) for s in logs), [s for s in logs if not s[:1].isdigit()]
    assert any("[rank 1] " in s for s in logs)  # a spawned worker's line, written by the parent
    # No model-loading bars, and the judge's own bar is replaced by the stage's.
    assert "Loading weights" not in text and "scoring:" not in text


def test_batch_lines_name_items_not_positions(tmp_path, judge_path, precomputed_dir):
    data = make_config(tmp_path, judge_path, precomputed_dir)
    data["editing"]["editors"][0]["batch_size"] = 2
    result = main_py(write(tmp_path, data), "--log-level", "DEBUG")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "editor bright: edited color_material_001, add_object_001 (2 items, 0 failed)" in result.stderr
    assert "processed batch bright/color_material_001, bright/add_object_001" in result.stderr
    assert "processed batch 0-" not in result.stderr
