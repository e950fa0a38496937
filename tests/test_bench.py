"""The throughput bench runs end to end and writes what it promises (no figure about time is checked)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from editjudge.tools.make_tiny_models import build_tokenizer

BENCH = Path(__file__).resolve().parents[1] / "bench" / "reward_throughput.py"


@pytest.fixture(autouse=True)
def _logger_levels():
    """The bench is a script: its main() quiets the judge's logger for the whole process. Put it back,
    so that tests after these see the logging a run has."""
    import logging

    loggers = [logging.getLogger(name) for name in logging.root.manager.loggerDict if name.startswith("editjudge")]
    levels = {logger: logger.level for logger in loggers}
    yield
    for logger in [logging.getLogger(n) for n in logging.root.manager.loggerDict if n.startswith("editjudge")]:
        logger.setLevel(levels.get(logger, logging.NOTSET))


def load_bench():
    spec = importlib.util.spec_from_file_location("reward_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_writes_every_configuration(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "bench"
    assert bench.main(["--images", "24", "--repeats", "2", "--batch-sizes", "4", "--new-tokens", "3",
                       "--mixed-sides", "32,192", "--no-accuracy", "--no-openmp-level", "--out", str(out)]) == 0
    report = json.loads((out / "bench.json").read_text())
    rows = {row["config"]: row for row in report["rows"]}
    assert list(rows) == ["sequential", "bare recipe, batch 8", "batch 4", "batch 8", "batch auto", "logits, batch 8",
                          "bare recipe, batch 8, mixed", "bare recipe, batch 8, mixed, sorted", "batch 8, mixed",
                          "batch 8, mixed, no grouping", "batch 8, mixed, prefetch on"]
    for name, row in rows.items():
        assert len(row["all_seconds"]) == 2 and round(row["seconds"], 4) == min(row["all_seconds"]), name
        assert row["images_per_s"] > 0 and row["fallbacks"] == 0, name
        assert 0 < row["vision_share"] <= row["prefill_share"] and 0 < row["forward_share"] <= 1, name
    assert rows["sequential"]["speedup"] == 1.0
    assert rows["logits, batch 8"]["decode_tok_per_s"] != rows["logits, batch 8"]["decode_tok_per_s"]  # nan: no decode
    # Padding is counted, not timed: uniform images have none; grouping the mixed set removes most of it,
    # as sorting does for the bare recipe.
    assert rows["batch 8"]["padding_fraction"] == 0
    mixed = rows["bare recipe, batch 8, mixed"]["padding_fraction"]
    assert rows["batch 8, mixed, no grouping"]["padding_fraction"] == mixed > 0.1
    assert rows["batch 8, mixed"]["padding_fraction"] == rows["bare recipe, batch 8, mixed, sorted"]["padding_fraction"]
    assert rows["batch 8, mixed"]["padding_fraction"] < mixed / 2
    assert len(report["figures"]) == 4 and all(isinstance(f["met"], bool) for f in report["figures"].values())
    # The ceiling's FLOPs are counted on the real model: at least two per text-model weight per prompt token.
    bound = report["ceiling"]
    text = bench.model_config("small", build_tokenizer()).text_config
    layer = (text.hidden_size * (text.num_attention_heads + 2 * text.num_key_value_heads) * text.head_dim
             + text.num_attention_heads * text.head_dim * text.hidden_size + 3 * text.hidden_size * text.intermediate_size)
    prompt_tokens = 80  # the default prompts alone, before the image's tokens
    assert bound["flops_per_image"] > 2 * layer * text.num_hidden_layers * prompt_tokens
    assert bound["ceiling_images_per_s"] == pytest.approx(bound["matmul_peak_flops"] / bound["flops_per_image"])
    assert bound["logits_share_of_ceiling"] > 0
    with open(out / "bench.csv", newline="") as handle:
        assert [r["config"] for r in csv.DictReader(handle)] == list(rows)
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "figures (measured in this run" in printed and "sorting the mixed set by size saves" in printed
    assert "compute-bound ceiling: scoring one 64x64 image in logits mode is" in printed


def test_the_8b_preset_has_qwen3_vl_8b_shape():
    """Built on the meta device (no memory): Qwen3-VL-8B's 8.77B parameters less its 151,936-token
    embedding and output head (2 x 0.62B), which the bench swaps for the tiny tokenizer's vocabulary."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    config = load_bench().model_config("qwen3-vl-8b", build_tokenizer())
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(config)
    vision = sum(p.numel() for p in model.model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert 0.55e9 < vision < 0.6e9  # Qwen3-VL-8B's vision tower: ~0.58B
    assert 7.4e9 < total < 7.6e9
    assert config.text_config.rope_parameters["mrope_section"] == [24, 20, 20]


def test_bench_backends_option_runs_the_engines_named(tmp_path, capsys):
    """``--backends``: the same images through each engine named (here transformers alone; vLLM
    needs its own environment and is measured by hand, see the README)."""
    bench = load_bench()
    out = tmp_path / "backends"
    assert bench.main(["--backends", "hf", "--images", "4", "--repeats", "1", "--new-tokens", "2",
                       "--no-openmp-level", "--out", str(out)]) == 0
    report = json.loads((out / "backends.json").read_text())
    assert list(report["images_per_s"]) == ["hf"] and report["images_per_s"]["hf"] > 0
    assert report["ratios"]["hf"]["hf"] == 1.0
    assert "hf" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown"):
        bench.main(["--backends", "hf,tgi", "--out", str(out)])
