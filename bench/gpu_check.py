"""The device check: one short run that checks on GPUs what the CPU tests cannot (issue 13).

    bash bench/gpu_check.sh                   # on a GPU machine (< 8 min on one H100/H200); figures in $OUT
    bash bench/gpu_check.sh --dry-run         # the same code at tiny sizes on the CPU (tests/test_gpu_path.py)
    python bench/gpu_check.py --out /tmp/gc --images 16 --batch-sizes 1,8   # a shorter GPU run

Sections, each written to OUT/gpu_check.json and summed up on one screen at the end:

1. judge: the 8B-shaped random Qwen3-VL (bench/reward_throughput.py's preset) in bfloat16 at
   batch 1/8/32, generate and logits modes: images/s, peak memory, and batched-vs-sequential
   agreement (logits: the share of items within 0.5 of their batch-1 score; generate: the share
   of identical answers, since a random model's answers hold no score).
2. workers: with 2+ GPUs, one worker per GPU (editjudge.parallel.run_workers); each reports
   where it allocated (``torch.cuda.memory_allocated(i)`` for every GPU) and, from nvidia-smi,
   on which GPUs its process holds a context: only its own is right.
3. group: with 2+ GPUs, one replica over cuda:0+cuda:1 (accelerate device_map): placement,
   memory per GPU, and its logits scores (one item at a time) against the single-GPU batch-1 ones.
4. out_of_memory: a batch too large for a memory cap (``set_per_process_memory_fraction``) makes
   the judge run out of memory for real; it halves until batches fit, every item is scored, and
   each retry starts with the failed attempt's memory freed (allocated memory at the start of
   every forward call, against the memory before the batch).
5. forward_clock: the cost of timing forward calls (``ForwardClock``) per decode step: one batch
   generated with a fixed number of new tokens with no clock, with the clock (CUDA timing events,
   one wait per batch) and with a clock that waits on the GPUs at every call (as before issue 22);
   ms per step (best of 3, interleaved) and each clock's overhead over no clock.
6. editor_offload: a tiny Qwen-Image-Edit pipeline with offload none / model / sequential:
   seconds, peak GPU memory, and whether the pixels are identical to offload none.
7. sleep_wake: the reward server's /v1/sleep and /v1/wake on the judge: seconds to sleep and to
   wake, GPU memory held awake, asleep and awake again, and the same answers after the wake.

``--dry-run`` runs every section on the CPU with the tiny trained judge: workers on cpu,cpu, a
group of ['cpu'], an out-of-memory error raised after a real allocation (a CPU has no memory cap
to hit), and offload model only (sequential needs a GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

import main  # noqa: E402,F401  (the checkout's src/ is the editjudge package)
from reward_throughput import build_random_model, make_images  # noqa: E402

logger = logging.getLogger("gpu_check")
MiB = 2**20


# ------------------------------------------------------------------------------------------ helpers


def _cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def reset_peak(device: str) -> None:
    if _cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: str) -> float:
    """Peak allocated GPU memory since ``reset_peak``; on the CPU the process's resident memory now."""
    if _cuda(device):
        return torch.cuda.max_memory_allocated(device) / MiB
    import psutil

    return psutil.Process().memory_info().rss / MiB


def allocated_mib(device: str) -> float | None:
    """The memory torch holds on ``device`` now (None on the CPU)."""
    if not _cuda(device):
        return None
    torch.cuda.synchronize(device)
    return round(torch.cuda.memory_allocated(device) / MiB, 1)


def compute_apps() -> list[dict]:
    """nvidia-smi's compute processes: pid, GPU index and used memory; [] without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return []
    def query(what: str) -> list[list[str]]:
        text = subprocess.run(["nvidia-smi", f"--query-{what}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=30).stdout
        return [[c.strip() for c in line.split(",")] for line in text.splitlines() if line.strip()]
    index = {uuid: int(i) for i, uuid in query("gpu=index,uuid")}
    return [{"pid": int(pid), "gpu": index.get(uuid), "used_mib": float(used) if used.replace(".", "").isdigit()
             else None} for pid, uuid, used in query("compute-apps=pid,gpu_uuid,used_memory")]


def agreement(scores: list[float], reference: list[float], tolerance: float = 0.5) -> float | None:
    pairs = [(a, b) for a, b in zip(scores, reference) if not (math.isnan(a) or math.isnan(b))]
    return sum(abs(a - b) <= tolerance for a, b in pairs) / len(pairs) if pairs else None


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ sections


def judge_section(args, path: str, device: str, images) -> tuple[list[dict], list[float]]:
    from editjudge.models.reward import Qwen3VLRewardModel
    from editjudge.models.reward.results import ScoringStats

    rows, logits_reference = [], []
    for mode in ("generate", "logits"):
        judge = Qwen3VLRewardModel(path, device=device, dtype=args.dtype, score_mode=mode, batch_size=1,
                                   max_new_tokens=args.new_tokens, show_progress=False, max_pixels=args.image_size**2)
        judge.batch_evaluate(images[:2], batch_size=2)  # warm-up: lazy initialisation, kernel choice
        reference = None
        for batch_size in args.batch_sizes:
            judge.stats = ScoringStats()
            reset_peak(device)
            started = time.perf_counter()
            results = judge.batch_evaluate(images, batch_size=batch_size, use_batch_inference=batch_size > 1)
            seconds = time.perf_counter() - started
            if reference is None:
                reference = results  # the first (batch 1) run is the sequential reference
            scores = [r.score for r in results]
            rows.append({
                "mode": mode, "batch_size": batch_size, "images": len(images), "seconds": round(seconds, 3),
                "images_per_s": round(len(images) / seconds, 3), "peak_mib": round(peak_mib(device), 1),
                "scored": sum(r.ok for r in results),
                "agreement_within_0.5": agreement(scores, [r.score for r in reference]),
                "same_answer": sum(a.raw_output == b.raw_output for a, b in zip(results, reference)) / len(results),
                "oom_splits": judge.stats.oom_splits, "fallbacks": judge.stats.batch_fallbacks,
            })
            logger.info("judge %s batch %d: %.2f images/s", mode, batch_size, rows[-1]["images_per_s"])
        if mode == "logits":
            logits_reference = [r.score for r in reference]
        del judge
        _free()
    return rows, logits_reference


def _worker_probe(*, rank: int, world_size: int, device, model_path: str, out: str, image_size: int) -> None:
    """One worker of the workers section: load, score, report where this process allocated."""
    from editjudge.models.reward import Qwen3VLRewardModel
    from editjudge.parallel import device_label

    judge = Qwen3VLRewardModel(model_path, device=device, score_mode="logits", batch_size=4, show_progress=False)
    scores = judge.batch_score(make_images(4, image_size, seed=rank))
    row = {"rank": rank, "world_size": world_size, "device": device_label(device), "pid": os.getpid(),
           "scored": sum(not math.isnan(s) for s in scores)}
    if torch.cuda.is_available():
        own = torch.device(device).index
        row["current_device"] = torch.cuda.current_device()
        row["allocated_mib"] = {i: round(torch.cuda.memory_allocated(i) / MiB, 1)
                                for i in range(torch.cuda.device_count())}
        row["contexts_on"] = sorted({a["gpu"] for a in compute_apps() if a["pid"] == os.getpid()})
        others = [i for i, mib in row["allocated_mib"].items() if i != own and mib > 0]
        row["own_gpu_only"] = (row["current_device"] == own and not others
                               and (not row["contexts_on"] or row["contexts_on"] == [own]))
        row["pid_seen_by_nvidia_smi"] = bool(row["contexts_on"])
    else:
        row["own_gpu_only"] = True  # nothing to place on a CPU worker
    Path(out, f"worker{rank}.json").write_text(json.dumps(row))


def workers_section(args, path: str, gpus: int, work: Path) -> dict:
    from editjudge.parallel import run_workers

    devices = ["cpu", "cpu"] if args.dry_run else [f"cuda:{i}" for i in range(min(gpus, 2))]
    if len(devices) < 2:
        return {"skipped": f"{gpus} GPU visible; needs 2"}
    folder = work / "workers"
    folder.mkdir()
    started = time.perf_counter()
    run_workers(_worker_probe, devices, model_path=path, out=str(folder), image_size=args.image_size)
    workers = [json.loads((folder / f"worker{r}.json").read_text()) for r in range(len(devices))]
    return {"seconds": round(time.perf_counter() - started, 2), "workers": workers,
            "ok": all(w["own_gpu_only"] and w["scored"] == 4 for w in workers)}


def group_section(args, path: str, gpus: int, images, reference: list[float]) -> dict:
    from editjudge.models.reward import Qwen3VLRewardModel

    group = ["cpu"] if args.dry_run else ["cuda:0", "cuda:1"]
    if not args.dry_run and gpus < 2:
        return {"skipped": f"{gpus} GPU visible; needs 2"}
    for device in group:
        reset_peak(device)
    started = time.perf_counter()
    judge = Qwen3VLRewardModel(path, device=group, dtype=args.dtype, score_mode="logits", batch_size=8,
                               show_progress=False, max_pixels=args.image_size**2)
    load_seconds = time.perf_counter() - started
    allocated = {d: round(torch.cuda.memory_allocated(d) / MiB, 1) for d in group if _cuda(d)}
    scores = judge.batch_score(images, use_batch_inference=False)  # as the single-device reference was scored
    row = {"group": "+".join(group), "load_seconds": round(load_seconds, 2), "placement": judge.placement,
           "allocated_mib_after_load": allocated, "peak_mib": {d: round(peak_mib(d), 1) for d in group},
           "agreement_within_0.5": agreement(scores, reference),
           "scores_equal_single_device": scores == reference}
    del judge
    _free()
    return row


def oom_section(args, path: str, device: str, images) -> dict:
    """A batch too large: on a GPU under a real memory cap; on the CPU an error raised after allocating."""
    from editjudge.models.reward import Qwen3VLRewardModel

    judge = Qwen3VLRewardModel(path, device=device, dtype=args.dtype, score_mode="logits", batch_size=len(images),
                               show_progress=False, max_pixels=args.oom_image_size**2)
    reference = judge.batch_score(images, use_batch_inference=False)
    base = torch.cuda.memory_allocated(device) if _cuda(device) else 0
    at_call_start, handles, row = [], [], {"device": device, "batch_size": len(images)}
    refs = []  # the CPU's stand-in for a failed attempt's activations

    def on_call(module, args_, kwargs):
        if _cuda(device):  # what is allocated beyond the weights and this call's own inputs
            inputs = sum(v.numel() * v.element_size() for v in kwargs.values() if isinstance(v, torch.Tensor))
            at_call_start.append((torch.cuda.memory_allocated(device) - base - inputs) / MiB)
        else:
            at_call_start.append(sum(r() is not None for r in refs))

    handles.append(judge.model.register_forward_pre_hook(on_call, with_kwargs=True))
    if _cuda(device):
        judge.batch_score(images[:1], batch_size=1)
        reset_peak(device)
        judge.batch_score(images[:1], batch_size=1)
        per_item = max(1.0, peak_mib(device) - base / MiB)
        cap = base / MiB + args.oom_fit * per_item + 256
        total = torch.cuda.get_device_properties(device).total_memory / MiB
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
        row.update(per_item_mib=round(per_item, 1), cap_mib=round(cap, 1), base_mib=round(base / MiB, 1))
    else:
        layer = judge.model.model.language_model.layers[0]

        def allocate_then_fail(module, args_):
            if args_[0].shape[0] > args.oom_fit:
                held = torch.ones(1 << 22)
                refs.append(weakref.ref(held))
                raise torch.OutOfMemoryError("out of memory (dry run: raised after a real 16 MiB allocation)")

        handles.append(layer.register_forward_pre_hook(allocate_then_fail))
    at_call_start.clear()
    try:
        results = judge.batch_evaluate(images)
    finally:
        for handle in handles:
            handle.remove()
        if _cuda(device):
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    scores = [r.score for r in results]
    row.update({"oom_splits": judge.stats.oom_splits, "fallbacks": judge.stats.batch_fallbacks,
                "all_scored": all(r.ok for r in results), "agreement_within_0.5": agreement(scores, reference),
                "calls": len(at_call_start)})
    if _cuda(device):
        # The first call is the batch that fails; every later one must start with nothing of it left (a failed
        # attempt that is not freed holds nearly the whole cap).
        row["max_allocated_at_retry_start_mib"] = round(max(at_call_start[1:], default=0.0), 1)
        row["freed_before_retries"] = row["max_allocated_at_retry_start_mib"] < 64
    else:
        row["failed_attempts_alive_at_retry_start"] = max(at_call_start[1:], default=0)
        row["freed_before_retries"] = row["failed_attempts_alive_at_retry_start"] == 0
    del judge
    _free()
    return row


def editor_section(args, device: str) -> dict:
    from PIL import Image

    from editjudge.models.editing import EditRequest
    from editjudge.models.editing.diffusers_editor import DiffusersEditor
    from editjudge.tools.make_tiny_editors import ensure_tiny_editors

    path = ensure_tiny_editors(args.cache, ["qwen-image-edit"])["qwen-image-edit"]
    requests = [EditRequest(f"i{i}", Image.new("RGB", (64, 48), (60 * i, 120, 200)), "make it red", seed=i)
                for i in range(2)]
    modes = ("none", "model") if not _cuda(device) else ("none", "model", "sequential")
    rows, pixels = {}, {}
    for offload in modes:
        reset_peak(device)
        started = time.perf_counter()
        editor = DiffusersEditor("tiny-qwen-image-edit", str(path), device=device, dtype="float32", batch_size=2,
                                 params={"num_inference_steps": 2}, offload=offload)
        images = editor.edit(requests)
        rows[offload] = {"seconds": round(time.perf_counter() - started, 2), "peak_mib": round(peak_mib(device), 1),
                         "ok": all(isinstance(im, Image.Image) for im in images)}
        pixels[offload] = [im.tobytes() if isinstance(im, Image.Image) else None for im in images]
        editor.close()
        del editor
        _free()
    same = all(pixels[m] == pixels["none"] for m in modes)
    result = {"device": device, "modes": rows, "same_pixels": same}
    if not _cuda(device):
        result["sequential"] = "skipped: needs a GPU"
    return result


def clock_section(args, path: str, device: str, images) -> dict:
    """ms per decode step of one batch's ``generate``: no clock, ForwardClock, a clock waiting at every call."""
    from editjudge.models.reward import Qwen3VLRewardModel
    from editjudge.models.reward.batching import ForwardClock
    from editjudge.models.reward.prompts import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT
    from editjudge.models.reward.results import ScoringStats

    class SyncingClock(ForwardClock):  # the clock before issue 22: every call waited for the GPUs, twice
        def _mark(self):
            for gpu in self._cuda_devices:
                torch.cuda.synchronize(gpu)
            return super()._mark()

    judge = Qwen3VLRewardModel(path, device=device, dtype=args.dtype, show_progress=False,
                               max_pixels=args.image_size**2)
    batch = images[:min(8, len(images))]
    messages = [judge._build_messages(image, DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_PROMPT) for image in batch]
    with judge._left_padding():
        inputs = judge.processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                     return_dict=True, return_tensors="pt",
                                                     processor_kwargs={"padding": True}).to(device)
    steps = args.new_tokens  # forward calls per generate: the prefill, then steps - 1 decode steps
    clocks = {"none": None, "clock": ForwardClock, "syncing every call": SyncingClock}
    best = dict.fromkeys(clocks, math.inf)
    decode_ms = math.nan
    for round_ in range(4):  # the first round warms up and is not counted
        for name, clock in clocks.items():
            stats = ScoringStats()
            reset_peak(device)
            started = time.perf_counter()
            with torch.inference_mode(), (clock(judge.model, stats) if clock else contextlib.nullcontext()):
                judge.model.generate(**inputs, min_new_tokens=steps, max_new_tokens=steps, do_sample=False)
            reset_peak(device)  # waits for the GPU
            if round_:
                best[name] = min(best[name], time.perf_counter() - started)
            if clock is ForwardClock and round_ and stats.decode_tokens:
                decode_ms = 1000 * stats.decode_seconds / (stats.decode_tokens / len(batch))
    del judge
    _free()
    ms = {name: round(1000 * seconds / steps, 3) for name, seconds in best.items()}
    return {"batch_size": len(batch), "steps": steps, "ms_per_step": ms,
            "overhead_ms_per_step": {name: round(ms[name] - ms["none"], 3) for name in clocks if name != "none"},
            "clock_decode_ms_per_step": round(decode_ms, 3)}


def sleep_section(args, path: str, device: str, images) -> dict:
    """The reward server's /v1/sleep and /v1/wake on a transformers judge (``editjudge.serve.sleep``):
    seconds to sleep and wake, the GPU memory held awake / asleep / awake again, and the same answers
    after the wake as before the sleep."""
    from editjudge.models.reward import Qwen3VLRewardModel
    from editjudge.serve.sleep import sleep_model, wake_model

    judge = Qwen3VLRewardModel(path, device=device, dtype=args.dtype, max_new_tokens=args.new_tokens,
                               show_progress=False, max_pixels=args.image_size**2)
    batch = images[:4]
    before = [r.raw_output for r in judge.batch_evaluate(batch, batch_size=len(batch))]
    held = {"awake": allocated_mib(device)}
    started = time.perf_counter()
    how = sleep_model(judge, 1)
    sleep_s = time.perf_counter() - started
    held["asleep"] = allocated_mib(device)
    started = time.perf_counter()
    wake_model(judge)
    wake_s = time.perf_counter() - started
    held["awake_again"] = allocated_mib(device)
    after = [r.raw_output for r in judge.batch_evaluate(batch, batch_size=len(batch))]
    del judge
    _free()
    return {"how": how, "sleep_seconds": round(sleep_s, 3), "wake_seconds": round(wake_s, 3),
            "allocated_mib": held, "same_answers_after_wake": after == before}


# ------------------------------------------------------------------------------------------ the run


def summary(report: dict) -> str:
    s = report["sections"]
    lines = [f"gpu_check summary{' (DRY RUN on the CPU: tiny sizes, not GPU figures)' if report['dry_run'] else ''}"
             f": {report['device_name']}, {report['gpus']} GPU(s), torch {report['torch']}, {report['seconds']:.0f} s"]
    lines.append(f"judge {report['judge']} ({report['dtype']}), {s['judge'][0]['images']} images:")
    lines.append(f"  {'mode':<9}{'batch':>6}{'img/s':>9}{'peak MiB':>10}{'scored':>8}{'within 0.5':>11}{'same ans':>9}")
    for r in s["judge"]:
        within = "-" if r["agreement_within_0.5"] is None else f"{r['agreement_within_0.5']:.0%}"
        lines.append(f"  {r['mode']:<9}{r['batch_size']:>6}{r['images_per_s']:>9.2f}{r['peak_mib']:>10.0f}"
                     f"{r['scored']:>8}{within:>11}{r['same_answer']:>9.0%}")
    w = s["workers"]
    if "skipped" in w:
        lines.append(f"workers: skipped ({w['skipped']})")
    else:
        lines.append("workers: " + ("ok" if w["ok"] else "WRONG") + "; " + "; ".join(
            f"rank {x['rank']} on {x['device']}" + (f" allocated {x['allocated_mib']} MiB, contexts on {x['contexts_on']}"
                                                   if "allocated_mib" in x else "") for x in w["workers"]))
    g = s["group"]
    lines.append(f"group: skipped ({g['skipped']})" if "skipped" in g else
                 f"group {g['group']}: load {g['load_seconds']} s, placement {g['placement']}, "
                 f"within 0.5 of single-device {g['agreement_within_0.5']}, identical {g['scores_equal_single_device']}")
    o = s["out_of_memory"]
    lines.append(f"out of memory at batch {o['batch_size']}: {o['oom_splits']} splits, all scored {o['all_scored']}, "
                 f"within 0.5 of sequential {o['agreement_within_0.5']}, memory freed before each retry "
                 f"{o['freed_before_retries']}" + (f" (cap {o['cap_mib']} MiB, per item {o['per_item_mib']} MiB, at "
                                                   f"retry start {o['max_allocated_at_retry_start_mib']} MiB left)"
                                                   if "cap_mib" in o else ""))
    c = s["forward_clock"]
    lines.append(f"forward clock per step (batch {c['batch_size']}, {c['steps']} steps): no clock {c['ms_per_step']['none']} ms; "
                 + "; ".join(f"{k} {c['ms_per_step'][k]} ms ({v:+.3f})" for k, v in c["overhead_ms_per_step"].items())
                 + f"; the clock's own decode step {c['clock_decode_ms_per_step']} ms")
    e = s["editor_offload"]
    lines.append("editor offload on " + e["device"] + ": " + ", ".join(
        f"{m} {r['seconds']} s / {r['peak_mib']:.0f} MiB" for m, r in e["modes"].items())
        + f"; same pixels {e['same_pixels']}" + (f"; sequential {e['sequential']}" if "sequential" in e else ""))
    z = s["sleep_wake"]
    lines.append(f"sleep/wake ({z['how']}): sleep {z['sleep_seconds']} s, wake {z['wake_seconds']} s, allocated MiB "
                 + ", ".join(f"{k} {v}" for k, v in z["allocated_mib"].items())
                 + f"; same answers after the wake {z['same_answers_after_wake']}")
    return "\n".join(lines)


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every section at tiny sizes on the CPU")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--preset", default="qwen3-vl-8b", help="the random judge's shape (bench/reward_throughput.py)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--oom-image-size", type=int, default=896, help="image side for the out-of-memory section")
    parser.add_argument("--oom-fit", type=int, default=4, help="items that fit under the out-of-memory cap")
    parser.add_argument("--cache", default=os.environ.get("EDITJUDGE_CACHE") or str(ROOT / ".cache" / "tiny-models"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("editjudge", "transformers", "diffusers", "accelerate"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.dry_run:
        args.images, args.image_size, args.new_tokens, args.batch_sizes = 8, 64, 6, "1,2,4"
        args.oom_image_size, args.oom_fit = 64, 2
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not args.dry_run and gpus == 0:
        print("gpu_check: no GPU visible; run with --dry-run on a CPU machine", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda:0"
    args.dtype = "float32" if args.dry_run else "bfloat16"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = {"dry_run": args.dry_run, "torch": torch.__version__, "gpus": gpus, "dtype": args.dtype,
              "device_name": torch.cuda.get_device_name(0) if gpus else "cpu", "args": vars(args), "sections": {}}
    sections = report["sections"]
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        if args.dry_run:
            from editjudge.tools.make_tiny_models import ensure_tiny_models

            path = str(ensure_tiny_models(args.cache)["judge"])
            report["judge"] = "tiny trained judge"
        else:
            path = str(build_random_model(work / "judge", args.preset, device, torch.bfloat16))
            report["judge"] = f"random {args.preset}"
            _free()
        images = make_images(args.images, args.image_size)
        sections["judge"], reference = judge_section(args, path, device, images)
        sections["workers"] = workers_section(args, path, gpus, work)
        sections["group"] = group_section(args, path, gpus, images, reference)
        oom_images = make_images(max(args.batch_sizes), args.oom_image_size, seed=2)
        sections["out_of_memory"] = oom_section(args, path, device, oom_images)
        sections["forward_clock"] = clock_section(args, path, device, images)
        sections["editor_offload"] = editor_section(args, device)
        sections["sleep_wake"] = sleep_section(args, path, device, images)
    report["seconds"] = time.perf_counter() - started
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    text = summary(report)
    (out / "gpu_check_summary.txt").write_text(text + "\n")
    print(text)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check_summary.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
