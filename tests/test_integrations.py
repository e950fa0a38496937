"""Trainer integrations, each called exactly as its trainer calls it (tests/integration_fixtures.py
names the upstream file and commit each call was read from)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editjudge.client import RewardScoringError

from .integration_fixtures import (FakeRewardServer, build_reward_table, flow_grpo_epoch, k_repeat_batches,
                                   pixel_score)

TOKEN = "integ-token-8c1f"
INSTRUCTIONS = ["make the sky red", "add a hat", "turn it to night", "remove the car", "paint it blue"]


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A Flow-GRPO edit dataset folder: images/ with one source per prompt, sizes of their own."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(len(INSTRUCTIONS)):
        pixels = rng.integers(0, 256, (24 + 2 * i, 20 + i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"src_{i}.png")
    return root


@pytest.fixture
def env(monkeypatch, dataset):
    with FakeRewardServer(token=TOKEN) as server:
        monkeypatch.setenv("EDITJUDGE_URL", server.url)
        monkeypatch.setenv("EDITJUDGE_DATASET_ROOT", str(dataset))
        monkeypatch.setenv("EDITJUDGE_SERVER_TOKEN", TOKEN)
        monkeypatch.setenv("EDITJUDGE_RETRIES", "0")
        yield server


def _rank_batches(replicas=2, batch_size=3, k=4, m=3, seed=0):
    """Each rank's batches as the trainer hands them to the reward function: a float NCHW tensor in
    [0, 1] (the edits), the instructions, metadata with the source's path, and ref_images (here a
    decoy: the edit-plus script's is the second condition image, not the source)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out = []
    for rank in range(replicas):
        batches = []
        for indices in k_repeat_batches(len(INSTRUCTIONS), batch_size, k, m, replicas, rank, seed):
            images = torch.rand(len(indices), 3, 16, 16, generator=generator)
            metadata = [{"prompt": INSTRUCTIONS[i], "image": f"images/src_{i}.png"} for i in indices]
            decoys = [Image.new("RGB", (8, 8), (255, 0, 0))] * len(indices)
            batches.append((images, [INSTRUCTIONS[i] for i in indices], metadata, decoys))
        out.append(batches)
    return out


def _expected_scores(rank_batches, root: Path) -> list[float]:
    scores = []
    for batches in rank_batches:
        for images, _, metadata, _ in batches:
            for image, meta in zip(images, metadata):
                edited = (image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
                scores.append(pixel_score(edited, np.asarray(Image.open(root / meta["image"]).convert("RGB"))))
    return scores


@pytest.mark.parametrize("global_std", [False, True])
def test_flow_grpo_multi_score_over_two_ranks(env, dataset, global_std):
    from editjudge.integrations import flow_grpo

    ranks = _rank_batches()
    reward_fn = flow_grpo.multi_score("cuda:0", {"editjudge": 0.5})
    gathered, advantages = flow_grpo_epoch(reward_fn, ranks, global_std=global_std)
    # What the server received: each source byte for byte as the file (pixel for pixel), the edit as
    # the tensor's pixels, the instruction; never the decoy ref_images.
    sent = [(meta, image, prompt) for batches in ranks for images, prompts, metadata, _ in batches
            for meta, image, prompt in zip(metadata, images, prompts)]
    assert len(env.items) == len(sent) == 12  # lcm(k * m, 2 ranks * 3) = 12: two batches a rank
    for got, (meta, image, prompt) in zip(env.items, sent):
        path = dataset / meta["image"]
        assert got["source_bytes"] == path.read_bytes()
        assert np.array_equal(got["source"], np.asarray(Image.open(path).convert("RGB")))
        assert np.array_equal(got["edited"], (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        assert got["instruction"] == prompt
    expected = np.array(_expected_scores(ranks, dataset), dtype=np.float32)
    assert np.allclose(gathered["editjudge"], expected) and np.allclose(gathered["ori_avg"], 0.5 * expected)
    # The trainer's normalisation of the gathered scores, computed here directly from the expected scores.
    prompts = [p for batches in ranks for _, ps, _, _ in batches for p in ps]
    direct = np.zeros(len(expected))
    for prompt in set(prompts):
        rows = [i for i, p in enumerate(prompts) if p == prompt]
        group = 0.5 * expected[rows].astype(np.float64)
        std = np.std(0.5 * expected) if global_std else np.std(group)
        direct[rows] = (group - group.mean()) / (std + 1e-4)
    assert len({p for p in prompts}) == 3 and all(prompts.count(p) == 4 for p in set(prompts))
    assert {p for b in ranks[0] for p in b[1]} & {p for b in ranks[1] for p in b[1]}  # groups span both ranks
    for rank, rows in enumerate((slice(0, 6), slice(6, 12))):
        assert advantages[rank].shape == (6, 2)
        assert np.allclose(advantages[rank][:, 0], direct[rows], atol=1e-4)
        assert np.allclose(advantages[rank][:, 1], advantages[rank][:, 0])


def test_flow_grpo_table_entry_is_built_and_called_as_the_trainer_does(env, dataset):
    from editjudge.integrations.flow_grpo import editjudge_score

    fns = build_reward_table({"editjudge": editjudge_score}, {"editjudge": 1.0})
    images, prompts, metadata, _ = _rank_batches()[0][0]
    scores, _ = fns["editjudge"](images, prompts, metadata)
    assert scores.dtype == np.float32
    assert scores.tolist() == pytest.approx(_expected_scores([[(images, prompts, metadata, None)]], dataset))
    env.fail_ids.add(1)
    with pytest.raises(RewardScoringError, match="item 1: judge error: fake"):
        fns["editjudge"](images, prompts, metadata)


@pytest.mark.parametrize("path, message", [("../outside.png", "outside the dataset root"),
                                           ("/etc/hostname", "outside the dataset root"),
                                           ("images/link.png", "outside the dataset root"),
                                           ("images/missing.png", "not found"), ("", "non-empty")])
def test_flow_grpo_refuses_a_source_outside_the_dataset_root(env, dataset, path, message):
    from editjudge.integrations.flow_grpo import editjudge_score

    (dataset.parent / "outside.png").write_bytes((dataset / "images" / "src_0.png").read_bytes())
    os.symlink(dataset.parent / "outside.png", dataset / "images" / "link.png")
    images, prompts, metadata, _ = _rank_batches()[0][0]
    metadata = [dict(metadata[0], image=path)] + metadata[1:]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        editjudge_score()(images, prompts, metadata)
    assert env.items == []  # nothing was sent


def test_flow_grpo_configuration_mistakes_stop_the_trainer_at_start(monkeypatch, tmp_path):
    from editjudge.integrations.flow_grpo import editjudge_score, multi_score

    monkeypatch.delenv("EDITJUDGE_DATASET_ROOT", raising=False)
    with pytest.raises(ValueError, match="EDITJUDGE_DATASET_ROOT is not set"):
        editjudge_score("cuda:0")
    monkeypatch.setenv("EDITJUDGE_DATASET_ROOT", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="is not a folder"):
        editjudge_score()
    monkeypatch.setenv("EDITJUDGE_DATASET_ROOT", str(tmp_path))
    monkeypatch.setenv("EDITJUDGE_URL", "127.0.0.1:8000")
    with pytest.raises(ValueError, match="http"):
        editjudge_score()
    with pytest.raises(ValueError, match="knows only 'editjudge'"):
        multi_score("cpu", {"editjudge": 1.0, "pickscore": 1.0})


# ----------------------------------------------------------------------------- verl-omni

def test_verl_omni_compute_score_as_the_visual_reward_manager_calls_it(env, dataset, monkeypatch):
    import torch

    from editjudge.integrations import verl_omni

    from .integration_fixtures import verl_omni_edit_row, verl_omni_run_single

    monkeypatch.setenv("EDITJUDGE_DATASET_ROOT", str(dataset / "images"))  # prepare_data.py's image_dir
    edited = torch.randint(0, 256, (3, 16, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    row = verl_omni_edit_row("add a hat", "src_2.png")
    answer = asyncio.run(verl_omni_run_single(verl_omni.compute_score, edited, row))
    got = env.items[-1]
    assert got["source_bytes"] == (dataset / "images" / "src_2.png").read_bytes()
    assert np.array_equal(got["edited"], edited.permute(1, 2, 0).numpy()) and got["instruction"] == "add a hat"
    assert answer["reward_score"] == pytest.approx(pixel_score(got["edited"], got["source"]))
    assert answer["reward_extra_info"] == {"editjudge/SC": 1.0}
    # Without extra_info["instruction"], the ground truth is the instruction; a batch of one is one image.
    del row["extra_info"]["instruction"]
    asyncio.run(verl_omni_run_single(verl_omni.compute_score, edited.unsqueeze(0), row))
    assert env.items[-1]["instruction"] == "add a hat"
    for bad, message in [(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "one image"),
                         (torch.zeros(4, 4, dtype=torch.uint8), r"\(C, H, W\)")]:
        with pytest.raises(ValueError, match=message):
            asyncio.run(verl_omni_run_single(verl_omni.compute_score, bad, row))
    with pytest.raises(ValueError, match="outside the dataset root"):
        asyncio.run(verl_omni_run_single(verl_omni.compute_score, edited, verl_omni_edit_row("x", "../src_0.png")))
    env.fail_ids.add("add a hat")
    with pytest.raises(RewardScoringError, match="could not score 'src_2.png': judge error: fake"):
        asyncio.run(verl_omni_run_single(verl_omni.compute_score, edited, row))


# ----------------------------------------------------------------------------- EditScore

class AnsweringJudge:
    """A stand-in judge for the call shape only: answers each rubric prompt with a fixed text and
    records the images each prompt was shown. Scores are asserted through the tiny judge below."""

    score_range = (0.0, 10.0)
    system_prompt = "default"

    def __init__(self, answers: dict[str, str]):
        self.answers, self.calls = answers, []

    def batch_evaluate(self, edited_images, system_prompts=None, user_prompts=None, original_images=None, parse=None):
        from editjudge.models.reward.parsing import ScoreParseError
        from editjudge.models.reward.results import ScoreResult

        name = "semantics" if "prompt_following" in user_prompts[0] else "quality"
        self.calls.append((name, list(user_prompts), original_images))
        text = self.answers[name]
        try:
            return [ScoreResult(score=parse(text), raw_output=text) for _ in edited_images]
        except ScoreParseError as exc:
            return [ScoreResult.failure(str(exc), raw_output=text) for _ in edited_images]


def test_editscore_rubric_reads_editscore_answers_on_its_0_to_25_scale():
    from editjudge.integrations.editscore import EditScore
    from editjudge.models.reward.rubrics import BUILTIN, get_rubric, rubric_problems

    assert rubric_problems(dict(BUILTIN["editscore"], name="mine")) == []
    assert rubric_problems(dict(BUILTIN["editscore"], name="mine", scale=[25, 0]))[0].startswith("rubric.scale")
    rubric = get_rubric("editscore")
    assert rubric.scale == (0.0, 25.0) and all(p.with_source for p in rubric.prompts)
    assert all(p.user_prompt.index("reasoning") < p.user_prompt.index("score") for p in rubric.prompts)
    judge = AnsweringJudge({"semantics": '{"reasoning": "the sky is \\"red\\" now", "score": [20, 25]}',
                            "quality": '{"reasoning": "no artifacts", "score": [25, 15]}'})
    result = EditScore(judge=judge).evaluate(["src.png", "out.png"], "make the sky red")
    # EditScore: each answer's lowest value / 2.5; overall = sqrt(SC * PQ).
    assert result == {"prompt_following": 8.0, "consistency": 10.0, "perceptual_quality": 6.0,
                      "overall": pytest.approx((8.0 * 6.0) ** 0.5), "SC_reasoning": 'the sky is "red" now',
                      "PQ_reasoning": "no artifacts"}
    assert [c[0] for c in judge.calls] == ["semantics", "quality"]
    assert all(c[2] == ["src.png"] for c in judge.calls)  # both prompts see the source, then the edit
    assert 'instruction "make the sky red"' in judge.calls[0][1][0]
    batch = EditScore(judge=judge).batch_evaluate([["s0", "e0"], ["s1", "e1"]], ["a", "b"])
    assert [sorted(b) for b in batch] == [sorted(["SC_score", "PQ_score", "O_score", "SC_score_reasoning",
                                                  "PQ_score_reasoning", "SC_raw_output", "PQ_raw_output"])] * 2
    assert batch[1]["SC_score"] == 8.0 and batch[1]["PQ_score"] == 6.0
    assert batch[1]["PQ_raw_output"] == judge.answers["quality"]
    # A value above 25 is not read (EditScore would clamp or guess): the item has no score, loudly.
    judge.answers["quality"] = '{"reasoning": "", "score": [26, 3]}'
    with pytest.raises(RewardScoringError, match="naturalness 26 outside the range"):
        EditScore(judge=judge).evaluate(["s", "e"], "x")


def test_editscore_call_shape_through_the_server_client(env):
    from editjudge.integrations.editscore import EditScore

    scorer = EditScore(url=env.url, token=TOKEN)
    source, edited = Image.new("RGB", (8, 8), (40, 40, 40)), Image.new("RGB", (8, 8), (200, 10, 10))
    result = scorer.evaluate([source, edited], "make it red")
    got = env.items[-1]
    assert got["rubric"] == "editscore" and got["instruction"] == "make it red"
    assert np.array_equal(got["source"], np.asarray(source)) and np.array_equal(got["edited"], np.asarray(edited))
    score = pixel_score(got["edited"], got["source"])
    assert result == {"prompt_following": score, "consistency": 10.0, "perceptual_quality": 4.0,
                      "overall": pytest.approx((score * 4.0) ** 0.5), "SC_reasoning": 'the "sky" is red',
                      "PQ_reasoning": "clean"}
    (line,) = scorer.batch_evaluate([[source, edited]], ["make it red"])
    assert line["SC_raw_output"] == '{"reasoning": "the \\"sky\\" is red", "score": [20, 25]}'
    assert line["PQ_raw_output"] == '{"reasoning": "clean", "score": [10, 12]}'


@pytest.fixture(scope="module")
def tiny_judge(judge_path):
    from editjudge.models.reward import Qwen3VLRewardModel

    return Qwen3VLRewardModel(judge_path, max_new_tokens=40, batch_size=8, show_progress=False)


def _level(level: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(np.clip(level * 25.5 + rng.normal(0, 4, (40, 48, 3)), 0, 255).astype(np.uint8))


def test_editscore_rubric_through_the_tiny_judge(tiny_judge):
    """The real processor and tiny judge. Its training taught it the viescore prompts' wording only, so
    (1) the editscore prompts themselves get '{"score": N}' answers, which fail loudly, never guessed;
    (2) the editscore rubric with the viescore prompts' wording in place of its own (scale, sources,
    combine and score as they are) is answered, read on the 0-25 scale and combined as EditScore does."""
    from editjudge.integrations.editscore import EditScore
    from editjudge.models.reward.rubrics import BUILTIN, get_rubric

    edited, sources = [_level(level, seed=level) for level in (2, 8, 5)], [_level(5)] * 3
    with pytest.raises(RewardScoringError, match=r"semantics: unparseable judge answer: no value for "
                                                 r"\['prompt_following', 'consistency'\]"):
        EditScore(judge=tiny_judge).batch_evaluate([[s, e] for s, e in zip(sources, edited)], ["brighten it"] * 3)
    spec = dict(BUILTIN["editscore"], name="editscore_in_viescore_words")
    rename = {"prompt_following": "editing_success", "consistency": "over_editing"}
    spec["prompts"] = [dict(mine, system_prompt=known["system_prompt"], user_prompt=known["user_prompt"],
                            fields=[rename.get(f, f) for f in mine["fields"]])
                       for mine, known in zip(BUILTIN["editscore"]["prompts"], BUILTIN["viescore"]["prompts"])]
    spec["combine"] = {name: expression.replace("prompt_following", "editing_success")
                       .replace("consistency", "over_editing") for name, expression in spec["combine"].items()}
    scorer = EditScore(judge=tiny_judge)
    scorer.rubric = get_rubric(spec)
    results = scorer.batch_evaluate([[s, e] for s, e in zip(sources, edited)], ["brighten it"] * 3)
    seen = 0
    for result in results:
        semantics = json.loads(result["SC_raw_output"])
        quality = json.loads(result["PQ_raw_output"])
        assert all(0 <= v <= 25 for v in [*semantics.values(), *quality.values()])
        assert result["SC_score"] == pytest.approx(min(semantics["editing_success"], semantics["over_editing"]) / 2.5)
        assert result["PQ_score"] == pytest.approx(min(quality["naturalness"], quality["artifacts"]) / 2.5)
        assert result["O_score"] == pytest.approx((result["SC_score"] * result["PQ_score"]) ** 0.5)
        assert result["SC_score_reasoning"] is None  # the tiny judge gives no reasoning
        seen += len(set(semantics.values()) | set(quality.values()))
    assert seen >= 3 and len({r["O_score"] for r in results}) > 1  # answers read from the images, not constant


def test_editscore_from_a_config_file_loads_the_judge_with_build_judge(tmp_path, judge_path):
    import yaml

    from editjudge.integrations.editscore import EditScore

    config = tmp_path / "judge.yaml"
    config.write_text(yaml.safe_dump({"reward_model": {"type": "qwen3_vl", "devices": ["cpu"], "params": {
        "model_path": judge_path, "max_new_tokens": 12, "rubric": "editscore", "show_progress": False}}}))
    scorer = EditScore(config=str(config), device="cpu")
    assert scorer.rubric.name == "editscore" and scorer.judge.score_range == (0.0, 10.0)
    with pytest.raises(RewardScoringError, match="no value for"):  # the tiny judge's '{"score": N}'
        scorer.evaluate([_level(5), _level(7)], "brighten it")
    with pytest.raises(ValueError, match="exactly one of"):
        EditScore(config=str(config), url="http://127.0.0.1:1")


# ----------------------------------------------------------------------------- UniRL

def test_unirl_reward_service_shape_through_the_translation(env):
    import threading

    from editjudge.client import RewardClient
    from editjudge.integrations import unirl

    from .integration_fixtures import unirl_score

    proxy = unirl.make_server(RewardClient(env.url, token=TOKEN, retries=0))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        pairs = [(_level(5), _level(level, seed=level)) for level in (2, 8, 4)]
        prompts = ["brighten it", "darken it", "add a hat"]
        env.fail_ids.add("darken it")
        answer = unirl_score(base, pairs, prompts)
        for got, (source, out), prompt in zip(env.items, pairs, prompts):
            assert np.array_equal(got["source"], np.asarray(source)) and np.array_equal(got["edited"], np.asarray(out))
            assert got["instruction"] == prompt
        expected = [pixel_score(np.asarray(out), np.asarray(source)) for source, out in pairs]
        assert answer["rewards"][0] == pytest.approx(expected[0])
        assert answer["rewards"][2] == pytest.approx(expected[2])
        assert answer["successes"] == [True, False, True]
        assert answer["rewards"][1] == 0.0 and answer["errors"][1] == "editjudge: judge error: fake"
        # A reward not served here is the sample's error, by name; a roster without it fails at start.
        mixed = unirl.score(RewardClient(env.url, token=TOKEN), {"requests": [
            {"history": [{"text": "x", "image_b64": "aGk="}], "required_rewards": ["pickscore"]}]})
        assert mixed == {"results": [{}], "errors": [{"pickscore": "not served here (this service scores 'editjudge')"}]}
        with pytest.raises(ValueError, match="not served"):
            unirl_score(base, pairs, prompts, required=("editjudge", "hpsv3"))
        env.ready = False
        with pytest.raises(Exception, match="503"):
            unirl_score(base, pairs, prompts)
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)


def test_unirl_service_refuses_a_bad_url_before_serving(monkeypatch, capsys):
    from editjudge.integrations import unirl

    monkeypatch.setenv("EDITJUDGE_URL", "localhost:8000")
    assert unirl.main(["--port", "0"]) == 2
    assert "EDITJUDGE_URL must be an http(s) URL" in capsys.readouterr().err
