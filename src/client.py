"""A client for the reward server (``editjudge serve``), for RL trainers. Standard library HTTP, no pickle.

    from editjudge.client import RewardClient
    client = RewardClient("http://127.0.0.1:8000", timeout=120, retries=3)   # token: $EDITJUDGE_SERVER_TOKEN
    results = client.score(edited, sources, instructions, groups=["s3/p0", "s3/p0", "s3/p1", "s3/p1"], group_size=4)
    scores = [r.score for r in results]           # the judge's raw scores; None where the item failed (r.error)
    advantages = [r.advantage for r in results]   # over each WHOLE group (4 members here, 2 of them sent by
                                                  # another rank), or None when the group did not complete

    # Trainers' own reward-function shapes: editjudge.integrations (flow_grpo, verl_omni, editscore)

Images may be PIL images, numpy arrays (HWC or CHW, uint8 or floats in [0, 1]), torch tensors, file
paths or encoded bytes; they travel as base64 PNG (paths and bytes as they are). Connection errors,
timeouts, 429 (after its Retry-After) and 503 are retried ``retries`` times with backoff; then,
or at once for any other error answer, ``RewardServerError`` says what happened.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from PIL import Image

from .models.reward.remote import SameOriginRedirects
from .redaction import redact, register_secret

# Follows a redirect within the server's origin only: urllib would send the token anywhere else too.
_OPENER = urllib.request.build_opener(SameOriginRedirects)

logger = logging.getLogger(__name__)

TOKEN_ENV = "EDITJUDGE_SERVER_TOKEN"
RETRIED_STATUSES = (429, 502, 503, 504)
MAX_RETRY_AFTER = 60.0


class RewardServerError(RuntimeError):
    """The server refused a request, or could not be reached after the retries.

    ``status`` is the HTTP status (None when no answer came), ``code`` and ``field`` come from the
    server's error body.
    """

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 field: str | None = None) -> None:
        message = redact(message)
        super().__init__(message)
        self.status, self.code, self.field = status, code, field


class RewardScoringError(RuntimeError):
    """Items the judge could not score, where the caller asked for every item to have a score."""


@dataclass
class RewardResult:
    id: Any
    score: float | None
    sub_scores: dict
    raw_output: str | None
    error: str | None
    group: Any = None
    advantage: float | None = None  # version 2: (score - mean) / (std + 1e-4) over the whole group, once complete
    reward: float | None = None  # version 1 answers only: the same, over the group's items in one request


def _to_pil(image) -> Image.Image:
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor, without importing torch
        image = image.detach().cpu().float().numpy() if image.is_floating_point() else image.detach().cpu().numpy()
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"cannot read an image from an array of shape {tuple(np.asarray(image).shape)}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = np.clip(np.round(array * 255), 0, 255)  # floats are taken as [0, 1], as trainers hold them
        array = array.astype(np.uint8)
    return Image.fromarray(array)


def encode_image(image) -> str:
    """Base64 of ``image``: a path's or bytes' content as is, anything else as PNG (lossless)."""
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as handle:
            data = handle.read()
    else:
        pil = image if isinstance(image, Image.Image) else _to_pil(image)
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        data = buffer.getvalue()
    return base64.b64encode(data).decode("ascii")


class RewardClient:
    """Talks to one reward server. Thread-safe: each call opens its own connection."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 300.0,
                 retries: int = 3, backoff: float = 0.5) -> None:
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.url = url.rstrip("/")
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        register_secret(self.token)  # in no error message or log line, whatever the server echoes
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def __repr__(self) -> str:  # never the token
        return f"RewardClient({self.url!r}, timeout={self.timeout}, retries={self.retries})"

    # ------------------------------------------------------------------ calls

    def health(self) -> dict:
        """``GET /health`` (raises RewardServerError while the judge is not ready)."""
        return json.loads(self._request("GET", "/health"))

    def metrics(self) -> str:
        return self._request("GET", "/metrics").decode()

    def score(self, edited: Sequence, sources: Sequence | None, instructions: Sequence[str] | str,
              groups: Sequence | None = None, ids: Sequence | None = None, rubric: str | None = None,
              group_size: int | Sequence[int] | None = None, group_wait_s: float | None = None) -> list[RewardResult]:
        """One result per edited image, in order. ``sources`` may be None when the rubric does not use them.

        ``groups`` name each item's group and ``group_size`` gives each group's FULL size over every
        request (one number, or one per item): the answer waits until the server has all of a group's
        scores (from this call and other ranks' calls), then ``advantage`` is set; it is None when the
        group did not complete within its deadline (``group_wait_s``, at most the server's).
        """
        payload = self.build_payload(edited, sources, instructions, groups, ids, rubric, group_size=group_size,
                                     group_wait_s=group_wait_s)
        return self.results(self.score_payload(payload))

    @staticmethod
    def results(answer: dict) -> list[RewardResult]:
        """A version 1 or 2 answer's results (version 1 fills ``reward``, version 2 ``advantage``)."""
        return [RewardResult(**{k: r.get(k) for k in RewardResult.__dataclass_fields__}) for r in answer["results"]]

    @staticmethod
    def build_payload(edited: Sequence, sources: Sequence | None, instructions: Sequence[str] | str,
                      groups: Sequence | None = None, ids: Sequence | None = None,
                      rubric: str | None = None, group_size: int | Sequence[int] | None = None,
                      group_wait_s: float | None = None) -> dict:
        """The request body for ``POST /v1/score`` (wire version 2)."""
        edited = list(edited)
        n = len(edited)
        instructions = [instructions] * n if isinstance(instructions, str) else list(instructions)
        if groups is not None and group_size is None:
            raise ValueError("group_size is required with groups: each group's full size over every request (e.g. "
                             "K samples per prompt, even when other ranks send some of them); when each group is "
                             "whole in this call, pass group_size=[groups.count(g) for g in groups]")
        if group_size is not None and groups is None:
            raise ValueError("group_size is given without groups")
        sizes = [group_size] * n if isinstance(group_size, int) else group_size
        for name, values in (("sources", sources), ("instructions", instructions), ("groups", groups), ("ids", ids),
                             ("group_size", sizes)):
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries but edited has {n}")
        items = []
        for i, image in enumerate(edited):
            item: dict[str, Any] = {"edited": encode_image(image), "instruction": instructions[i]}
            if sources is not None and sources[i] is not None:
                item["source"] = encode_image(sources[i])
            if groups is not None and groups[i] is not None:
                item["group"] = groups[i]
                item["group_size"] = int(sizes[i])
            if ids is not None:
                item["id"] = ids[i]
            items.append(item)
        payload: dict[str, Any] = {"version": 2, "items": items}
        if rubric is not None:
            payload["rubric"] = rubric
        if group_wait_s is not None:
            payload["group_wait_s"] = group_wait_s
        return payload

    def score_payload(self, payload: dict, idempotency_key: str | None = None) -> dict:
        """Send a prepared body; the server's JSON answer. Every attempt carries the same
        ``Idempotency-Key`` (a fresh one per call unless given): a retry after a timeout or a dropped
        connection gets the first attempt's answer, and its items are scored once."""
        key = idempotency_key or uuid.uuid4().hex
        return json.loads(self._request("POST", "/v1/score", json.dumps(payload).encode(),
                                        {"Idempotency-Key": key}))

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, body: bytes | None = None, extra: dict | None = None) -> bytes:
        url = self.url + path
        headers = {"Accept": "application/json", **(extra or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        attempts = self.retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            delay = self.backoff * 2 ** (attempt - 1)
            request = urllib.request.Request(url, data=body, method=method, headers=headers)
            try:
                with _OPENER.open(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as exc:
                error = _error_from(exc)
                if exc.code not in RETRIED_STATUSES:
                    raise error from None
                retry_after = exc.headers.get("Retry-After")
                if retry_after and retry_after.isdigit():
                    delay = min(MAX_RETRY_AFTER, max(delay, float(retry_after)))
                last = str(error)
                final = error
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                    TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
                final = RewardServerError(f"reward server {self.url} unreachable: {last}")
            if attempt < attempts:
                logger.warning("%s %s failed (attempt %d of %d: %s); retrying in %.1f s", method, url, attempt,
                               attempts, last, delay)
                time.sleep(delay)
        raise RewardServerError(f"{method} {url} failed after {attempts} attempt(s); last error: {last}",
                                status=getattr(final, "status", None), code=getattr(final, "code", None)) from None


def _error_from(exc: urllib.error.HTTPError) -> RewardServerError:
    try:
        body = json.loads(exc.read() or b"{}")
        error = body.get("error") or {}
    except (ValueError, OSError, AttributeError):
        error = {}
    if not isinstance(error, dict):  # /health-style bodies carry the reason as a string
        error = {"message": str(error)}
    message = error.get("message") or exc.reason
    return RewardServerError(f"reward server answered {exc.code}: {message}", status=exc.code,
                             code=error.get("code"), field=error.get("field"))

