"""The reward server's HTTP side (FastAPI): authentication, limits, validation, then the batch queue.

Every check that can refuse a request runs before any image is decoded, and a refused request
never reaches the judge: the server answers a 4xx JSON error naming the field and goes on serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Callable

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..parallel import device_label
from .admission import Admission
from .batcher import BatchQueue, Job, Judges, ShuttingDown
from .metrics import CONTENT_TYPE, Metrics
from .settings import ServeSettings
from .groups import GroupTable, group_key
from .replica import ReplicaProcess
from .inflight import ClientGone, Replays, idempotency_key, race_disconnect
from .schema import (VERSION, VERSIONS, ApiError, ScoreRequest, group_members, item_result, load_rgb,
                     normalization_info, normalize_groups, open_image, parse_request)

logger = logging.getLogger(__name__)


class RefusalBeforeBody(JSONResponse):
    """An error answered before its request's body was read (admission, loading, a token): the answer goes
    out whole at once, then what the client goes on sending is read and dropped (up to ``drain_limit``
    bytes) before the response ends. Closed with the body unread, the connection is reset under a client
    still uploading (urllib, requests): it would see ``Connection reset`` and retry blind, never reading
    the 503 and its Retry-After."""

    def __init__(self, content: Any, drain_limit: int, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.drain_limit = drain_limit

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        left = self.drain_limit
        while left > 0:  # the body timeout (--body-timeout) ends a client that stops sending
            message = await receive()
            if message["type"] != "http.request":
                break
            left -= len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def needs_source(model, rubric) -> bool:
    """Whether the judge is shown the source image: a rubric prompt asks for it, or the simple one compares."""
    if rubric.is_simple:
        return bool(model.compare_with_original)
    return any(prompt.with_source for prompt in rubric.prompts)


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, "bad_content_length", f"Content-Length {length!r} is not a number")
        if int(length) > limit:
            raise ApiError(413, "body_too_large", f"the body is {int(length):,} bytes, over this server's limit of "
                                                  f"{limit:,} (split the request)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is over this server's limit of {limit:,} bytes "
                                                  "(split the request)")
        chunks.append(chunk)
    return b"".join(chunks)


def _open_items(payload: ScoreRequest, with_source: bool, max_pixels: int) -> list[tuple[Any, Any]]:
    """Every image of the request opened lazily (headers checked), or the first ApiError."""
    opened: list[tuple[Any, Any]] = []
    try:
        for i, item in enumerate(payload.items):
            edited = open_image(item.edited, f"items[{i}].edited", max_pixels)
            opened.append((edited, None))
            if with_source:
                opened[-1] = (edited, open_image(item.source, f"items[{i}].source", max_pixels))
    except ApiError:
        _close(opened)
        raise
    return opened


def _load_items(opened: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    try:
        return [(load_rgb(edited, f"items[{i}].edited"),
                 None if source is None else load_rgb(source, f"items[{i}].source"))
                for i, (edited, source) in enumerate(opened)]
    finally:
        _close(opened)


def _close(opened: list[tuple[Any, Any]]) -> None:
    for pair in opened:
        for image in pair:
            if image is not None:
                image.close()


def _pixels(pair: tuple[Any, Any]) -> int:
    return sum(image.size[0] * image.size[1] for image in pair if image is not None)


def build_app(settings: ServeSettings, build_model: Callable[[str], Any], rubric, devices: list[str],
              token: str | None) -> FastAPI:
    """The ASGI app; the judge replicas load on a background thread once it starts (``/health`` says when)."""
    queue = BatchQueue(settings.max_queue, settings.max_queue_pixels)
    judges: Judges
    metrics = Metrics(queue_depth=lambda: len(queue), queue_capacity=settings.max_queue,
                      ready=lambda: judges.ready, queue_pixels=lambda: queue.held_pixels)
    judges = Judges(build_model, rubric, devices, queue, settings.batch_size, settings.max_wait_ms / 1000, metrics,
                    with_source=lambda model: needs_source(model, rubric))
    replays = Replays()
    metrics.replays = replays
    admission = Admission(settings.max_bodies, settings.max_bodies_bytes, settings.max_body_bytes)
    metrics.admission = admission
    groups = GroupTable(settings.group_wait_s, settings.max_open_groups,
                        on_complete=lambda group: metrics.alarms.observe_group(group.std, group.size))
    metrics.group_counts = groups.counts

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        judges.start(on_failure=lambda: app.state.on_load_failure())
        yield
        await anyio.to_thread.run_sync(judges.stop)  # joins the judge threads: off the event loop

    app = FastAPI(title="editjudge reward server", version=str(VERSION), lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.judges, app.state.metrics, app.state.queue, app.state.groups = judges, metrics, queue, groups
    app.state.on_load_failure = lambda: None  # the runner sets this to stop the server

    def check_token(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer ...)",
                           "Authorization", headers={"WWW-Authenticate": "Bearer"})

    def error_response(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    def not_ready() -> ApiError:
        if judges.state in ("sleeping", "asleep", "waking"):
            return ApiError(503, "asleep", f"the judge is {judges.state}, its GPU memory lent out (POST /v1/wake "
                                           "wakes it)", headers={"Retry-After": "5"})
        if judges.state == "loading":
            return ApiError(503, "loading", "the judge is still loading; retry shortly", headers={"Retry-After": "2"})
        return ApiError(503, judges.state, f"the judge is not available ({judges.state})")

    def queue_full(n: int) -> ApiError:
        depth = len(queue)
        wait = metrics.seconds_to_drain(depth)
        retry = max(1, min(60, math.ceil(wait))) if wait is not None else 1
        return ApiError(429, "queue_full", f"the queue is full ({depth} of {settings.max_queue} items, "
                                           f"{queue.held_pixels:,} of {settings.max_queue_pixels:,} pixels held; this "
                                           f"request has {n} items); retry after {retry} s",
                        headers={"Retry-After": str(retry)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # unknown paths and methods, in our error format
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}",
                                       headers=dict(exc.headers or {})))

    @app.get("/health")
    async def health():
        body: dict[str, Any] = {"version": VERSION, "versions": list(VERSIONS), "status": judges.state}
        problem = judges.unhealthy
        if problem:  # loaded, but no replica can score: a balancer or launcher must not send it work
            body.update(status="unhealthy", error=problem)
            return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
        if judges.ready:
            body.update(rubric=rubric.name, needs_source=needs_source(judges.models[0], rubric),
                        replicas=len(judges.models), devices=[device_label(d) for d in devices],
                        replica_pids=[m.pid if isinstance(m, ReplicaProcess) else None for m in judges.models],
                        replica_problems=[w.health.problem for w in judges.workers],
                        batching={"batch_size": settings.batch_size, "max_wait_ms": settings.max_wait_ms},
                        limits={"max_items": settings.max_items, "max_queue": settings.max_queue,
                                "max_queue_pixels": settings.max_queue_pixels,
                                "max_body_bytes": settings.max_body_bytes,
                                "max_image_pixels": settings.max_image_pixels,
                                "max_instruction_chars": settings.max_instruction_chars},
                        timeouts={"header_s": settings.header_timeout, "body_s": settings.body_timeout,
                                  "keep_alive_s": settings.keep_alive_timeout},
                        admission={"max_bodies": settings.max_bodies, "max_bodies_bytes": settings.max_bodies_bytes,
                                   "bodies": admission.bodies, "bytes": admission.bytes},
                        groups={"wait_s": settings.group_wait_s, "max_open": settings.max_open_groups,
                                "open": len(groups.open)})
            return body
        if judges.error:
            body["error"] = judges.error
        return JSONResponse(body, status_code=503)

    @app.post("/v1/sleep")
    async def sleep(request: Request):
        try:
            check_token(request)
            level = request.query_params.get("level", "1")
            if level not in ("1", "2"):
                raise ApiError(422, "invalid_field", f"level: 1 or 2, got {level!r}", "level")
            return JSONResponse(await anyio.to_thread.run_sync(judges.sleep, int(level)))
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - the judge stays as it was; the caller is told why
            return error_response(ApiError(409 if "the judge is" in str(exc) else 500, "sleep_failed", str(exc)))

    @app.post("/v1/wake")
    async def wake(request: Request):
        try:
            check_token(request)
            return JSONResponse(await anyio.to_thread.run_sync(judges.wake))
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001
            return error_response(ApiError(409 if "the judge is" in str(exc) else 500, "wake_failed", str(exc)))

    @app.get("/metrics")
    async def metrics_page(request: Request):
        try:
            check_token(request)
        except ApiError as exc:
            return error_response(exc)
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/score")
    async def score(request: Request):
        started = time.perf_counter()
        body_read = asyncio.Event()
        try:
            body = await race_disconnect(request, body_read, _score(request, body_read))
            status = 200
            response = JSONResponse(body)
        except ClientGone:
            client = request.client
            logger.info("client %s went away before its answer; its waiting items are cancelled",
                        f"{client.host}:{client.port}" if client else "?")
            status, response = 499, Response(status_code=499)
        except ApiError as exc:
            status = exc.status
            response = error_response(exc)
            declared = request.headers.get("content-length", "")
            if not body_read.is_set() and declared.isdigit() and int(declared) <= settings.max_body_bytes:
                response = RefusalBeforeBody(exc.body(), int(declared), status_code=exc.status, headers=exc.headers)
        except ClientDisconnect:
            # The client went away mid-upload (or its body timed out): one line, nobody to answer.
            client = request.client
            logger.info("client %s disconnected before its request body was read; dropped",
                        f"{client.host}:{client.port}" if client else "?")
            status, response = 499, Response(status_code=499)
        metrics.request(status, time.perf_counter() - started)
        return response

    async def _score(request: Request, body_read: asyncio.Event) -> dict:
        check_token(request)
        key = idempotency_key(request)
        if not judges.ready:
            raise not_ready()
        if judges.unhealthy:
            raise ApiError(503, "judge_unavailable", f"the judge cannot score: {judges.unhealthy.splitlines()[0]}",
                           headers={"Retry-After": "5"})
        held = [admission.enter(request.headers.get("content-length"))]

        def decoded() -> None:  # the body is read, its images decoded and queued: the slot is free
            if held:
                admission.leave(held.pop())
        try:
            body = await _read_body(request, settings.max_body_bytes)
            body_read.set()
            if key is None:
                return await _admitted(body, decoded)
            return await replays.run(key, body, lambda: _admitted(body, decoded))
        finally:
            decoded()

    async def _admitted(body: bytes, decoded: Callable[[], None]) -> dict:
        # Items are counted before any is validated, and the parsing runs on a thread: a body of a
        # million tiny items is a quick 413 and never stalls /health.
        payload = await anyio.to_thread.run_sync(parse_request, body, settings.max_items)
        del body
        if payload.rubric is not None and payload.rubric != rubric.name:
            raise ApiError(422, "unknown_rubric", f"rubric: {payload.rubric!r} is not served here; this server "
                                                  f"scores with {rubric.name!r}", "rubric")
        n = len(payload.items)
        if n > settings.max_items:
            raise ApiError(413, "too_many_items", f"items: {n} items is over this server's limit of "
                                                  f"{settings.max_items} per request (split the request)", "items")
        with_source = needs_source(judges.models[0], rubric)
        if with_source:
            missing = [i for i, item in enumerate(payload.items) if item.source is None]
            if missing:
                raise ApiError(422, "invalid_field", f"items[{missing[0]}].source: required (the {rubric.name!r} "
                                                     f"rubric shows the judge the source image)",
                               f"items[{missing[0]}].source")
        opened = await anyio.to_thread.run_sync(_open_items, payload, with_source, settings.max_image_pixels)
        pixels = [_pixels(pair) for pair in opened]
        if sum(pixels) > settings.max_queue_pixels:
            _close(opened)
            raise ApiError(413, "too_many_pixels", f"items: the request's images hold {sum(pixels):,} pixels, over "
                                                   f"this server's queue capacity of {settings.max_queue_pixels:,} "
                                                   "(split the request)", "items")
        try:
            reserved = queue.reserve(n, sum(pixels))  # before decoding: decoded images always have room
        except ShuttingDown:
            _close(opened)
            raise ApiError(503, "shutting_down", "the server is shutting down") from None
        if not reserved:
            _close(opened)
            raise queue_full(n)
        try:
            # Version 2: the request's groups joined before any of its items is scored (a contradicting
            # group size is a 409 here, before work).
            joined = groups.join(group_members(payload), payload.group_wait_s) if payload.version == 2 else {}
        except BaseException:
            _close(opened)
            queue.release(n, sum(pixels))
            raise
        filled = False
        try:
            results = await _judge(payload, opened, pixels, decoded)
            if joined:
                for key, group in joined.items():
                    groups.fill(group, [r["score"] for item, r in zip(payload.items, results)
                                        if item.group is not None and group_key(item.group) == key])
                filled = True
                await asyncio.gather(*(groups.wait(group) for group in joined.values()))
        finally:
            if not filled:
                for group in joined.values():
                    groups.abandon(group, "a member's request ended before it was scored")
        answer = {"version": payload.version, "rubric": rubric.name, "results": results}
        if payload.version == 1:
            summaries = normalize_groups(results)
            for summary in summaries:
                metrics.alarms.observe_group(summary["std"], summary["scored"])
        else:
            for item, result in zip(payload.items, results):
                if item.group is not None:
                    result["advantage"] = joined[group_key(item.group)].advantage(result["score"])
            summaries = [group.summary() for group in joined.values()]
        if summaries:
            answer.update(groups=summaries, normalization=normalization_info())
        return answer

    async def _judge(payload: ScoreRequest, opened: list, pixels: list[int], decoded: Callable[[], None]) -> list[dict]:
        """Decode the reserved items, queue them, wait for the judge: one result line per item."""
        n = len(payload.items)
        try:
            images = await anyio.to_thread.run_sync(_load_items, opened)
        except BaseException:
            queue.release(n, sum(pixels))
            raise

        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(n)]

        def deliver(future: asyncio.Future) -> Callable[[dict | BaseException], None]:
            def done(result: dict | BaseException) -> None:
                try:
                    loop.call_soon_threadsafe(_resolve, future, result)
                except RuntimeError:  # the event loop is gone (the server stopped): nobody waits for it
                    pass
            return done

        # The job's own limit (benchmark.max_instruction_chars): a longer instruction is cut to it, and
        # the item's result says from how many characters.
        limit = settings.max_instruction_chars
        jobs = [Job(edited, source, item.instruction[:limit], deliver(future), pixels=count)
                for (edited, source), item, future, count in zip(images, payload.items, futures, pixels)]
        try:
            queue.put(jobs)
        except ShuttingDown:
            raise ApiError(503, "shutting_down", "the server is shutting down") from None
        decoded()
        try:
            judged = await asyncio.gather(*futures)
        except asyncio.CancelledError:  # the client went away: its items still waiting are not scored
            metrics.cancelled(queue.cancel(jobs))
            raise
        if any(isinstance(r, ShuttingDown) for r in judged):
            raise ApiError(503, "shutting_down", "the server stopped before this request was scored")
        results = [item_result(item, r, payload.version) for item, r in zip(payload.items, judged)]
        for item, result in zip(payload.items, results):
            if len(item.instruction) > limit:
                result["instruction_truncated_from"] = len(item.instruction)
        return results

    app.state.settings = asdict(settings)
    return app


def _resolve(future: asyncio.Future, result) -> None:
    if not future.done():  # the request may have been cancelled (client gone)
        future.set_result(result)
