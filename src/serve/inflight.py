"""Requests in flight: a client that goes away cancels its work; a retried request is answered once.

* ``race_disconnect``: once a request's body is read, the handler races its work against the
  client's disconnect (a client that timed out closes its connection too); on a disconnect the work
  is cancelled, and with it the request's items still waiting in the judge queue.
* ``Replays``: a request with an ``Idempotency-Key`` header runs as its own task, remembered under
  the key (with its body's SHA-256) for ``ttl`` seconds. A retry with the same key and body waits
  for that task, or gets its finished answer, and is never scored again; the same key with another
  body is a 422. Keyed work is not cancelled when its client goes away: the key says a retry will
  come for it. An answer the client should retry for (429, 503) is forgotten at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Awaitable, Callable

from starlette.requests import Request

from .schema import ApiError

MAX_KEY_CHARS = 200


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def race_disconnect(request: Request, body_read: asyncio.Event, work: Awaitable):
    """``work``'s result, or ClientGone (``work`` cancelled) once the client disconnects after its body."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        await body_read.wait()  # before that, the body's reader owns receive()
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone()


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_KEY_CHARS:
        raise ApiError(400, "bad_idempotency_key", f"Idempotency-Key: 1 to {MAX_KEY_CHARS} characters",
                       "Idempotency-Key")
    return key


class Replays:
    def __init__(self, ttl: float = 600.0, max_keys: int = 100_000) -> None:
        self.ttl, self.max_keys = ttl, max_keys
        self.entries: OrderedDict[str, tuple[str, asyncio.Future, float]] = OrderedDict()
        self.replayed = 0

    async def run(self, key: str, body: bytes, start: Callable[[], Awaitable[dict]]) -> dict:
        now = time.monotonic()
        while self.entries and (len(self.entries) > self.max_keys or next(iter(self.entries.values()))[2] < now):
            self.entries.popitem(last=False)
        digest = hashlib.sha256(body).hexdigest()
        entry = self.entries.get(key)
        if entry is not None:
            if entry[0] != digest:
                raise ApiError(422, "idempotency_key_reused", "Idempotency-Key: already used for a different body",
                               "Idempotency-Key")
            self.replayed += 1
            return await asyncio.shield(entry[1])
        task = asyncio.ensure_future(start())
        self.entries[key] = (digest, task, now + self.ttl)

        def forget(done: asyncio.Future) -> None:
            exc = None if done.cancelled() else done.exception()
            if done.cancelled() or (exc is not None and not (isinstance(exc, ApiError) and exc.status < 429)):
                if self.entries.get(key, (None, None))[1] is done:
                    del self.entries[key]

        task.add_done_callback(forget)
        return await asyncio.shield(task)
