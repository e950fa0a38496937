"""Logits mode in bfloat16: how far digit probabilities read from bf16 logits are from float32 ones.

    python bench/logits_precision.py                          # the tiny judge, CPU
    python bench/logits_precision.py --offsets 0 16 32 --images 4

Loads the tiny trained judge in bfloat16 (score_mode logits) and scores synthetic images of every
brightness level three ways from the same bf16 hidden states: the old path (logits rounded to
bfloat16 by the bf16 output head, then a float32 softmax), the judge's path (``Float32Head``:
the head and the softmax in float32), and a reference computed here (the captured hidden states
times the head's weight, upcast, in float32). The tiny judge's logits are small (a few units);
an 8B model's are in the tens, where bfloat16 steps by 0.125. To put the tiny judge's logits at
such magnitudes without changing its probabilities, its head gets a constant bias (``--offsets``):
softmax ignores a constant, bfloat16 rounding does not. Prints, per offset, the mean and largest
gap in score units (0-10) between each path and the reference.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import main  # noqa: E402,F401  (the checkout's src/ as editjudge)

from editjudge.models.reward import Qwen3VLRewardModel  # noqa: E402
from editjudge.models.reward.logits import expected_scores  # noqa: E402
from editjudge.tools.make_tiny_models import ensure_tiny_models, synthetic_image  # noqa: E402


def biased_head(head: torch.nn.Linear, offset: float) -> torch.nn.Linear:
    """A copy of ``head`` (untied from the embeddings) whose logits are all raised by ``offset``."""
    out = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(head.weight)
        out.bias.fill_(offset)
    return out


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offsets", type=float, nargs="+", default=[0, 8, 16, 24, 32])
    parser.add_argument("--images", type=int, default=2, help="images per brightness level (11 levels)")
    parser.add_argument("--cache", default=os.environ.get("EDITJUDGE_CACHE", str(ROOT / ".cache" / "tiny-models")))
    args = parser.parse_args()

    judge_path = ensure_tiny_models(Path(args.cache))["judge"]
    judge = Qwen3VLRewardModel(str(judge_path), dtype="bfloat16", device="cpu", score_mode="logits",
                               batch_size=8, group_by_length=False, show_progress=False)
    rng = random.Random(0)
    images = [synthetic_image(rng, level=level) for level in range(11) for _ in range(args.images)]
    low, high = (int(v) for v in judge.score_range)
    original = judge.model.lm_head
    print(f"{len(images)} images, tiny judge in bfloat16; gaps in score units (0-10) against float32")
    print(f"{'offset':>7} {'top logit':>9} {'bf16 mean':>10} {'bf16 max':>9} {'judge mean':>11} {'judge max':>10}")
    for offset in args.offsets:
        judge.model.lm_head = biased_head(original, offset)
        captured = []
        handle = judge.model.lm_head.register_forward_pre_hook(lambda m, a: captured.append(a[0].detach()))
        try:
            ours = [r.score for r in judge.batch_evaluate(images)]
        finally:
            handle.remove()
        hidden = torch.cat(captured)
        head = judge.model.lm_head
        with torch.no_grad():
            reference_logits = hidden.float() @ original.weight.float().T  # no offset: the true probabilities
            bf16_logits = head(hidden).float()  # the old path: the bf16 head's rounded output
        reference = [r.score for r in expected_scores(reference_logits, judge._digit_ids, low, high)]
        old = [r.score for r in expected_scores(bf16_logits, judge._digit_ids, low, high)]
        gap_old = [abs(a - b) for a, b in zip(old, reference)]
        gap_ours = [abs(a - b) for a, b in zip(ours, reference)]
        top = float(bf16_logits.max())
        print(f"{offset:7.0f} {top:9.2f} {sum(gap_old) / len(gap_old):10.4f} {max(gap_old):9.4f} "
              f"{sum(gap_ours) / len(gap_ours):11.2e} {max(gap_ours):10.2e}")
    judge.model.lm_head = original


if __name__ == "__main__":
    main_()
