"""Stage 1, the edits: one worker per device, each editor in turn over the worker's batches; lines go to
``OUT/.parts/edit-rank<r>.jsonl`` (merged by ``editjudge.merge``), images under ``OUT/edits/<editor>/``."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path

from PIL import Image

from . import progress
from .benchmark import BenchmarkItem
from .config import config_from_dict
from .files import write_atomic
from .jsonl import append_jsonl, read_jsonl
from .layout import Layout
from .parallel import shard
from .resume import edit_key, source_hasher
from .stage_common import InvalidItem, chunks, error_text, fault_point, load_items

logger = logging.getLogger(__name__)


def _finished_edit(layout: Layout, record: dict | None, key: str) -> bool:
    if record is None or record.get("error") or not record.get("image") or record.get("edit_key") != key:
        return False
    try:
        with Image.open(layout.out / record["image"]) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def _save_edit(layout: Layout, editor: str, item: BenchmarkItem, seed: int, output, seconds: float,
               key: str | None = None, source_sha1: str | None = None) -> dict:
    record = {"editor": editor, "item_id": item.id, "category": item.category, "image": None, "sha1": None,
              "seed": seed, "seconds": round(seconds, 4), "error": None, "edit_key": key, "source_sha1": source_sha1}
    if item.instruction_truncated_from is not None:
        record["instruction_truncated_from"] = item.instruction_truncated_from
    if isinstance(output, BaseException):
        record["error"] = error_text(output)
        return record
    if not isinstance(output, Image.Image):
        record["error"] = f"editor returned {type(output).__name__}, not an image"
        return record
    path = layout.edited_image(editor, item.id)
    buffer = io.BytesIO()
    output.save(buffer, format="PNG")
    data = buffer.getvalue()
    write_atomic(path, data)  # an image file is either absent or complete
    record["image"] = path.relative_to(layout.out).as_posix()
    record["sha1"] = hashlib.sha1(data).hexdigest()
    if "resized_from" in output.info:
        record["resized_from"] = output.info["resized_from"]
    return record


def edit_shard(*, rank: int, world_size: int, device: str, config_data: dict, overwrite: bool) -> None:
    """Stage 1 for one worker: every editor in turn over this rank's batches, one load per editor.

    Batches are fixed slices of the benchmark (``batch_size`` items in benchmark order) dealt out
    rank-strided, and a batch with any unfinished item is redone whole. Batched kernels do not give
    bit-identical results for different batch contents, so this is what makes an edit independent of
    the number of workers and of where an earlier run was killed.
    """
    from .models.editing import EditRequest, build_editor, item_seed

    config = config_from_dict(config_data)
    layout = Layout(Path(config.output_dir))
    items = load_items(config, quiet=True)
    recorded = {} if overwrite else {(r.get("editor"), r.get("item_id")): r for r in read_jsonl(layout.manifest)}
    part = layout.part("edit", rank)
    source_sha1 = source_hasher()
    written = 0
    def work_of(editor_config):
        name = editor_config.name
        mine = shard(list(chunks(items, editor_config.batch_size)), rank, world_size)
        keys = {item.id: edit_key(config, editor_config, item, device, source_sha1(item.image))
                for batch in mine for item in batch if not item.problem}
        # Invalid items (an empty instruction) are recorded, never edited, and never make a batch unfinished.
        invalid = [item for batch in mine for item in batch if item.problem
                   and (recorded.get((name, item.id)) or {}).get("error") != error_text(InvalidItem(item.problem))]
        batches = [[item for item in batch if not item.problem] for batch in mine
                   if not all(item.problem or _finished_edit(layout, recorded.get((name, item.id)), keys[item.id])
                              for item in batch)]
        return mine, keys, invalid, batches

    work = [work_of(editor_config) for editor_config in config.editing.editors]
    for editor_config, (_, _, _, batches) in zip(config.editing.editors, work):  # the stage's bar knows its total
        progress.todo(editor_config.name, sum(map(len, batches)))
    for editor_config, (mine, keys, invalid, batches) in zip(config.editing.editors, work):
        name = editor_config.name
        append_jsonl(part, [_save_edit(layout, name, item, item_seed(config.seed, item.id),
                                       InvalidItem(item.problem), 0.0) for item in invalid])
        todo = [item for batch in batches for item in batch]
        logger.info("editor %s on %s: %d of %d items to edit", name, device, len(todo), sum(map(len, mine)))
        if not todo:
            continue
        (layout.edits / name).mkdir(parents=True, exist_ok=True)
        requests = {item.id: EditRequest(item.id, item.image, item.instruction, item_seed(config.seed, item.id),
                                         item.category) for item in todo}
        try:
            if editor_config.type == "diffusers":
                progress.quiet_library("diffusers")
            editor = build_editor(editor_config, device)
        except Exception as exc:  # an editor that cannot load fails its items; the others go on
            logger.exception("editor %s failed to load; its %d items are recorded as failed", name, len(todo))
            failure = RuntimeError(f"editor failed to load: {error_text(exc)}")
            append_jsonl(part, [_save_edit(layout, name, item, requests[item.id].seed, failure, 0.0, keys[item.id],
                                           source_sha1(item.image)) for item in todo])
            progress.done(name, len(todo), failed=len(todo))
            continue
        try:
            for batch in ([(item, requests[item.id]) for item in batch] for batch in batches):
                fault_point("edit", written)
                started = time.perf_counter()
                try:
                    outputs = editor.edit([request for _, request in batch])
                    if len(outputs) != len(batch):
                        raise RuntimeError(f"editor returned {len(outputs)} results for {len(batch)} requests")
                except Exception as exc:  # the editor broke its contract for this batch: fail these items only
                    logger.exception("editor %s raised on a batch of %d", name, len(batch))
                    outputs = [exc.with_traceback(None)] * len(batch)  # its frames would pin the failed call's memory
                seconds = (time.perf_counter() - started) / len(batch)
                records = [_save_edit(layout, name, item, request.seed, output, seconds, keys[item.id],
                                      source_sha1(item.image)) for (item, request), output in zip(batch, outputs)]
                fault_point("edit-unrecorded", written)  # images saved, lines not yet written
                append_jsonl(part, records)
                written += 1
                failed = sum(1 for r in records if r["error"])
                progress.done(name, len(batch), failed=failed)
                # Under the stage's bar (which shows the progress) batch lines are DEBUG.
                logger.log(logging.DEBUG if progress.active() else logging.INFO,
                           "editor %s: edited %s (%d items, %d failed), %.2f s/item", name,
                           progress.describe_ids([item.id for item, _ in batch]), len(batch), failed, seconds)
        finally:
            editor.close()
